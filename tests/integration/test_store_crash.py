"""Crash safety of the store: kill -9 while uploads are in flight.

DESIGN.md, "The store", invariants 1 and 4: the index never points at a
missing or incomplete blob, a crash leaves the old state or the new one,
orphan files are cleaned up, and an upload answered 2xx survives a crash of
the process.

Each round starts 50 uploads at once (one thread and one connection each;
1 KiB to 8 MiB; compressible and random bodies; some PUT /cas/<sha256>, some
PUT /ac/<key>, a few /ac values equal to a /cas body so that blobs are
shared), kills cairnd with SIGKILL at a chosen moment while some are still
in flight, restarts it on the same data folder and checks what a client can
read and what the store holds.  Three rounds, three moments, one data folder,
so each round also checks that earlier rounds survived the later kills.
"""
import hashlib
import http.client
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import ROOT, Server, close_checked, random_seed, stored_blobs, get_digest, put_stream, tmp_files, wait_for

KIB = 1 << 10
MIB = 1 << 20
UPLOADS = 50


def make_body(rng, size, compressible, tag):
    """A unique body: `tag` first, then a repeated text pattern or random bytes."""
    head = ("%s\n" % tag).encode()
    if compressible:
        line = ("%s: the quick brown fox jumps over the lazy dog %d\n" % (tag, rng.randrange(1 << 30))).encode()
        pat = line * (64 * KIB // len(line) + 1)
        reps = size // len(pat) + 1
        body = head + (pat * reps)
    else:
        body = head + rng.randbytes(size)
    return body[:size]


class Upload:
    def __init__(self, path, body):
        self.path = path
        self.size = len(body)
        self.sha = hashlib.sha256(body).hexdigest()
        self.body = body
        self.status = None  # HTTP status the client saw, or None
        self.error = None   # exception text if the connection failed


class CrashTest(unittest.TestCase):
    def setUp(self):
        self.seed = random_seed()
        self.rng = random.Random(self.seed)

    def start_server(self, args=()):
        srv = Server(args)
        self.addCleanup(self.close_server, srv)
        return srv

    def close_server(self, srv):
        close_checked(self, srv, killed_ok=True)

    # ---- uploads --------------------------------------------------------------

    def plan_round(self, rnd, big=8 * MIB):
        """50 uploads: sizes 1 KiB..`big` (log-uniform, plus a few of `big`),
        half compressible, two thirds /cas, one third /ac, some /ac sharing a
        /cas body."""
        rng = self.rng
        ups = []
        for i in range(UPLOADS):
            if i < 4:
                size = big
            elif i < 6:
                size = 1 * KIB
            else:
                size = int(2 ** rng.uniform(10, big.bit_length() - 1))
            body = make_body(rng, size, compressible=(i % 2 == 0), tag="round %d upload %d" % (rnd, i))
            if i % 3 != 2:
                ups.append(Upload("/cas/" + hashlib.sha256(body).hexdigest(), body))
            else:
                if i % 9 == 8 and ups:
                    body = ups[i - 2].body  # same bytes as a /cas upload: one blob, two keys
                key = hashlib.sha256(b"crash-ac-key %d %d %d" % (self.seed, rnd, i)).hexdigest()
                ups.append(Upload("/ac/" + key, body))
        rng.shuffle(ups)
        # a few slow uploaders keep bodies in flight whenever the kill comes
        for u in ups:
            u.pace = 0.02 if u.size >= big // 2 else (0.005 if rng.random() < 0.3 else 0.0)
        return ups

    def run_uploads(self, srv, ups, kill_after, jitter):
        """Uploads everything concurrently; kills the server once `kill_after`
        uploads were answered (plus a random delay).  Returns how many were
        answered and how many were still in flight at the kill."""
        cv = threading.Condition()
        answered = [0]
        finished = [0]
        go = threading.Event()

        def worker(u):
            conn = srv.conn(timeout=60)
            try:
                go.wait()

                def chunks():
                    for off in range(0, u.size, 256 * KIB):
                        yield u.body[off:off + 256 * KIB]
                        if u.pace:
                            time.sleep(u.pace)
                u.status, _ = put_stream(conn, u.path, chunks(), u.size)
            except Exception as e:  # the kill resets the connection
                u.error = "%s: %s" % (type(e).__name__, e)
            finally:
                conn.close()
                with cv:
                    answered[0] += 1 if u.status is not None else 0
                    finished[0] += 1
                    cv.notify_all()

        threads = [threading.Thread(target=worker, args=(u,), daemon=True) for u in ups]
        for t in threads:
            t.start()
        go.set()
        with cv:
            cv.wait_for(lambda: answered[0] >= kill_after or finished[0] == len(ups), timeout=60)
        time.sleep(jitter)
        in_flight = sum(1 for t in threads if t.is_alive())
        at_kill = sum(1 for u in ups if u.status is not None)
        rc = srv.proc.poll()
        if rc is not None:
            go.set()
            for t in threads:
                t.join(90)
            srv.kill9()
            self.fail("cairnd died by itself (exit status %s) before the kill\n%s"
                      % (rc, srv.read_log()[-6000:]))
        srv.kill9()
        for t in threads:
            t.join(90)
            self.assertFalse(t.is_alive(), "an upload thread hung after the kill")
        return at_kill, in_flight

    # ---- checks ----------------------------------------------------------------

    def read_all(self, srv, ups, evicting=False):
        """GETs every key; returns {path: (sha, size)} of the readable ones and
        fails on anything that is neither a 404 nor the exact body (nor on a
        404 for an acknowledged upload, unless eviction may have taken it)."""
        readable = {}
        conn = srv.conn()
        try:
            for u in ups:
                try:
                    status, hdr, n, sha = get_digest(conn, u.path)
                except (OSError, http.client.HTTPException) as e:
                    self.fail("GET %s after the restart: %s: %s\nserver log:\n%s"
                              % (u.path, type(e).__name__, e, srv.read_log()[-6000:]))
                if status == 200:
                    self.assertEqual((n, sha), (u.size, u.sha),
                                     "GET %s after the crash returned other bytes (%d bytes) "
                                     "than were uploaded (%d bytes); client saw %s/%s"
                                     % (u.path, n, u.size, u.status, u.error))
                    readable[u.path] = (u.sha, u.size)
                else:
                    self.assertEqual(status, 404, "GET %s: %d" % (u.path, status))
                    if u.status is not None and 200 <= u.status < 300 and not evicting:
                        self.fail("PUT %s was answered %d before the kill, but GET after "
                                  "restart is %d" % (u.path, u.status, status))
        finally:
            conn.close()
        return readable

    def check_store(self, srv, readable, files_before, max_size=None):
        """/status equals what is readable; blobs/ and tmp/ hold exactly that."""
        digests = {sha: size for sha, size in readable.values()}
        self.assertEqual(tmp_files(srv.data), [], "DATA/tmp not emptied at startup")
        orphans = set(files_before) - set(digests)
        # the orphan sweep runs in the background after startup
        ok = wait_for(lambda: set(stored_blobs(srv.data)) == set(digests)
                      and srv.status()["orphans_removed"] == len(orphans), timeout=20, step=0.2)
        files = stored_blobs(srv.data)
        st = srv.status()
        self.assertTrue(ok, "after the orphan sweep blobs/ holds %d files, %d of them without an "
                            "index entry, %d readable blobs are missing; orphans_removed=%d, "
                            "expected %d" % (len(files), len(set(files) - set(digests)),
                                             len(set(digests) - set(files)),
                                             st["orphans_removed"], len(orphans)))
        self.assertEqual(st["entries"]["keys"], len(readable))
        self.assertEqual(st["entries"]["blobs"], len(digests))
        self.assertEqual(st["bytes"]["logical"], sum(digests.values()))
        self.assertEqual(st["bytes"]["referenced"], sum(s for _, s in readable.values()))
        self.assertEqual(st["bytes"]["stored"], sum(files.values()))
        self.assertEqual(st["eviction"]["blobs"], 0)  # no writes since the restart
        self.assertEqual(st["corrupt_blobs_quarantined"], 0)
        if max_size is not None:
            self.assertLessEqual(st["bytes"]["stored"], max_size)

    # ---- tests -------------------------------------------------------------------

    def test_kill9_during_concurrent_uploads(self):
        srv = self.start_server()
        all_ups = []
        seen_readable = set()
        # three moments: right at the start, half way, near the end
        for rnd, (kill_after, jitter) in enumerate([(0, self.rng.uniform(0.02, 0.1)),
                                                    (UPLOADS // 2, self.rng.uniform(0, 0.05)),
                                                    (UPLOADS - 8, self.rng.uniform(0, 0.05))]):
            ups = self.plan_round(rnd)
            at_kill, in_flight = self.run_uploads(srv, ups, kill_after, jitter)
            acked = [u for u in ups if u.status is not None and 200 <= u.status < 300]
            bad = [(u.path, u.status) for u in ups if u.status is not None and not 200 <= u.status < 300]
            self.assertEqual(bad, [], "uploads answered with an error before the kill")
            files_before = stored_blobs(srv.data)
            tmp_before = tmp_files(srv.data)
            print("  round %d: killed with %d answered, %d in flight; %d acked in all; "
                  "%d blob files, %d tmp files left"
                  % (rnd, at_kill, in_flight, len(acked), len(files_before), len(tmp_before)))
            errs = sorted({u.error for u in ups if u.error})
            self.assertGreater(in_flight, 0, "the kill came after every upload had finished; "
                               "client errors: %s\n%s" % (errs[:5], srv.read_log()[-3000:]))

            srv.start()  # same data folder
            all_ups += ups
            readable = self.read_all(srv, all_ups)
            lost = seen_readable - set(readable)
            self.assertEqual(lost, set(), "entries readable after an earlier restart are gone")
            seen_readable |= set(readable)
            self.check_store(srv, readable, files_before)
            for u in ups:
                u.body = None  # free memory

    def test_kill9_while_evicting(self):
        """The same with a 4 MiB store, so that uploads evict each other
        while the kill comes: acknowledged bodies may have been evicted,
        but whatever is readable is whole, and blobs/ matches the index."""
        limits = ["--max-size", "4M", "--high-watermark", "90", "--low-watermark", "50"]
        srv = self.start_server(limits)
        all_ups = []
        for rnd, kill_after in enumerate([UPLOADS // 3, UPLOADS - 10]):
            ups = self.plan_round(rnd, big=2 * MIB)
            at_kill, in_flight = self.run_uploads(srv, ups, kill_after, self.rng.uniform(0, 0.05))
            bad = [(u.path, u.status) for u in ups
                   if u.status is not None and not 200 <= u.status < 300 and u.status != 507]
            self.assertEqual(bad, [], "uploads answered with an error before the kill")
            files_before = stored_blobs(srv.data)
            print("  round %d: killed with %d answered (%d of them 507), %d in flight; %d blob files"
                  % (rnd, at_kill, sum(1 for u in ups if u.status == 507), in_flight,
                     len(files_before)))
            # The check runs without the limit.  A batch of uploads may leave
            # the store between the high mark and --max-size, and the next
            # batch of any kind (the sweep's, the read times') then evicts
            # down to the low mark: right, but it would blur what the crash left.
            srv.args = []
            srv.start()
            all_ups += ups
            readable = self.read_all(srv, all_ups, evicting=True)
            self.check_store(srv, readable, files_before, max_size=4 * MIB)
            self.assertEqual(srv.stop(), 0, srv.read_log()[-3000:])
            srv.args = limits
            srv.start()
            for u in ups:
                u.body = None

    def test_clean_restart_keeps_everything(self):
        srv = self.start_server()
        ups = self.plan_round(0)[:30]
        conn = srv.conn()
        try:
            for u in ups:
                status, _ = put_stream(conn, u.path, [u.body], u.size)
                self.assertEqual(status, 200, u.path)
        finally:
            conn.close()
        before = srv.status()
        files_before = stored_blobs(srv.data)
        rc = srv.stop()
        srv.start()
        readable = self.read_all(srv, ups)
        self.assertEqual(set(readable), {u.path for u in ups})
        time.sleep(1.0)  # give the orphan sweep its chance to do something wrong
        after = srv.status()
        self.assertEqual(after["entries"], before["entries"])
        self.assertEqual(after["bytes"], before["bytes"])
        self.assertEqual(after["orphans_removed"], 0)
        self.assertEqual(stored_blobs(srv.data), files_before)
        self.assertEqual(tmp_files(srv.data), [])
        self.assertEqual(rc, 0, "cairnd exited with %s on SIGTERM\n%s" % (rc, srv.read_log()[-4000:]))

    def test_startup_after_kill9_clears_stale_readers(self):
        """Readers left in LMDB's lock file by a killed process are cleared at
        startup.  LMDB resets the whole reader table when the first process
        opens the environment, so this test keeps the lock file open (a shared
        fcntl lock, as any LMDB user holds) across the kill and restart: then
        only cairnd's mdb_reader_check can clear the dead slots."""
        import fcntl
        import shutil
        if shutil.which("mdb_stat") is None:
            self.skipTest("mdb_stat (lmdb-utils) is not installed")
        srv = self.start_server()
        ups = self.plan_round(0)[:6]
        for u in ups:
            self.assertEqual(srv.request("PUT", u.path, u.body)[0], 200)
        lockf = open(os.path.join(srv.data, "index.mdb-lock"), "rb")
        self.addCleanup(lockf.close)
        fcntl.lockf(lockf, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
        dead = []
        for _ in range(3):
            # every worker thread takes a reader slot
            def reader():
                c = srv.conn()
                try:
                    for u in ups * 3:
                        get_digest(c, u.path)
                finally:
                    c.close()
            ts = [threading.Thread(target=reader) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            pid = srv.proc.pid
            srv.kill9()
            dead.append(pid)
            table = self.reader_table(srv.data)
            self.assertIn(pid, table, "test set-up: the killed cairnd left no reader slot behind")
            srv.start()
            self.assertEqual(set(self.read_all(srv, ups)), {u.path for u in ups})
            st = srv.status()
            self.assertEqual((st["entries"]["keys"], st["entries"]["blobs"]),
                             (len(ups), len({u.sha for u in ups})))
            self.assertEqual(tmp_files(srv.data), [])
            table = self.reader_table(srv.data)
            self.assertEqual([p for p in table if p in dead], [],
                             "reader slots of killed processes %s still in the lock file: %s"
                             % (dead, table))

    @staticmethod
    def reader_table(data):
        out = subprocess.run(["mdb_stat", "-n", "-r", os.path.join(data, "index.mdb")],
                             capture_output=True, text=True).stdout
        pids = []
        for line in out.splitlines():
            f = line.split()
            if len(f) == 3 and f[0].isdigit():
                pids.append(int(f[0]))
        return pids


if __name__ == "__main__":
    unittest.main()


class PowerLossTest(unittest.TestCase):
    """Invariant 4 against a power loss (with the default --fsync): what a 2xx
    answer acknowledges is on disk before the answer leaves.  cairnd runs
    with tests/integration/durability_shim.c preloaded, which follows the
    files under its data folder: a write leaves a file dirty until an fsync
    or fdatasync of it, and the head of a 2xx answer sent while one is dirty
    is noted.  One connection, one request at a time, so that nothing else
    is being written when an answer goes out."""

    def test_an_answer_leaves_after_what_it_acknowledges_is_on_disk(self):
        shim = os.path.join(ROOT, "build", "test", "lib", "durability_shim.so")
        if not os.path.exists(shim):
            self.skipTest("build/test/lib/durability_shim.so is not built (make test builds it)")
        data = tempfile.mkdtemp(prefix="cairn-test-")
        notes, seen = data + ".dirty", data + ".seen"
        self.addCleanup(lambda: [shutil.rmtree(data, ignore_errors=True)] +
                        [os.remove(p) for p in (notes, seen, data + ".log") if os.path.exists(p)])
        srv = Server(data=data, env={
            "LD_PRELOAD": shim, "CAIRN_SHIM_DIR": data + "/", "CAIRN_SHIM_LOG": notes,
            "CAIRN_SHIM_SEEN": seen, "CAIRN_SHIM_SCRATCH": os.path.join(data, "tmp") + "/",
            # (the shim comes before the sanitizers' runtime, which would refuse that)
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"})
        rng = random.Random(random_seed())
        conn = srv.conn()
        try:
            def call(method, path, body=None):
                conn.request(method, path, body=body)
                r = conn.getresponse()
                r.read()
                return r.status
            for i, size in enumerate((100, 5 * KIB, 40 * KIB, 300 * KIB, 3 * MIB)):
                body = rng.randbytes(size)  # (in the index, and in files of their own)
                self.assertEqual(call("PUT", "/cas/" + hashlib.sha256(body).hexdigest(), body),
                                 200)
                key = "/ac/" + hashlib.sha256(b"key %d" % i).hexdigest()
                self.assertEqual(call("PUT", key, body[:size // 2]), 200)
                self.assertIn(call("DELETE", key), (200, 204))
            # S3 (no keys configured: unsigned): a bucket, an object, a
            # multipart upload of an uploaded part and a copied one
            self.assertEqual(call("PUT", "/durable"), 200)
            part = rng.randbytes(5 * MIB)
            self.assertEqual(call("PUT", "/durable/src", part), 200)
            conn.request("POST", "/durable/mp?uploads")
            r = conn.getresponse()
            up = re.search(rb"<UploadId>([^<]+)</UploadId>", r.read()).group(1).decode()
            self.assertEqual(call("PUT", "/durable/mp?partNumber=1&uploadId=" + up, part), 200)
            conn.request("PUT", "/durable/mp?partNumber=2&uploadId=" + up,
                         headers={"x-amz-copy-source": "/durable/src",
                                  "x-amz-copy-source-range": "bytes=0-99"})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            etag = hashlib.md5(part).hexdigest()
            done = ("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag>"
                    "</Part><Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part>"
                    "</CompleteMultipartUpload>" % (etag, hashlib.md5(part[:100]).hexdigest()))
            self.assertEqual(call("POST", "/durable/mp?uploadId=" + up, done.encode()), 200)
            self.assertIn(call("DELETE", "/durable/src"), (200, 204))
        finally:
            conn.close()
            rc = srv.stop()
        self.assertEqual(rc, 0, srv.read_log()[-3000:])
        with open(seen) as f:
            self.assertIn(os.path.join(data, "index.mdb"), f.read().split(),
                          "the shim did not follow the index")
        dirty = open(notes).read().split() if os.path.exists(notes) else []
        self.assertEqual(sorted(set(dirty)), [], "answered while these were not on disk")


class DiskFailsTest(unittest.TestCase):
    """A disk that fails a sync of the index (EIO): the write is refused, and
    so is every change after it, even once the disk answers again, while
    reads go on; the node says it is not ready; cairnd exits 0 on SIGTERM,
    and starts again sound."""

    def test_a_failed_sync_of_the_index_stops_all_changes(self):
        shim = os.path.join(ROOT, "build", "test", "lib", "durability_shim.so")
        if not os.path.exists(shim):
            self.skipTest("build/test/lib/durability_shim.so is not built (make test builds it)")
        data = tempfile.mkdtemp(prefix="cairn-test-")
        flag = data + ".fail"
        self.addCleanup(lambda: [shutil.rmtree(data, ignore_errors=True)] +
                        [os.remove(p) for p in (flag, data + ".log") if os.path.exists(p)])
        srv = Server(data=data, env={
            "LD_PRELOAD": shim, "CAIRN_SHIM_DIR": data + "/", "CAIRN_SHIM_FAIL_SYNC": flag,
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"})
        try:
            bodies = [os.urandom(1000) for _ in range(3)]  # (in the index itself)
            keys = ["/cas/" + hashlib.sha256(b).hexdigest() for b in bodies]
            self.assertEqual(srv.request("PUT", keys[0], bodies[0])[0], 200)
            self.assertEqual(srv.request("GET", "/readyz")[0], 200)
            open(flag, "w").close()
            st, _, out = srv.request("PUT", keys[1], bodies[1])
            self.assertEqual(st, 500, out)
            os.remove(flag)  # the disk answers again: changes stay refused
            self.assertEqual(srv.request("PUT", keys[2], bodies[2])[0], 500)
            self.assertEqual(srv.request("DELETE", keys[0])[0], 500)
            self.assertEqual(srv.request("PUT", "/failbucket")[0], 500)
            self.assertEqual(srv.request("GET", "/readyz")[0], 503)
            self.assertEqual(srv.request("GET", "/healthz")[0], 200)
            self.assertEqual(srv.status()["ready"], False)
            self.assertEqual(srv.request("GET", keys[0])[2], bodies[0])  # reads go on
            for k in keys[1:]:
                self.assertEqual(srv.request("GET", k)[0], 404)
            self.assertIn('"event":"store_broken"', srv.read_log())
        finally:
            rc = srv.stop()
        self.assertEqual(rc, 0, srv.read_log()[-3000:])
        srv.start()
        try:
            self.assertEqual(srv.request("GET", "/readyz")[0], 200)
            self.assertEqual(srv.request("GET", keys[0])[2], bodies[0])
            self.assertEqual(srv.request("PUT", keys[1], bodies[1])[0], 200)
        finally:
            rc = srv.stop()
        self.assertEqual(rc, 0, srv.read_log()[-3000:])


class MultipartRestartTest(unittest.TestCase):
    """What a crash leaves in multipart/: at the next start, a completion cut
    short gives its upload back (it can be completed or aborted), and a
    folder made or removed only in part goes, with the bytes it counted."""

    def test_a_restart_tidies_multipart(self):
        srv = Server()
        self.addCleanup(lambda: close_checked(self, srv, killed_ok=True))
        self.assertEqual(srv.request("PUT", "/mpbucket")[0], 200)
        st, _, doc = srv.request("POST", "/mpbucket/k?uploads")
        up = re.search(rb"<UploadId>([^<]+)</UploadId>", doc).group(1).decode()
        part = os.urandom(1000)
        self.assertEqual(srv.request("PUT", "/mpbucket/k?partNumber=1&uploadId=" + up,
                                     part)[0], 200)
        mp = os.path.join(srv.data, "multipart")
        srv.kill9()
        # as a crash leaves them: a completion cut short, an upload made in
        # part (no info yet), one removed in part (its info gone first)
        os.rename(os.path.join(mp, up, "info"), os.path.join(mp, up, "info.closing"))
        half = os.path.join(mp, "0" * 32)
        os.mkdir(half)
        with open(os.path.join(half, "info.tmp"), "wb") as f:
            f.write(b"x" * 38)
        gone = os.path.join(mp, "1" * 32)
        os.mkdir(gone)
        with open(os.path.join(gone, "00001." + hashlib.md5(part).hexdigest()), "wb") as f:
            f.write(part)
        with open(os.path.join(mp, up, "tmp.00002.0123456789abcdef"), "wb") as f:
            f.write(b"half a part")
        srv.start()
        self.assertEqual(sorted(os.listdir(mp)), [up])
        self.assertEqual(sorted(os.listdir(os.path.join(mp, up))),
                         sorted(["info", "00001." + hashlib.md5(part).hexdigest()]))
        metrics = srv.request("GET", "/metrics")[2].decode()
        self.assertIn("cairn_store_multipart_bytes 1000\n", metrics)
        st, _, doc = srv.request("GET", "/mpbucket/k?uploadId=" + up)
        self.assertEqual(st, 200, doc)
        done = ("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag>"
                "</Part></CompleteMultipartUpload>" % hashlib.md5(part).hexdigest())
        self.assertEqual(srv.request("POST", "/mpbucket/k?uploadId=" + up, done.encode())[0], 200)
        self.assertEqual(srv.request("GET", "/mpbucket/k")[2], part)
        self.assertEqual(os.listdir(mp), [])
