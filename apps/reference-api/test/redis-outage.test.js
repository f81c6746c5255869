'use strict';
// Redis taken away for real (REDIS_CONTROL_URL stops, kills and restarts the server the tests were
// given) and brought back: health follows it, rentals are still served from PostgreSQL meanwhile.
const test = require('node:test');
const assert = require('node:assert/strict');
const { request, startApp, until, redisControl, RENTAL } = require('./helpers');

const control = process.env.REDIS_CONTROL_URL;
const skip = control ? false : 'REDIS_CONTROL_URL is not set: nothing can stop this Redis';

for (const action of ['stop', 'kill']) {
  test(`health is 503 naming redis while Redis is down (${action}), 200 once it is back`, { skip }, async () => {
    const app = await startApp({ HEALTH_TIMEOUT_MS: '1000' });
    try {
      const { id } = (await request(app.base, 'POST', '/api/rentals', { body: RENTAL })).json;
      assert.equal((await request(app.base, 'GET', '/api/health')).status, 200);

      await redisControl(action);
      const down = await request(app.base, 'GET', '/api/health');
      assert.equal(down.status, 503, down.text);
      assert.equal(down.json.status, 'unhealthy');
      assert.equal(down.json.checks.redis.status, 'down');
      assert.deepEqual(Object.keys(down.json.checks.redis).sort(), ['latency_ms', 'status'], 'why stays in the log');
      assert.equal(down.json.checks.postgres.status, 'up');
      assert.ok(down.json.checks.redis.latency_ms < 1500, 'a down Redis is reported, not waited for');

      // The cache is skipped, not fatal: the row comes from PostgreSQL.
      const read = await request(app.base, 'GET', `/api/rentals/${id}`);
      assert.equal(read.status, 200);
      assert.equal(read.headers['x-cache'], 'miss');
      assert.equal(read.json.id, id);

      await redisControl('start');
      await until('health to turn 200 again', async () => (await request(app.base, 'GET', '/api/health')).status === 200);
      assert.equal((await request(app.base, 'GET', `/api/rentals/${id}`)).headers['x-cache'], 'miss');
      assert.equal((await request(app.base, 'GET', `/api/rentals/${id}`)).headers['x-cache'], 'hit');
    } finally {
      await redisControl('start');
      await app.close();
    }
  });
}
