'use strict';
// The endpoints against the real PostgreSQL and Redis the environment names.
const test = require('node:test');
const assert = require('node:assert/strict');
const { request, startApp, spawnServer, until, pgClient, RENTAL } = require('./helpers');

let app;
test.before(async () => { app = await startApp({ MOBILE_MONEY_PROVIDERS: 'mpesa,tigopesa,airtelmoney,halopesa' }); });
test.after(async () => { await app.close(); });

test('health answers 200 with PostgreSQL and Redis up, their latency, the version and the time', async () => {
  const res = await request(app.base, 'GET', '/api/health');
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.status, 'healthy');
  assert.equal(res.json.version, app.settings.version);
  assert.ok(Math.abs(Date.parse(res.json.timestamp) - Date.now()) < 60000);
  assert.deepEqual(Object.keys(res.json.checks).sort(), ['postgres', 'redis']);
  for (const check of Object.values(res.json.checks)) {
    assert.equal(check.status, 'up');
    assert.equal(typeof check.latency_ms, 'number');
    assert.ok(check.latency_ms >= 0);
  }
});

test('version names the package and APP_VERSION', async () => {
  const other = await startApp({ APP_VERSION: '2026.12.2-abc123' });
  try {
    const res = await request(other.base, 'GET', '/api/version');
    assert.deepEqual(res.json, { name: 'reference-api', version: '2026.12.2-abc123' });
    assert.equal((await request(other.base, 'GET', '/api/health')).json.version, '2026.12.2-abc123');
  } finally {
    await other.close();
  }
});

test('market answers the configured settings', async () => {
  const res = await request(app.base, 'GET', '/api/market');
  assert.equal(res.status, 200);
  assert.deepEqual(res.json.mobile_money_providers, ['mpesa', 'tigopesa', 'airtelmoney', 'halopesa']);
});

test('a rental is written to PostgreSQL, then read from it (miss) and from Redis (hit)', async () => {
  const created = await request(app.base, 'POST', '/api/rentals', { body: { ...RENTAL, payment_provider: 'mpesa' } });
  assert.equal(created.status, 201, created.text);
  const { id } = created.json;
  assert.ok(Number.isInteger(id) && id > 0);
  assert.equal(created.headers.location, `/api/rentals/${id}`);

  const db = await pgClient();
  try {
    const { rows } = await db.query('SELECT station_code, customer_phone, payment_provider FROM rentals WHERE id = $1', [id]);
    assert.deepEqual(rows, [{ station_code: 'DAR-001', customer_phone: '+255712345678', payment_provider: 'mpesa' }]);
  } finally {
    await db.end();
  }

  const first = await request(app.base, 'GET', `/api/rentals/${id}`);
  assert.equal(first.status, 200);
  assert.equal(first.headers['x-cache'], 'miss');
  assert.deepEqual(first.json, created.json);
  assert.equal(await app.redis.client.exists(`rental:${id}`), 1);
  const second = await request(app.base, 'GET', `/api/rentals/${id}`);
  assert.equal(second.headers['x-cache'], 'hit');
  assert.deepEqual(second.json, created.json);
  assert.ok(await app.redis.client.ttl(`rental:${id}`) > 0, 'cached with an expiry');
});

test('an unknown rental is 404 and not cached', async () => {
  const res = await request(app.base, 'GET', '/api/rentals/999999999');
  assert.equal(res.status, 404);
  assert.equal(res.headers['x-cache'], 'miss');
  assert.equal(await app.redis.client.exists('rental:999999999'), 0);
});

const BAD = [
  ['not JSON', '{"station_code": ', 400, /not valid JSON/],
  ['an array', [RENTAL], 400, /JSON object/],
  ['a missing field', { station_code: 'DAR-001', customer_phone: '+255712345678' }, 400, /power_bank_serial/],
  ['a malformed phone', { ...RENTAL, customer_phone: '0712 345 678' }, 400, /customer_phone/],
  ['a station code with SQL in it', { ...RENTAL, station_code: "DAR'; DROP TABLE rentals;--" }, 400, /station_code/],
  ['an unknown field', { ...RENTAL, admin: true }, 400, /unknown field\(s\): admin/],
  ['an unknown payment provider', { ...RENTAL, payment_provider: 'paypal' }, 400, /payment_provider must be one of: mpesa/],
  ['a body over 16 kB', { ...RENTAL, power_bank_serial: 'x'.repeat(20000) }, 413, /too large/],
];
for (const [what, body, status, message] of BAD) {
  test(`POST /api/rentals with ${what} is ${status} and writes nothing`, async () => {
    const db = await pgClient();
    try {
      const before = (await db.query('SELECT count(*)::int AS n FROM rentals')).rows[0].n;
      const res = await request(app.base, 'POST', '/api/rentals', { body });
      assert.equal(res.status, status, res.text);
      assert.match(res.json.error, message);
      assert.equal((await db.query('SELECT count(*)::int AS n FROM rentals')).rows[0].n, before);
    } finally {
      await db.end();
    }
  });
}

