"""bench/tier_list.py - S3 listings of the fleet's keys (issue 4).

    python3 bench/tier_list.py [N]      (N keys, 1000 by default)

N small objects are written through node A (tier: moto_server), and the
same bodies straight into a moto bucket.  Then the whole bucket is listed
(ListObjectsV2, pages of 1000, boto3): straight from moto; through A,
which holds every key; through B, a node with an empty folder, the first
time (it reads the record of each key from the tier: the small ones'
from packs, as a warmup does) and again (the records' heads kept).  Medians of RUNS (3) listings each, B's first
listing once per fresh node.
"""
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tier  # noqa: E402


def list_all(c, bucket):
    t = time.perf_counter()
    n = 0
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        n += len(page.get("Contents", []))
    return time.perf_counter() - t, n


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = int(os.environ.get("RUNS", "3"))
    rng = random.Random(5)
    work = tempfile.mkdtemp(prefix="cairn-bench-list-")
    moto, url, m, a, ca = tier.moto_and_node(work, "a", "fleet/")
    nodes = [a]
    try:
        for i in range(n):
            body = rng.randbytes(rng.randint(100, 4096))
            key = "dir%d/obj-%05d.bin" % (i % 10, i)
            ca.put_object(Bucket="objs", Key=key, Body=body)
            m.put_object(Bucket="direct", Key=key, Body=body)
        a.drain()
        direct = [list_all(m, "direct") for _ in range(runs)]
        held = [list_all(ca, "objs") for _ in range(runs)]
        first, again = [], []
        for r in range(runs):
            d = os.path.join(work, "b%d" % r)
            os.mkdir(d)
            b = tier.Node(d, url, "fleet/")
            nodes.append(b)
            cb = tier.client(b.url)
            first.append(list_all(cb, "objs"))
            again.append(list_all(cb, "objs"))
        for name, got in (("direct", direct), ("held", held), ("first", first), ("again", again)):
            if any(k != n for _, k in got):
                raise RuntimeError("%s: listed %s keys, not %d" % (name, [k for _, k in got], n))
        med = {name: statistics.median(t for t, _ in got) for name, got in
               (("direct", direct), ("held", held), ("first", first), ("again", again))}
        tier.save("tier-list", [
            tier.title("fleet listing"),
            "command: python3 bench/tier_list.py %d (RUNS=%d, medians); boto3, ListObjectsV2 "
            "pages of 1000" % (n, runs),
            "",
            "listing %d keys:" % n,
            "  straight from moto_server                  %7.3f s" % med["direct"],
            "  through the node that wrote them (holds all) %5.3f s" % med["held"],
            "  through a node with an empty folder, first %7.3f s   (reads the %d records: "
            "from packs, as a warmup)" % (med["first"], n),
            "  the same node again (heads kept)           %7.3f s" % med["again"],
        ])
    finally:
        tier.teardown(nodes, moto, work)


if __name__ == "__main__":
    main()
