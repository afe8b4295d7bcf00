"""Eviction: a size limit with high and low watermarks, least recently used
blobs first (DESIGN.md, "Eviction").

cairnd runs with --max-size 8M --high-watermark 90 --low-watermark 50 and
gets 512 KiB random bodies (random, so stored raw: one body = 512 KiB on
disk), about 30 MiB in all.  After every answered PUT the store is within
its limit and blobs/ holds one file per indexed blob; at the end the newest
bodies are readable and the oldest are gone; a body read again and again
between PUTs outlives bodies written after it (LRU, not FIFO).  Last-access
times are flushed to the index every 2 s, so the test waits 2.5 s after such
a read before it pushes more data.
"""
import hashlib
import random
import re
import socket
import time
import unittest

from harness import Server, close_checked, random_seed, stored_blobs, sha256, tmp_files

KIB = 1 << 10
MIB = 1 << 20
MAX = 8 * MIB
BODY = 512 * KIB
ARGS = ["--max-size", "8M", "--high-watermark", "90", "--low-watermark", "50"]


def put_expect_continue(port, path, chunks, length, chunked=False):
    """PUT with 'Expect: 100-continue' on a raw socket, so that an early
    answer (413 before the body) is read instead of racing a reset.
    Returns (status, response body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        head = "PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n" % path
        head += "Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: %d\r\n" % length
        s.sendall((head + "\r\n").encode())
        f = s.makefile("rb")
        s.settimeout(2.0)
        try:
            line = f.readline()
        except socket.timeout:
            line = b""  # no interim answer: send the body anyway (RFC 9110)
        s.settimeout(60)
        if line.startswith(b"HTTP/1.1 100"):
            f.readline()  # the blank line after "100 Continue"
            line = b""
        if not line:
            for c in chunks:
                if chunked:
                    s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
                else:
                    s.sendall(c)
            if chunked:
                s.sendall(b"0\r\n\r\n")
            line = f.readline()
        status = int(line.split()[1])
        n = 0
        while True:
            h = f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            if h.lower().startswith(b"content-length:"):
                n = int(h.split(b":")[1])
        return status, f.read(n)
    finally:
        s.close()


class EvictionTest(unittest.TestCase):
    def setUp(self):
        seed = random_seed()
        self.rng = random.Random(seed)
        self.srv = Server(ARGS)
        self.addCleanup(self.close_server)

    def close_server(self):
        close_checked(self, self.srv)

    def body(self, n=BODY):
        return self.rng.randbytes(n)

    def check_limits(self, what):
        st = self.srv.status()
        files = stored_blobs(self.srv.data)
        self.assertLessEqual(st["bytes"]["stored"], MAX, "%s: over --max-size" % what)
        self.assertEqual(st["entries"]["blobs"], len(files),
                         "%s: blobs/ holds %d files, the index %d blobs"
                         % (what, len(files), st["entries"]["blobs"]))
        self.assertEqual(st["bytes"]["stored"], sum(files.values()), what)
        return st

    def put(self, conn, key, body):
        conn.request("PUT", key, body)
        r = conn.getresponse()
        text = r.read()
        self.assertEqual(r.status, 200, "PUT %s: %d %r" % (key, r.status, text))

    def test_lru_eviction_within_limits(self):
        srv = self.srv
        conn = srv.conn()
        self.addCleanup(conn.close)
        order = []  # keys in PUT order
        sizes = {}
        evicted_seen = 0

        def push(n):
            nonlocal evicted_seen
            for _ in range(n):
                b = self.body()
                # half CAS, half action cache
                if len(order) % 2:
                    key = "/cas/" + sha256(b)
                else:
                    key = "/ac/" + hashlib.sha256(b"evict %d" % len(order)).hexdigest()
                self.put(conn, key, b)
                order.append(key)
                sizes[key] = sha256(b)
                st = self.check_limits("after PUT %d" % len(order))
                self.assertGreaterEqual(st["eviction"]["blobs"], evicted_seen)
                evicted_seen = st["eviction"]["blobs"]
                # the body just acknowledged is readable right away
                conn.request("HEAD", key)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200, "HEAD %s right after its PUT" % key)

        def read(key):
            conn.request("GET", key)
            r = conn.getresponse()
            data = r.read()
            return r.status, data

        # Phase 1: A is written first and read again after every 4 PUTs (an
        # eviction round keeps at least 6 blobs, so a recently read A must
        # survive every round); B, written right after A, is never read.
        def read_a(n):
            time.sleep(1.05)  # the read lands in a later second than every PUT so far
            status, data = read(a)
            self.assertEqual(status, 200, "A was evicted although it was read %d times: "
                                          "FIFO, not LRU" % n)
            self.assertEqual(sha256(data), sizes[a])
            time.sleep(2.5)  # let the committer write the last-access time

        push(13)  # 6.5 MiB: just under the high watermark (7.2 MiB)
        a, b_key = order[0], order[1]
        for n in range(1, 4):
            read_a(n)
            push(4)  # the 15th PUT crosses the high watermark, later ones again
            if n == 1:
                first_round = srv.status()["eviction"]["blobs"]
                self.assertGreater(first_round, 0, "15 x 512 KiB in an 8 MiB store: nothing evicted")
                self.assertEqual(read(b_key)[0], 404,
                                 "B (the oldest but one, never read) is still there")
        self.assertGreater(srv.status()["eviction"]["blobs"], first_round,
                           "25 x 512 KiB in an 8 MiB store: only one eviction round")
        self.assertEqual(read(a)[0], 200, "A (read recently) was evicted: FIFO, not LRU")

        # Phase 2: no more reads; 17.5 MiB more, in quick succession
        push(35)
        total = len(order) * BODY
        st = self.check_limits("at the end")
        print("  %d PUTs (%.1f MiB), %d blobs evicted, %d kept, %d bytes stored"
              % (len(order), total / MIB, st["eviction"]["blobs"], st["entries"]["blobs"],
                 st["bytes"]["stored"]))
        self.assertEqual(st["eviction"]["blobs"] + st["entries"]["blobs"], len(order))
        self.assertEqual(st["entries"]["keys"], st["entries"]["blobs"])

        # what is readable is exactly the newest entries, in PUT order
        readable = []
        for key in order:
            status, data = read(key)
            self.assertIn(status, (200, 404), key)
            if status == 200:
                self.assertEqual(sha256(data), sizes[key], key)
            readable.append(status == 200)
        kept = st["entries"]["keys"]
        self.assertEqual(sum(readable), kept)
        pattern = "".join("R" if x else "." for x in readable)
        self.assertEqual(pattern, "." * (len(order) - kept) + "R" * kept,
                         "readable entries (R) in PUT order are not the newest %d: %s"
                         % (kept, pattern))
        self.assertEqual(tmp_files(srv.data), [])

    def test_a_body_already_stored_makes_no_room(self):
        """Writes of bodies the store holds, under new keys, near the high
        mark: they bring no bytes, so nothing is evicted for them."""
        conn = self.srv.conn()
        self.addCleanup(conn.close)
        bodies = [self.body() for _ in range(14)]  # 7 MiB: just under the high mark (7.2 MiB)
        for b in bodies:
            self.put(conn, "/cas/" + sha256(b), b)
        before = self.check_limits("at the high mark")
        self.assertEqual(before["eviction"]["blobs"], 0)
        for i, b in enumerate(bodies):
            self.put(conn, "/ac/" + sha256(b"again %d" % i), b)
        after = self.check_limits("after the writes of stored bodies")
        self.assertEqual(after["eviction"]["blobs"], 0)
        self.assertEqual(after["entries"]["blobs"], len(bodies))
        self.put(conn, "/cas/" + sha256(b"new"), b"new")  # a new body: still under the mark
        self.assertEqual(self.check_limits("after a small new body")["eviction"]["blobs"], 0)

    def test_multipart_parts_take_room_too(self):
        """The parts of unfinished multipart uploads count against
        --max-size with the blobs (they are on the same disk): a part, or a
        body, beyond it gets 507 SlowDown; /status shows the parts' bytes,
        counted again at a restart; an abort gives their room back."""
        srv = self.srv
        self.assertEqual(srv.request("PUT", "/parts")[0], 200)

        def start(key):
            st, _, text = srv.request("POST", "/parts/%s?uploads" % key)
            self.assertEqual(st, 200, text)
            return re.search(rb"<UploadId>(\w+)</UploadId>", text).group(1).decode()

        def part(key, up, n, body):
            return srv.request("PUT", "/parts/%s?partNumber=%d&uploadId=%s" % (key, n, up), body)

        up = start("k")
        first = self.body(3 * MIB)
        for n, body in ((1, first), (2, self.body(3 * MIB)), (1, first)):  # (a retry of 1)
            self.assertEqual(part("k", up, n, body)[0], 200)
        self.assertEqual(srv.status()["bytes"]["multipart_parts"], 6 * MIB)
        st, _, text = part("k", up, 3, self.body(3 * MIB))
        self.assertEqual(st, 507, text)
        self.assertIn(b"<Code>SlowDown</Code>", text)
        big = self.body(3 * MIB)
        self.assertEqual(srv.request("PUT", "/cas/" + sha256(big), big)[0], 507)
        self.assertEqual(part("k", up, 2, self.body(MIB))[0], 200)  # a part replaced
        self.assertEqual(srv.status()["bytes"]["multipart_parts"], 4 * MIB)
        srv.restart()
        self.assertEqual(srv.status()["bytes"]["multipart_parts"], 4 * MIB)
        self.assertEqual(srv.request("DELETE", "/parts/k?uploadId=" + up)[0], 204)
        self.assertEqual(srv.status()["bytes"]["multipart_parts"], 0)
        self.assertEqual(srv.request("PUT", "/cas/" + sha256(big), big)[0], 200)
        # a Complete's parts become its object: no room counted twice
        up = start("whole")
        self.assertEqual(part("whole", up, 1, self.body(5 * MIB))[0], 200)
        self.assertEqual(part("whole", up, 2, b"end")[0], 200)  # (the LRU blob makes room)
        parts = srv.request("GET", "/parts/whole?uploadId=" + up)[2]
        etags = re.findall(rb"<ETag>([^<]+)</ETag>", parts)
        doc = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
            "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (i + 1, e.decode())
            for i, e in enumerate(etags))
        st, _, text = srv.request("POST", "/parts/whole?uploadId=" + up, doc.encode())
        self.assertEqual(st, 200, text)
        self.assertEqual(srv.status()["bytes"]["multipart_parts"], 0)
        self.check_limits("after the Complete")

    def test_parts_beyond_the_low_mark_do_not_empty_the_cache(self):
        """While unfinished parts take more than the low mark, a write that
        crosses the high mark evicts as much as it needs, not every blob."""
        srv = self.srv
        self.assertEqual(srv.request("PUT", "/parts")[0], 200)
        st, _, text = srv.request("POST", "/parts/k?uploads")
        up = re.search(rb"<UploadId>(\w+)</UploadId>", text).group(1).decode()
        st, _, _ = srv.request("PUT", "/parts/k?partNumber=1&uploadId=" + up, self.body(5 * MIB))
        self.assertEqual(st, 200)
        conn = srv.conn()
        self.addCleanup(conn.close)
        held = []
        for i in range(8):
            b = self.body()
            self.put(conn, "/cas/" + sha256(b), b)
            held.append(srv.status()["entries"]["blobs"])
        self.assertGreater(srv.status()["eviction"]["blobs"], 0, held)  # (it crossed the mark)
        self.assertGreaterEqual(min(held[4:]), 3, "blobs held after each write: %s" % held)

    def test_body_larger_than_max_size(self):
        srv = self.srv
        conn = srv.conn()
        self.addCleanup(conn.close)
        small = self.body()
        conn.request("PUT", "/cas/" + sha256(small), small)
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        before = self.check_limits("before")

        big = self.body(MAX + 1 * MIB)
        chunks = [big[o:o + 256 * KIB] for o in range(0, len(big), 256 * KIB)]
        cases = [("/cas/" + sha256(big), False), ("/ac/" + "ab" * 32, False),
                 ("/cas/" + sha256(big), True), ("/ac/" + "cd" * 32, True)]
        seen = []
        for path, chunked in cases:
            status, text = put_expect_continue(srv.port, path, chunks, len(big), chunked)
            how = "chunked" if chunked else "with Content-Length"
            seen.append("%s %s: %d" % (path[:4], how, status))
            self.assertIn(status, (413, 507), "PUT %s of 9 MiB %s into an 8 MiB store: %d %r"
                          % (path, how, status, text))
            s, _, _ = srv.request("GET", path)
            self.assertEqual(s, 404, "GET %s after the refused PUT" % path)
            after = self.check_limits("after the refused PUT %s" % how)
            self.assertEqual(after["entries"], before["entries"])
            self.assertEqual(after["bytes"], before["bytes"])
            self.assertEqual(after["eviction"]["blobs"], 0, "a refused body evicted others")
            self.assertEqual(tmp_files(srv.data), [])
        self.assertEqual(srv.request("GET", "/cas/" + sha256(small))[0], 200)
        print("  " + "; ".join(seen))


if __name__ == "__main__":
    unittest.main()
