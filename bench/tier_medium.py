"""bench/tier_medium.py - cold reads of bodies of 64 KiB to 4 MiB, compressible
text and random bytes apart: when the answer's headers come, and the whole
answer, straight from moto_server and through a cairnd node over it.

    python3 bench/tier_medium.py [CAIRND ...]     (N=60 objects, ROUNDS=2)
    LO_KIB=4096 HI_MIB=64 N=10 python3 bench/tier_medium.py ...   (another class:
                                                  bench/tier.py's largest)

Text of this size is stored zstd-compressed small enough to ride in its key
record (one request to the tier); random bytes need the record, then the
blob (two).  For each build given (default: bin/cairnd), a node over a fresh
moto_server is written N objects, then, each round, its folder is wiped and
every object is read by boto3 straight from moto and through the node, turn
about.  Prints the medians per object.  Not run by `make bench`: it looks at
one class of the read-through of bench/tier.py, and compares builds."""
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tier  # noqa: E402  (the bench's moto, node and client helpers)

N = int(os.environ.get("N", "60"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
LO = int(os.environ.get("LO_KIB", "64")) * 1024
HI = int(os.environ.get("HI_MIB", "4")) << 20


def bodies():
    rng = random.Random(2)
    text = b"".join(b"line %08d of a build log: compiling module, linking\n" % i
                    for i in range(HI // 56 + 1000))
    out = []
    for i in range(N):
        size = rng.randint(LO, HI)
        if i % 2:
            out.append(("random", rng.randbytes(size)))
        else:
            off = rng.randrange(0, len(text) - size)
            out.append(("text", text[off:off + size]))
    return out


def one_build(binary, objs):
    tier.CAIRND = binary
    work = tempfile.mkdtemp(prefix="cairn-tiermed-")
    moto, nodes = None, []
    try:
        moto, _, m, a, ca = tier.moto_and_node(work, "a", "read")
        nodes.append(a)
        for i, (_, b) in enumerate(objs):
            ca.put_object(Bucket="objs", Key="k%d" % i, Body=b)
            m.put_object(Bucket="direct", Key="k%d" % i, Body=b)
        a.drain()
        for rnd in range(ROUNDS):
            a.wipe()
            ca = tier.client(a.url)
            head, whole = {}, {}
            for i, (kind, b) in enumerate(objs):
                sides = [("direct", m, "direct"), ("cairnd", ca, "objs")]
                if i % 4 >= 2:
                    sides.reverse()
                for side, c, bucket in sides:
                    t = time.perf_counter()
                    r = c.get_object(Bucket=bucket, Key="k%d" % i)
                    t1 = time.perf_counter()
                    got = r["Body"].read()
                    t2 = time.perf_counter()
                    if got != b:
                        raise RuntimeError("%s: k%d: wrong body" % (side, i))
                    head.setdefault((kind, side), []).append((t1 - t) * 1000)
                    whole.setdefault((kind, side), []).append((t2 - t) * 1000)
            for kind in ("text", "random"):
                med = {k: statistics.median(v) for k, v in whole.items()}
                hmed = {k: statistics.median(v) for k, v in head.items()}
                print("  %s, round %d, %-6s: headers %.2f / %.2f ms, whole answer %.2f / %.2f ms "
                      "(direct / cairnd), overhead %+.2f ms" % (
                          os.path.basename(binary), rnd + 1, kind, hmed[(kind, "direct")],
                          hmed[(kind, "cairnd")], med[(kind, "direct")], med[(kind, "cairnd")],
                          med[(kind, "cairnd")] - med[(kind, "direct")]), flush=True)
    finally:
        tier.teardown(nodes, moto, work)


def main():
    builds = sys.argv[1:] or [tier.CAIRND]
    objs = bodies()
    for b in builds:
        one_build(b, objs)


if __name__ == "__main__":
    main()
