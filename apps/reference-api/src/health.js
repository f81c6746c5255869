'use strict';
// The guide's health endpoint, per dependency: status and latency. Why one is down goes to the
// server's log only (errors): the answer is public through the edge, and a driver's message names
// the addresses and ports behind the app.

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
      reason: err.message || err.code || String(err),
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
    const report = {};
    const errors = {};
    names.forEach((name, i) => {
      const { reason, ...check } = results[i];
      report[name] = check;
      if (reason) errors[name] = reason;
    });
    const healthy = results.every((r) => r.status === 'up');
    // errors: for the server's log, never the answer.
    return {
      healthy,
      errors,
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
