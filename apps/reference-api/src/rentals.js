'use strict';
// A rental of a power bank: written through the pool, read cache-aside through Redis.
const log = require('./log');

const COLUMNS = 'id, station_code, power_bank_serial, customer_phone, payment_provider, created_at';
const FIELDS = {
  station_code: /^[A-Z0-9][A-Z0-9-]{0,31}$/,
  power_bank_serial: /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/,
  // E.164, the form the mobile money providers take.
  customer_phone: /^\+[1-9][0-9]{7,14}$/,
};
const ID = /^[1-9][0-9]{0,15}$/;

class InputError extends Error {}

function validate(body, providers) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new InputError('the body must be a JSON object');
  }
  const known = new Set([...Object.keys(FIELDS), 'payment_provider']);
  const unknown = Object.keys(body).filter((key) => !known.has(key));
  if (unknown.length) throw new InputError(`unknown field(s): ${unknown.join(', ')}`);
  for (const [name, pattern] of Object.entries(FIELDS)) {
    if (typeof body[name] !== 'string' || !pattern.test(body[name])) {
      throw new InputError(`${name} is missing or malformed`);
    }
  }
  const provider = body.payment_provider ?? null;
  if (provider !== null && (typeof provider !== 'string' || (providers.length && !providers.includes(provider)))) {
    throw new InputError(`payment_provider must be one of: ${providers.join(', ') || 'any string'}`);
  }
  return [body.station_code, body.power_bank_serial, body.customer_phone, provider];
}

function present(row) {
  return { ...row, id: Number(row.id), created_at: new Date(row.created_at).toISOString() };
}

function createRentals({ config, pool, redis }) {
  const key = (id) => `rental:${id}`;

  async function cached(id, requestId) {
    try {
      const value = await redis.client.get(key(id));
      return value === null ? null : JSON.parse(value);
    } catch (err) {
      log.warn('cache read skipped', { request_id: requestId, error: err.message });
      return null;
    }
  }

  async function remember(rental, requestId) {
    try {
      await redis.client.set(key(rental.id), JSON.stringify(rental), { EX: config.cacheTtlSeconds });
    } catch (err) {
      log.warn('cache write skipped', { request_id: requestId, error: err.message });
    }
  }

  return {
    async create(body) {
      const values = validate(body, config.market.mobile_money_providers);
      const { rows } = await pool.query(
        `INSERT INTO rentals (station_code, power_bank_serial, customer_phone, payment_provider)
         VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`, values);
      return present(rows[0]);
    },
    // { rental, cache: 'hit' | 'miss' }, rental null when there is none.
    async read(id, requestId) {
      if (!ID.test(id)) throw new InputError('the id must be a positive integer');
      const hit = await cached(id, requestId);
      if (hit) return { rental: hit, cache: 'hit' };
      const { rows } = await pool.query(`SELECT ${COLUMNS} FROM rentals WHERE id = $1`, [id]);
      if (!rows.length) return { rental: null, cache: 'miss' };
      const rental = present(rows[0]);
      await remember(rental, requestId);
      return { rental, cache: 'miss' };
    },
  };
}

module.exports = { createRentals, InputError };
