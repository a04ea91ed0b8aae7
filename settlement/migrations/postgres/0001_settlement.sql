-- Settlement's own tables (prefix settlement_), in the gateway's database or another one.
-- Money is integer minor units (fen) with a currency; times are UTC Unix milliseconds;
-- business days are YYYY-MM-DD in the operator's time zone.

-- One row per run of a business day (history is kept; the newest run of a day is current).
CREATE TABLE settlement_runs (
    run_id          BIGINT PRIMARY KEY,
    business_day    TEXT NOT NULL,
    -- '' = all operators; else the one operator of `settlement run --operator`.
    scope           TEXT NOT NULL,
    -- SHA-256 over the inputs' content hashes (gateway ledger, bill, operator exports).
    inputs_sha256   TEXT NOT NULL,
    inputs_json     TEXT NOT NULL,
    outputs_sha256  TEXT NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    finished_at_ms  BIGINT NOT NULL
);
CREATE INDEX settlement_runs_by_day ON settlement_runs (business_day, finished_at_ms);

-- The files a run produced (statement CSV/JSON per operator, exceptions, payout instructions),
-- byte for byte as written: re-running identical inputs must give identical bodies.
CREATE TABLE settlement_run_outputs (
    run_id        BIGINT NOT NULL REFERENCES settlement_runs (run_id),
    name          TEXT NOT NULL,
    operator_id   TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    body          TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);

-- The current statement of a (day, operator): its figures, replaced by each run.
CREATE TABLE settlement_statement_lines (
    business_day  TEXT NOT NULL,
    operator_id   TEXT NOT NULL,
    line_no       BIGINT NOT NULL,
    figure        TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    run_id        BIGINT NOT NULL,
    PRIMARY KEY (business_day, operator_id, line_no)
);

-- The records behind each figure (drill-down).
CREATE TABLE settlement_line_items (
    business_day  TEXT NOT NULL,
    operator_id   TEXT NOT NULL,
    figure        TEXT NOT NULL,
    item_no       BIGINT NOT NULL,
    reference     TEXT NOT NULL,
    class         TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    detail        TEXT NOT NULL,
    PRIMARY KEY (business_day, operator_id, figure, item_no)
);

-- The current exceptions of a day; `exception_key` is stable across re-runs so resolutions
-- made before a re-run still apply.
CREATE TABLE settlement_exceptions (
    business_day   TEXT NOT NULL,
    exception_key  TEXT NOT NULL,
    operator_id    TEXT NOT NULL,
    class          TEXT NOT NULL,
    reference      TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    detail         TEXT NOT NULL,
    run_id         BIGINT NOT NULL,
    PRIMARY KEY (business_day, exception_key)
);

-- Resolutions, append-only: the newest one per exception is its state.
CREATE TABLE settlement_resolutions (
    business_day   TEXT NOT NULL,
    -- Numbers a day's resolutions in order, under the day's row lock like the audit trail.
    seq            BIGINT NOT NULL,
    exception_key  TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('accept', 'write_off', 'adjust', 'chase_provider')),
    note           TEXT NOT NULL CHECK (note <> ''),
    adjust_minor   BIGINT,
    user_name      TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    PRIMARY KEY (business_day, seq)
);
CREATE INDEX settlement_resolutions_by_key ON settlement_resolutions (business_day, exception_key);

-- A day finance approved is locked: runs of it are refused until it is reopened with a reason.
CREATE TABLE settlement_days (
    business_day   TEXT PRIMARY KEY,
    status         TEXT NOT NULL CHECK (status IN ('open', 'approved')),
    changed_by     TEXT NOT NULL,
    changed_at_ms  BIGINT NOT NULL
);

-- Everything a person or a run did to a day, append-only. `seq` numbers a day's lines in
-- order; it is assigned under the day's row lock (settlement_days), so it never collides.
CREATE TABLE settlement_audit (
    business_day  TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    at_ms         BIGINT NOT NULL,
    PRIMARY KEY (business_day, seq)
);

CREATE TABLE settlement_users (
    user_id        BIGINT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);

-- Sessions by the SHA-256 of their cookie token (a stolen table yields no usable cookie).
CREATE TABLE settlement_sessions (
    token_sha256   TEXT PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES settlement_users (user_id),
    csrf_token     TEXT NOT NULL,
    expires_at_ms  BIGINT NOT NULL
);
