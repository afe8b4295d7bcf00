"""bench/tier.py - the cold tier: read-through of cold objects, and what the
tier receives for a write workload with duplicates.

    python3 bench/tier.py [N]        (make bench runs it; N defaults to 1000)
    SIZES=small|large python3 bench/tier.py [N]   (read only the objects of the N
                                     in at most 64 KiB, or only the others)
    CLIENTS=K python3 bench/tier.py [N]   (K readers at once, as aws-cli's
                                     `s3 cp --recursive` (10) and BuildKit do: the
                                     sides take turns by chunks of 100 objects)
    PIN=1 python3 bench/tier.py [N]  (the client and moto_server on one half of
                                     the CPUs, cairnd and nginx on the other, as if
                                     each relay had a machine of its own)

1. Read-through.  N objects (by default 900 of 4-64 KiB, 90 of 64 KiB-4 MiB,
   10 of 4-64 MiB; a mix of text-like and random bytes) are written through
   cairnd's S3 API into a node whose tier is moto_server, and the same bodies
   straight into another moto bucket.  The node's folder is then wiped, so
   every object is cold, and boto3 reads each (a) straight from moto,
   (b) through the node, which reads it from moto, checks it and stores it,
   and (c) through the peer, nginx's proxy_cache in front of moto (a local
   copy kept, nothing checked), its cache emptied too; the three take turns
   object by object, so the machine's drift falls on all alike.  Target:
   (b) takes at most 10 % longer than (a), in total.
2. Duplicates.  A fresh node writes N/2 distinct bodies, each under two keys;
   the tier must receive each body once (bytes and object counts).

Everything on 127.0.0.1, ports chosen at run time, stopped on exit.  Prints
a table; the raw numbers go to bench/out/tier-<stamp>.txt too.
"""
import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAIRND = os.path.join(ROOT, "bin", "cairnd")
KIB, MIB = 1024, 1024 * 1024
CREDS = dict(aws_access_key_id="bench", aws_secret_access_key="bench-secret")
# PIN=1: the client and moto_server on the first half of the CPUs, each relay
# (cairnd, nginx) on the other half, as if it ran on its own machine.
CPUS = sorted(os.sched_getaffinity(0))
PIN = os.environ.get("PIN") == "1" and len(CPUS) >= 2
CLIENT_CPUS, RELAY_CPUS = set(CPUS[:len(CPUS) // 2]), set(CPUS[len(CPUS) // 2:])


def on_relay_cpus():
    """preexec_fn for a relay's process under PIN=1."""
    if PIN:
        os.sched_setaffinity(0, RELAY_CPUS)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("%s did not come up" % url)


def title(what):
    """The first line of a result: what, when, at which commit."""
    return "cairn %s bench %s, commit %s" % (
        what, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True).stdout.strip())


def save(name, lines):
    """Prints the result and keeps it in bench/out/<name>-<stamp>.txt."""
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "%s-%s.txt" % (
            name, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))), "w") as f:
        f.write(text + "\n")


def teardown(nodes, moto, work):
    """Stops the nodes and moto (if started), and removes the work folder (if
    given)."""
    for nd in nodes:
        try:
            nd.stop()
        except Exception:
            pass
    if moto is not None:
        moto.terminate()
        moto.wait(30)
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)


