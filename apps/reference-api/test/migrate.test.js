'use strict';
// `npm run migrate` on a database of its own: the first run creates the tables, the second changes
// nothing, an edited migration is refused.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { ROOT, env, pgClient } = require('./helpers');

const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const database = `refapi_migrate_${crypto.randomBytes(4).toString('hex')}`;
let admin;
let url;

function migrate(extra = {}) {
  return new Promise((resolve) => {
    execFile(NPM, ['run', '--silent', 'migrate'], { cwd: ROOT, env: env({ DATABASE_URL: url, ...extra }) },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

const logged = (stdout) => stdout.trim().split('\n').map((line) => JSON.parse(line));

test.before(async () => {
  admin = await pgClient();
  await admin.query(`CREATE DATABASE ${database}`);
  const parsed = new URL(process.env.DATABASE_URL);
  parsed.pathname = `/${database}`;
  url = parsed.toString();
});
test.after(async () => {
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.end();
});

test('migrate creates the tables once; a second run is a no-op', async () => {
  const first = await migrate();
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.deepEqual(logged(first.stdout).map((l) => l.msg), ['migration applied', 'migrations done']);

  const db = await pgClient(database);
  try {
    const before = (await db.query('SELECT name, checksum, applied_at FROM schema_migrations ORDER BY name')).rows;
    assert.deepEqual(before.map((r) => r.name), ['001_rentals.sql']);
    const tables = (await db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).rows;
    assert.deepEqual(tables.map((r) => r.tablename), ['rentals', 'schema_migrations']);

    const second = await migrate();
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.deepEqual(logged(second.stdout), [{ ...logged(second.stdout)[0], msg: 'schema up to date', applied: 0 }]);
    const after = (await db.query('SELECT name, checksum, applied_at FROM schema_migrations ORDER BY name')).rows;
    assert.deepEqual(after, before);
  } finally {
    await db.end();
  }
});

test('two runs at once (two app hosts) apply each migration once and both succeed', async () => {
  const fresh = `${database}_twice`;
  await admin.query(`CREATE DATABASE ${fresh}`);
  const parsed = new URL(url);
  parsed.pathname = `/${fresh}`;
  try {
    const runs = await Promise.all([1, 2].map(() => migrate({ DATABASE_URL: parsed.toString() })));
    for (const run of runs) assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(runs.flatMap((run) => logged(run.stdout)).filter((l) => l.msg === 'migration applied').length, 1);
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${fresh} WITH (FORCE)`);
  }
});

test('migrate refuses a migration edited after it was applied, naming it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'refapi-migrations-'));
  try {
    for (const name of fs.readdirSync(path.join(ROOT, 'migrations'))) {
      fs.copyFileSync(path.join(ROOT, 'migrations', name), path.join(dir, name));
    }
    fs.appendFileSync(path.join(dir, '001_rentals.sql'), '-- edited\n');
    const res = await migrate({ MIGRATIONS_DIR: dir });
    assert.equal(res.code, 1);
    assert.match(res.stdout, /Cannot migrate: 001_rentals.sql was changed after it was applied/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a failing migration is rolled back and not recorded', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'refapi-migrations-'));
  try {
    for (const name of fs.readdirSync(path.join(ROOT, 'migrations'))) {
      fs.copyFileSync(path.join(ROOT, 'migrations', name), path.join(dir, name));
    }
    fs.writeFileSync(path.join(dir, '999_broken.sql'), 'CREATE TABLE half_done (id int);\nSELECT no_such_function();\n');
    const res = await migrate({ MIGRATIONS_DIR: dir });
    assert.equal(res.code, 1);
    assert.match(res.stdout, /Cannot migrate: 999_broken.sql failed: function no_such_function\(\) does not exist/);
    const db = await pgClient(database);
    try {
      assert.equal((await db.query("SELECT to_regclass('half_done') AS t")).rows[0].t, null);
      assert.equal((await db.query("SELECT count(*)::int AS n FROM schema_migrations WHERE name = '999_broken.sql'")).rows[0].n, 0);
    } finally {
      await db.end();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('migrate needs only DATABASE_URL, and names it when it is missing', async () => {
  const res = await migrate({ REDIS_URL: '', DATABASE_URL: '' });
  assert.equal(res.code, 78);
  assert.match(res.stdout, /Cannot start reference-api: DATABASE_URL is not set/);
});
