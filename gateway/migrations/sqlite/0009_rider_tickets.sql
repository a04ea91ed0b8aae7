-- Riders' real-name state, as the provider last answered it (alipay.user.validate), and ticket
-- orders placed by a rider in the app instead of by a ticket machine.

CREATE TABLE rider_real_name (
    rider_id          BIGINT PRIMARY KEY REFERENCES riders (rider_id),
    -- The provider's user id of the account checked: always the rider's bound wallet's.
    provider_user_id  TEXT NOT NULL,
    certified         BIGINT NOT NULL CHECK (certified IN (0, 1)),
    checked_at_ms     BIGINT NOT NULL
);

-- An order has exactly one buyer: the ticket machine that placed it, or the rider. SQLite
-- cannot drop a NOT NULL, so the table is rebuilt (nothing references it).
CREATE TABLE ticket_orders_new (
    order_id         BIGINT PRIMARY KEY,
    charge_id        BIGINT NOT NULL UNIQUE REFERENCES charges (charge_id),
    terminal_id      TEXT,
    origin_id        TEXT NOT NULL,
    destination_id   TEXT NOT NULL,
    qr_payload       TEXT NOT NULL,
    ticket_code      TEXT,
    expires_at_ms    BIGINT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    paid_at_ms       BIGINT,
    rider_id         BIGINT REFERENCES riders (rider_id),
    CHECK ((terminal_id IS NULL) <> (rider_id IS NULL))
);
INSERT INTO ticket_orders_new (order_id, charge_id, terminal_id, origin_id, destination_id,
        qr_payload, ticket_code, expires_at_ms, created_at_ms, paid_at_ms, rider_id)
    SELECT order_id, charge_id, terminal_id, origin_id, destination_id, qr_payload, ticket_code,
           expires_at_ms, created_at_ms, paid_at_ms, NULL
    FROM ticket_orders;
DROP TABLE ticket_orders;
ALTER TABLE ticket_orders_new RENAME TO ticket_orders;
CREATE INDEX ticket_orders_by_rider ON ticket_orders (rider_id, created_at_ms)
    WHERE rider_id IS NOT NULL;
