-- Gateway core schema (SQLite). Times are UTC Unix milliseconds (BIGINT); money is integer
-- minor units (fen) with an ISO 4217 currency column; ids are random positive 63-bit integers.
-- Every uniqueness the gateway relies on across nodes is a constraint here.

CREATE TABLE operators (
    operator_id      TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    mode             TEXT NOT NULL CHECK (mode IN ('metro', 'toll')),
    time_zone        TEXT NOT NULL,
    currency         TEXT NOT NULL,
    daily_cap_minor  BIGINT CHECK (daily_cap_minor IS NULL OR daily_cap_minor > 0),
    created_at_ms    BIGINT NOT NULL
);

-- Fare data as loaded through the admin API; the newest version per operator is in force.
CREATE TABLE fare_data (
    operator_id   TEXT NOT NULL REFERENCES operators (operator_id),
    version       BIGINT NOT NULL,
    format        TEXT NOT NULL CHECK (format IN ('gtfs', 'matrix', 'toll', 'demo_metro', 'demo_toll')),
    files_json    TEXT NOT NULL,
    loaded_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (operator_id, version)
);

CREATE TABLE terminals (
    terminal_id    TEXT PRIMARY KEY,
    operator_id    TEXT NOT NULL REFERENCES operators (operator_id),
    location_id    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at_ms  BIGINT NOT NULL,
    changed_at_ms  BIGINT NOT NULL
);

-- Key ring: 'next' is published to gates and accepted but signs nothing yet; 'current' signs new
-- credentials; 'previous' still verifies; 'retired' does neither.
CREATE TABLE issuer_keys (
    key_id           BIGINT PRIMARY KEY CHECK (key_id BETWEEN 1 AND 65535),
    pkcs8            BLOB NOT NULL,
    public_key       BLOB NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('next', 'current', 'previous', 'retired')),
    created_at_ms    BIGINT NOT NULL,
    activated_at_ms  BIGINT
);
CREATE UNIQUE INDEX issuer_keys_one_current ON issuer_keys (status) WHERE status = 'current';
CREATE UNIQUE INDEX issuer_keys_one_next ON issuer_keys (status) WHERE status = 'next';

CREATE TABLE riders (
    rider_id       BIGINT PRIMARY KEY,
    token_sha256   BLOB NOT NULL UNIQUE,
    created_at_ms  BIGINT NOT NULL
);

CREATE TABLE credentials (
    credential_id      BIGINT PRIMARY KEY,
    rider_id           BIGINT NOT NULL REFERENCES riders (rider_id),
    device_public_key  BLOB NOT NULL,
    issuer_key_id      BIGINT NOT NULL REFERENCES issuer_keys (key_id),
    products           BIGINT NOT NULL,
    valid_from_s       BIGINT NOT NULL,
    valid_until_s      BIGINT NOT NULL,
    issued_at_ms       BIGINT NOT NULL
);
CREATE INDEX credentials_by_rider ON credentials (rider_id);

CREATE TABLE deny_list (
    subject_kind   TEXT NOT NULL CHECK (subject_kind IN ('credential', 'rider')),
    subject_id     BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    added_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (subject_kind, subject_id)
);

CREATE TABLE journeys (
    journey_id          BIGINT PRIMARY KEY,
    rider_id            BIGINT NOT NULL,
    credential_id       BIGINT NOT NULL,
    operator_id         TEXT NOT NULL REFERENCES operators (operator_id),
    mode                TEXT NOT NULL CHECK (mode IN ('metro', 'toll')),
    status              TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    entry_terminal_id   TEXT NOT NULL,
    entry_sequence      BIGINT NOT NULL,
    entry_location_id   TEXT NOT NULL,
    entry_at_ms         BIGINT NOT NULL,
    exit_terminal_id    TEXT,
    exit_sequence       BIGINT,
    exit_location_id    TEXT,
    exit_at_ms          BIGINT,
    vehicle_class       TEXT,
    close_reason        TEXT CHECK (close_reason IN ('exit', 'same_station', 'incomplete')),
    fare_minor          BIGINT,
    charge_minor        BIGINT,
    currency            TEXT,
    business_day        TEXT,
    closed_at_ms        BIGINT
);
-- Pass-back protection across every node: at most one open journey per rider and mode.
CREATE UNIQUE INDEX journeys_one_open ON journeys (rider_id, mode) WHERE status = 'open';
CREATE INDEX journeys_by_rider ON journeys (rider_id, entry_at_ms);
CREATE INDEX journeys_open_by_entry ON journeys (entry_at_ms) WHERE status = 'open';

-- Per rider and business day, for the daily cap: the order-independent running total.
CREATE TABLE rider_days (
    rider_id            BIGINT NOT NULL,
    operator_id         TEXT NOT NULL,
    business_day        TEXT NOT NULL,
    fares_total_minor   BIGINT NOT NULL,
    PRIMARY KEY (rider_id, operator_id, business_day)
);

-- Every tap a terminal sent, approved or declined: the idempotency record and the audit trail.
CREATE TABLE taps (
    terminal_id        TEXT NOT NULL,
    sequence           BIGINT NOT NULL,
    request_sha256     BLOB NOT NULL,
    direction          TEXT NOT NULL CHECK (direction IN ('entry', 'exit')),
    scanned_at_ms      BIGINT NOT NULL,
    received_at_ms     BIGINT NOT NULL,
    code_fingerprint   BLOB,
    rider_id           BIGINT,
    credential_id      BIGINT,
    decision           TEXT NOT NULL CHECK (decision IN ('approve', 'decline')),
    reason             TEXT,
    journey_id         BIGINT,
    response           BLOB NOT NULL,
    PRIMARY KEY (terminal_id, sequence)
);

-- A ride code is consumed once per direction, across all gates and nodes.
CREATE TABLE code_uses (
    code_fingerprint  BLOB NOT NULL,
    direction         TEXT NOT NULL CHECK (direction IN ('entry', 'exit')),
    terminal_id       TEXT NOT NULL,
    sequence          BIGINT NOT NULL,
    PRIMARY KEY (code_fingerprint, direction)
);
