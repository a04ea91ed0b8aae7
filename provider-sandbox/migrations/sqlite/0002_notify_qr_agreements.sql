-- Slice two: precreated (QR) and deduction trades, fees, async notifications, withholding
-- agreements. Times are UTC Unix milliseconds; money is integer fen (CNY).

-- SQLite cannot drop NOT NULL in place: rebuild trades (the documented table-rebuild procedure).
-- Foreign keys stay on (a migration runs inside a transaction, where they cannot be switched
-- off), so refunds, which reference trades by name, are set aside while the old table is
-- dropped and put back once the rebuilt one carries its name.

CREATE TABLE trades_rebuilt (
    trade_no TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (app_id),
    out_trade_no TEXT NOT NULL,
    subject TEXT NOT NULL,
    total_fen BIGINT NOT NULL CHECK (total_fen > 0),
    refunded_fen BIGINT NOT NULL CHECK (refunded_fen >= 0 AND refunded_fen <= total_fen),
    status TEXT NOT NULL,
    -- NULL until a buyer is known: a precreated QR nobody has scanned yet.
    buyer_user_id TEXT REFERENCES users (user_id),
    -- Only bar-code payments carry a payment code.
    auth_code TEXT,
    cancel_action TEXT,
    created_at_ms BIGINT NOT NULL,
    paid_at_ms BIGINT,
    closed_at_ms BIGINT,
    -- FACE_TO_FACE_PAYMENT (bar code), QR_CODE_OFFLINE (precreate), GENERAL_WITHHOLDING (deduction).
    product_code TEXT NOT NULL DEFAULT 'FACE_TO_FACE_PAYMENT',
    notify_url TEXT,
    agreement_no TEXT,
    terminal_id TEXT,
    store_id TEXT,
    operator_id TEXT,
    -- The provider's service fee charged to the merchant, fixed when the trade is paid.
    fee_fen BIGINT NOT NULL DEFAULT 0 CHECK (fee_fen >= 0),
    -- The unguessable part of a precreated trade's qr_code.
    qr_token TEXT UNIQUE,
    -- An unpaid trade is closed at this instant (timeout_express).
    expires_at_ms BIGINT,
    -- Fault knob user_paying_ms: the buyer confirms by itself at this instant.
    auto_confirm_at_ms BIGINT,
    UNIQUE (app_id, out_trade_no)
);

INSERT INTO trades_rebuilt (trade_no, app_id, out_trade_no, subject, total_fen, refunded_fen, status,
                            buyer_user_id, auth_code, cancel_action, created_at_ms, paid_at_ms,
                            closed_at_ms)
SELECT trade_no, app_id, out_trade_no, subject, total_fen, refunded_fen, status, buyer_user_id,
       auth_code, cancel_action, created_at_ms, paid_at_ms, closed_at_ms
FROM trades;

CREATE TABLE refunds_set_aside AS SELECT * FROM refunds;
DELETE FROM refunds;
DROP TABLE trades;
ALTER TABLE trades_rebuilt RENAME TO trades;
INSERT INTO refunds SELECT * FROM refunds_set_aside;
DROP TABLE refunds_set_aside;

CREATE INDEX trades_unpaid_due ON trades (status, expires_at_ms);
CREATE INDEX trades_paid_at ON trades (app_id, paid_at_ms);

-- 'refund' (alipay.trade.refund) or 'cancel' (the reversal of a paid trade by alipay.trade.cancel).
ALTER TABLE refunds ADD COLUMN kind TEXT NOT NULL DEFAULT 'refund';
-- The part of the trade's service fee this refund gave back to the merchant.
ALTER TABLE refunds ADD COLUMN fee_fen BIGINT NOT NULL DEFAULT 0;
CREATE INDEX refunds_created_at ON refunds (created_at_ms);

-- Service fee rate in basis points (60 = 0.6%), and the merchant's 2088… partner id.
ALTER TABLE apps ADD COLUMN fee_rate_bp BIGINT NOT NULL DEFAULT 60;
ALTER TABLE apps ADD COLUMN seller_id TEXT;
UPDATE apps SET seller_id = '2088' || substr('000000000000' || (abs(random()) % 1000000000000), -12);

-- Outbox of async notifications, written in the transaction that changed the trade.
CREATE TABLE notifications (
    notify_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    trade_no TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    notify_url TEXT NOT NULL,
    -- The notification's parameters as a JSON object, without notify_time, sign_type and sign
    -- (added at each delivery).
    params_json TEXT NOT NULL,
    -- 'pending', 'delivered' or 'failed'.
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    -- Due time of the next attempt; while an attempt runs, the end of its lease.
    next_attempt_at_ms BIGINT NOT NULL,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at_ms);
CREATE INDEX notifications_by_order ON notifications (app_id, out_trade_no);

-- Withholding (代扣) agreements between a buyer and an app.
CREATE TABLE agreements (
    agreement_no TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (app_id),
    user_id TEXT NOT NULL REFERENCES users (user_id),
    -- 'NORMAL', 'STOP' (paused) or 'UNSIGN' (ended; the platform then says it does not exist).
    status TEXT NOT NULL,
    single_limit_fen BIGINT NOT NULL CHECK (single_limit_fen > 0),
    sign_time_ms BIGINT NOT NULL,
    unsign_time_ms BIGINT
);
