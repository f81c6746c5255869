'use strict';
// GET /metrics against the real PostgreSQL and Redis: the text is what Prometheus's own parser
// accepts (promtool check metrics), the names are docs/monitoring.md's contract, and the values move
// with real requests and a real pool.
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const test = require('node:test');
const assert = require('node:assert/strict');
const { ROOT, request, startApp, spawnServer, until } = require('./helpers');
const { DURATION_BUCKETS } = require('../src/metrics');

// tests/integration/test_reference_api.py runs these tests on a copy of the app, away from docs/.
const MONITORING_DOC = process.env.MONITORING_DOC || path.join(ROOT, '..', '..', 'docs', 'monitoring.md');
// The contract's labels for the metrics the API defines itself (prom-client's defaults are its own).
const OWN_LABELS = {
  http_request_duration_seconds: ['method', 'route', 'status_code'],
  chajipoa_db_pool_connections: ['state'],
  chajipoa_db_pool_max: [],
};

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const HELP_LINE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_LINE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
const SUFFIXES = { histogram: ['_bucket', '_sum', '_count'], summary: ['_sum', '_count', ''], counter: [''], gauge: [''], untyped: [''] };

// As Prometheus reads a value (Go's ParseFloat): NaN and Inf in any case (prom-client writes "Nan").
function number(text) {
  if (/^nan$/i.test(text)) return NaN;
  if (/^[+-]?inf(inity)?$/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  const value = Number(text);
  if (Number.isNaN(value)) throw new Error(`not a sample value: ${text}`);
  return value;
}

function labelsOf(text, line) {
  const labels = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const m = LABEL.exec(text);
    if (!m) throw new Error(`malformed labels: ${line}`);
    if (m[1] in labels) throw new Error(`label ${m[1]} repeated: ${line}`);
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

// The text format, strictly: every line a HELP, a TYPE or a sample of a family typed before it.
function parse(text) {
  const families = new Map();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = HELP_LINE.exec(line))) continue;
    if ((m = TYPE_LINE.exec(line))) {
      if (families.has(m[1])) throw new Error(`family typed twice: ${line}`);
      families.set(m[1], { type: m[2], samples: [] });
      continue;
    }
    if (!(m = SAMPLE_LINE.exec(line))) throw new Error(`not a line of the text format: ${line}`);
    const [, name, labelText = '', value] = m;
    const owner = [...families].find(([family, { type }]) => SUFFIXES[type].some((s) => `${family}${s}` === name));
    if (!owner) throw new Error(`sample of no typed family: ${line}`);
    owner[1].samples.push({ name, labels: labelsOf(labelText, line), value: number(value) });
  }
  return families;
}

// Prometheus's own parser and linter: exit 1 is a parse error, 3 lint problems. prom-client's
// default gauges named *_total are its authors' choice; the API's own metrics must lint clean.
function promtoolCheck(text) {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (result.error) {
    throw new Error(`Cannot run promtool: ${result.error.message} (lab/test-deps.sh installs it)`);
  }
  const output = `${result.stdout}${result.stderr}`;
  assert.ok(result.status === 0 || result.status === 3, `promtool check metrics exited ${result.status}:\n${output}`);
  for (const problem of output.split('\n').filter(Boolean)) {
    assert.ok(!Object.keys(OWN_LABELS).some((name) => problem.startsWith(name)), `promtool: ${problem}`);
  }
}

async function scrape(base) {
  const res = await request(base, 'GET', '/metrics');
  assert.equal(res.status, 200, res.text);
  assert.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4; charset=utf-8$/);
  return parse(res.text);
}

