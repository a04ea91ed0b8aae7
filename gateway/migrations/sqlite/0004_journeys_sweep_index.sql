-- PostgreSQL's 0004 replaces an index whose generic plans misled the tap path's lookup of open
-- journeys; SQLite plans each statement as it runs. This file keeps both backends' migration
-- versions in step.
SELECT 1;
