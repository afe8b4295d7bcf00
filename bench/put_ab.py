"""bench/put_ab.py - two builds of cairnd, one against the other, on small PUTs.

    python3 bench/put_ab.py OLD_CAIRND NEW_CAIRND     (ROUNDS=5 by default)

Each round starts each build on an empty folder and PUTs the same 2,000
random 32 KiB bodies (a file each, not kept in the index) to /cas/ over 4
keep-alive connections, the builds taking turns at going first; prints PUT/s
per round and the medians.  Not run by `make bench`: it compares builds (make
the old one in a git worktree)."""
import http.client, hashlib, os, random, shutil, subprocess, sys, tempfile, threading, time, socket
OLD, NEW = sys.argv[1], sys.argv[2]
N, SIZE, ROUNDS = 2000, 32 * 1024, int(os.environ.get("ROUNDS", "5"))
rng = random.Random(5)
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def run(binary, bodies):
    d = tempfile.mkdtemp(prefix="cairn-putab-")
    p = port()
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:%d" % p, "--data", d, "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", p); c.request("GET", "/healthz"); c.getresponse().read(); c.close(); break
        except OSError:
            time.sleep(0.05)
    def worker(part):
        c = http.client.HTTPConnection("127.0.0.1", p)
        for b in part:
            c.request("PUT", "/cas/" + hashlib.sha256(b).hexdigest(), body=b)
            r = c.getresponse(); r.read()
            assert r.status == 200, r.status
        c.close()
    ths = [threading.Thread(target=worker, args=(bodies[i::4],)) for i in range(4)]
    t = time.time()
    for th in ths: th.start()
    for th in ths: th.join()
    dt = time.time() - t
    proc.terminate(); proc.wait(30); shutil.rmtree(d)
    return len(bodies) / dt
res = {"old": [], "new": []}
for r in range(ROUNDS):
    bodies = [rng.randbytes(SIZE) for _ in range(N)]
    for name, b in (("old", OLD), ("new", NEW)) if r % 2 == 0 else (("new", NEW), ("old", OLD)):
        res[name].append(run(b, bodies))
    print("round %d: old %.0f PUT/s, new %.0f PUT/s" % (r + 1, res["old"][-1], res["new"][-1]), flush=True)
med = lambda xs: sorted(xs)[len(xs) // 2]
print("medians: old %.0f, new %.0f PUT/s (new/old %.3f)" % (med(res["old"]), med(res["new"]), med(res["new"]) / med(res["old"])))
