"""Renders what the main dashboard shows, from a real run, to a PNG for the
README (docs/dashboard.png):

    python3 deploy/grafana/render.py [SECONDS]

Starts cairnd (bin/cairnd) and a Prometheus (Debian's package) scraping it
every second, drives a mixed workload for SECONDS (default 120): CI jobs
that restore and save caches through the S3 API and a build tool reading
and writing the native CAS, with the share of repeated work rising over
time; then asks Prometheus for four of the dashboard's panels with the
dashboard's own queries (deploy/grafana/cairn.json) and draws them with
gnuplot.  Everything on loopback; nothing is left behind.
"""
import hashlib
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PANELS = ["Hit ratio by front end", "Requests by front end and status",
          "Latency (p50, p95, p99) by front end", "Storage"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def req(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=body)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    work = tempfile.mkdtemp(prefix="cairn-render-")
    procs = []
    try:
        cport, pport = free_port(), free_port()
        procs.append(subprocess.Popen(
            [os.path.join(ROOT, "bin", "cairnd"), "--listen", "127.0.0.1:%d" % cport, "--data",
             os.path.join(work, "data"), "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with open(os.path.join(work, "prom.yml"), "w") as f:
            f.write("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: cairn\n"
                    "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % cport)
        procs.append(subprocess.Popen(
            ["prometheus", "--config.file", os.path.join(work, "prom.yml"), "--storage.tsdb.path",
             os.path.join(work, "tsdb"), "--web.listen-address", "127.0.0.1:%d" % pport],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2)
        req(cport, "PUT", "/ci-cache")
        rng = random.Random(7)
        start = time.time()
        while time.time() - start < seconds:
            progress = (time.time() - start) / seconds
            # a cache restore: the key repeats more and more often as the run goes on
            k = rng.randrange(40 if rng.random() < 0.3 + 0.6 * progress else 100000)
            path = "/ci-cache/job-%d.tar" % k
            if req(cport, "GET", path) == 404:
                req(cport, "PUT", path, rng.randbytes(rng.choice([20000, 200000, 900000])))
            # a compiler cache: a few lookups, then the missing object
            for _ in range(5):
                n = rng.randrange(30 if rng.random() < 0.5 + 0.4 * progress else 10**6)
                b = (b"object file %d: code and symbols\n" % n) * 200  # compresses well
                d = hashlib.sha256(b).hexdigest()
                if req(cport, "GET", "/cas/" + d) == 404:
                    req(cport, "PUT", "/cas/" + d, b)
        time.sleep(3)
        end = time.time()

        with open(os.path.join(ROOT, "deploy", "grafana", "cairn.json")) as f:
            dash = json.load(f)
        by_title = {p["title"]: p for p in dash["panels"]}
        plots = []
        for n, title in enumerate(PANELS):
            series = []
            for t in by_title[title]["targets"]:
                e = (t["expr"].replace("$instance", ".*").replace("$__rate_interval", "15s"))
                q = urllib.parse.urlencode({"query": e, "start": start, "end": end, "step": 2})
                with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query_range?%s"
                                            % (pport, q)) as r:
                    res = json.loads(r.read())["data"]["result"]
                for s in res:
                    legend = t["legendFormat"]
                    for k, v in s["metric"].items():
                        legend = legend.replace("{{%s}}" % k, v)
                    fname = os.path.join(work, "p%d-%d.tsv" % (n, len(series)))
                    with open(fname, "w") as f:
                        for ts, v in s["values"]:
                            if v not in ("NaN", "+Inf", "-Inf"):
                                f.write("%.1f\t%s\n" % (float(ts) - start, v))
                    series.append((fname, legend))
            plots.append((title, by_title[title]["fieldConfig"]["defaults"]["unit"], series))

        out = os.path.join(ROOT, "docs", "dashboard.png")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        gp = ["set terminal pngcairo size 1400,900 font 'sans,10'" if has_cairo() else
              "set terminal png size 1400,900", "set output '%s'" % out,
              "set multiplot layout 2,2 title 'cairn: %d s of CI cache traffic "
              "(queries of the dashboard, from a real Prometheus)'" % seconds,
              "set key bottom right font ',8'", "set grid", "set xlabel 'seconds'"]
        for title, unit, series in plots:
            gp.append("set title '%s'" % title.replace("'", ""))
            gp.append("set ylabel '%s'" % unit)
            if unit == "percentunit":
                gp.append("set yrange [0:1]")
            else:
                gp.append("set autoscale y")
            if not series:
                gp.append("plot 0 title 'no data'")
                continue
            gp.append("plot " + ", ".join("'%s' using 1:2 with lines lw 2 title '%s'"
                                           % (f, l.replace("'", "")) for f, l in series))
        gp.append("unset multiplot")
        subprocess.run(["gnuplot"], input="\n".join(gp).encode(), check=True)
        print("wrote", out)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def has_cairo():
    r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in r.stdout + r.stderr


if __name__ == "__main__":
    main()
