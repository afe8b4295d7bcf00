"""ccache, a real client of the native API (remote_storage with layout=bazel):
a second build from an empty local cache is served entirely by cairnd."""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import ServerTest


@unittest.skipUnless(shutil.which("ccache") and shutil.which("gcc"), "ccache not installed")
class CcacheTest(ServerTest):
    def ccache(self, work, cache_dir, *args):
        env = dict(os.environ,
                   CCACHE_DIR=cache_dir,
                   CCACHE_REMOTE_STORAGE="http://127.0.0.1:%d|layout=bazel" % self.srv.port,
                   CCACHE_REMOTE_ONLY="true",
                   CCACHE_NOHASHDIR="true")
        return subprocess.run(["ccache"] + list(args), cwd=work, env=env, check=True,
                              capture_output=True, text=True)

    def test_remote_hits_after_local_cache_is_gone(self):
        work = tempfile.mkdtemp(prefix="cairn-ccache-")
        self.addCleanup(shutil.rmtree, work, True)
        for i in range(5):
            with open(os.path.join(work, "f%d.c" % i), "w") as f:
                f.write("int f%d(int x) { return x * %d + %d; }\n" % (i, i + 2, i))

        def build(cache_dir):
            for i in range(5):
                self.ccache(work, cache_dir, "gcc", "-c", "f%d.c" % i, "-o", "f%d.o" % i)
            return self.ccache(work, cache_dir, "--print-stats").stdout

        first = dict(l.split("\t") for l in build(os.path.join(work, "c1")).splitlines())
        self.assertEqual(int(first["remote_storage_miss"]), 5)
        self.assertEqual(int(first["remote_storage_hit"]), 0)
        objects = {}
        for i in range(5):
            with open(os.path.join(work, "f%d.o" % i), "rb") as f:
                objects[i] = f.read()
            os.unlink(os.path.join(work, "f%d.o" % i))
        st = self.srv.status()
        self.assertGreaterEqual(st["entries"]["keys"], 5)

        second = dict(l.split("\t") for l in build(os.path.join(work, "c2")).splitlines())
        self.assertEqual(int(second["remote_storage_hit"]), 5)
        self.assertEqual(int(second["remote_storage_miss"]), 0)
        for i in range(5):
            with open(os.path.join(work, "f%d.o" % i), "rb") as f:
                self.assertEqual(f.read(), objects[i])


if __name__ == "__main__":
    unittest.main()
