"""The cold tier: cairnd nodes over one bucket of moto_server (the S3 emulator
on this machine) and of s3rver (from npm; it checks the access key and the
x-amz-content-sha256 header, which moto does not, though not SigV4
signatures), and a node over another cairnd, which checks them all.  Between a node and the S3 server
sits a small proxy that can fail on demand (500, 503, 403, very slow), for
the fault tests.  Everything on loopback, ports chosen at run time.

What is checked: what a node acknowledges reaches the tier; a node with an
empty folder (or the same node after its folder is wiped) reads every body
back through the tier, equal; the tier receives each body once; deletes
reach the tier; with the tier down, failing or slow, local hits are served,
writes are accepted, misses answer in time, and the queue drains once the
tier is back, across a kill -9 too."""
import collections
import hashlib
import http.client
import http.server
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

from harness import (ROOT, Server, close_checked, free_port, metric_value, random_seed, scrape,
                     sha256, wait_for)

KIB, MIB = 1024, 1024 * 1024
CREDS = {"AWS_ACCESS_KEY_ID": "tier-test", "AWS_SECRET_ACCESS_KEY": "tier-secret",
         "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_CONFIG_FILE": "/dev/null"}


HERE = os.path.dirname(os.path.abspath(__file__))
S3RVER = os.path.join(os.environ.get("CAIRN_JS_DEPS", os.path.join(HERE, "js-deps")),
                      "node_modules", ".bin", "s3rver")


def assert_drained(test, srv, timeout=60):
    """Waits until srv owes the tier nothing (blobs, records, packs)."""
    def done():
        t = status(srv)["tier"]
        return t["queue"] == 0 and t["packs_owed"] == 0
    test.assertTrue(wait_for(done, timeout=timeout, step=0.1),
                    "the tier's queue did not drain: %s" % status(srv)["tier"])


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def have_moto():
    return shutil.which("moto_server") is not None


def have_s3rver():
    return os.path.exists(S3RVER) and shutil.which("node") is not None


