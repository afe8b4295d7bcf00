"""bench/tier.py - the cold tier: read-through of cold objects, and what the
tier receives for a write workload with duplicates.

    python3 bench/tier.py [N]        (make bench runs it; N defaults to 1000)

1. Read-through.  N objects (by default 900 of 4-64 KiB, 90 of 64 KiB-4 MiB,
   10 of 4-64 MiB; a mix of text-like and random bytes) are written through
   cairnd's S3 API into a node whose tier is moto_server, and the same bodies
   straight into another moto bucket.  The node's folder is then wiped, so
   every object is cold, and boto3 reads each (a) straight from moto and
   (b) through the node, which reads it from moto, checks it and stores it;
   (a) and (b) take turns object by object, so the machine's drift falls on
   both alike.  Target: (b) takes at most 10 % longer than (a), in total.
2. Duplicates.  A fresh node writes N/2 distinct bodies, each under two keys;
   the tier must receive each body once (bytes and object counts).

Everything on 127.0.0.1, ports chosen at run time, stopped on exit.  Prints
a table; the raw numbers go to bench/out/tier-<stamp>.txt too.
"""
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
    """Stops the nodes and moto, and removes the work folder."""
    for nd in nodes:
        try:
            nd.stop()
        except Exception:
            pass
    moto.terminate()
    moto.wait(30)
    shutil.rmtree(work, ignore_errors=True)


def start_moto():
    """moto_server on a free port: (process, url)."""
    port = free_port()
    proc = subprocess.Popen(["moto_server", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, "http://127.0.0.1:%d" % port


class Node:
    def __init__(self, data, moto_url, prefix):
        self.data, self.moto_url, self.prefix = data, moto_url, prefix
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
             "--log-level", os.environ.get("TIER_LOG_LEVEL", "warn")], stdout=subprocess.DEVNULL, stderr=self.log, env=env)
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


def client(url):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}), **CREDS)


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


def read_pairs(direct, through, keys):
    """Reads every key from both, in turn (direct first for even keys,
    through first for odd ones), so that the machine's drift falls on both
    alike.  Returns ({"direct"|"through": seconds}, {same: {size class:
    seconds}})."""
    total = {"direct": 0.0, "through": 0.0}
    by_class = {side: {name: 0.0 for _, name in CLASSES} for side in total}
    for i, (k, digest) in enumerate(keys):
        order = (("direct", direct, "direct"), ("through", through, "objs"))
        for side, c, bucket in (order if i % 2 == 0 else order[::-1]):
            t = time.time()
            data = c.get_object(Bucket=bucket, Key=k)["Body"].read()
            dt = time.time() - t
            if hashlib.sha256(data).hexdigest() != digest:
                raise RuntimeError("%s/%s: wrong body" % (bucket, k))
            total[side] += dt
            by_class[side][next(name for lim, name in CLASSES
                                if lim is None or len(data) <= lim)] += dt
    return total, by_class


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = int(os.environ.get("RUNS", "3"))
    rng = random.Random(1)
    work = tempfile.mkdtemp(prefix="cairn-tierbench-")
    moto, moto_url = start_moto()
    nodes = []
    try:
        wait_http(moto_url)
        m = client(moto_url)
        m.create_bucket(Bucket="bench")
        m.create_bucket(Bucket="direct")
        objs = bodies(n, rng)
        total = sum(len(b) for b in objs)
        keys = [("obj/%05d" % i, hashlib.sha256(b).hexdigest()) for i, b in enumerate(objs)]

        data = os.path.join(work, "a")
        os.mkdir(data)
        a = Node(data, moto_url, "read")
        nodes.append(a)
        ca = client(a.url)
        ca.create_bucket(Bucket="objs")
        for (k, _), b in zip(keys, objs):
            ca.put_object(Bucket="objs", Key=k, Body=b)
            m.put_object(Bucket="direct", Key=k, Body=b)
        a.drain()
        del objs

        direct, through, gets = [], [], []
        for run in range(runs):
            # every object cold: the node's folder wiped before each pass
            a.wipe()
            ca = client(a.url)
            tot, by = read_pairs(m, ca, keys)
            t_direct, t_through, cd, ct = tot["direct"], tot["through"], by["direct"], by["through"]
            direct.append(t_direct)
            through.append(t_through)
            st = a.status()["tier"]
            gets.append(a.tier_reads())
            print("  run %d: direct from moto %.1f s, through cairnd %.1f s (%d read-through "
                  "hits, %d errors, %d GETs to moto)" % (run + 1, t_direct, t_through, st["hits"],
                                                         st["errors"], gets[-1]), flush=True)
            print("         by size: " + ", ".join("%s %.2f s vs %.2f s" % (name, cd[name], ct[name])
                                                    for _, name in CLASSES), flush=True)
        direct.sort()
        through.sort()
        td, tt = direct[len(direct) // 2], through[len(through) // 2]

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
            "command: python3 bench/tier.py %d (RUNS=%d, medians); moto_server as the tier; "
            "boto3 as the client" % (n, runs),
            "",
            "read-through of %d cold objects (%.0f MiB, 4 KiB to 64 MiB):" % (n, total / MIB),
            "  boto3 straight from moto_server   %8.1f s  %7.1f MB/s" % (td, total / td / 1e6),
            "  boto3 through cairnd (cold)       %8.1f s  %7.1f MB/s" % (tt, total / tt / 1e6),
            "  overhead                          %+7.1f %%   (target <= +10 %%)" % (
                (tt / td - 1) * 100),
            "  GETs to moto_server: direct %d, through cairnd %d (a key record each, and the blob"
            % (n, sorted(gets)[len(gets) // 2]),
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
