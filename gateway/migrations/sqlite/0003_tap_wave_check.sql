-- PostgreSQL's 0003 adds the check pipelined tap waves use; SQLite writes rule by rule and
-- needs none. This file keeps both backends' migration versions in step.
SELECT 1;
