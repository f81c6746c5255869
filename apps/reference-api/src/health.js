'use strict';
// The guide's health endpoint, per dependency: status, latency and, when down, why.

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function probe(fn, timeoutMs) {
  const started = process.hrtime.bigint();
  try {
    await withTimeout(Promise.resolve().then(fn), timeoutMs);
    return { status: 'up', latency_ms: Number(process.hrtime.bigint() - started) / 1e6 };
  } catch (err) {
    return {
      status: 'down',
      latency_ms: Number(process.hrtime.bigint() - started) / 1e6,
      error: err.message || err.code || String(err),
    };
  }
}

function createHealth({ config, pool, redis, mongodb }) {
  const checks = {
    postgres: () => pool.query('SELECT 1'),
    redis: () => {
      if (!redis.client.isReady) throw new Error(redis.lastError() || 'not connected');
      return redis.client.ping();
    },
  };
  if (mongodb) checks.mongodb = () => mongodb.db('admin').command({ ping: 1 });
  return async function health() {
    const names = Object.keys(checks);
    const results = await Promise.all(names.map((name) => probe(checks[name], config.healthTimeoutMs)));
    const report = Object.fromEntries(names.map((name, i) => [name, results[i]]));
    const healthy = results.every((r) => r.status === 'up');
    return {
      healthy,
      body: {
        status: healthy ? 'healthy' : 'unhealthy',
        timestamp: new Date().toISOString(),
        version: config.version,
        checks: report,
      },
    };
  };
}

module.exports = { createHealth };
