-- Riders' real-name state, as the provider last answered it (alipay.user.validate), and ticket
-- orders placed by a rider in the app instead of by a ticket machine.

CREATE TABLE rider_real_name (
    rider_id          BIGINT PRIMARY KEY REFERENCES riders (rider_id),
    -- The provider's user id of the account checked: always the rider's bound wallet's.
    provider_user_id  TEXT NOT NULL,
    certified         BIGINT NOT NULL CHECK (certified IN (0, 1)),
    checked_at_ms     BIGINT NOT NULL
);

-- An order has exactly one buyer: the ticket machine that placed it, or the rider.
ALTER TABLE ticket_orders ALTER COLUMN terminal_id DROP NOT NULL;
ALTER TABLE ticket_orders ADD COLUMN rider_id BIGINT REFERENCES riders (rider_id);
ALTER TABLE ticket_orders ADD CONSTRAINT ticket_orders_one_buyer
    CHECK ((terminal_id IS NULL) <> (rider_id IS NULL));
CREATE INDEX ticket_orders_by_rider ON ticket_orders (rider_id, created_at_ms)
    WHERE rider_id IS NOT NULL;