for (const id of ['abc', '0', '-1', '1.5', '12345678901234567']) {
  test(`GET /api/rentals/${id} is 400`, async () => {
    const res = await request(app.base, 'GET', `/api/rentals/${id}`);
    assert.equal(res.status, 400);
    assert.match(res.json.error, /positive integer/);
  });
}

test('an incoming X-Request-Id is echoed; none, or a malformed one, gets a generated UUID', async () => {
  const kept = await request(app.base, 'GET', '/api/version', { headers: { 'X-Request-Id': 'edge-7f3a:42' } });
  assert.equal(kept.headers['x-request-id'], 'edge-7f3a:42');
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const generated = await request(app.base, 'GET', '/api/version');
  assert.match(generated.headers['x-request-id'], UUID);
  const other = await request(app.base, 'GET', '/api/version');
  assert.notEqual(other.headers['x-request-id'], generated.headers['x-request-id']);
  const forged = await request(app.base, 'GET', '/api/version', { headers: { 'X-Request-Id': 'a"}, "level":"error' } });
  assert.match(forged.headers['x-request-id'], UUID);
  const onError = await request(app.base, 'POST', '/api/rentals', { body: {}, headers: { 'X-Request-Id': 'bad-input-1' } });
  assert.equal(onError.status, 400);
  assert.equal(onError.headers['x-request-id'], 'bad-input-1');
});

test('an unknown path is a JSON 404', async () => {
  const res = await request(app.base, 'GET', '/api/nothing-here');
  assert.equal(res.status, 404);
  assert.deepEqual(res.json, { error: 'not found' });
});

test('with MONGODB_URL set, health reports MongoDB, and 503 when it does not answer: why in the log, not the answer', async () => {
  // Nothing listens on port 1 of loopback: a MongoDB that is down.
  const server = spawnServer({ MONGODB_URL: 'mongodb://127.0.0.1:1/?directConnection=true', HEALTH_TIMEOUT_MS: '500' });
  try {
    const base = await server.listening;
    let res;
    // The server answers before its Redis client has connected: until then Redis is down too.
    await until('Redis to be up', async () => {
      res = await request(base, 'GET', '/api/health', { headers: { 'X-Request-Id': 'health-mongodb-down' } });
      return res.json.checks.redis.status === 'up';
    });
    assert.equal(res.status, 503, res.text);
    assert.equal(res.json.status, 'unhealthy');
    assert.equal(res.json.checks.postgres.status, 'up');
    assert.equal(res.json.checks.redis.status, 'up');
    // The answer is public (the edge serves /api/health to anyone): down, never the driver's error
    // with the addresses and ports behind the app.
    assert.deepEqual(Object.keys(res.json.checks.mongodb).sort(), ['latency_ms', 'status']);
    assert.equal(res.json.checks.mongodb.status, 'down');
    assert.doesNotMatch(res.text, /127\.0\.0\.1|ECONNREFUSED|timed out|no answer/i);
    // Operators read it in the server's log, with the request's id (the last answer's warning).
    const warned = () => server.lines.map((line) => JSON.parse(line))
      .filter((entry) => entry.msg === 'unhealthy' && entry.request_id === 'health-mongodb-down' && !entry.down.includes('redis'))
      .pop();
    await until('the warning in the log', warned);
    const warning = warned();
    assert.deepEqual(warning.down, ['mongodb']);
    assert.equal(typeof warning.errors.mongodb, 'string');
    assert.ok(warning.errors.mongodb.length > 0);
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
});

function withPoolParams(params) {
  const url = new URL(process.env.DATABASE_URL);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url.toString();
}

test('connection_limit caps the pool: concurrent queries share that many connections', async () => {
  const small = await startApp({ DATABASE_URL: withPoolParams({ connection_limit: '2' }) });
  try {
    const queries = Array.from({ length: 6 }, () => small.pool.query('SELECT pg_backend_pid() AS pid, pg_sleep(0.1)'));
    const pids = new Set((await Promise.all(queries)).map((r) => r.rows[0].pid));
    assert.equal(pids.size, 2);
    assert.equal(small.pool.totalCount, 2);
  } finally {
    await small.close();
  }
});

test('pool_timeout bounds the wait for a free connection', async () => {
  const small = await startApp({ DATABASE_URL: withPoolParams({ connection_limit: '1', pool_timeout: '0.3' }) });
  const held = await small.pool.connect();
  try {
    const started = Date.now();
    await assert.rejects(small.pool.query('SELECT 1'), /timeout/i);
    assert.ok(Date.now() - started < 2000);
    // Health reports PostgreSQL down rather than hanging while the pool is exhausted.
    const res = await request(small.base, 'GET', '/api/health');
    assert.equal(res.status, 503);
    assert.equal(res.json.checks.postgres.status, 'down');
  } finally {
    held.release();
    await small.close();
  }
});
