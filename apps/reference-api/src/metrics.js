'use strict';
// The API's Prometheus metrics, served at GET /metrics on the API's own listener; the monitoring
// rules and dashboards read exactly these names (docs/monitoring.md, "The API's metrics").
const client = require('prom-client');

// Fine around the guide's thresholds (p95 > 500 ms, p99 > 1 s): histogram_quantile interpolates
// inside a bucket, so a threshold that is a bucket edge is measured, not guessed.
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10];

// nginx's code for a request whose client left before the answer (its proxy_read_timeout, a closed
// app): such a request is still timed, since the slowest are the likeliest to be given up on.
const CLIENT_CLOSED = 499;

// The matched route's pattern, never the raw path: one series per route, whatever ids callers send.
function routeOf(req) {
  return req.route ? `${req.baseUrl}${req.route.path}` : 'unmatched';
}

function createMetrics({ config, pool }) {
  // A registry per app: the process metrics describe the process, the rest this app's pool and routes.
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });

  const duration = new client.Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from a request reaching the API to its answer, by route pattern and status code.',
    labelNames: ['method', 'route', 'status_code'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });

  // Read at scrape time: a counter sampled on a timer would be as old as the timer's period.
  new client.Gauge({
    name: 'chajipoa_db_pool_connections',
    help: "The PostgreSQL pool's connections: open (total), open and unused (idle), and requests waiting for one.",
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.set({ state: 'total' }, pool.totalCount);
      this.set({ state: 'idle' }, pool.idleCount);
      this.set({ state: 'waiting' }, pool.waitingCount);
    },
  });
  new client.Gauge({
    name: 'chajipoa_db_pool_max',
    help: "The PostgreSQL pool's maximum connections (DATABASE_URL's connection_limit).",
    registers: [registry],
  }).set(config.database.poolSize);

  // Mounted after GET /metrics, so a scrape is never counted.
  function middleware(req, res, next) {
    const end = duration.startTimer({ method: req.method });
    let recorded = false;
    const record = (statusCode) => {
      if (recorded) return;
      recorded = true;
      end({ route: routeOf(req), status_code: statusCode });
    };
    res.on('finish', () => record(res.statusCode));
    // 'close' follows 'finish' on every answered request; first means the client went away.
    res.on('close', () => record(CLIENT_CLOSED));
    next();
  }

  async function handler(req, res) {
    const body = await registry.metrics();
    res.set('Content-Type', registry.contentType).send(body);
  }

  return { registry, middleware, handler };
}

module.exports = { createMetrics, DURATION_BUCKETS };
