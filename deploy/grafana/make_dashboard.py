"""Writes deploy/grafana/cairn.json, the Grafana dashboard (JSON model,
schemaVersion 39): python3 deploy/grafana/make_dashboard.py.  Every query
uses the $datasource and $instance variables; tests/integration/
test_metrics.py evaluates each of them against a real Prometheus."""
import json
import os

SEL = 'instance=~"$instance"'
RI = "$__rate_interval"


def ratio(hits, misses, by):
    h = "sum by (%s) (rate(%s{%s}[%s]))" % (by, hits, SEL, RI)
    m = "sum by (%s) (rate(%s{%s}[%s]))" % (by, misses, SEL, RI)
    return "%s / (%s + %s)" % (h, h, m)


PANELS = [
    # (title, type, unit, [(expr, legend)], width)
    ("Hit ratio by front end", "timeseries", "percentunit",
     [(ratio("cairn_cache_hits_total", "cairn_cache_misses_total", "frontend"), "{{frontend}}")], 12),
    ("Hit ratio by namespace", "timeseries", "percentunit",
     [(ratio("cairn_namespace_hits_total", "cairn_namespace_misses_total", "namespace"),
       "{{namespace}}")], 12),
    ("Hits by level (local disk, cold tier) and misses", "timeseries", "reqps",
     [("sum by (level) (rate(cairn_cache_hits_total{%s}[%s]))" % (SEL, RI), "hit {{level}}"),
      ("sum(rate(cairn_cache_misses_total{%s}[%s]))" % (SEL, RI), "miss")], 12),
    ("Requests by front end and status", "timeseries", "reqps",
     [("sum by (frontend, status_class) (rate(cairn_http_requests_total{%s}[%s]))" % (SEL, RI),
       "{{frontend}} {{status_class}}")], 12),
    ("Latency (p50, p95, p99) by front end", "timeseries", "s",
     [("histogram_quantile(%s, sum by (le, frontend) (rate(cairn_http_request_duration_seconds_bucket{%s}[%s])))"
       % (q, SEL, RI), "p%s {{frontend}}" % int(float(q) * 100)) for q in ("0.5", "0.95", "0.99")], 12),
    ("Traffic", "timeseries", "Bps",
     [("sum by (frontend) (rate(cairn_http_sent_bytes_total{%s}[%s]))" % (SEL, RI), "sent {{frontend}}"),
      ("sum by (frontend) (rate(cairn_http_received_bytes_total{%s}[%s]))" % (SEL, RI),
       "received {{frontend}}")], 12),
    ("Storage", "timeseries", "bytes",
     [("sum(cairn_store_stored_bytes{%s})" % SEL, "stored (on disk)"),
      ("sum(cairn_store_logical_bytes{%s})" % SEL, "logical (bodies)"),
      ("sum(cairn_store_referenced_bytes{%s})" % SEL, "referenced (all keys)"),
      ("sum(cairn_store_max_bytes{%s})" % SEL, "limit")], 8),
    ("Compression and dedup", "stat", "none",
     [("sum(cairn_store_logical_bytes{%s}) / sum(cairn_store_stored_bytes{%s})" % (SEL, SEL),
       "compression ratio"),
      ("sum(cairn_store_referenced_bytes{%s}) / sum(cairn_store_logical_bytes{%s})" % (SEL, SEL),
       "dedup ratio")], 8),
    ("Evictions", "timeseries", "Bps",
     [("sum(rate(cairn_evicted_bytes_total{%s}[%s]))" % (SEL, RI), "bytes evicted"),
      ("sum(rate(cairn_evictions_total{%s}[%s]))" % (SEL, RI), "blobs evicted /s")], 8),
    ("Cold tier: queue", "timeseries", "bytes",
     [("sum by (instance) (cairn_tier_queue_bytes{%s})" % SEL, "bytes waiting {{instance}}"),
      ("sum by (instance) (cairn_tier_queue_entries{%s})" % SEL, "entries {{instance}}")], 8),
    ("Cold tier: uploads and reads", "timeseries", "ops",
     [("sum by (result) (rate(cairn_tier_uploads_total{%s}[%s]))" % (SEL, RI), "upload {{result}}"),
      ("sum(rate(cairn_tier_upload_failures_total{%s}[%s]))" % (SEL, RI), "upload failed"),
      ("sum by (result) (rate(cairn_tier_reads_total{%s}[%s]))" % (SEL, RI), "read {{result}}")], 8),
    ("Cold tier: request latency (p95)", "timeseries", "s",
     [("histogram_quantile(0.95, sum by (le, kind) (rate(cairn_tier_request_duration_seconds_bucket{%s}[%s])))"
       % (SEL, RI), "{{kind}}")], 8),
    ("Disk", "timeseries", "bytes",
     [("cairn_disk_free_bytes{%s}" % SEL, "free {{instance}}"),
      ("cairn_disk_size_bytes{%s}" % SEL, "size {{instance}}")], 8),
    ("Process", "timeseries", "bytes",
     [("process_resident_memory_bytes{%s}" % SEL, "RSS {{instance}}"),
      ("process_open_fds{%s}" % SEL, "open files {{instance}}"),
      ("rate(process_cpu_seconds_total{%s}[%s])" % (SEL, RI), "CPU {{instance}}"),
      ("cairn_http_requests_in_flight{%s}" % SEL, "in flight {{instance}}"),
      ("cairn_tier_waiting_requests{%s}" % SEL, "waiting for the tier {{instance}}")], 8),
]