def start_moto():
    """moto_server on a free port: (process, url)."""
    port = free_port()
    proc = subprocess.Popen(["moto_server", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, "http://127.0.0.1:%d" % port


def moto_and_node(work, name, prefix):
    """moto_server with the buckets "bench" (the node's tier, under prefix)
    and "direct" (the same objects, for the client to read straight), and a
    node over it, its folder work/name, with a bucket "objs": (moto's process,
    moto's URL, a client of moto, the node, a client of the node).  What it
    started is stopped again if it fails."""
    moto, url = start_moto()
    node = None
    try:
        wait_http(url)
        m = client(url)
        m.create_bucket(Bucket="bench")
        m.create_bucket(Bucket="direct")
        data = os.path.join(work, name)
        os.mkdir(data)
        node = Node(data, url, prefix)
        c = client(node.url)
        c.create_bucket(Bucket="objs")
    except BaseException:
        teardown([node] if node else [], moto, None)
        raise
    return moto, url, m, node, c


class Node:
    def __init__(self, data, moto_url, prefix, extra=()):
        self.data, self.moto_url, self.prefix, self.extra = data, moto_url, prefix, list(extra)
        self.start()

    def start(self):
        self.port = free_port()
        env = dict(os.environ, AWS_ACCESS_KEY_ID=CREDS["aws_access_key_id"],
                   AWS_SECRET_ACCESS_KEY=CREDS["aws_secret_access_key"])
        # TIER_LOG_DIR keeps the nodes' logs; TIER_LOG_LEVEL=debug times each read-through
        logdir = os.environ.get("TIER_LOG_DIR")
        self.log = open(os.path.join(logdir, os.path.basename(self.data) + ".log") if logdir
                        else self.data + ".log", "ab")
        self.proc = subprocess.Popen(
            [CAIRND, "--listen", "127.0.0.1:%d" % self.port, "--data", self.data, "--tier",
             "s3://bench/" + self.prefix, "--tier-endpoint", self.moto_url, "--max-size", "20G",
             "--log-level", os.environ.get("TIER_LOG_LEVEL", "warn")] + self.extra, stdout=subprocess.DEVNULL, stderr=self.log, env=env,
            preexec_fn=on_relay_cpus)
        self.url = "http://127.0.0.1:%d" % self.port
        wait_http(self.url + "/healthz")

    def wipe(self):
        """Restarts the node on an empty folder: every object is cold."""
        self.stop()
        shutil.rmtree(self.data)
        os.mkdir(self.data)
        self.start()

    def status(self):
        return json.loads(urllib.request.urlopen(self.url + "/status").read())

    def tier_reads(self):
        """GETs the node sent to the tier (key records and blobs), from /metrics."""
        text = urllib.request.urlopen(self.url + "/metrics").read().decode()
        line = 'cairn_tier_request_duration_seconds_count{kind="read"} '
        return next(int(float(l[len(line):])) for l in text.splitlines() if l.startswith(line))

    def drain(self, timeout=600):
        end = time.time() + timeout
        def owed():
            t = self.status()["tier"]
            return t["queue"] + t.get("packs_owed", 0)  # packs of small key records too
        while owed() and time.time() < end:
            time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


CLIENTS = int(os.environ.get("CLIENTS", "1"))


def client(url):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1},
                                      max_pool_connections=max(10, CLIENTS)), **CREDS)


def bodies(n, rng):
    sizes = []
    for i in range(n):
        r = i % 100
        if r < 90:
            sizes.append(rng.randint(4 * KIB, 64 * KIB))
        elif r < 99:
            sizes.append(rng.randint(64 * KIB, 4 * MIB))
        else:
            sizes.append(rng.randint(4 * MIB, 64 * MIB))
    text = b"".join(b"line %08d of a build log: compiling module, linking\n" % i
                    for i in range(1400000))
    out = []
    for i, size in enumerate(sizes):
        if i % 2:
            out.append(rng.randbytes(size))
        else:
            off = rng.randrange(0, len(text) - size)
            out.append(text[off:off + size])
    return out


CLASSES = ((64 * KIB, "<=64K"), (4 * MIB, "<=4M"), (None, ">4M"))


