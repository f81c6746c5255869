'use strict';
// The API's process: configuration, connections, the HTTP server and an orderly exit on SIGTERM
// (stop accepting, let in-flight requests finish, close the pool and Redis, exit 0), bounded by
// SHUTDOWN_TIMEOUT_MS after which it exits 1 with what was still open.
const http = require('node:http');
const config = require('./config');
const log = require('./log');
const { createPool } = require('./db');
const { createRedis } = require('./cache');
const { createApp } = require('./app');

function connectMongo(mongodb, timeoutMs) {
  if (!mongodb) return null;
  // Required only when configured: the driver is the heaviest dependency and most hosts lack MongoDB.
  const { MongoClient } = require('mongodb');
  return new MongoClient(mongodb.url, { serverSelectionTimeoutMS: timeoutMs, connectTimeoutMS: timeoutMs });
}

function main() {
  let settings;
  try {
    settings = config.load();
  } catch (err) {
    if (!(err instanceof config.ConfigError)) throw err;
    log.error(err.message);
    process.exit(78); // EX_CONFIG: systemd shows a configuration fault, not a crash.
  }
  const pool = createPool(settings.database);
  const redis = createRedis(settings.redis);
  const mongodb = connectMongo(settings.mongodb, settings.healthTimeoutMs);
  let shuttingDown = false;
  const app = createApp({ config: settings, pool, redis, mongodb, isShuttingDown: () => shuttingDown });
  const server = http.createServer(app);

  server.on('error', (err) => {
    log.error(`Cannot listen on ${settings.host}:${settings.port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(settings.port, settings.host, () => {
    const { address, port } = server.address();
    log.info('listening', {
      name: settings.name, version: settings.version, host: address, port, pid: process.pid,
      postgres: settings.database.target, pool_size: settings.database.poolSize,
      redis: settings.redis.target, mongodb: settings.mongodb ? settings.mongodb.target : null,
    });
  });

  async function shutdown(signal) {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info('shutting down', { signal, timeout_ms: settings.shutdownTimeoutMs });
    setTimeout(() => {
      log.error('shutdown timed out: requests still in flight were cut', { timeout_ms: settings.shutdownTimeoutMs });
      process.exit(1);
    }, settings.shutdownTimeoutMs).unref();
    // close() stops accepting and resolves once every in-flight request has been answered; idle
    // kept-alive connections would hold it open, so they go now (Node 18 does not close them itself).
    await new Promise((resolve) => {
      server.close(resolve);
      server.closeIdleConnections();
    });
    const results = await Promise.allSettled([pool.end(), redis.close(), mongodb ? mongodb.close() : null]);
    for (const r of results.filter((x) => x.status === 'rejected')) {
      log.warn('close failed', { error: r.reason && r.reason.message });
    }
    log.info('shutdown complete');
    process.exit(0);
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main();
