"""cairnd's configuration: flags, CAIRN_* environment variables, the config
file, their precedence (flag > environment > file > default), size suffixes,
--help, bad input, and the data-directory lock.

Settings are checked where they take effect: /status limits, the files the
store writes, the address the server listens on.  A configuration error must
exit 2 with a message and change nothing (no data directory is created).
"""
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import unittest

from harness import CAIRND, Server, inline_blobs, sha256, stored_blobs

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

# every option cairnd documents (DESIGN.md names listen, data, max-size; the
# rest are the limits and knobs the issue asks to be configurable)
FLAGS = ["listen", "data", "config", "max-size", "max-body", "high-watermark",
         "low-watermark", "threads", "zstd-level", "index-map-size", "fsync",
         "connection-timeout", "connection-limit", "max-header-size", "shutdown-timeout",
         "log-level"]


def env_name(flag):
    return "CAIRN_" + flag.upper().replace("-", "_")


def clean_env(**extra):
    """The environment without any CAIRN_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update(extra)
    return env


class ConfigTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cairn-config-test-")
        self.servers = []

    def tearDown(self):
        errors = []
        for srv in self.servers:
            rc = srv.close()
            if rc not in (0, None):
                errors.append("cairnd exited with %s\n%s" % (rc, srv.last_log[-3000:]))
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(errors, [])

    def server(self, args=(), env=None, data=None):
        # data folders (and the logs beside them) live in self.tmp, so that
        # even a server that fails to start leaves nothing behind
        if data is None:
            data = tempfile.mkdtemp(prefix="data-", dir=self.tmp)
        srv = Server(list(args), data=data, env=env)
        self.servers.append(srv)
        return srv

    def run_cairnd(self, args, env=None, timeout=30):
        """Runs cairnd to completion in an empty folder; it must not start serving."""
        cwd = os.path.join(self.tmp, "cwd")
        os.makedirs(cwd, exist_ok=True)
        p = subprocess.Popen([CAIRND] + list(args), cwd=cwd, env=clean_env(**(env or {})),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            self.fail("cairnd %s did not exit (it should have refused to start)" % (args,))
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), cwd

    def assertRefused(self, args, env=None, mentions=()):
        rc, out, err, cwd = self.run_cairnd(args, env)
        self.assertEqual(rc, 2, "cairnd %s %s: exit %s\nstdout: %s\nstderr: %s"
                         % (env or "", args, rc, out, err))
        self.assertNotIn("listening", out)
        self.assertTrue(err.strip(), "no message on stderr")
        for word in mentions:
            self.assertIn(word, err)
        # nothing was created: no default ./cairn-data, nothing else
        self.assertEqual(os.listdir(cwd), [])
        return err

    def limits(self, srv):
        return srv.status()["limits"]

    def write_config(self, text):
        path = os.path.join(self.tmp, "cairnd.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    # ---- --help, --version ---------------------------------------------------

    def test_help_documents_every_flag_and_variable(self):
        rc, out, err, cwd = self.run_cairnd(["--help"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(os.listdir(cwd), [])
        for flag in FLAGS:
            self.assertRegex(out, r"(?m)^\s*--%s\b" % re.escape(flag), flag)
            self.assertIn(env_name(flag), out, flag)
        # and every flag it shows (but --help and --version) has its variable
        shown = set(re.findall(r"(?m)^\s*--([a-z][a-z0-9-]*)", out)) - {"help", "version"}
        self.assertTrue(set(FLAGS) <= shown, shown)
        for flag in shown:
            self.assertIn(env_name(flag), out, flag)
        self.assertIn("--help", out)
        # -h is the same
        rc2, out2, _, _ = self.run_cairnd(["-h"])
        self.assertEqual((rc2, out2), (0, out))

    def test_version(self):
        rc, out, err, cwd = self.run_cairnd(["--version"])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^cairnd \d+\.\d+\.\d+")
        srv = self.server()
        self.assertEqual(srv.status()["version"], out.split()[1])

    # ---- bad input ---------------------------------------------------------------

    def test_unknown_flag_exits_2(self):
        data = os.path.join(self.tmp, "data")
        for args, named in ((["--no-such-flag"], "--no-such-flag"),
                            (["--no-such-flag=1"], "--no-such-flag"),
                            (["--max-sizes", "1G"], "--max-sizes"),
                            (["-x"], "-x"), (["serve"], "serve"),
                            (["--data", data, "--bogus", "1"], "--bogus")):
            self.assertRefused(args, mentions=(named,))
        self.assertFalse(os.path.exists(data))
        # a flag without its value
        self.assertRefused(["--max-size"], mentions=("--max-size",))

    def test_bad_size_exits_2(self):
        for value in ("12Q", "abc", "-5", "", "5 G", "1GG", "G"):
            self.assertRefused(["--max-size", value], mentions=("max-size",))
        self.assertRefused(["--max-body", "1X"], mentions=("max-body",))
        self.assertRefused(["--max-size=lots"], mentions=("max-size", "lots"))
        # the same from the environment names the variable
        self.assertRefused([], env={"CAIRN_MAX_SIZE": "12Q"},
                           mentions=("max-size", "CAIRN_MAX_SIZE"))
        # and from a config file names the file and line
        path = self.write_config("# limits\nmax-size = 12Q\n")
        self.assertRefused(["--config", path], mentions=("12Q", "cairnd.conf:2"))

    def test_other_bad_values_exit_2(self):
        self.assertRefused(["--high-watermark", "101"], mentions=("high-watermark",))
        self.assertRefused(["--low-watermark", "95", "--high-watermark", "90"])
        self.assertRefused(["--threads", "many"], mentions=("threads",))
        self.assertRefused(["--zstd-level", "99"], mentions=("zstd-level",))
        self.assertRefused(["--inline-max-size", "65K"], mentions=("inline-max-size",))
        self.assertRefused(["--tier-part-size", "4M"], mentions=("tier-part-size",))
        self.assertRefused(["--tier-part-size", "6G"], mentions=("tier-part-size",))
        self.assertRefused(["--fsync", "perhaps"], mentions=("fsync",))
        self.assertRefused(["--log-level", "chatty"], mentions=("log-level",))
        self.assertRefused(["--connection-timeout", "soon"], mentions=("connection-timeout",))
        self.assertRefused(["--config", os.path.join(self.tmp, "missing.conf")],
                           mentions=("missing.conf",))
        path = self.write_config("max-size = 1G\nno-such-option = 3\n")
        self.assertRefused(["--config", path], mentions=("no-such-option",))

    # ---- sources and precedence ---------------------------------------------------

    def test_size_suffixes(self):
        cases = [("5G", 5 * GiB), ("512M", 512 * MiB), ("20g", 20 * GiB), ("1T", TiB),
                 ("64K", 64 * KiB), ("123456789", 123456789), ("2GiB", 2 * GiB)]
        for i in range(0, len(cases), 2):
            pair = cases[i:i + 2]
            args = ["--max-size", pair[0][0]]
            if len(pair) > 1:
                args += ["--max-body", pair[1][0]]
            srv = self.server(args)
            lim = self.limits(srv)
            self.assertEqual(lim["max_size"], pair[0][1], pair[0][0])
            if len(pair) > 1:
                self.assertEqual(lim["max_body"], pair[1][1], pair[1][0])
            self.assertEqual(srv.close(), 0)

    def test_environment(self):
        srv = self.server(env={"CAIRN_MAX_SIZE": "123M", "CAIRN_MAX_BODY": "3M"})
        lim = self.limits(srv)
        self.assertEqual(lim["max_size"], 123 * MiB)
        self.assertEqual(lim["max_body"], 3 * MiB)
        # the body limit from the environment is enforced
        body = os.urandom(3 * MiB + 1)
        s, _, _ = self._put_chunked(srv, body)  # (chunked: read to the end, then 413)
        self.assertEqual(s, 413)
        self.assertEqual(srv.status()["entries"]["blobs"], 0)

    def _put_chunked(self, srv, body):
        def chunks():
            for i in range(0, len(body), 256 * KiB):
                yield body[i:i + 256 * KiB]
        return srv.request("PUT", "/cas/" + sha256(body), chunks())

    def test_environment_zstd_level_takes_effect(self):
        srv = self.server(env={"CAIRN_ZSTD_LEVEL": "0"})
        body = b"the same line, again and again\n" * 40000
        s, _, _ = srv.put_cas(body)
        self.assertEqual(s, 200)
        path = os.path.join(srv.data, "blobs", sha256(body)[:2], sha256(body))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), body)  # level 0: stored raw
        self.assertEqual(srv.status()["bytes"]["stored"], len(body))

    def test_inline_max_size(self):
        small, big = os.urandom(1000), os.urandom(40 * KiB)
        # default 16K: the small body lives in the index, the big one in a file
        srv = self.server([])
        for b in (small, big):
            self.assertEqual(srv.put_cas(b)[0], 200)
        self.assertEqual(set(inline_blobs(srv.data)), {sha256(small)})
        self.assertTrue(os.path.isfile(os.path.join(srv.data, "blobs", sha256(big)[:2],
                                                    sha256(big))))
        self.assertEqual(srv.close(), 0)
        # 0: every body has a file; 64K: both inline
        for setting, inline in (("0", set()), ("64K", {sha256(small), sha256(big)})):
            srv = self.server(env={"CAIRN_INLINE_MAX_SIZE": setting})
            for b in (small, big):
                self.assertEqual(srv.put_cas(b)[0], 200)
                self.assertEqual(srv.request("GET", "/cas/" + sha256(b))[2], b)
            self.assertEqual(set(inline_blobs(srv.data)), inline, setting)
            self.assertEqual(srv.status()["entries"]["inline_blobs"], len(inline))
            self.assertEqual(srv.close(), 0)

    def test_environment_listen_and_data(self):
        data = os.path.join(self.tmp, "env-data")
        p = subprocess.Popen([CAIRND], cwd=self.tmp, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             env=clean_env(CAIRN_LISTEN="127.0.0.1:0", CAIRN_DATA=data))
        try:
            line = p.stdout.readline().decode()
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            self.assertIsNotNone(m, line)
            self.assertIn(data, line)
            c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=30)
            c.request("PUT", "/cas/" + sha256(b"env"), b"env")
            self.assertEqual(c.getresponse().status, 200)
            c.close()
            self.assertIn(sha256(b"env"), stored_blobs(data))
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            err = p.stderr.read().decode(errors="replace")
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(rc, 0, err[-3000:])
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "cairn-data")))

    def test_listens_on_ipv6_only_for_an_ipv6_address(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            self.skipTest("no IPv6 loopback here")
        srv = self.server()
        srv.stop()
        srv.start(listen="[::1]:0")
        c = http.client.HTTPConnection("::1", srv.port, timeout=30)
        c.request("PUT", "/cas/" + sha256(b"six"), b"six")
        self.assertEqual(c.getresponse().status, 200)
        c.close()
        with self.assertRaises(OSError):  # (IPV6_V6ONLY: not on 127.0.0.1)
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()

    def test_connection_limit_holds_the_extra_connection_until_one_closes(self):
        srv = self.server(["--connection-limit", "4", "--threads", "2"])
        held = [srv.conn(timeout=30) for _ in range(4)]
        for c in held:
            c.request("GET", "/healthz")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"ok\n"))
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=1)
        try:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            with self.assertRaises(socket.timeout):  # (waits in the backlog)
                extra.recv(100)
            held.pop().close()
            extra.settimeout(30)
            got = b""
            while b"\r\n\r\nok\n" not in got:
                piece = extra.recv(4096)
                self.assertTrue(piece, "closed unanswered: %r" % got)
                got += piece
            self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)
        finally:
            extra.close()
            for c in held:
                c.close()

    def test_many_new_connections_at_once_are_all_served(self):
        srv = self.server()
        failures = []

        def client(i):
            try:
                for j in range(20):
                    body = b"%d-%d" % (i, j)
                    s, _, _ = srv.request("PUT", "/cas/" + sha256(body), body)
                    g = srv.request("GET", "/cas/" + sha256(body))
                    if s != 200 or g[0] != 200 or g[2] != body:
                        failures.append((i, j, s, g[0]))
            except Exception as e:  # noqa: BLE001 (reported below)
                failures.append((i, repr(e)))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(48)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(failures, [])

    def test_flag_beats_environment(self):
        srv = self.server(["--max-size", "7M"], env={"CAIRN_MAX_SIZE": "123M"})
        self.assertEqual(self.limits(srv)["max_size"], 7 * MiB)
        # whatever the order of --max-size=... among the flags
        srv2 = self.server(["--max-body=9M"], env={"CAIRN_MAX_BODY": "1M"})
        self.assertEqual(self.limits(srv2)["max_body"], 9 * MiB)

    def test_config_file(self):
        path = self.write_config(
            "# cairnd settings\n"
            "\n"
            "max-size = 50M\n"
            "  max-body=2M   \n"
            "high-watermark = 50\n"
            "low-watermark = 40\n")
        srv = self.server(["--config", path])
        lim = self.limits(srv)
        self.assertEqual(lim["max_size"], 50 * MiB)
        self.assertEqual(lim["max_body"], 2 * MiB)
        self.assertLess(abs(lim["high_watermark_bytes"] - 25 * MiB), 100)
        self.assertEqual(srv.close(), 0)
        # CAIRN_CONFIG names the file too
        srv = self.server(env={"CAIRN_CONFIG": path})
        self.assertEqual(self.limits(srv)["max_size"], 50 * MiB)
        self.assertEqual(srv.close(), 0)
        # the environment beats the file; the file still gives the rest
        srv = self.server(["--config", path], env={"CAIRN_MAX_SIZE": "60M"})
        lim = self.limits(srv)
        self.assertEqual(lim["max_size"], 60 * MiB)
        self.assertEqual(lim["max_body"], 2 * MiB)
        self.assertEqual(srv.close(), 0)
        # a flag beats both, before or after --config
        srv = self.server(["--max-size", "70M", "--config", path],
                          env={"CAIRN_MAX_SIZE": "60M"})
        self.assertEqual(self.limits(srv)["max_size"], 70 * MiB)
        self.assertEqual(self.limits(srv)["max_body"], 2 * MiB)

    # ---- one server per data directory -------------------------------------------

    def test_second_server_on_same_data_refuses(self):
        first = self.server()
        body = b"kept by the first server"
        self.assertEqual(first.put_cas(body)[0], 200)
        rc, out, err, _ = self.run_cairnd(["--listen", "127.0.0.1:0", "--data", first.data])
        self.assertNotEqual(rc, 0)
        self.assertNotIn("listening", out)
        self.assertIn(first.data.rstrip("/").split("/")[-1], err)
        self.assertRegex(err, r"in use|locked|another cairnd")
        # the first one goes on serving, its store untouched
        s, _, b = first.get_cas(sha256(body))
        self.assertEqual((s, b), (200, body))
        self.assertEqual(first.request("GET", "/readyz")[0], 200)
        self.assertEqual(first.status()["entries"], {"keys": 1, "blobs": 1, "inline_blobs": 1})
        # once it has stopped, the folder can be opened again, with its data
        self.assertEqual(first.stop(), 0)
        again = self.server(data=first.data)
        s, _, b = again.get_cas(sha256(body))
        self.assertEqual((s, b), (200, body))
        self.assertEqual(again.close(), 0)


if __name__ == "__main__":
    unittest.main()
