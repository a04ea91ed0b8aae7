-- Slice two: precreated (QR) and deduction trades, fees, async notifications, withholding
-- agreements. Times are UTC Unix milliseconds; money is integer fen (CNY).

ALTER TABLE trades ALTER COLUMN buyer_user_id DROP NOT NULL;
ALTER TABLE trades ALTER COLUMN auth_code DROP NOT NULL;
-- FACE_TO_FACE_PAYMENT (bar code), QR_CODE_OFFLINE (precreate), GENERAL_WITHHOLDING (deduction).
ALTER TABLE trades ADD COLUMN product_code TEXT NOT NULL DEFAULT 'FACE_TO_FACE_PAYMENT';
ALTER TABLE trades ADD COLUMN notify_url TEXT;
ALTER TABLE trades ADD COLUMN agreement_no TEXT;
ALTER TABLE trades ADD COLUMN terminal_id TEXT;
ALTER TABLE trades ADD COLUMN store_id TEXT;
ALTER TABLE trades ADD COLUMN operator_id TEXT;
-- The provider's service fee charged to the merchant, fixed when the trade is paid.
ALTER TABLE trades ADD COLUMN fee_fen BIGINT NOT NULL DEFAULT 0 CHECK (fee_fen >= 0);
-- The unguessable part of a precreated trade's qr_code.
ALTER TABLE trades ADD COLUMN qr_token TEXT UNIQUE;
-- An unpaid trade is closed at this instant (timeout_express).
ALTER TABLE trades ADD COLUMN expires_at_ms BIGINT;
-- Fault knob user_paying_ms: the buyer confirms by itself at this instant.
ALTER TABLE trades ADD COLUMN auto_confirm_at_ms BIGINT;
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
UPDATE apps SET seller_id = '2088' || lpad((floor(random() * 1000000000000))::bigint::text, 12, '0');

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
