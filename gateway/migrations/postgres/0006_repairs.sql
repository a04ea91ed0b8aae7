-- Taps arrive out of order (offline gates upload hours later): a rider's journeys are re-paired
-- from the facts of their movement (docs/taps.md, "Late and offline taps").
--
-- An exit whose entry is not known is a journey of its own: its entry columns are empty and
-- entry_at_ms is the exit's scan time (the journey's place in the rider's day).
ALTER TABLE journeys
    ALTER COLUMN entry_terminal_id DROP NOT NULL,
    ALTER COLUMN entry_sequence DROP NOT NULL,
    ALTER COLUMN entry_location_id DROP NOT NULL;
-- A journey the facts no longer make (its taps now belong to other journeys) is void, kept for
-- the record with its charge cancelled or corrected.
ALTER TABLE journeys DROP CONSTRAINT journeys_status_check;
ALTER TABLE journeys ADD CONSTRAINT journeys_status_check CHECK (status IN ('open', 'closed', 'void'));
ALTER TABLE journeys ADD CONSTRAINT journeys_entry_or_exit
    CHECK (entry_terminal_id IS NOT NULL OR exit_terminal_id IS NOT NULL);
-- A tap is the entry or exit of at most one journey that stands: across writers and nodes, two
-- re-pairings (or a re-pairing and a live tap) cannot both place it.
CREATE UNIQUE INDEX journeys_entry_once ON journeys (entry_terminal_id, entry_sequence)
    WHERE status <> 'void' AND entry_terminal_id IS NOT NULL;
CREATE UNIQUE INDEX journeys_exit_once ON journeys (exit_terminal_id, exit_sequence)
    WHERE status <> 'void' AND exit_terminal_id IS NOT NULL;

-- A further deduction for a journey whose charge was captured before a late tap raised its fare.
ALTER TABLE charges ADD COLUMN corrects_journey_id BIGINT;
CREATE INDEX charges_corrections ON charges (corrects_journey_id) WHERE corrects_journey_id IS NOT NULL;

-- Riders whose journeys are to be re-paired from `from_ms` (a scan time) on: written with the
-- late facts, deleted by the repair that pairs them. A row left behind (a crash, a charge in
-- flight) is picked up by the sweeper.
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
