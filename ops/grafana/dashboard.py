#!/usr/bin/env python3
"""Writes turnpike.json, the Grafana dashboard of ops/: `python3 ops/grafana/dashboard.py`.

The dashboard is generated so its panels stay uniform and every query is in one readable place;
the test `ops_names` (gateway/tests/ops_names.rs) checks that each metric a query names is one the
gateway or settlement exports. Re-run after editing and commit both files."""
import json
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}
panels = []


def panel(title, exprs, unit="short", kind="timeseries", w=12, h=8, description="", legend=None):
    # Two panels a row.
    x, y = (len(panels) % 2) * 12, (len(panels) // 2) * h
    targets = [
        {"datasource": DS, "expr": e, "legendFormat": (legend[i] if legend else "__auto"), "refId": chr(65 + i)}
        for i, e in enumerate(exprs)
    ]
    panels.append({
        "id": len(panels) + 1,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": targets,
    })


q = lambda p: f'histogram_quantile({p}, sum by (le) (rate(gateway_request_duration_seconds_bucket{{endpoint="tap"}}[5m])))'
panel("Taps per second by decision", ['sum by (decision) (rate(gateway_taps_total[1m]))'], "reqps",
      description="Gate and lane taps answered, by decision (approve / decline).", legend=["{{decision}}"])
panel("Tap latency (server)", [q(0.5), q(0.95), q(0.99)], "s",
      description="From request to answer at the gateway, taps only.", legend=["p50", "p95", "p99"])
panel("Declines by reason", ['sum by (reason) (rate(gateway_taps_total{decision="decline"}[5m]))'], "reqps",
      legend=["{{reason}}"])
panel("Tap group size and commit time", [
    'histogram_quantile(0.5, sum by (le) (rate(gateway_db_commit_batch_taps_bucket[5m])))',
    'histogram_quantile(0.99, sum by (le) (rate(gateway_db_commit_duration_seconds_bucket[5m])))',
], "short", description="Median taps per group commit (left) and p99 commit time in seconds.",
      legend=["taps per group (p50)", "commit seconds (p99)"])
panel("Provider calls by outcome", ['sum by (outcome) (rate(gateway_provider_calls_total[5m]))'], "reqps",
      legend=["{{outcome}}"])
panel("Provider call latency p99 by method", [
    'histogram_quantile(0.99, sum by (le, method) (rate(gateway_provider_call_duration_seconds_bucket[5m])))'
], "s", legend=["{{method}}"])
panel("Charges by outcome", ['sum by (kind, outcome) (rate(gateway_charges_total[5m]))'], "reqps",
      legend=["{{kind}} {{outcome}}"])
panel("Capture backlog", ['max(gateway_capture_backlog)', 'max(gateway_capture_backlog_age_seconds)'], "short",
      description="Charges pending or paying (counted up to 100 000), and how many seconds the oldest metro or toll charge that is due or was tried has waited since it was booked.",
      legend=["charges", "oldest uncollected, seconds waiting"])
panel("Deny list", ['max by (kind) (gateway_deny_list_entries)'], "short", legend=["{{kind}}"])
panel("Database", ['min(gateway_db_up)', 'max(gateway_db_ping_seconds)',
                   'sum(rate(gateway_db_commit_failures_total[5m]))'], "short",
      description="1 = every node's database answered its last scrape; ping seconds; failed group commits per second.",
      legend=["up", "ping seconds", "commit failures/s"])
panel("Errors and overload", ['sum by (code) (rate(gateway_http_errors_total[5m]))'], "reqps", legend=["{{code}}"])
panel("TLS handshake failures", ['sum(rate(gateway_tls_handshake_failures_total[5m]))'], "reqps", legend=["failures"])
panel("Settlement: last run", [
    'time() - settlement_last_run_finished_timestamp_seconds',
    'settlement_last_run_duration_seconds',
], "s", description="Seconds since the newest stored run finished, and how long it took.",
      legend=["since last run", "run took"])
panel("Settlement: nightly runs", ['sum by (outcome) (increase(settlement_nightly_runs_total[1d]))'], "short",
      legend=["{{outcome}}"])
panel("Settlement: newest day's exceptions by class", [
    'sum by (class) (settlement_newest_day_items{class!="matched"})'
], "short", kind="bargauge", legend=["{{class}}"])
panel("Settlement: matched share of the newest day", [
    'sum(settlement_newest_day_items{class="matched"}) / sum(settlement_newest_day_items)'
], "percentunit", kind="stat")

dashboard = {
    "uid": "turnpike",
    "title": "Turnpike",
    "tags": ["turnpike"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "10s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [{
        "name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
        "current": {"text": "Prometheus", "value": "prometheus"},
    }]},
    "panels": panels,
}
out = pathlib.Path(__file__).with_name("turnpike.json")
out.write_text(json.dumps(dashboard, indent=2) + "\n")
print(f"wrote {out} ({len(panels)} panels)")
