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
        m = re.search(r"http://[^:]+:(\d+)/", line)
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
        if self.own_data:
            shutil.rmtree(self.data, ignore_errors=True)
            try:
                os.unlink(self.data + ".log")
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
        log = self.srv.read_log() if os.path.exists(self.srv.log_path) else ""
        self.assertEqual(rc, 0, "cairnd exited with %s\n%s" % (rc, log[-4000:]))


def wait_for(pred, timeout=10.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()
