"""bench/tier_ranges.py - ranges of a blob still arriving from the cold tier.

    python3 bench/tier_ranges.py [CAIRND]     (CAIRND defaults to bin/cairnd)

A 192 MiB text-like body (stored as zstd frames) is written through one node
into moto_server; a second node with an empty folder then gets a HEAD of it
(which starts its fetch) and 48 ranges of 4 MiB at once, as a parallel
downloader would ask for them.  Prints whether every range came back equal,
the wall time, and the CPU seconds the second cairnd used (from /proc).
Everything on 127.0.0.1, stopped on exit.
"""
import hashlib
import http.client
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tier as T  # noqa: E402  (moto_server and the nodes, as bench/tier.py runs them)

MIB = 1 << 20


def main():
    if len(sys.argv) > 1:
        T.CAIRND = os.path.abspath(sys.argv[1])
    moto, url = T.start_moto()
    T.wait_http(url)
    T.client(url).create_bucket(Bucket="bench")
    work = tempfile.mkdtemp(prefix="cairn-ranges-")
    os.mkdir(work + "/w")
    os.mkdir(work + "/a")
    nodes = []
    try:
        w = T.Node(work + "/w", url, "ranges")
        nodes.append(w)
        text = b"".join(b"line %d of a build log\n" % i for i in range(9000000))[:192 * MIB]
        d = hashlib.sha256(text).hexdigest()
        c = http.client.HTTPConnection("127.0.0.1", w.port)
        c.request("PUT", "/cas/" + d, text)
        assert c.getresponse().status == 200
        w.drain()
        a = T.Node(work + "/a", url, "ranges")
        nodes.append(a)
        cpu0, t0 = T.cpu_seconds([a.proc.pid]), time.time()
        c = http.client.HTTPConnection("127.0.0.1", a.port)
        c.request("HEAD", "/cas/" + d)
        c.getresponse().read()
        ok = []

        def get(lo):
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=300)
            c.request("GET", "/cas/" + d, headers={"Range": "bytes=%d-%d" % (lo, lo + 4 * MIB - 1)})
            ok.append(c.getresponse().read() == text[lo:lo + 4 * MIB])

        ts = [threading.Thread(target=get, args=(i * 4 * MIB,)) for i in range(48)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print("%s: every range equal: %s, wall %.1f s, cairnd CPU %.1f s" % (
            T.title("tier ranges"), all(ok) and len(ok) == 48, time.time() - t0,
            T.cpu_seconds([a.proc.pid]) - cpu0))
    finally:
        T.teardown(nodes, moto, work)


if __name__ == "__main__":
    main()
