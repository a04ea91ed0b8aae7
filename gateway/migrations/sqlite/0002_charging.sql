-- Charging: wallets, charges (the outbox of money to collect), provider trade attempts, the
-- double-entry ledger, refunds, disputes and ticket orders. Money is integer minor units (fen)
-- with a currency; times are UTC Unix milliseconds. See docs/charging.md.

-- The provider's service fee in the operator's contract, in basis points of each payment,
-- rounded half-up to the fen (refunds return it pro rata, rounded the same way).
ALTER TABLE operators ADD COLUMN provider_fee_rate_bp BIGINT NOT NULL DEFAULT 60;

-- A rider's wallet: the withholding (deduction) agreement signed at the provider.
CREATE TABLE rider_wallets (
    rider_id          BIGINT PRIMARY KEY,
    agreement_no      TEXT NOT NULL,
    provider_user_id  TEXT,
    bound_at_ms       BIGINT NOT NULL
);

-- One row per thing to be paid: a closed metro journey (post-pay, written in the same
-- transaction that closes the journey), a toll exit (barcode pay), a ticket order (QR).
-- UNIQUE (journey_id) is the "no journey charged twice" constraint.
CREATE TABLE charges (
    charge_id          BIGINT PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('metro', 'toll', 'ticket')),
    operator_id        TEXT NOT NULL REFERENCES operators (operator_id),
    rider_id           BIGINT,
    journey_id         BIGINT UNIQUE,
    amount_minor       BIGINT NOT NULL CHECK (amount_minor > 0),
    currency           TEXT NOT NULL,
    business_day       TEXT NOT NULL,
    -- pending: to be collected (metro: by the capture worker; ticket: awaiting the buyer);
    -- paying: a toll pay in flight; captured: paid; failed: given up (rider deny-listed);
    -- cancelled: not paid and closed at the provider.
    status             TEXT NOT NULL CHECK (status IN ('pending', 'paying', 'captured', 'failed', 'cancelled')),
    -- The trade number of the current attempt (a decline moves to a new attempt and number;
    -- an unknown outcome retries the same number, which the provider treats idempotently).
    attempt            BIGINT NOT NULL,
    out_trade_no       TEXT NOT NULL UNIQUE,
    provider_trade_no  TEXT,
    fee_minor          BIGINT,
    refunded_minor     BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    last_error         TEXT,
    next_attempt_at_ms BIGINT NOT NULL,
    lease_until_ms     BIGINT,
    terminal_id        TEXT,
    terminal_sequence  BIGINT,
    created_at_ms      BIGINT NOT NULL,
    captured_at_ms     BIGINT,
    updated_at_ms      BIGINT NOT NULL
);
CREATE INDEX charges_due ON charges (next_attempt_at_ms) WHERE status IN ('pending', 'paying');
CREATE INDEX charges_by_rider ON charges (rider_id, status);

-- Every trade number ever sent to the provider for a charge, and how it ended.
CREATE TABLE charge_attempts (
    out_trade_no       TEXT PRIMARY KEY,
    charge_id          BIGINT NOT NULL REFERENCES charges (charge_id),
    attempt            BIGINT NOT NULL,
    outcome            TEXT NOT NULL CHECK (outcome IN ('sent', 'paid', 'declined', 'cancelled', 'reversed')),
    detail             TEXT,
    provider_trade_no  TEXT,
    created_at_ms      BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL
);
CREATE INDEX charge_attempts_by_charge ON charge_attempts (charge_id);

-- The double-entry journal. A transaction's lines balance to zero (debits = credits, checked
-- before insert); `idempotency_key` makes each money movement bookable once, e.g.
-- 'capture:<out_trade_no>', 'refund:<out_request_no>'.
CREATE TABLE ledger_transactions (
    txn_id             BIGINT PRIMARY KEY,
    idempotency_key    TEXT NOT NULL UNIQUE,
    kind               TEXT NOT NULL CHECK (kind IN ('fare', 'capture', 'refund', 'reversal')),
    operator_id        TEXT NOT NULL,
    business_day       TEXT NOT NULL,
    charge_id          BIGINT,
    out_trade_no       TEXT,
    provider_trade_no  TEXT,
    out_request_no     TEXT,
    created_at_ms      BIGINT NOT NULL
);
CREATE INDEX ledger_by_day ON ledger_transactions (business_day, operator_id);

CREATE TABLE ledger_lines (
    txn_id        BIGINT NOT NULL REFERENCES ledger_transactions (txn_id),
    line_no       BIGINT NOT NULL,
    account       TEXT NOT NULL CHECK (account IN ('rider_receivable', 'operator_payable', 'provider_clearing', 'provider_fees')),
    party         TEXT NOT NULL,
    debit_minor   BIGINT NOT NULL CHECK (debit_minor >= 0),
    credit_minor  BIGINT NOT NULL CHECK (credit_minor >= 0),
    currency      TEXT NOT NULL,
    PRIMARY KEY (txn_id, line_no),
    CHECK ((debit_minor = 0) <> (credit_minor = 0))
);

-- Refunds, idempotent per out_request_no (derived from the caller's request id).
CREATE TABLE refunds (
    refund_id       BIGINT PRIMARY KEY,
    charge_id       BIGINT NOT NULL REFERENCES charges (charge_id),
    out_request_no  TEXT NOT NULL UNIQUE,
    amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    detail          TEXT,
    dispute_id      BIGINT,
    created_at_ms   BIGINT NOT NULL,
    completed_at_ms BIGINT
);

-- A rider's complaint about a charge, queued for an operator's decision.
CREATE TABLE disputes (
    dispute_id      BIGINT PRIMARY KEY,
    rider_id        BIGINT NOT NULL,
    charge_id       BIGINT NOT NULL REFERENCES charges (charge_id),
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'approved', 'rejected')),
    decision_note   TEXT,
    refund_id       BIGINT,
    created_at_ms   BIGINT NOT NULL,
    decided_at_ms   BIGINT
);
CREATE UNIQUE INDEX disputes_one_open ON disputes (charge_id) WHERE status = 'open';

-- Ticket orders paid by a merchant-presented QR; the money side is the 'ticket' charge.
CREATE TABLE ticket_orders (
    order_id         BIGINT PRIMARY KEY,
    charge_id        BIGINT NOT NULL UNIQUE REFERENCES charges (charge_id),
    terminal_id      TEXT NOT NULL,
    origin_id        TEXT NOT NULL,
    destination_id   TEXT NOT NULL,
    qr_payload       TEXT NOT NULL,
    ticket_code      TEXT,
    expires_at_ms    BIGINT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    paid_at_ms       BIGINT
);

-- Notifications received from the provider, verified or not: the audit trail, and a cheap
-- duplicate filter (the real platform repeats notify_id on retries).
CREATE TABLE provider_notifications (
    notify_id      TEXT PRIMARY KEY,
    out_trade_no   TEXT,
    trade_status   TEXT,
    verified       BIGINT NOT NULL,
    applied        TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
