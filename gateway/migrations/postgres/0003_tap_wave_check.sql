-- A pipelined tap wave writes its rows in one statement and checks, in that statement, that
-- every row was written (see gateway/src/store/waves.rs, write_wave_sql). A row not written
-- means another writer or node got there first: raising here aborts the transaction, so the
-- COMMIT sent after it in the same message cannot commit half a wave. The gateway then judges
-- the group again, rule by rule.
CREATE FUNCTION tap_wave_written(ok BOOLEAN) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'tap wave raced another writer' USING ERRCODE = 'TP001';
    END IF;
    RETURN ok;
END
$$;
