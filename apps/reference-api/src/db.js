'use strict';
const { Pool } = require('pg');
const log = require('./log');

function createPool(database) {
  const pool = new Pool({
    connectionString: database.connectionString,
    max: database.poolSize,
    connectionTimeoutMillis: database.acquireTimeoutMs,
  });
  // An idle client losing its server (a restart, a failover) must not bring the process down;
  // the pool replaces it on the next checkout.
  pool.on('error', (err) => log.warn('postgres idle connection lost', { error: err.message }));
  return pool;
}

module.exports = { createPool };
