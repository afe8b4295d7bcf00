"""Concurrent writes and reads of overlapping content.

20 distinct bodies (256 KiB to 3 MiB, compressible and random) are each PUT
twice under /cas/<sha256> and twice under each of two /ac keys by 4 writer
threads (in random order, so the same body is often in flight on several
connections at once); four /ac keys flip between two bodies; three "churn"
keys are PUT and DELETEd again and again with bodies no other key uses (so
their blob files are unlinked and made anew); and 4 reader threads GET all
these keys (whole bodies and ranges) the whole time.  Every answer must be a
404 from before the key's first PUT was acknowledged (churn keys: any 404),
or exactly the right bytes: never a torn, truncated or foreign body.  At the
end the store holds one blob per distinct body still used (dedup), whatever
the number of PUTs, and one file per blob.
"""
import hashlib
import os
import random
import threading
import time
import unittest

from harness import Server, close_checked, random_seed, stored_blobs, get_digest, put_stream, tmp_files

KIB = 1 << 10
MIB = 1 << 20
BODIES = 20
WRITERS = 4
READERS = 4


class ConcurrencyTest(unittest.TestCase):
    def setUp(self):
        seed = random_seed()
        self.rng = random.Random(seed)

    def start(self, args=()):
        self.srv = Server(args)
        self.addCleanup(self.close_server)
        return self.srv

    def close_server(self):
        close_checked(self, self.srv)

    def make_bodies(self):
        bodies = []
        for i in range(BODIES):
            size = self.rng.randrange(256 * KIB, 3 * MIB + 1)
            if i in (0, 1):
                size = MIB  # exactly one frame
            if i % 2 == 0:
                line = b"body %d: compressible line of text, repeated over and over\n" % i
                body = (line * (size // len(line) + 1))[:size]
            else:
                body = b"body %d\n" % i + self.rng.randbytes(size)
                body = body[:size]
            bodies.append(body)
        return bodies

    def test_concurrent_put_get_overlapping(self):
        self.scenario(self.start())

    def test_a_key_overwritten_while_it_is_read_is_never_missing(self):
        """One key flips between two bodies that no other key uses, so each
        PUT drops the blob of the one before, while three readers GET it (the
        native API, and S3 whole and ranged).  A reader that looked the key up
        just before a PUT finds the blob gone when it opens it: it must look
        again, and answer with one body or the other, never a 404."""
        srv = self.start()
        a, b = self.rng.randbytes(300 * KIB), self.rng.randbytes(300 * KIB)
        conn = srv.conn()
        for path, body in (("/ac/" + "ab" * 32, a), ("/flip-bucket", b""), ("/flip-bucket/k", a)):
            conn.request("PUT", path, body)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200, path)
        conn.close()
        stop, errors, gets = threading.Event(), [], [0]

        def writer():
            c = srv.conn()
            for i in range(100000):
                if stop.is_set():
                    break
                for path in ("/ac/" + "ab" * 32, "/flip-bucket/k"):
                    c.request("PUT", path, b if i % 2 == 0 else a)
                    r = c.getresponse()
                    r.read()
                    if r.status != 200:
                        errors.append("PUT %s: %d" % (path, r.status))
            c.close()

        def reader(path, hdr):
            c = srv.conn()
            while not stop.is_set():
                c.request("GET", path, headers=hdr)
                r = c.getresponse()
                body = r.read()
                gets[0] += 1
                want = [x[100:200] for x in (a, b)] if hdr else [a, b]
                if body not in want:
                    errors.append("GET %s %s: %d, %d bytes" % (path, hdr, r.status, len(body)))
            c.close()

        ts = [threading.Thread(target=writer),
              threading.Thread(target=reader, args=("/ac/" + "ab" * 32, {})),
              threading.Thread(target=reader, args=("/flip-bucket/k", {})),
              threading.Thread(target=reader, args=("/flip-bucket/k", {"Range": "bytes=100-199"}))]
        for t in ts:
            t.start()
        time.sleep(6)
        stop.set()
        for t in ts:
            t.join(60)
        self.assertGreater(gets[0], 100)
        self.assertEqual(errors[:10], [])

    def test_concurrent_with_index_growth(self):
        """The same with a 256 KiB LMDB map and 300 more small entries, so
        that the index has to grow its map while requests read and write
        it (the map can be resized only while no transaction is live)."""
        self.scenario(self.start(["--index-map-size", "256K"]), small=300)
        # an LMDB file larger than the initial map proves that the map grew
        self.assertGreater(os.path.getsize(os.path.join(self.srv.data, "index.mdb")), 256 * KIB,
                           "the index never outgrew its initial map: the test did not test growth")

    def scenario(self, srv, small=0):
        bodies = self.make_bodies()
        # small bodies, one /ac key each, only to grow the index
        for i in range(small):
            bodies.append(b"small %d " % i + self.rng.randbytes(self.rng.randrange(1, 2048)))
        shas = [hashlib.sha256(b).hexdigest() for b in bodies]
        # key -> set of body indexes it may hold
        allowed = {}
        puts = []  # (path, body index)
        for i in range(BODIES, BODIES + small):
            k = "/ac/" + hashlib.sha256(b"small %d" % i).hexdigest()
            allowed[k] = {i}
            puts.append((k, i))
        for i, sha in enumerate(shas[:BODIES]):
            allowed["/cas/" + sha] = {i}
            puts += [("/cas/" + sha, i)] * 2
            for j in range(2):
                k = "/ac/" + hashlib.sha256(b"ac %d %d" % (i, j)).hexdigest()
                allowed[k] = {i}
                puts += [(k, i)] * 2
        # keys that flip between two bodies while being read
        for f in range(4):
            k = "/ac/" + hashlib.sha256(b"flip %d" % f).hexdigest()
            a, b = 2 * f, 2 * f + 1
            allowed[k] = {a, b}
            puts += [(k, a), (k, b)] * 3
        # churn keys: PUT and DELETE again and again, each with a body no
        # other key uses, so that its blob file is unlinked and made anew
        # while readers open it; all are deleted at the end
        churn = {}
        for c in range(3):
            body = b"churn %d\n" % c + self.rng.randbytes(self.rng.randrange(256 * KIB, 2 * MIB))
            bodies.append(body)
            shas.append(hashlib.sha256(body).hexdigest())
            k = "/ac/" + hashlib.sha256(b"churn %d" % c).hexdigest()
            churn[k] = len(bodies) - 1
            allowed[k] = {len(bodies) - 1}
            puts += [(k, len(bodies) - 1), (k, None)] * 4  # None: DELETE
        self.rng.shuffle(puts)
        flips = {k for k, v in allowed.items() if len(v) > 1}

        lock = threading.Lock()
        first_ack = {}  # key -> monotonic time its first PUT was answered 200
        errors = []
        done = threading.Event()
        stats = {"get200": 0, "get404": 0, "get206": 0, "puts": 0, "deletes": 0}

        def writer(part):
            conn = srv.conn()
            try:
                for path, i in part:
                    if i is None:
                        conn.request("DELETE", path)
                        r = conn.getresponse()
                        text = r.read()
                        with lock:
                            stats["deletes"] += 1
                            if r.status not in (204, 404):
                                errors.append("DELETE %s: %d %r" % (path, r.status, text[:200]))
                        continue
                    body = bodies[i]
                    chunks = [body[o:o + 128 * KIB] for o in range(0, len(body), 128 * KIB)]
                    status, text = put_stream(conn, path, chunks, len(body))
                    t = time.monotonic()
                    with lock:
                        stats["puts"] += 1
                        if status != 200:
                            errors.append("PUT %s: %d %r" % (path, status, text[:200]))
                            continue
                        first_ack.setdefault(path, t)
            except Exception as e:
                errors.append("writer: %s: %s" % (type(e).__name__, e))
            finally:
                conn.close()

        keys = sorted(allowed)

        def reader(rseed):
            rng = random.Random(rseed)
            conn = srv.conn()
            try:
                while not done.is_set() or rng.random() < 0.02:
                    path = rng.choice(keys)
                    t0 = time.monotonic()
                    ranged = rng.random() < 0.25
                    if ranged:
                        start = rng.randrange(0, 3 * MIB)
                        ln = rng.randrange(1, 2 * MIB)
                        hdr = {"Range": "bytes=%d-%d" % (start, start + ln - 1)}
                    else:
                        hdr = {}
                    status, h, n, sha = get_digest(conn, path, hdr)
                    with lock:
                        acked_before = path in first_ack and first_ack[path] < t0
                    if status == 404:
                        stats["get404"] += 1
                        if acked_before and path not in churn:
                            errors.append("GET %s: 404 after a PUT of it was acknowledged" % path)
                        continue
                    if ranged and status in (206, 416):
                        # compare with the same range of each allowed body
                        ok = False
                        for i in allowed[path]:
                            body = bodies[i]
                            if start >= len(body):
                                ok |= status == 416
                                continue
                            part = body[start:start + ln]
                            want = "bytes %d-%d/%d" % (start, start + len(part) - 1, len(body))
                            ok |= (status == 206 and n == len(part)
                                   and sha == hashlib.sha256(part).hexdigest()
                                   and h.get("content-range") == want)
                        stats["get206"] += 1
                        if not ok:
                            errors.append("GET %s %s: %d, %d bytes, Content-Range %s: "
                                          "not a range of any body the key held"
                                          % (path, hdr["Range"], status, n, h.get("content-range")))
                        continue
                    stats["get200"] += 1
                    if status != 200 or not any(n == len(bodies[i]) and sha == shas[i]
                                                for i in allowed[path]):
                        errors.append("GET %s: %d, %d bytes with SHA-256 %s: a torn or foreign "
                                      "body (expected one of %s)"
                                      % (path, status, n, sha, [shas[i][:12] for i in allowed[path]]))
            except Exception as e:
                errors.append("reader: %s: %s" % (type(e).__name__, e))
            finally:
                conn.close()

        t0 = time.time()
        rs = [threading.Thread(target=reader, args=(self.rng.random(),)) for _ in range(READERS)]
        ws = [threading.Thread(target=writer, args=(puts[w::WRITERS],)) for w in range(WRITERS)]
        for t in rs + ws:
            t.start()
        for t in ws:
            t.join(180)
        done.set()
        for t in rs:
            t.join(60)
        print("  %d PUTs, %d DELETEs, %d whole GETs, %d ranged GETs, %d 404s in %.1fs"
              % (stats["puts"], stats["deletes"], stats["get200"], stats["get206"], stats["get404"],
                 time.time() - t0))
        self.assertEqual(errors[:20], [])
        self.assertEqual(stats["puts"] + stats["deletes"], len(puts))

        # the churn keys go; their blobs (no other key uses them) go with them
        conn = srv.conn()
        try:
            for path in churn:
                conn.request("DELETE", path)
                r = conn.getresponse()
                r.read()
                self.assertIn(r.status, (204, 404), "DELETE %s" % path)
                self.assertEqual(get_digest(conn, path)[0], 404, path)
        finally:
            conn.close()
        keys = [k for k in keys if k not in churn]

        # afterwards: every key reads back a body it was given (a flipping
        # key: one of its two; which one depends on the commit order)
        referenced = 0
        conn = srv.conn()
        try:
            for path in keys:
                status, _, n, sha = get_digest(conn, path)
                self.assertEqual(status, 200, path)
                self.assertIn(sha, [shas[i] for i in allowed[path]], path)
                if path not in flips:
                    self.assertEqual(n, len(bodies[next(iter(allowed[path]))]))
                referenced += n
        finally:
            conn.close()

        # the store: one blob per distinct body, one file per blob, no leftovers
        st = srv.status()
        files = stored_blobs(srv.data)
        used = BODIES + small  # the churn bodies come after these, and are gone
        self.assertEqual(st["entries"]["blobs"], used)
        self.assertEqual(st["entries"]["keys"], len(keys))
        self.assertEqual((sorted(set(files) - set(shas[:used])), sorted(set(shas[:used]) - set(files))),
                         ([], []), "blobs/ must hold exactly one file per body still used: "
                                   "files too many (first list), missing (second list)")
        self.assertEqual(st["bytes"]["logical"], sum(len(b) for b in bodies[:used]))
        self.assertEqual(st["bytes"]["stored"], sum(files.values()))
        self.assertEqual(st["bytes"]["referenced"], referenced)
        self.assertEqual(st["eviction"]["blobs"], 0)
        self.assertEqual(st["corrupt_blobs_quarantined"], 0)
        self.assertEqual(tmp_files(srv.data), [])


if __name__ == "__main__":
    unittest.main()