def check(name, bucket, key, data, digest):
    """Raises unless data, read from side `name`, has the SHA-256 digest."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise RuntimeError("%s: %s/%s: wrong body" % (name, bucket, key))


def read_sides(sides, keys):
    """Reads every key from each side in turn, the first side rotating from
    one key to the next, so that the machine's drift falls on all alike.
    sides: [(name, client, bucket)].  Returns ({name: seconds}, {name: {size
    class: seconds}})."""
    total = {name: 0.0 for name, _, _ in sides}
    by_class = {name: {cname: 0.0 for _, cname in CLASSES} for name in total}
    for i, (k, digest) in enumerate(keys):
        r = i % len(sides)
        for name, c, bucket in sides[r:] + sides[:r]:
            t = time.time()
            data = c.get_object(Bucket=bucket, Key=k)["Body"].read()
            dt = time.time() - t
            check(name, bucket, k, data, digest)  # (not timed)
            total[name] += dt
            by_class[name][next(cname for lim, cname in CLASSES
                                if lim is None or len(data) <= lim)] += dt
    return total, by_class


def read_sides_at_once(sides, keys, clients, chunk=100):
    """CLIENTS=K: K threads read at once, as aws-cli's `s3 cp --recursive`
    (10) and BuildKit do.  The keys go in chunks of `chunk`; each side reads
    a whole chunk, K at a time, before the next side does (the first side
    rotating from one chunk to the next, so that the machine's drift falls on
    all alike).  Returns ({name: seconds of wall time}, None)."""
    total = {name: 0.0 for name, _, _ in sides}
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        for i in range(0, len(keys), chunk):
            r = (i // chunk) % len(sides)
            for name, c, bucket in sides[r:] + sides[:r]:
                def one(kd, name=name, c=c, bucket=bucket):  # (its check is timed too)
                    check(name, bucket, kd[0], c.get_object(Bucket=bucket, Key=kd[0])["Body"].read(),
                          kd[1])
                t = time.time()
                list(ex.map(one, keys[i:i + chunk]))
                total[name] += time.time() - t
    return total, None


def cpu_seconds(pids):
    """User and system CPU time so far of the given processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def nginx_start(d, workers, http, preexec_fn=None):
    """Starts nginx with its files in the folder d: `http` is what its http
    block holds besides the temporary folders.  Returns the process."""
    conf = """# generated by bench/tier.py
%(user)s
worker_processes %(workers)d;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
""" % dict(user="user root root;" if os.geteuid() == 0 else "", workers=workers, d=d)
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf + http + "}\n")
    return subprocess.Popen(["nginx", "-c", os.path.join(d, "nginx.conf"), "-p", d,
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=preexec_fn)


class NginxCache:
    """The peer: nginx's proxy_cache in front of moto_server, with its stock
    buffers: a read-through cache that keeps a local copy of each object as
    it passes (no digest check, no fsync).  Restarted on an empty cache by
    wipe(), like a node."""

    def __init__(self, work, upstream):
        self.dir, self.upstream, self.proc = os.path.join(work, "nginx"), upstream, None
        self.start()

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "cache"))
        self.port = free_port()
        self.proc = nginx_start(self.dir, os.cpu_count() or 1, """
    proxy_cache_path %(d)s/cache levels=1:2 keys_zone=objs:16m max_size=20g inactive=1d
                     use_temp_path=off;
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass %(up)s;
            proxy_http_version 1.1;
            proxy_cache objs;
            proxy_cache_key $uri;
            proxy_cache_valid 200 1d;
            proxy_cache_lock on;
        }
    }
""" % dict(d=self.dir, port=self.port, up=self.upstream), preexec_fn=on_relay_cpus)
        self.url = "http://127.0.0.1:%d" % self.port
        wait_http(self.url + "/")

    def pids(self):
        kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                              text=True).stdout.split()
        return [self.proc.pid] + [int(k) for k in kids]

    def cached(self):
        """Objects in nginx's cache: each read through it must have left one."""
        return sum(len(files) for _, _, files in os.walk(os.path.join(self.dir, "cache")))

    def wipe(self):
        self.stop()
        self.start()

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(60)
            self.proc = None


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = int(os.environ.get("RUNS", "3"))
    rng = random.Random(1)
    if PIN:  # this process (the client) and moto_server, which inherits it
        os.sched_setaffinity(0, CLIENT_CPUS)
    work = tempfile.mkdtemp(prefix="cairn-tierbench-")
    moto, nodes = None, []
    try:
        moto, moto_url, m, a, ca = moto_and_node(work, "a", "read")
        nodes.append(a)
        objs = bodies(n, rng)
        part = os.environ.get("SIZES", "all")  # small: only those <= 64 KiB; large: the rest
        if part != "all":
            objs = [b for b in objs if (len(b) <= 64 * KIB) == (part == "small")]
        total = sum(len(b) for b in objs)
        keys = [("obj/%05d" % i, hashlib.sha256(b).hexdigest()) for i, b in enumerate(objs)]
        for (k, _), b in zip(keys, objs):
            ca.put_object(Bucket="objs", Key=k, Body=b)
            m.put_object(Bucket="direct", Key=k, Body=b)
        a.drain()
        del objs

        peer = NginxCache(work, moto_url)
        nodes.append(peer)
        sides = ("direct", "through", "nginx")
        times = {side: [] for side in sides}
        cpu = {"through": [], "nginx": []}
        gets = []
        for run in range(runs):
            # every object cold: the node's folder and nginx's cache wiped before each pass
            a.wipe()
            peer.wipe()
            ca, cn = client(a.url), client(peer.url)
            c0 = {"through": cpu_seconds([a.proc.pid]), "nginx": cpu_seconds(peer.pids())}
            sides_ = [("direct", m, "direct"), ("through", ca, "objs"), ("nginx", cn, "direct")]
            tot, by = (read_sides(sides_, keys) if CLIENTS == 1
                       else read_sides_at_once(sides_, keys, CLIENTS))
            cpu["through"].append(cpu_seconds([a.proc.pid]) - c0["through"])
            cpu["nginx"].append(cpu_seconds(peer.pids()) - c0["nginx"])
            for side in sides:
                times[side].append(tot[side])
            if peer.cached() < len(keys):  # (and the listing its start-up check read)
                raise RuntimeError("nginx cached %d objects of %d" % (peer.cached(), len(keys)))
            st = a.status()["tier"]
            gets.append(a.tier_reads())
            print("  run %d: direct from moto %.1f s, through cairnd %.1f s (%+.1f %%), through "
                  "nginx %.1f s (%+.1f %%); %d read-through hits, %d errors, %d GETs to moto; "
                  "CPU cairnd %.1f s, nginx %.1f s" % (
                      run + 1, tot["direct"], tot["through"],
                      (tot["through"] / tot["direct"] - 1) * 100, tot["nginx"],
                      (tot["nginx"] / tot["direct"] - 1) * 100, st["hits"], st["errors"],
                      gets[-1], cpu["through"][-1], cpu["nginx"][-1]), flush=True)
            if by is not None:
                print("         by size (direct / cairnd / nginx): " + ", ".join(
                    "%s %.2f / %.2f / %.2f s" % (name, by["direct"][name], by["through"][name],
                                                 by["nginx"][name]) for _, name in CLASSES),
                      flush=True)
        peer.stop()

        def median(xs):
            return sorted(xs)[len(xs) // 2]

        def ratios(side):
            return [t / d - 1 for t, d in zip(times[side], times["direct"])]

        td, tt, tn = (median(times[s]) for s in sides)

        # duplicates: N/2 bodies, each under two keys
        data_b = os.path.join(work, "b")
        os.mkdir(data_b)
        b = Node(data_b, moto_url, "dups")
        nodes.append(b)
        cb = client(b.url)
        cb.create_bucket(Bucket="dups")
        distinct = [rng.randbytes(rng.randint(4 * KIB, 256 * KIB)) for _ in range(max(1, n // 2))]
        for i, body in enumerate(distinct):
            cb.put_object(Bucket="dups", Key="x/%05d" % i, Body=body)
            cb.put_object(Bucket="dups", Key="y/%05d" % i, Body=body)
        b.drain()
        blobs = [o for p in m.get_paginator("list_objects_v2").paginate(
            Bucket="bench", Prefix="dups/blobs/") for o in p.get("Contents", [])]
        records = [o for p in m.get_paginator("list_objects_v2").paginate(
            Bucket="bench", Prefix="dups/keys/") for o in p.get("Contents", [])]
        packs = [o for p in m.get_paginator("list_objects_v2").paginate(
            Bucket="bench", Prefix="dups/packs/") for o in p.get("Contents", [])]
        st = b.status()["tier"]

        lines = [
            title("cold-tier"),
            "command: %s%s%spython3 bench/tier.py %d (RUNS=%d, medians); moto_server as the tier; "
            "boto3 as the client" % ("" if part == "all" else "SIZES=%s " % part,
                                     "PIN=1 " if PIN else "",
                                     "CLIENTS=%d " % CLIENTS if CLIENTS > 1 else "", n, runs),
            "",
            "read-through of %d cold objects (%.0f MiB, %s)%s:" % (
                len(keys), total / MIB, {"all": "4 KiB to 64 MiB", "small": "4 to 64 KiB",
                                         "large": "64 KiB to 64 MiB"}[part],
                ", %d readers at once" % CLIENTS if CLIENTS > 1 else ""),
            "  boto3 straight from moto_server   %8.1f s  %7.1f MB/s" % (td, total / td / 1e6),
            "  boto3 through cairnd (cold)       %8.1f s  %7.1f MB/s" % (tt, total / tt / 1e6),
            "  boto3 through nginx proxy_cache   %8.1f s  %7.1f MB/s" % (tn, total / tn / 1e6),
            "  overhead, cairnd                  %+7.1f %%   (target <= +10 %%; median of the "
            "runs' ratios)" % (median(ratios("through")) * 100),
            "  overhead, nginx (the peer)        %+7.1f %%" % (median(ratios("nginx")) * 100),
            "  server CPU per pass               %8.1f s cairnd, %.1f s nginx" % (
                median(cpu["through"]), median(cpu["nginx"])),
            "  GETs to moto_server: direct %d, through cairnd %d (a key record each, and the blob"
            % (len(keys), sorted(gets)[len(gets) // 2]),
            "                       of each body stored in more than 64 KiB)",
            "",
            "write workload, %d bodies each under two keys (%d PUTs):" % (len(distinct),
                                                                     2 * len(distinct)),
            "  blobs in the tier                 %8d   (distinct bodies: %d)" % (len(blobs),
                                                                               len(distinct)),
            "  blob bytes uploaded               %8.1f MiB (distinct body bytes: %.1f MiB)" % (
                st["upload_bytes"] / MIB, sum(len(x) for x in distinct) / MIB),
            "  blob uploads                      %8d" % (st["uploads"]),
            "  key records                       %8d   %.1f MiB (bodies stored in at most 64 KiB"
            % (len(records), sum(o["Size"] for o in records) / MIB),
            "                                               ride in them too: one request to read)",
            "  packs of key records              %8d   %.1f MiB (%d records: the small ones again,"
            % (len(packs), sum(o["Size"] for o in packs) / MIB, st.get("packed_records", 0)),
            "                                               for warmups)",
        ]
        save("tier", lines)
    finally:
        teardown(nodes, moto, work)


if __name__ == "__main__":
    main()