# (query, column, unit): stored and keys now; the others over the dashboard's time range
TABLE = ("Usage by namespace (stored now; traffic over the dashboard's time range)", [
    ("sum by (namespace) (cairn_namespace_stored_bytes{%s})" % SEL, "stored", "bytes"),
    ("sum by (namespace) (cairn_namespace_keys{%s})" % SEL, "keys", "short"),
    ("sum by (namespace) (increase(cairn_namespace_sent_bytes_total{%s}[$__range]))" % SEL, "sent", "bytes"),
    ("sum by (namespace) (increase(cairn_namespace_received_bytes_total{%s}[$__range]))" % SEL, "received", "bytes"),
    ("sum by (namespace) (increase(cairn_namespace_hits_total{%s}[$__range]))" % SEL, "hits", "short"),
    ("sum by (namespace) (increase(cairn_namespace_misses_total{%s}[$__range]))" % SEL, "misses", "short"),
])

DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, kind, unit, targets, x, y, w, h=8):
    p = {"id": pid, "type": kind, "title": title, "datasource": DS,
         "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"}}
         if kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
         "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": e, "legendFormat": l}
                     for i, (e, l) in enumerate(targets)]}
    return p


def main():
    panels, x, y, pid = [], 0, 0, 1
    for title, kind, unit, targets, w in PANELS:
        if x + w > 24:
            x, y = 0, y + 8
        panels.append(panel(pid, title, kind, unit, targets, x, y, w))
        pid += 1
        x += w
    y += 8
    table = panel(pid, TABLE[0], "table", "bytes", [(e, c) for e, c, _ in TABLE[1]], 0, y, 24, 10)
    for t in table["targets"]:
        t["format"] = "table"
        t["instant"] = True
    # a merged table names its columns "Value #<refId>": give them names and units
    cols = {"Value #%s" % chr(65 + i): (c, u) for i, (_, c, u) in enumerate(TABLE[1])}
    table["fieldConfig"]["overrides"] = [
        {"matcher": {"id": "byName", "options": v}, "properties": [{"id": "unit", "value": u}]}
        for v, (_, u) in cols.items() if u != "bytes"]
    table["transformations"] = [{"id": "merge", "options": {}},
                                {"id": "organize", "options": {
                                    "excludeByName": {"Time": True},
                                    "renameByName": {v: c for v, (c, _) in cols.items()}}}]
    panels.append(table)
    dash = {
        "title": "cairn", "uid": "cairn-overview", "schemaVersion": 39, "version": 1,
        "editable": True, "tags": ["cairn", "cache"], "timezone": "browser",
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Prometheus", "current": {}},
            {"name": "instance", "type": "query", "label": "node", "datasource": DS,
             "query": {"query": "label_values(cairn_build_info, instance)", "refId": "nodes"},
             "definition": "label_values(cairn_build_info, instance)", "refresh": 2,
             "includeAll": True, "multi": True, "allValue": ".*",
             "current": {"selected": True, "text": "All", "value": "$__all"}},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cairn.json")
    with open(out, "w") as f:
        json.dump(dash, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
