-- The sweeper finds stale open journeys by entry time; it had a partial index on (entry_at_ms)
-- WHERE status = 'open'. The tap path finds a rider's open journey through journeys_one_open.
-- Both partial indexes apply to that lookup, and the pipelined transaction's generic plans are
-- made once per session, possibly while `journeys` is still empty: the planner then priced the
-- two the same and chose a full scan of journeys_open_by_entry, filtered by rider, for every
-- lookup (slower with every open journey; 2026-11-29, docs/load.md). An index the lookup cannot
-- use as a partial match leaves it one choice.
DROP INDEX journeys_open_by_entry;
CREATE INDEX journeys_by_status_entry ON journeys (status, entry_at_ms);
