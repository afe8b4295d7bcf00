"""GitLab Runner's distributed cache (S3) against cairnd, with minio-go v7.

GitLab Runner's legacy S3 cache adapter signs with minio-go: it presigns
HEAD, GET and PUT URLs (after a GetBucketLocation when BucketLocation is
empty) and a helper process transfers the archives over plain HTTP.  The Go
program s3_runner_flow.go does the signing with the real library; this file
plays the helper with http.client, exactly as PROTOCOLS.md describes it, and
also drives minio-go's own transfers (aws-chunked streaming PUTs, multipart
uploads, listings, copies, deletions).  After each step the store is checked
through GET /status.

The Go program is built offline at test time against Debian's
golang-github-minio-minio-go-v7-dev (packages golang-go and
golang-github-minio-minio-go-v7-dev); without them the tests are skipped.
One server per test, with access keys.
"""
import base64
import email.utils
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import xml.etree.ElementTree as ET

import test_tier as tt  # moto_server, as the tier tests run it
from harness import ROOT, Server, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
GO_SRC = os.path.join(HERE, "s3_runner_flow.go")
GOPATH = "/usr/share/gocode"
MINIO_GO = os.path.join(GOPATH, "src/github.com/minio/minio-go/v7")

AK, SK = "RUNNERCACHEKEY", "runner/cache+secret=="
BUCKET = "runner-cache"
MiB = 1 << 20
JOB_TIMEOUT = 3 * 3600  # presigned URLs live as long as the job may run

# GitLab Runner's object names: [Path/][runner/<token>/]project/<id>/[<2 hex>/]<key>
KEY_MAIN = "runner/abc123/project/42/ab/main-protected"
KEY_ALT = "runner/abc123/project/42/ab/main-non_protected"


def _find_go():
    go = shutil.which("go") or ("/usr/lib/go/bin/go" if os.path.exists("/usr/lib/go/bin/go") else None)
    return go


def _zip_like(n, seed):
    """A zip archive's look: local header magic, then incompressible bytes."""
    return b"PK\x03\x04" + _random(n - 4, seed)


def _zst_like(n, seed):
    """A tar.zst archive's look: zstd frame magic, then incompressible bytes."""
    return b"\x28\xb5\x2f\xfd" + _random(n - 4, seed)


def _random(n, seed=None):
    """Incompressible bytes (seed: a name, for the reader; bodies are random anyway)."""
    return os.urandom(n)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def s3_error_code(body):
    root = ET.fromstring(body)
    assert root.tag == "Error", body
    return root.findtext("Code"), root.findtext("Message")


