'use strict';
// The API's whole configuration, read once from the environment (the app role renders it as a
// systemd EnvironmentFile). Every fault is reported as "Cannot start reference-api: <VAR> ..." and
// never repeats a value, so a URL's password cannot reach a log through an error message.

const pkg = require('../package.json');

class ConfigError extends Error {}

function fault(name, cause) {
  return new ConfigError(`Cannot start ${pkg.name}: ${name} ${cause}`);
}

function integer(env, name, fallback, min, max) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw fault(name, `must be an integer from ${min} to ${max}`);
  }
  return Number(raw);
}

function url(env, name, protocols, { required = true } = {}) {
  const raw = env[name];
  if (raw === undefined || raw === '') {
    if (required) throw fault(name, 'is not set');
    return null;
  }
  let parsed;
  try {
    parsed = new URL(raw);
  } catch {
    throw fault(name, 'is not a URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw fault(name, `must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  }
  return parsed;
}

// The guide's DATABASE_URL carries the pool's size and acquire timeout as Prisma-style query
// parameters. pg ignores parameters it does not know, so they are read here, applied to the pool
// and taken out of the URL pg sees.
function database(env) {
  const parsed = url(env, 'DATABASE_URL', ['postgresql:', 'postgres:']);
  const params = parsed.searchParams;
  const limit = params.get('connection_limit');
  const timeout = params.get('pool_timeout');
  if (limit !== null && (!/^\d+$/.test(limit) || Number(limit) < 1 || Number(limit) > 1000)) {
    throw fault('DATABASE_URL', 'connection_limit must be an integer from 1 to 1000');
  }
  if (timeout !== null && !/^\d+(\.\d+)?$/.test(timeout)) {
    throw fault('DATABASE_URL', 'pool_timeout must be a number of seconds');
  }
  params.delete('connection_limit');
  params.delete('pool_timeout');
  return {
    connectionString: parsed.toString(),
    poolSize: limit === null ? 10 : Number(limit),
    // 0 waits for a free connection forever, as in the guide's pool_timeout.
    acquireTimeoutMs: timeout === null ? 10000 : Math.round(Number(timeout) * 1000),
    // For the start-up log: where, never who with which password.
    target: `${parsed.hostname}:${parsed.port || 5432}${parsed.pathname}`,
  };
}

function market(env) {
  const vat = env.APP_VAT_PERCENT;
  if (vat !== undefined && vat !== '' && (!/^\d+(\.\d+)?$/.test(vat) || Number(vat) > 100)) {
    throw fault('APP_VAT_PERCENT', 'must be a number from 0 to 100');
  }
  const text = (name) => (env[name] === undefined || env[name] === '' ? null : env[name]);
  const providers = text('MOBILE_MONEY_PROVIDERS');
  return {
    locale: text('APP_LOCALE'),
    currency: text('APP_CURRENCY'),
    vat_percent: vat === undefined || vat === '' ? null : Number(vat),
    timezone: text('TZ') || Intl.DateTimeFormat().resolvedOptions().timeZone,
    payment_gateway: text('PAYMENT_GATEWAY'),
    mobile_money_providers: providers === null ? [] : providers.split(',').map((p) => p.trim()).filter(Boolean),
  };
}

function secrets(env) {
  // Read so that a production unit without them fails at start, not at the first login; the
  // reference API signs nothing itself.
  const production = env.NODE_ENV === 'production';
  for (const name of ['JWT_SECRET', 'JWT_REFRESH_SECRET']) {
    const value = env[name];
    if (value === undefined || value === '') {
      if (production) throw fault(name, 'is not set (required when NODE_ENV=production)');
    } else if (value.length < 32) {
      throw fault(name, 'must be at least 32 characters');
    }
  }
  url(env, 'SENTRY_DSN', ['https:', 'http:'], { required: false });
}

function load(env = process.env) {
  const redis = url(env, 'REDIS_URL', ['redis:', 'rediss:']);
  const mongodb = url(env, 'MONGODB_URL', ['mongodb:', 'mongodb+srv:'], { required: false });
  const host = env.HOST || '127.0.0.1';
  if (!/^[0-9A-Za-z.:-]+$/.test(host)) throw fault('HOST', 'must be an address or a host name');
  secrets(env);
  return {
    name: pkg.name,
    version: env.APP_VERSION || pkg.version,
    host,
    port: integer(env, 'PORT', 3000, 0, 65535),
    database: database(env),
    redis: {
      url: redis.toString(),
      caFile: env.REDIS_CA_FILE || null,
      target: `${redis.hostname}:${redis.port || 6379}`,
    },
    mongodb: mongodb && { url: mongodb.toString(), target: mongodb.host },
    market: market(env),
    // A dependency that does not answer within this is reported down.
    healthTimeoutMs: integer(env, 'HEALTH_TIMEOUT_MS', 2000, 1, 60000),
    cacheTtlSeconds: integer(env, 'CACHE_TTL_SECONDS', 300, 1, 86400),
    // After SIGTERM, in-flight requests get this long before the process gives up on them.
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10000, 1, 600000),
  };
}

module.exports = { load, database, ConfigError };
