"""Body sizes at the edges: 0 and 1 byte, around the 1 MiB frame size of the
zstd blob format (DESIGN.md, "Blob files"), and 2 GiB.

Each body is PUT, read back whole and by ranges, and compared by SHA-256;
the store must then hold one blob per distinct body, with /status and the
files under DATA/blobs agreeing.  The 2 GiB body is generated on the fly
(never held in memory): compressible text with random blocks mixed in, the
first frame compressible, so the body is stored as zstd frames of which some
compress and some do not, and is read back through the frame decoder.
"""
import hashlib
import random
import shutil
import time
import unittest

from harness import Server, close_checked, random_seed, stored_blobs, get_digest, put_stream, sha256, tmp_files

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
FRAME = MIB


class BigBody:
    """A deterministic body of `size` bytes made of 768 KiB blocks (not
    aligned with the 1 MiB frames): every third block is random (from a
    pool), the others are text that compresses well."""

    BLOCK = 768 * KIB

    def __init__(self, size, seed):
        rng = random.Random(seed)
        self.size = size
        self.pool = [rng.randbytes(self.BLOCK) for _ in range(7)]
        line = b"%d: build cache artifact, compressible pattern, block %%08d ...\n" % seed
        self.line = line

    def block(self, i):
        if i % 3 == 2:
            return self.pool[i % 7]
        ln = self.line % i
        return (ln * (self.BLOCK // len(ln) + 1))[:self.BLOCK]

    def chunks(self):
        left = self.size
        i = 0
        while left > 0:
            b = self.block(i)[:left]
            left -= len(b)
            i += 1
            yield b

    def range(self, start, length):
        out = bytearray()
        i = start // self.BLOCK
        off = start - i * self.BLOCK
        while len(out) < length:
            out += self.block(i)[off:off + length - len(out)]
            off = 0
            i += 1
        return bytes(out)

    def sha256(self):
        h = hashlib.sha256()
        for c in self.chunks():
            h.update(c)
        return h.hexdigest()


class SizesTest(unittest.TestCase):
    def setUp(self):
        seed = random_seed()
        self.seed = seed
        self.rng = random.Random(seed)
        self.srv = Server()
        self.addCleanup(self.close_server)

    def close_server(self):
        close_checked(self, self.srv)

    def check_store(self, distinct, keys):
        """distinct: {sha: size} of the bodies stored; keys: number of keys."""
        st = self.srv.status()
        files = stored_blobs(self.srv.data)
        self.assertEqual(st["entries"]["keys"], keys)
        self.assertEqual(st["entries"]["blobs"], len(distinct))
        self.assertEqual((sorted(set(files) - set(distinct)), sorted(set(distinct) - set(files))),
                         ([], []), "one file per blob under blobs/: files too many (first list), "
                                   "missing (second list)")
        self.assertEqual(st["bytes"]["logical"], sum(distinct.values()))
        self.assertEqual(st["bytes"]["stored"], sum(files.values()))
        self.assertEqual(tmp_files(self.srv.data), [])
        return st, files

    def get_range(self, conn, path, rng_header):
        conn.request("GET", path, headers={"Range": rng_header})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Range"), r.read()

    def test_small_and_frame_edge_sizes(self):
        srv = self.srv
        sizes = [0, 1, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME + 1]
        bodies = []
        for n in sizes:
            bodies.append(self.rng.randbytes(n))  # random: stored raw
            if n > 1:
                line = b"compressible %d " % n
                bodies.append((line * (n // len(line) + 1))[:n])  # stored as zstd frames
        conn = srv.conn()
        self.addCleanup(conn.close)
        distinct = {}
        nkeys = 0
        for i, body in enumerate(bodies):
            n = len(body)
            digest = sha256(body)
            ac = "/ac/" + hashlib.sha256(b"sizes %d" % i).hexdigest()
            for path in ("/cas/" + digest, ac):
                status, text = put_stream(conn, path, [body] if body else [], n)
                self.assertEqual(status, 200, "PUT %s (%d bytes): %r" % (path, n, text))
                nkeys += 1
                status, h, got, sha = get_digest(conn, path)
                self.assertEqual((status, got, sha), (200, n, digest), "GET %s (%d bytes)" % (path, n))
                conn.request("HEAD", path)
                r = conn.getresponse()
                r.read()
                self.assertEqual((r.status, r.getheader("Content-Length")), (200, str(n)),
                                 "HEAD %s" % path)
                # ranges: the last byte, the last 10, across the frame boundary
                if n == 0:
                    continue
                want = [("bytes=%d-" % (n - 1), n - 1, 1), ("bytes=-10", max(0, n - 10), min(10, n))]
                if n > FRAME:
                    want.append(("bytes=%d-%d" % (FRAME - 5, FRAME + 4), FRAME - 5,
                                 min(10, n - FRAME + 5)))
                for hdr, start, ln in want:
                    status, cr, data = self.get_range(conn, path, hdr)
                    self.assertEqual(status, 206, "GET %s Range: %s (%d bytes)" % (path, hdr, n))
                    self.assertEqual(cr, "bytes %d-%d/%d" % (start, start + ln - 1, n), hdr)
                    self.assertEqual(data, body[start:start + ln], "GET %s Range: %s" % (path, hdr))
                status, cr, _ = self.get_range(conn, path, "bytes=%d-" % n)
                self.assertEqual(status, 416, "Range past the end of a %d byte body" % n)
            distinct[digest] = n
        self.check_store(distinct, nkeys)

    def test_2gib_round_trip(self):
        srv = self.srv
        size = 2 * GIB
        free = shutil.disk_usage(srv.data).free
        if free < 4 * GIB:
            self.skipTest("%d MiB free next to the data folder; the 2 GiB test needs 4 GiB" % (free // MIB))
        big = BigBody(size, self.seed)
        t0 = time.time()
        digest = big.sha256()
        path = "/cas/" + digest
        conn = srv.conn(timeout=600)
        self.addCleanup(conn.close)

        t1 = time.time()
        status, text = put_stream(conn, path, big.chunks(), size)
        t2 = time.time()
        self.assertEqual(status, 200, "PUT of 2 GiB: %r" % text)
        status, h, n, sha = get_digest(conn, path)
        t3 = time.time()
        self.assertEqual((status, n, sha), (200, size, digest), "GET of the 2 GiB body")
        print("  2 GiB: hash %.1fs, PUT %.1fs (%.0f MiB/s), GET %.1fs (%.0f MiB/s), round trip %.1fs"
              % (t1 - t0, t2 - t1, size / MIB / (t2 - t1), t3 - t2, size / MIB / (t3 - t2), t3 - t1))

        # ranges at the end of the body, and across its last frame boundary
        last_frame = (size - 1) // FRAME * FRAME
        for start, ln in [(size - 1, 1), (size - 1000, 1000), (last_frame - 100, 200),
                          (size - 3 * MIB - 7, 3 * MIB + 7), (GIB - 3, 6)]:
            hdr = "bytes=%d-%d" % (start, start + ln - 1)
            st, cr, data = self.get_range(conn, path, hdr)
            self.assertEqual(st, 206, hdr)
            self.assertEqual(cr, "bytes %d-%d/%d" % (start, start + ln - 1, size), hdr)
            self.assertEqual(hashlib.sha256(data).hexdigest(),
                             hashlib.sha256(big.range(start, ln)).hexdigest(), hdr)
        st, cr, data = self.get_range(conn, path, "bytes=-5")
        self.assertEqual((st, cr, data), (206, "bytes %d-%d/%d" % (size - 5, size - 1, size),
                                          big.range(size - 5, 5)))
        st, cr, _ = self.get_range(conn, path, "bytes=%d-" % size)
        self.assertEqual(st, 416)

        _, files = self.check_store({digest: size}, 1)
        # random blocks do not compress, text does: stored is well below 2 GiB
        self.assertLess(files[digest], size * 3 // 4, "the 2 GiB body was not compressed")


if __name__ == "__main__":
    unittest.main()
