-- Wallets are bound the provider's way (docs/security.md, "Wallet binding"): the gateway starts
-- each signing with a number of its own for the rider (`external_agreement_no`), the rider signs
-- that link in the wallet, and only the agreement the provider confirms for that number is bound
-- to that rider. A rider can no longer name an agreement.

-- Signings the gateway started: whose number is whose.
CREATE TABLE wallet_signings (
    external_agreement_no TEXT PRIMARY KEY,
    rider_id              BIGINT NOT NULL,
    created_at_ms         BIGINT NOT NULL
);
CREATE INDEX wallet_signings_by_rider ON wallet_signings (rider_id, created_at_ms);

-- The signing a bound wallet came from (empty for wallets bound before this migration).
ALTER TABLE rider_wallets ADD COLUMN external_agreement_no TEXT;

-- One agreement belongs to at most one rider. On a database where the old `PUT` bound one
-- agreement to two riders this index cannot be built and the migration fails: such bindings
-- are the hole this closes, and must be looked at by hand before upgrading.
CREATE UNIQUE INDEX rider_wallets_agreement_no ON rider_wallets (agreement_no);
