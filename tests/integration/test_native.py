"""The native cache API as Bazel's HTTP remote cache and bazel-remote users
expect it: /cas/<sha256>, /ac/<64 hex>, an optional /<instance>/ prefix,
Range, zstd in and out, body limits, keep-alive, /healthz, /readyz, /status.

Every test drives a real cairnd (sanitizer build) with two real clients,
Python's http.client and the curl binary, and checks both what the client saw
and what the store holds (/status counts and the files under DATA/blobs).
Every server is stopped with SIGTERM and must exit 0 (no leak, no crash).
"""
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (CAIRND, Server, ServerTest, inline_blobs, metric_value, scrape, sha256,
                     stored_blobs, tmp_files, wait_for)

KiB = 1 << 10
MiB = 1 << 20
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# ---- bodies -------------------------------------------------------------------

def text_body(n, seed=0):
    """Text-like bytes (numbered log lines) that zstd compresses well."""
    out, i, size = [], 0, 0
    while size < n:
        line = b"%d line %08d: compiling //pkg/module_%d:target with -O2 -Wall\n" % (
            seed, i, i % 97)
        out.append(line)
        size += len(line)
        i += 1
    return b"".join(out)[:n]


def random_body(n):
    return os.urandom(n)


def zstd_compress(data, *extra):
    return subprocess.run(["zstd", "-q", "-c"] + list(extra), input=data,
                          stdout=subprocess.PIPE, check=True).stdout