class RunnerFlowCase(unittest.TestCase):
    """The Go program, built once per class, and the runner helper's steps;
    self.srv is the server they talk to."""
    go = None
    bin = None

    @classmethod
    def setUpClass(cls):
        cls.go = _find_go()
        if cls.go is None:
            raise unittest.SkipTest("go is not installed (Debian package golang-go)")
        if not os.path.isdir(MINIO_GO):
            raise unittest.SkipTest("minio-go v7 is not installed "
                                    "(Debian package golang-github-minio-minio-go-v7-dev)")
        cls.tmp = tempfile.mkdtemp(prefix="cairn-runner-")
        try:
            cls.bin = cls._build()
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def _build(cls):
        """Builds s3_runner_flow.go offline (GOPATH mode, a fresh GOCACHE in the
        temp dir).  The binary is kept in build/test/go/ under a name derived
        from the source, the Go version and the minio-go version, so that a
        rerun on a busy machine does not compile minio-go again."""
        env = dict(os.environ, GOPATH=GOPATH, GO111MODULE="off", GOFLAGS="-mod=mod",
                   GOCACHE=os.path.join(cls.tmp, "gocache"), GOPROXY="off", HOME=cls.tmp)
        ver = subprocess.run([cls.go, "version"], env=env, capture_output=True, text=True,
                             timeout=60).stdout
        try:
            with open(os.path.join(MINIO_GO, "api.go")) as f:
                ver += re.search(r'libraryVersion\s*=\s*"([^"]+)"', f.read()).group(1)
        except (OSError, AttributeError):
            ver += "unknown minio-go"
        with open(GO_SRC, "rb") as f:
            tag = hashlib.sha256(f.read() + ver.encode()).hexdigest()[:16]
        cache_dir = os.path.join(ROOT, "build", "test", "go")
        cached = os.path.join(cache_dir, "s3_runner_flow-" + tag)
        if os.access(cached, os.X_OK):
            return cached
        out = os.path.join(cls.tmp, "s3_runner_flow")
        p = subprocess.run([cls.go, "build", "-o", out, GO_SRC], env=env,
                           capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise AssertionError("building s3_runner_flow.go failed:\n" + p.stdout + p.stderr)
        try:
            os.makedirs(cache_dir, exist_ok=True)
            tmp = cached + ".%d" % os.getpid()
            shutil.copy2(out, tmp)
            os.replace(tmp, cached)
        except OSError:
            return out
        return cached

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers -------------------------------------------------------------

    def flow(self, cmd, *args, expect_fail=False, timeout=120):
        """Runs the Go program; returns (result JSON, [logged requests])."""
        p = subprocess.run(
            [self.bin, "127.0.0.1:%d" % self.srv.port, AK, SK, BUCKET, cmd] + list(args),
            capture_output=True, text=True, timeout=timeout)
        reqs = [json.loads(l[4:]) for l in p.stderr.splitlines() if l.startswith("REQ ")]
        errs = [json.loads(l[4:]) for l in p.stderr.splitlines() if l.startswith("ERR ")]
        if expect_fail:
            self.assertNotEqual(p.returncode, 0, "%s %s succeeded: %s" % (cmd, args, p.stdout))
            return (errs[0] if errs else {"error": p.stderr}), reqs
        self.assertEqual(p.returncode, 0, "minio-go %s %s failed:\n%s\n%s" % (
            cmd, " ".join(args), p.stderr[-4000:], self.srv.read_log()[-3000:]))
        return json.loads(p.stdout), reqs

    def write(self, name, data):
        path = os.path.join(self.files, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def presign(self, method, key, expiry=JOB_TIMEOUT, headers=(), params=()):
        args = []
        for k, v in headers:
            args += ["-header", "%s=%s" % (k, v)]
        for k, v in params:
            args += ["-param", "%s=%s" % (k, v)]
        out, reqs = self.flow("presign", *(args + [method, key, str(expiry)]))
        return out["url"], reqs

    def http(self, method, url, body=None, headers=None, conn=None):
        """A plain HTTP request on a presigned URL, as the runner's helper
        sends it.  Returns (status, headers with lowercase names, body)."""
        u = urllib.parse.urlsplit(url)
        self.assertEqual(u.port, self.srv.port)
        target = u.path + ("?" + u.query if u.query else "")
        return self.srv.request(method, target, body, headers, conn)

    def helper_upload(self, key, body, cachekey):
        """The helper's upload: HEAD on the check URL, then one PUT."""
        check, _ = self.presign("HEAD", key)
        st, _, _ = self.http("HEAD", check)
        if st == 200:
            return "skipped"
        self.assertEqual(st, 404, "check HEAD of a new key")
        put, _ = self.presign("PUT", key, headers=[("x-amz-meta-cachekey", cachekey)])
        t0 = time.time()
        st, h, data = self.http("PUT", put, body=body, headers={
            "Content-Length": str(len(body)),
            "Content-Type": "application/octet-stream",
            "x-amz-meta-cachekey": cachekey,
            "Last-Modified": "Mon, 01 Jan 2001 00:00:00 GMT",  # sent unsigned by the helper
        })
        self.assertTrue(200 <= st < 300, "PUT %s: %d %s" % (key, st, data[:500]))
        self.assertLess(time.time() - t0, 30, "the helper gives up after 30 s without a response")
        self.assertEqual(h.get("etag"), '"%s"' % hashlib.md5(body).hexdigest())
        return "uploaded"

    def status(self):
        return self.srv.status()


class RunnerCacheTest(RunnerFlowCase):
    def setUp(self):
        self.srv = Server(["--access-key", AK, "--secret-key", SK])
        self.files = tempfile.mkdtemp(prefix="files-", dir=self.tmp)
        self.flow("mb")

    def tearDown(self):
        rc = self.srv.close()
        shutil.rmtree(self.files, ignore_errors=True)
        self.assertEqual(rc, 0, "cairnd exited with %s\n%s" % (rc, self.srv.last_log[-6000:]))

    # ---- GetBucketLocation and presigning ------------------------------------

    def test_presign_asks_bucket_location_first(self):
        """With BucketLocation empty minio-go sends a header-signed
        GET /<bucket>?location before it can sign anything."""
        url, reqs = self.presign("GET", KEY_MAIN)
        self.assertEqual(len(reqs), 1, reqs)
        r = reqs[0]
        self.assertEqual((r["method"], r["path"], r["query"], r["status"]),
                         ("GET", "/%s/" % BUCKET, "location=", 200))
        self.assertEqual(r["headers"]["Authorization"], "AWS4-HMAC-SHA256")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        self.assertEqual(q["X-Amz-SignedHeaders"], ["host"])
        self.assertEqual(q["X-Amz-Expires"], [str(JOB_TIMEOUT)])
        self.assertIn("/us-east-1/s3/aws4_request", q["X-Amz-Credential"][0])
        self.assertEqual(urllib.parse.urlsplit(url).path, "/%s/%s" % (BUCKET, KEY_MAIN))

        out, _ = self.flow("location")
        self.assertEqual(out["location"], "us-east-1")  # minio-go's reading of an empty constraint
        # unsigned: refused, since the server has keys
        st, _, body = self.srv.request("GET", "/%s?location" % BUCKET)
        self.assertEqual(st, 403, body)
        self.assertEqual(s3_error_code(body)[0], "AccessDenied")

    # ---- the helper's transfers on presigned URLs ----------------------------

    def test_helper_upload_then_download(self):
        body = _zip_like(3 * MiB + 17, "main")
        self.assertEqual(self.helper_upload(KEY_MAIN, body, "main-protected"), "uploaded")
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1))

        # a second job finds it there and skips the upload
        self.assertEqual(self.helper_upload(KEY_MAIN, body, "main-protected"), "skipped")

        # download: HEAD on the primary and the alternate URL, then GET
        head_main, _ = self.presign("HEAD", KEY_MAIN)
        head_alt, _ = self.presign("HEAD", KEY_ALT)
        st, h, data = self.http("HEAD", head_main)
        self.assertEqual(st, 200)
        self.assertEqual(data, b"")
        self.assertEqual(h["content-length"], str(len(body)))
        self.assertEqual(h.get("x-amz-meta-cachekey"), "main-protected")
        lm = email.utils.parsedate_to_datetime(h["last-modified"])
        self.assertLess(abs(lm.timestamp() - time.time()), 300,
                        "Last-Modified is the upload time, not the helper's unsigned header")
        st, h2, data = self.http("HEAD", head_alt)
        self.assertEqual((st, data), (404, b""))  # the alternate is not there

        get, _ = self.presign("GET", KEY_MAIN)
        st, h, data = self.http("GET", get)
        self.assertEqual(st, 200)
        self.assertEqual(sha(data), sha(body))
        self.assertEqual(h.get("content-type"), "application/octet-stream")
        self.assertEqual(h.get("x-amz-meta-cachekey"), "main-protected")
        self.assertEqual(h.get("etag"), '"%s"' % hashlib.md5(body).hexdigest())

        # minio-go sees the helper's upload with its metadata
        st_out, _ = self.flow("stat", KEY_MAIN)
        self.assertEqual(st_out["size"], len(body))
        self.assertEqual(st_out["user_metadata"], {"Cachekey": "main-protected"})
        self.assertEqual(st_out["content_type"], "application/octet-stream")

    def test_same_archive_under_two_keys_is_one_blob(self):
        body = _zip_like(2 * MiB, "dedup")
        self.helper_upload(KEY_MAIN, body, "main-protected")
        self.helper_upload(KEY_ALT, body, "main-non_protected")
        s = self.status()
        self.assertEqual(s["entries"]["keys"], 2)
        self.assertEqual(s["entries"]["blobs"], 1, s)
        self.assertEqual(s["bytes"]["saved_by_dedup"], len(body), s)

        # a new key with a tar.zst archive is a blob of its own
        zst = _zst_like(MiB + 5, "zst")
        key = "runner/abc123/project/42/cd/feature-x+y non_protected"
        self.helper_upload(key, zst, "feature-x+y non_protected")
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (3, 2), s)
        self.assertEqual(s["bytes"]["saved_by_dedup"], len(body), s)
        get, _ = self.presign("GET", key)
        st, _, data = self.http("GET", get)
        self.assertEqual((st, sha(data)), (200, sha(zst)))
        # both downloads of the deduplicated archive give the same bytes
        for k in (KEY_MAIN, KEY_ALT):
            get, _ = self.presign("GET", k)
            st, _, data = self.http("GET", get)
            self.assertEqual((st, sha(data)), (200, sha(body)))

    def test_cache_miss_is_404(self):
        head, _ = self.presign("HEAD", "runner/abc123/project/42/ab/never-uploaded")
        st, _, data = self.http("HEAD", head)
        self.assertEqual((st, data), (404, b""))
        get, _ = self.presign("GET", "runner/abc123/project/42/ab/never-uploaded")
        st, h, data = self.http("GET", get)
        self.assertEqual(st, 404)
        code, msg = s3_error_code(data)
        self.assertEqual(code, "NoSuchKey")
        self.assertTrue(msg)
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (0, 0))

    def test_parallel_download_of_50mib_archive(self):
        size = 50 * MiB + 12345
        body = _zst_like(size, "parallel")
        key = "runner/abc123/project/7/ef/big-archive"
        self.helper_upload(key, body, "big-archive")

        get, _ = self.presign("GET", key)
        # probe: one byte, to learn the size
        st, h, data = self.http("GET", get, headers={"Range": "bytes=0-0"})
        self.assertEqual(st, 206)
        self.assertEqual(h.get("content-range"), "bytes 0-0/%d" % size)
        self.assertEqual(data, body[:1])
        total = int(h["content-range"].rsplit("/", 1)[1])

        chunk = 16 * MiB
        ranges = [(a, min(a + chunk, total) - 1) for a in range(0, total, chunk)]
        self.assertEqual(len(ranges), 4)
        parts, errors = {}, []

        def fetch(a, b):
            try:
                st, h, data = self.http("GET", get, headers={"Range": "bytes=%d-%d" % (a, b)})
                if st != 206 or h.get("content-range") != "bytes %d-%d/%d" % (a, b, total) or \
                        len(data) != b - a + 1 or h.get("content-length") != str(b - a + 1):
                    errors.append((a, b, st, h.get("content-range"), len(data)))
                parts[a] = data
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append((a, b, repr(e)))

        threads = [threading.Thread(target=fetch, args=r) for r in ranges]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        whole = b"".join(parts[a] for a, _ in ranges)
        self.assertEqual(sha(whole), sha(body))

    def test_extra_query_parameters_are_tolerated(self):
        body = _zip_like(64 * 1024, "xid")
        put, _ = self.presign("PUT", KEY_MAIN, headers=[("x-amz-meta-cachekey", "k")],
                              params=[("x-id", "PutObject")])
        self.assertIn("x-id=PutObject", put)
        st, _, data = self.http("PUT", put, body=body, headers={
            "Content-Type": "application/octet-stream", "x-amz-meta-cachekey": "k"})
        self.assertEqual(st, 200, data)
        head, _ = self.presign("HEAD", KEY_MAIN, params=[("x-id", "HeadObject")])
        st, _, _ = self.http("HEAD", head)
        self.assertEqual(st, 200)
        get, _ = self.presign("GET", KEY_MAIN, params=[("x-id", "GetObject")])
        self.assertIn("x-id=GetObject", get)
        st, _, data = self.http("GET", get)
        self.assertEqual((st, sha(data)), (200, sha(body)))
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1))

    def test_expired_url_is_403_access_denied(self):
        body = _zip_like(4096, "expired")
        self.helper_upload(KEY_MAIN, body, "main")
        get, _ = self.presign("GET", KEY_MAIN, expiry=1)
        put, _ = self.presign("PUT", KEY_ALT, expiry=1, headers=[("x-amz-meta-cachekey", "alt")])
        head, _ = self.presign("HEAD", KEY_MAIN, expiry=1)
        time.sleep(2.2)
        st, h, data = self.http("GET", get)
        self.assertEqual(st, 403, data)
        code, msg = s3_error_code(data)
        self.assertEqual(code, "AccessDenied")
        self.assertTrue(msg and msg.strip(), "an expired URL's error has a Message")
        st, _, data = self.http("HEAD", head)
        self.assertEqual((st, data), (403, b""))
        st, _, data = self.http("PUT", put, body=body, headers={
            "Content-Type": "application/octet-stream", "x-amz-meta-cachekey": "alt"})
        self.assertEqual(st, 403, data)
        self.assertEqual(s3_error_code(data)[0], "AccessDenied")
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1), "nothing stored")

    def test_tampered_signature_is_403_signature_does_not_match(self):
        body = _zip_like(8192, "tamper")
        self.helper_upload(KEY_MAIN, body, "main")
        get, _ = self.presign("GET", KEY_MAIN)
        i = get.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        flipped = get[:i] + ("0" if get[i] != "0" else "1") + get[i + 1:]
        st, _, data = self.http("GET", flipped)
        self.assertEqual(st, 403, data)
        self.assertEqual(s3_error_code(data)[0], "SignatureDoesNotMatch")

        # the URL of one key does not open another
        other = get.replace("/main-protected?", "/main-non_protected?")
        st, _, data = self.http("GET", other)
        self.assertEqual(st, 403, data)
        self.assertEqual(s3_error_code(data)[0], "SignatureDoesNotMatch")

        # a PUT whose signed x-amz-meta-cachekey is changed, or missing
        put, _ = self.presign("PUT", KEY_ALT, headers=[("x-amz-meta-cachekey", "alt")])
        for hdrs in ({"x-amz-meta-cachekey": "evil"}, {}):
            hdrs["Content-Type"] = "application/octet-stream"
            st, _, data = self.http("PUT", put, body=b"x" * 1000, headers=hdrs)
            self.assertEqual(st, 403, data)
            self.assertEqual(s3_error_code(data)[0], "SignatureDoesNotMatch")
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1), "nothing stored")

    # ---- minio-go's own transfers --------------------------------------------

    def test_minio_put_small_object_streaming_signature(self):
        body = _random(1000, "small")
        path = self.write("small", body)
        out, reqs = self.flow("put", "-meta", "cachekey=small", "-meta", "Job-Id=77",
                              "-content-type", "application/zip", "runner/t/project/1/small", path)
        self.assertEqual(out["etag"], out["md5"])
        puts = [r for r in reqs if r["method"] == "PUT"]
        self.assertEqual(len(puts), 1, reqs)
        h = puts[0]["headers"]
        # minio-go signs every chunk over plain http when the size is known
        self.assertEqual(h["X-Amz-Content-Sha256"], "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        self.assertEqual(h["X-Amz-Decoded-Content-Length"], "1000")
        self.assertGreater(int(h["Content-Length"]), 1000)

        st, _ = self.flow("stat", "runner/t/project/1/small")
        self.assertEqual(st["user_metadata"], {"Cachekey": "small", "Job-Id": "77"})
        self.assertEqual(st["content_type"], "application/zip")
        self.assertEqual((st["size"], st["etag"]), (1000, out["md5"]))
        got, _ = self.flow("get", "runner/t/project/1/small")
        self.assertEqual((got["size"], got["sha256"]), (1000, sha(body)))
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1))

    def test_minio_streaming_put_with_authentication_off(self):
        """With no access key configured (as `make run` starts cairnd), minio-go's
        signed streaming uploads still work: their framing is checked, their
        signatures cannot be."""
        self.srv.close()
        self.srv = Server([])
        self.flow("mb")
        body = _random(3 << 20, "open")
        path = self.write("open", body)
        out, reqs = self.flow("put", "open/k", path)
        puts = [r for r in reqs if r["method"] == "PUT" and r["path"].endswith("/open/k")]
        self.assertEqual(puts[0]["headers"]["X-Amz-Content-Sha256"],
                         "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        got, _ = self.flow("get", "open/k")
        self.assertEqual((got["size"], got["sha256"]), (3 << 20, sha(body)))

    def test_minio_put_20mib_single_streaming_put(self):
        body = _random(20 * MiB, "twenty")
        path = self.write("twenty", body)
        out, reqs = self.flow("put", "-part-size", str(32 * MiB), "twenty", path)
        self.assertEqual(out["etag"], out["md5"])
        methods = [(r["method"], r["query"]) for r in reqs if r["method"] != "GET"]
        self.assertEqual(methods, [("PUT", "")], "one PUT, no multipart")
        put = [r for r in reqs if r["method"] == "PUT"][0]
        self.assertEqual(put["headers"]["X-Amz-Content-Sha256"], "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        self.assertEqual(put["headers"]["X-Amz-Decoded-Content-Length"], str(len(body)))
        got, reqs = self.flow("get", "twenty")
        self.assertEqual((got["size"], got["sha256"]), (len(body), sha(body)))
        # the object handle's ReadAt: a ranged GET of the last 10 bytes
        self.assertEqual(base64.b64decode(got["tail"]), body[-10:])
        self.assertIn("bytes=%d-%d" % (len(body) - 10, len(body) - 1),
                      [r["headers"].get("Range") for r in reqs])
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1))

    def test_minio_multipart_70mib(self):
        body = _random(70 * MiB, "seventy")
        path = self.write("seventy", body)
        out, reqs = self.flow("put", "-part-size", str(16 * MiB), "mp/seventy", path)
        self.assertTrue(out["etag"].endswith("-5"), out)
        parts = [r for r in reqs if r["method"] == "PUT"]
        self.assertEqual(len(parts), 5)
        for r in parts:
            self.assertIn("partNumber=", r["query"])
            self.assertEqual(r["headers"]["X-Amz-Content-Sha256"], "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
            self.assertEqual(r["status"], 200)
        self.assertEqual(sorted(int(r["headers"]["X-Amz-Decoded-Content-Length"]) for r in parts),
                         [6 * MiB] + [16 * MiB] * 4)
        got, _ = self.flow("get", "mp/seventy")
        self.assertEqual((got["size"], got["sha256"]), (len(body), sha(body)))
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1), s)

        # the same bytes through minio-go's plain-stream path: CRC32C per part
        out2, reqs2 = self.flow("put", "-plain-reader", "-part-size", str(16 * MiB),
                                "mp/seventy-again", path)
        self.assertEqual(out2["etag"], out["etag"])
        parts2 = [r for r in reqs2 if r["method"] == "PUT"]
        self.assertEqual(len(parts2), 5)
        self.assertTrue(all("X-Amz-Checksum-Crc32c" in r["headers"] for r in parts2), parts2)
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (2, 1), s)
        self.assertEqual(s["bytes"]["saved_by_dedup"], len(body), s)
        mp = os.path.join(self.srv.data, "multipart")
        self.assertTrue(wait_for(lambda: not os.path.isdir(mp) or os.listdir(mp) == [], 5),
                        "parts left behind: %s" % (os.listdir(mp) if os.path.isdir(mp) else None))

    def test_minio_multipart_with_signed_trailing_checksums(self):
        """Options.TrailingHeaders: parts go as STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER
        with an x-amz-checksum-crc32c trailer.  minio-go (verified against AWS
        S3 by its authors) ends the trailer line with a bare LF and then sends
        an empty CRLF line before x-amz-trailer-signature."""
        body = _random(11 * MiB, "trailing")
        path = self.write("trailing", body)
        out, reqs = self.flow("put", "-trailing-headers", "-part-size", str(5 * MiB),
                              "mp/trailing", path)
        parts = [r for r in reqs if r["method"] == "PUT"]
        self.assertEqual(len(parts), 3)
        for r in parts:
            self.assertEqual(r["headers"]["X-Amz-Content-Sha256"],
                             "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
            self.assertEqual(r["headers"]["X-Amz-Trailer"], "x-amz-checksum-crc32c")
        got, _ = self.flow("get", "mp/trailing")
        self.assertEqual(got["sha256"], sha(body))
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1), s)

    def test_minio_core_multipart_api(self):
        body = _random(11 * MiB + 3, "core")
        path = self.write("core", body)
        out, reqs = self.flow("mpu", "-meta", "cachekey=core", "-content-type",
                              "application/x-tar", "runner/t/project/2/core", path, str(5 * MiB))
        self.assertEqual(out["etag"], out["want_etag"])
        self.assertTrue(out["listed_upload"], "ListMultipartUploads shows the open upload")
        self.assertEqual(out["listed_part_sizes"], [5 * MiB, 5 * MiB, MiB + 3])
        self.assertEqual(out["uploads_left"], None, "the aborted upload is gone")
        # parts sent with Content-MD5 (core API)
        parts = [r for r in reqs if r["method"] == "PUT"]
        self.assertTrue(all("Content-Md5" in r["headers"] for r in parts[:3]), parts)
        st, _ = self.flow("stat", "runner/t/project/2/core")
        self.assertEqual(st["etag"], out["want_etag"])
        self.assertEqual(st["user_metadata"], {"Cachekey": "core"})
        self.assertEqual(st["content_type"], "application/x-tar")
        got, _ = self.flow("get", "runner/t/project/2/core")
        self.assertEqual((got["size"], got["sha256"]), (len(body), sha(body)))
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (1, 1), s)

    def test_minio_list_copy_remove(self):
        keys = {
            "runner/abc123/project/42/ab/main": b"main archive",
            "runner/abc123/project/42/cd/dev": b"dev archive",
            "runner/abc123/project/43/ef/main": b"another project",
            "other/x": b"outside the runner's folder",
        }
        for k, v in keys.items():
            self.flow("put", "-meta", "cachekey=" + k.rsplit("/", 1)[1], k, self.write("f", v))
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (4, 4))

        out, _ = self.flow("list", "-recursive")
        self.assertEqual(out["keys"], sorted(keys))
        out, _ = self.flow("list", "-recursive", "-prefix", "runner/abc123/project/42/")
        self.assertEqual(out["keys"], ["runner/abc123/project/42/ab/main",
                                       "runner/abc123/project/42/cd/dev"])
        for v1 in ([], ["-v1"]):
            out, reqs = self.flow("list", *(v1 + ["-prefix", "runner/abc123/project/"]))
            self.assertEqual(out["prefixes"], ["runner/abc123/project/42/",
                                               "runner/abc123/project/43/"], v1)
            self.assertEqual(out["keys"], None)
            self.assertIn("delimiter=%2F", reqs[-1]["query"])
            out, _ = self.flow("list", *v1)
            self.assertEqual((out["keys"], out["prefixes"]), (None, ["other/", "runner/"]))
            # one key per page: minio-go follows the continuation (v2) or marker (v1)
            out, reqs = self.flow("list", *(v1 + ["-recursive", "-max-keys", "1"]))
            self.assertEqual(out["keys"], sorted(keys), v1)
            self.assertGreaterEqual(len([r for r in reqs if "max-keys=1" in r["query"]]), 4)
            # one entry per page with the delimiter: a page can end on a common
            # prefix; the next one starts after everything under it (v1: from
            # NextMarker = that prefix)
            with self.subTest(api="v1" if v1 else "v2"):
                out, reqs = self.flow("list", *(v1 + ["-prefix", "runner/abc123/project/",
                                                      "-max-keys", "1"]), timeout=60)
                self.assertEqual(out["prefixes"], ["runner/abc123/project/42/",
                                                   "runner/abc123/project/43/"])

        # CopyObject: the copy is a new key on the same blob, metadata copied
        src, dst = "runner/abc123/project/42/ab/main", "runner/abc123/project/42/ab/main-copy"
        out, reqs = self.flow("cp", src, dst)
        copy = [r for r in reqs if r["method"] == "PUT"][0]
        self.assertEqual(copy["headers"]["X-Amz-Copy-Source"], "%s/%s" % (BUCKET, urllib.parse.quote(src)))
        st, _ = self.flow("stat", dst)
        self.assertEqual(st["user_metadata"], {"Cachekey": "main"})
        self.assertEqual(st["etag"], hashlib.md5(keys[src]).hexdigest())
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (5, 4), s)
        self.assertEqual(s["bytes"]["saved_by_dedup"], len(keys[src]))
        # and with replaced metadata
        self.flow("cp", "-replace", "-meta", "cachekey=renamed", src, dst + "2")
        st, _ = self.flow("stat", dst + "2")
        self.assertEqual(st["user_metadata"], {"Cachekey": "renamed"})
        got, _ = self.flow("get", dst + "2")
        self.assertEqual(got["sha256"], sha(keys[src]))

        # RemoveObject
        self.flow("rm", dst)
        err, _ = self.flow("stat", dst, expect_fail=True)
        self.assertEqual(err.get("code"), "NoSuchKey", err)
        self.flow("rm", dst)  # deleting a missing key is fine
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (5, 4), s)

        # RemoveObjects (DeleteObjects), everything left
        out, reqs = self.flow("rms", *(sorted(keys) + [dst + "2"]))
        self.assertEqual(out["errors"], None)
        post = [r for r in reqs if r["method"] == "POST"]
        self.assertEqual(len(post), 1)
        self.assertEqual(post[0]["query"], "delete=")
        out, _ = self.flow("list", "-recursive")
        self.assertEqual(out["keys"], None)
        self.assertTrue(wait_for(lambda: self.status()["entries"]["blobs"] == 0, 10),
                        self.status())
        self.assertEqual(self.status()["entries"]["keys"], 0)

        # ComposeObject: one part copied from each source (UploadPartCopy)
        first, second = os.urandom(5 * 1024 * 1024 + 7), os.urandom(3000)
        self.flow("put", "big/first", self.write("first", first))
        self.flow("put", "big/second", self.write("second", second))
        out, reqs = self.flow("compose", "big/both", "big/first", "big/second")
        copies = [r for r in reqs if r["method"] == "PUT" and "X-Amz-Copy-Source" in r["headers"]]
        self.assertEqual(len(copies), 2, reqs)
        self.assertTrue(all("partNumber=" in r["query"] for r in copies), copies)
        self.assertEqual(out["size"], len(first) + len(second))
        got, _ = self.flow("get", "big/both")
        self.assertEqual(got["sha256"], sha(first + second))
        s = self.status()
        self.assertEqual((s["entries"]["keys"], s["entries"]["blobs"]), (3, 3), s)


