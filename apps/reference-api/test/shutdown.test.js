'use strict';
// SIGTERM on `node src/server.js` while a request is in flight. The request is made slow for real:
// the test holds a lock on the rentals table, so the API's INSERT waits in PostgreSQL.
const test = require('node:test');
const assert = require('node:assert/strict');
const { request, spawnServer, pgClient, until, secretsOf, RENTAL } = require('./helpers');

// The locker's transaction holds the table until the test ends it; resolves once the API's INSERT
// is seen waiting for that lock.
async function holdRentals(locker) {
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE rentals IN ACCESS EXCLUSIVE MODE');
  return () => until('the INSERT to wait for the lock', async () => {
    // Inside a transaction pg_stat_activity is a snapshot taken at its first read.
    await locker.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await locker.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
      + " AND query LIKE 'INSERT INTO rentals%'");
    return rows[0].n === 1;
  });
}

test('SIGTERM lets the in-flight request finish, refuses new ones, exits 0; logs are JSON without secrets', async () => {
  const server = spawnServer({ SHUTDOWN_TIMEOUT_MS: '30000' });
  const base = await server.listening;
  const locker = await pgClient();
  try {
    const insertWaiting = await holdRentals(locker);
    const slow = request(base, 'POST', '/api/rentals', { body: RENTAL, headers: { 'X-Request-Id': 'slow-1' } });
    await insertWaiting();

    server.child.kill('SIGTERM');
    await until('the server to begin its shutdown', () => server.logged('shutting down'));
    await assert.rejects(request(base, 'GET', '/api/version'), { code: 'ECONNREFUSED' });
    assert.equal(server.child.exitCode, null, 'still running while a request is in flight');

    await locker.query('COMMIT');
    const answered = await slow;
    assert.equal(answered.status, 201, answered.text);
    assert.equal(answered.headers['x-request-id'], 'slow-1');
    assert.equal(answered.headers.connection, 'close');
    const exit = await server.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, server.lines.join('\n') + server.stderr());
    assert.ok(server.logged('shutdown complete'));

    const { rows } = await locker.query('SELECT count(*)::int AS n FROM rentals WHERE id = $1', [answered.json.id]);
    assert.equal(rows[0].n, 1, 'the in-flight write was committed');

    const entries = server.lines.map((line) => JSON.parse(line));
    const slowLog = entries.find((e) => e.msg === 'request' && e.request_id === 'slow-1');
    assert.equal(slowLog.status, 201);
    assert.equal(slowLog.path, '/api/rentals');
    for (const secret of secretsOf()) {
      assert.ok(!server.lines.join('\n').includes(secret), 'a password reached the log');
    }
    assert.equal(server.stderr(), '');
  } finally {
    await locker.end();
    server.child.kill('SIGKILL');
  }
});

test('SIGTERM gives up after SHUTDOWN_TIMEOUT_MS: exit 1, naming the timeout', async () => {
  const server = spawnServer({ SHUTDOWN_TIMEOUT_MS: '500' });
  const base = await server.listening;
  const locker = await pgClient();
  try {
    const insertWaiting = await holdRentals(locker);
    const slow = request(base, 'POST', '/api/rentals', { body: RENTAL }).catch((err) => err);
    await insertWaiting();
    const started = Date.now();
    server.child.kill('SIGTERM');
    const exit = await server.exited;
    assert.deepEqual(exit, { code: 1, signal: null });
    assert.ok(Date.now() - started < 5000, 'exited at its deadline');
    assert.ok(server.logged('shutdown timed out: requests still in flight were cut'));
    assert.ok((await slow) instanceof Error, 'the cut request saw its connection close');
  } finally {
    await locker.query('ROLLBACK');
    await locker.end();
    server.child.kill('SIGKILL');
  }
});

test('a configuration fault stops the start with exit 78, naming the variable', async () => {
  const server = spawnServer({ APP_VAT_PERCENT: 'eighteen' });
  await assert.rejects(server.listening, /server exited \(78\)/);
  assert.match(server.lines.join('\n'), /Cannot start reference-api: APP_VAT_PERCENT must be a number/);
});
