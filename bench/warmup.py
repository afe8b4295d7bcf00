"""bench/warmup.py - `cairn warmup` against aws-cli fetching the same objects
one at a time, both from moto_server (issue 6's figures).

    python3 bench/warmup.py          (make bench runs it)
    N_SMALL=1000 N_BIG=4 BIG_MIB=64 python3 bench/warmup.py   (a quicker run)

Two sets: N_SMALL entries of 64 KiB (10,000) and N_BIG entries of BIG_MIB
MiB (20 of 256).  Each set is written through a cairnd node whose cold tier
is moto_server, and the same bodies straight into another moto bucket.  The
node's folder is then wiped and `cairn warmup` (server-side: cairnd pulls
every entry from moto, checks it and stores it locally; small entries come
in packs of key records, a few requests for many) is timed; then
`aws s3 cp --recursive` with max_concurrent_requests = 1 fetches the same
objects from moto sequentially into a folder.  Target: warmup at least 5x
faster.  Random bodies (no compression helps cairn).  Everything on
127.0.0.1, ports chosen at run time; the raw numbers go to
bench/out/warmup-<stamp>.txt too.
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tier as tb  # noqa: E402  (bench/tier.py: moto, nodes, clients)

ROOT = tb.ROOT
CAIRN = os.path.join(ROOT, "bin", "cairn")
KIB, MIB = 1024, 1024 * 1024


def random_body(rng, size):
    """size random bytes (randbytes cannot make 256 MiB at once)."""
    out, left = [], size
    while left:
        n = min(left, 16 * MIB)
        out.append(rng.randbytes(n))
        left -= n
    return b"".join(out)


def main():
    n_small = int(os.environ.get("N_SMALL", "10000"))
    n_big = int(os.environ.get("N_BIG", "20"))
    big = int(os.environ.get("BIG_MIB", "256")) * MIB
    rng = random.Random(6)
    work = tempfile.mkdtemp(prefix="cairn-warmbench-")
    moto, node = None, None
    rows = []
    try:
        moto, moto_url, m, node, c = tb.moto_and_node(work, "node", "warm")
        sets = [("small", n_small, 64 * KIB), ("big", n_big, big)]
        items = {}
        for name, n, size in sets:
            items[name] = []
            for i in range(n):
                body = random_body(rng, size)
                key = "%s/%05d" % (name, i)
                c.put_object(Bucket="objs", Key=key, Body=body)
                m.put_object(Bucket="direct", Key=key, Body=body)
                items[name].append("objs/" + key)
        node.drain(timeout=3600)

        cfg = os.path.join(work, "aws-config")
        with open(cfg, "w") as f:
            f.write("[default]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = 1\n")
        env = dict(os.environ, CAIRN_URL=node.url, CAIRN_CONFIG="/dev/null",
                   CAIRN_ACCESS_KEY=tb.CREDS["aws_access_key_id"],
                   CAIRN_SECRET_KEY=tb.CREDS["aws_secret_access_key"], AWS_CONFIG_FILE=cfg,
                   AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                   AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        for name, n, size in sets:
            # cairn warmup on a wiped node
            node.wipe()
            env["CAIRN_URL"] = node.url
            listing = os.path.join(work, name + ".items")
            with open(listing, "w") as f:
                f.write("".join(x + "\n" for x in items[name]))
            t0 = time.time()
            p = subprocess.run([CAIRN, "warmup", "--json", listing], capture_output=True,
                               env=env, text=True)
            t_warm = time.time() - t0
            if p.returncode != 0:
                raise RuntimeError("warmup failed: %s %s" % (p.stdout, p.stderr))
            s = json.loads(p.stdout)
            if s["warmed"] != n:
                raise RuntimeError("warmup warmed %d of %d" % (s["warmed"], n))
            packed = node.status()["tier"].get("pack_reads", 0)
            # aws-cli, one object at a time
            out = os.path.join(work, "aws-" + name)
            t0 = time.time()
            subprocess.run(["aws", "s3", "cp", "--recursive", "--quiet", "--endpoint-url",
                            moto_url, "s3://direct/%s/" % name, out], check=True, env=env)
            t_aws = time.time() - t0
            got = sum(1 for _ in os.scandir(out))
            if got != n:
                raise RuntimeError("aws-cli fetched %d of %d" % (got, n))
            with open(os.path.join(out, os.listdir(out)[0]), "rb") as f:
                hashlib.sha256(f.read())  # it is a real file
            shutil.rmtree(out)
            total = n * size
            rows.append((name, n, size, t_warm, t_aws, total, packed))
            print("  %s: warmup %.1f s (%d entries from packs), aws-cli %.1f s" % (
                name, t_warm, packed, t_aws), flush=True)

        lines = [
            tb.title("warmup"),
            "command: python3 bench/warmup.py (N_SMALL=%d N_BIG=%d BIG_MIB=%d); moto_server as "
            "the tier; cairn warmup (server-side, --parallel 8) on a wiped node against "
            "aws s3 cp --recursive with max_concurrent_requests = 1" % (n_small, n_big,
                                                                       big // MIB),
            "",
            "%-22s %10s %12s %12s %10s %12s %8s" % ("set", "warmup s", "entries/s", "MB/s",
                                                   "aws-cli s", "entries/s", "ratio"),
        ]
        for name, n, size, tw, ta, total, packed in rows:
            lines.append("%-22s %10.1f %12.1f %12.1f %10.1f %12.1f %7.1fx" % (
                "%d x %s" % (n, "%d KiB" % (size // KIB) if size < MIB else
                             "%d MiB" % (size // MIB)),
                tw, n / tw, total / tw / 1e6, ta, n / ta, ta / tw))
        for name, n, size, tw, ta, total, packed in rows:
            lines.append("%s: %d of %d entries warmed from packs of key records" % (
                name, packed, n))
        lines.append("target: warmup at least 5x faster than aws-cli one at a time")
        tb.save("warmup", lines)
    finally:
        tb.teardown([node] if node else [], moto, work)


if __name__ == "__main__":
    main()
