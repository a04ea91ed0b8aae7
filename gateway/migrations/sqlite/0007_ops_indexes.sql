-- Two reads that ran as full scans (found by the operations review, 2026-12-05):
-- * settlement's gateway export reads the journal by creation time (one business day's
--   captures, refunds and reversals), which scanned every transaction ever booked;
-- * /metrics reports how long the oldest uncollected charge has waited, by creation time (the
--   earliest due time is no measure during a provider outage: each unknown outcome pushes a
--   charge's next attempt forward). Only pending and paying charges are indexed, so the index
--   stays as small as the backlog.
CREATE INDEX ledger_by_created ON ledger_transactions (created_at_ms);
CREATE INDEX charges_waiting_since ON charges (created_at_ms) WHERE status IN ('pending', 'paying');
