'use strict';
const fs = require('node:fs');
const { createClient } = require('redis');
const log = require('./log');

function createRedis(redis) {
  const socket = {
    connectTimeout: 5000,
    // Keep trying while Redis is away, at most every 2 s, so the API heals by itself when it returns.
    reconnectStrategy: (retries) => Math.min(100 * 2 ** Math.min(retries, 5), 2000),
  };
  if (redis.caFile) socket.ca = fs.readFileSync(redis.caFile);
  const client = createClient({
    url: redis.url,
    socket,
    // Fail at once while disconnected instead of queueing: a cache that is down is skipped, and
    // the health check reports it rather than hanging.
    disableOfflineQueue: true,
  });
  let lastError = null;
  let reported = false;
  client.on('error', (err) => {
    lastError = err.message || err.code || String(err);
    // One line per outage, not one per reconnection attempt.
    if (!reported) log.warn('redis connection lost', { error: lastError, target: redis.target });
    reported = true;
  });
  client.on('ready', () => {
    if (reported) log.info('redis connection restored', { target: redis.target });
    reported = false;
    lastError = null;
  });
  // Not awaited: the API serves (and reports Redis down) while Redis is unreachable at start-up.
  client.connect().catch((err) => log.warn('redis connect failed', { error: err.message }));
  return {
    client,
    lastError: () => lastError,
    async close() {
      if (client.isReady) await client.close();
      else client.destroy();
    },
  };
}

module.exports = { createRedis };
