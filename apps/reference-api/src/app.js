'use strict';
const crypto = require('node:crypto');
const express = require('express');
const log = require('./log');
const { createHealth } = require('./health');
const { createRentals, InputError } = require('./rentals');
const { createMetrics } = require('./metrics');

// An incoming X-Request-Id is kept (a proxy's or a caller's, to follow a request across services)
// only when it is a plain token; anything else could forge log fields, so it is replaced.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function createApp({ config, pool, redis, mongodb, isShuttingDown = () => false }) {
  const app = express();
  const health = createHealth({ config, pool, redis, mongodb });
  const rentals = createRentals({ config, pool, redis });
  const metrics = createMetrics({ config, pool });

  app.disable('x-powered-by');
  app.set('etag', false);

  app.use((req, res, next) => {
    const incoming = req.get('x-request-id');
    req.id = incoming && REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
    res.set('X-Request-Id', req.id);
    res.set('X-Content-Type-Options', 'nosniff');
    res.set('X-Frame-Options', 'DENY');
    res.set('Referrer-Policy', 'strict-origin-when-cross-origin');
    res.set('Cache-Control', 'no-store');
    // After SIGTERM a kept-alive connection is not reused: the client opens a new one elsewhere.
    if (isShuttingDown()) res.set('Connection', 'close');
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      log.info('request', {
        request_id: req.id,
        method: req.method,
        // The route's path only: a query string is the caller's and may hold anything.
        path: req.path,
        status: res.statusCode,
        duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
      });
    });
    next();
  });

  app.get('/metrics', metrics.handler);
  app.use(metrics.middleware);

  app.get('/api/health', async (req, res) => {
    const { healthy, body, errors } = await health();
    if (!healthy) {
      log.warn('unhealthy', { request_id: req.id, down: Object.keys(errors), errors });
    }
    res.status(healthy ? 200 : 503).json(body);
  });

  app.get('/api/version', (req, res) => {
    res.json({ name: config.name, version: config.version });
  });

  app.get('/api/market', (req, res) => {
    res.json(config.market);
  });

  // The body parser inside the route: a body it refuses (400, 413) is still counted under the route.
  app.post('/api/rentals', express.json({ limit: '16kb' }), async (req, res) => {
    const rental = await rentals.create(req.body);
    res.status(201).location(`/api/rentals/${rental.id}`).json(rental);
  });

  app.get('/api/rentals/:id', async (req, res) => {
    const { rental, cache } = await rentals.read(req.params.id, req.id);
    res.set('X-Cache', cache);
    if (!rental) {
      res.status(404).json({ error: 'rental not found' });
      return;
    }
    res.json(rental);
  });

  app.use((req, res) => {
    res.status(404).json({ error: 'not found' });
  });

  // Express 5 routes rejected promises here too.
  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => {
    if (err instanceof InputError) {
      res.status(400).json({ error: err.message });
      return;
    }
    if (err.type === 'entity.parse.failed') {
      res.status(400).json({ error: 'the body is not valid JSON' });
      return;
    }
    if (err.type === 'entity.too.large') {
      res.status(413).json({ error: 'the body is too large' });
      return;
    }
    if (err.status >= 400 && err.status < 500) {
      res.status(err.status).json({ error: err.expose ? err.message : 'bad request' });
      return;
    }
    log.error('request failed', { request_id: req.id, error: err.message, code: err.code });
    res.status(500).json({ error: 'internal error', request_id: req.id });
  });

  return app;
}

module.exports = { createApp };