class Moto:
    """moto_server on a port (its data lives in memory: a restart empties it).
    moto takes any credentials and does not check signatures."""
    creds = CREDS

    def __init__(self, bucket):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen(["moto_server", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = wait_for(self.up, timeout=30)
        if not ok:
            self.stop()
            raise RuntimeError("moto_server did not start")
        self.client().create_bucket(Bucket=bucket)

    def up(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/")
            c.getresponse().read()
            c.close()
            return True
        except OSError:
            return False

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.creds["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.creds["AWS_SECRET_ACCESS_KEY"])

    def objects(self, bucket, prefix=""):
        """{name: size} of the bucket's objects under prefix."""
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                           Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["Size"]
        return out

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class S3rver(Moto):
    """s3rver (npm) on a port, data in a folder: it refuses access keys but
    its fixed S3RVER (the secret it does not check: s3rver 3 leaves SigV4
    unverified)."""
    creds = dict(CREDS, AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER")

    def __init__(self, bucket):
        import tempfile
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.dir = tempfile.mkdtemp(prefix="cairn-s3rver-")
        self.proc = subprocess.Popen(["node", S3RVER, "-d", self.dir, "-a", "127.0.0.1", "-p",
                                      str(self.port), "--silent", "--configure-bucket", bucket],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(self.up, timeout=30):
            self.stop()
            raise RuntimeError("s3rver did not start")

    def stop(self):
        Moto.stop(self)
        shutil.rmtree(self.dir, ignore_errors=True)


class FaultProxy:
    """Forwards requests to a backend, or fails them: mode is "ok", "down"
    (connection closed), "500", "503", "403", "slow" (answers after 30 s), or
    "flip" (the answer's body with one byte changed: at flip_at(body) if set,
    else in the middle), or "flip-up" (the request's body so changed on its
    way to the store), or "goog" (custom metadata answered as x-goog-meta-*,
    as GCS's XML API does), or "etag-other" (ETags of objects that are not
    their MD5s, as from a store that encrypts without saying; parts keep
    theirs), or "chunked" (bodies sent in chunks, without
    Content-Length), or "unsized-cut" (half the body, no Content-Length, and
    the connection closed: a body cut short that looks whole).  fail, when set, is
    asked first: fail(method, path) gives a status to answer with, or None.
    stall, when set, gives the seconds to pause half-way through an answer's
    body.  released has the time (monotonic) each delay or stall ended.
    tls, when given, is (certificate file, key file): the proxy answers over
    https, and counts in resumed the connections that resumed a session."""

    def __init__(self, backend_port, tls=None):
        self.mode = "ok"
        self.fail = None
        self.delay = None  # delay(method, path): seconds to wait before forwarding
        self.stall = None  # stall(method, path): seconds to pause half-way through the body
        self.cut = None  # cut(method, path): true to close the connection half-way through it
        self.ignore_range = False  # forward GETs without their Range (a server that ignores it)
        self.flip_at = None  # flip_at(body): the offset "flip" changes
        self.rewrite = None  # rewrite(method, path, name, value): an answer's header's value
        self.answer = None  # answer(method, path): (status, body) to answer with, else None
        self.released = []
        self.requests = 0
        self.paths = []
        self.headers = []  # (method, path, {lower-case name: value}) of each request
        self.connections = 0  # accepted (the proxy keeps them open, as S3 does)
        self.resumed = 0  # of those, over https: with an abbreviated handshake
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                proxy.connections += 1
                if tls:
                    self.request.do_handshake()
                    proxy.resumed += self.request.session_reused
                super().setup()

            def log_message(self, *a):
                pass

            def handle_any(self):
                proxy.requests += 1
                proxy.paths.append(self.command + " " + self.path)
                proxy.headers.append((self.command, self.path,
                                      dict((k.lower(), v) for k, v in self.headers.items())))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                mode = proxy.mode
                if proxy.delay:
                    wait = proxy.delay(self.command, self.path) or 0
                    time.sleep(wait)
                    if wait:
                        proxy.released.append(time.monotonic())
                injected = proxy.fail(self.command, self.path) if proxy.fail else None
                if injected:
                    mode = str(injected)
                canned = proxy.answer(self.command, self.path) if proxy.answer else None
                if canned:
                    self.send_response(canned[0])
                    self.send_header("Content-Length", str(len(canned[1])))
                    self.end_headers()
                    self.wfile.write(canned[1])
                    return
                if mode == "down":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "slow":
                    time.sleep(30)
                if mode in ("500", "503", "403"):
                    msg = b"<Error><Code>Injected</Code><Message>fault</Message></Error>"
                    self.send_response(int(mode))
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    pause = proxy.stall(self.command, self.path) if proxy.stall else 0
                    if self.command != "HEAD" and pause:
                        self.wfile.write(msg[:len(msg) // 2])
                        self.wfile.flush()
                        time.sleep(pause)
                        msg = msg[len(msg) // 2:]
                    if self.command != "HEAD":
                        self.wfile.write(msg)
                    return
                if mode == "flip-up" and body:
                    body = body[:n // 2] + bytes([body[n // 2] ^ 1]) + body[n // 2 + 1:]
                c = http.client.HTTPConnection("127.0.0.1", backend_port, timeout=60)
                headers = dict(self.headers.items())  # Host too: it is signed
                if proxy.ignore_range:
                    headers = {k: v for k, v in headers.items() if k.lower() != "range"}
                try:
                    c.request(self.command, self.path, body=body if n else None, headers=headers)
                    r = c.getresponse()
                    data = r.read()
                except ConnectionError:  # (the backend is gone: the test is over)
                    self.close_connection = True
                    return
                if mode == "flip" and data:
                    at = proxy.flip_at(data) if proxy.flip_at else len(data) // 2
                    data = data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "server", "date"):
                        if mode == "goog" and k.lower().startswith("x-amz-meta-"):
                            k = "x-goog-meta-" + k[11:]
                        if proxy.rewrite:
                            v = proxy.rewrite(self.command, self.path, k.lower(), v)
                        if mode == "etag-other" and k.lower() == "etag" and "?" not in self.path:
                            v = '"%s"' % hashlib.md5(v.encode()).hexdigest()
                        self.send_header(k, v)
                if mode == "unsized-cut" and self.command == "GET" and data:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    c.close()
                    return
                if mode == "chunked" and self.command == "GET" and data:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(data), 256 * KIB):
                        piece = data[i:i + 256 * KIB]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                    c.close()
                    return
                self.send_header("Content-Length", str(len(data) if self.command != "HEAD"
                                                       else r.getheader("Content-Length", "0")))
                self.end_headers()
                pause = proxy.stall(self.command, self.path) if proxy.stall else 0
                if self.command != "HEAD" and proxy.cut and proxy.cut(self.command, self.path):
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif self.command != "HEAD" and pause:
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    time.sleep(pause)
                    proxy.released.append(time.monotonic())
                    try:
                        self.wfile.write(data[len(data) // 2:])
                    except ConnectionError:
                        pass  # (cairnd gave up on the answer meanwhile)
                elif self.command != "HEAD":
                    try:
                        self.wfile.write(data)
                    except ConnectionError:
                        pass  # (cairnd gave up on the answer meanwhile)
                c.close()

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = handle_any

        class Threading(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Threading(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
            self.url = "https://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def libcurl_version():
    """The version of the libcurl cairnd links, as a tuple of ints."""
    import ctypes
    lib = ctypes.CDLL("libcurl.so.4")
    lib.curl_version.restype = ctypes.c_char_p
    v = lib.curl_version().decode().split()[0].split("/")[1]  # "libcurl/7.88.1 ..."
    return tuple(int(x) for x in v.split(".")[:3] if x.isdigit())


def at_once(fn, args, timeout=90):
    """Calls fn(a) for each a of args, each on its own thread, all at once;
    returns once all have returned (or timeout seconds each)."""
    threads = [threading.Thread(target=fn, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


def status(srv):
    c = srv.conn()
    c.request("GET", "/status")
    st = json.loads(c.getresponse().read())
    c.close()
    return st


def request(srv, method, path, body=None, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def waiting_for_tier(srv):
    """The node's cairn_tier_waiting_requests gauge."""
    return int(metric_value(scrape(srv), "cairn_tier_waiting_requests"))


def job_done(srv, job, timeout=60):
    """Waits for admin job `job` of srv to end: its final state, or None."""
    end = time.time() + timeout
    while True:
        j = json.loads(request(srv, "GET", "/admin/jobs/%d" % job)[2])
        if j["state"] != "running":
            return j
        if time.time() > end:
            return None
        time.sleep(0.05)


@unittest.skipUnless(have_moto(), "moto_server is not installed")
class TierTest(unittest.TestCase):
    """Over moto_server."""
    BUCKET = "fleet"
    PREFIX = "cache"
    BACKEND = Moto

    def setUp(self):
        self.rng = random.Random(random_seed())
        self.moto = self.BACKEND(self.BUCKET)
        self.addCleanup(self.moto.stop)
        self.proxy = FaultProxy(self.moto.port)
        self.addCleanup(self.proxy.stop)
        self.dirs = []

    def tearDown(self):
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)

    def node(self, data=None, extra=(), endpoint=None, env=None):
        srv = Server(["--tier", "s3://%s/%s" % (self.BUCKET, self.PREFIX), "--tier-endpoint",
                      endpoint or self.proxy.url, "--tier-timeout", "3s"] + list(extra),
                     data=data, env=dict(self.moto.creds, **(env or {})))
        self.addCleanup(close_checked, self, srv, True)
        return srv

    def folder(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="cairn-tier-")
        self.dirs.append(d)
        return d

    def tls_proxy(self):
        """A FaultProxy over https, with a self-signed certificate, in front of moto."""
        d = self.folder()
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        tls = FaultProxy(self.moto.port, tls=(cert, key))
        self.addCleanup(tls.stop)
        return tls

    def drained(self, srv, timeout=60):
        assert_drained(self, srv, timeout)

    def bodies(self, n):
        """n bodies of 1 byte to 3 MiB: random and text-like."""
        out = []
        for i in range(n):
            size = self.rng.choice([1, 100, 4 * KIB, 20 * KIB, 300 * KIB, 3 * MIB])
            if i % 2:
                b = self.rng.randbytes(size)
            else:
                b = (b"line %d of a log\n" % i * (size // 10 + 1))[:size]
            out.append(b)
        return out

    def write(self, srv, bodies):
        """Each body under /cas, and under two /ac keys (duplicates); an S3
        bucket with one object and its metadata.  Returns {path: body}."""
        want = {}
        for i, b in enumerate(bodies):
            d = sha256(b)
            self.assertEqual(request(srv, "PUT", "/cas/" + d, b)[0], 200)
            want["/cas/" + d] = b
            for j in range(2):
                k = sha256(b"ac %d %d" % (i, j))
                self.assertEqual(request(srv, "PUT", "/ac/" + k, b)[0], 200)
                want["/ac/" + k] = b
        self.assertEqual(request(srv, "PUT", "/shared-bucket")[0], 200)
        self.assertEqual(request(srv, "PUT", "/shared-bucket/dir/obj.txt", bodies[0],
                                 {"x-amz-meta-owner": "node-a", "Content-Type": "text/x-test"})[0],
                         200)
        want["/shared-bucket/dir/obj.txt"] = bodies[0]
        return want

    def read_all(self, srv, want):
        for path, body in want.items():
            st, h, got = request(srv, "GET", path)
            self.assertEqual((st, sha256(got)), (200, sha256(body)), path)
        st, h, _ = request(srv, "HEAD", "/shared-bucket/dir/obj.txt")
        self.assertEqual(st, 200)
        self.assertEqual(h.get("x-amz-meta-owner"), "node-a")
        self.assertEqual(h.get("content-type"), "text/x-test")

    def live_records(self):
        """The tier's key records but for empty ones (a delete's)."""
        return {k: v for k, v in self.moto.objects(self.BUCKET, self.PREFIX + "/keys/").items()
                if v > 0}

    def change_in_tier(self, body, change):
        """Rewrites the tier's object of body's blob as change(bytearray of
        it) leaves it, metadata kept (a damaged object)."""
        name = "%s/blobs/%s" % (self.PREFIX, sha256(body))
        s3 = self.moto.client()
        obj = s3.get_object(Bucket=self.BUCKET, Key=name)
        data = bytearray(obj["Body"].read())
        change(data, obj["Metadata"])
        s3.put_object(Bucket=self.BUCKET, Key=name, Body=bytes(data), Metadata=obj["Metadata"])

    def blobs_in_tier(self):
        return {k.rsplit("/", 1)[1]: v
                for k, v in self.moto.objects(self.BUCKET, self.PREFIX + "/blobs/").items()}

    def test_write_wipe_read_and_a_second_node(self):
        data_a = self.folder()
        a = self.node(data=data_a)
        bodies = self.bodies(12)
        bodies += bodies[:6]  # half of the second half are duplicates
        want = self.write(a, bodies)
        self.drained(a)
        distinct = {sha256(b) for b in bodies}
        self.assertEqual(set(self.blobs_in_tier()), distinct)
        st = status(a)["tier"]
        self.assertEqual(st["uploads"], len(distinct), st)

        # wipe A's folder: everything comes back from the tier
        self.assertIn(a.stop(), (0,))
        shutil.rmtree(data_a)
        os.mkdir(data_a)
        a.start()
        self.read_all(a, want)
        st = status(a)["tier"]
        self.assertEqual(st["uploads"], 0, "a node re-uploaded what it read from the tier")
        self.assertEqual(st["corrupt"], 0)
        self.assertGreaterEqual(st["hits"], len(want))

        # a second node, its own empty folder, the same tier
        b = self.node()
        self.read_all(b, want)
        time.sleep(1.5)
        self.assertEqual(status(b)["tier"]["uploads"], 0)
        self.assertEqual(set(self.blobs_in_tier()), distinct, "the tier got a blob twice")

        # a third node writes a body the tier has: it asks, and uploads nothing
        c = self.node()
        self.assertEqual(request(c, "PUT", "/ac/" + sha256(b"on c"), bodies[3])[0], 200)
        self.drained(c)
        self.assertEqual(status(c)["tier"]["uploads"], 0)
        self.assertEqual(status(c)["tier"]["already_there"], 1)
        self.assertEqual(set(self.blobs_in_tier()), distinct)

    def test_delete_reaches_the_tier(self):
        a, b = self.node(), self.node()
        key = "/ac/" + sha256(b"to delete")
        self.assertEqual(request(a, "PUT", key, b"soon gone")[0], 200)
        self.drained(a)
        self.assertEqual(request(b, "GET", key)[2], b"soon gone")
        self.assertEqual(request(a, "DELETE", key)[0], 204)
        self.assertEqual(request(a, "GET", key)[0], 404)  # not resurrected from the tier
        self.drained(a)
        c = self.node()
        self.assertEqual(request(c, "GET", key)[0], 404)

    def test_a_listing_shows_the_fleets_keys(self):
        """An S3 listing through a node shows the keys the fleet wrote, not
        only those it holds: a node with an empty folder lists what another
        wrote, page by page and by folders, in S3's order and with the sizes,
        ETags and dates the writer lists; a key deleted elsewhere is gone
        from it, a key evicted here is still listed, and aws-cli copies the
        whole bucket down through it."""
        import boto3
        a = self.node()
        self.assertEqual(request(a, "PUT", "/listed")[0], 200)
        names = ["dir/a.txt", "dir/b~x", "dir/sub/c", "dir-x", "dir.y", "z z", "\u00fc/\u00e7",
                 "top", "a/b/c/d", "dir/sub/d.tar.gz"] + ["many/k%02d.bin" % i for i in range(40)]
        bodies = {}
        for i, n in enumerate(names):
            bodies[n] = self.rng.randbytes([0, 10, 3000, 100 * KIB][i % 4])
            self.assertEqual(request(a, "PUT", "/listed/" + urllib.parse.quote(n), bodies[n],
                                     {"x-amz-meta-n": str(i)})[0], 200)
        self.drained(a)

        def client(srv):
            return boto3.client("s3", endpoint_url=srv.url, region_name="us-east-1",
                                aws_access_key_id="any", aws_secret_access_key="any")

        def listing(srv, **kw):
            keys, prefixes = [], []
            for page in client(srv).get_paginator("list_objects_v2").paginate(
                    Bucket="listed", PaginationConfig={"PageSize": 5}, **kw):
                keys += [(o["Key"], o["Size"], o["ETag"], o["LastModified"])
                         for o in page.get("Contents", [])]
                prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            return keys, prefixes

        b = self.node(extra=["--tier-revalidate", "1s"])
        self.assertEqual(request(b, "GET", "/listed/top")[2], bodies["top"])  # one held by b
        whole = listing(a)
        self.assertEqual(sorted(k for k, *_ in whole[0]), sorted(names))
        self.assertEqual([k for k, *_ in whole[0]], sorted(names, key=lambda n: n.encode()))
        self.assertEqual(listing(b), whole)
        # a page of them all through a fresh node: the records of the small
        # ones from a's packs, a few requests for dozens of keys
        fresh, seen = self.node(), len(self.proxy.paths)
        page = client(fresh).list_objects_v2(Bucket="listed")
        self.assertEqual([(o["Key"], o["Size"], o["ETag"], o["LastModified"])
                          for o in page["Contents"]], whole[0])
        self.assertLess(len(self.proxy.paths) - seen, len(names) // 2, self.proxy.paths[seen:])
        for kw in ({"Delimiter": "/"}, {"Prefix": "dir/", "Delimiter": "/"},
                   {"Prefix": "many/"}, {"StartAfter": "dir/sub/c"}):
            self.assertEqual(listing(b, **kw), listing(a, **kw), kw)
        v1 = client(b).list_objects(Bucket="listed", Delimiter="/", Marker="dir")
        self.assertEqual([o["Key"] for o in v1["Contents"]],
                         ["dir-x", "dir.y", "top", "z z"])
        self.assertEqual([p["Prefix"] for p in v1["CommonPrefixes"]], ["dir/", "many/", "\u00fc/"])

        # a node that cannot hold them all (it evicts what it read first)
        d = self.node(extra=["--max-size", "250K"])
        for n in names:
            self.assertEqual(request(d, "GET", "/listed/" + urllib.parse.quote(n))[2], bodies[n])
        self.assertTrue(wait_for(lambda: status(d)["entries"]["keys"] < len(names)), status(d))
        self.assertEqual(listing(d), whole)

        # the tier hanging: a listing is a 503 after the tier's timeout (not
        # the keys held here alone, which aws s3 sync --delete would take for
        # all), and for a timeout after, at once
        self.proxy.mode = "slow"
        for took_max in (6, 1):
            t0 = time.monotonic()
            st, _, got = request(b, "GET", "/listed?list-type=2")
            self.assertEqual(st, 503, got)
            self.assertIn(b"<Code>ServiceUnavailable</Code>", got)
            self.assertLess(time.monotonic() - t0, took_max)
        self.proxy.mode = "ok"
        self.assertTrue(wait_for(lambda: request(b, "GET", "/listed?list-type=2")[0] == 200,
                                 timeout=10))
        self.assertEqual(listing(b), whole)

        # deleted through a: gone from b's listing too
        self.assertEqual(request(a, "DELETE", "/listed/dir/a.txt")[0], 204)
        self.drained(a)
        del bodies["dir/a.txt"]
        self.assertEqual(sorted(k for k, *_ in listing(b)[0]), sorted(bodies))
        # deleted through a while b holds a copy: b's listing asks for a
        # check of it, as a read would, and lists it no more once that found
        # the delete
        self.assertEqual(request(a, "DELETE", "/listed/top")[0], 204)
        self.drained(a)
        del bodies["top"]
        self.assertTrue(wait_for(lambda: "top" not in [k for k, *_ in listing(b)[0]],
                                 timeout=20))
        self.assertEqual(sorted(k for k, *_ in listing(b)[0]), sorted(bodies))
        self.assertEqual(request(b, "GET", "/listed/top")[0], 404)
        # deleted through b (which never held it): gone at once
        self.assertEqual(request(b, "DELETE", "/listed/dir.y")[0], 204)
        del bodies["dir.y"]
        self.assertEqual(sorted(k for k, *_ in listing(b)[0]), sorted(bodies))

        if shutil.which("aws"):
            out = self.folder()
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update(AWS_ACCESS_KEY_ID="any", AWS_SECRET_ACCESS_KEY="any",
                       AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
                       AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_PAGER="")
            c = self.node()
            p = subprocess.run(["aws", "--endpoint-url", c.url, "s3", "sync", "s3://listed/", out],
                               env=env, capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 0, p.stderr)
            for n, body in bodies.items():
                with open(os.path.join(out, n), "rb") as f:
                    self.assertEqual(f.read(), body, n)

    def test_a_paged_listing_goes_on_over_keys_deleted_meanwhile(self):
        """A listing page by page through a node that holds none of the keys,
        while another node deletes some: the next page leaves them out and
        is full (not a 503 for a minute: a delete's record has no first
        byte).  A new listing that starts after a key sees a key written
        since the last one, as one from the start does."""
        import boto3
        a, d = self.node(), self.node()
        self.assertEqual(request(a, "PUT", "/paged")[0], 200)
        keys = ["k%02d" % i for i in range(30)]
        for k in keys:
            self.assertEqual(request(a, "PUT", "/paged/" + k, k.encode())[0], 200)
        self.drained(a)
        s3 = boto3.client("s3", endpoint_url=d.url, region_name="us-east-1",
                          aws_access_key_id="any", aws_secret_access_key="any")
        first = s3.list_objects_v2(Bucket="paged", MaxKeys=10)
        self.assertEqual([o["Key"] for o in first["Contents"]], keys[:10])
        for k in ("k12", "k15", "k16"):
            self.assertEqual(request(a, "DELETE", "/paged/" + k)[0], 204)
        self.assertEqual(request(a, "PUT", "/paged/k99", b"new")[0], 200)
        self.drained(a)
        second = s3.list_objects_v2(Bucket="paged", MaxKeys=10,
                                    ContinuationToken=first["NextContinuationToken"])
        self.assertEqual([o["Key"] for o in second["Contents"]],
                         [k for k in keys[10:23] if k not in ("k12", "k15", "k16")])
        self.assertTrue(second["IsTruncated"])
        after = s3.list_objects_v2(Bucket="paged", StartAfter="k25")
        self.assertEqual([o["Key"] for o in after["Contents"]], keys[26:] + ["k99"])

    def test_fleet_listings_match_a_model_of_the_keys(self):
        """Keys of a few letters, '/', '.' and '-' written through three
        nodes (one of them gone since), some read through another, some
        deleted (through a node that never held them, too): every listing
        through either node left, by pages of 1 to 7, with and without
        prefixes and delimiters, is what S3 would list of the keys left."""
        import boto3
        a, b, c = self.node(), self.node(), self.node()
        self.assertEqual(request(a, "PUT", "/model")[0], 200)
        self.drained(a)  # (the bucket, known to the others through the tier)
        alphabet = "ab/.-"
        keys = set()
        while len(keys) < 60:
            keys.add("".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(1, 6))))
        keys = sorted(keys)
        writer = {k: (c, a, b)[i // 20] for i, k in enumerate(keys)}
        for k in keys:
            path = "/model/" + urllib.parse.quote(k)
            self.assertEqual(request(writer[k], "PUT", path, k.encode())[0], 200)
        for srv in (a, b, c):
            self.drained(srv)
        c.stop()
        read_by_b = keys[:20:5]
        for k in read_by_b:
            self.assertEqual(request(b, "GET", "/model/" + urllib.parse.quote(k))[2], k.encode())
        # each deleted through the node that holds it, if one does
        gone = keys[1::3]
        for k in gone:
            srv = (b if k in read_by_b else self.rng.choice((a, b))) if writer[k] is c else writer[k]
            self.assertEqual(request(srv, "DELETE", "/model/" + urllib.parse.quote(k))[0], 204)
        self.drained(a)
        self.drained(b)
        left = sorted(set(keys) - set(gone), key=lambda k: k.encode())

        def model(prefix, delim):
            contents, prefixes = [], []
            for k in left:
                if not k.startswith(prefix):
                    continue
                rest = k[len(prefix):]
                if delim and delim in rest:
                    cp = prefix + rest[:rest.index(delim) + len(delim)]
                    if cp not in prefixes:
                        prefixes.append(cp)
                else:
                    contents.append(k)
            return contents, prefixes

        for srv in (a, b):
            s3 = boto3.client("s3", endpoint_url=srv.url, region_name="us-east-1",
                              aws_access_key_id="any", aws_secret_access_key="any")
            for prefix in ("", "a", "b/", "a."):
                for delim in ("", "/", "."):
                    want = model(prefix, delim)
                    for size in (1, 3, 7):
                        contents, prefixes = [], []
                        for page in s3.get_paginator("list_objects_v2").paginate(
                                Bucket="model", Prefix=prefix, Delimiter=delim,
                                PaginationConfig={"PageSize": size}):
                            contents += [o["Key"] for o in page.get("Contents", [])]
                            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
                        self.assertEqual((contents, prefixes), want, (prefix, delim, size))
                    v1 = s3.list_objects(Bucket="model", Prefix=prefix, Delimiter=delim)
                    self.assertEqual(([o["Key"] for o in v1.get("Contents", [])],
                                      [p["Prefix"] for p in v1.get("CommonPrefixes", [])]), want)

    def test_delete_through_a_node_that_never_read_the_key(self):
        """A key written through one node and deleted through another that
        never read it is deleted in the tier: no node finds it again.  A
        key nobody wrote is still a 404."""
        a, b = self.node(), self.node()
        key = "/ac/" + sha256(b"written by a")
        self.assertEqual(request(a, "PUT", key, b"from a")[0], 200)
        self.assertEqual(request(a, "PUT", "/fleet-bucket")[0], 200)
        self.assertEqual(request(a, "PUT", "/fleet-bucket/o.txt", b"object from a")[0], 200)
        self.drained(a)
        self.assertEqual(request(b, "DELETE", key)[0], 204)
        self.assertEqual(request(b, "DELETE", key)[0], 404)  # once
        self.assertEqual(request(b, "DELETE", "/ac/" + sha256(b"nobody"))[0], 404)
        self.assertEqual(request(b, "DELETE", "/fleet-bucket/o.txt")[0], 204)
        self.assertEqual(request(b, "GET", key)[0], 404)
        self.drained(b)
        c = self.node()
        self.assertEqual(request(c, "GET", key)[0], 404)
        self.assertEqual(request(c, "GET", "/fleet-bucket/o.txt")[0], 404)
        self.assertEqual(self.live_records(), {})

    def during_a_slow_cold_read(self, key, body, act, want):
        """Writes key through one node; on a second, starts a cold read of it
        whose blob comes from the tier 2 s late, and meanwhile act(node) must
        give want.  Returns (the second node, the read's answer)."""
        a, b = self.node(), self.node()
        self.assertEqual(request(a, "PUT", key, body)[0], 200)
        self.drained(a)
        self.proxy.delay = lambda method, path: 2 if method == "GET" and "/blobs/" in path else 0
        got = {}
        reader = threading.Thread(target=lambda: got.update(r=request(b, "GET", key)))
        reader.start()
        time.sleep(0.7)
        self.assertEqual(act(b), want)
        reader.join(30)
        self.proxy.delay = None
        return b, got["r"]

    def test_delete_while_another_request_fills_the_key(self):
        """A DELETE that arrives while a read of the same key is still
        fetching it from the tier stands: the fill does not bring the key
        back, here or anywhere."""
        key = "/ac/" + sha256(b"deleted while read")
        b, got = self.during_a_slow_cold_read(key, self.rng.randbytes(3 * MIB),
                                              lambda b: request(b, "DELETE", key)[0], 204)
        self.assertEqual(got[0], 200)
        self.assertEqual(request(b, "GET", key)[0], 404)
        self.drained(b)
        self.assertEqual(request(b, "GET", key)[0], 404)
        self.assertEqual(request(self.node(), "GET", key)[0], 404)

    def test_put_while_another_request_fills_the_key(self):
        """A PUT that arrives while a read of the same key is still fetching
        the old value from the tier stands: the fill does not replace it."""
        old, new = self.rng.randbytes(3 * MIB), self.rng.randbytes(1000)
        key = "/ac/" + sha256(b"written while read")
        b, got = self.during_a_slow_cold_read(key, old,
                                              lambda b: request(b, "PUT", key, new)[0], 200)
        self.assertEqual(sha256(got[2]), sha256(old))  # it began before the PUT
        self.assertEqual(request(b, "GET", key)[2], new)
        self.drained(b)
        self.assertEqual(request(b, "GET", key)[2], new)
        self.assertEqual(request(self.node(), "GET", key)[2], new)

    def test_warmup_of_a_key_deleted_while_it_arrives(self):
        """A warmup entry deleted while its blob is still arriving is counted
        missing, not failed, and stays deleted."""
        a, b = self.node(), self.node()
        key = "/ac/" + sha256(b"warmed while deleted")
        self.assertEqual(request(a, "PUT", key, self.rng.randbytes(3 * MIB))[0], 200)
        self.drained(a)
        seen = len(self.proxy.paths)
        self.proxy.delay = lambda method, path: 2 if method == "GET" and "/blobs/" in path else 0
        st, _, body = request(b, "POST", "/admin/warmup", key[1:].encode() + b"\n")
        self.assertEqual(st, 202, body)
        job = json.loads(body)["job"]
        self.assertTrue(wait_for(lambda: any("/blobs/" in p for p in self.proxy.paths[seen:]),
                                 timeout=10))
        self.assertEqual(request(b, "DELETE", key)[0], 204)

        j = job_done(b, job, timeout=30)
        self.assertTrue(j)
        self.proxy.delay = None
        self.assertEqual((j["warmed"], j["missing"], j["failed"]), (0, 1, 0), j)
        self.assertEqual(request(b, "GET", key)[0], 404)

    def test_warmup_from_packs_keeps_what_changed_here_after_its_listing(self):
        """A warmup lists the tier's key records, then reads packs.  A key
        deleted here in between (the delete already done in the tier) is not
        brought back from a pack, and one written here in between keeps its
        new value."""
        a, b = self.node(), self.node(extra=("--tier-timeout", "30s"))  # packs come 3 s late
        keys = ["/ac/" + sha256(b"packed %d" % i) for i in range(40)]
        for k in keys:
            self.assertEqual(request(a, "PUT", k, self.rng.randbytes(2000))[0], 200)
        self.drained(a)
        self.assertGreaterEqual(status(a)["tier"]["packs"], 1)
        seen = len(self.proxy.paths)
        self.proxy.delay = lambda method, path: 3 if method == "GET" and "/packs/" in path else 0
        items = "".join(k[1:] + "\n" for k in keys).encode()
        st, _, body = request(b, "POST", "/admin/warmup", items)
        self.assertEqual(st, 202, body)
        job = json.loads(body)["job"]
        self.assertTrue(wait_for(lambda: any("/packs/" in p for p in self.proxy.paths[seen:]),
                                 timeout=10))
        deleted, written = keys[0], keys[1]
        self.assertEqual(request(b, "DELETE", deleted)[0], 204)
        self.assertEqual(request(b, "PUT", written, b"written meanwhile")[0], 200)
        self.drained(b)  # the delete is done in the tier too

        j = job_done(b, job, timeout=60)
        self.assertTrue(j)
        self.proxy.delay = None
        self.assertEqual((j["warmed"], j["local"], j["missing"], j["failed"]), (38, 1, 1, 0), j)
        self.assertEqual(status(b)["tier"]["pack_reads"], 38)
        self.assertEqual(request(b, "GET", deleted)[0], 404)
        self.assertEqual(request(b, "GET", written)[2], b"written meanwhile")

    def test_a_fill_dropped_for_another_keys_mark_is_fetched_again(self):
        """Delete marks share slots by hash.  A cold read whose fill is
        dropped because another key of its slot was deleted meanwhile still
        answers from the tier, and so does a warmup."""
        body = self.rng.randbytes(100 * KIB)
        a = self.node()
        first, second, third = ("/ac/" + sha256(b"mark %d" % i) for i in range(3))
        for k in (first, second, third):
            self.assertEqual(request(a, "PUT", k, body)[0], 200)
        self.drained(a)
        b = self.node()
        self.assertEqual(request(b, "GET", first)[2], body)  # the blob is here now

        def slot(key):  # store_tier.c, del_slot
            return int.from_bytes(hashlib.sha256(b"ac\0" + key[4:].encode()).digest()[:4],
                                  "little") % 16384

        def neighbour(key):
            i = 0
            while slot("/ac/" + sha256(b"other %d" % i)) != slot(key):
                i += 1
            return "/ac/" + sha256(b"other %d" % i)
        self.proxy.delay = lambda method, path: 2 if method == "GET" and "/keys/" in path else 0
        # a read of second (its fill only links the blob) while a neighbour goes
        other = neighbour(second)
        self.assertEqual(request(b, "PUT", other, b"x")[0], 200)
        got = {}
        reader = threading.Thread(target=lambda: got.update(r=request(b, "GET", second)))
        reader.start()
        time.sleep(0.7)
        self.assertEqual(request(b, "DELETE", other)[0], 204)
        reader.join(30)
        self.assertEqual((got["r"][0], got["r"][2]), (200, body))
        # a warmup of third, the same way
        other = neighbour(third)
        self.assertEqual(request(b, "PUT", other, b"x")[0], 200)
        st, _, out = request(b, "POST", "/admin/warmup", third[1:].encode() + b"\n")
        self.assertEqual(st, 202, out)
        job = json.loads(out)["job"]
        time.sleep(0.7)
        self.assertEqual(request(b, "DELETE", other)[0], 204)

        j = job_done(b, job, timeout=30)
        self.assertTrue(j)
        self.proxy.delay = None
        self.assertEqual((j["warmed"], j["missing"], j["failed"]), (1, 0, 0), j)
        self.assertEqual(request(b, "GET", third)[2], body)

    def test_a_read_that_starts_during_a_delete_does_not_undo_it(self):
        """A cold read that begins while a DELETE of the key is still on its
        way to the tier (it read the old record) does not bring the key back
        here once the tier forgot it."""
        a, b = self.node(), self.node()
        key = "/ac/" + sha256(b"read during delete")
        self.assertEqual(request(a, "PUT", key, self.rng.randbytes(3 * MIB))[0], 200)
        self.drained(a)
        self.proxy.delay = lambda m, p: (1 if m == "HEAD" and "/keys/" in p else
                                         3 if m == "GET" and "/blobs/" in p else 0)
        got = {}
        deleter = threading.Thread(target=lambda: got.update(d=request(b, "DELETE", key)))
        deleter.start()
        time.sleep(0.3)
        reader = threading.Thread(target=lambda: got.update(r=request(b, "GET", key)))
        reader.start()
        deleter.join(30)
        reader.join(30)
        self.proxy.delay = None
        self.assertEqual(got["d"][0], 204)
        self.drained(b)
        time.sleep(0.5)  # the read's fill, if it were kept, commits after its body
        self.assertEqual(request(b, "GET", key)[0], 404)
        self.assertEqual(request(self.node(), "GET", key)[0], 404)

    def test_record_upload_and_delete_reach_the_tier_in_order(self):
        """A DELETE while the key's record is still being uploaded, and a PUT
        while its deletion is still on its way, end as the last one said."""
        a = self.node()
        records = self.live_records
        key = "/ac/" + sha256(b"in order")
        seen = len(self.proxy.paths)
        self.proxy.delay = lambda m, p: 2 if m == "PUT" and "/keys/" in p else 0
        self.assertEqual(request(a, "PUT", key, b"first")[0], 200)
        self.assertTrue(wait_for(lambda: any(p.startswith("PUT") and "/keys/" in p
                                             for p in self.proxy.paths[seen:]), timeout=10))
        self.assertEqual(request(a, "DELETE", key)[0], 204)
        self.drained(a)
        time.sleep(2.5)  # whatever was still on its way has landed
        self.proxy.delay = None
        self.assertEqual(records(), {})
        self.assertEqual(request(self.node(), "GET", key)[0], 404)
        # and the other way round
        self.assertEqual(request(a, "PUT", key, b"second")[0], 200)
        self.drained(a)
        seen = len(self.proxy.paths)
        # (a delete goes up as an empty record of its time)
        self.proxy.delay = lambda m, p: 2 if m == "PUT" and "/keys/" in p else 0
        self.assertEqual(request(a, "DELETE", key)[0], 204)
        self.assertTrue(wait_for(lambda: any(p.startswith("PUT") and "/keys/" in p
                                             for p in self.proxy.paths[seen:]), timeout=10))
        self.assertEqual(request(a, "PUT", key, b"third")[0], 200)
        self.drained(a)
        time.sleep(2.5)
        self.proxy.delay = None
        self.assertEqual(len(records()), 1)
        self.assertEqual(request(self.node(), "GET", key)[2], b"third")
        self.assertEqual(request(a, "POST", "/admin/evict?to=0")[0], 200)
        self.assertEqual(request(a, "GET", key)[2], b"third")

    def test_the_last_change_of_a_key_wins_whichever_node_sends_it_last(self):
        """Writes and deletes of one key through two nodes: the tier keeps the
        later change even when the earlier one reaches it last (its node's
        queue was behind), also for a delete through a node that never had
        the key; and a node refreshing the copies it kept from before does
        not bring them back."""
        slow = {"on": True}
        # (late, but within the node's 3 s --tier-timeout: at 3 s each upload
        # timed out as it landed, and got through only if the retry's HEAD
        # found the copy there, but not yet older than --tier-refresh-after)
        self.proxy.delay = lambda m, p: 2 if slow["on"] and m == "PUT" and "/blobs/" in p else 0
        # its uploads come 2 s late; it keeps its copies (no checks: what is
        # tested is that their refreshes do not bring them back)
        a = self.node(extra=["--tier-refresh-after", "1s", "--tier-revalidate", "0"])
        b = self.node(endpoint=self.moto.url)
        old, new, gone = (self.rng.randbytes(30 * KIB) for _ in range(3))
        k1, k2 = "/ac/" + sha256(b"k1"), "/ac/" + sha256(b"k2")
        self.assertEqual(request(a, "PUT", k1, old)[0], 200)
        self.assertEqual(request(a, "PUT", k2, gone)[0], 200)
        time.sleep(0.2)  # what b does next is the last change of each key
        self.assertEqual(request(b, "PUT", k1, new)[0], 200)
        request(b, "DELETE", k2)  # b never had k2, and the tier does not have it yet
        self.drained(b)
        self.drained(a)
        slow["on"] = False
        c = self.node(endpoint=self.moto.url)
        self.assertEqual(request(c, "GET", k1)[::2], (200, new))
        self.assertEqual(request(c, "GET", k2)[0], 404)
        self.assertEqual(request(b, "GET", k2)[0], 404)
        # a still has its own copies; reading them queues their refresh
        time.sleep(1.5)
        self.assertEqual(request(a, "GET", k1)[::2], (200, old))
        self.assertEqual(request(a, "GET", k2)[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["refreshes"] > 0, timeout=30))
        self.drained(a)
        d = self.node(endpoint=self.moto.url)
        self.assertEqual(request(d, "GET", k1)[::2], (200, new))
        self.assertEqual(request(d, "GET", k2)[0], 404)

    def test_a_key_changed_elsewhere_reaches_a_nodes_copy_within_the_revalidate_time(self):
        """Node b holds copies of keys; node a overwrites one and deletes
        another.  Read on b after --tier-revalidate, each brings about a check
        (answered from the copy meanwhile); then b answers the new body, and
        404 for the deleted key.  A key b changed itself, and /cas/ keys, are
        kept; with --tier-revalidate 0 nothing is checked."""
        a = self.node()
        b = self.node(extra=["--tier-revalidate", "3s"])
        off = self.node(extra=["--tier-revalidate", "0"])
        v1, v2, mine_a, mine_b, gone, blob, same = (self.rng.randbytes(n) for n in (
            100, 20 * KIB, 300, 40 * KIB, 5000, 70 * KIB, 30 * KIB))
        k, k_mine, k_gone, k_same = ("/ac/" + sha256(n) for n in (b"reval k", b"reval mine",
                                                                   b"gone", b"same again"))
        s3k = "/reval-bucket/cache/job.zip"
        self.assertEqual(request(a, "PUT", "/reval-bucket")[0], 200)
        for path, body in ((k, v1), (k_mine, mine_a), (k_gone, gone), (s3k, v1),
                           ("/cas/" + sha256(blob), blob), (k_same, same)):
            self.assertEqual(request(a, "PUT", path, body)[0], 200)
        self.drained(a)
        for n in (b, off):
            for path, body in ((k, v1), (k_mine, mine_a), (k_gone, gone), (s3k, v1),
                               ("/cas/" + sha256(blob), blob), (k_same, same)):
                self.assertEqual(request(n, "GET", path)[::2], (200, body), path)
        self.assertEqual(request(b, "PUT", k_mine, mine_b)[0], 200)  # b's own, later change
        self.drained(b)
        time.sleep(0.1)
        self.assertEqual(request(a, "PUT", k, v2)[0], 200)
        self.assertEqual(request(a, "PUT", s3k, v2)[0], 200)
        self.assertEqual(request(a, "DELETE", k_gone)[0], 204)
        self.assertEqual(request(a, "PUT", k_same, same)[0], 200)  # the same bytes, later
        self.drained(a)
        hits, held = status(b)["tier"]["hits"], status(b)["entries"]["keys"]
        time.sleep(3.1)
        for path in (k, s3k, k_gone, k_mine, "/cas/" + sha256(blob), k_same):
            request(b, "GET", path)  # (each read may still be the copy's: it asks for a check)
        self.assertTrue(wait_for(lambda: status(b)["tier"]["revalidated_stale"] == 3,
                                 timeout=30), status(b)["tier"])
        self.assertEqual(request(b, "GET", k)[::2], (200, v2))
        self.assertEqual(request(b, "GET", s3k)[::2], (200, v2))
        self.assertEqual(request(b, "GET", k_gone)[0], 404)
        self.assertEqual(request(b, "GET", k_mine)[::2], (200, mine_b))
        self.assertEqual(request(b, "GET", "/cas/" + sha256(blob))[::2], (200, blob))
        self.assertEqual(request(b, "GET", k_same)[::2], (200, same))
        self.assertEqual(status(b)["tier"]["revalidations"], 5)  # not the /cas/ key
        # k and s3k fetched again, k_same kept (its copy was right)
        self.assertEqual(status(b)["tier"]["hits"], hits + 2)
        # k's new copy committed (until then a read is answered by its fill,
        # which asks for no check: under load, for longer than a period)
        self.assertTrue(wait_for(lambda: status(b)["entries"]["keys"] == held - 1, timeout=30))
        time.sleep(3.1)  # checked again: the same now
        request(b, "GET", k)
        self.assertTrue(wait_for(lambda: status(b)["tier"]["revalidations"] == 6, timeout=30),
                        status(b)["tier"])
        self.assertEqual(status(b)["tier"]["revalidated_stale"], 3)
        # the node without checks keeps answering its copies
        for path, body in ((k, v1), (s3k, v1), (k_gone, gone)):
            self.assertEqual(request(off, "GET", path)[::2], (200, body), path)
        self.assertEqual(status(off)["tier"]["revalidations"], 0)
        text = request(b, "GET", "/metrics")[2].decode()
        self.assertIn('cairn_tier_revalidations_total{result="stale"} 3', text)
        self.assertIn('cairn_tier_revalidations_total{result="current"} 3', text)

    def test_a_restarted_node_checks_its_copies_at_their_first_read(self):
        """Node b holds a copy of a key and is stopped; node a changes the key
        meanwhile.  b, started again on its folder, checks the key at its first
        read (answered from the copy), long before --tier-revalidate has passed
        since its start, and answers the new body next.  A key read from the
        tier since the start is current: not checked before a period."""
        a, d = self.node(), self.folder()
        b = self.node(data=d, extra=["--tier-revalidate", "1h"])
        k, fresh = "/ac/" + sha256(b"restart k"), "/ac/" + sha256(b"restart fresh")
        v1, v2, v3 = (self.rng.randbytes(n) for n in (300, 20 * KIB, 500))
        for path, body in ((k, v1), (fresh, v3)):
            self.assertEqual(request(a, "PUT", path, body)[0], 200)
        self.drained(a)
        self.assertEqual(request(b, "GET", k)[::2], (200, v1))
        self.assertEqual(b.stop(), 0)
        time.sleep(0.05)
        self.assertEqual(request(a, "PUT", k, v2)[0], 200)
        self.drained(a)
        b = self.node(data=d, extra=["--tier-revalidate", "1h"])
        self.assertEqual(request(b, "GET", k)[::2], (200, v1))  # the copy; a check asked for
        self.assertTrue(wait_for(lambda: status(b)["tier"]["revalidated_stale"] == 1,
                                 timeout=30), status(b)["tier"])
        for path, body in ((k, v2), (k, v2), (fresh, v3), (fresh, v3)):
            self.assertEqual(request(b, "GET", path)[::2], (200, body), path)
        time.sleep(0.5)  # (a check would be on its way by now)
        self.assertEqual(status(b)["tier"]["revalidations"], 1, status(b)["tier"])

    def test_a_record_the_tier_lost_goes_up_again_from_a_node_that_holds_the_key(self):
        """The tier loses the key records of keys a node wrote (removed by
        hand, by the bucket's rules, or a store that answered their PUTs and
        kept nothing), and the blob of one.  The node's check of each key it
        reads finds its record missing, and puts it back, with the blob: a
        node with an empty folder then reads every body."""
        a = self.node(extra=["--tier-revalidate", "1s"])
        small, large = self.rng.randbytes(3000), self.rng.randbytes(300 * KIB)
        keys = {"/ac/" + sha256(b"lost small"): small, "/ac/" + sha256(b"lost large"): large,
                "/lost-bucket/dir/obj": large}
        self.assertEqual(request(a, "PUT", "/lost-bucket")[0], 200)
        self.assertEqual(request(a, "PUT", "/deleted-bucket")[0], 200)
        for path, body in list(keys.items()) + [("/deleted-bucket/obj", small)]:
            self.assertEqual(request(a, "PUT", path, body)[0], 200)
        self.drained(a)
        s3 = self.moto.client()
        # (a bucket whose record went too was deleted through another node:
        # its keys do not come back)
        ns_gone = "%s/ns/%s" % (self.PREFIX, b"s3/deleted-bucket".hex())
        self.assertIn(ns_gone, self.moto.objects(self.BUCKET, self.PREFIX + "/ns/"))
        gone = list(self.live_records()) + ["%s/blobs/%s" % (self.PREFIX, sha256(large)), ns_gone]
        for name in gone:
            s3.delete_object(Bucket=self.BUCKET, Key=name)
        self.assertEqual(self.live_records(), {})
        time.sleep(1.1)  # (a key written here counts as checked then)
        for path, body in list(keys.items()) + [("/deleted-bucket/obj", small)]:
            self.assertEqual(request(a, "GET", path)[::2], (200, body), path)  # the copy
        self.assertTrue(wait_for(lambda: status(a)["tier"]["revalidated_lost"] == 3, timeout=30),
                        status(a)["tier"])
        self.assertTrue(wait_for(lambda: status(a)["tier"]["revalidations"] == 4, timeout=30))
        self.drained(a)
        self.assertEqual(len(self.live_records()), 3)
        self.assertFalse([k for k in self.live_records() if "deleted-bucket" in k])
        self.assertIn(sha256(large), self.blobs_in_tier())
        self.assertIn('cairn_tier_revalidations_total{result="lost"} 3',
                      request(a, "GET", "/metrics")[2].decode())
        b = self.node()
        for path, body in keys.items():
            self.assertEqual(request(b, "GET", path)[::2], (200, body), path)

    def test_the_same_bytes_written_again_elsewhere_give_a_copy_their_time(self):
        """Node a writes an object node b holds a copy of again, with the same
        bytes and metadata: b's check finds the later time and gives it to
        its copy (Last-Modified, as on a), without fetching the body again."""
        a = self.node()
        b = self.node(extra=["--tier-revalidate", "1s"])
        body, path = self.rng.randbytes(40 * KIB), "/retime-bucket/dir/obj"
        meta = {"x-amz-meta-owner": "a"}
        self.assertEqual(request(a, "PUT", "/retime-bucket")[0], 200)
        self.assertEqual(request(a, "PUT", path, body, meta)[0], 200)
        self.drained(a)
        self.assertEqual(request(b, "GET", path)[::2], (200, body))
        hits = status(b)["tier"]["hits"]
        time.sleep(1.1)  # (Last-Modified counts seconds)
        self.assertEqual(request(a, "PUT", path, body, meta)[0], 200)
        self.drained(a)
        later = request(a, "HEAD", path)[1]["last-modified"]
        self.assertNotEqual(request(b, "HEAD", path)[1]["last-modified"], later)
        self.assertEqual(request(b, "GET", path)[::2], (200, body))  # the copy; a check asked for
        self.assertTrue(wait_for(lambda: request(b, "HEAD", path)[1]["last-modified"] == later,
                                 timeout=30), status(b)["tier"])
        self.assertEqual(request(b, "HEAD", path)[1].get("x-amz-meta-owner"), "a")
        self.assertEqual(status(b)["tier"]["hits"], hits)  # not fetched again
        self.assertEqual(status(b)["tier"]["revalidated_stale"], 0)

    def test_writes_that_depend_on_a_key_take_the_fleets_version(self):
        """Node b holds an old copy of a key node a changed since (with
        --tier-revalidate 0, so b still answers reads from it): a copy through
        b copies a's version, and a write conditional on the old ETag gets
        412, rather than bring the old version back over a's on every node.
        A create-only PUT (If-None-Match: *) of a key b never read, while
        the tier cannot be asked, gets 503, not an overwrite of a's."""
        a = self.node()
        b = self.node(extra=["--tier-revalidate", "0"])  # (no checks after reads: these check)
        path = "/cond-bucket/k"
        self.assertEqual(request(a, "PUT", "/cond-bucket")[0], 200)
        self.assertEqual(request(a, "PUT", path, b"version 1")[0], 200)
        self.drained(a)
        st, h1, got = request(b, "GET", path)
        self.assertEqual((st, got), (200, b"version 1"))
        self.assertEqual(request(a, "PUT", path, b"version 2 from a")[0], 200)
        self.drained(a)
        self.assertEqual(request(b, "GET", path)[::2], (200, b"version 1"))  # (its copy, for now)
        st, _, got = request(b, "PUT", path, b"from b", {"If-Match": h1["etag"]})
        self.assertEqual(st, 412, got)
        st, _, got = request(b, "PUT", "/cond-bucket/copy", None,
                             {"x-amz-copy-source": "/cond-bucket/k"})
        self.assertEqual(st, 200, got)
        st, _, got = request(b, "PUT", path, None,
                             {"x-amz-copy-source": "/cond-bucket/k",
                              "x-amz-metadata-directive": "REPLACE", "x-amz-meta-touched": "1"})
        self.assertEqual(st, 200, got)
        self.drained(b)
        c = self.node()
        for srv in (a, b, c):
            self.assertEqual(request(srv, "GET", path)[::2], (200, b"version 2 from a"))
            self.assertEqual(request(srv, "GET", "/cond-bucket/copy")[::2],
                             (200, b"version 2 from a"))

        # create-only, while the tier answers 503
        self.assertEqual(request(a, "PUT", "/cond-bucket/lock", b"owner=a")[0], 200)
        self.drained(a)
        self.proxy.fail = lambda m, p: 503 if "/keys/" in p else None
        try:
            st, _, got = request(c, "PUT", "/cond-bucket/lock", b"owner=c", {"If-None-Match": "*"})
            self.assertEqual(st, 503, got)
            self.assertIn(b"<Code>ServiceUnavailable</Code>", got)
        finally:
            self.proxy.fail = None
        # and while it does not answer at all: a create-only copy, whose
        # source's check timed out (the copy here is taken, as a read would)
        self.proxy.mode = "slow"
        try:
            st, _, got = request(c, "PUT", "/cond-bucket/lock", None,
                                 {"x-amz-copy-source": "/cond-bucket/k", "If-None-Match": "*"})
            self.assertEqual(st, 503, got)
        finally:
            self.proxy.mode = "ok"
        st, _, got = request(c, "PUT", "/cond-bucket/lock", b"owner=c", {"If-None-Match": "*"})
        self.assertEqual(st, 412, got)
        self.drained(c)
        self.assertEqual(request(self.node(), "GET", "/cond-bucket/lock")[::2], (200, b"owner=a"))

    def test_an_earlier_change_that_lands_last_is_put_right(self):
        """Nodes a and b write one key a moment apart, a first; a's record
        reaches the tier last (held up on its way after a looked there).
        The tier then holds the earlier change: b, which put the later one,
        looks again once such a put has landed, and puts its own again, so
        that the fleet reads the last change, not the one that landed last."""
        a = self.node()
        b = self.node(endpoint=self.moto.url)
        self.assertEqual(request(a, "PUT", "/race-bucket")[0], 200)
        self.drained(a)
        self.assertEqual(request(b, "HEAD", "/race-bucket")[0], 200)
        record = "%s/keys/s3%%2Frace-bucket/k" % self.PREFIX
        held = threading.Event()

        def delay(m, p):
            if m == "PUT" and "/keys/" in p and p.endswith("race-bucket/k"):
                held.set()
                return 2
            return 0
        self.proxy.delay = delay
        try:
            self.assertEqual(request(a, "PUT", "/race-bucket/k", b"from a, first")[0], 200)
            self.assertTrue(held.wait(10))  # (a looked, and its put is on its way)
            self.assertEqual(request(b, "PUT", "/race-bucket/k", b"from b, last")[0], 200)
            self.drained(b)
            self.drained(a)
        finally:
            self.proxy.delay = None
        s3 = self.moto.client()
        first = s3.get_object(Bucket=self.BUCKET, Key=record)["Body"].read()
        self.assertIn(b"from a, first", first)  # (the race as meant: a's landed last)
        self.assertTrue(wait_for(lambda: b"from b, last" in s3.get_object(
            Bucket=self.BUCKET, Key=record)["Body"].read(), timeout=40))  # (3 x 3 s + 1 s)
        self.assertIn('"tier_record_older"', b.read_log())
        self.assertEqual(request(self.node(), "GET", "/race-bucket/k")[::2],
                         (200, b"from b, last"))

    def test_a_listing_that_does_not_go_forward_fails(self):
        """A store whose listing names the same objects page after page
        (with new continuation tokens, or the same one) would have a
        listing of keys go round for ever: it fails (502), and a listing
        that goes forward works.  So does a listing that is not one (a 200
        whose body is not ListObjectsV2's XML); /status says why."""
        a = self.node()
        self.assertEqual(request(a, "PUT", "/loop-bucket")[0], 200)
        self.assertEqual(request(a, "PUT", "/loop-bucket/k1", b"one")[0], 200)
        self.drained(a)
        b = self.node()
        self.assertEqual(request(b, "PUT", "/loop-bucket/k0", b"zero")[0], 200)
        pages = []

        def page(token):
            names = "".join("<Contents><Key>%s/keys/s3%%2Floop-bucket/%s</Key><Size>60</Size>"
                            "<ETag>&quot;x&quot;</ETag></Contents>" % (self.PREFIX, k)
                            for k in ("k1", "k2"))
            return (200, ("<ListBucketResult><IsTruncated>true</IsTruncated>%s"
                          "<NextContinuationToken>%s</NextContinuationToken></ListBucketResult>"
                          % (names, token)).encode())

        for token in (lambda: "t%d" % len(pages), lambda: "same"):
            pages.clear()

            def answer(m, p, token=token):
                if m == "GET" and "list-type=2" in p and "keys" in p:
                    pages.append(p)
                    return page(token())
                return None

            self.proxy.answer = answer
            st, _, body = request(b, "GET", "/admin/keys?prefix=loop-bucket/", timeout=30)
            self.assertEqual(st, 502, body)
            self.assertLessEqual(len(pages), 2)
            self.assertIn("does not go forward", status(b)["tier"]["last_error"]["message"])
        self.proxy.answer = lambda m, p: (200, b"<html>a captive portal</html") \
            if m == "GET" and "list-type=2" in p else None
        st, _, body = request(b, "GET", "/admin/keys?prefix=loop-bucket/", timeout=30)
        self.assertEqual(st, 502, body)
        self.assertIn("not a listing", status(b)["tier"]["last_error"]["message"])
        self.proxy.answer = None
        st, _, body = request(b, "GET", "/admin/keys?prefix=loop-bucket/")
        self.assertEqual((st, sorted(body.split())), (200, [b"loop-bucket/k0", b"loop-bucket/k1"]))

    def test_listings_that_go_on_leave_threads_to_cold_reads(self):
        """Many clients list the fleet's keys while the tier's listing goes on
        (a page a second, each naming new keys): the listings take at most
        half the threads that wait for the tier, and a cold read is answered
        within the tier's timeout.  A listing whose client went away stops."""
        a = self.node()
        body = self.rng.randbytes(5000)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.drained(a)
        b = self.node(extra=["--threads", "4"])  # (8 threads that may wait for the tier)
        self.assertEqual(request(b, "PUT", "/list-bucket")[0], 200)
        n, lock = [0], threading.Lock()

        def answer(m, p):
            if m != "GET" or "list-type=2" not in p or "keys" not in p:
                return None
            time.sleep(1)
            with lock:
                n[0] += 1
                i = n[0]
            return (200, ("<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>%s/"
                          "keys/s3%%2Flist-bucket/k%08d</Key><Size>60</Size></Contents>"
                          "<NextContinuationToken>t%d</NextContinuationToken>"
                          "</ListBucketResult>" % (self.PREFIX, i, i)).encode())

        self.proxy.answer = answer
        listers = []
        for _ in range(10):
            c = b.conn()
            c.request("GET", "/admin/keys?prefix=list-bucket/")
            listers.append(c)
        self.assertTrue(wait_for(lambda: n[0] >= 8, timeout=10))
        t = time.monotonic()
        self.assertEqual(request(b, "GET", "/cas/" + sha256(body))[::2], (200, body))
        self.assertLess(time.monotonic() - t, 3)
        asked = n[0]
        self.assertTrue(wait_for(lambda: n[0] > asked, timeout=10), "the listings stopped")
        for c in listers:
            c.close()
        time.sleep(3)  # (each listing looks for its client once a second)
        settled = n[0]
        time.sleep(2)
        self.assertEqual(n[0], settled, "listings went on after their clients left")
        self.proxy.answer = None

    def test_a_bucket_with_keys_elsewhere_in_the_fleet_is_not_empty(self):
        """DeleteBucket through a node that holds none of the bucket's keys
        is refused while the tier holds some from another node; keys deleted
        (here or there) do not count."""
        a, b = self.node(), self.node()
        self.assertEqual(request(a, "PUT", "/fleet-bucket")[0], 200)
        self.drained(a)
        self.assertEqual(request(b, "PUT", "/fleet-bucket/obj", b"from b")[0], 200)
        self.drained(b)
        st, _, body = request(a, "DELETE", "/fleet-bucket")
        self.assertEqual(st, 409, body)
        self.assertIn(b"BucketNotEmpty", body)
        self.assertEqual(request(a, "GET", "/fleet-bucket/obj")[::2], (200, b"from b"))
        self.assertEqual(request(a, "DELETE", "/fleet-bucket/obj")[0], 204)
        # its delete may still be on its way to the tier: it counts already
        self.assertEqual(request(a, "DELETE", "/fleet-bucket")[0], 204)

    def test_local_hits_are_answered_while_reads_wait_for_the_tier(self):
        """A node with one HTTP thread answers its local hits while other
        requests wait for a slow tier: cold reads whose key records are held
        back (they wait on other threads), and a large body whose tier
        answer stalls half-way (its connection is suspended, not its
        thread).  Every hit is answered before the tier lets go.  Then the
        node stops (SIGTERM) while a read is parked and keep-alive clients
        keep asking for keys it must look for in the tier: it exits 0."""
        w = self.node()
        cold = [self.rng.randbytes(20 * KIB) for _ in range(3)]
        # (compressible: zstd frames, each checked as it arrives, are answered
        # while the rest comes; raw bytes of this size are checked whole first)
        big, big2 = (b"".join(b"%s line %d\n" % (self.rng.randbytes(6).hex().encode(), i)
                              for i in range(500000))[:8 * MIB] for _ in range(2))
        for b in cold + [big, big2]:
            self.assertEqual(request(w, "PUT", "/cas/" + sha256(b), b)[0], 200)
        self.drained(w)
        a = self.node(extra=["--threads", "1", "--shutdown-timeout", "1s"])
        local = [self.rng.randbytes(1000), self.rng.randbytes(3 * MIB)]
        for b in local:
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(b), b)[0], 200)

        def hits():
            keep = a.conn()
            for b in local * 3:
                self.assertEqual(request(a, "GET", "/cas/" + sha256(b))[2], b)
                keep.request("GET", "/cas/" + sha256(b))
                self.assertEqual(keep.getresponse().read(), b)
            keep.close()
            return time.monotonic()

        # cold reads whose key records the tier holds back for 2 s (the
        # tier timeout is 3 s)
        self.proxy.released = []
        self.proxy.delay = lambda m, p: 2 if m == "GET" and "/keys/" in p else 0
        got = {}
        readers = [threading.Thread(target=lambda b=b: got.update({sha256(b): request(
            a, "GET", "/cas/" + sha256(b))})) for b in cold]
        asked = len(self.proxy.paths)
        for t in readers:
            t.start()
        self.assertTrue(wait_for(lambda: any(
            p.startswith("GET ") and "/keys/" in p and any(sha256(b) in p for b in cold)
            for p in self.proxy.paths[asked:]), timeout=10, step=0.01))
        answered = hits()
        waiting = waiting_for_tier(a)
        for t in readers:
            t.join()
        self.proxy.delay = None
        self.assertLess(answered, min(self.proxy.released), "hits waited for the tier")
        self.assertGreaterEqual(waiting, 1)  # (read before the tier let go, as the hits were)
        self.assertEqual(waiting_for_tier(a), 0)
        for b in cold:
            self.assertEqual((got[sha256(b)][0], sha256(got[sha256(b)][2])), (200, sha256(b)))

        # a large body whose answer from the tier stalls half-way
        self.proxy.released = []
        self.proxy.stall = lambda m, p: 3 if m == "GET" and "/blobs/" in p else 0
        first = threading.Event()
        out = {}

        def read_big(body=big):
            c = a.conn()
            c.request("GET", "/cas/" + sha256(body))
            r = c.getresponse()
            head = r.read(64 * KIB)
            first.set()
            try:
                out["r"] = (r.status, head + r.read())
            except (http.client.HTTPException, ConnectionError):  # (a timeout is a failure)
                out["r"] = (r.status, head)  # cut short
            c.close()

        reader = threading.Thread(target=read_big)
        reader.start()
        self.assertTrue(first.wait(30))
        answered = hits()
        reader.join()
        self.proxy.stall = None
        self.assertEqual(len(self.proxy.released), 1)
        self.assertLess(answered, self.proxy.released[0], "hits waited for the stalled body")
        self.assertEqual((out["r"][0], sha256(out["r"][1])), (200, sha256(big)))

        # SIGTERM while a read is parked, and while keep-alive clients ask
        # for keys the node does not have (each a request for the tier)
        self.proxy.stall = lambda m, p: 10 if m == "GET" and "/blobs/" in p else 0
        first.clear()
        reader = threading.Thread(target=read_big, args=(big2,))
        reader.start()
        self.assertTrue(first.wait(30))
        stop = threading.Event()

        def ask_missing(i):
            c = a.conn(timeout=30)
            try:
                while not stop.is_set():
                    c.request("GET", "/cas/" + sha256(b"missing %d %f" % (i, time.time())))
                    c.getresponse().read()
            except (http.client.HTTPException, OSError):
                pass  # the node went away
            c.close()

        askers = [threading.Thread(target=ask_missing, args=(i,)) for i in range(4)]
        for t in askers:
            t.start()
        time.sleep(0.3)
        rc = a.stop()
        stop.set()
        for t in askers + [reader]:
            t.join()
        self.proxy.stall = None
        self.assertEqual(rc, 0, "cairnd exited with %s\n%s" % (rc, a.read_log()[-4000:]))
        self.assertNotEqual(sha256(out["r"][1]), sha256(big2))  # cut short, never whole

    def test_s3_requests_that_ask_the_tier_through_a_node_with_one_thread(self):
        """boto3 through a node with one HTTP thread and an empty folder, for
        a bucket another node wrote: every S3 request that has to ask the
        tier (a bucket not known here, cold objects, a copy of a cold source,
        a conditional PUT over a key only the tier has, DeleteObjects, a
        multipart upload) runs off the HTTP thread and answers as S3 would."""
        import boto3
        from botocore.exceptions import ClientError
        w = self.node()
        small, mid, big = b"small body", self.rng.randbytes(200 * KIB), self.rng.randbytes(3 * MIB)
        self.assertEqual(request(w, "PUT", "/fleet-s3")[0], 200)
        for k, b in (("small", small), ("mid", mid), ("big", big)):
            self.assertEqual(request(w, "PUT", "/fleet-s3/" + k, b)[0], 200)
        self.drained(w)
        a = self.node(extra=["--threads", "1"])
        s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%d" % a.port,
                          region_name="us-east-1", aws_access_key_id="any",
                          aws_secret_access_key="any")
        s3.head_bucket(Bucket="fleet-s3")
        self.assertEqual(s3.get_object(Bucket="fleet-s3", Key="small")["Body"].read(), small)
        self.assertEqual(s3.get_object(Bucket="fleet-s3", Key="mid", Range="bytes=10-99")
                         ["Body"].read(), mid[10:100])
        s3.copy_object(Bucket="fleet-s3", Key="big-copy",
                       CopySource={"Bucket": "fleet-s3", "Key": "big"})
        self.assertEqual(sha256(s3.get_object(Bucket="fleet-s3", Key="big-copy")["Body"].read()),
                         sha256(big))
        with self.assertRaises(ClientError) as cm:  # "mid" is here now; "only" never was
            s3.put_object(Bucket="fleet-s3", Key="mid", Body=b"x", IfNoneMatch="*")
        self.assertEqual(cm.exception.response["Error"]["Code"], "PreconditionFailed")
        self.assertEqual(request(w, "PUT", "/fleet-s3/only", b"written elsewhere")[0], 200)
        self.drained(w)
        with self.assertRaises(ClientError) as cm:
            s3.put_object(Bucket="fleet-s3", Key="only", Body=b"x", IfNoneMatch="*")
        self.assertEqual(cm.exception.response["Error"]["Code"], "PreconditionFailed")
        out = s3.delete_objects(Bucket="fleet-s3", Delete={"Objects": [
            {"Key": "small"}, {"Key": "only"}, {"Key": "never"}]})
        self.assertEqual(sorted(d["Key"] for d in out["Deleted"]), ["never", "only", "small"])
        for k in ("small", "only"):
            with self.assertRaises(ClientError):
                s3.head_object(Bucket="fleet-s3", Key=k)
        up = s3.create_multipart_upload(Bucket="fleet-s3", Key="mp")["UploadId"]
        parts = [self.rng.randbytes(5 * MIB), b"tail"]
        etags = [s3.upload_part(Bucket="fleet-s3", Key="mp", UploadId=up, PartNumber=i + 1,
                                Body=p)["ETag"] for i, p in enumerate(parts)]
        s3.complete_multipart_upload(Bucket="fleet-s3", Key="mp", UploadId=up, MultipartUpload={
            "Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]})
        self.assertEqual(s3.get_object(Bucket="fleet-s3", Key="mp")["Body"].read(), b"".join(parts))
        self.assertEqual(waiting_for_tier(a), 0)

    def test_readers_of_a_blob_still_arriving_share_its_fill(self):
        """A HEAD of a cold large key starts its fill; a GET that follows (as
        aws s3 cp does), and a second GET beside it, are answered from that
        same fill while it arrives (a compressible body: zstd frames, each
        checked as it comes), not after its commit, and the tier is asked
        for the blob once."""
        w = self.node()
        big = b"".join(b"%s line %d\n" % (self.rng.randbytes(6).hex().encode(), i)
                       for i in range(500000))[:8 * MIB]
        path = "/cas/" + sha256(big)
        self.assertEqual(request(w, "PUT", path, big)[0], 200)
        self.drained(w)
        a = self.node()
        self.proxy.released = []
        self.proxy.stall = lambda m, p: 3 if m == "GET" and "/blobs/" in p else 0
        asked = len(self.proxy.paths)
        st, h, _ = request(a, "HEAD", path)
        self.assertEqual((st, h.get("content-length")), (200, str(len(big))))
        out, firsts = {}, {}

        def get(tag):
            c = a.conn()
            c.request("GET", path)
            r = c.getresponse()
            head = r.read(64 * KIB)
            firsts[tag] = time.monotonic()
            out[tag] = (r.status, head + r.read())
            c.close()

        ts = [threading.Thread(target=get, args=(t,)) for t in ("one", "two")]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.proxy.stall = None
        for tag in ("one", "two"):
            self.assertEqual((out[tag][0], sha256(out[tag][1])), (200, sha256(big)), tag)
            self.assertLess(firsts[tag], self.proxy.released[0], "%s waited for the commit" % tag)
        blob_gets = [p for p in self.proxy.paths[asked:] if p.startswith("GET ") and "/blobs/" in p]
        self.assertEqual(len(blob_gets), 1, blob_gets)

        # a compressible body (zstd frames in the tier): a HEAD, then ranges
        # read at once from the same fill, as aws s3 cp reads a large object
        text = b"".join(b"line %d of a build log\n" % i for i in range(600000))[:12 * MIB + 777]
        tpath = "/cas/" + sha256(text)
        self.assertEqual(request(w, "PUT", tpath, text)[0], 200)
        self.drained(w)
        self.proxy.stall = lambda m, p: 2 if m == "GET" and "/blobs/" in p else 0
        # (a client that takes zstd: while the blob arrives, a GET would be
        # answered decoded, and the HEAD says so)
        st, h, _ = request(a, "HEAD", tpath, headers={"Accept-Encoding": "zstd"})
        self.assertEqual((st, h.get("content-encoding"), h.get("content-length")),
                         (200, None, str(len(text))))
        step = 3 * MIB
        spans = [(i, min(i + step, len(text)) - 1) for i in range(0, len(text), step)]
        spans.reverse()  # the end first: readers that start past what is here
        got = {}

        def get_range(span):
            got[span] = request(a, "GET", tpath, headers={"Range": "bytes=%d-%d" % span})
        ts = [threading.Thread(target=get_range, args=(sp,)) for sp in spans]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.proxy.stall = None
        for lo, hi in spans:
            st, _, part = got[(lo, hi)]
            self.assertEqual((st, sha256(part)), (206, sha256(text[lo:hi + 1])), (lo, hi))
        # kept here: the file itself goes to a client that takes zstd
        self.assertTrue(wait_for(lambda: status(a)["entries"]["keys"] == 2, timeout=10))
        st, h, _ = request(a, "HEAD", tpath, headers={"Accept-Encoding": "zstd"})
        self.assertEqual((st, h.get("content-encoding")), (200, "zstd"))
        st, h, body = request(a, "GET", tpath, headers={"Accept-Encoding": "zstd"})
        self.assertEqual((h.get("content-encoding"), h.get("content-length")),
                         ("zstd", str(len(body))))

    def test_a_node_that_sent_full_packs_stops_cleanly(self):
        """More small records than one pack holds (1024): full packs go up
        as the records do, and SIGTERM afterwards exits 0 (a full pack's
        buffers were freed twice on the way out)."""
        a = self.node()
        c = a.conn()
        for i in range(1100):
            c.request("PUT", "/ac/" + sha256(b"small %d" % i), body=b"value %d" % i)
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        c.close()
        self.drained(a)
        self.assertGreaterEqual(status(a)["tier"]["packs"], 2)
        self.assertEqual(status(a)["tier"]["packed_records"], 1100)
        self.assertEqual(a.stop(), 0, a.read_log()[-2000:])

    def test_a_stop_does_not_wait_for_uploads_to_a_hung_tier(self):
        """SIGTERM while a large blob goes up to a tier that hangs: the
        upload is cut short (its budget, one second a MiB, would hold the
        stop half a minute) and the node exits at once; the blob is still
        queued, and goes up after the restart."""
        a = self.node()
        body = self.rng.randbytes(30 * MIB)
        self.proxy.delay = lambda m, p: 40 if m == "PUT" and "/blobs/" in p else 0
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.assertTrue(wait_for(lambda: any(p.startswith("PUT ") and "/blobs/" in p
                                             for p in self.proxy.paths), timeout=20))
        t0 = time.monotonic()
        self.assertEqual(a.stop(), 0, a.read_log()[-3000:])
        self.assertLess(time.monotonic() - t0, 10, "the stop waited for the upload")
        self.assertEqual(list(self.blobs_in_tier()), [])
        log = a.read_log()  # the stop's doing, not a failure of the tier's
        self.assertIn('"tier_upload_stopped"', log)
        self.assertNotIn('"tier_upload_failed"', log)
        self.proxy.delay = None
        a.start()
        self.drained(a)
        self.assertEqual(list(self.blobs_in_tier()), [sha256(body)])

    def test_a_stop_that_drains_still_answers_probes(self):
        """--tier-drain-timeout: while a stopping node waits for its queue,
        it still answers (/healthz 200, /readyz 503, anything else 503 with
        Connection: close), so that an orchestrator's probes do not find
        the port closed; once the tier is back, the queue empties and the
        node exits 0."""
        a = self.node(extra=["--tier-drain-timeout", "30s"])
        body = self.rng.randbytes(100 * KIB)
        self.proxy.mode = "down"
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        a.proc.send_signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: '"tier_drain"' in a.read_log(), timeout=10))
        for _ in range(3):
            self.assertEqual(request(a, "GET", "/healthz")[0], 200)
            self.assertEqual(request(a, "GET", "/readyz")[0], 503)
            st, h, _ = request(a, "GET", "/cas/" + sha256(body))
            self.assertEqual((st, h.get("connection")), (503, "close"))
            time.sleep(0.5)
        self.assertIsNone(a.proc.poll(), "the node did not wait for its queue")
        self.proxy.mode = "ok"
        self.assertEqual(a.proc.wait(30), 0, a.read_log()[-3000:])
        self.assertEqual(list(self.blobs_in_tier()), [sha256(body)])

    def test_a_stop_aborts_the_tiers_multipart_upload_it_cut_short(self):
        """A stop in the middle of a blob's multipart upload to a tier that
        hangs: the upload is cut short and aborted in the tier (not left
        for the bucket's rule), and the node exits at once.  And a warmup
        fetching a large blob from a hung tier does not hold the stop
        either."""
        a = self.node(extra=["--tier-part-size", "5M"])
        body = self.rng.randbytes(12 * MIB)
        self.proxy.delay = lambda m, p: 40 if m == "PUT" and "partNumber=2" in p else 0
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.assertTrue(wait_for(lambda: any("partNumber=2" in p for p in self.proxy.paths),
                                 timeout=20))
        t0 = time.monotonic()
        self.assertEqual(a.stop(), 0, a.read_log()[-3000:])
        self.assertLess(time.monotonic() - t0, 10)
        self.assertTrue(any(p.startswith("DELETE ") and "uploadId=" in p
                            for p in self.proxy.paths), self.proxy.paths)
        self.assertFalse(self.moto.client().list_multipart_uploads(
            Bucket=self.BUCKET).get("Uploads"))
        self.proxy.delay = None
        a.start()
        self.drained(a)
        # a warmup's fetch of a large blob, the tier hung
        b = self.node()
        self.proxy.delay = lambda m, p: 40 if m == "GET" and "/blobs/" in p else 0
        st, _, text = request(b, "POST", "/admin/warmup", ("cas/%s\n" % sha256(body)).encode())
        self.assertEqual(st, 202, text)
        self.assertTrue(wait_for(lambda: any(p.startswith("GET ") and "/blobs/" in p
                                             for p in self.proxy.paths), timeout=20))
        t0 = time.monotonic()
        self.assertEqual(b.stop(), 0, b.read_log()[-3000:])
        self.assertLess(time.monotonic() - t0, 10)
        self.proxy.delay = None

    def test_keys_with_one_body_share_its_fetch(self):
        """Keys with the same large body, read cold at once or one right
        after the other, fetch its blob from the tier once: the later ones
        answer from the fill the first began, and are linked to the blob
        once it is kept (then served here with the tier gone)."""
        a = self.node()
        body = self.rng.randbytes(6 * MIB)
        keys = ["/ac/" + sha256(b"same body %d" % i) for i in range(5)]
        for k in keys:
            self.assertEqual(request(a, "PUT", k, body)[0], 200)
        self.drained(a)
        blob_gets = lambda: sum(1 for p in self.proxy.paths
                                if p.startswith("GET ") and "/blobs/" + sha256(body) in p)
        b = self.node()
        self.proxy.stall = lambda m, p: 1 if m == "GET" and "/blobs/" in p else 0
        got = {}

        def read(k):
            got[k] = request(b, "GET", k)
        at_once(read, keys[:4])
        self.proxy.stall = None
        for k in keys[:4]:
            self.assertEqual((got[k][0], sha256(got[k][2])), (200, sha256(body)), k)
        self.assertEqual(blob_gets(), 1)
        self.assertEqual(sha256(request(b, "GET", keys[4])[2]), sha256(body))  # right after
        self.assertEqual(blob_gets(), 1)
        self.assertTrue(wait_for(lambda: status(b)["entries"]["keys"] == 5), status(b))
        self.proxy.mode = "down"
        for k in keys:
            self.assertEqual(sha256(request(b, "GET", k)[2]), sha256(body), k)
        # a damaged blob: no key that shared its fetch is served it whole,
        # nor kept; they are read again once the tier's copy is sound
        self.proxy.mode = "ok"
        c = self.node()
        self.proxy.fail = lambda m, p: "flip" if m == "GET" and "/blobs/" in p else None
        self.proxy.stall = lambda m, p: 1 if m == "GET" and "/blobs/" in p else 0

        def read_damaged(k):
            try:
                st, _, data = request(c, "GET", k)
                got[k] = (st, sha256(data))
            except (http.client.HTTPException, ConnectionError):
                got[k] = None
        got.clear()
        before = blob_gets()
        at_once(read_damaged, keys[:3])
        # (a reader's answer is cut: no 200 comes whole, right or wrong)
        self.assertTrue(all(v is None or v[0] != 200 for v in got.values()), got)
        self.assertEqual(blob_gets() - before, 1)
        self.proxy.fail = self.proxy.stall = None
        for k in keys[:3]:
            self.assertEqual(sha256(request(c, "GET", k)[2]), sha256(body), k)
        self.assertTrue(wait_for(lambda: status(c)["entries"]["keys"] == 3), status(c))

    def test_a_body_damaged_on_its_way_up_is_sent_again(self):
        """The proxy changes a byte of the first PUT of each blob, part and
        key record.  Each goes with its Content-MD5: the store refuses it, or
        (moto, which does not check) stores it and answers an ETag that is
        not the MD5 sent; either way the upload failed, and is sent again.
        A node with an empty folder then reads every body as written."""
        a = self.node(extra=["--tier-part-size", "5M"])
        puts = collections.Counter()

        def flip_first(m, p):
            if m != "PUT" or not ("/blobs/" in p or "/keys/" in p):
                return None
            puts[p] += 1  # (a part's path has its number)
            return "flip-up" if puts[p] == 1 else None
        self.proxy.fail = flip_first
        written = [("/ac/" + sha256(b"damaged up %d" % n), self.rng.randbytes(n))
                   for n in (300, 300 * KIB, 6 * MIB)]
        for k, body in written:
            self.assertEqual(request(a, "PUT", k, body)[0], 200)
            # (a part's ETag is checked once single PUTs showed the store's
            # ETags are MD5s: the large body goes after the others)
            self.drained(a)
        self.proxy.fail = None
        tier = status(a)["tier"]
        self.assertGreaterEqual(tier["upload_failures"], 4, tier)  # 2 blobs, 3 records
        # (the store's refusal, or the ETag's, in the failure's words)
        self.assertRegex(tier["last_error"]["message"], "damaged on the way|Digest", tier)
        sent = [h for m, p, h in self.proxy.headers if m == "PUT" and "/blobs/" in p]
        self.assertTrue(sent and all("content-md5" in h for h in sent), sent[:1])
        b = self.node()
        for k, body in written:
            self.assertEqual(request(b, "GET", k)[::2], (200, body), k)

    def test_a_part_damaged_before_the_stores_etags_are_known_is_caught(self):
        """The first upload of a node is in parts, and a part arrives damaged:
        no single PUT has shown yet whether the store's ETags are MD5s, so
        the part's ETag cannot fail it; the whole object, read back once
        complete, does.  The upload goes again, and another node reads the
        body as written."""
        a = self.node(extra=["--tier-part-size", "5M"])
        flipped = []

        def flip_part_2(m, p):
            if m == "PUT" and "partNumber=2" in p and not flipped:
                flipped.append(p)
                return "flip-up"
            return None
        self.proxy.fail = flip_part_2
        body = self.rng.randbytes(12 * MIB)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.drained(a)
        self.proxy.fail = None
        self.assertEqual(len(flipped), 1)
        self.assertGreaterEqual(status(a)["tier"]["upload_failures"], 1, status(a)["tier"])
        self.assertEqual(request(self.node(), "GET", "/cas/" + sha256(body))[::2], (200, body))

    def test_a_change_is_not_dropped_for_a_header_damaged_on_the_way(self):
        """A node's HEAD of a key record, before it puts its own change, is
        answered with x-amz-meta-cairn-written an hour later than it is: the
        record itself, read, says its key was written before this change,
        which goes up; another node reads it."""
        a, b = self.node(), self.node()
        k = "/ac/" + sha256(b"header damaged")
        v1, v2 = self.rng.randbytes(300), self.rng.randbytes(400)
        self.assertEqual(request(a, "PUT", k, v1)[0], 200)
        self.drained(a)
        self.proxy.rewrite = lambda m, p, name, v: (
            str(int(v) + 3600 * 1000) if m == "HEAD" and "/keys/" in p and
            name == "x-amz-meta-cairn-written" else v)
        self.assertEqual(request(b, "PUT", k, v2)[0], 200)
        self.drained(b)
        self.proxy.rewrite = None
        self.assertEqual(request(self.node(), "GET", k)[::2], (200, v2))

    def test_a_store_whose_etags_are_not_md5s_takes_uploads(self):
        """A store whose ETags are not the MD5s of its objects, and which does
        not say it encrypts them: the first upload whose ETag is not its MD5
        is read back, found intact, and taken; from then on uploads are
        checked by their Content-MD5 alone (logged once), and none fails."""
        self.proxy.mode = "etag-other"
        a = self.node(extra=["--tier-part-size", "5M"])
        written = [("/ac/" + sha256(b"etag other %d" % n), self.rng.randbytes(n))
                   for n in (300, 300 * KIB, 6 * MIB)]
        for k, body in written:
            self.assertEqual(request(a, "PUT", k, body)[0], 200)
        self.drained(a)
        self.assertEqual(status(a)["tier"]["upload_failures"], 0, status(a)["tier"])
        self.assertIsNone(status(a)["tier"]["last_error"])  # (nothing was damaged)
        self.assertEqual(a.read_log().count('"event":"tier_etags"'), 1)
        self.proxy.mode = "ok"
        b = self.node()
        for k, body in written:
            self.assertEqual(request(b, "GET", k)[::2], (200, body), k)

    def test_a_key_record_damaged_on_its_way_down_is_not_taken(self):
        """The proxy changes a byte of a key record's time as it goes to a
        node with an empty folder: the record still parses, but its
        x-amz-meta-cairn-sha256 says it is not what was stored.  That read
        fails (the tier's answer makes no sense), nothing is kept, and the
        next one gets the record whole."""
        a = self.node()
        k, body = "/ac/" + sha256(b"damaged down"), self.rng.randbytes(500)
        self.assertEqual(request(a, "PUT", k, body)[0], 200)
        self.drained(a)
        b = self.node()
        # "CKR1", u32 name length, the name, digest (32), size (8): then the time
        self.proxy.flip_at = lambda d: 8 + int.from_bytes(d[4:8], "little") + 41
        self.proxy.fail = lambda m, p: "flip" if m == "GET" and "/keys/" in p else None
        self.assertNotEqual(request(b, "GET", k)[0], 200)
        self.assertIn("damaged on the way", status(b)["tier"]["last_error"]["message"])
        self.assertEqual(status(b)["entries"]["keys"], 0)
        self.proxy.fail = self.proxy.flip_at = None
        self.assertEqual(request(b, "GET", k)[::2], (200, body))

    def test_a_blob_cut_short_without_a_length_is_not_taken_for_damage(self):
        """The tier answers a blob without Content-Length and closes the
        connection half-way, every time: the node resumes it (a raw blob's
        length is known), but no answer ends whole, and that is no proof the
        tier's copy is damaged.  Neither read is answered the body, nothing
        is counted corrupt, and the blob is not held for bad: the read after
        the fault gets it.  Cut once, the resume gets the rest."""
        a = self.node()
        k, body = "/ac/" + sha256(b"cut unsized"), self.rng.randbytes(300 * KIB)
        self.assertEqual(request(a, "PUT", k, body)[0], 200)
        self.drained(a)
        b = self.node()
        self.proxy.fail = lambda m, p: "unsized-cut" if m == "GET" and "/blobs/" in p else None
        for _ in range(2):
            try:
                got = request(b, "GET", k)
                self.assertFalse(got[0] == 200 and got[2] == body)
            except (http.client.HTTPException, ConnectionError):
                pass  # (the answer began, and was cut)
        self.assertEqual(status(b)["tier"]["corrupt"], 0, status(b)["tier"])
        self.proxy.fail = None
        self.assertEqual(request(b, "GET", k)[::2], (200, body))
        # cut once: a raw blob's length is its body's (x-amz-meta-cairn-size),
        # so the node knows the answer ended short, and resumes it
        k2, body2 = "/ac/" + sha256(b"cut unsized once"), self.rng.randbytes(300 * KIB)
        self.assertEqual(request(a, "PUT", k2, body2)[0], 200)
        self.drained(a)
        cut = []
        self.proxy.fail = lambda m, p: ("unsized-cut" if m == "GET" and "/blobs/" in p and not cut
                                        and not cut.append(p) else None)
        self.assertEqual(request(b, "GET", k2)[::2], (200, body2))
        self.proxy.fail = None
        self.assertEqual(len(cut), 1)

    def test_a_key_waiting_on_a_stream_that_failed_fetches_the_blob_itself(self):
        """Key B, with the same large body as key A, waits for the stream A's
        read began; the tier fails A's blob request (a 503, its error body
        slow to come).  B's read does not fail with it: B fetches the blob
        itself."""
        a = self.node()
        body = self.rng.randbytes(3 * MIB)
        ka, kb = ("/ac/" + sha256(b"stream that failed %d" % i) for i in range(2))
        for k in (ka, kb):
            self.assertEqual(request(a, "PUT", k, body)[0], 200)
        self.drained(a)
        blob = "/blobs/" + sha256(body)
        b = self.node()
        first = threading.Event()

        stalled = []

        def fail(m, p):  # the first GET of the blob: 503, once B waits for it
            if m == "GET" and blob in p and not first.is_set():
                first.set()
                return "503"

        def stall(m, p):  # and half its error body, then a pause
            if m == "GET" and blob in p and not stalled:
                stalled.append(p)
                return 1
            return 0
        self.proxy.delay = lambda m, p: 1 if m == "GET" and blob in p and not first.is_set() else 0
        self.proxy.fail = fail
        self.proxy.stall = stall
        got = {}

        def read(k):
            try:
                got[k] = request(b, "GET", k)
            except (http.client.HTTPException, ConnectionError) as e:
                got[k] = e
        ta = threading.Thread(target=read, args=(ka,))
        ta.start()
        self.assertTrue(wait_for(lambda: any(p.startswith("GET ") and blob in p
                                             for p in self.proxy.paths), timeout=10))
        read(kb)
        ta.join(30)
        self.assertTrue(first.is_set(), "the blob was not asked for")
        self.assertEqual((got[kb][0], sha256(got[kb][2])), (200, sha256(body)), "B")
        if isinstance(got[ka], tuple) and got[ka][0] == 200:  # (A's own answer failed, mostly)
            self.assertEqual(sha256(got[ka][2]), sha256(body), "A")
        self.assertEqual(sum(1 for p in self.proxy.paths if p.startswith("GET ") and blob in p), 2)
        st, _, data = request(b, "GET", ka)
        self.assertEqual((st, sha256(data)), (200, sha256(body)), "A, read again")

    def test_a_resume_waits_a_moment_for_a_tier_coming_back(self):
        """The tier drops a blob's answer half-way and refuses connections for
        a moment, as one that restarts: the node's resumes wait a little
        between tries (0.1 s, then 0.4 s), rather than spending both at once
        while it is away, and the reader gets the whole body."""
        w = self.node()
        body = self.rng.randbytes(6 * MIB)
        self.assertEqual(request(w, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.drained(w)
        a = self.node()
        state = {"cut": False, "down": None}

        def cut_once(m, p):
            if m != "GET" or "/blobs/" not in p or state["cut"]:
                return False
            state["cut"] = True
            return True

        def away(m, p):  # the first try after the cut, and any within 50 ms of it
            if not state["cut"] or m != "GET" or "/blobs/" not in p:
                return None
            if state["down"] is None:
                state["down"] = time.monotonic()
            return "down" if time.monotonic() - state["down"] < 0.05 else None
        self.proxy.cut, self.proxy.fail = cut_once, away
        st, _, got = request(a, "GET", "/cas/" + sha256(body))
        self.proxy.cut = self.proxy.fail = None
        self.assertEqual((st, sha256(got)), (200, sha256(body)))
        self.assertEqual(status(a)["tier"]["corrupt"], 0)

    def test_an_answer_cut_short_by_the_tier_is_resumed(self):
        """The tier's answer for a blob breaks off half-way (the connection
        closed): the node asks for the rest (a Range from where it stopped,
        If-Match the object's ETag) and the reader gets the whole body, raw
        or zstd, which is then kept."""
        w = self.node()
        raw = self.rng.randbytes(6 * MIB)
        text = b"".join(b"line %d of a test log\n" % i for i in range(400000))[:7 * MIB + 99]
        for b in (raw, text):
            self.assertEqual(request(w, "PUT", "/cas/" + sha256(b), b)[0], 200)
        self.drained(w)
        a = self.node()
        cut = set()

        def cut_once(m, p):
            if m != "GET" or "/blobs/" not in p or p in cut:
                return False
            cut.add(p)
            return True
        self.proxy.cut = cut_once
        asked = len(self.proxy.headers)
        for b in (raw, text):
            st, _, got = request(a, "GET", "/cas/" + sha256(b))
            self.assertEqual((st, sha256(got)), (200, sha256(b)))
        self.proxy.cut = None
        gets = [h for m, p, h in self.proxy.headers[asked:] if m == "GET" and "/blobs/" in p]
        self.assertEqual(len(gets), 4)
        resumed = [h for h in gets if "range" in h]
        self.assertEqual(len(resumed), 2)
        for h in resumed:
            self.assertTrue(h["range"].startswith("bytes=") and h["range"].endswith("-"))
            self.assertIn("if-match", h)
        self.assertTrue(wait_for(lambda: status(a)["entries"]["keys"] == 2, timeout=10))
        self.assertEqual(status(a)["tier"]["corrupt"], 0)
        self.proxy.mode = "down"  # kept whole
        for b in (raw, text):
            self.assertEqual(sha256(request(a, "GET", "/cas/" + sha256(b))[2]), sha256(b))
        # a tier that ignores Range answers the resume with the whole object
        # again: refused, never appended; the reader's answer (a raw body:
        # checked whole before any of it goes) is a miss, or cut short before
        # its first byte, and the object is not "damaged"
        self.proxy.mode = "ok"
        more = self.rng.randbytes(5 * MIB)
        self.assertEqual(request(w, "PUT", "/cas/" + sha256(more), more)[0], 200)
        self.drained(w)
        self.proxy.cut, self.proxy.ignore_range = cut_once, True
        c = a.conn()
        c.request("GET", "/cas/" + sha256(more))
        r = c.getresponse()
        got = b""
        try:
            while True:
                piece = r.read(64 * KIB)
                if not piece:
                    break
                got += piece
        except (http.client.HTTPException, ConnectionError):  # (a timeout is a failure)
            pass
        c.close()
        self.proxy.cut, self.proxy.ignore_range = None, False
        self.assertTrue(r.status == 404 or got == b"", (r.status, len(got)))
        self.assertEqual(status(a)["tier"]["corrupt"], 0)

    def test_copy_of_a_source_still_arriving_from_the_tier(self):
        """An S3 CopyObject whose source this node has not read yet (a large
        one: it streams from the tier) copies it."""
        a, b = self.node(), self.node()
        body = self.rng.randbytes(3 * MIB)
        self.assertEqual(request(a, "PUT", "/copy-bucket")[0], 200)
        self.assertEqual(request(a, "PUT", "/copy-bucket/src", body)[0], 200)
        self.drained(a)
        self.proxy.delay = lambda m, p: 1 if m == "GET" and "/blobs/" in p else 0
        st, _, answer = request(b, "PUT", "/copy-bucket/dst",
                                headers={"x-amz-copy-source": "/copy-bucket/src"})
        self.proxy.delay = None
        self.assertEqual(st, 200, answer)
        self.assertEqual(sha256(request(b, "GET", "/copy-bucket/dst")[2]), sha256(body))
        # and a part copied from a range of a source that is only in the tier
        # (UploadPartCopy): the range read once the source is here
        other = self.rng.randbytes(2 * MIB)
        self.assertEqual(request(a, "PUT", "/copy-bucket/src2", other)[0], 200)
        self.drained(a)
        st, _, doc = request(b, "POST", "/copy-bucket/mp?uploads")
        self.assertEqual(st, 200, doc)
        up = re.search(rb"<UploadId>([^<]+)</UploadId>", doc).group(1).decode()
        self.proxy.delay = lambda m, p: 1 if m == "GET" and "/blobs/" in p else 0
        st, _, doc = request(b, "PUT", "/copy-bucket/mp?partNumber=1&uploadId=" + up,
                             headers={"x-amz-copy-source": "/copy-bucket/src2",
                                      "x-amz-copy-source-range": "bytes=10-1009"})
        self.proxy.delay = None
        self.assertEqual(st, 200, doc)
        self.assertIn(hashlib.md5(other[10:1010]).hexdigest().encode(), doc)
        done = ("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"%s\"</ETag>"
                "</Part></CompleteMultipartUpload>" % hashlib.md5(other[10:1010]).hexdigest())
        st, _, doc = request(b, "POST", "/copy-bucket/mp?uploadId=" + up, done.encode())
        self.assertEqual(st, 200, doc)
        self.assertEqual(request(b, "GET", "/copy-bucket/mp")[2], other[10:1010])

    def test_long_names_do_not_meet(self):
        """Buckets whose names share their first 61 characters, and native
        instances whose namespaces are long, keep apart in the tier."""
        a = self.node()
        stem = "b" * 61
        buckets = [stem + "xy", stem + "xz"]
        for i, bk in enumerate(buckets):
            self.assertEqual(request(a, "PUT", "/" + bk)[0], 200)
            self.assertEqual(request(a, "PUT", "/%s/same/key" % bk, b"in bucket %d" % i)[0], 200)
        inst = ["i" * 99 + c for c in "pq"]
        k = sha256(b"instance key")
        for i, n in enumerate(inst):
            self.assertEqual(request(a, "PUT", "/%s/ac/%s" % (n, k), b"instance %d" % i)[0], 200)
        self.drained(a)
        b = self.node()
        for i, bk in enumerate(buckets):
            self.assertEqual(request(b, "GET", "/%s/same/key" % bk)[2], b"in bucket %d" % i)
        for i, n in enumerate(inst):
            self.assertEqual(request(b, "GET", "/%s/ac/%s" % (n, k))[2], b"instance %d" % i)
        self.assertEqual(status(b)["tier"]["corrupt"], 0)

    def test_a_blob_stored_otherwise_by_another_node_is_kept_whole(self):
        """Nodes may store one body differently (here raw, and zstd): the
        tier keeps the first upload, and a refresh copies that object as it
        is, whatever the refreshing node's own copy looks like."""
        raw = self.node(extra=["--zstd-level", "0"])
        z = self.node(extra=["--tier-part-size", "5M", "--tier-refresh-after", "1s"])
        body = b"".join(b"line %d of a long build log\n" % i for i in range(500000))  # 13 MiB
        self.assertEqual(request(raw, "PUT", "/ac/" + sha256(b"raw"), body)[0], 200)
        self.drained(raw)
        self.assertEqual(request(z, "PUT", "/ac/" + sha256(b"zstd"), body)[0], 200)
        self.drained(z)
        self.assertEqual(status(z)["tier"]["uploads"], 0)  # the tier had the body already
        time.sleep(1.5)
        self.assertEqual(request(z, "GET", "/ac/" + sha256(b"zstd"))[2], body)  # a local hit
        self.assertTrue(wait_for(lambda: status(z)["tier"]["refreshes"] >= 1, timeout=30))
        self.drained(z)
        c = self.node()
        for name in (b"raw", b"zstd"):
            st, _, got = request(c, "GET", "/ac/" + sha256(name))
            self.assertEqual((st, sha256(got)), (200, sha256(body)))
        self.assertEqual(status(c)["tier"]["corrupt"], 0)

    def test_tier_down_then_back(self):
        self.proxy.mode = "down"
        data = self.folder()
        a = self.node(data=data)
        bodies = self.bodies(8)
        want = {}
        for b in bodies:
            path = "/cas/" + sha256(b)
            self.assertEqual(request(a, "PUT", path, b)[0], 200)
            want[path] = b
        # local hits are served; a miss answers within the tier timeout
        for path, b in want.items():
            self.assertEqual(request(a, "GET", path)[2], b)
        t0 = time.time()
        self.assertEqual(request(a, "GET", "/cas/" + sha256(b"nowhere"))[0], 404)
        self.assertLess(time.time() - t0, 8)
        wait_for(lambda: status(a)["tier"]["upload_failures"] > 0, timeout=10)
        self.assertGreater(status(a)["tier"]["queue"], 0)
        # kill -9 with a full queue; the tier comes back; the restart resumes
        a.kill9()
        self.proxy.mode = "ok"
        a.start()
        self.drained(a, timeout=90)
        self.assertEqual(set(self.blobs_in_tier()), {sha256(b) for b in bodies})
        b2 = self.node()
        for path, b in want.items():
            self.assertEqual(request(b2, "GET", path)[2], b)

    def test_a_full_node_refuses_new_bodies_until_the_tier_has_its_blobs(self):
        """Eviction drops only blobs the tier holds.  With the tier down, a
        node at its --max-size evicts nothing: a new body gets 507 (native)
        and 507 SlowDown (S3), every acknowledged body stays readable, and a
        body it already holds is still taken (it needs no room).  Once the
        tier has the blobs, eviction makes room and the refused body goes in."""
        a = self.node(extra=["--max-size", "4M", "--high-watermark", "90",
                             "--low-watermark", "50"])
        self.proxy.mode = "down"
        self.assertEqual(request(a, "PUT", "/full")[0], 200)
        stored, refused = [], None
        for _ in range(12):
            body = self.rng.randbytes(512 * KIB)
            st, _, text = request(a, "PUT", "/cas/" + sha256(body), body)
            if st == 507:
                refused = body
                break
            self.assertEqual(st, 200, text)
            stored.append(body)
        self.assertIsNotNone(refused, "12 x 512 KiB into a 4 MiB node, none refused")
        self.assertGreaterEqual(len(stored), 6)
        st, _, text = request(a, "PUT", "/full/refused", refused)
        self.assertEqual(st, 507)
        self.assertIn(b"<Code>SlowDown</Code>", text)
        self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"again"), stored[0])[0], 200)
        self.assertEqual(request(a, "PUT", "/full/again", stored[1])[0], 200)
        for body in stored:
            self.assertEqual(request(a, "GET", "/cas/" + sha256(body))[2], body)
        self.assertEqual(request(a, "GET", "/full/again")[2], stored[1])
        self.assertEqual(status(a)["eviction"]["blobs"], 0)
        self.assertEqual(status(a)["entries"]["blobs"], len(stored))

        self.proxy.mode = "ok"
        self.drained(a)
        self.assertEqual(request(a, "PUT", "/full/refused", refused)[0], 200)
        self.assertGreater(status(a)["eviction"]["blobs"], 0)
        for body in stored:  # (the evicted ones come back from the tier)
            self.assertEqual(request(a, "GET", "/cas/" + sha256(body))[2], body)
        self.assertEqual(request(a, "GET", "/ac/" + sha256(b"again"))[2], stored[0])

    def test_writes_beyond_the_queue_bound_are_refused(self):
        """--tier-queue-max bounds the bytes of blobs owed to a tier that is
        down: a new body beyond it gets 507 (S3: SlowDown) saying so, a body
        already owed is taken, and once the queue drains new bodies are
        taken again.  A body larger than the bound alone is taken when
        nothing else waits (else it could never be written)."""
        a = self.node(extra=["--tier-queue-max", "1M"])
        self.assertEqual(request(a, "PUT", "/bound")[0], 200)
        self.proxy.mode = "down"
        bodies = [self.rng.randbytes(300 * KIB) for _ in range(4)]
        for body in bodies[:3]:
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        st, _, text = request(a, "PUT", "/cas/" + sha256(bodies[3]), bodies[3])
        self.assertEqual(st, 507, text)
        self.assertIn(b"the cold tier is behind", text)
        st, _, text = request(a, "PUT", "/bound/b4", bodies[3])
        self.assertIn(b"<Code>SlowDown</Code>", text)
        self.assertIn(b"--tier-queue-max", text)
        self.assertEqual(request(a, "GET", "/cas/" + sha256(bodies[3]))[0], 404)
        self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"k"), bodies[0])[0], 200)
        self.proxy.mode = "ok"
        self.drained(a)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(bodies[3]), bodies[3])[0], 200)
        self.drained(a)
        big = self.rng.randbytes(1536 * KIB)
        self.proxy.mode = "down"
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(big), big)[0], 200)
        more = self.rng.randbytes(KIB)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(more), more)[0], 507)
        self.proxy.mode = "ok"
        self.drained(a)
        self.assertEqual(set(self.blobs_in_tier()), {sha256(b) for b in bodies + [big]})

    def test_tier_stopped_in_the_middle_of_uploads(self):
        a = self.node(extra=["--tier-workers", "2"])
        bodies = [self.rng.randbytes(2 * MIB) for _ in range(10)]
        for b in bodies:
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(b), b)[0], 200)
        wait_for(lambda: status(a)["tier"]["uploads"] >= 1, timeout=30, step=0.02)
        self.proxy.mode = "down"  # in the middle: some uploaded, some on the way, some queued
        for b in bodies:  # local hits go on
            self.assertEqual(sha256(request(a, "GET", "/cas/" + sha256(b))[2]), sha256(b))
        time.sleep(1)
        self.proxy.mode = "ok"
        self.drained(a, timeout=90)
        self.assertEqual(set(self.blobs_in_tier()), {sha256(b) for b in bodies})

    def test_tier_errors_slowness_and_credentials(self):
        a = self.node()
        body = self.rng.randbytes(50 * KIB)
        path = "/cas/" + sha256(body)
        for mode in ("500", "503", "403", "slow"):
            self.proxy.mode = mode
            other = self.rng.randbytes(1000)
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(other), other)[0], 200, mode)
            self.assertEqual(request(a, "GET", "/cas/" + sha256(other))[2], other, mode)
            t0 = time.time()
            self.assertEqual(request(a, "GET", "/cas/" + sha256(mode.encode()))[0], 404, mode)
            self.assertLess(time.time() - t0, 8, "a miss with the tier %s took too long" % mode)
        self.proxy.mode = "ok"
        self.assertEqual(request(a, "PUT", path, body)[0], 200)
        self.drained(a, timeout=120)
        self.assertIn(sha256(body), self.blobs_in_tier())
        # the log says what the tier said, and /status its last word
        log = a.read_log()
        for code in ("500", "503", "403"):
            self.assertIn("(HTTP %s Injected: fault)" % code, log)
        self.assertIn("Operation timed out", log)  # curl's words for the slow tier
        last = status(a)["tier"]["last_error"]
        self.assertIn("timed out", last["message"])
        self.assertGreaterEqual(last["seconds_ago"], 0)

    def test_a_new_node_answers_503_once_while_the_tier_hangs(self):
        """A node that does not know a bucket yet (new, or wiped), while the
        tier hangs: a read waits one --tier-timeout, not one for the key
        and another for the bucket, and answers 503; and reads beyond the
        threads that may wait for the tier, whose time went in waiting for
        one, get 503 too, not 500 "I/O error in the store"."""
        a = self.node()
        self.assertEqual(request(a, "PUT", "/hung")[0], 200)
        self.assertEqual(request(a, "PUT", "/hung/k", b"body")[0], 200)
        self.drained(a)
        b = self.node(extra=["--threads", "4"])  # 8 threads wait for the tier
        self.proxy.mode = "slow"
        got = {}

        def read(i):
            t0 = time.monotonic()
            st, _, body = request(b, "GET", "/hung/k%d" % i)
            got[i] = (st, time.monotonic() - t0, body)
        read(0)
        self.assertEqual(got[0][0], 503, got[0])
        self.assertLess(got[0][1], 5, "a read waited more than one --tier-timeout (3 s)")
        at_once(read, range(1, 21))
        self.assertEqual(sorted(st for st, _, _ in got.values()), [503] * 21, got)
        self.assertLess(max(t for _, t, _ in got.values()), 5, got)
        # readers of one key: those that waited for another's fetch of it
        # take its failure, and do not wait again for the bucket
        got.clear()

        def read_same(i):
            t0 = time.monotonic()
            st, _, body = request(b, "GET", "/hung/same")
            got[i] = (st, time.monotonic() - t0, body)
        at_once(read_same, range(8))
        self.assertEqual(sorted(st for st, _, _ in got.values()), [503] * 8, got)
        self.assertLess(max(t for _, t, _ in got.values()), 5, got)
        self.proxy.mode = "ok"
        st, _, body = request(b, "GET", "/hung/k")
        self.assertEqual((st, body), (200, b"body"))

    def test_reads_that_waited_out_their_time_for_the_tier_are_counted(self):
        """More cold reads at once than threads that may wait for the tier,
        while it is slow (each read holds a thread for its key record, then
        its blob, 4.5 s in all, over --tier-timeout): those that ran out of
        time waiting for a thread are misses, and counted as the tier's
        errors (they asked nothing, but a slow tier is why), with /status
        saying so; every read is counted once."""
        a = self.node()
        self.assertEqual(request(a, "PUT", "/waited")[0], 200)
        bodies = [self.rng.randbytes(70 * KIB) for _ in range(24)]
        for i, body in enumerate(bodies):
            self.assertEqual(request(a, "PUT", "/waited/k%d" % i, body)[0], 200)
        self.drained(a)
        b = self.node(extra=["--threads", "4"])  # 8 threads wait for the tier
        self.assertEqual(request(b, "HEAD", "/waited")[0], 200)  # (the bucket is known)
        self.proxy.delay = lambda m, p: 2 if "/keys/" in p else 2.5 if "/blobs/" in p else 0
        got = {}

        def read(i):
            got[i] = request(b, "GET", "/waited/k%d" % i)
        try:
            at_once(read, range(len(bodies)))
        finally:
            self.proxy.delay = None
        for i, (st, _, body) in got.items():
            self.assertIn(st, (200, 404))
            if st == 200:
                self.assertEqual(body, bodies[i])
        self.assertIn(404, [st for st, _, _ in got.values()])
        tier = status(b)["tier"]
        self.assertEqual(tier["hits"] + tier["errors"], len(bodies), tier)
        self.assertEqual(tier["misses"], 0, tier)
        self.assertIn("for a thread to ask the tier", tier["last_error"]["message"])

    def test_the_tiers_words_for_a_missing_bucket_and_a_refused_part(self):
        """The log and /status name what the tier said: a bucket that is
        not there (404 NoSuchBucket, not taken for a missing object), and a
        part of a multipart upload refused (its words, not the abort's
        after it)."""
        srv = Server(["--tier", "s3://no-such-bucket-here/p", "--tier-endpoint", self.proxy.url,
                      "--tier-timeout", "3s"], env=self.moto.creds)
        self.addCleanup(close_checked, self, srv, True)
        body = self.rng.randbytes(10 * KIB)
        self.assertEqual(request(srv, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.assertTrue(wait_for(lambda: status(srv)["tier"]["upload_failures"] > 0, timeout=20))
        self.assertIn("NoSuchBucket", status(srv)["tier"]["last_error"]["message"])
        self.assertRegex(srv.read_log(), r'"tier_upload_failed".*HTTP 404 NoSuchBucket')
        a = self.node(extra=["--tier-part-size", "5M"])
        self.proxy.fail = lambda m, p: 403 if m == "PUT" and "partNumber=" in p else None
        big = self.rng.randbytes(6 * MIB)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(big), big)[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["upload_failures"] > 0, timeout=20))
        self.assertRegex(a.read_log(), r'"tier_upload_failed".*HTTP 403 Injected: fault')
        self.proxy.fail = None
        self.drained(a)

    def test_s3_deletes_do_not_wait_for_the_tier(self):
        """S3's answer to a delete does not depend on whether the key was
        there: a node that does not hold the keys answers DELETE and
        DeleteObjects without asking the tier (a hung tier cost one
        --tier-timeout per key), logs no error for them, and the deletes
        still reach the tier."""
        import boto3
        a = self.node()
        self.assertEqual(request(a, "PUT", "/multi")[0], 200)
        for i in range(6):
            self.assertEqual(request(a, "PUT", "/multi/o/%d" % i, b"body %d" % i)[0], 200)
        self.drained(a)
        b = self.node()
        self.assertEqual(request(b, "HEAD", "/multi")[0], 200)  # (the bucket, from the tier)
        s3 = boto3.client("s3", endpoint_url=b.url, region_name="us-east-1",
                          aws_access_key_id="any", aws_secret_access_key="any")
        self.proxy.mode = "slow"
        t0 = time.monotonic()
        r = s3.delete_objects(Bucket="multi", Delete={
            "Objects": [{"Key": "o/%d" % i} for i in range(5)] + [{"Key": "never-written"}]})
        self.assertEqual(sorted(d["Key"] for d in r["Deleted"]),
                         sorted(["o/%d" % i for i in range(5)] + ["never-written"]))
        self.assertEqual(request(b, "DELETE", "/multi/o/5")[0], 204)
        self.assertLess(time.monotonic() - t0, 3, "one --tier-timeout (3 s) per key")
        self.proxy.mode = "ok"
        self.drained(b)
        self.assertNotIn("InternalError", b.read_log())
        c = self.node()
        for i in range(6):
            self.assertEqual(request(c, "GET", "/multi/o/%d" % i)[0], 404, i)

    def test_a_bucket_in_use_keeps_its_record_in_the_tier(self):
        """A bucket's record in the tier (its date) goes up again with the
        next key written once per --tier-refresh-after, so that a bucket in
        use outlives the lifecycle rule that expires unused entries, and a
        record the tier lost is back for the nodes that do not know the
        bucket yet."""
        a = self.node(extra=["--tier-refresh-after", "1s"])
        self.assertEqual(request(a, "PUT", "/kept")[0], 200)
        self.assertEqual(request(a, "PUT", "/kept/k1", b"one")[0], 200)
        self.drained(a)
        record = "%s/ns/%s" % (self.PREFIX, b"s3/kept".hex())
        self.moto.client().delete_object(Bucket=self.BUCKET, Key=record)  # (expired)
        f = self.node()
        self.assertEqual(request(f, "PUT", "/kept/k0", b"zero")[0], 404)  # NoSuchBucket, for now
        time.sleep(1.1)
        self.assertEqual(request(a, "PUT", "/kept/k2", b"two")[0], 200)
        self.drained(a)
        self.assertIn(record, self.moto.objects(self.BUCKET, self.PREFIX + "/ns/"))
        g = self.node()
        self.assertEqual(request(g, "HEAD", "/kept")[0], 200)
        self.assertEqual(request(g, "PUT", "/kept/k3", b"three")[0], 200)
        self.assertEqual(request(g, "GET", "/kept/k2")[2], b"two")

    def test_a_node_that_only_reads_a_bucket_keeps_its_record(self):
        """A node that never wrote into a bucket, and does not hold its record,
        refreshes the key records it reads: the bucket's record must stay in
        the tier (it was deleted, and new nodes took the bucket for gone),
        and goes up again, as the tier has it, so that reads keep a bucket in
        use too."""
        a = self.node()
        self.assertEqual(request(a, "PUT", "/readonly")[0], 200)
        self.assertEqual(request(a, "PUT", "/readonly/k1", b"one")[0], 200)
        self.assertEqual(request(a, "PUT", "/readonly/k2", self.rng.randbytes(200 * KIB))[0], 200)
        self.drained(a)
        record = "%s/ns/%s" % (self.PREFIX, b"s3/readonly".hex())
        c = self.moto.client()
        head = c.head_object(Bucket=self.BUCKET, Key=record)
        y = self.node(extra=["--tier-refresh-after", "1s"])
        for _ in range(2):  # read through, then (the copies older than 1 s) read here
            self.assertEqual(request(y, "GET", "/readonly/k2")[0], 200)
            self.assertEqual(request(y, "GET", "/readonly/k1")[2], b"one")
            time.sleep(1.1)
        self.assertTrue(wait_for(lambda: status(y)["tier"]["refreshes"] > 0, timeout=10),
                        status(y)["tier"])
        self.drained(y)
        self.assertTrue(wait_for(lambda: c.head_object(Bucket=self.BUCKET, Key=record)[
            "LastModified"] > head["LastModified"], timeout=10), "the record was not put again")
        again = c.get_object(Bucket=self.BUCKET, Key=record)["Body"].read()
        self.assertEqual(again, c.get_object(Bucket=self.BUCKET, Key=record)["Body"].read())
        g = self.node()
        self.assertEqual(request(g, "HEAD", "/readonly")[0], 200)
        self.assertEqual(request(g, "PUT", "/readonly/k3", b"three")[0], 200)
        self.assertEqual(request(a, "GET", "/")[2], request(g, "GET", "/")[2])  # same date

    def test_a_tier_back_after_an_outage_gets_the_queue_at_once(self):
        """Entries that failed wait longer after each failure (1 s, 2 s, 4 s,
        ...): once the tier answers again, all of them go at once, and a
        drain tries them now rather than at the end of their waits."""
        a = self.node()
        self.proxy.mode = "down"
        bodies = [self.rng.randbytes(10 * KIB) for _ in range(4)]
        for b in bodies:
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(b), b)[0], 200)
        time.sleep(17)
        self.assertGreater(status(a)["tier"]["queue"], 0)
        # each entry failed once; then, every try failing, only probes (1, 3, 7 and
        # 15 s after), not each entry at the end of its own backoff (1, 2, 4, 8 s)
        self.assertLessEqual(status(a)["tier"]["upload_failures"], 10)
        self.proxy.mode = "ok"
        t0 = time.monotonic()
        st, _, got = request(a, "POST", "/admin/drain?timeout=5")
        self.assertEqual(st, 200, got)
        self.assertLess(time.monotonic() - t0, 6)
        self.assertEqual(set(self.blobs_in_tier()), {sha256(b) for b in bodies})
        self.assertIn('"tier_back"', a.read_log())

    def test_a_tier_back_while_writes_go_on_gets_the_queue_at_once(self):
        """While writes keep coming, something is always due and no probe is
        tried: the first new entry that gets through after an outage makes
        the entries that failed go at once, not at the end of their waits
        (as when a parent cairnd restarts).  The outage here is a tier that
        refuses the node's keys (403: keys rotated, a clock off), which says
        no more about an entry than a tier that is down (the test before)."""
        a = self.node()
        first = self.rng.randbytes(10 * KIB)  # (what the node's start asked for is done)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(first), first)[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["queue"] == 0, timeout=10))
        self.proxy.mode = "403"
        bodies = [first] + [self.rng.randbytes(10 * KIB) for _ in range(4)]
        for b in bodies[1:]:
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(b), b)[0], 200)
        time.sleep(17)  # the entries that failed wait for a probe (1 to 15 s apart)
        self.proxy.mode = "ok"
        c = a.conn()
        for _ in range(30):
            bodies.append(self.rng.randbytes(2 * KIB))
            c.request("PUT", "/cas/" + sha256(bodies[-1]), body=bodies[-1])
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        c.close()
        self.assertTrue(wait_for(lambda: status(a)["tier"]["queue"] == 0, timeout=8),
                        status(a)["tier"])
        self.assertEqual(set(self.blobs_in_tier()), {sha256(b) for b in bodies})
        self.assertIn('"tier_back"', a.read_log())

    def test_a_body_written_again_after_its_tier_copy_aged_goes_up_again(self):
        """A write of a body the node holds, whose copy in the tier is older
        than --tier-refresh-after (the bucket's rules may have expired it),
        sends the blob again, or renews it, before its key record; the local
        copy is kept until then.  A node that never had the body renews an
        old copy it finds there too, rather than taking it as it is."""
        a = self.node(extra=["--tier-refresh-after", "1s"])
        body = self.rng.randbytes(200 * KIB)
        name = "%s/blobs/%s" % (self.PREFIX, sha256(body))
        self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"first"), body)[0], 200)
        self.drained(a)
        s3 = self.moto.client()
        s3.delete_object(Bucket=self.BUCKET, Key=name)  # as a lifecycle rule would
        time.sleep(1.5)
        self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"second"), body)[0], 200)
        self.drained(a)
        self.assertIn(sha256(body), self.blobs_in_tier())
        b = self.node()
        self.assertEqual(request(b, "GET", "/ac/" + sha256(b"second"))[2], body)
        before = s3.head_object(Bucket=self.BUCKET, Key=name)["LastModified"]
        time.sleep(2.2)
        c = self.node(extra=["--tier-refresh-after", "1s"])
        self.assertEqual(request(c, "PUT", "/ac/" + sha256(b"third"), body)[0], 200)
        self.drained(c)
        self.assertEqual(status(c)["tier"]["refreshes"], 1)
        if self.BACKEND is Moto:  # (s3rver keeps an object's date through a copy onto itself)
            self.assertGreater(s3.head_object(Bucket=self.BUCKET, Key=name)["LastModified"],
                               before)

    def test_a_body_written_again_after_the_tier_lost_its_blob_goes_up_again(self):
        """A write of a body the node holds, whose copy the tier has lost
        since (a bucket made again, a rule that expires it early, removed by
        hand), puts the blob back before the key record: the new key reads
        through another node, and the local copy is not evicted before."""
        a = self.node()
        body = self.rng.randbytes(300 * KIB)
        self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"first"), body)[0], 200)
        self.drained(a)
        self.moto.client().delete_object(Bucket=self.BUCKET,
                                         Key="%s/blobs/%s" % (self.PREFIX, sha256(body)))
        self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"second"), body)[0], 200)
        self.drained(a)
        self.assertIn(sha256(body), self.blobs_in_tier())
        self.assertEqual(request(a, "POST", "/admin/evict?to=0")[0], 200)
        b = self.node()
        self.assertEqual(request(b, "GET", "/ac/" + sha256(b"second"))[2], body)
        self.assertEqual(request(a, "GET", "/ac/" + sha256(b"second"))[2], body)
        # a body the tier still has is looked for, not sent again
        self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"third"), body)[0], 200)
        self.drained(a)
        self.assertEqual(status(a)["tier"]["uploads"], 2)  # (blobs)
        self.assertEqual(status(a)["tier"]["already_there"], 1)

    def test_a_multipart_upload_the_tier_went_away_from_is_aborted_later(self):
        """A blob's upload in parts that fails, and whose abort fails too
        (the tier went away in the middle), is aborted once the tier answers
        again: no parts are left in the bucket."""
        a = self.node(extra=["--tier-part-size", "5M"])
        state = {"failing": True}
        self.proxy.fail = lambda m, p: "503" if state["failing"] and (
            "partNumber=2" in p or (m == "DELETE" and "uploadId=" in p)) else None
        body = self.rng.randbytes(12 * MIB)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["upload_failures"] > 0, timeout=20))
        state["failing"] = False
        st, _, got = request(a, "POST", "/admin/drain?timeout=20")
        self.assertEqual(st, 200, got)
        self.assertTrue(wait_for(lambda: not self.moto.client().list_multipart_uploads(
            Bucket=self.BUCKET).get("Uploads"), timeout=10),
            self.moto.client().list_multipart_uploads(Bucket=self.BUCKET).get("Uploads"))
        self.assertIn(sha256(body), self.blobs_in_tier())
        self.assertIn('"tier_uploads_aborted"', a.read_log())

    def test_misses_answer_within_the_timeout_when_many_wait(self):
        """More cold reads than threads that may wait for the tier, with the
        tier hanging: a read's wait for such a thread comes out of its
        --tier-timeout (3 s here), so every miss is answered within it, not
        one batch of threads after another (8 threads: 3, 6, 9 s)."""
        a = self.node(extra=["--threads", "1"])
        self.proxy.mode = "slow"
        took, answers = [], []

        def miss(i):
            t0 = time.monotonic()
            st = request(a, "GET", "/cas/" + sha256(b"never %d" % i), timeout=60)[0]
            took.append(time.monotonic() - t0)
            answers.append(st)
        at_once(miss, range(24))
        self.proxy.mode = "ok"
        self.assertEqual(answers, [404] * 24)
        self.assertLess(max(took), 5.5, sorted(took))

    def test_a_node_that_cannot_ask_the_tier_for_a_bucket_does_not_deny_it(self):
        """A bucket another node made, asked for through a node that does not
        know it yet while the tier is down: 503 (retry), never NoSuchBucket;
        a write to it is not refused as if the bucket did not exist."""
        a = self.node()
        self.assertEqual(request(a, "PUT", "/elsewhere")[0], 200)
        self.assertEqual(request(a, "PUT", "/elsewhere/k", b"from a")[0], 200)
        self.drained(a)
        b = self.node()
        self.proxy.mode = "down"
        for method, path, body in (("HEAD", "/elsewhere", None), ("GET", "/elsewhere/k", None),
                                   ("PUT", "/elsewhere/new", b"from b"),
                                   ("GET", "/elsewhere?list-type=2", None)):
            st, _, got = request(b, method, path, body)
            self.assertEqual(st, 503, (method, path, got))
            if method != "HEAD":
                self.assertIn(b"<Code>ServiceUnavailable</Code>", got)
        self.assertEqual(request(b, "GET", "/nowhere/k")[0], 503)  # nor one that does not exist
        # many at once, the tier hanging: one asks it, the others share its answer
        self.proxy.mode = "slow"
        answers = []

        def put(i):
            answers.append(request(b, "PUT", "/elsewhere/p%d" % i, b"x", timeout=60)[0])
        at_once(put, range(6), timeout=60)
        self.assertEqual(answers, [503] * 6)
        self.proxy.mode = "ok"
        self.assertEqual(request(b, "PUT", "/elsewhere/new", b"from b")[0], 200)
        self.assertEqual(request(b, "GET", "/elsewhere/k")[2], b"from a")
        st, _, got = request(b, "GET", "/nowhere/k")
        self.assertEqual(st, 404)
        self.assertIn(b"<Code>NoSuchBucket</Code>", got)

    def test_a_node_holding_a_buckets_keys_knows_the_bucket_while_the_tier_is_down(self):
        """A bucket a node knows only by keys it read through the tier: with
        the tier down, writes and HEAD of it are answered (not 503), and
        DeleteBucket gets BucketNotEmpty, as with the tier up.  A listing of
        its keys, which are the fleet's, is a 503 (retried)."""
        a = self.node()
        self.assertEqual(request(a, "PUT", "/held")[0], 200)
        self.assertEqual(request(a, "PUT", "/held/k", b"from a")[0], 200)
        self.drained(a)
        b = self.node()
        self.assertEqual(request(b, "GET", "/held/k")[2], b"from a")
        self.assertTrue(wait_for(lambda: status(b)["entries"]["keys"] == 1), status(b))
        self.proxy.mode = "down"
        self.assertEqual(request(b, "PUT", "/held/new", b"from b")[0], 200)
        self.assertEqual(request(b, "HEAD", "/held")[0], 200)
        st, _, got = request(b, "GET", "/held?list-type=2")
        self.assertEqual(st, 503, got)
        self.assertIn(b"<Code>ServiceUnavailable</Code>", got)
        st, _, got = request(b, "DELETE", "/held")
        self.assertEqual(st, 409, got)
        self.assertIn(b"<Code>BucketNotEmpty</Code>", got)
        st, _, got = request(b, "PUT", "/held")
        self.assertEqual(st, 409, got)
        self.assertIn(b"<Code>BucketAlreadyOwnedByYou</Code>", got)
        self.proxy.mode = "ok"
        self.drained(b)
        self.assertEqual(request(self.node(), "GET", "/held/new")[2], b"from b")

    def test_a_bucket_another_node_made_is_deleted_through_any_node(self):
        a = self.node()
        for bucket in ("emptied", "still-used"):
            self.assertEqual(request(a, "PUT", "/" + bucket)[0], 200)
            self.assertEqual(request(a, "PUT", "/%s/k" % bucket, b"x")[0], 200)
        self.assertEqual(request(a, "DELETE", "/emptied/k")[0], 204)
        self.drained(a)
        b = self.node()
        st, _, got = request(b, "DELETE", "/still-used")
        self.assertEqual(st, 409, got)
        self.assertIn(b"<Code>BucketNotEmpty</Code>", got)
        self.assertEqual(request(b, "DELETE", "/emptied")[0], 204)
        self.drained(b)
        c = self.node()  # (a still holds its own copy of the bucket: not told)
        self.assertEqual(request(c, "HEAD", "/emptied")[0], 404)
        self.assertEqual(request(c, "HEAD", "/still-used")[0], 200)
        self.assertEqual(request(b, "DELETE", "/never-made")[0], 404)

    def test_a_bucket_another_node_made_is_not_made_again(self):
        """CreateBucket of a bucket the fleet has, through a node that has
        not heard of it: 409 BucketAlreadyOwnedByYou, as from the node that
        made it, and the bucket keeps its date.  (While the tier cannot be
        asked, a bucket is made, as writes are taken.)"""
        import re
        a = self.node()
        self.assertEqual(request(a, "PUT", "/made-once")[0], 200)
        self.drained(a)
        made = re.findall(rb"<CreationDate>([^<]*)<", request(a, "GET", "/")[2])
        b = self.node()
        st, _, got = request(b, "PUT", "/made-once")
        self.assertEqual(st, 409, got)
        self.assertIn(b"<Code>BucketAlreadyOwnedByYou</Code>", got)
        self.drained(b)
        c = self.node()
        self.assertEqual(re.findall(rb"<CreationDate>([^<]*)<", request(c, "GET", "/")[2]), made)
        # made through a node while the tier cannot be asked: once it can,
        # the node takes the fleet's record, and puts none over it
        self.proxy.fail = lambda m, p: "503" if "/ns/" in p else None
        d = self.node()
        self.assertEqual(request(d, "PUT", "/made-once")[0], 200)
        self.assertNotEqual(re.findall(rb"<CreationDate>([^<]*)<", request(d, "GET", "/")[2]),
                            made)
        self.proxy.fail = None
        # (a key written at once sends its bucket's record as well: not over the fleet's)
        self.assertEqual(request(d, "PUT", "/made-once/k", b"a key")[0], 200)
        self.drained(d)
        self.assertEqual(re.findall(rb"<CreationDate>([^<]*)<", request(d, "GET", "/")[2]), made)
        self.assertEqual(re.findall(rb"<CreationDate>([^<]*)<",
                                    request(self.node(), "GET", "/")[2]), made)

    def test_a_bucket_made_while_the_tier_is_slow_holds_up_no_local_hit(self):
        """CreateBucket asks the tier whether another node made the bucket,
        on a thread that may wait: a node with one HTTP thread answers its
        local hits meanwhile.  With the tier up, a new name is made."""
        a = self.node(extra=["--threads", "1"])
        body = self.rng.randbytes(1000)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.assertEqual(request(a, "PUT", "/brand-new")[0], 200)
        self.assertEqual(request(a, "HEAD", "/brand-new")[0], 200)
        self.proxy.mode = "slow"
        seen = len(self.proxy.paths)
        answers = []
        maker = threading.Thread(
            target=lambda: answers.append(request(a, "PUT", "/made-slowly", timeout=60)[0]))
        maker.start()
        record = "/ns/" + b"s3/made-slowly".hex()  # (the bucket's record in the tier)
        self.assertTrue(wait_for(lambda: any(p.endswith(record)
                                             for p in self.proxy.paths[seen:]), timeout=10))
        self.assertEqual(request(a, "GET", "/cas/" + sha256(body))[2], body)
        self.assertEqual(answers, [], "the local hit waited for the bucket's creation")
        maker.join(60)
        self.proxy.mode = "ok"
        self.assertEqual(answers, [200])  # (the tier could not say: made here)
        self.assertEqual(request(a, "HEAD", "/made-slowly")[0], 200)

    def test_a_node_lists_the_buckets_other_nodes_made(self):
        import re
        a = self.node()
        for bucket in ("made-on-a", "dropped-on-a"):
            self.assertEqual(request(a, "PUT", "/" + bucket)[0], 200)
        self.assertEqual(request(a, "DELETE", "/dropped-on-a")[0], 204)
        self.drained(a)
        b = self.node()
        self.assertEqual(request(b, "PUT", "/made-on-b")[0], 200)
        st, _, got = request(b, "GET", "/")
        self.assertEqual(st, 200, got)
        self.assertEqual(re.findall(rb"<Name>([^<]*)</Name>", got), [b"made-on-a", b"made-on-b"])
        self.assertEqual(len(re.findall(rb"<CreationDate>20\d\d-", got)), 2, got)
        self.proxy.mode = "down"  # the tier cannot be listed: the buckets known here
        st, _, got = request(b, "GET", "/")
        self.assertEqual(re.findall(rb"<Name>([^<]*)</Name>", got), [b"made-on-a", b"made-on-b"])
        # listed, but its bucket records do not come: one is waited for, not each
        self.proxy.mode = "ok"
        for i in range(4):
            self.assertEqual(request(a, "PUT", "/more-%d" % i)[0], 200)
        self.drained(a)
        self.proxy.delay = lambda m, p: 30 if m == "GET" and "/ns/" in p else 0
        t0 = time.monotonic()
        st, _, got = request(b, "GET", "/", timeout=60)
        took = time.monotonic() - t0
        self.proxy.delay = None
        self.assertEqual(re.findall(rb"<Name>([^<]*)</Name>", got), [b"made-on-a", b"made-on-b"])
        self.assertLess(took, 8, "one --tier-timeout (3 s), not one per bucket (12 s)")

    def test_corrupt_tier_object_is_a_miss(self):
        a = self.node()
        body = self.rng.randbytes(200 * KIB)
        path = "/cas/" + sha256(body)
        self.assertEqual(request(a, "PUT", path, body)[0], 200)
        self.drained(a)

        def flip(data, meta):
            data[1000] ^= 0xFF
        self.change_in_tier(body, flip)
        b = self.node()
        self.assertEqual(request(b, "GET", path)[0], 404)
        self.assertEqual(status(b)["tier"]["corrupt"], 1)
        self.assertEqual(status(b)["entries"]["keys"], 0)

    def test_a_damaged_blob_is_remembered_and_replaced(self):
        """A blob whose tier copy failed its checks here twice in a row (not
        bytes hurt once on their way) is a miss from then on, a HEAD too (a
        client that asks before it uploads, as ccache does, uploads it
        again), and is not fetched again; an upload of its body from here
        puts a good copy over the damaged one, which a fresh node then reads.
        A read that failed counts as a miss, not a hit."""
        a = self.node()
        body = self.rng.randbytes(2 * MIB)  # (random: stored raw, read while it arrives)
        path = "/cas/" + sha256(body)
        self.assertEqual(request(a, "PUT", path, body)[0], 200)
        self.drained(a)

        def flip(data, meta):
            data[len(data) // 2] ^= 0xFF
        self.change_in_tier(body, flip)
        d = self.node()
        for n in (1, 2):
            try:
                st, _, got = request(d, "GET", path)
            except (http.client.HTTPException, ConnectionError):  # (cut short)
                st, got = None, b""
            self.assertLess(len(got), len(body))
            self.assertTrue(wait_for(lambda: status(d)["tier"]["corrupt"] == n, timeout=10))
            self.assertTrue(wait_for(lambda: metric_value(scrape(d), "cairn_cache_misses_total",
                                                          frontend="native") == n, timeout=10))
        m = scrape(d)
        self.assertEqual(metric_value(m, "cairn_tier_reads_total", result="hit"), 0)
        self.assertEqual(metric_value(m, "cairn_cache_hits_total", frontend="native", level="tier"), 0)
        # damaged twice: misses at once, the blob not asked for again
        seen = len(self.proxy.paths)
        self.assertEqual(request(d, "HEAD", path)[0], 404)
        self.assertEqual(request(d, "GET", path)[0], 404)
        self.assertFalse([p for p in self.proxy.paths[seen:] if "/blobs/" in p])
        self.assertEqual(status(d)["tier"]["corrupt"], 2)
        # the client uploads it again through d: the good copy goes over the damaged one
        self.assertEqual(request(d, "PUT", path, body)[0], 200)
        self.drained(d)
        self.assertEqual(status(d)["tier"]["replaced"], 1)
        tier_copy = self.moto.client().get_object(
            Bucket=self.BUCKET, Key="%s/blobs/%s" % (self.PREFIX, sha256(body)))["Body"].read()
        self.assertEqual(sha256(tier_copy), sha256(body))
        e = self.node()
        st, _, got = request(e, "GET", path)
        self.assertEqual((st, sha256(got)), (200, sha256(body)))
        self.assertEqual(metric_value(scrape(e), "cairn_tier_reads_total", result="hit"), 1)

    def test_a_damaged_raw_blob_is_a_miss_and_no_byte_of_it_is_answered(self):
        """A raw blob (random bytes: no frame checksums) damaged in the tier
        near its start: a cold read is a 404, not a 200 whose first bytes
        are wrong; readers at once get a 404 or nothing, never its bytes;
        a good raw blob read at once by several is whole for each."""
        a = self.node()
        bad, good = self.rng.randbytes(3 * MIB), self.rng.randbytes(3 * MIB + 7)
        for b in (bad, good):
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(b), b)[0], 200)
        self.drained(a)

        def flip(data, meta):
            self.assertNotEqual(meta.get("cairn-codec"), "zstd")
            data[1000] ^= 0xFF
        self.change_in_tier(bad, flip)
        b = self.node()
        st, _, got = request(b, "GET", "/cas/" + sha256(bad))
        self.assertEqual(st, 404, got[:100])
        self.assertTrue(wait_for(lambda: status(b)["tier"]["corrupt"] == 1, timeout=10))
        c = self.node()
        for body, whole in ((bad, False), (good, True)):
            out = []

            def get(body=body):
                try:
                    st, _, got = request(c, "GET", "/cas/" + sha256(body))
                except (http.client.HTTPException, ConnectionError):  # (cut short)
                    st, got = None, b""
                out.append((st, got))
            ts = [threading.Thread(target=get) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            for st, got in out:
                if whole:
                    self.assertEqual((st, sha256(got)), (200, sha256(body)))
                else:
                    self.assertEqual(got if st == 200 else b"", b"", "damaged bytes answered")
                    self.assertIn(st, (404, 200, None))

    def test_a_compressed_blob_damaged_near_its_start_is_fetched_again_by_the_next_read(self):
        """A zstd blob whose first frame arrives damaged, the rest of the
        answer slow to come (here: stalled for 6 s half-way): the fetch ends
        at the damaged frame, so a read right after the first one was cut
        fetches the blob again and gets all of it, rather than joining the
        download of a copy known to be damaged and being cut in turn."""
        a = self.node(extra=["--tier-timeout", "10s"])  # (the stall is not a stall to it)
        text = self.rng.randbytes(6 * MIB).hex().encode()  # (compresses to about half)
        path = "/cas/" + sha256(text)
        self.assertEqual(request(a, "PUT", path, text)[0], 200)
        self.drained(a)
        blob_gets = []

        def first_blob_get(m, p):
            if m == "GET" and "/blobs/" in p:
                blob_gets.append(p)
                return len(blob_gets) == 1
            return False
        self.proxy.fail = lambda m, p: "flip" if first_blob_get(m, p) else None
        self.proxy.flip_at = lambda data: 100
        self.proxy.released = []
        self.proxy.stall = lambda m, p: 6 if len(blob_gets) == 1 and "/blobs/" in p else 0
        try:
            b = self.node(extra=["--tier-timeout", "10s"])
            try:
                st, _, got = request(b, "GET", path)
            except (http.client.HTTPException, ConnectionError):  # (cut short)
                st, got = None, b""
            self.assertEqual(got if st == 200 else b"", b"", "damaged bytes answered")
            # the next reads: one that came as the damaged fetch ended is a
            # miss, or cut short; within the 6 s the rest of it would take,
            # the blob is fetched again, whole
            for _ in range(10):
                try:
                    st, _, got = request(b, "GET", path)
                except (http.client.HTTPException, ConnectionError):
                    st, got = None, b""
                if st == 200:
                    break
                time.sleep(0.1)
            self.assertEqual((st, sha256(got)), (200, sha256(text)))
            self.assertEqual(len(blob_gets), 2)
            self.assertEqual(self.proxy.released, [])  # (before the damaged answer's stall ended)
            self.assertEqual(status(b)["tier"]["corrupt"], 1)
        finally:
            self.proxy.fail = self.proxy.flip_at = self.proxy.stall = None

    def test_a_seek_table_that_lies_is_a_miss(self):
        """A zstd blob whose frames and SHA-256 are right but whose seek table
        says the frames begin elsewhere (two compressed sizes swapped: the
        sums still match) fails the checks of a read while it arrives: it is
        counted damaged and never kept, rather than kept and failing every
        range read of the local copy later."""
        a = self.node()
        text = b"".join(b"entry %d of a build log, %s\n" % (i, b"x" * (i % 37))
                        for i in range(120000))[:3 * MIB + 4321]
        path = "/cas/" + sha256(text)
        self.assertEqual(request(a, "PUT", path, text)[0], 200)
        self.drained(a)

        def swap_sizes(data, meta):
            self.assertEqual(meta.get("cairn-codec"), "zstd")
            nf = int.from_bytes(data[-9:-5], "little")
            table = len(data) - (8 + 8 * nf + 9)
            e0, e1 = table + 8, table + 16  # (compressed, decompressed) pairs of frames 0 and 1
            c0, c1 = data[e0:e0 + 4], data[e1:e1 + 4]
            self.assertNotEqual(c0, c1)
            data[e0:e0 + 4], data[e1:e1 + 4] = c1, c0
        self.change_in_tier(text, swap_sizes)
        b = self.node()
        try:
            st, _, got = request(b, "GET", path)
        except (http.client.HTTPException, ConnectionError):  # (a timeout is a failure)
            st, got = None, b""
        self.assertNotEqual(sha256(got), sha256(text), "a blob with a lying seek table was served whole")
        self.assertTrue(wait_for(lambda: status(b)["tier"]["corrupt"] == 1, timeout=10))
        self.assertEqual(status(b)["entries"]["keys"], 0)


    def test_blobs_in_use_are_refreshed(self):
        """A blob read here whose tier copy is older than --tier-refresh-after
        is copied onto itself (a new date for the lifecycle rules) with its
        key records; one the tier lost (expired) is uploaded again."""
        a = self.node(extra=["--tier-refresh-after", "1s"])
        kept, lost = self.rng.randbytes(200 * KIB), self.rng.randbytes(150 * KIB)
        for b in (kept, lost):
            self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"key " + b[:8]), b)[0], 200)
        self.drained(a)
        s3 = self.moto.client()
        names = {b: "%s/blobs/%s" % (self.PREFIX, sha256(b)) for b in (kept, lost)}
        h = s3.head_object(Bucket=self.BUCKET, Key=names[kept])
        before, etag = h["LastModified"], h["ETag"]
        s3.delete_object(Bucket=self.BUCKET, Key=names[lost])  # as a lifecycle rule would
        time.sleep(2.2)
        for b in (kept, lost):
            self.assertEqual(request(a, "GET", "/ac/" + sha256(b"key " + b[:8]))[2], b)

        def refreshed():
            try:
                h = s3.head_object(Bucket=self.BUCKET, Key=names[kept])
                s3.head_object(Bucket=self.BUCKET, Key=names[lost])
            except Exception:
                return False
            # s3rver keeps an object's date through a copy onto itself (S3 and
            # moto renew it): there, the count of refreshes says it was done
            return (h["LastModified"] > before if self.BACKEND is Moto
                    else status(a)["tier"]["refreshes"] >= 1)
        self.assertTrue(wait_for(refreshed, timeout=30), "blobs in use were not refreshed")
        # the copy was of the object as its HEAD found it, and no other
        copies = [hs for m, p, hs in self.proxy.headers
                  if m == "PUT" and p.endswith(names[kept]) and "x-amz-copy-source" in hs]
        self.assertTrue(copies)
        self.assertTrue(all(hs.get("x-amz-copy-source-if-match") == etag for hs in copies),
                        copies)
        self.drained(a)
        b2 = self.node()
        self.assertEqual(request(b2, "GET", "/ac/" + sha256(b"key " + lost[:8]))[2], lost)

    def test_a_blob_read_through_the_tier_is_refreshed_too(self):
        """A cold read is a read: a node with an empty folder that reads a key
        whose blob the tier has had longer than --tier-refresh-after copies
        the blob onto itself and sends the key's record again, as for a read
        of a copy it held (an entry read on a different node each time, or
        only after its eviction, would otherwise expire in use)."""
        a = self.node()
        k, body = "/ac/" + sha256(b"read cold, refreshed"), self.rng.randbytes(200 * KIB)
        self.assertEqual(request(a, "PUT", k, body)[0], 200)
        self.drained(a)
        time.sleep(1.2)
        b = self.node(extra=["--tier-refresh-after", "1s"])
        seen = len(self.proxy.headers)
        self.assertEqual(request(b, "GET", k)[::2], (200, body))
        self.assertTrue(wait_for(lambda: status(b)["tier"]["refreshes"] == 1, timeout=30),
                        status(b)["tier"])
        self.drained(b)
        sent = [(m, p) for m, p, h in self.proxy.headers[seen:] if m == "PUT"]
        self.assertIn(("PUT", "/%s/%s/blobs/%s" % (self.BUCKET, self.PREFIX, sha256(body))), sent)
        self.assertTrue(any("/keys/" in p for _, p in sent), sent)
        self.assertEqual(request(self.node(), "GET", k)[::2], (200, body))

    def uploads_left(self):
        """Multipart uploads begun and neither completed nor aborted (s3rver
        cannot list them)."""
        if self.BACKEND is not Moto:
            return []
        return self.moto.client().list_multipart_uploads(Bucket=self.BUCKET).get("Uploads", [])

    def test_large_blobs_go_up_and_are_refreshed_in_parts(self):
        """A blob larger than --tier-part-size goes to the tier in parts (S3
        takes at most 5 GiB in one PUT).  A part that fails is sent again; an
        upload whose part keeps failing is aborted (its parts would be billed)
        and done again later.  A refresh copies it onto itself in parts (S3
        copies at most 5 GiB at once).  Another node reads it back."""
        a = self.node(extra=["--tier-part-size", "5M", "--tier-refresh-after", "1s"])
        s3 = self.moto.client()
        sent = {}

        aborts = []

        def fail(method, path):
            """part 2 of the first blob fails once; of the second, 4 times"""
            if method == "DELETE" and "uploadId=" in path:
                aborts.append(path)
            if method != "PUT" or "partNumber=2&" not in path:
                return None
            blob = path.split("?")[0].rsplit("/", 1)[1]
            sent[blob] = sent.get(blob, 0) + 1
            return 500 if sent[blob] <= fails.get(blob, 0) else None
        big = [self.rng.randbytes(13 * MIB), self.rng.randbytes(11 * MIB)]  # random: 3 parts each
        fails = {sha256(big[0]): 1, sha256(big[1]): 4}
        self.proxy.fail = fail
        keys = ["/ac/" + sha256(b"big %d" % i) for i in range(2)]
        for k, b in zip(keys, big):
            self.assertEqual(request(a, "PUT", k, b)[0], 200)
        self.drained(a)
        names = ["%s/blobs/%s" % (self.PREFIX, sha256(b)) for b in big]
        for name, b in zip(names, big):
            h = s3.head_object(Bucket=self.BUCKET, Key=name)
            if self.BACKEND is Moto:  # s3rver gives a multipart object a plain ETag
                self.assertTrue(h["ETag"].strip('"').endswith("-3"), h["ETag"])
            self.assertEqual(h["Metadata"].get("cairn-size"), str(len(b)))
        self.assertEqual(sent[sha256(big[0])], 2)  # sent again at once
        self.assertEqual(sent[sha256(big[1])], 5)  # 3 tries, aborted; then 2 more
        self.assertEqual(len(aborts), 1)
        self.assertEqual(self.uploads_left(), [])
        self.proxy.fail = None

        before = s3.head_object(Bucket=self.BUCKET, Key=names[0])["LastModified"]
        time.sleep(2.2)
        self.assertEqual(request(a, "GET", keys[0])[2], big[0])  # a local hit: refreshes it

        def refreshed():
            if status(a)["tier"]["refreshes"] < 1:
                return False
            h = s3.head_object(Bucket=self.BUCKET, Key=names[0])
            return self.BACKEND is not Moto or h["LastModified"] > before
        self.assertTrue(wait_for(refreshed, timeout=30), "the large blob was not refreshed")
        self.drained(a)
        h = s3.head_object(Bucket=self.BUCKET, Key=names[0])
        self.assertEqual(h["Metadata"].get("cairn-size"), str(len(big[0])))
        self.assertEqual(self.uploads_left(), [])
        b = self.node()
        for k, body in zip(keys, big):
            self.assertEqual(sha256(request(b, "GET", k)[2]), sha256(body))

    def test_key_records_of_the_earlier_layout_are_still_read(self):
        """Key records named keys/<sha256 of namespace and key> (written by
        builds before keys/<namespace>/<key>) resolve, and a delete removes
        them too."""
        a = self.node()
        body = self.rng.randbytes(90 * KIB)
        key = sha256(b"old layout")
        self.assertEqual(request(a, "PUT", "/ac/" + key, body)[0], 200)
        self.drained(a)
        s3 = self.moto.client()
        names = [k for k in self.moto.objects(self.BUCKET, self.PREFIX + "/keys/")]
        self.assertEqual(len(names), 1, names)
        self.assertTrue(names[0].startswith(self.PREFIX + "/keys/ac/"), names)
        old = "%s/keys/%s" % (self.PREFIX, sha256(b"ac\0" + key.encode()))
        s3.copy_object(Bucket=self.BUCKET, Key=old,
                       CopySource={"Bucket": self.BUCKET, "Key": names[0]})
        s3.delete_object(Bucket=self.BUCKET, Key=names[0])
        b = self.node()
        st, _, got = request(b, "GET", "/ac/" + key)
        self.assertEqual((st, sha256(got)), (200, sha256(body)))
        self.assertEqual(request(b, "DELETE", "/ac/" + key)[0], 204)
        self.drained(b)
        self.assertEqual(self.live_records(), {})
        c = self.node()
        self.assertEqual(request(c, "GET", "/ac/" + key)[0], 404)

    def node_past_its_look(self):
        """A new node, once it has made its one look for key records of the
        earlier layout (a listing): its next request to the tier is a read's."""
        seen = len(self.proxy.paths)
        b = self.node()
        self.assertTrue(wait_for(lambda: any("list-type=2" in p for p in self.proxy.paths[seen:]),
                                 timeout=10))
        return b

    def only_record(self, put=None):
        """The bytes of the one key record in the tier; or, with put, puts
        those in its place (without the SHA-256 its upload carried)."""
        s3 = self.moto.client()
        name = [k for k in self.moto.objects(self.BUCKET, self.PREFIX + "/keys/")][0]
        if put is not None:
            s3.put_object(Bucket=self.BUCKET, Key=name, Body=put)
            return put
        return s3.get_object(Bucket=self.BUCKET, Key=name)["Body"].read()

    def test_small_cold_read_is_one_request(self):
        """A small blob rides in its key record: one request to the tier."""
        a = self.node()
        body = self.rng.randbytes(3000)
        key = "/ac/" + sha256(b"small")
        self.assertEqual(request(a, "PUT", key, body)[0], 200)
        self.drained(a)
        b = self.node_past_its_look()
        before = self.proxy.requests
        self.assertEqual(request(b, "GET", key)[2], body)
        self.assertEqual(self.proxy.requests - before, 1)
        # the record's copy damaged: a miss, counted, never served
        rec = bytearray(self.only_record())
        rec[-100] ^= 0xFF
        self.only_record(bytes(rec))
        c = self.node()
        self.assertEqual(request(c, "GET", key)[0], 404)
        self.assertEqual(status(c)["tier"]["corrupt"], 1)

    def test_a_body_of_several_frames_in_its_record_is_answered_while_checked(self):
        """A body of several zstd frames small enough stored to ride in its
        key record: one request to the tier, the answer's headers without
        waiting for the checks of the whole body, the body whole and kept;
        the record's copy damaged, never served whole, counted, not kept."""
        a = self.node()
        body = b"the same line of a build log, over and over\n" * 70000  # 3 MiB, 3 frames
        key = "/ac/" + sha256(b"frames")
        self.assertEqual(request(a, "PUT", key, body)[0], 200)
        self.drained(a)
        b = self.node_past_its_look()
        before = self.proxy.requests
        st, _, got = request(b, "GET", key)
        self.assertEqual((st, sha256(got)), (200, sha256(body)))
        self.assertEqual(self.proxy.requests - before, 1)
        self.assertTrue(wait_for(lambda: status(b)["entries"]["keys"] == 1, timeout=10))
        self.proxy.mode = "down"
        st, _, got = request(b, "GET", key)
        self.assertEqual((st, sha256(got)), (200, sha256(body)))
        self.proxy.mode = "ok"
        rec = self.only_record()
        for at in (len(rec) // 2, len(rec) - 100):  # a frame's bytes, the seek table
            damaged = bytearray(rec)
            damaged[at] ^= 0xFF
            self.only_record(bytes(damaged))
            c = self.node()
            try:
                st, _, got = request(c, "GET", key, timeout=30)
                self.assertEqual(st, 404, "a damaged body is a miss, or an answer cut short")
            except (http.client.HTTPException, ConnectionError):
                pass  # cut short
            self.assertTrue(wait_for(lambda: status(c)["tier"]["corrupt"] == 1, timeout=10))
            self.assertTrue(wait_for(lambda: status(c)["entries"]["keys"] == 0, timeout=10))

    def test_reads_filled_just_before_a_stop_are_kept(self):
        """Fills of cold reads commit a little after their answers, many at
        once: a second reader meanwhile answers from the same bytes, and a
        stop commits them all before cairnd exits."""
        a = self.node()
        bodies = [self.rng.randbytes(self.rng.choice([100, 3000, 40 * KIB])) for _ in range(12)]
        bodies.append(self.rng.randbytes(300 * KIB))  # a blob of its own in the tier
        keys = ["/ac/" + sha256(b"kept %d" % i) for i in range(len(bodies))]
        for k, b in zip(keys, bodies):
            self.assertEqual(request(a, "PUT", k, b)[0], 200)
        self.drained(a)
        # (a's second look at each record it put, 3 tier timeouts later,
        # would count as b's requests below)
        self.assertEqual(a.stop(), 0)
        data_b = self.folder()
        b = self.node(data=data_b)
        for k, body in zip(keys, bodies):
            st, _, got = request(b, "GET", k)
            self.assertEqual((st, got == body), (200, True), k)
            before = self.proxy.requests
            st, _, got = request(b, "GET", k)  # at once: its fill may not have committed
            self.assertEqual((st, got == body), (200, True), k)
            self.assertEqual(self.proxy.requests, before, "a second read asked the tier: " + k)
        self.assertEqual(b.stop(), 0)
        self.proxy.mode = "down"
        seen = len(self.proxy.paths)
        b.start()
        for k, body in zip(keys, bodies):
            st, _, got = request(b, "GET", k)
            self.assertEqual((st, got == body), (200, True), k)
        # (not a listing, nor the HEAD that checks a copy held from before the
        # start: a read of one)
        asked = [p for p in self.proxy.paths[seen:] if p.startswith("GET ") and "?" not in p
                 and ("/keys/" in p or "/blobs/" in p)]
        self.assertEqual(asked, [], "a fill was not kept at the stop")
        self.assertEqual(status(b)["entries"]["keys"], len(keys))

    def blobs_of_their_own(self, n):
        """Stores n random bodies of 300 KiB (each a blob of its own in the
        tier, beside its key record) through a node, and drains it: (keys,
        bodies)."""
        a = self.node()
        bodies = [self.rng.randbytes(300 * KIB) for _ in range(n)]
        keys = ["/ac/" + sha256(b"apart %d" % i) for i in range(n)]
        for k, b in zip(keys, bodies):
            self.assertEqual(request(a, "PUT", k, b)[0], 200)
        self.drained(a)
        return keys, bodies

    def test_cold_reads_reuse_the_tiers_connections(self):
        """Each large blob is fetched on a thread of its own, which lives for
        that fetch; the connections outlive it, for the next request of any
        thread (over https, a TCP and TLS handshake saved each time)."""
        keys, bodies = self.blobs_of_their_own(10)
        b = self.node()
        st, _, got = request(b, "GET", keys[0])  # (and whatever the node asks at its start)
        self.assertEqual((st, got == bodies[0]), (200, True))
        before, asked = self.proxy.connections, self.proxy.requests
        for k, body in zip(keys[1:], bodies[1:]):
            st, _, got = request(b, "GET", k)
            self.assertEqual((st, got == body), (200, True), k)
        self.assertGreaterEqual(self.proxy.requests - asked, 2 * (len(keys) - 1))
        self.assertLessEqual(self.proxy.connections - before, 2,
                             "%d connections for %d requests" % (
                                 self.proxy.connections - before, self.proxy.requests - asked))

    def test_a_tier_whose_certificate_is_not_trusted_gets_nothing(self):
        """TLS verification is on by default: a tier over https whose
        certificate the node does not trust is sent nothing, and the log
        and /status say why in curl's words.  With --tier-insecure the same
        tier takes the queue."""
        tls = self.tls_proxy()
        data = self.folder()
        a = self.node(data=data, endpoint=tls.url)
        body = self.rng.randbytes(20 * KIB)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["upload_failures"] > 0, timeout=20))
        self.assertEqual(tls.requests, 0, "a request got through an untrusted certificate")
        self.assertIn("certificate", status(a)["tier"]["last_error"]["message"])
        self.assertIn("SSL certificate problem", a.read_log())
        self.assertEqual(a.stop(), 0)
        b = self.node(data=data, endpoint=tls.url, extra=["--tier-insecure", "true"])
        self.drained(b)
        self.assertIn(sha256(body), self.blobs_in_tier())

    @unittest.skipUnless(libcurl_version() >= (8, 12),
                         "libcurl %s shares no TLS sessions between threads (8.12 does)" %
                         ".".join(map(str, libcurl_version())))
    def test_new_connections_resume_the_tiers_tls_session(self):
        """Over https, a burst of cold reads wants more connections than the
        node has opened so far; the new ones resume a TLS session the node
        already has, rather than make a full handshake.  (Not every one: a TLS 1.3
        connection made while another replaces the session with the tickets
        it was just given makes a full one; libcurl alone does the same.)"""
        tls = self.tls_proxy()
        # the burst's blob requests overlap, whatever else the machine does
        tls.delay = lambda m, p: 0.3 if m == "GET" and "/blobs/" in p else 0
        keys, bodies = self.blobs_of_their_own(9)
        b = self.node(endpoint=tls.url, extra=["--tier-insecure", "true"])
        st, _, got = request(b, "GET", keys[0])  # (and whatever the node asks at its start)
        self.assertEqual((st, got == bodies[0]), (200, True))
        before, resumed = tls.connections, tls.resumed
        got = {}
        at_once(lambda i: got.__setitem__(i, request(b, "GET", keys[i])), range(1, len(keys)))
        for i in range(1, len(keys)):
            self.assertEqual((got[i][0], got[i][2] == bodies[i]), (200, True), keys[i])
        opened = tls.connections - before
        self.assertGreater(opened, 0, "the burst opened no connection: it tests nothing")
        self.assertGreater(tls.resumed - resumed, 0,
                           "none of %d new connections resumed a session" % opened)

    def test_large_bodies_stream_and_a_damaged_one_is_never_served_whole(self):
        """Large blobs are answered while they arrive from the tier, each read
        taking what is there; the end of the body waits until all of it
        checked out."""
        a = self.node()
        text = b"".join(b"line %d of a large log\n" % i for i in range(400000))[:6 * MIB]
        good, bad = text, self.rng.randbytes(5 * MIB)
        raw = self.rng.randbytes(3 * MIB + 12345)  # stored as it is
        bad2 = self.rng.randbytes(4 * MIB)  # damaged inside a range read first
        for b in (good, bad, raw, bad2):
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(b), b)[0], 200)
        self.drained(a)
        for body, at in ((bad, len(bad) // 2), (bad2, 500000)):  # (random bytes: stored raw)
            def flip(data, meta, at=at):
                data[at] ^= 0xFF
            self.change_in_tier(body, flip)
        damaged = bytearray(bad)
        damaged[len(bad) // 2] ^= 0xFF
        b = self.node()
        # a range of a damaged raw blob, read while it arrives: its end waits
        # for the body's checks too, so never a whole wrong 206
        try:
            st, _, got = request(b, "GET", "/cas/" + sha256(bad2), headers={"Range": "bytes=0-999999"})
        except (http.client.HTTPException, ConnectionError):  # (a timeout is a failure)
            st, got = None, b""
        self.assertFalse(st == 206 and len(got) == 1000000, "a damaged range was served whole")
        self.assertTrue(wait_for(lambda: status(b)["tier"]["corrupt"] == 1, timeout=10))
        # zstd frames, decoded as they arrive; then a range of the local copy
        self.assertEqual(sha256(request(b, "GET", "/cas/" + sha256(good))[2]), sha256(good))
        st, _, part = request(b, "GET", "/cas/" + sha256(good), headers={"Range": "bytes=3000000-3999999"})
        self.assertEqual((st, part), (206, good[3000000:4000000]))
        # raw bytes: two readers of one blob while it arrives, one of them a
        # range (which then comes from the local copy, or from the same fill)
        out = {}

        def get(tag, headers=None):
            out[tag] = request(b, "GET", "/cas/" + sha256(raw), headers=headers or {})
        ts = [threading.Thread(target=get, args=("whole",)),
              threading.Thread(target=get, args=("range", {"Range": "bytes=100-2999999"}))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual((out["whole"][0], sha256(out["whole"][2])), (200, sha256(raw)))
        self.assertEqual((out["range"][0], out["range"][2]), (206, raw[100:3000000]))
        # the damaged one: a 404, or an answer cut short, never the whole body
        try:
            st, _, got = request(b, "GET", "/cas/" + sha256(bad))
        except (http.client.HTTPException, ConnectionError):  # (a timeout is a failure)
            st, got = None, b""
        self.assertNotEqual(sha256(got), sha256(damaged))
        self.assertLess(len(got), len(bad))
        self.assertTrue(wait_for(lambda: status(b)["tier"]["corrupt"] == 2, timeout=10))
        self.assertTrue(wait_for(lambda: status(b)["entries"]["keys"] == 2, timeout=10))
        # the local copies are whole: read again with the tier gone
        self.proxy.mode = "down"
        for body in (good, raw):
            st, _, got = request(b, "GET", "/cas/" + sha256(body))
            self.assertEqual((st, sha256(got)), (200, sha256(body)))
        self.assertEqual(request(b, "GET", "/cas/" + sha256(bad))[0], 404)
        # a tier that answers without Content-Length (chunked): the same bodies
        self.proxy.mode = "chunked"
        c = self.node()
        for body in (good, raw):
            st, _, got = request(c, "GET", "/cas/" + sha256(body))
            self.assertEqual((st, sha256(got)), (200, sha256(body)))
        st, _, got = request(c, "GET", "/cas/" + sha256(good), headers={"Accept-Encoding": "zstd"})
        self.assertEqual(st, 200)
        self.assertTrue(wait_for(lambda: status(c)["entries"]["keys"] == 2, timeout=10))
        self.proxy.mode = "down"
        for body in (good, raw):
            st, _, got = request(c, "GET", "/cas/" + sha256(body))
            self.assertEqual((st, sha256(got)), (200, sha256(body)))


    def test_a_body_damaged_in_its_first_frame_is_cut_at_once(self):
        """A large tier object whose first zstd frame is damaged: the
        reader's first read fails, and the answer is cut there and then, not
        left open (its headers sent) until the connection timeout.  The
        damage is counted, and nothing is kept."""
        a = self.node()
        text = b"".join(b"line %d of a damaged log\n" % i for i in range(300000))[:5 * MIB]
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(text), text)[0], 200)
        self.drained(a)

        def flip(data, meta):
            data[100] ^= 0xFF
        self.change_in_tier(text, flip)
        b = self.node()
        try:  # (well under the server's connection timeout, 120 s)
            st, _, got = request(b, "GET", "/cas/" + sha256(text), timeout=30)
            self.assertEqual(st, 404, "a damaged body is a miss, or an answer cut short")
        except TimeoutError:
            self.fail("the damaged answer was left open instead of cut")
        except (http.client.HTTPException, ConnectionError):
            pass  # cut short
        self.assertTrue(wait_for(lambda: status(b)["tier"]["corrupt"] == 1, timeout=10))
        self.assertTrue(wait_for(lambda: status(b)["entries"]["keys"] == 0, timeout=10))

    def test_readers_waiting_for_a_fetch_that_fails_share_its_failure(self):
        """Readers of a cold key whose fetch fails (its blob comes later than
        the tier timeout) all take their miss from that one fetch, instead of
        asking the tier again one after another, each a timeout later."""
        a = self.node()
        body = self.rng.randbytes(70 * KIB)  # (too large to ride in its key record)
        key = "/cas/" + sha256(body)
        self.assertEqual(request(a, "PUT", key, body)[0], 200)
        self.drained(a)
        b = self.node()
        self.proxy.delay = lambda m, p: 5 if m == "GET" and "/blobs/" in p else 0
        asked = len(self.proxy.paths)
        got = {}

        def read(i):
            got[i] = request(b, "GET", key)[0]
        ts = [threading.Thread(target=read, args=(i,)) for i in range(5)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.proxy.delay = None
        self.assertEqual(sorted(got.values()), [404] * 5)
        blob_gets = [p for p in self.proxy.paths[asked:] if p.startswith("GET ") and "/blobs/" in p]
        self.assertEqual(len(blob_gets), 1, blob_gets)
        self.assertEqual(request(b, "GET", key)[2], body)  # the tier answers again

    def test_a_read_that_the_tier_stalls_ends_within_its_budget(self):
        """A tier that stalls half-way through every answer for a blob: the
        read, resumes included, ends within its one budget (the tier timeout
        and 1 s per MiB) as an answer cut short; each resume does not get a
        budget of its own."""
        a = self.node()
        body = self.rng.randbytes(4 * MIB)  # stored raw: a budget of 3 s + 4 s
        key = "/cas/" + sha256(body)
        self.assertEqual(request(a, "PUT", key, body)[0], 200)
        self.drained(a)
        b = self.node()
        self.proxy.stall = lambda m, p: 20 if m == "GET" and "/blobs/" in p else 0
        t0 = time.monotonic()
        try:
            st, _, got = request(b, "GET", key)
        except (http.client.HTTPException, ConnectionError):  # (a timeout is a failure)
            st, got = None, b""
        elapsed = time.monotonic() - t0
        self.proxy.stall = None
        self.assertFalse(st == 200 and got == body, "served whole through a stalled tier")
        self.assertLess(elapsed, 7 + 4, "the read outlived its budget of 7 s")

    def test_a_large_blob_whose_answer_starts_late_is_waited_for(self):
        """A large blob whose answer starts later than twice the tier timeout,
        but within its budget (the timeout and 1 s per MiB), is waited for:
        only a body that stops arriving once it started counts as stalled."""
        a = self.node()
        body = self.rng.randbytes(8 * MIB)  # a budget of 3 s + about 9.5 s
        key = "/cas/" + sha256(body)
        self.assertEqual(request(a, "PUT", key, body)[0], 200)
        self.drained(a)
        b = self.node()
        self.proxy.delay = lambda m, p: 7 if m == "GET" and "/blobs/" in p else 0
        st, _, got = request(b, "GET", key)
        self.proxy.delay = None
        self.assertEqual((st, sha256(got)), (200, sha256(body)))

@unittest.skipUnless(have_s3rver(), "s3rver is not installed (npm; make test installs it)")
class S3rverTierTest(TierTest):
    """The same over s3rver, which checks the access key moto takes on trust."""
    BACKEND = S3rver
    # the queue's waits and recovery are the same over any store (the proxy
    # fails the requests): over moto only, where they take 20 s
    test_a_tier_back_after_an_outage_gets_the_queue_at_once = None
    test_a_tier_back_while_writes_go_on_gets_the_queue_at_once = None
    # so are packs filling up (1,100 records: 40 s) and hits answered while
    # the proxy holds the tier's answers back (20 s)
    test_a_node_that_sent_full_packs_stops_cleanly = None
    test_local_hits_are_answered_while_reads_wait_for_the_tier = None
    # (s3rver does not list multipart uploads)
    test_a_multipart_upload_the_tier_went_away_from_is_aborted_later = None
    # (TLS is the proxy's, whatever the store behind it)
    test_a_tier_whose_certificate_is_not_trusted_gets_nothing = None
    # (s3rver does not list multipart uploads; the stop is the node's)
    test_a_stop_aborts_the_tiers_multipart_upload_it_cut_short = None
    # (s3rver keeps objects as files: it takes no name with an empty or "."
    # folder, such as the model's "a//b" and "/./"; listing over s3rver is
    # the test just before it)
    test_fleet_listings_match_a_model_of_the_keys = None

    def test_keys_rotated_in_their_file_take_effect(self):
        """Keys read from a credentials file are read again when it changes
        (looked at every 10 s) and on SIGHUP, with no restart; what failed
        for the old keys goes at once.  A file without both keys (half
        written, say) leaves the current keys in use.  (s3rver refuses an unknown
        access key; the secret it does not check.)"""
        path = os.path.join(self.folder(), "credentials")

        def write(key):
            with open(path + ".new", "w") as f:
                f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = S3RVER\n"
                        % key)
            os.rename(path + ".new", path)

        def put_and_wait(fails):
            body = self.rng.randbytes(20 * KIB)
            before = status(a)["tier"]["upload_failures"]
            self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
            if fails:
                self.assertTrue(wait_for(lambda: status(a)["tier"]["upload_failures"] > before,
                                         timeout=20), status(a)["tier"])
            return body

        def hup(event):
            n = a.read_log().count(event)
            a.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: a.read_log().count(event) > n, timeout=10), event)

        write("RETIRED")
        a = self.node(extra=["--tier-credentials", path],
                      env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
        bodies = [put_and_wait(fails=True)]
        self.assertIn("InvalidAccessKeyId", status(a)["tier"]["last_error"]["message"])
        self.assertIn("the tier refused the credentials (HTTP 403 InvalidAccessKeyId",
                      a.read_log())
        write("S3RVER")  # found by the look every 10 s
        self.drained(a, timeout=30)
        self.assertIn('"tier_keys_read"', a.read_log())
        for partial in ("# being written\n", "[default]\naws_access_key_id = RETIRED\n"):
            with open(path, "w") as f:
                f.write(partial)
            hup('"tier_keys_unread"')
            bodies.append(put_and_wait(fails=False))
            self.drained(a)
        write("RETIRED")
        hup('"tier_keys_read"')
        bodies.append(put_and_wait(fails=True))
        write("S3RVER")
        hup('"tier_keys_read"')
        self.drained(a, timeout=8)
        self.assertEqual(set(self.blobs_in_tier()), {sha256(b) for b in bodies})


@unittest.skipUnless(have_moto(), "moto_server is not installed")
class GcsTierTest(unittest.TestCase):
    """--tier gs://: GCS's XML API, region "auto", path style.  The server is
    moto behind the proxy, which answers custom metadata as GCS does
    (x-goog-meta-*)."""

    def test_gs_tier_round_trip(self):
        moto = Moto("gcs-bucket")
        self.addCleanup(moto.stop)
        proxy = FaultProxy(moto.port)
        self.addCleanup(proxy.stop)
        proxy.mode = "goog"
        rng = random.Random(random_seed())
        args = ["--tier", "gs://gcs-bucket/ci", "--tier-endpoint", proxy.url,
                "--tier-part-size", "5M", "--tier-timeout", "3s"]
        a = Server(args, env=moto.creds)
        self.addCleanup(close_checked, self, a, True)
        bodies = [rng.randbytes(n) for n in (100, 40 * KIB, 3 * MIB, 12 * MIB)]
        for b in bodies:
            self.assertEqual(request(a, "PUT", "/ac/" + sha256(b"gs " + b[:16]), b)[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["queue"] == 0, timeout=60))
        h = moto.client().head_object(Bucket="gcs-bucket", Key="ci/blobs/" + sha256(bodies[0]))
        self.assertEqual(h["Metadata"].get("cairn-size"), "100")
        b = Server(args, env=moto.creds)
        self.addCleanup(close_checked, self, b, True)
        for body in bodies:
            st, _, got = request(b, "GET", "/ac/" + sha256(b"gs " + body[:16]))
            self.assertEqual((st, sha256(got)), (200, sha256(body)))
        self.assertEqual(status(b)["tier"]["corrupt"], 0)


@unittest.skipUnless(have_moto(), "moto_server is not installed")
class TierRegionTest(unittest.TestCase):
    """An s3:// tier's region and endpoint, as the AWS CLI and SDKs take
    them: --tier-region, else AWS_REGION, else AWS_DEFAULT_REGION, else
    us-east-1, each request signed for it; --tier-endpoint, else
    AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS."""

    def regions_signed(self, args, env, endpoint_from_env=None):
        moto = Moto("region-bucket")
        self.addCleanup(moto.stop)
        proxy = FaultProxy(moto.port)
        self.addCleanup(proxy.stop)
        if endpoint_from_env:  # the endpoint from that variable, none on the command line
            env = dict(env, **{endpoint_from_env: proxy.url})
        else:
            args = ["--tier-endpoint", proxy.url] + args
        a = Server(["--tier", "s3://region-bucket/r", "--tier-timeout", "3s"] + args,
                   env=dict(moto.creds, **env))
        self.addCleanup(close_checked, self, a, True)
        body = os.urandom(5000)
        self.assertEqual(request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["queue"] == 0, timeout=30))
        self.assertEqual(status(a)["tier"]["errors"], 0)
        return {re.search(r"Credential=[^/]+/\d+/([^/]+)/s3/", h["authorization"]).group(1)
                for _, _, h in proxy.headers if "authorization" in h}

    def test_region_from_the_environment(self):
        self.assertEqual(self.regions_signed([], {"AWS_REGION": "eu-west-1",
                                                  "AWS_DEFAULT_REGION": "us-west-2"}),
                         {"eu-west-1"})
        self.assertEqual(self.regions_signed([], {"AWS_REGION": "",
                                                  "AWS_DEFAULT_REGION": "ap-south-1"}),
                         {"ap-south-1"})

    def test_endpoint_from_the_environment(self):
        # AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL (here, nothing listens there)
        self.assertEqual(self.regions_signed([], {"AWS_REGION": "eu-north-1",
                                                  "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
                                             endpoint_from_env="AWS_ENDPOINT_URL_S3"),
                         {"eu-north-1"})
        self.assertEqual(self.regions_signed([], {"AWS_REGION": "", "AWS_DEFAULT_REGION": "",
                                                  "AWS_ENDPOINT_URL_S3": ""},
                                             endpoint_from_env="AWS_ENDPOINT_URL"),
                         {"us-east-1"})

    def test_flag_beats_the_environment_and_default_is_us_east_1(self):
        self.assertEqual(self.regions_signed(["--tier-region", "eu-central-1"],
                                             {"AWS_REGION": "eu-west-1"}), {"eu-central-1"})
        self.assertEqual(self.regions_signed([], {"AWS_REGION": "", "AWS_DEFAULT_REGION": ""}),
                         {"us-east-1"})


class CairnOverCairnTest(unittest.TestCase):
    def test_node_over_a_parent_cairnd(self):
        parent = Server()
        self.addCleanup(close_checked, self, parent)
        data = parent.data + "-child"
        # --tier-part-size 5M: the 12 MiB body goes up to the parent in parts
        child = Server(["--tier", parent.url + "/", "--tier-timeout", "3s",
                        "--tier-part-size", "5M"], data=data,
                       env={"AWS_ACCESS_KEY_ID": "", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
        self.addCleanup(shutil.rmtree, data, True)
        self.addCleanup(close_checked, self, child)
        bodies = [os.urandom(n) for n in (10, 5000, 70 * KIB, 2 * MIB, 12 * MIB)]
        for b in bodies:
            self.assertEqual(request(child, "PUT", "/cas/" + sha256(b), b)[0], 200)
        self.assertTrue(wait_for(lambda: status(child)["tier"]["queue"] == 0, timeout=30))
        # the parent holds them, in its bucket cairn-tier
        st, _, listing = request(parent, "GET", "/cairn-tier?list-type=2")
        self.assertEqual(st, 200)
        for b in bodies:
            self.assertIn(sha256(b).encode(), listing)
        # the child's folder wiped: everything comes back from the parent
        self.assertEqual(child.stop(), 0)
        shutil.rmtree(data)
        os.mkdir(data)
        child.start()
        for b in bodies:
            self.assertEqual(request(child, "GET", "/cas/" + sha256(b))[2], b)
        self.assertEqual(status(child)["tier"]["hits"], len(bodies))
        # small entries go up in packs too, and a warmup on a wiped child
        # takes them from there: the parent lists ETags and answers ranges
        small = [os.urandom(100 + i) for i in range(40)]
        for b in small:
            self.assertEqual(request(child, "PUT", "/cas/" + sha256(b), b)[0], 200)
        self.assertTrue(wait_for(lambda: status(child)["tier"]["queue"] == 0 and
                                 status(child)["tier"]["packs_owed"] == 0, timeout=30))
        self.assertEqual(status(child)["tier"]["packed_records"], len(small))
        self.assertEqual(child.stop(), 0)
        shutil.rmtree(data)
        os.mkdir(data)
        child.start()
        items = "".join("cas/%s\n" % sha256(b) for b in small).encode()
        st, _, body = request(child, "POST", "/admin/warmup", items)
        self.assertEqual(st, 202, body)
        job = json.loads(body)["job"]

        j = job_done(child, job, timeout=60)
        self.assertTrue(j)
        self.assertEqual(j["warmed"], len(small))
        self.assertEqual(status(child)["tier"]["pack_reads"], len(small))
        for b in small:
            self.assertEqual(request(child, "GET", "/cas/" + sha256(b))[2], b)


    def test_a_parent_down_at_the_start_and_long_keys(self):
        """A child started while its parent is down makes the parent's
        bucket once the parent answers (its uploads fail with 404 until
        then); and a key too long for a name the parent takes (a cairnd
        takes shorter keys than S3) goes up under a shorter name."""
        parent = Server()
        self.addCleanup(close_checked, self, parent)
        port = parent.port
        self.assertEqual(parent.stop(), 0)
        data = parent.data + "-child"
        child = Server(["--tier", "http://127.0.0.1:%d/" % port, "--tier-timeout", "3s"],
                       data=data,
                       env={"AWS_ACCESS_KEY_ID": "", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
        self.addCleanup(shutil.rmtree, data, True)
        self.addCleanup(close_checked, self, child)
        body = os.urandom(5000)
        self.assertEqual(request(child, "PUT", "/cas/" + sha256(body), body)[0], 200)
        self.assertTrue(wait_for(lambda: status(child)["tier"]["upload_failures"] > 0))
        parent.start(listen="127.0.0.1:%d" % port)
        self.assertTrue(wait_for(lambda: status(child)["tier"]["queue"] == 0, timeout=60),
                        status(child)["tier"])
        long_keys = ["k" * 490, " " * 170 + "end"]
        self.assertEqual(request(child, "PUT", "/b12")[0], 200)
        for k in long_keys:
            path = "/b12/" + urllib.parse.quote(k)
            self.assertEqual(request(child, "PUT", path, k.encode())[0], 200)
        self.assertTrue(wait_for(lambda: status(child)["tier"]["queue"] == 0, timeout=30),
                        status(child)["tier"])
        self.assertEqual(child.stop(), 0)
        shutil.rmtree(data)
        os.mkdir(data)
        child.start()
        self.assertEqual(request(child, "GET", "/cas/" + sha256(body))[2], body)
        for k in long_keys:
            st, _, got = request(child, "GET", "/b12/" + urllib.parse.quote(k))
            self.assertEqual((st, got), (200, k.encode()))

    def test_a_parent_back_on_an_empty_folder_gets_the_buckets_again(self):
        """A parent cairnd restarted on an empty folder lost what its
        children sent it.  The child that makes its bucket again puts back
        the records of the buckets it holds, so that another child knows
        them (not 404 NoSuchBucket for a bucket in use), and the keys it
        holds go up again as it reads them (its checks find them lost)."""
        parent = Server()
        self.addCleanup(close_checked, self, parent)
        port = parent.port
        kids = []
        for i in range(2):
            data = "%s-child%d" % (parent.data, i)
            kid = Server(["--tier", "http://127.0.0.1:%d/" % port, "--tier-timeout", "3s",
                          "--tier-revalidate", "1s"], data=data,
                         env={"AWS_ACCESS_KEY_ID": "", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
            self.addCleanup(shutil.rmtree, data, True)
            self.addCleanup(close_checked, self, kid)
            kids.append(kid)
        a, b = kids
        self.assertEqual(request(a, "PUT", "/kept")[0], 200)
        self.assertEqual(request(a, "PUT", "/kept/before", b"before the wipe")[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["queue"] == 0, timeout=30))
        self.assertEqual(parent.stop(), 0)
        shutil.rmtree(parent.data)
        os.mkdir(parent.data)
        parent.start(listen="127.0.0.1:%d" % port)
        self.assertEqual(request(a, "PUT", "/kept/after", b"after the wipe")[0], 200)
        self.assertTrue(wait_for(lambda: status(a)["tier"]["queue"] == 0, timeout=60),
                        status(a)["tier"])
        self.assertIn("buckets held here go up again", a.read_log())
        st, _, got = request(b, "PUT", "/kept/from-b", b"b")
        self.assertEqual(st, 200, got)
        self.assertEqual(request(b, "GET", "/kept/after")[::2], (200, b"after the wipe"))
        time.sleep(1.1)  # (a's copy of "before" is due for a check)
        self.assertEqual(request(a, "GET", "/kept/before")[::2], (200, b"before the wipe"))
        self.assertTrue(wait_for(lambda: request(b, "GET", "/kept/before")[::2] ==
                                 (200, b"before the wipe"), timeout=20), status(a)["tier"])


@unittest.skipUnless(have_moto() and shutil.which("nginx"), "moto_server or nginx is not installed")
class BalancedFleetTest(unittest.TestCase):
    """Two nodes over one tier behind nginx, set up as the README's "route by
    key" block says (the block is read from the README): every request of a
    key, multipart uploads included, reaches one node, so overwrites are read
    back at once; the keys spread over both nodes; S3 signatures still
    check."""
    AK, SK = "fleet-key", "fleet-secret"

    def readme_block(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            text = f.read()
        start = text.index("```nginx\n") + len("```nginx\n")
        return text[start:text.index("```", start)]

    def setUp(self):
        self.moto = Moto("fleet")
        self.addCleanup(self.moto.stop)
        args = ["--access-key", self.AK, "--secret-key", self.SK, "--tier", "s3://fleet/ci",
                "--tier-endpoint", self.moto.url]
        self.nodes = []
        for _ in range(2):
            srv = Server(args, env=self.moto.creds)
            self.addCleanup(close_checked, self, srv, True)
            self.nodes.append(srv)
        block = self.readme_block()
        servers = "".join("    server 127.0.0.1:%d;\n" % n.port for n in self.nodes)
        block = block.replace("    server cache-1:8080;\n    server cache-2:8080;\n", servers)
        self.port = free_port()
        block = block.replace("listen 8080;", "listen 127.0.0.1:%d;" % self.port)
        self.assertEqual(block.count("127.0.0.1:"), 3, block)
        self.dir = tempfile.mkdtemp(prefix="cairn-nginx-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        user = "user root root;" if os.geteuid() == 0 else ""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write("%s\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
                    "events {}\nhttp {\naccess_log off;\nclient_body_temp_path %s/body;\n"
                    "proxy_temp_path %s/proxy;\nfastcgi_temp_path %s/f;\nuwsgi_temp_path %s/u;\n"
                    "scgi_temp_path %s/s;\n%s}\n" % ((user,) + (self.dir,) * 7 + (block,)))
        self.nginx = subprocess.Popen(["nginx", "-c", os.path.join(self.dir, "nginx.conf"), "-p",
                                       self.dir, "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.nginx.wait, 30)
        self.addCleanup(self.nginx.terminate)
        up = wait_for(lambda: self.nginx.poll() is None and port_open(self.port), timeout=30)
        self.assertTrue(up, "nginx did not start")

    def test_requests_of_a_key_reach_one_node(self):
        import boto3
        from boto3.s3.transfer import TransferConfig
        s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%d" % self.port,
                          region_name="us-east-1", aws_access_key_id=self.AK,
                          aws_secret_access_key=self.SK)
        s3.create_bucket(Bucket="runner-cache")
        rng = random.Random(random_seed())
        keys = ["project/%d/main-protected" % i for i in range(24)]
        for gen in range(2):  # written, then overwritten, each read back straight after
            bodies = {k: rng.randbytes(rng.randint(1, 300 * KIB)) for k in keys}
            for k, b in bodies.items():
                s3.put_object(Bucket="runner-cache", Key=k, Body=b)
            for k in rng.sample(keys, len(keys)):  # another order than the writes'
                got = s3.get_object(Bucket="runner-cache", Key=k)["Body"].read()
                self.assertEqual(sha256(got), sha256(bodies[k]), "%s, generation %d" % (k, gen))
        held = [status(n)["entries"]["keys"] for n in self.nodes]
        self.assertEqual(sum(held), len(keys), held)
        self.assertTrue(all(held), "the keys all went to one node: %s" % held)

        # a multipart upload: its parts and its completion reach the node that started it
        big = rng.randbytes(12 * MIB + 5)
        cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB,
                             max_concurrency=3)
        s3.upload_fileobj(io.BytesIO(big), "runner-cache", "project/big/cache.zip", Config=cfg)
        got = s3.get_object(Bucket="runner-cache", Key="project/big/cache.zip")["Body"].read()
        self.assertEqual(sha256(got), sha256(big))


if __name__ == "__main__":
    unittest.main()
