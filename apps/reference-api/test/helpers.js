'use strict';
// What the tests share: the servers they are given (DATABASE_URL, REDIS_URL, REDIS_CA_FILE, and
// REDIS_CONTROL_URL to stop and start that Redis), an app in this process or in a child process,
// and plain HTTP requests (no connection reuse, so a refused connection is seen as such).
const http = require('node:http');
const path = require('node:path');
const { spawn } = require('node:child_process');
const pg = require('pg');
const config = require('../src/config');
const { createPool } = require('../src/db');
const { createRedis } = require('../src/cache');
const { createApp } = require('../src/app');
const { migrate } = require('../src/migrate');

const ROOT = path.join(__dirname, '..');

for (const name of ['DATABASE_URL', 'REDIS_URL']) {
  if (!process.env[name]) {
    throw new Error(`Cannot run the reference API's tests: ${name} is not set (tests/integration/`
      + 'test_reference_api.py runs them with a PostgreSQL and a Redis of their own)');
  }
}

function env(extra = {}) {
  return { ...process.env, PORT: '0', HOST: '127.0.0.1', ...extra };
}

function request(base, method, urlPath, { body, headers = {} } = {}) {
  const data = body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${urlPath}`, {
      method,
      agent: false,
      headers: { ...(data !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON: the test looks at text */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

async function until(what, fn, timeoutMs = 15000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// The API in this process, listening on a free port, with Redis connected.
async function startApp(extra = {}) {
  const settings = config.load(env(extra));
  await migrate(settings.database.connectionString);
  const pool = createPool(settings.database);
  const redis = createRedis(settings.redis);
  let mongodb = null;
  if (settings.mongodb) {
    const { MongoClient } = require('mongodb');
    mongodb = new MongoClient(settings.mongodb.url, { serverSelectionTimeoutMS: settings.healthTimeoutMs });
  }
  const server = http.createServer(createApp({ config: settings, pool, redis, mongodb }));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  await until('redis to connect', () => redis.client.isReady);
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    settings,
    pool,
    redis,
    async close() {
      await new Promise((resolve) => { server.close(resolve); server.closeAllConnections(); });
      await Promise.allSettled([pool.end(), redis.close(), mongodb && mongodb.close()]);
    },
  };
}

// `node src/server.js` as the unit runs it; resolves once it logged where it listens.
function spawnServer(extra = {}) {
  const child = spawn(process.execPath, ['src/server.js'], { cwd: ROOT, env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let stderr = '';
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  let buffer = '';
  const listening = new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      buffer += chunk;
      let i;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        lines.push(line);
        const entry = JSON.parse(line);
        if (entry.msg === 'listening') resolve(`http://127.0.0.1:${entry.port}`);
      }
    });
    exited.then(({ code }) => reject(new Error(`server exited (${code}) before listening:\n${lines.join('\n')}\n${stderr}`)));
  });
  return { child, lines, stderr: () => stderr, exited, listening, logged: (msg) => lines.some((l) => JSON.parse(l).msg === msg) };
}

// A pg client of the test's own on DATABASE_URL (or another database of the same server).
async function pgClient(database) {
  const { connectionString } = config.database(process.env);
  const url = new URL(connectionString);
  if (database) url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  return client;
}

async function redisControl(action) {
  const base = process.env.REDIS_CONTROL_URL;
  const res = await request(base, 'POST', `/${action}`);
  if (res.status !== 204) throw new Error(`Cannot ${action} Redis through ${base}: ${res.status} ${res.text}`);
}

function secretsOf(environment = process.env) {
  const out = [];
  for (const name of ['DATABASE_URL', 'REDIS_URL']) {
    const password = decodeURIComponent(new URL(environment[name]).password);
    if (password) out.push(password);
  }
  return out;
}

const RENTAL = Object.freeze({ station_code: 'DAR-001', power_bank_serial: 'PB-000123', customer_phone: '+255712345678' });

module.exports = { ROOT, env, request, until, startApp, spawnServer, pgClient, redisControl, secretsOf, RENTAL };
