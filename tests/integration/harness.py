"""Test harness: starts real cairnd processes on loopback and talks HTTP to them.

Only the Python standard library is used, so the tests run on a fresh Debian
machine with nothing but python3.  Every server gets a port chosen by the
kernel (--listen 127.0.0.1:0; cairnd prints the address it bound) and its own
temporary data folder, and is stopped (and its folder removed) by the test
that started it.
"""
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAIRND = os.environ.get("CAIRND", os.path.join(ROOT, "build/test/bin/cairnd"))
CAIRN = os.environ.get("CAIRN", os.path.join(ROOT, "build/test/bin/cairn"))


def sha256(b):
    return hashlib.sha256(b).hexdigest()


class Server:
    """One cairnd process.  `args` are extra flags; `data` an existing folder."""

    def __init__(self, args=(), data=None, env=None):
        self.own_data = data is None
        self.data = data or tempfile.mkdtemp(prefix="cairn-test-")
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        # leak checks need a clean exit; fast unwinding keeps ASan cheap
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = None
        self.port = None
        self.start()

    def start(self, listen="127.0.0.1:0"):
        self.log_path = os.path.join(self.data + ".log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CAIRND, "--listen", listen, "--data", self.data] + self.args,
            stdout=subprocess.PIPE, stderr=self.log, env=self.env)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"http://(?:\[[^\]]*\]|[^:/]+):(\d+)/", line)
        if not m:
            self.proc.wait(10)
            raise RuntimeError("cairnd did not start: %r\n%s" % (line, self.read_log()))
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d" % self.port

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit code (0 unless something leaked or crashed)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        self.proc = None
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def close(self):
        rc = self.stop()
        self.last_log = self.read_log() if os.path.exists(self.log_path) else ""
        if self.own_data:
            shutil.rmtree(self.data, ignore_errors=True)
        try:
            os.unlink(self.log_path)  # the log is the test's, not the data's: kept in last_log
        except OSError:
            pass
        return rc

    def conn(self, timeout=120):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """Returns (status, headers dict with lowercase names, body bytes)."""
        c = conn or self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if conn is None:
                c.close()

    def put_cas(self, body, **kw):
        return self.request("PUT", "/cas/" + sha256(body), body, **kw)

    def get_cas(self, digest, headers=None):
        return self.request("GET", "/cas/" + digest, headers=headers)

    def status(self):
        import json
        s, _, b = self.request("GET", "/status")
        assert s == 200, s
        return json.loads(b)


class ServerTest(unittest.TestCase):
    """A test case with one fresh server per test, stopped cleanly afterwards."""

    server_args = ()

    def setUp(self):
        self.srv = Server(self.server_args)

    def tearDown(self):
        rc = self.srv.close()
        self.assertEqual(rc, 0, "cairnd exited with %s\n%s" % (rc, self.srv.last_log[-6000:]))


def random_seed():
    """The seed of a test's random data, printed so that a failure can be repeated."""
    seed = int(os.environ.get("CAIRN_TEST_SEED", time.time_ns() % 1000000))
    print("\n  seed %d (set CAIRN_TEST_SEED to repeat)" % seed)
    return seed


def close_checked(test, srv, killed_ok=False):
    """Stops srv with SIGTERM and removes what it left; the test fails unless
    cairnd exited 0 (or, with killed_ok, had already been stopped or killed)."""
    rc = srv.close()
    test.assertIn(rc, (0, None) if killed_ok else (0,),
                  "cairnd exited with %s on SIGTERM\n%s" % (rc, srv.last_log[-4000:]))


def scrape(srv):
    """srv's /metrics, as text."""
    st, _, body = srv.request("GET", "/metrics")
    assert st == 200, st
    return body.decode()


def metric_value(text, name, **labels):
    """A sample's value in a /metrics text, or None.  Labels must match
    exactly those given."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if got == {k: str(v) for k, v in labels.items()}:
            return float(m.group(4))
    return None

def free_port():
    """A loopback port nothing listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ---- shared helpers for store tests (files on disk, streamed bodies) ----------

def blob_files(data):
    """{name: size} of every file under DATA/blobs/xx/ (names are hex digests)."""
    out = {}
    root = os.path.join(data, "blobs")
    for sub in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        d = os.path.join(root, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            try:
                out[name] = os.path.getsize(os.path.join(d, name))
            except OSError:  # unlinked meanwhile
                pass
    return out


def inline_blobs(data):
    """{digest hex: stored bytes} of the small blobs kept in the index itself,
    read with mdb_dump (a reader beside cairnd, as LMDB allows)."""
    path = os.path.join(data, "index.mdb")
    if not os.path.exists(path):
        return {}
    out = subprocess.run(["mdb_dump", "-n", "-s", "inline", path], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    rows = [line[1:] for line in out[out.index("HEADER=END") + 1:] if line.startswith(" ")]
    return {rows[i]: bytes.fromhex(rows[i + 1]) for i in range(0, len(rows), 2)}


def stored_blobs(data):
    """{digest hex: stored size} of every blob: files and those kept inline."""
    out = blob_files(data)
    for d, v in inline_blobs(data).items():
        out[d] = len(v)
    return out


def tmp_files(data):
    """Names of the files left in DATA/tmp/."""
    d = os.path.join(data, "tmp")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def put_stream(conn, path, chunks, length, headers=None):
    """PUT a body given as an iterable of byte strings totalling `length`
    bytes, on an open HTTPConnection.  Returns (status, body bytes)."""
    conn.putrequest("PUT", path, skip_accept_encoding=True)
    conn.putheader("Content-Length", str(length))
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    for c in chunks:
        conn.send(c)
    r = conn.getresponse()
    return r.status, r.read()


def get_digest(conn, path, headers=None, block=1 << 20):
    """GET `path`, reading the body in blocks.  Returns (status, headers dict
    with lowercase names, body length, SHA-256 hex of the body)."""
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    h = hashlib.sha256()
    n = 0
    while True:
        b = r.read(block)
        if not b:
            break
        h.update(b)
        n += len(b)
    return r.status, {k.lower(): v for k, v in r.getheaders()}, n, h.hexdigest()
