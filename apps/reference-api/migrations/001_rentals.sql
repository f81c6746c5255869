-- Rentals of power banks, written by POST /api/rentals.
CREATE TABLE rentals (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_code text NOT NULL CHECK (station_code ~ '^[A-Z0-9][A-Z0-9-]{0,31}$'),
    power_bank_serial text NOT NULL,
    customer_phone text NOT NULL CHECK (customer_phone ~ '^\+[1-9][0-9]{7,14}$'),
    payment_provider text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rentals_power_bank_serial_idx ON rentals (power_bank_serial);
