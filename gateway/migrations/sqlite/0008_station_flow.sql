-- Live passenger flow (docs/flow.md): approved entries and exits per operator, station (a
-- terminal's location) and UTC minute of the scan, kept by the tap writers in the transaction
-- of each tap group — one aggregated upsert per group, from the taps that group inserted (a
-- repeated or deduplicated tap is never inserted, so it never counts twice). Reads are keyed
-- ranges of this table; no request scans `taps`. A station's minute is spread over a few rows
-- (`shard`, chosen per group) so that concurrent groups on several writers and nodes do not
-- queue for one row lock through each other's commits; reads add the shards up.
CREATE TABLE station_flow (
    operator_id  TEXT NOT NULL,
    location_id  TEXT NOT NULL,
    -- Unix minutes (scanned_at_ms / 60000, rounded down).
    minute       BIGINT NOT NULL,
    entries      BIGINT NOT NULL CHECK (entries >= 0),
    exits        BIGINT NOT NULL CHECK (exits >= 0),
    shard        BIGINT NOT NULL CHECK (shard >= 0),
    PRIMARY KEY (operator_id, location_id, minute, shard)
);
-- The stations answer reads one operator's recent minutes across all its stations.
CREATE INDEX station_flow_by_minute ON station_flow (operator_id, minute);

-- Punctuality (GTFS-Realtime TripUpdates uploaded by the operator): the latest delay seen per
-- stop, replaced by each upload.
CREATE TABLE stop_delays (
    operator_id      TEXT NOT NULL,
    stop_id          TEXT NOT NULL,
    delay_s          BIGINT NOT NULL,
    trip_id          TEXT,
    feed_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (operator_id, stop_id)
);