function value(families, name, labels = {}) {
  const family = families.get(name.replace(/_(bucket|sum|count)$/, '')) || families.get(name);
  const found = family.samples.filter((s) => s.name === name
    && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} series`);
  return found.length ? found[0].value : 0;
}

function requestCounts(families) {
  const counts = {};
  for (const s of families.get('http_request_duration_seconds').samples) {
    if (s.name !== 'http_request_duration_seconds_count') continue;
    counts[`${s.labels.method} ${s.labels.route} ${s.labels.status_code}`] = s.value;
  }
  return counts;
}

// docs/monitoring.md's table "The API's metrics": each row's backticked names and its type.
function contractMetrics() {
  const doc = fs.readFileSync(MONITORING_DOC, 'utf8');
  const section = doc.split(/^### /m).find((s) => s.startsWith("The API's metrics"));
  assert.ok(section, `${MONITORING_DOC} has no section "The API's metrics"`);
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  return rows.flatMap((row) => {
    const [names, type] = row.split('|').slice(1, 3);
    const declared = type.trim().split(' ')[0];
    return [...names.matchAll(/`([a-z_:]+)`/g)].map((m) => [m[1], declared === 'prom-client' ? null : declared]);
  });
}

let app;
test.beforeEach(async () => { app = await startApp(); });
test.afterEach(async () => { await app.close(); });

test('GET /metrics answers the contract of docs/monitoring.md in the Prometheus text format', async () => {
  const res = await request(app.base, 'GET', '/metrics');
  promtoolCheck(res.text);
  const families = await scrape(app.base);

  const contract = contractMetrics();
  assert.ok(contract.length >= 4, `the contract's table lists ${contract.length} metrics`);
  for (const [name, type] of contract) {
    assert.ok(families.has(name), `${name} (docs/monitoring.md) is not exported`);
    if (type) assert.equal(families.get(name).type, type, name);
  }
  assert.ok([...families.keys()].some((name) => name.startsWith('nodejs_')), "prom-client's nodejs_* metrics");

  // A request, so that the histogram has a series whose labels can be compared with the contract.
  await request(app.base, 'GET', '/api/version');
  const after = await scrape(app.base);
  for (const [name, labels] of Object.entries(OWN_LABELS)) {
    const samples = after.get(name).samples;
    assert.ok(samples.length > 0, `${name} has samples`);
    for (const s of samples) {
      const expected = s.name.endsWith('_bucket') ? [...labels, 'le'].sort() : labels;
      assert.deepEqual(Object.keys(s.labels).sort(), expected, `${s.name} ${JSON.stringify(s.labels)}`);
    }
  }
  const edges = after.get('http_request_duration_seconds').samples
    .filter((s) => s.name.endsWith('_bucket')).map((s) => s.labels.le);
  for (const edge of [0.05, 0.1, 0.2, 0.5, 1, 2, 5]) {
    assert.ok(DURATION_BUCKETS.includes(edge) && edges.includes(String(edge)), `bucket le="${edge}"`);
  }
});

test('requests are counted by method, route pattern and status code; unknown paths as "unmatched"; scrapes not at all', async () => {
  const made = [
    ['GET', '/api/rentals/999999991', 'GET /api/rentals/:id 404'],
    ['GET', '/api/rentals/999999992', 'GET /api/rentals/:id 404'],
    ['GET', '/api/rentals/abc', 'GET /api/rentals/:id 400'],
    ['GET', '/api/health', 'GET /api/health 200'],
    ['POST', '/api/rentals', 'POST /api/rentals 400'],
    ['GET', '/api/nothing/123', 'GET unmatched 404'],
    ['DELETE', '/api/rentals/5', 'DELETE unmatched 404'],
  ];
  const before = await scrape(app.base);
  assert.deepEqual(requestCounts(before), {}, 'a new app has counted nothing (not even its scrape)');
  for (const [method, urlPath] of made) {
    // POST with a body that is not JSON: refused by the route's own parser, so still the route's.
    const body = method === 'POST' ? '{"station_code": ' : undefined;
    await request(app.base, method, urlPath, { body });
  }
  await scrape(app.base);
  const after = await scrape(app.base);

  const expected = {};
  for (const [, , key] of made) expected[key] = (expected[key] || 0) + 1;
  assert.deepEqual(requestCounts(after), expected);
  const routes = new Set(after.get('http_request_duration_seconds').samples.map((s) => s.labels.route));
  assert.deepEqual([...routes].sort(), ['/api/health', '/api/rentals', '/api/rentals/:id', 'unmatched']);

  // Cumulative buckets ending at +Inf = _count, per series.
  const labels = { method: 'GET', route: '/api/rentals/:id', status_code: '404' };
  let previous = 0;
  for (const le of [...DURATION_BUCKETS.map(String), '+Inf']) {
    const count = value(after, 'http_request_duration_seconds_bucket', { ...labels, le });
    assert.ok(count >= previous, `bucket le="${le}" is cumulative`);
    previous = count;
  }
  assert.equal(previous, 2);
  assert.ok(value(after, 'http_request_duration_seconds_sum', labels) > 0);

  await request(app.base, 'GET', '/api/rentals/999999993');
  const again = await scrape(app.base);
  assert.equal(value(again, 'http_request_duration_seconds_count', labels), 3);
});

