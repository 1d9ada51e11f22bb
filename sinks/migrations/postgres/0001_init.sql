-- fleetstream's PostgreSQL tables. Amounts are numeric, times timestamptz.

-- How far each sink has written, per topic partition: updated in the same transaction as the
-- rows, so that every record lands exactly once.
CREATE TABLE IF NOT EXISTS fleetstream_sink_offsets (
    sink        text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (sink, topic, partition)
);

-- Every trip event, as published on trip.events.
CREATE TABLE IF NOT EXISTS trip_events (
    event_id      text PRIMARY KEY,
    trip_id       text NOT NULL,
    type          text NOT NULL,
    ts            timestamptz NOT NULL,
    driver_id     text,
    rider_id      text,
    vehicle_class text,
    pickup_lat    double precision,
    pickup_lng    double precision,
    dropoff_lat   double precision,
    dropoff_lng   double precision,
    surge         numeric(4, 1),
    fare          numeric(12, 2),
    distance_km   double precision,
    duration_s    double precision,
    attempt       integer,
    cancelled_by  text,
    reason        text,
    fee           numeric(12, 2)
);
CREATE INDEX IF NOT EXISTS trip_events_by_trip ON trip_events (trip_id, ts);
CREATE INDEX IF NOT EXISTS trip_events_by_driver ON trip_events (driver_id, ts);

-- One row per trip, folded from its events as the live trip view folds them: driver_id is the
-- offered, then matched driver.
CREATE TABLE IF NOT EXISTS trips (
    trip_id       text PRIMARY KEY,
    status        text NOT NULL,
    rider_id      text,
    driver_id     text,
    vehicle_class text,
    pickup_lat    double precision,
    pickup_lng    double precision,
    dropoff_lat   double precision,
    dropoff_lng   double precision,
    requested_at  timestamptz,
    matched_at    timestamptz,
    started_at    timestamptz,
    completed_at  timestamptz,
    cancelled_at  timestamptz,
    cancelled_by  text,
    surge         numeric(4, 1),
    fare          numeric(12, 2),
    distance_km   double precision,
    duration_s    double precision,
    offers        integer NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL
);

-- Double-entry postings; each transaction sums to zero.
CREATE TABLE IF NOT EXISTS ledger_entries (
    entry_id   text PRIMARY KEY,
    txn_id     text NOT NULL,
    account_id text NOT NULL,
    amount     numeric(14, 2) NOT NULL,
    kind       text NOT NULL,
    trip_id    text,
    ts         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_entries_by_account ON ledger_entries (account_id, ts);
CREATE INDEX IF NOT EXISTS ledger_entries_by_txn ON ledger_entries (txn_id);

-- Wallet balances: the sum of each account's postings.
CREATE TABLE IF NOT EXISTS wallet_balances (
    account_id text PRIMARY KEY,
    balance    numeric(14, 2) NOT NULL,
    postings   bigint NOT NULL,
    updated_at timestamptz NOT NULL
);

-- The latest version of every overtime window; only a higher version replaces a row.
CREATE TABLE IF NOT EXISTS overtime_records (
    employee_id       text NOT NULL,
    period            text NOT NULL CHECK (period IN ('day', 'week')),
    period_start      date NOT NULL,
    worked_minutes    integer NOT NULL,
    regular_minutes   integer NOT NULL,
    ot_150_minutes    integer NOT NULL,
    ot_200_minutes    integer NOT NULL,
    weekly_ot_minutes integer NOT NULL,
    night_minutes     integer NOT NULL,
    holiday_minutes   integer NOT NULL,
    flags             text[] NOT NULL,
    version           integer NOT NULL,
    final             boolean NOT NULL,
    event_id          text NOT NULL,
    PRIMARY KEY (employee_id, period, period_start)
);

-- The latest known position of every driver.
CREATE TABLE IF NOT EXISTS driver_locations (
    driver_id     text PRIMARY KEY,
    lat           double precision NOT NULL,
    lng           double precision NOT NULL,
    cell          text NOT NULL,
    status        text,
    vehicle_class text,
    ts            timestamptz NOT NULL,
    event_id      text NOT NULL
);
