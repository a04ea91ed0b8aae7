-- Provider sandbox state. Times are UTC Unix milliseconds; money is integer fen (CNY).
CREATE TABLE apps (
    app_id TEXT PRIMARY KEY,
    -- The app's RSA public key as base64 PKCS#1 RSAPublicKey DER.
    public_key_pkcs1_b64 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    logon_id TEXT NOT NULL,
    balance_fen BIGINT NOT NULL CHECK (balance_fen >= 0),
    real_name BIGINT NOT NULL,
    -- Payments above this amount wait for the buyer to confirm (10003 USERPAYING).
    confirm_over_fen BIGINT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE payment_codes (
    auth_code TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    issued_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT
);

CREATE TABLE trades (
    trade_no TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (app_id),
    out_trade_no TEXT NOT NULL,
    subject TEXT NOT NULL,
    total_fen BIGINT NOT NULL CHECK (total_fen > 0),
    refunded_fen BIGINT NOT NULL CHECK (refunded_fen >= 0 AND refunded_fen <= total_fen),
    status TEXT NOT NULL,
    buyer_user_id TEXT NOT NULL REFERENCES users (user_id),
    auth_code TEXT NOT NULL,
    -- Set when alipay.trade.cancel closed the trade: 'close' or 'refund'.
    cancel_action TEXT,
    created_at_ms BIGINT NOT NULL,
    paid_at_ms BIGINT,
    closed_at_ms BIGINT,
    UNIQUE (app_id, out_trade_no)
);

CREATE TABLE refunds (
    trade_no TEXT NOT NULL REFERENCES trades (trade_no),
    out_request_no TEXT NOT NULL,
    refund_fen BIGINT NOT NULL CHECK (refund_fen > 0),
    -- The trade's cumulative refunded amount once this refund applied (the answer's refund_fee).
    refunded_total_fen BIGINT NOT NULL,
    reason TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (trade_no, out_request_no)
);
