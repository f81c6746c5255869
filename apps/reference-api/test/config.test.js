'use strict';
// The environment's parsing alone: no server needed.
const test = require('node:test');
const assert = require('node:assert/strict');
const config = require('../src/config');

const BASE = {
  DATABASE_URL: 'postgresql://app:s3cret-pw@db.internal:6432/chajipoa?sslmode=verify-full&sslrootcert=/etc/chajipoa/postgres-ca.crt&connection_limit=20&pool_timeout=20',
  REDIS_URL: 'rediss://app:r3dis-pw@10.0.0.5:6379',
};

test('the guide\'s pool parameters size the pool and are not passed to pg', () => {
  const { database } = config.load(BASE);
  assert.equal(database.poolSize, 20);
  assert.equal(database.acquireTimeoutMs, 20000);
  const url = new URL(database.connectionString);
  assert.equal(url.searchParams.get('connection_limit'), null);
  assert.equal(url.searchParams.get('pool_timeout'), null);
  assert.equal(url.searchParams.get('sslmode'), 'verify-full');
  assert.equal(url.searchParams.get('sslrootcert'), '/etc/chajipoa/postgres-ca.crt');
  assert.equal(database.target, 'db.internal:6432/chajipoa');
});

test('defaults: 127.0.0.1:3000, a pool of 10, the package version', () => {
  const settings = config.load({ DATABASE_URL: 'postgresql://u:p@h/d', REDIS_URL: 'redis://h' });
  assert.equal(settings.host, '127.0.0.1');
  assert.equal(settings.port, 3000);
  assert.equal(settings.database.poolSize, 10);
  assert.equal(settings.version, require('../package.json').version);
  assert.equal(settings.mongodb, null);
  assert.equal(config.load({ ...BASE, APP_VERSION: '2.4.1' }).version, '2.4.1');
});

test('the market settings come from the environment', () => {
  const { market } = config.load({
    ...BASE, APP_LOCALE: 'sw_TZ', APP_CURRENCY: 'TZS', APP_VAT_PERCENT: '18', TZ: 'Africa/Dar_es_Salaam',
    PAYMENT_GATEWAY: 'azampay', MOBILE_MONEY_PROVIDERS: 'mpesa, tigopesa,airtelmoney,halopesa',
  });
  assert.deepEqual(market, {
    locale: 'sw_TZ', currency: 'TZS', vat_percent: 18, timezone: 'Africa/Dar_es_Salaam',
    payment_gateway: 'azampay', mobile_money_providers: ['mpesa', 'tigopesa', 'airtelmoney', 'halopesa'],
  });
});

const FAULTS = [
  [{ DATABASE_URL: undefined }, /DATABASE_URL is not set/],
  [{ DATABASE_URL: 'mysql://u:s3cret-pw@h/d' }, /DATABASE_URL must start with postgresql:/],
  [{ DATABASE_URL: 'postgresql://u:s3cret-pw@h/d?connection_limit=0' }, /DATABASE_URL connection_limit/],
  [{ DATABASE_URL: 'postgresql://u:s3cret-pw@h/d?pool_timeout=soon' }, /DATABASE_URL pool_timeout/],
  [{ REDIS_URL: undefined }, /REDIS_URL is not set/],
  [{ REDIS_URL: 'http://app:r3dis-pw@h' }, /REDIS_URL must start with redis:/],
  [{ REDIS_URL: 'rediss://app:r3dis-pw@[::1' }, /REDIS_URL is not a URL/],
  [{ PORT: '70000' }, /PORT must be an integer/],
  [{ HOST: '127.0.0.1\nX' }, /HOST must be/],
  [{ APP_VAT_PERCENT: '18%' }, /APP_VAT_PERCENT must be a number/],
  [{ JWT_SECRET: 'short' }, /JWT_SECRET must be at least 32/],
  [{ NODE_ENV: 'production' }, /JWT_SECRET is not set/],
  [{ MONGODB_URL: 'postgresql://x' }, /MONGODB_URL must start with mongodb:/],
];
for (const [change, message] of FAULTS) {
  test(`a fault names its variable and hides the value: ${Object.keys(change)[0]} ${message}`, () => {
    const env = { ...BASE, ...change };
    for (const [k, v] of Object.entries(change)) if (v === undefined) delete env[k];
    assert.throws(() => config.load(env), (err) => {
      assert.ok(err instanceof config.ConfigError);
      assert.match(err.message, /^Cannot start reference-api: /);
      assert.match(err.message, message);
      assert.doesNotMatch(err.message, /s3cret-pw|r3dis-pw/);
      return true;
    });
  });
}