class RunnerFleetTest(RunnerFlowCase):
    """Runners behind a load balancer, over two cairnd nodes that share one
    cold tier (moto_server): the cache a job uploads through node A is
    found by a later job through node B, which starts with an empty folder,
    with the metadata the runner stored, and the other way round; each
    archive goes to the tier once."""

    def setUp(self):
        self.moto = tt.Moto("fleet")
        self.addCleanup(self.moto.stop)
        self.files = tempfile.mkdtemp(prefix="files-", dir=self.tmp)
        self.addCleanup(shutil.rmtree, self.files, True)
        args = ["--access-key", AK, "--secret-key", SK, "--tier", "s3://fleet/cache",
                "--tier-endpoint", self.moto.url]
        self.a = self.node(args)
        self.b = self.node(args)
        self.srv = self.a

    def node(self, args):
        srv = Server(args, env=self.moto.creds)

        def close():
            rc = srv.close()
            self.assertEqual(rc, 0, "cairnd exited with %s\n%s" % (rc, srv.last_log[-6000:]))
        self.addCleanup(close)
        return srv


    def download(self, key, body, cachekey):
        """The helper's download on self.srv: HEAD, then GET."""
        head, _ = self.presign("HEAD", key)
        st, h, data = self.http("HEAD", head)
        self.assertEqual((st, data), (200, b""), key)
        self.assertEqual(h["content-length"], str(len(body)))
        self.assertEqual(h.get("x-amz-meta-cachekey"), cachekey)
        lm = email.utils.parsedate_to_datetime(h["last-modified"])
        self.assertLess(abs(lm.timestamp() - time.time()), 300, "the upload's time")
        get, _ = self.presign("GET", key)
        st, h, data = self.http("GET", get)
        self.assertEqual((st, sha(data)), (200, sha(body)), key)
        self.assertEqual(h.get("etag"), '"%s"' % hashlib.md5(body).hexdigest())
        self.assertEqual(h.get("content-type"), "application/octet-stream")
        self.assertEqual(h.get("x-amz-meta-cachekey"), cachekey)

    def test_a_cache_uploaded_through_one_node_is_downloaded_through_another(self):
        self.flow("mb")
        big = _zip_like(5 * MiB + 3, "main")  # a blob of its own in the tier
        small = _zst_like(20 * 1024, "lint")  # carried by its key record too
        key_small = "runner/abc123/project/42/cd/lint-non_protected"
        self.assertEqual(self.helper_upload(KEY_MAIN, big, "main-protected"), "uploaded")
        self.assertEqual(self.helper_upload(key_small, small, "lint-non_protected"), "uploaded")
        tt.assert_drained(self, self.a)

        # the next jobs land on B, which has never seen the bucket or the keys:
        # minio-go's GetBucketLocation, then the helper's HEAD and GET
        self.srv = self.b
        self.assertEqual(self.b.status()["entries"]["keys"], 0)
        self.download(KEY_MAIN, big, "main-protected")
        self.download(key_small, small, "lint-non_protected")
        self.assertEqual(self.helper_upload(KEY_MAIN, big, "main-protected"), "skipped")
        head, _ = self.presign("HEAD", KEY_ALT)
        self.assertEqual(self.http("HEAD", head)[0], 404)  # not anywhere in the fleet

        # a job on B makes a new cache; a job on A downloads it
        feature = _zip_like(3 * MiB + 1, "feature")
        key_feature = "runner/abc123/project/42/ef/feature-x non_protected"
        self.assertEqual(self.helper_upload(key_feature, feature, "feature-x non_protected"),
                         "uploaded")
        tt.assert_drained(self, self.b)
        self.srv = self.a
        self.download(key_feature, feature, "feature-x non_protected")

        # each archive went up once, under its digest, from the node that took it
        blobs = {k.rsplit("/", 1)[1] for k in self.moto.objects("fleet", "cache/blobs/")}
        self.assertEqual(blobs, {sha(big), sha(small), sha(feature)})
        self.assertEqual((self.a.status()["tier"]["uploads"], self.b.status()["tier"]["uploads"]),
                         (2, 1))


if __name__ == "__main__":
    unittest.main()
