"""bench/tier_shared.py - keys with one body, read cold at once.

    python3 bench/tier_shared.py [CAIRND ...]     (default: bin/cairnd)

One 50 MiB random body is stored under 8 keys through a node whose tier is
moto_server.  For each cairnd binary given, three passes: the node's folder
is wiped, and 8 clients read the 8 keys at once.  Prints each pass's time
and the bytes the node fetched from the tier: the blob once, when the keys
share its fetch.  Everything on 127.0.0.1, stopped on exit.
"""
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tier as T  # noqa: E402


def main():
    binaries = sys.argv[1:] or [T.CAIRND]
    moto, url = T.start_moto()
    nodes = []
    work = tempfile.mkdtemp(prefix="cairn-shared-")
    try:
        T.wait_http(url)
        T.client(url).create_bucket(Bucket="bench")
        body = os.urandom(50 << 20)
        digest = hashlib.sha256(body).hexdigest()
        keys = ["/ac/" + hashlib.sha256(b"key %d" % i).hexdigest() for i in range(8)]
        for binary in binaries:
            T.CAIRND = binary
            a = T.Node(tempfile.mkdtemp(dir=work), url, "p%d" % len(nodes))
            nodes.append(a)
            for k in keys:
                urllib.request.urlopen(urllib.request.Request(a.url + k, data=body, method="PUT"))
            a.drain()
            passes = []
            for _ in range(3):
                a.wipe()
                right = []

                def read(k):
                    got = urllib.request.urlopen(a.url + k).read()
                    right.append(hashlib.sha256(got).hexdigest() == digest)
                threads = [threading.Thread(target=read, args=(k,)) for k in keys]
                t0 = time.time()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.time() - t0
                tier = json.load(urllib.request.urlopen(a.url + "/status"))["tier"]
                if len(right) != len(keys) or not all(right):
                    raise RuntimeError("%s: a wrong or missing body" % binary)
                passes.append("%.2f s, %.0f MiB fetched" % (wall, tier["fetched_bytes"] / T.MIB))
            print("%s: %s (8 keys of one 50 MiB body, every body right)" % (
                binary, " | ".join(passes)), flush=True)
    finally:
        T.teardown(nodes, moto, work)


if __name__ == "__main__":
    main()
