-- Taps arrive out of order (offline gates upload hours later): a rider's journeys are re-paired
-- from the facts of their movement (docs/taps.md, "Late and offline taps"). See PostgreSQL's
-- 0006 for what each change is for; SQLite cannot drop NOT NULL or a CHECK, so journeys is
-- rebuilt.
CREATE TABLE journeys_v6 (
    journey_id          BIGINT PRIMARY KEY,
    rider_id            BIGINT NOT NULL,
    credential_id       BIGINT NOT NULL,
    operator_id         TEXT NOT NULL REFERENCES operators (operator_id),
    mode                TEXT NOT NULL CHECK (mode IN ('metro', 'toll')),
    status              TEXT NOT NULL CHECK (status IN ('open', 'closed', 'void')),
    entry_terminal_id   TEXT,
    entry_sequence      BIGINT,
    entry_location_id   TEXT,
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
    closed_at_ms        BIGINT,
    CHECK (entry_terminal_id IS NOT NULL OR exit_terminal_id IS NOT NULL)
);
INSERT INTO journeys_v6 SELECT * FROM journeys;
DROP TABLE journeys;
ALTER TABLE journeys_v6 RENAME TO journeys;
CREATE UNIQUE INDEX journeys_one_open ON journeys (rider_id, mode) WHERE status = 'open';
CREATE INDEX journeys_by_rider ON journeys (rider_id, entry_at_ms);
CREATE INDEX journeys_open_by_entry ON journeys (entry_at_ms) WHERE status = 'open';
-- A tap is the entry or exit of at most one journey that stands: across writers and nodes, two
-- re-pairings (or a re-pairing and a live tap) cannot both place it.
CREATE UNIQUE INDEX journeys_entry_once ON journeys (entry_terminal_id, entry_sequence)
    WHERE status <> 'void' AND entry_terminal_id IS NOT NULL;
CREATE UNIQUE INDEX journeys_exit_once ON journeys (exit_terminal_id, exit_sequence)
    WHERE status <> 'void' AND exit_terminal_id IS NOT NULL;

ALTER TABLE charges ADD COLUMN corrects_journey_id BIGINT;
CREATE INDEX charges_corrections ON charges (corrects_journey_id) WHERE corrects_journey_id IS NOT NULL;

CREATE TABLE rider_repairs (
    rider_id      BIGINT NOT NULL,
    mode          TEXT NOT NULL CHECK (mode IN ('metro', 'toll')),
    from_ms       BIGINT NOT NULL,
    queued_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (rider_id, mode)
);

-- Offline taps the gate admitted that no journey holds yet (an exit before its entry arrived, an
-- entry during an open journey): kept here until the repair pairs them into journeys.
CREATE TABLE tap_facts (
    terminal_id     TEXT NOT NULL,
    sequence        BIGINT NOT NULL,
    rider_id        BIGINT NOT NULL,
    credential_id   BIGINT NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('metro', 'toll')),
    operator_id     TEXT NOT NULL,
    location_id     TEXT NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('entry', 'exit')),
    scanned_at_ms   BIGINT NOT NULL,
    vehicle_class   TEXT,
    PRIMARY KEY (terminal_id, sequence)
);
CREATE INDEX tap_facts_by_rider ON tap_facts (rider_id, mode);
