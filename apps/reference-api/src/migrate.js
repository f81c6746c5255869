'use strict';
// `npm run migrate`: applies migrations/NNN_name.sql in order, each in its own transaction, and
// records it in schema_migrations with its checksum. Idempotent (applied files are skipped), safe
// to run from two hosts at once, through PgBouncer too (a transaction-level advisory lock
// serialises them), and it refuses to go on when an
// applied file has changed since (a migration is never edited, a new one is added).
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('pg');
const config = require('./config');
const log = require('./log');

const DIR = path.join(__dirname, '..', 'migrations');
const FILE = /^(\d{3,})_[a-z0-9_]+\.sql$/;
// Any constant of our own: pg_advisory_lock(bigint) is shared by every client of the database.
const LOCK_KEY = 4211160016;

function migrations(dir = DIR) {
  return fs.readdirSync(dir).filter((name) => FILE.test(name)).sort().map((name) => {
    const sql = fs.readFileSync(path.join(dir, name), 'utf8');
    return { name, sql, checksum: crypto.createHash('sha256').update(sql).digest('hex') };
  });
}

async function migrate(connectionString, dir = DIR) {
  const client = new Client({ connectionString });
  await client.connect();
  // Transaction-level locks only: through PgBouncer's transaction pooling a session lock stays with
  // the server connection after this client has gone, and every later migration (another app
  // host's, the next release's) waits on it until PgBouncer closes that connection.
  const locked = async (work) => {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
      const result = await work();
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    }
  };
  const applied = [];
  try {
    await locked(() => client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`));
    for (const m of migrations(dir)) {
      // Under the lock, so that of two runs at once only the first applies it.
      const done = await locked(async () => {
        const { rows } = await client.query('SELECT checksum FROM schema_migrations WHERE name = $1', [m.name]);
        if (rows.length) {
          if (rows[0].checksum !== m.checksum) {
            throw new Error(`Cannot migrate: ${m.name} was changed after it was applied (add a new migration instead)`);
          }
          return true;
        }
        try {
          await client.query(m.sql);
        } catch (err) {
          throw new Error(`Cannot migrate: ${m.name} failed: ${err.message}`);
        }
        await client.query('INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)', [m.name, m.checksum]);
        return false;
      });
      if (!done) {
        applied.push(m.name);
        log.info('migration applied', { migration: m.name });
      }
    }
  } finally {
    await client.end();
  }
  return applied;
}

if (require.main === module) {
  // Only the database: a migration needs nothing else from the API's environment.
  let database;
  try {
    database = config.database(process.env);
  } catch (err) {
    log.error(err.message);
    process.exit(78);
  }
  migrate(database.connectionString, process.env.MIGRATIONS_DIR || DIR).then((applied) => {
    log.info(applied.length ? 'migrations done' : 'schema up to date', { applied: applied.length });
  }, (err) => {
    log.error(err.message.startsWith('Cannot') ? err.message : `Cannot migrate: ${err.message}`);
    process.exit(1);
  });
}

module.exports = { migrate, migrations };
