"""A full disk (DESIGN.md, "Eviction": when nothing can be evicted, writes
get 507 and reads go on; invariants 1, 4 and 5).

The data folder is a 24 MiB tmpfs and --max-size is 1G, so eviction never
makes room: PUTs of random bodies (1 MiB, then 64 KiB, then 4 KiB, to fill
the last corners, where the index itself may be what cannot grow) go on
until each size gets 507.  A refused body must leave nothing behind (not
readable, no file in blobs/ or tmp/, /status unchanged), everything answered
2xx must still read back, the server must keep serving, and after DELETEs a
new PUT must succeed.

A second test starts with a tiny LMDB map (--index-map-size 64K), which
must grow rather than refuse writes, and checks the same for any refusal.
"""
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
import unittest

from harness import Server, close_checked, random_seed, stored_blobs, get_digest, put_stream, tmp_files

KIB = 1 << 10
MIB = 1 << 20


class Entry:
    def __init__(self, path, body):
        self.path = path
        self.size = len(body)
        self.sha = hashlib.sha256(body).hexdigest()


class FullStoreChecks:
    """Shared by both tests: PUT until 507, then check client view and store."""

    def setUp(self):
        seed = random_seed()
        self.rng = random.Random(seed)
        self.n = 0

    def close_server(self, srv):
        close_checked(self, srv, killed_ok=True)

    def new_entry(self, size, compressible=False):
        """A random body (stored raw), or random hex text (compresses to
        about half: stored as zstd frames), under /cas or /ac, alternately."""
        self.n += 1
        if compressible:
            body = self.rng.randbytes(size // 2 + 1).hex().encode()[:size]
        else:
            body = self.rng.randbytes(size)
        if self.n % 2:
            return Entry("/cas/" + hashlib.sha256(body).hexdigest(), body), body
        key = hashlib.sha256(b"diskfull %d %d" % (self.n, self.rng.randrange(1 << 30))).hexdigest()
        return Entry("/ac/" + key, body), body

    def put(self, conn, size, compressible=False):
        e, body = self.new_entry(size, compressible)
        status, text = put_stream(conn, e.path, [body[o:o + 256 * KIB] for o in range(0, size, 256 * KIB)],
                                  size)
        return e, status, text

    def fill(self, srv, conn, size, limit, compressible=False):
        """PUTs bodies of `size` until one gets 507; returns (stored entries,
        the refused entry).  Each 507 must change nothing."""
        stored = []
        for _ in range(limit):
            before = srv.status()
            files_before = stored_blobs(srv.data)
            e, status, text = self.put(conn, size, compressible)
            if status == 200:
                stored.append(e)
                continue
            self.assertEqual(status, 507, "PUT %s (%d bytes) on a full disk: %d %r"
                             % (e.path, size, status, text))
            self.check_refused(srv, conn, e, before, files_before)
            return stored, e
        return stored, None

    def check_refused(self, srv, conn, e, before, files_before):
        status, _, n, _ = get_digest(conn, e.path)
        self.assertEqual(status, 404, "GET %s after its PUT got 507" % e.path)
        after = srv.status()
        self.assertEqual(after["entries"], before["entries"], "a 507'd PUT changed the index")
        self.assertEqual(after["bytes"], before["bytes"], "a 507'd PUT changed the index")
        self.assertEqual(tmp_files(srv.data), [], "a 507'd PUT left its temporary file")
        files = stored_blobs(srv.data)
        self.assertEqual((sorted(set(files) - set(files_before)), sorted(set(files_before) - set(files))),
                         ([], []), "a 507'd PUT left a blob file behind (first list) or "
                                   "removed one (second list)")

    def check_all(self, srv, conn, entries):
        """Every acknowledged entry reads back; /status and blobs/ agree."""
        for e in entries:
            status, _, n, sha = get_digest(conn, e.path)
            self.assertEqual((status, n, sha), (200, e.size, e.sha), "GET %s" % e.path)
        st = srv.status()
        files = stored_blobs(srv.data)
        digests = {e.sha: e.size for e in entries}
        self.assertEqual(st["entries"]["keys"], len(entries))
        self.assertEqual(st["entries"]["blobs"], len(digests))
        self.assertEqual((sorted(set(files) - set(digests)), sorted(set(digests) - set(files))),
                         ([], []), "blob files without an index entry (first list), "
                                   "stored digests without a file (second list)")
        self.assertEqual(st["bytes"]["stored"], sum(files.values()))
        self.assertEqual(st["bytes"]["logical"], sum(digests.values()))
        self.assertEqual(st["eviction"]["blobs"], 0)
        self.assertEqual(tmp_files(srv.data), [])

    def delete(self, srv, conn, entries, k):
        """DELETEs k entries; returns (the entries still stored, a list of
        failed DELETEs).  Entries whose DELETE failed must still be there."""
        keep, failed = entries[k:], []
        for e in entries[:k]:
            conn.request("DELETE", e.path)
            r = conn.getresponse()
            text = r.read()
            status, _, _, _ = get_digest(conn, e.path)
            if r.status in (200, 204):
                self.assertEqual(status, 404, "GET %s after DELETE" % e.path)
            else:
                failed.append("DELETE %s: %d %r" % (e.path, r.status, text.strip()))
                keep.append(e)
        return keep, failed


class DiskFullTest(FullStoreChecks, unittest.TestCase):
    def mount_tmpfs(self, size="24m"):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        mnt = tempfile.mkdtemp(prefix="cairn-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(mnt)
            self.skipTest("cannot mount a tmpfs: %s" % r.stderr.strip())

        def unmount():
            subprocess.run(["umount", mnt], capture_output=True)
            if os.path.ismount(mnt):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
            shutil.rmtree(mnt, ignore_errors=True)
            try:
                os.unlink(mnt + ".log")  # the harness puts the server log beside the data
            except OSError:
                pass
        self.addCleanup(unmount)
        return mnt

    def full_server(self, size="24m"):
        """A node over a tmpfs of that size (--max-size 1G: eviction never
        makes room), and a connection to it: (mount point, server, conn)."""
        mnt = self.mount_tmpfs(size)
        srv = Server(["--max-size", "1G"], data=mnt)
        self.addCleanup(self.close_server, srv)
        conn = srv.conn()
        self.addCleanup(conn.close)
        return mnt, srv, conn

    def test_full_disk_gives_507_and_nothing_else(self):
        mnt, srv, conn = self.full_server()

        entries = []
        refused = []
        # random 1 MiB bodies, then compressible 2 MiB ones (written frame by
        # frame, compressed), then smaller and smaller random ones
        for size, limit, z in ((MIB, 40, False), (2 * MIB, 40, True), (64 * KIB, 200, False),
                               (4 * KIB, 2000, False)):
            stored, bad = self.fill(srv, conn, size, limit, z)
            entries += stored
            self.assertIsNotNone(bad, "%d PUTs of %d bytes into a 24 MiB tmpfs, none got 507"
                                 % (limit, size))
            refused.append(bad)
        st = os.statvfs(mnt)
        log = srv.read_log()
        print("  %d entries stored, free on the tmpfs: %d KiB; index commits that failed: %d"
              % (len(entries), st.f_bavail * st.f_frsize // KIB, log.count("index_commit_failed")))
        self.assertGreater(len(entries), 10)

        # the server still serves, everything acknowledged reads back
        self.check_all(srv, conn, entries)
        for e in refused:
            self.assertEqual(get_digest(conn, e.path)[0], 404)

        # after DELETEs (which must work on a full disk), PUTs succeed again
        entries, failed = self.delete(srv, conn, entries, 4)
        self.check_all(srv, conn, entries)
        self.assertEqual(failed, [], "DELETE on a full disk must work: it is how space is freed")
        for _ in range(2):
            e, status, text = self.put(conn, MIB)
            self.assertEqual(status, 200, "PUT after DELETE freed space: %d %r" % (status, text))
            entries.append(e)
        self.check_all(srv, conn, entries)

        # a restart on the (nearly) full disk keeps everything and starts clean
        rc = srv.stop()
        self.assertEqual(rc, 0, "cairnd exited with %s on SIGTERM\n%s" % (rc, srv.read_log()[-4000:]))
        srv.start()
        c2 = srv.conn()
        self.addCleanup(c2.close)
        self.check_all(srv, c2, entries)

    def test_full_disk_concurrent_writers(self):
        """Six connections PUT at once (random and compressible bodies of
        256 KiB to 2 MiB) until each has had three 507s; then the same
        checks: nothing refused is visible, nothing acknowledged is lost,
        no file is left over, and DELETEs make room for new PUTs."""
        mnt = self.mount_tmpfs()
        srv = Server(["--max-size", "1G"], data=mnt)
        self.addCleanup(self.close_server, srv)
        lock = threading.Lock()
        entries, refused, errors = [], [], []

        def writer(seed):
            rng = random.Random(seed)
            conn = srv.conn()
            fails = 0
            try:
                while fails < 3 and len(entries) < 500:
                    with lock:
                        size = rng.randrange(256 * KIB, 2 * MIB)
                        e, body = self.new_entry(size, compressible=rng.random() < 0.5)
                    chunks = [body[o:o + 256 * KIB] for o in range(0, size, 256 * KIB)]
                    status, text = put_stream(conn, e.path, chunks, size)
                    with lock:
                        if status == 200:
                            entries.append(e)
                        elif status == 507:
                            refused.append(e)
                            fails += 1
                        else:
                            errors.append("PUT %s: %d %r" % (e.path, status, text))
                            fails += 1
            except Exception as ex:
                errors.append("%s: %s" % (type(ex).__name__, ex))
            finally:
                conn.close()

        threads = [threading.Thread(target=writer, args=(self.rng.random(),)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        print("  %d stored, %d refused with 507" % (len(entries), len(refused)))
        self.assertEqual(errors, [])
        self.assertGreater(len(refused), 0)
        conn = srv.conn()
        self.addCleanup(conn.close)
        self.check_all(srv, conn, entries)
        for e in refused:
            self.assertEqual(get_digest(conn, e.path)[0], 404, "GET %s after its 507" % e.path)
        entries, failed = self.delete(srv, conn, entries, 4)
        self.assertEqual(failed, [], "DELETE on a full disk must work: it is how space is freed")
        e, status, text = self.put(conn, MIB)
        self.assertEqual(status, 200, "PUT after DELETE freed space: %d %r" % (status, text))
        entries.append(e)
        self.check_all(srv, conn, entries)

    def test_deletes_at_once_on_a_disk_with_no_byte_left(self):
        """Small bodies (in the index) and larger ones (files) until 507, then
        a file outside cairn takes every byte left.  Sixteen connections
        DELETE everything at once: the committer takes their deletions in
        batches, which need more new index pages than one deletion does;
        every DELETE must work, and PUTs work again once room is freed."""
        mnt, srv, conn = self.full_server()
        entries = []
        for size in (64 * KIB, 8 * KIB, 2 * KIB):
            stored, bad = self.fill(srv, conn, size, 6000)
            self.assertIsNotNone(bad, "no PUT of %d bytes got 507 on a 24 MiB tmpfs" % size)
            entries += stored
        fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError:
            pass
        finally:
            os.close(fd)
        self.assertLess(os.statvfs(mnt).f_bavail, 2)
        lock = threading.Lock()
        failed = []

        def deleter(part):
            c = srv.conn()
            try:
                for e in part:
                    c.request("DELETE", e.path)
                    r = c.getresponse()
                    text = r.read()
                    if r.status != 204:
                        with lock:
                            failed.append("DELETE %s: %d %r" % (e.path, r.status, text.strip()))
            finally:
                c.close()

        threads = [threading.Thread(target=deleter, args=(entries[i::16],)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        print("  %d entries deleted by 16 connections at once; %d failed; index commits that failed: %d"
              % (len(entries), len(failed), srv.read_log().count("index_commit_failed")))
        self.assertEqual(failed[:5], [], "DELETE on a full disk must work: it is how space is freed")
        self.check_all(srv, conn, [])
        os.unlink(os.path.join(mnt, "filler"))
        e, status, text = self.put(conn, MIB)
        self.assertEqual(status, 200, "PUT after DELETEs freed space: %d %r" % (status, text))
        self.check_all(srv, conn, [e])

    def test_full_disk_of_small_bodies_kept_in_the_index(self):
        """Only small bodies, which live in the index: the index file is what
        fills the disk.  507 and nothing else; DELETEs work; PUTs go on."""
        mnt, srv, conn = self.full_server("8m")
        entries = []
        for size in (8 * KIB, 2 * KIB):
            stored, bad = self.fill(srv, conn, size, 6000)
            self.assertIsNotNone(bad, "no PUT of %d bytes got 507 on an 8 MiB tmpfs" % size)
            entries += stored
        self.assertEqual(srv.status()["entries"]["inline_blobs"], len(entries))
        self.check_all(srv, conn, entries)
        entries, failed = self.delete(srv, conn, entries, 200)
        self.assertEqual(failed, [], "DELETE on a full disk must work: it is how space is freed")
        for _ in range(100):
            e, status, text = self.put(conn, 4 * KIB)
            self.assertEqual(status, 200, "PUT after DELETEs freed space: %d %r" % (status, text))
            entries.append(e)
        self.check_all(srv, conn, entries)

    def test_index_map_full(self):
        """--index-map-size 64K: the LMDB map is full after a few entries.
        DESIGN.md: "handle MDB_MAP_FULL by growing it", so every PUT must
        succeed while the disk has room; a PUT refused anyway must get 507
        and leave nothing behind.  DELETEs then work and PUTs go on."""
        srv = Server(["--index-map-size", "64K"])
        self.addCleanup(self.close_server, srv)
        conn = srv.conn()
        self.addCleanup(conn.close)
        entries, refused = [], []
        while len(entries) + len(refused) < 300:
            before, files_before = srv.status(), stored_blobs(srv.data)
            e, status, text = self.put(conn, KIB)
            if status == 200:
                entries.append(e)
                continue
            self.assertEqual(status, 507, "PUT %s: %d %r" % (e.path, status, text))
            self.check_refused(srv, conn, e, before, files_before)
            refused.append("PUT number %d" % (len(entries) + len(refused) + 1))
        log = srv.read_log()
        print("  %d PUTs: %d refused; map grown %d times; %d index commits failed"
              % (len(entries) + len(refused), len(refused), log.count("index_map_grown"),
                 log.count("index_commit_failed")))
        self.check_all(srv, conn, entries)
        n_del = len(entries) // 2
        entries, failed = self.delete(srv, conn, entries, n_del)
        self.check_all(srv, conn, entries)
        for _ in range(5):
            e, status, text = self.put(conn, KIB)
            self.assertEqual(status, 200, "PUT after DELETEs: %d %r" % (status, text))
            entries.append(e)
        self.check_all(srv, conn, entries)
        self.assertEqual(failed, [], "%d of %d DELETEs failed (the first: %s)"
                         % (len(failed), n_del, failed[0] if failed else ""))
        self.assertEqual(refused, [], "PUTs refused with 507 although only the LMDB map (address "
                                      "space, not disk) was full: the map must grow instead")


if __name__ == "__main__":
    unittest.main()
