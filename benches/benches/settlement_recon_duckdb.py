import json, resource, sys, time
import duckdb

d, day, tol = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads=2")
t0 = time.perf_counter()
opts = "header=true, comment='#', delim=',', quote='', escape='', auto_detect=false"
con.execute(f"""
CREATE TEMP TABLE g AS SELECT
  CASE record_type WHEN 'refund' THEN 'R:' || out_request_no WHEN 'reversal' THEN 'V:' || out_trade_no
       ELSE 'P:' || out_trade_no END AS k,
  (record_type = 'payment' AND terminal_id IS NOT NULL) AS at_term,
  operator_id AS op, terminal_id AS term, terminal_sequence AS seq, kind, amount_minor AS amt,
  currency AS cur, business_day <> DATE '{day}' AS off
FROM read_csv('{d}/gateway.csv', {opts}, columns={{
  'record_type':'VARCHAR','operator_id':'VARCHAR','business_day':'DATE','out_trade_no':'VARCHAR',
  'provider_trade_no':'VARCHAR','out_request_no':'VARCHAR','terminal_id':'VARCHAR',
  'terminal_sequence':'UBIGINT','kind':'VARCHAR','amount_minor':'BIGINT','fee_minor':'BIGINT',
  'currency':'VARCHAR','occurred_at_ms':'BIGINT'}})
""")
cols = {f"c{i:02d}": "VARCHAR" for i in range(25)}
cols["c05"] = "TIMESTAMP"
cols["c12"] = "DECIMAL(18,2)"
cols["c22"] = "DECIMAL(18,2)"
colspec = "{" + ",".join(f"'{k}':'{v}'" for k, v in cols.items()) + "}"
con.execute(f"""
CREATE TEMP TABLE p AS SELECT
  CASE WHEN trim(c02, chr(9)) = '交易' THEN 'P:' || trim(c01, chr(9))
       WHEN coalesce(trim(c21, chr(9)), '') = '' THEN 'V:' || trim(c01, chr(9))
       ELSE 'R:' || trim(c21, chr(9)) END AS k,
  CAST(abs(c12) * 100 AS BIGINT) AS amt,
  NOT (c05 >= TIMESTAMP '{day} 00:00:00' AND c05 < TIMESTAMP '{day} 00:00:00' + INTERVAL 1 DAY) AS off
FROM read_csv('{d}/bill.csv', {opts}, columns={colspec})
""")
ocols = ("{'terminal_id':'VARCHAR','terminal_sequence':'UBIGINT','occurred_at':'TIMESTAMPTZ',"
         "'kind':'VARCHAR','amount_minor':'BIGINT','currency':'VARCHAR'}")
start = f"TIMESTAMPTZ '{day} 00:00:00+08:00'"
con.execute(f"""
CREATE TEMP TABLE o AS
SELECT op, terminal_id AS term, terminal_sequence AS seq, kind, amount_minor AS amt, currency AS cur,
  NOT (occurred_at >= {start} AND occurred_at < {start} + INTERVAL 1 DAY) AS off
FROM (
  SELECT 'hz-metro' AS op, * FROM read_csv('{d}/operator-hz-metro.csv', {opts}, columns={ocols})
  UNION ALL
  SELECT 'zj-expressway' AS op, * FROM read_csv('{d}/operator-zj-expressway.csv', {opts}, columns={ocols})
) WHERE amount_minor > 0
""")
load_s = time.perf_counter() - t0
rows = con.execute(f"""
WITH gd AS (
  SELECT k, count(*) AS n, arg_min({{'at_term': at_term, 'op': op, 'term': term, 'seq': seq, 'kind': kind,
         'amt': amt, 'cur': cur, 'off': off, 'rid': rowid}}, rowid) AS r
  FROM g GROUP BY k
), gdf AS (
  SELECT k, n, r.at_term AS at_term, r.op AS op, r.term AS term, r.seq AS seq, r.kind AS kind,
         r.amt AS amt, r.cur AS cur, r.off AS off, r.rid AS rid FROM gd
), gt AS (
  SELECT term, seq, min(rid) AS first_rid FROM gdf WHERE at_term GROUP BY term, seq
), pd AS (
  SELECT k, count(*) AS n, arg_min({{'amt': amt, 'off': off}}, rowid) AS r FROM p GROUP BY k
), od AS (
  SELECT term, seq, count(*) AS n,
         arg_min({{'op': op, 'kind': kind, 'amt': amt, 'cur': cur, 'off': off}}, rowid) AS r
  FROM o GROUP BY term, seq
), main AS (
  SELECT
    CASE
      WHEN gdf.at_term AND gdf.rid <> gt.first_rid THEN 'duplicate'
      WHEN gdf.off OR coalesce(pd.r.off, false) OR coalesce(od.r.off, false) THEN 'other_day'
      WHEN pd.k IS NULL THEN 'missing_at_provider'
      WHEN gdf.at_term AND od.term IS NULL THEN 'missing_at_operator'
      WHEN abs(gdf.amt - pd.r.amt) > {tol} OR gdf.cur <> 'CNY'
        OR (od.term IS NOT NULL AND (abs(gdf.amt - od.r.amt) > {tol} OR gdf.cur <> od.r.cur
            OR gdf.op <> od.r.op
            OR NOT (CASE gdf.kind WHEN 'metro' THEN od.r.kind IN ('entry', 'exit')
                                  WHEN 'toll' THEN od.r.kind = 'toll_exit'
                                  ELSE od.r.kind = 'ticket' END)))
        THEN 'amount_mismatch'
      ELSE 'matched'
    END AS class
  FROM gdf
  -- Only payments at a terminal have one (the export's rule), so plain equi-joins suffice.
  LEFT JOIN gt ON gdf.term = gt.term AND gdf.seq = gt.seq
  LEFT JOIN pd ON gdf.k = pd.k
  LEFT JOIN od ON gdf.term = od.term AND gdf.seq = od.seq
), orphans AS (
  SELECT CASE WHEN pd.r.off THEN 'other_day' ELSE 'missing_at_gateway' END AS class
  FROM pd ANTI JOIN gdf ON pd.k = gdf.k
  UNION ALL
  SELECT CASE WHEN od.r.off THEN 'other_day' ELSE 'missing_at_gateway' END AS class
  FROM od ANTI JOIN (SELECT term, seq FROM gdf WHERE at_term) t ON od.term = t.term AND od.seq = t.seq
), dups AS (
  SELECT 'duplicate' AS class, (SELECT coalesce(sum(n - 1), 0) FROM gdf) + (SELECT coalesce(sum(n - 1), 0) FROM pd)
       + (SELECT coalesce(sum(n - 1), 0) FROM od) AS c
)
SELECT class, count(*) AS c FROM (SELECT class FROM main UNION ALL SELECT class FROM orphans) GROUP BY class
UNION ALL SELECT class, c FROM dups
""").fetchall()
elapsed = time.perf_counter() - t0
counts = {c: 0 for c in ["matched", "amount_mismatch", "missing_at_provider", "missing_at_gateway",
                         "missing_at_operator", "duplicate", "other_day"]}
for cls, c in rows:
    counts[cls] += int(c)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"duckdb_s": elapsed, "duckdb_load_s": load_s, "counts": counts, "peak_rss_mib": peak}))
