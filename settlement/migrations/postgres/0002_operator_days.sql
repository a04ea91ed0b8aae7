-- Settlement per operator: each operator's business day (time zone, cut-off), approval of an
-- operator's statement of a day, statements composed from the run's figures and adjustments
-- (items carried in from other days, `adjust` resolutions), and the current output files.

-- Settlement-side settings of an operator's business day. time_zone NULL = the gateway's
-- `operators.time_zone` when the gateway's tables are in this database, else Asia/Shanghai.
-- cutoff: local time the business day starts, HH:MM (default 00:00).
CREATE TABLE settlement_operator_settings (
    operator_id    TEXT PRIMARY KEY,
    time_zone      TEXT,
    cutoff         TEXT NOT NULL DEFAULT '00:00',
    changed_by     TEXT NOT NULL,
    changed_at_ms  BIGINT NOT NULL
);

-- Finance approves an operator's statement of a day; that locks the (day, operator). A day is
-- approved when all its operators are (settlement_days.status follows). No row = open.
CREATE TABLE settlement_operator_days (
    business_day   TEXT NOT NULL,
    operator_id    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'approved')),
    changed_by     TEXT NOT NULL,
    changed_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (business_day, operator_id)
);
-- Days approved before per-operator approval: every operator of them is approved.
INSERT INTO settlement_operator_days (business_day, operator_id, status, changed_by, changed_at_ms)
SELECT DISTINCT s.business_day, s.operator_id, 'approved', d.changed_by, d.changed_at_ms
FROM settlement_statement_lines s JOIN settlement_days d ON d.business_day = s.business_day
WHERE d.status = 'approved';

-- The engine's outcome of an operator's day (the statement before adjustments), replaced by
-- each run of that operator; statements are composed from it.
CREATE TABLE settlement_bases (
    business_day   TEXT NOT NULL,
    operator_id    TEXT NOT NULL,
    run_id         BIGINT NOT NULL,
    outcome_json   TEXT NOT NULL,
    PRIMARY KEY (business_day, operator_id)
);

-- `other_day` items a run found, carried to the day they belong to. Replaced by the next run of
-- the same (source day, operator); a row is applied to exactly one statement, `booked_day`'s:
-- the day it belongs to, or — when that operator's day was already approved — the source day.
CREATE TABLE settlement_carries (
    source_day     TEXT NOT NULL,
    operator_id    TEXT NOT NULL,
    -- The item's other_day exception key in source_day.
    carry_key      TEXT NOT NULL,
    reference      TEXT NOT NULL,
    belongs_to     TEXT NOT NULL,
    booked_day     TEXT NOT NULL,
    record         TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    fee_minor      BIGINT NOT NULL,
    net_minor      BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    detail         TEXT NOT NULL,
    run_id         BIGINT NOT NULL,
    PRIMARY KEY (source_day, operator_id, carry_key)
);
CREATE INDEX settlement_carries_by_booked_day ON settlement_carries (booked_day, operator_id);

-- The current output files of a day (a run writes them; a carry or an adjust resolution
-- rewrites the operator's statement files). settlement_run_outputs keeps each run's own.
CREATE TABLE settlement_outputs (
    business_day   TEXT NOT NULL,
    name           TEXT NOT NULL,
    operator_id    TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    body           TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    run_id         BIGINT NOT NULL,
    PRIMARY KEY (business_day, name)
);
INSERT INTO settlement_outputs (business_day, name, operator_id, content_type, body, sha256, run_id)
SELECT r.business_day, o.name, o.operator_id, o.content_type, o.body, o.sha256, o.run_id
FROM settlement_run_outputs o JOIN settlement_runs r ON r.run_id = o.run_id
WHERE NOT EXISTS (
    SELECT 1 FROM settlement_run_outputs o2 JOIN settlement_runs r2 ON r2.run_id = o2.run_id
    WHERE r2.business_day = r.business_day AND o2.name = o.name
      AND (r2.finished_at_ms > r.finished_at_ms OR (r2.finished_at_ms = r.finished_at_ms AND r2.run_id > r.run_id))
);

-- Drill-down from an adjustment to its exception (and the day it is in).
ALTER TABLE settlement_line_items ADD COLUMN source_day TEXT NOT NULL DEFAULT '';
ALTER TABLE settlement_line_items ADD COLUMN exception_key TEXT NOT NULL DEFAULT '';