def zstd_decompress(data):
    return subprocess.run(["zstd", "-q", "-dc"], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def kb(st):
    """Keys and blobs from /status (where the blobs are is checked apart)."""
    return {"keys": st["entries"]["keys"], "blobs": st["entries"]["blobs"]}


def ac_key(name):
    """A 64-hex action cache key (what Bazel sends: a SHA-256 of the action)."""
    return hashlib.sha256(b"action:" + name.encode()).hexdigest()


# ---- the test base ------------------------------------------------------------

class NativeTest(ServerTest):
    """One fresh server per test, a scratch folder for curl's files, and
    helpers for both clients."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="cairn-native-files-")
        self._nfile = 0

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        super().tearDown()

    # -- http.client
    def req(self, method, path, body=None, headers=None, conn=None):
        return self.srv.request(method, path, body=body, headers=headers, conn=conn)

    def put(self, path, body, headers=None):
        return self.req("PUT", path, body, headers)

    def put_status(self, path, body, headers=None):
        """PUT with http.client (which sends the whole body before it reads,
        without Expect: 100-continue); a connection error fails the test with
        a clear message instead of a traceback."""
        try:
            return self.put(path, body, headers)
        except (ConnectionError, OSError) as e:
            self.fail("PUT %s (%d bytes, %s): connection error instead of an HTTP status: %r"
                      % (path[:20] + "...", len(body), headers or {}, e))

    def get(self, path, headers=None):
        return self.req("GET", path, headers=headers)

    def head(self, path, headers=None):
        return self.req("HEAD", path, headers=headers)

    @contextlib.contextmanager
    def case(self, problems, label):
        """Runs one case of a table; a failed assertion is noted in `problems`
        and the next case still runs (one failure per test, listing them all)."""
        try:
            yield
        except AssertionError as e:
            problems.append("%s: %s" % (label, str(e).splitlines()[0][:300]))

    def assertNoProblems(self, problems):
        if problems:
            self.fail("\n" + "\n".join(problems))

    # -- curl
    def file(self, data):
        self._nfile += 1
        path = os.path.join(self.tmp, "f%d" % self._nfile)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def curl(self, *args, stdin=None):
        """Runs curl; returns (status, final response headers, body, stderr)."""
        self._nfile += 1
        hdr = os.path.join(self.tmp, "h%d" % self._nfile)
        out = os.path.join(self.tmp, "o%d" % self._nfile)
        cmd = ["curl", "--noproxy", "*", "-sS", "-D", hdr, "-o", out,
               "-w", "%{http_code}"] + list(args)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=stdin, timeout=60)
        self.assertEqual(p.returncode, 0, "curl %s failed: %s" % (args, p.stderr.decode()))
        status = int(p.stdout.decode()[-3:])
        headers = {}
        with open(hdr, "rb") as f:
            for line in f.read().decode("latin-1").split("\r\n"):
                if line.startswith("HTTP/"):
                    headers = {}  # keep the last (final) response only
                elif ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
        body = b""
        if os.path.exists(out):
            with open(out, "rb") as f:
                body = f.read()
        return status, headers, body, p.stderr.decode(errors="replace")

    def url(self, path):
        return self.srv.url + path

    # -- what the store holds
    def stats(self):
        return self.srv.status()

    def blob_files(self):
        """{digest hex: stored bytes} of every blob: its file under DATA/blobs,
        or its record in the index for a small one kept inline."""
        found = inline_blobs(self.srv.data)
        root = os.path.join(self.srv.data, "blobs")
        for d, _, files in os.walk(root):
            for name in files:
                with open(os.path.join(d, name), "rb") as f:
                    found[name] = f.read()
        return found

    def blob_path(self, digest):
        return os.path.join(self.srv.data, "blobs", digest[:2], digest)

    def tmp_files(self):
        d = os.path.join(self.srv.data, "tmp")
        return os.listdir(d) if os.path.isdir(d) else []

    def assertNothingStored(self):
        st = self.stats()
        self.assertEqual(kb(st), {"keys": 0, "blobs": 0}, st)
        self.assertEqual(st["bytes"]["logical"], 0, st)
        self.assertEqual(st["bytes"]["stored"], 0, st)
        self.assertEqual(self.blob_files(), {})
        self.assertEqual(self.tmp_files(), [], "temporary upload files left behind")

    def assertStoreConsistent(self):
        """/status agrees with the files on disk."""
        st = self.stats()
        files = self.blob_files()
        self.assertEqual(st["entries"]["blobs"], len(files), (st, sorted(files)))
        self.assertEqual(st["entries"]["inline_blobs"], len(inline_blobs(self.srv.data)), st)
        self.assertEqual(st["bytes"]["stored"], sum(len(v) for v in files.values()), st)
        for digest, data in files.items():
            if data.startswith(ZSTD_MAGIC):
                self.assertEqual(sha256(zstd_decompress(data)), digest)
            else:
                self.assertEqual(sha256(data), digest)
        return st, files


# ---- endpoints and errors -----------------------------------------------------

class CasTest(NativeTest):

    def test_put_get_head_with_http_client(self):
        body = text_body(10000)
        d = sha256(body)
        s, _, b = self.get("/cas/" + d)
        self.assertEqual((s, b.startswith(b"not found")), (404, True))
        s, h, b = self.head("/cas/" + d)
        self.assertEqual((s, b), (404, b""))
        s, _, _ = self.put("/cas/" + d, body)
        self.assertIn(s, (200, 201, 204))
        s, h, b = self.get("/cas/" + d)
        self.assertEqual(s, 200)
        self.assertEqual(b, body)
        self.assertEqual(int(h["content-length"]), len(body))
        self.assertNotIn("content-encoding", h)
        s, h, b = self.head("/cas/" + d)
        self.assertEqual((s, b), (200, b""))
        self.assertEqual(int(h["content-length"]), len(body))
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": 1, "blobs": 1})
        self.assertEqual(st["bytes"]["logical"], len(body))
        self.assertEqual(list(files), [d])
        # a second PUT of the same body is accepted and changes nothing
        s, _, _ = self.put("/cas/" + d, body)
        self.assertIn(s, (200, 201, 204))
        self.assertEqual(kb(self.stats()), {"keys": 1, "blobs": 1})

    def test_put_get_head_with_curl(self):
        body = random_body(300 * KiB)
        d = sha256(body)
        s, _, _, _ = self.curl(self.url("/cas/" + d))
        self.assertEqual(s, 404)
        s, _, _, _ = self.curl("-I", self.url("/cas/" + d))
        self.assertEqual(s, 404)
        s, _, _, _ = self.curl("-T", self.file(body), self.url("/cas/" + d))
        self.assertIn(s, (200, 201, 204))
        s, h, b, _ = self.curl(self.url("/cas/" + d))
        self.assertEqual((s, b), (200, body))
        self.assertEqual(int(h["content-length"]), len(body))
        s, h, _, _ = self.curl("-I", self.url("/cas/" + d))  # (-I writes the head to -o)
        self.assertEqual(s, 200)
        self.assertEqual(int(h["content-length"]), len(body))
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": 1, "blobs": 1})
        self.assertEqual(files[d], body)  # random: stored raw, byte for byte

    def test_digest_mismatch_is_400_and_stores_nothing(self):
        body = text_body(5000)
        other = sha256(b"something else")
        s, _, b = self.put("/cas/" + other, body)
        self.assertEqual(s, 400)
        self.assertIn(b"SHA-256", b)
        s, _, _ = self.get("/cas/" + other)
        self.assertEqual(s, 404)
        s, _, _ = self.get("/cas/" + sha256(body))
        self.assertEqual(s, 404)
        # curl, and a body above the 1 MiB frame size
        big = random_body(MiB + 5)
        s, _, b, _ = self.curl("-T", self.file(big), self.url("/cas/" + other))
        self.assertEqual(s, 400)
        s, _, _, _ = self.curl(self.url("/cas/" + other))
        self.assertEqual(s, 404)
        s, _, _, _ = self.curl(self.url("/cas/" + sha256(big)))
        self.assertEqual(s, 404)
        self.assertNothingStored()

    def test_bad_names_are_400(self):
        good = sha256(b"x")
        bad = [
            good[:63],                 # 63 characters
            good + "0",                # 65 characters
            good[:63] + "g",           # not hex
            good[:63] + "-",
            "z" * 64,
            "notahash",
        ]
        for prefix in ("/cas/", "/ac/", "/inst/cas/", "/inst/ac/"):
            for name in bad:
                for method in ("GET", "HEAD", "PUT", "DELETE"):
                    body = b"x" if method == "PUT" else None
                    s, _, b = self.req(method, prefix + name, body)
                    self.assertEqual(s, 400, (method, prefix + name, b))
                    if method != "HEAD":
                        self.assertIn(b"64 hex", b)
        s, _, b, _ = self.curl(self.url("/cas/" + good[:63]))
        self.assertEqual(s, 400)
        s, _, b, _ = self.curl("-T", self.file(b"x"), self.url("/ac/" + good[:63] + "q"))
        self.assertEqual(s, 400)
        self.assertNothingStored()

    def test_unknown_paths_are_404(self):
        # Paths outside the native API belong to the S3 front end (DESIGN.md:
        # "everything else ... is the S3 API"), so "unknown" here means: no
        # such endpoint and no such bucket, which is a 404 for GET, HEAD and
        # an object PUT, and never reaches the native store.
        d = sha256(b"x")
        paths = ["/foo", "/cas", "/casx/" + d, "/acx/" + d, "/cas" + d, "/healthzz",
                 "/status/x", "/readyz/" + d, "/metricsx", "/nowhere/at/all",
                 "/nothere/cas", "/nothere/ac"]
        for p in paths:
            for method in ("GET", "HEAD"):
                s, _, _ = self.req(method, p)
                self.assertEqual(s, 404, (method, p))
        for p in ("/casx/" + d, "/acx/" + d, "/status/x", "/nowhere/at/all"):
            s, _, _ = self.req("PUT", p, b"x")
            self.assertEqual(s, 404, ("PUT", p))
        # two levels of instance, or an instance that is not a name: not native
        for p in ("/a/b/cas/" + d, "/a/b/ac/" + d, "/../cas/" + d, "/a%20b/ac/" + d):
            for method in ("GET", "PUT"):
                s, _, _ = self.req(method, p, b"x" if method == "PUT" else None)
                self.assertIn(s, (400, 404), (method, p))
        s, _, b, _ = self.curl(self.url("/nowhere"))
        self.assertEqual(s, 404)
        s, _, b, _ = self.curl("-T", self.file(b"x"), self.url("/nowhere/at/all"))
        self.assertEqual(s, 404)
        self.assertNothingStored()

    def test_unsupported_methods_are_405_with_allow(self):
        d = sha256(b"x")
        for path in ("/cas/" + d, "/ac/" + d, "/foo/cas/" + d, "/foo/ac/" + d):
            for method in ("POST", "PATCH", "OPTIONS", "PROPFIND"):
                body = b"payload" if method in ("POST", "PATCH") else None
                s, h, _ = self.req(method, path, body)
                self.assertEqual(s, 405, (method, path))
                allow = {m.strip() for m in h.get("allow", "").split(",")}
                self.assertTrue({"GET", "HEAD", "PUT"} <= allow, (method, path, h))
        s, h, _, _ = self.curl("-X", "POST", "--data-binary", "abc", self.url("/cas/" + d))
        self.assertEqual(s, 405)
        self.assertIn("GET", h.get("allow", ""))
        self.assertNothingStored()

    def test_delete_then_get_404(self):
        a, b = text_body(200 * KiB, seed=1), random_body(70 * KiB)
        da, db = sha256(a), sha256(b)
        self.assertEqual(self.put("/cas/" + da, a)[0], 200)
        self.assertEqual(self.put("/ac/" + ac_key("k"), a)[0], 200)  # same blob, second key
        self.assertEqual(self.put("/ac/" + ac_key("b"), b)[0], 200)
        self.assertEqual(kb(self.stats()), {"keys": 3, "blobs": 2})

        s, _, _ = self.req("DELETE", "/cas/" + da)
        self.assertIn(s, (200, 204))
        self.assertEqual(self.get("/cas/" + da)[0], 404)
        self.assertEqual(self.head("/cas/" + da)[0], 404)
        # the AC entry still uses the blob: it stays, readable
        s, _, body = self.get("/ac/" + ac_key("k"))
        self.assertEqual((s, body), (200, a))
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": 2, "blobs": 2})
        self.assertIn(da, files)

        s, _, _, _ = self.curl("-X", "DELETE", self.url("/ac/" + ac_key("k")))
        self.assertIn(s, (200, 204))
        s, _, _, _ = self.curl(self.url("/ac/" + ac_key("k")))
        self.assertEqual(s, 404)
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": 1, "blobs": 1})
        self.assertNotIn(da, files)       # last key gone: the file is gone
        self.assertEqual(st["bytes"]["logical"], len(b))

        # deleting what is not there
        self.assertEqual(self.req("DELETE", "/cas/" + da)[0], 404)
        self.assertEqual(self.req("DELETE", "/ac/" + ac_key("never"))[0], 404)
        # a CAS delete through an instance prefix reaches the shared CAS
        self.assertEqual(self.put("/cas/" + db, b)[0], 200)
        self.assertIn(self.req("DELETE", "/inst/cas/" + db)[0], (200, 204))
        self.assertEqual(self.get("/cas/" + db)[0], 404)
        self.assertEqual(self.get("/ac/" + ac_key("b"))[2], b)

    def test_empty_blob_always_exists(self):
        for path in ("/cas/" + EMPTY_SHA, "/foo/cas/" + EMPTY_SHA, "/cas/" + EMPTY_SHA.upper()):
            s, h, b = self.get(path)
            self.assertEqual((s, b), (200, b""), path)
            self.assertEqual(h.get("content-length"), "0")
            s, h, b = self.head(path)
            self.assertEqual((s, b), (200, b""), path)
            self.assertEqual(h.get("content-length"), "0")
        s, h, b, _ = self.curl(self.url("/cas/" + EMPTY_SHA))
        self.assertEqual((s, b, h.get("content-length")), (200, b"", "0"))
        s, h, b, _ = self.curl("-I", self.url("/cas/" + EMPTY_SHA))
        self.assertEqual((s, h.get("content-length")), (200, "0"))
        # an empty body satisfies no range, as an empty /ac/ value does not
        for rng in ("bytes=0-0", "bytes=0-", "bytes=-1"):
            s, h, _ = self.get("/cas/" + EMPTY_SHA, headers={"Range": rng})
            self.assertEqual((s, h.get("content-range")), (416, "bytes */0"), rng)
        # it exists without having been stored
        self.assertNothingStored()
        # the rule is for the CAS only: an AC key that happens to be that digest misses
        self.assertEqual(self.get("/ac/" + EMPTY_SHA)[0], 404)
        # PUT of the empty body is fine, and it still reads back empty
        self.assertEqual(self.put("/cas/" + EMPTY_SHA, b"")[0], 200)
        self.assertEqual(self.get("/cas/" + EMPTY_SHA)[:3:2], (200, b""))
        # a non-empty body under the empty digest is a mismatch
        self.assertEqual(self.put("/cas/" + EMPTY_SHA, b"x")[0], 400)
        self.assertEqual(self.get("/cas/" + EMPTY_SHA)[2], b"")
        self.assertStoreConsistent()

    def test_refused_large_body_still_gets_its_status(self):
        # A client without Expect: 100-continue (http.client, many HTTP
        # libraries) sends its whole body before it reads: a PUT refused from
        # its head alone must still get its status, not a reset connection.
        body = random_body(2 * MiB)
        d = sha256(body)
        cases = [
            ("/cas/" + d[:63], {}, 400),
            ("/ac/" + "g" * 64, {}, 400),
            ("/cas/" + d, {"Content-Encoding": "gzip"}, 415),
        ]
        problems = []
        for path, hdrs, want in cases:
            with self.case(problems, "http.client PUT %s %s" % (path[:12], hdrs)):
                s, _, b = self.put_status(path, body, hdrs)
                self.assertEqual(s, want, b)
        # curl (Expect: 100-continue) gets them all
        f = self.file(body)
        for path, hdrs, want in cases:
            args = ["-T", f] + [x for k, v in hdrs.items() for x in ("-H", "%s: %s" % (k, v))]
            s, _, _, _ = self.curl(*(args + [self.url(path)]))
            self.assertEqual(s, want, path)
        self.assertNothingStored()
        self.assertNoProblems(problems)

    def test_head_content_length_and_no_body(self):
        comp, rnd = text_body(3 * MiB + 11), random_body(MiB + 3)
        for body in (comp, rnd, b"y"):
            self.assertEqual(self.put("/cas/" + sha256(body), body)[0], 200)
        st = self.stats()
        self.assertLess(st["bytes"]["stored"], st["bytes"]["logical"])  # comp is compressed
        c = self.srv.conn()
        try:
            for body in (comp, rnd, b"y"):
                path = "/cas/" + sha256(body)
                for ae in ({}, {"Accept-Encoding": "identity"}):
                    s, h, b = self.req("HEAD", path, headers=ae, conn=c)
                    self.assertEqual((s, b), (200, b""))
                    # the body size, not the size of the compressed file
                    self.assertEqual(int(h["content-length"]), len(body))
                # a HEAD that sent a body would garble the next answer on this connection
                s, h, b = self.req("GET", path, conn=c)
                self.assertEqual((s, b), (200, body))
        finally:
            c.close()
        # raw socket: nothing at all follows the head of a HEAD answer
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) as sk:
            sk.sendall(b"HEAD /cas/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       % sha256(comp).encode())
            data = b""
            while True:
                chunk = sk.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"\r\ncontent-length: %d" % len(comp), head.lower())
        self.assertEqual(rest, b"")
        s, h, _, _ = self.curl("-I", self.url("/cas/" + sha256(comp)))
        self.assertEqual((s, int(h["content-length"])), (200, len(comp)))


class ActionCacheTest(NativeTest):

    def test_opaque_values_and_overwrite(self):
        k = ac_key("compile foo.c")
        v1 = b"\x0a\x20" + os.urandom(200) + b"\x00\xff"  # not the key's preimage
        v2 = text_body(2 * MiB + 1, seed=2)
        self.assertEqual(self.get("/ac/" + k)[0], 404)
        self.assertEqual(self.put("/ac/" + k, v1)[0], 200)
        s, h, b = self.get("/ac/" + k)
        self.assertEqual((s, b), (200, v1))
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": 1, "blobs": 1})
        self.assertEqual(files, {sha256(v1): v1})
        # the AC value is not content-addressed: it is not readable as CAS
        self.assertEqual(self.get("/cas/" + k)[0], 404)

        # overwrite with curl: the new value reads back, the old blob is gone
        s, _, _, _ = self.curl("-T", self.file(v2), self.url("/ac/" + k))
        self.assertEqual(s, 200)
        s, h, b, _ = self.curl(self.url("/ac/" + k))
        self.assertEqual((s, b), (200, v2))
        s, h, b = self.get("/ac/" + k)
        self.assertEqual((s, b), (200, v2))
        self.assertEqual(int(self.head("/ac/" + k)[1]["content-length"]), len(v2))
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": 1, "blobs": 1})
        self.assertEqual(list(files), [sha256(v2)])
        self.assertEqual(st["bytes"]["logical"], len(v2))
        self.assertEqual(st["bytes"]["referenced"], len(v2))
        # and back to a short value
        self.assertEqual(self.put("/ac/" + k, v1)[0], 200)
        self.assertEqual(self.get("/ac/" + k)[2], v1)
        self.assertEqual(kb(self.stats()), {"keys": 1, "blobs": 1})

    def test_instance_prefix(self):
        k = ac_key("link app")
        va, vb = b"result for /foo", b"result for no instance"
        self.assertEqual(self.put("/foo/ac/" + k, va)[0], 200)
        self.assertEqual(self.get("/ac/" + k)[0], 404)
        self.assertEqual(self.get("/bar/ac/" + k)[0], 404)
        self.assertEqual(self.put("/ac/" + k, vb)[0], 200)
        self.assertEqual(self.get("/foo/ac/" + k)[:3:2], (200, va))
        self.assertEqual(self.get("/ac/" + k)[:3:2], (200, vb))
        s, _, b, _ = self.curl(self.url("/foo/ac/" + k))
        self.assertEqual((s, b), (200, va))
        # deleting in one instance leaves the other alone
        self.assertIn(self.req("DELETE", "/foo/ac/" + k)[0], (200, 204))
        self.assertEqual(self.get("/foo/ac/" + k)[0], 404)
        self.assertEqual(self.get("/ac/" + k)[2], vb)
        self.assertEqual(self.put("/foo/ac/" + k, va)[0], 200)

        # the CAS is shared: a blob put through /foo/ is one entry, seen everywhere
        blob = text_body(50 * KiB, seed=3)
        d = sha256(blob)
        s, _, _, _ = self.curl("-T", self.file(blob), self.url("/foo/cas/" + d))
        self.assertEqual(s, 200)
        for p in ("/cas/", "/foo/cas/", "/bar/cas/", "/a.b-c_d/cas/"):
            s, _, b = self.get(p + d)
            self.assertEqual((s, b), (200, blob), p)
        self.assertEqual(self.put("/bar/cas/" + d, blob)[0], 200)
        st, files = self.assertStoreConsistent()
        # keys: ac, foo's ac, one cas key; blobs: va, vb, blob
        self.assertEqual(kb(st), {"keys": 3, "blobs": 3})
        self.assertEqual(set(files), {sha256(va), sha256(vb), d})

    def test_doubled_slashes_read_as_one(self):
        """A base URL that ends in "/", joined with "/cas/...": "//cas/<hex>"
        is /cas/<hex> (as nginx and Go's ServeMux read it), not an S3 path
        with an empty bucket name (whose GET answered 200 with a bucket list)."""
        blob = b"built through a base URL with a trailing slash"
        d = sha256(blob)
        k = ac_key("doubled slashes")
        self.assertEqual(self.put("//cas/" + d, blob)[0], 200)
        self.assertEqual(self.put("/foo//ac//" + k, b"v")[0], 200)
        for p in ("/cas/" + d, "//cas/" + d, "/cas//" + d, "///foo//cas/" + d):
            self.assertEqual(self.get(p)[:3:2], (200, blob), p)
        self.assertEqual(self.get("/foo/ac/" + k)[:3:2], (200, b"v"))
        self.assertEqual(self.get("//ac/" + k)[0], 404)  # another instance's key
        self.assertIn(self.req("DELETE", "//foo/ac/" + k)[0], (200, 204))
        self.assertEqual(self.get("/foo/ac/" + k)[0], 404)
        self.assertEqual(self.get("//cas/" + "0" * 64)[0], 404)
        s, _, b = self.get("//cas/xyz")
        self.assertEqual(s, 400, b)


# ---- Range --------------------------------------------------------------------

class RangeTest(NativeTest):

    SIZE = 2 * MiB + 12345  # three 1 MiB frames when compressed

    def ranges(self, n):
        F = MiB
        return [
            ("bytes=0-0", 0, 0),
            ("bytes=0-99", 0, 99),
            ("bytes=100-199", 100, 199),
            ("bytes=%d-%d" % (F - 6, F + 5), F - 6, F + 5),       # crosses frame 1|2
            ("bytes=%d-%d" % (F - 1, F - 1), F - 1, F - 1),       # last byte of frame 1
            ("bytes=%d-%d" % (F, F), F, F),                       # first byte of frame 2
            ("bytes=%d-%d" % (F, 2 * F - 1), F, 2 * F - 1),       # exactly frame 2
            ("bytes=1000-%d" % (2 * F + 5000), 1000, 2 * F + 5000),  # > 1 MiB, two boundaries
            ("bytes=%d-" % (2 * F - 100), 2 * F - 100, n - 1),    # a-: to the end
            ("bytes=0-", 0, n - 1),
            ("bytes=-500", n - 500, n - 1),                       # -n: the last n
            ("bytes=-%d" % (n - F + 10), F - 10, n - 1),          # suffix crossing a boundary
            ("bytes=%d-" % (n - 1), n - 1, n - 1),                # last byte
            ("bytes=5-%d" % (n + 1000), 5, n - 1),                # past the end: clipped
            ("bytes=-%d" % (2 * n), 0, n - 1),                    # suffix longer than the body
        ]

    def unsatisfiable(self, n):
        return ["bytes=%d-" % n, "bytes=%d-%d" % (n, n + 10), "bytes=%d-" % (n + 1000),
                "bytes=%d-%d" % (10 * n, 10 * n + 1)]

    def check_ranges(self, body, compressed):
        n = len(body)
        d = sha256(body)
        self.assertEqual(self.put("/cas/" + d, body)[0], 200)
        data = self.blob_files()[d]
        self.assertEqual(data.startswith(ZSTD_MAGIC), compressed, "stored as expected codec")
        c = self.srv.conn()
        try:
            for hdr, a, b in self.ranges(n):
                for extra in ({}, {"Accept-Encoding": "zstd"}):
                    h_ = dict(extra, Range=hdr)
                    s, h, got = self.req("GET", "/cas/" + d, headers=h_, conn=c)
                    self.assertEqual(s, 206, hdr)
                    self.assertEqual(h.get("content-range"), "bytes %d-%d/%d" % (a, b, n), hdr)
                    self.assertEqual(int(h["content-length"]), b - a + 1, hdr)
                    self.assertNotIn("content-encoding", h, hdr)  # ranges are of the body
                    self.assertTrue(got == body[a:b + 1], "%s: wrong bytes" % hdr)
            for hdr in self.unsatisfiable(n):
                s, h, got = self.req("GET", "/cas/" + d, headers={"Range": hdr}, conn=c)
                self.assertEqual(s, 416, hdr)
                self.assertEqual(h.get("content-range"), "bytes */%d" % n, hdr)
            # ranges curl asks for (-r), and one on the AC side
            for r, a, b in (("0-9", 0, 9), ("%d-%d" % (MiB - 3, MiB + 3), MiB - 3, MiB + 3),
                            ("-777", n - 777, n - 1), ("%d-" % (n - 5), n - 5, n - 1)):
                s, h, got, _ = self.curl("-r", r, self.url("/cas/" + d))
                self.assertEqual((s, h.get("content-range")),
                                 (206, "bytes %d-%d/%d" % (a, b, n)), r)
                self.assertTrue(got == body[a:b + 1], "curl -r %s: wrong bytes" % r)
            s, h, got, _ = self.curl("-r", "%d-" % n, self.url("/cas/" + d))
            self.assertEqual((s, h.get("content-range")), (416, "bytes */%d" % n))
            self.assertEqual(got, b"range not satisfiable\n")  # one line of text, as errors are
            # headers that are not one usable range: the whole body, 200
            for hdr in ("bytes=0-1,5-6", "bytes=abc", "items=0-5", "bytes=9-3"):
                s, h, got = self.req("GET", "/cas/" + d, headers={"Range": hdr}, conn=c)
                self.assertEqual(s, 200, hdr)
                self.assertTrue(got == body, hdr)
        finally:
            c.close()
        # the AC serves ranges the same way
        k = ac_key("range")
        self.assertEqual(self.put("/ac/" + k, body)[0], 200)
        s, h, got = self.get("/ac/" + k, headers={"Range": "bytes=%d-%d" % (MiB - 2, MiB + 1)})
        self.assertEqual((s, got), (206, body[MiB - 2:MiB + 2]))
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": 2, "blobs": 1})
        self.assertEqual(files[d], data)  # reads changed nothing on disk

    def test_if_range_without_a_validator_answers_the_whole_body(self):
        """The native API sends no ETag nor Last-Modified, so no If-Range
        can name the version a client holds: the whole body comes back,
        as RFC 9110 says, and never bytes of another version."""
        body = random_body(100000)
        k = ac_key("if-range")
        self.assertEqual(self.put("/ac/" + k, body)[0], 200)
        s, h, got = self.get("/ac/" + k, headers={"Range": "bytes=0-9", "If-Range": '"x"'})
        self.assertEqual((s, got, h.get("content-range")), (200, body, None))
        s, h, got = self.get("/ac/" + k, headers={"Range": "bytes=0-9"})
        self.assertEqual((s, got), (206, body[:10]))

    def test_ranges_on_compressible_body(self):
        self.check_ranges(text_body(self.SIZE, seed=4), compressed=True)

    def test_ranges_on_random_body(self):
        self.check_ranges(random_body(self.SIZE), compressed=False)

    def test_range_on_small_bodies(self):
        for body in (text_body(5000, seed=5), random_body(5000), b"z"):
            d = sha256(body)
            self.assertEqual(self.put("/cas/" + d, body)[0], 200)
            n = len(body)
            s, h, got = self.get("/cas/" + d, headers={"Range": "bytes=0-1"})
            self.assertEqual((s, got, h.get("content-range")),
                             (206, body[:2], "bytes 0-%d/%d" % (min(1, n - 1), n)))
            s, h, _ = self.get("/cas/" + d, headers={"Range": "bytes=%d-" % n})
            self.assertEqual((s, h.get("content-range")), (416, "bytes */%d" % n))


# ---- zstd ---------------------------------------------------------------------

class ZstdTest(NativeTest):

    def test_get_with_accept_encoding_zstd(self):
        body = text_body(3 * MiB + 777, seed=6)
        d = sha256(body)
        self.assertEqual(self.put("/cas/" + d, body)[0], 200)
        on_disk = self.blob_files()[d]
        self.assertTrue(on_disk.startswith(ZSTD_MAGIC))
        for ae in ("zstd", "gzip, deflate, br, zstd", "ZSTD"):
            s, h, b = self.get("/cas/" + d, headers={"Accept-Encoding": ae})
            self.assertEqual(s, 200)
            self.assertEqual(h.get("content-encoding"), "zstd", ae)
            self.assertEqual(int(h["content-length"]), len(b))
            self.assertLess(len(b), len(body) // 4)
            self.assertIn("accept-encoding", h.get("vary", "").lower())
            self.assertEqual(b, on_disk, "the stored bytes, as they are")
            self.assertTrue(zstd_decompress(b) == body)
        # identity unless asked
        for hdrs in ({}, {"Accept-Encoding": "gzip, deflate"}, {"Accept-Encoding": "identity"}):
            s, h, b = self.get("/cas/" + d, headers=hdrs)
            self.assertEqual(s, 200)
            self.assertNotIn("content-encoding", h, hdrs)
            self.assertTrue(b == body, hdrs)
        # curl: raw zstd with the header, and --compressed decodes it itself
        s, h, b, _ = self.curl("-H", "Accept-Encoding: zstd", self.url("/cas/" + d))
        self.assertEqual((s, h.get("content-encoding")), (200, "zstd"))
        self.assertTrue(zstd_decompress(b) == body)
        s, h, b, _ = self.curl("--compressed", self.url("/cas/" + d))
        self.assertEqual((s, h.get("content-encoding")), (200, "zstd"))
        self.assertTrue(b == body)
        s, h, b, _ = self.curl(self.url("/cas/" + d))
        self.assertNotIn("content-encoding", h)
        self.assertTrue(b == body)
        # the same through the AC
        k = ac_key("zstd")
        self.assertEqual(self.put("/ac/" + k, body)[0], 200)
        s, h, b = self.get("/ac/" + k, headers={"Accept-Encoding": "zstd"})
        self.assertEqual((s, h.get("content-encoding"), b), (200, "zstd", on_disk))

    def test_a_blob_damaged_in_its_first_frame_cuts_the_answer_at_once(self):
        """A zstd blob too large to be decoded before the answer starts,
        damaged in its first frame: the answer is cut at its first byte there
        and then, not left open (its headers sent) until the connection
        timeout; the blob is quarantined, so the next GET is a 404."""
        body = text_body(3 * MiB + 777, seed=8)
        d = sha256(body)
        self.assertEqual(self.put("/cas/" + d, body)[0], 200)
        with open(os.path.join(self.srv.data, "blobs", d[:2], d), "r+b") as f:
            f.seek(100)
            x = f.read(1)
            f.seek(100)
            f.write(bytes([x[0] ^ 0x40]))
        c = self.srv.conn(timeout=30)  # well under the server's connection timeout (120 s)
        try:
            c.request("GET", "/cas/" + d)
            r = c.getresponse()
            self.assertEqual(r.status, 200)  # (sent before the first frame is read)
            with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
                r.read()
        except TimeoutError:
            self.fail("the answer was left open instead of cut")
        finally:
            c.close()
        self.assertEqual(self.get("/cas/" + d)[0], 404)

    def test_zstd_refused_with_q0_gets_identity(self):
        body = text_body(MiB + 1, seed=7)
        d = sha256(body)
        self.assertEqual(self.put("/cas/" + d, body)[0], 200)
        # RFC 9110 12.5.3: a qvalue of 0 means "not acceptable"
        for ae in ("zstd;q=0", "gzip, zstd;q=0", "zstd; q=0.0"):
            s, h, b = self.get("/cas/" + d, headers={"Accept-Encoding": ae})
            self.assertEqual(s, 200)
            self.assertNotIn("content-encoding", h, ae)
            self.assertTrue(b == body, ae)

    def test_incompressible_body_is_identity_even_with_zstd(self):
        body = random_body(2 * MiB + 1)
        d = sha256(body)
        self.assertEqual(self.put("/cas/" + d, body)[0], 200)
        self.assertEqual(self.blob_files()[d], body)  # stored raw
        s, h, b = self.get("/cas/" + d, headers={"Accept-Encoding": "zstd"})
        self.assertEqual(s, 200)
        self.assertNotIn("content-encoding", h)
        self.assertTrue(b == body)
        s, h, b, _ = self.curl("--compressed", self.url("/cas/" + d))
        self.assertEqual(s, 200)
        self.assertTrue(b == body)

    def test_put_with_content_encoding_zstd(self):
        text = text_body(2 * MiB + 99, seed=8)
        rnd = random_body(MiB + 1)
        small = text_body(300 * KiB, seed=9)
        cases = [
            # (what, client, path, body on the wire, decoded body)
            ("text, 2 MiB", "http.client", "/cas/" + sha256(text), zstd_compress(text), text),
            # zstd cannot shrink random bytes; the server stores them raw
            ("random, 1 MiB + 1", "curl", "/cas/" + sha256(rnd), zstd_compress(rnd), rnd),
            ("small", "curl", "/cas/" + sha256(b"tiny"), zstd_compress(b"tiny"), b"tiny"),
            # several concatenated zstd frames are one valid zstd stream
            ("two frames", "http.client", "/cas/" + sha256(small),
             zstd_compress(small[:1000]) + zstd_compress(small[1000:]), small),
            # AC values are stored decoded too
            ("ac value", "http.client", "/ac/" + ac_key("zstd-ac"), zstd_compress(b"ac value"),
             b"ac value"),
        ]
        stored, problems = 0, []
        for what, client, path, wire, body in cases:
            with self.case(problems, what):
                if client == "curl":
                    s, _, b, _ = self.curl("-T", self.file(wire), "-H", "Content-Encoding: zstd",
                                           self.url(path))
                else:
                    s, _, b = self.put(path, wire, headers={"Content-Encoding": "zstd"})
                self.assertEqual(s, 200, b)
                stored += 1
                s, h, got = self.get(path)
                self.assertEqual(s, 200)
                self.assertNotIn("content-encoding", h)
                self.assertTrue(got == body, "%s: decoded body differs" % what)
                files = self.blob_files()
                self.assertIn(sha256(body), files)
                if body is rnd:
                    self.assertEqual(files[sha256(rnd)], rnd)
        self.assertNoProblems(problems)
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": stored, "blobs": stored})
        self.assertEqual(stored, len(cases))
        self.assertEqual(st["bytes"]["logical"], sum(len(c[4]) for c in cases))

    def test_bad_zstd_uploads_store_nothing(self):
        body = text_body(MiB + 500, seed=10)
        z = zstd_compress(body)
        other = text_body(1000, seed=11)
        cases = [
            # decoded body does not hash to the name
            ("/cas/" + sha256(other), z, "zstd", 400),
            # the name is the digest of the decoded body, not of the compressed bytes
            ("/cas/" + sha256(z), z, "zstd", 400),
            # not zstd at all
            ("/cas/" + sha256(body), b"this is not zstd at all\n" * 200, "zstd", 400),
            ("/ac/" + ac_key("garbage"), b"\x00\x01garbage" * 100, "zstd", 400),
            # truncated stream
            ("/cas/" + sha256(body), z[:len(z) // 2], "zstd", 400),
            ("/ac/" + ac_key("trunc"), z[:-3], "zstd", 400),
            # an encoding the server does not decode (small bodies: see
            # CasTest.test_refused_large_body_still_gets_its_status)
            ("/cas/" + sha256(other), other, "gzip", 415),
            ("/ac/" + ac_key("br"), other, "br", 415),
        ]
        for path, data, ce, want in cases:
            s, _, b = self.put(path, data, headers={"Content-Encoding": ce})
            self.assertEqual(s, want, (path, ce, b))
            self.assertEqual(self.get(path)[0], 404, path)
        s, _, _, _ = self.curl("-T", self.file(b"garbage" * 1000), "-H",
                               "Content-Encoding: zstd", self.url("/cas/" + sha256(body)))
        self.assertEqual(s, 400)
        s, _, _, _ = self.curl("-T", self.file(body), "-H", "Content-Encoding: gzip",
                               self.url("/cas/" + sha256(body)))
        self.assertEqual(s, 415)
        s, _, _, _ = self.curl("-T", self.file(other), "-H", "Content-Encoding: gzip",
                               self.url("/cas/" + sha256(other)))
        self.assertEqual(s, 415)
        self.assertNothingStored()


# ---- body sizes and dedup -------------------------------------------------------

class SizesTest(NativeTest):

    SIZES = [0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB + 1]

    def test_round_trip_sizes(self):
        bodies = []
        for n in self.SIZES:
            bodies.append(text_body(n, seed=n % 7))
            bodies.append(random_body(n))
        distinct = {sha256(b): b for b in bodies}
        c = self.srv.conn()
        try:
            for i, body in enumerate(bodies):
                d = sha256(body)
                if i % 2:  # half with curl, half with http.client
                    s, _, _, _ = self.curl("-T", self.file(body), self.url("/cas/" + d))
                else:
                    s, _, _ = self.req("PUT", "/cas/" + d, body, conn=c)
                self.assertEqual(s, 200, len(body))
            for body in bodies:
                d = sha256(body)
                s, h, got = self.req("GET", "/cas/" + d, conn=c)
                self.assertEqual(s, 200, len(body))
                self.assertEqual(int(h["content-length"]), len(body))
                self.assertTrue(got == body, "size %d differs" % len(body))
                s, h, got = self.req("GET", "/cas/" + d, headers={"Accept-Encoding": "zstd"},
                                     conn=c)
                if h.get("content-encoding") == "zstd":
                    got = zstd_decompress(got)
                self.assertTrue(got == body, "size %d differs (zstd)" % len(body))
                s, h, _ = self.req("HEAD", "/cas/" + d, conn=c)
                self.assertEqual(int(h["content-length"]), len(body))
                s, _, got, _ = self.curl(self.url("/cas/" + d))
                self.assertTrue(got == body, "curl: size %d differs" % len(body))
        finally:
            c.close()
        st, files = self.assertStoreConsistent()
        nonempty = {d: b for d, b in distinct.items() if b}
        # the empty blob may or may not be stored; every other body is one entry
        self.assertEqual(set(files) - {EMPTY_SHA}, set(nonempty))
        self.assertEqual(st["entries"]["blobs"], len(files))
        self.assertEqual(st["entries"]["keys"], len(files))
        self.assertEqual(st["bytes"]["logical"], sum(len(b) for b in nonempty.values()))
        self.assertEqual(st["bytes"]["referenced"], st["bytes"]["logical"])
        self.assertEqual(st["bytes"]["saved_by_dedup"], 0)
        self.assertGreater(st["bytes"]["saved_by_compression"], 0)
        for n in self.SIZES[2:]:
            t = text_body(n, seed=n % 7)
            self.assertTrue(files[sha256(t)].startswith(ZSTD_MAGIC), n)
            self.assertLess(len(files[sha256(t)]), n // 4)
        for b in bodies[1::2]:
            if b:
                self.assertEqual(files[sha256(b)], b)  # random bodies stored raw

    def test_dedup_one_blob_for_many_keys(self):
        for body in (text_body(MiB + 1234, seed=12), random_body(MiB + 1234)):
            d = sha256(body)
            before = self.stats()
            self.assertEqual(self.put("/ac/" + ac_key("one " + d), body)[0], 200)
            s, _, _, _ = self.curl("-T", self.file(body), self.url("/ac/" + ac_key("two " + d)))
            self.assertEqual(s, 200)
            self.assertEqual(self.put("/cas/" + d, body)[0], 200)
            self.assertEqual(self.put("/inst/ac/" + ac_key("one " + d), body)[0], 200)
            st, files = self.assertStoreConsistent()
            self.assertEqual(st["entries"]["keys"] - before["entries"]["keys"], 4)
            self.assertEqual(st["entries"]["blobs"] - before["entries"]["blobs"], 1)
            self.assertEqual(st["bytes"]["logical"] - before["bytes"]["logical"], len(body))
            self.assertEqual(st["bytes"]["referenced"] - before["bytes"]["referenced"],
                             4 * len(body))
            self.assertEqual(st["bytes"]["saved_by_dedup"] - before["bytes"]["saved_by_dedup"],
                             3 * len(body))
            self.assertIn(d, files)
            for p in ("/ac/" + ac_key("one " + d), "/ac/" + ac_key("two " + d), "/cas/" + d,
                      "/inst/ac/" + ac_key("one " + d)):
                self.assertTrue(self.get(p)[2] == body, p)
        st = self.stats()
        self.assertEqual(kb(st), {"keys": 8, "blobs": 2})
        self.assertGreater(st["bytes"]["saved_by_dedup"], 0)
        # the blob stays while any key uses it
        body = text_body(MiB + 1234, seed=12)
        d = sha256(body)
        for p in ("/ac/" + ac_key("one " + d), "/ac/" + ac_key("two " + d), "/cas/" + d):
            self.assertIn(self.req("DELETE", p)[0], (200, 204))
            self.assertIn(d, self.blob_files())
        self.assertIn(self.req("DELETE", "/inst/ac/" + ac_key("one " + d))[0], (200, 204))
        st, files = self.assertStoreConsistent()
        self.assertNotIn(d, files)
        self.assertEqual(kb(st), {"keys": 4, "blobs": 1})


# ---- Expect: 100-continue ------------------------------------------------------------

class ExpectContinueTest(NativeTest):

    def test_curl_put_with_expect_100_continue(self):
        body = random_body(2 * MiB)
        d = sha256(body)
        path = self.file(body)
        s, _, _, err = self.curl("-v", "-T", path, self.url("/cas/" + d))
        self.assertEqual(s, 200, err[-2000:])
        self.assertIn("Expect: 100-continue", err)
        self.assertIn("HTTP/1.1 100 Continue", err)
        s, _, b, _ = self.curl(self.url("/cas/" + d))
        self.assertTrue(b == body)
        # compressible, to the AC
        text = text_body(2 * MiB, seed=13)
        s, _, _, err = self.curl("-v", "-T", self.file(text), self.url("/ac/" + ac_key("e")))
        self.assertEqual(s, 200)
        self.assertIn("Expect: 100-continue", err)
        self.assertTrue(self.get("/ac/" + ac_key("e"))[2] == text)
        # a mismatching body still gets its 400, and nothing is kept
        s, _, _, err = self.curl("-v", "-T", path, self.url("/cas/" + sha256(b"other")))
        self.assertEqual(s, 400)
        self.assertEqual(self.get("/cas/" + sha256(b"other"))[0], 404)
        st, files = self.assertStoreConsistent()
        self.assertEqual(kb(st), {"keys": 2, "blobs": 2})
        self.assertEqual(set(files), {d, sha256(text)})
        self.assertEqual(self.tmp_files(), [])


# ---- maximum body size ---------------------------------------------------------------

class MaxBodyTest(NativeTest):

    server_args = ("--max-body", "1M")

    def test_limit_in_status(self):
        self.assertEqual(self.stats()["limits"]["max_body"], MiB)

    def test_at_the_limit_is_accepted(self):
        body = random_body(MiB)
        self.assertEqual(self.put("/cas/" + sha256(body), body)[0], 200)
        self.assertTrue(self.get("/cas/" + sha256(body))[2] == body)
        self.assertEqual(kb(self.stats()), {"keys": 1, "blobs": 1})

    def test_content_length_over_limit_is_413(self):
        problems = []
        for body in (random_body(2 * MiB), random_body(MiB + 1)):
            with self.case(problems, "http.client PUT of %d bytes" % len(body)):
                s, _, b = self.put_status("/cas/" + sha256(body), body)
                self.assertEqual(s, 413, b)
            self.assertEqual(self.get("/cas/" + sha256(body))[0], 404)
        # curl sends Expect: 100-continue for this size and gets the 413 at once
        body = random_body(2 * MiB)
        s, _, _, err = self.curl("-T", self.file(body), self.url("/ac/" + ac_key("big")))
        self.assertEqual(s, 413, err)
        self.assertEqual(self.get("/ac/" + ac_key("big"))[0], 404)
        self.assertNothingStored()
        self.assertNoProblems(problems)

    def test_chunked_over_limit_is_413(self):
        body = random_body(2 * MiB)
        path = self.file(body)
        with open(path, "rb") as f:
            s, _, _, err = self.curl("-H", "Transfer-Encoding: chunked", "-T", "-",
                                     self.url("/cas/" + sha256(body)), stdin=f)
        self.assertEqual(s, 413, err)
        self.assertEqual(self.get("/cas/" + sha256(body))[0], 404)
        # the same with http.client's own chunked encoding
        def chunks():
            for i in range(0, len(body), 256 * KiB):
                yield body[i:i + 256 * KiB]
        # (no length: http.client sends Transfer-Encoding: chunked itself)
        s, _, b = self.put("/ac/" + ac_key("chunked"), chunks())
        self.assertEqual(s, 413, b)
        self.assertEqual(self.get("/ac/" + ac_key("chunked"))[0], 404)
        self.assertNothingStored()
        # a chunked body under the limit is fine
        small = text_body(200 * KiB, seed=14)
        with open(self.file(small), "rb") as f:
            s, _, _, _ = self.curl("-H", "Transfer-Encoding: chunked", "-T", "-",
                                   self.url("/cas/" + sha256(small)), stdin=f)
        self.assertEqual(s, 200)
        self.assertTrue(self.get("/cas/" + sha256(small))[2] == small)
        self.assertEqual(kb(self.stats()), {"keys": 1, "blobs": 1})

    def test_limit_applies_to_decoded_zstd(self):
        body = text_body(2 * MiB, seed=15)
        z = zstd_compress(body)
        self.assertLess(len(z), MiB)  # small on the wire, too large decoded
        s, _, b = self.put("/cas/" + sha256(body), z, headers={"Content-Encoding": "zstd"})
        self.assertEqual(s, 413, b)
        self.assertEqual(self.get("/cas/" + sha256(body))[0], 404)
        self.assertNothingStored()


# ---- keep-alive ----------------------------------------------------------------------

class KeepAliveTest(NativeTest):

    def test_many_requests_on_one_connection(self):
        body = text_body(1500 * KiB, seed=16)
        d = sha256(body)
        miss = sha256(b"never stored")
        c = self.srv.conn()
        try:
            steps = [
                ("PUT", "/cas/" + d, body, {}, 200),
                ("GET", "/cas/" + d, None, {}, 200),
                ("GET", "/cas/" + miss, None, {}, 404),
                ("HEAD", "/cas/" + d, None, {}, 200),
                ("HEAD", "/cas/" + miss, None, {}, 404),
                ("PUT", "/ac/" + ac_key("ka"), b"value", {}, 200),
                ("GET", "/ac/" + ac_key("ka"), None, {}, 200),
                ("PUT", "/cas/" + miss, b"mismatch", {}, 400),
                ("GET", "/cas/" + d, None, {"Accept-Encoding": "zstd"}, 200),
                ("GET", "/cas/" + d, None, {"Range": "bytes=%d-%d" % (MiB - 1, MiB)}, 206),
                ("GET", "/cas/" + d, None, {"Range": "bytes=%d-" % len(body)}, 416),
                ("GET", "/cas/" + EMPTY_SHA, None, {}, 200),
                ("GET", "/status", None, {}, 200),
                ("GET", "/healthz", None, {}, 200),
                ("DELETE", "/ac/" + ac_key("ka"), None, {}, 204),
                ("GET", "/ac/" + ac_key("ka"), None, {}, 404),
                ("GET", "/cas/" + d, None, {}, 200),
            ]
            sock = None
            for method, path, data, hdrs, want in steps:
                s, h, b = self.req(method, path, data, hdrs, conn=c)
                step = (method, path, hdrs)
                if want == 204:
                    self.assertIn(s, (200, 204), step)
                else:
                    self.assertEqual(s, want, step)
                self.assertNotEqual(h.get("connection", "").lower(), "close", step)
                if sock is None:
                    sock = c.sock
                self.assertIsNotNone(c.sock, step)
                self.assertIs(c.sock, sock, "%s: a new connection was opened" % (step,))
                if method == "GET" and path == "/cas/" + d and not hdrs:
                    self.assertTrue(b == body)
        finally:
            c.close()
        self.assertEqual(kb(self.stats()), {"keys": 1, "blobs": 1})

    def test_curl_reuses_the_connection(self):
        a, b = text_body(100 * KiB, seed=17), random_body(100 * KiB)
        for x in (a, b):
            self.assertEqual(self.put("/cas/" + sha256(x), x)[0], 200)
        p = subprocess.run(
            ["curl", "--noproxy", "*", "-sS", "-v", "-o", "/dev/null", "-o", "/dev/null",
             "-o", "/dev/null", "-o", "/dev/null",
             self.url("/cas/" + sha256(a)), self.url("/cas/" + sha256(b"miss")),
             self.url("/cas/" + sha256(b)), self.url("/cas/" + sha256(a))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        err = p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(err.count("Connected to"), 1, err)
        self.assertGreaterEqual(err.count("Re-using existing connection"), 3, err)


# ---- operator endpoints --------------------------------------------------------------

class OpsTest(NativeTest):

    server_args = ("--max-size", "3G")

    def test_healthz_readyz(self):
        for path, word in (("/healthz", b"ok"), ("/readyz", b"ready")):
            s, h, b = self.get(path)
            self.assertEqual((s, b.strip()), (200, word))
            s, h, b = self.head(path)
            self.assertEqual((s, b), (200, b""))
            s, _, b, _ = self.curl(self.url(path))
            self.assertEqual((s, b.strip()), (200, word))

    def test_status_json(self):
        s, h, b = self.get("/status")
        self.assertEqual(s, 200)
        self.assertTrue(h["content-type"].startswith("application/json"))
        st = json.loads(b)
        version = subprocess.run([CAIRND, "--version"], stdout=subprocess.PIPE,
                                 timeout=10).stdout.decode().split()[-1]
        self.assertEqual(st["version"], version)
        self.assertTrue(st["ready"])
        self.assertEqual(kb(st), {"keys": 0, "blobs": 0})
        for k in ("stored", "logical", "referenced", "saved_by_dedup", "saved_by_compression"):
            self.assertEqual(st["bytes"][k], 0, k)
        lim = st["limits"]
        self.assertEqual(lim["max_size"], 3 << 30)
        self.assertEqual(lim["max_body"], 5 << 30)  # the default
        # 90% and 80% of max-size (to within integer rounding)
        self.assertLess(abs(lim["high_watermark_bytes"] - (3 << 30) * 90 // 100), 100)
        self.assertLess(abs(lim["low_watermark_bytes"] - (3 << 30) * 80 // 100), 100)
        # it follows what is stored
        body = text_body(MiB, seed=18)
        self.assertEqual(self.put("/cas/" + sha256(body), body)[0], 200)
        self.assertEqual(self.put("/ac/" + ac_key("s"), body)[0], 200)
        s, _, b, _ = self.curl(self.url("/status"))
        st = json.loads(b)
        self.assertEqual(kb(st), {"keys": 2, "blobs": 1})
        self.assertEqual(st["bytes"]["logical"], MiB)
        self.assertEqual(st["bytes"]["referenced"], 2 * MiB)
        self.assertEqual(st["bytes"]["saved_by_dedup"], MiB)
        self.assertEqual(st["bytes"]["stored"], len(self.blob_files()[sha256(body)]))
        self.assertEqual(st["bytes"]["saved_by_compression"], MiB - st["bytes"]["stored"])

    def test_ops_endpoints_refuse_other_methods_with_allow(self):
        for path in ("/healthz", "/readyz", "/status"):
            for method in ("POST", "PUT", "DELETE"):
                s, h, _ = self.req(method, path, b"x" if method != "DELETE" else None)
                self.assertEqual(s, 405, (method, path))
                # RFC 9110 15.5.6: a 405 answer MUST carry Allow
                self.assertIn("GET", h.get("allow", ""), (method, path, h))
        self.assertNothingStored()


class StopTest(NativeTest):
    """SIGTERM: what is in flight finishes, what comes after is told 503."""

    def test_requests_in_flight_finish_and_later_ones_get_503(self):
        """An upload under way when SIGTERM comes is finished and kept.  A
        request that comes meanwhile, on a new connection or on one kept
        alive, gets 503 in its API's form and Connection: close; readiness
        says 503, health 200.  cairnd then exits 0."""
        body = random_body(2 * MiB)
        digest = sha256(body)
        up = self.srv.conn(timeout=30)
        up.putrequest("PUT", "/cas/" + digest, skip_accept_encoding=True)
        up.putheader("Content-Length", str(len(body)))
        up.endheaders()
        up.send(body[:MiB])

        def in_flight():  # the scrape itself, and the upload once its headers are read
            return metric_value(scrape(self.srv), "cairn_http_requests_in_flight")
        self.assertTrue(wait_for(lambda: in_flight() == 2), in_flight())
        idle = self.srv.conn(timeout=10)
        self.assertEqual(self.req("GET", "/healthz", conn=idle)[0], 200)
        self.srv.proc.send_signal(signal.SIGTERM)

        def readyz():
            try:
                return self.req("GET", "/readyz", conn=self.srv.conn(timeout=5))[0]
            except OSError as e:  # (before: the connection was never taken up)
                return repr(e)
        self.assertTrue(wait_for(lambda: readyz() == 503), readyz())
        self.assertEqual(self.req("GET", "/healthz", conn=self.srv.conn(timeout=5))[0], 200)
        for conn in (self.srv.conn(timeout=5), idle):
            c = conn
            c.request("GET", "/cas/" + EMPTY_SHA)
            r = c.getresponse()
            self.assertEqual((r.status, r.read().strip()), (503, b"shutting down"))
            self.assertEqual(r.getheader("Connection"), "close")
            c.close()
        # an S3 PUT with its body: the answer comes once the body is read
        c = self.srv.conn(timeout=5)
        c.request("PUT", "/bucket/key", b"x" * 1000)
        r = c.getresponse()
        self.assertEqual(r.status, 503)
        self.assertIn(b"<Code>ServiceUnavailable</Code>", r.read())
        self.assertEqual(r.getheader("Connection"), "close")
        c.close()
        self.assertIsNone(self.srv.proc.poll())  # the upload holds the stop
        up.send(body[MiB:])
        r = up.getresponse()
        self.assertEqual(r.status, 200, r.read())
        up.close()
        self.assertEqual(self.srv.proc.wait(60), 0, self.srv.read_log()[-3000:])
        self.srv.restart()
        self.assertEqual(self.get("/cas/" + digest)[2], body)

    def test_an_upload_whose_client_went_away_holds_up_nothing(self):
        """A client that sends part of a body, or of its request's head,
        and closes: its request ends at once, not at the connection
        timeout, and a stop does not wait for it.  The part and the close
        reach cairnd together (it is stopped meanwhile), which
        libmicrohttpd's edge-triggered epoll alone never notices: it reads
        the part short and waits for an edge that never comes."""
        self.srv.close()
        self.srv = Server(["--connection-timeout", "600", "--shutdown-timeout", "600"])
        digest = sha256(b"y" * 1000000)
        head = ("PUT /cas/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nX-Pad: %s\r\n\r\n"
                % (digest, "p" * 3000)).encode()

        def send_and_close(data):
            s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
            s.sendall(data)
            s.close()
        self.srv.proc.send_signal(signal.SIGSTOP)
        try:
            send_and_close(head + b"y" * 200000)  # a part of the body
        finally:
            self.srv.proc.send_signal(signal.SIGCONT)
        for _ in range(8):  # heads without their ends (a third or so stuck before)
            send_and_close(head[:2000])
            send_and_close(head[:-10])

        def in_flight():  # the scrape itself, and the upload while it lasts
            return metric_value(scrape(self.srv), "cairn_http_requests_in_flight")
        self.assertTrue(wait_for(lambda: in_flight() == 1, timeout=30), in_flight())
        self.srv.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.srv.proc.wait(30), 0, self.srv.read_log()[-3000:])
        self.srv.restart()
        self.assertEqual(self.req("HEAD", "/cas/" + digest)[0], 404)
        self.assertEqual((stored_blobs(self.srv.data), tmp_files(self.srv.data)), ({}, []))

    def test_an_upload_that_pauses_is_not_taken_for_one_given_up(self):
        """A client that stops sending for a few seconds in the middle of
        a body, and then goes on, gets its upload stored."""
        body = random_body(MiB)
        digest = sha256(body)
        up = self.srv.conn(timeout=30)
        up.putrequest("PUT", "/cas/" + digest, skip_accept_encoding=True)
        up.putheader("Content-Length", str(len(body)))
        up.endheaders()
        up.send(body[:MiB // 2])
        time.sleep(3.5)  # longer than the watch thread's look at a still body
        up.send(body[MiB // 2:])
        r = up.getresponse()
        self.assertEqual(r.status, 200, r.read())
        up.close()
        self.assertEqual(self.get("/cas/" + digest)[2], body)


if __name__ == "__main__":
    unittest.main()