test('the pool gauges are the pool at scrape time; a request its client gave up on is timed as 499', async () => {
  await app.close();
  const url = new URL(process.env.DATABASE_URL);
  // pool_timeout 0: a request waits for a connection for as long as it takes.
  url.searchParams.set('connection_limit', '2');
  url.searchParams.set('pool_timeout', '0');
  app = await startApp({ DATABASE_URL: url.toString() });
  const pool = (families) => ['total', 'idle', 'waiting', 'max'].map((state) => (state === 'max'
    ? value(families, 'chajipoa_db_pool_max') : value(families, 'chajipoa_db_pool_connections', { state })));

  assert.deepEqual(pool(await scrape(app.base)), [0, 0, 0, 2]);
  const held = new Set([await app.pool.connect(), await app.pool.connect()]);
  const release = (client) => { held.delete(client); client.release(); };
  try {
    assert.deepEqual(pool(await scrape(app.base)), [2, 0, 0, 2]);

    // A read that needs a connection waits for one; its client leaves 400 ms after it is seen waiting.
    const waiting = http.request(`${app.base}/api/rentals/999999977`, { agent: false });
    const gone = new Promise((resolve) => waiting.on('close', resolve));
    waiting.on('error', () => {});
    waiting.end();
    await until('the read to wait for a connection', () => app.pool.waitingCount === 1);
    const seen = Date.now();
    assert.deepEqual(pool(await scrape(app.base)), [2, 0, 1, 2]);
    await new Promise((resolve) => setTimeout(resolve, 400 - (Date.now() - seen)));
    waiting.destroy();
    await gone;
    const labels = { method: 'GET', route: '/api/rentals/:id', status_code: '499' };
    const families = await until('the abandoned request to be counted', async () => {
      const f = await scrape(app.base);
      return value(f, 'http_request_duration_seconds_count', labels) === 1 && f;
    });
    const seconds = value(families, 'http_request_duration_seconds_sum', labels);
    assert.ok(seconds >= 0.4 && seconds < 5, `timed in seconds until the client left: ${seconds}`);
    assert.equal(value(families, 'http_request_duration_seconds_bucket', { ...labels, le: '0.3' }), 0);
    assert.equal(value(families, 'http_request_duration_seconds_bucket', { ...labels, le: '5' }), 1);

    // The waiting read takes the first connection given back.
    release([...held][0]);
    await until('the waiting read to get its connection', () => app.pool.waitingCount === 0 && app.pool.idleCount === 1);
    release([...held][0]);
    assert.deepEqual(pool(await scrape(app.base)), [2, 2, 0, 2]);
    assert.deepEqual(Object.keys(requestCounts(await scrape(app.base))), ['GET /api/rentals/:id 499'], 'counted once');
  } finally {
    // A checked-out client would hold the pool's end(), and with it the test's, forever.
    for (const client of held) release(client);
  }
});

test('node src/server.js serves /metrics on the port of /api', async () => {
  const server = spawnServer();
  try {
    const base = await server.listening;
    assert.equal((await request(base, 'GET', '/api/version')).status, 200);
    const families = await scrape(base);
    assert.equal(value(families, 'http_request_duration_seconds_count', { route: '/api/version', status_code: '200' }), 1);
    assert.ok(value(families, 'process_resident_memory_bytes') > 0);
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
});
