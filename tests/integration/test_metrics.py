"""/metrics: the counters agree with what a workload did, the exposition
passes `promtool check metrics`, and a real Prometheus (Debian's package)
scrapes it and answers queries about hit ratios."""
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from harness import (ROOT, Server, close_checked, free_port, metric_value, random_seed, scrape,
                     sha256, wait_for)

RULES = os.path.join(ROOT, "deploy", "prometheus")


def request(srv, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class MetricsTest(unittest.TestCase):
    def setUp(self):
        import random
        self.rng = random.Random(random_seed())
        self.srv = Server()
        self.addCleanup(close_checked, self, self.srv)

    def workload(self):
        """20 CAS bodies; every one read 5 times (100 hits), 20 misses; an S3
        bucket with 10 objects read once each, and 5 misses."""
        bodies = [self.rng.randbytes(self.rng.choice([10, 3000, 40000, 200000]))
                  for _ in range(20)]
        for b in bodies:
            self.assertEqual(request(self.srv, "PUT", "/cas/" + sha256(b), b)[0], 200)
        for _ in range(5):
            for b in bodies:
                self.assertEqual(request(self.srv, "GET", "/cas/" + sha256(b))[0], 200)
        for i in range(20):
            self.assertEqual(request(self.srv, "GET", "/cas/" + sha256(b"no %d" % i))[0], 404)
        self.assertIn(request(self.srv, "PUT", "/metrics-bucket")[0], (200, 409))  # 409: again
        for i, b in enumerate(bodies[:10]):
            self.assertEqual(request(self.srv, "PUT", "/metrics-bucket/o%d" % i, b)[0], 200)
        for i, b in enumerate(bodies[:10]):
            self.assertEqual(request(self.srv, "GET", "/metrics-bucket/o%d" % i)[1], b)
        for i in range(5):
            self.assertEqual(request(self.srv, "GET", "/metrics-bucket/none%d" % i)[0], 404)
        self.assertEqual(request(self.srv, "GET", "/metrics-bucket?list-type=2")[0], 200)
        # a request is counted once its answer is out, which its client may
        # see first: wait (briefly) for the last one to be counted
        end = time.time() + 10
        while metric_value(scrape(self.srv), "cairn_http_requests_total", frontend="s3",
                           operation="list", status_class="2xx") is None and time.time() < end:
            time.sleep(0.02)
        return bodies

    def test_counters_agree_with_the_workload(self):
        bodies = self.workload()
        m = scrape(self.srv)
        self.assertEqual(metric_value(m, "cairn_cache_hits_total", frontend="native", level="local"), 100)
        self.assertEqual(metric_value(m, "cairn_cache_hits_total", frontend="native", level="tier"), 0)
        self.assertEqual(metric_value(m, "cairn_cache_misses_total", frontend="native"), 20)
        self.assertEqual(metric_value(m, "cairn_cache_hits_total", frontend="s3", level="local"), 10)
        self.assertEqual(metric_value(m, "cairn_cache_misses_total", frontend="s3"), 5)
        self.assertEqual(metric_value(m, "cairn_http_requests_total", frontend="native", operation="get",
                               status_class="2xx"), 100)
        self.assertEqual(metric_value(m, "cairn_http_requests_total", frontend="native", operation="get",
                               status_class="4xx"), 20)
        self.assertEqual(metric_value(m, "cairn_http_requests_total", frontend="native", operation="put",
                               status_class="2xx"), 20)
        self.assertEqual(metric_value(m, "cairn_http_requests_total", frontend="s3", operation="list",
                               status_class="2xx"), 1)
        self.assertEqual(metric_value(m, "cairn_http_requests_total", frontend="s3", operation="bucket",
                               status_class="2xx"), 1)
        total = sum(len(b) for b in bodies)
        self.assertEqual(metric_value(m, "cairn_http_received_bytes_total", frontend="native"), total)
        self.assertEqual(metric_value(m, "cairn_http_sent_bytes_total", frontend="native"), 5 * total)
        self.assertEqual(metric_value(m, "cairn_http_sent_bytes_total", frontend="s3"),
                         sum(len(b) for b in bodies[:10]))
        self.assertEqual(metric_value(m, "cairn_http_request_duration_seconds_count", frontend="native",
                               operation="get"), 120)
        self.assertEqual(metric_value(m, "cairn_store_entries", kind="keys"), 30)
        self.assertEqual(metric_value(m, "cairn_store_entries", kind="blobs"), len(set(map(sha256, bodies))))
        self.assertGreater(metric_value(m, "cairn_store_dedup_saved_bytes"), 0)  # the bucket's copies
        self.assertEqual(metric_value(m, "cairn_build_info", version="0.1.0"), 1)
        # per namespace: the CAS and the bucket
        self.assertEqual(metric_value(m, "cairn_namespace_hits_total", namespace="cas"), 100)
        self.assertEqual(metric_value(m, "cairn_namespace_misses_total", namespace="cas"), 20)
        self.assertEqual(metric_value(m, "cairn_namespace_hits_total", namespace="metrics-bucket"), 10)
        self.assertEqual(metric_value(m, "cairn_namespace_misses_total", namespace="metrics-bucket"), 5)
        self.assertEqual(metric_value(m, "cairn_namespace_sent_bytes_total", namespace="cas"),
                         5 * total)
        # what each namespace stores, before dedup: the bucket's copies count in it
        self.assertEqual(metric_value(m, "cairn_namespace_keys", namespace="cas"), 20)
        self.assertEqual(metric_value(m, "cairn_namespace_stored_bytes", namespace="cas"), total)
        self.assertEqual(metric_value(m, "cairn_namespace_keys", namespace="metrics-bucket"), 10)
        self.assertEqual(metric_value(m, "cairn_namespace_stored_bytes", namespace="metrics-bucket"),
                         sum(len(b) for b in bodies[:10]))
        self.assertEqual(request(self.srv, "DELETE", "/metrics-bucket/o0")[0], 204)
        m = scrape(self.srv)
        self.assertEqual(metric_value(m, "cairn_namespace_keys", namespace="metrics-bucket"), 9)
        self.assertEqual(metric_value(m, "cairn_namespace_stored_bytes", namespace="metrics-bucket"),
                         sum(len(b) for b in bodies[1:10]))
        self.assertGreater(metric_value(m, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(metric_value(m, "process_open_fds"), 3)

    @unittest.skipUnless(shutil.which("promtool"), "promtool (Debian package prometheus) missing")
    def test_promtool_check_metrics(self):
        self.workload()
        r = subprocess.run(["promtool", "check", "metrics"], input=scrape(self.srv).encode(),
                           capture_output=True)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())

    @unittest.skipUnless(shutil.which("promtool"), "promtool (Debian package prometheus) missing")
    def test_alert_rules_check_and_pass_their_unit_tests(self):
        for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"],
                     ["test", "rules", "alerts_test.yml"]):
            r = subprocess.run(["promtool"] + args, cwd=RULES, capture_output=True)
            self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())

    def prometheus(self, target_port, rules=False):
        """A Prometheus scraping 127.0.0.1:target_port every second; returns
        its query function."""
        tmp = tempfile.mkdtemp(prefix="cairn-prom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        port = free_port()
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: cairn\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % target_port)
            if rules:
                f.write("rule_files: ['%s']\n" % os.path.join(RULES, "alerts.yml"))
        prom = subprocess.Popen(
            ["prometheus", "--config.file", os.path.join(tmp, "prometheus.yml"),
             "--storage.tsdb.path", os.path.join(tmp, "data"),
             "--web.listen-address", "127.0.0.1:%d" % port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop():
            prom.terminate()
            try:
                prom.wait(20)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        self.addCleanup(stop)

        def query(q):
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, urllib.parse.quote(q))
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.loads(r.read())["data"]["result"]
            except OSError:
                return []
        return query

    @unittest.skipUnless(shutil.which("prometheus"), "prometheus (Debian package) missing")
    def test_a_real_prometheus_scrapes_it(self):
        query = self.prometheus(self.srv.port)
        self.workload()
        hit_ratio = ('sum by (frontend) (cairn_cache_hits_total) / (sum by (frontend) '
                     '(cairn_cache_hits_total) + sum by (frontend) (cairn_cache_misses_total))')
        self.assertTrue(wait_for(lambda: len(query(hit_ratio)) == 2, timeout=60, step=0.5),
                        "Prometheus never had the hit ratio")
        ratios = {r["metric"]["frontend"]: float(r["value"][1]) for r in query(hit_ratio)}
        self.assertAlmostEqual(ratios["native"], 100 / 120)
        self.assertAlmostEqual(ratios["s3"], 10 / 15)
        self.assertEqual(query('up{job="cairn"}')[0]["value"][1], "1")

    @unittest.skipUnless(shutil.which("prometheus"), "prometheus (Debian package) missing")
    def test_every_dashboard_and_alert_expression_returns_data(self):
        """Each query of deploy/grafana/cairn.json (with the dashboard's
        variables filled in) and each alert rule's expression (its
        comparisons made `bool`, so that a healthy node answers too) returns
        data from a Prometheus scraping cairnd under a mixed workload."""
        import yaml_free_rules
        query = self.prometheus(self.srv.port)
        self.workload()
        with open(os.path.join(ROOT, "deploy", "grafana", "cairn.json")) as f:
            dash = json.load(f)
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        self.assertGreater(len(exprs), 20)
        fill = {"$instance": ".*", "$__rate_interval": "15s", "$__range": "2m"}
        wanted = []
        for e in exprs:
            for k, v in fill.items():
                e = e.replace(k, v)
            wanted.append(("dashboard", e))
        for name, e in yaml_free_rules.alert_exprs(os.path.join(RULES, "alerts.yml")):
            wanted.append((name, yaml_free_rules.as_bool(e)))
        # a few scrapes first, so rates have two samples; more workload meanwhile
        time.sleep(4)
        self.workload()
        missing = []
        for name, e in wanted:
            if not wait_for(lambda: query(e), timeout=20, step=1):
                missing.append("%s: %s" % (name, e))
        self.assertEqual(missing, [], "expressions without data")

    @unittest.skipUnless(shutil.which("prometheus"), "prometheus (Debian package) missing")
    def test_the_tier_alert_goes_off_when_the_tier_is_down(self):
        # a tier nobody answers at: every upload fails
        node = Server(["--tier", "s3://fleet/x", "--tier-endpoint",
                       "http://127.0.0.1:%d" % free_port(), "--tier-timeout", "1s"],
                      env={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
        self.addCleanup(close_checked, self, node)
        query = self.prometheus(node.port, rules=True)
        for i in range(5):
            self.assertEqual(request(node, "PUT", "/cas/" + sha256(b"%d" % i), b"%d" % i)[0], 200)
        self.assertTrue(
            wait_for(lambda: query('ALERTS{alertname="CairnTierUploadsFailing"}'), timeout=60,
                     step=0.5), "CairnTierUploadsFailing never became pending")
        state = query('ALERTS{alertname="CairnTierUploadsFailing"}')[0]["metric"]["alertstate"]
        self.assertIn(state, ("pending", "firing"))


class NamespaceLimitTest(unittest.TestCase):
    def test_namespaces_over_the_limit_are_counted_together(self):
        srv = Server(["--metrics-namespaces", "3"])
        self.addCleanup(close_checked, self, srv)
        for i in range(6):
            self.assertEqual(request(srv, "PUT", "/bucket-%d" % i)[0], 200)
            self.assertEqual(request(srv, "GET", "/bucket-%d/missing" % i)[0], 404)
        m = scrape(srv)
        named = re.findall(r'cairn_namespace_misses_total\{namespace="([^"]+)"\} (\d+)', m)
        self.assertEqual(len(named), 4, named)  # three of their own, and _other
        self.assertEqual(dict(named)["_other"], "3")


class LogTest(unittest.TestCase):
    def test_access_and_audit_lines(self):
        srv = Server(["--access-log", "all", "--access-key", "AKLOGTEST", "--secret-key",
                      "supersecretvalue", "--anonymous-read", "open-bucket"])
        self.addCleanup(close_checked, self, srv)
        body = b"logged body"
        key = "/ac/" + sha256(b"log key")
        self.assertEqual(request(srv, "PUT", key, body)[0], 200)
        self.assertEqual(request(srv, "GET", key)[0], 200)
        self.assertEqual(request(srv, "GET", "/ac/" + sha256(b"missing"))[0], 404)
        self.assertEqual(request(srv, "DELETE", key)[0], 204)
        # a presigned-looking GET with a bad signature: refused, and its query never logged
        q = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKLOGTEST%2F20260101%2Fus-east-1"
             "%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60"
             "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "ab" * 32)
        self.assertEqual(request(srv, "GET", "/some-bucket/obj?" + q)[0], 403)
        time.sleep(0.5)  # access lines are written every 200 ms
        self.assertEqual(srv.stop(), 0)
        srv.start()  # for close_checked, which stops it again
        lines = [json.loads(l) for l in srv.read_log().splitlines() if l.startswith("{")]
        # each server thread writes its own lines in batches: their order
        # across threads is not the order of the requests
        access = {(l["method"], l["status"]): l for l in lines if l["event"] == "access"}
        audit = [l for l in lines if l["event"] == "audit"]
        self.assertEqual(sorted(access), sorted([("PUT", 200), ("GET", 200), ("GET", 404),
                                                 ("DELETE", 204), ("GET", 403)]))
        self.assertEqual(len([l for l in lines if l["event"] == "access"]), 5)
        self.assertEqual(access[("GET", 200)]["cache"], "hit-local")
        self.assertEqual(access[("GET", 200)]["out"], len(body))
        self.assertEqual(access[("PUT", 200)]["in"], len(body))
        self.assertEqual(access[("GET", 404)]["cache"], "miss")
        self.assertEqual(access[("GET", 403)]["path"], "/some-bucket/obj")
        self.assertEqual(sorted(l["action"] for l in audit), ["delete", "refused"])
        log = srv.read_log()
        self.assertNotIn("supersecretvalue", log)
        self.assertNotIn("ab" * 32, log)
        self.assertTrue(any(l["event"] == "config" for l in lines))


if __name__ == "__main__":
    unittest.main()
