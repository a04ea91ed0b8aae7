-- The records behind a statement's gross, refunds and provider-fee figures (the drill-down), as
-- pages of `settlement_record_page_size` records each instead of one row per record: a city's
-- day is ten million records, and ten million indexed rows take longer to write than the whole
-- run may (docs/settlement.md, "Storage at scale"). A page's body is CSV lines
-- `reference,class,amount_minor,fee_minor,detail`, in the gateway export's order.
-- A run's pages are the current ones once its row of settlement_record_sets (same run_id) is
-- committed: on PostgreSQL they are written beside the run's transaction by parallel writers,
-- and that transaction deletes every other run's pages of the (day, operator) - the previous
-- run's, and any a failed run left.
CREATE TABLE settlement_record_pages (
    business_day  TEXT NOT NULL,
    operator_id   TEXT NOT NULL,
    -- 'gross' (payments) or 'refunds' (refunds and reversals).
    figure        TEXT NOT NULL,
    run_id        BIGINT NOT NULL,
    page_no       BIGINT NOT NULL,
    records       BIGINT NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (business_day, operator_id, figure, run_id, page_no)
);
-- lz4 where this PostgreSQL has it (pages are repetitive text: ~3x smaller, and faster than
-- the default pglz by ~3x at writing); pglz otherwise.
DO $$ BEGIN
    ALTER TABLE settlement_record_pages ALTER COLUMN body SET COMPRESSION lz4;
    -- The day's files and bases too (exceptions.csv is ~10 MB on a 10 M-journey day).
    ALTER TABLE settlement_outputs ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE settlement_run_outputs ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE settlement_bases ALTER COLUMN outcome_json SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL;
END $$;

-- Each record sequence of a (day, operator): how many pages and records, and a fingerprint of
-- its bytes (part of the run's outputs hash).
CREATE TABLE settlement_record_sets (
    business_day  TEXT NOT NULL,
    operator_id   TEXT NOT NULL,
    figure        TEXT NOT NULL,
    pages         BIGINT NOT NULL,
    records       BIGINT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    fee_minor     BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    run_id        BIGINT NOT NULL,
    PRIMARY KEY (business_day, operator_id, figure)
);

-- The exceptions list is paged and sorted on the server.
CREATE INDEX settlement_exceptions_by_amount ON settlement_exceptions (business_day, amount_minor, exception_key);

-- An exception's newest resolution (its action; NULL while open), kept with it so the queue is
-- filtered, counted and paged in SQL at tens of thousands of exceptions a day.
-- settlement_resolutions stays the history; resolve_exception and each run keep this in step.
ALTER TABLE settlement_exceptions ADD COLUMN resolution TEXT;
UPDATE settlement_exceptions SET resolution = (
    SELECT r.action FROM settlement_resolutions r
    WHERE r.business_day = settlement_exceptions.business_day
      AND r.exception_key = settlement_exceptions.exception_key
    ORDER BY r.seq DESC LIMIT 1);
CREATE INDEX settlement_exceptions_by_operator ON settlement_exceptions (business_day, operator_id, resolution);
CREATE INDEX settlement_exceptions_by_reference ON settlement_exceptions (business_day, reference, exception_key);

-- Four-eyes approval per operator: the person who approves a statement is not one who resolved
-- any of its exceptions. On unless turned off (`settlement operator set --four-eyes off`).
ALTER TABLE settlement_operator_settings ADD COLUMN four_eyes BIGINT NOT NULL DEFAULT 1;

-- Items per class of each (day, operator) as the run found them (the matched ratio chart).
CREATE TABLE settlement_class_counts (
    business_day  TEXT NOT NULL,
    operator_id   TEXT NOT NULL,
    class         TEXT NOT NULL,
    items         BIGINT NOT NULL,
    run_id        BIGINT NOT NULL,
    PRIMARY KEY (business_day, operator_id, class)
);

-- The payout instruction of each (day, operator)'s current statement, as payout.csv states it:
-- replaced whenever the statement is composed (a run, a carried item, an adjust resolution).
-- No row when the net payable is not positive.
CREATE TABLE settlement_payouts (
    business_day  TEXT NOT NULL,
    operator_id   TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    reference     TEXT NOT NULL,
    run_id        BIGINT NOT NULL,
    PRIMARY KEY (business_day, operator_id)
);
