"""The AWS SDK for JavaScript v3 (@aws-sdk/client-s3), a real S3 client.

s3_js_client.mjs does the requests and prints what it saw; this file starts
cairnd and checks.  The SDK is installed by the project's setup with
    npm install --prefix tests/integration/js-deps @aws-sdk/client-s3
(or wherever $CAIRN_JS_DEPS points); the tests are skipped without node or
without the package.
"""
import base64
import binascii
import hashlib
import json
import os
import shutil
import subprocess
import unittest

from harness import Server, tmp_files

HERE = os.path.dirname(os.path.abspath(__file__))
DEPS = os.environ.get("CAIRN_JS_DEPS", os.path.join(HERE, "js-deps"))
SDK = os.path.join(DEPS, "node_modules", "@aws-sdk", "client-s3", "package.json")
AK, SK = "AKIDJSTEST", "js/secret+key"


def js_block(seed, i, size):
    """block() of s3_js_client.mjs."""
    out, n = b"", 0
    while len(out) < size:
        out += hashlib.sha256(("%s/%d/%d" % (seed, i, n)).encode()).digest()
        n += 1
    return out[:size]


@unittest.skipUnless(shutil.which("node"), "node is not installed")
@unittest.skipUnless(os.path.exists(SDK), "@aws-sdk/client-s3 is not installed in " + DEPS)
class JsSdkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--access-key", AK, "--secret-key", SK])
        p = subprocess.run(["node", os.path.join(HERE, "s3_js_client.mjs"), cls.srv.url, AK, SK,
                            "js-bucket"], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, CAIRN_JS_DEPS=DEPS))
        cls.proc = p
        cls.out = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.close()
        assert rc == 0, "cairnd exited with %s\n%s" % (rc, cls.srv.last_log[-6000:])

    def step(self, name, ok=True):
        self.assertIsNotNone(self.out, "node failed: %s\n%s" % (self.proc.stdout,
                                                                self.proc.stderr))
        st = self.out["steps"][name]
        if ok:
            self.assertTrue(st["ok"], st)
        return st

    def test_put_stream_aws_chunked_trailer(self):
        st = self.step("put_stream")
        h = st["request_headers"]
        # how the SDK sent it: aws-chunked, unsigned payload with a CRC32 trailer
        self.assertEqual(h.get("x-amz-content-sha256"), "STREAMING-UNSIGNED-PAYLOAD-TRAILER", h)
        self.assertIn("aws-chunked", h.get("content-encoding", ""))
        self.assertEqual(h.get("x-amz-trailer"), "x-amz-checksum-crc32")
        self.assertEqual(h.get("x-amz-decoded-content-length"), str(st["size"]))
        self.assertEqual(st["etag"], st["expect_etag"])
        crc = 0
        for i in range(48):
            crc = binascii.crc32(js_block("stream", i, 65536 + 17), crc)
        self.assertEqual(st["crc32"], base64.b64encode(crc.to_bytes(4, "big")).decode())
        g = self.step("get_stream")
        self.assertEqual(g["sha256"], st["sha256"])
        self.assertEqual(g["size"], st["size"])
        self.assertEqual(g["etag"], st["expect_etag"])
        self.assertEqual(g["content_type"], "application/x-test")
        self.assertIsNone(g["content_encoding"])  # aws-chunked is not stored
        self.assertEqual(g["metadata"], {"origin": "js-stream"})

    def test_put_buffer_get(self):
        st = self.step("put_buffer")
        self.assertEqual(st["etag"], st["expect_etag"])
        g = self.step("get_buffer")
        self.assertTrue(g["equal"], g)
        self.assertEqual(g["size"], st["size"])
        self.assertEqual(g["metadata"], {"origin": "js-buffer"})
        r = self.step("get_range")
        self.assertTrue(r["equal"], r)
        self.assertEqual(r["content_range"], "bytes 99990-%d/%d" % (st["size"] - 1, st["size"]))

    def test_list_head_delete(self):
        lst = self.step("list")
        self.assertEqual(lst["keys"], ["buf/obj", "stream/obj one+two:3"])
        self.assertEqual(lst["key_count"], 2)
        self.assertEqual(lst["sizes"], [self.step("put_buffer")["size"],
                                        self.step("put_stream")["size"]])
        d = self.step("list_delimiter")
        self.assertEqual(d["prefixes"], ["buf/", "stream/"])
        self.assertEqual(d["keys"], [])
        h = self.step("head")
        self.assertEqual(h["size"], self.step("put_buffer")["size"])
        self.assertEqual(h["etag"], self.step("put_buffer")["expect_etag"])
        self.step("delete")
        gone = self.step("head_after_delete", ok=False)
        self.assertFalse(gone["ok"])
        self.assertEqual(gone["status"], 404)
        missing = self.step("get_missing", ok=False)
        self.assertEqual(missing["error"], "NoSuchKey")

    def test_server_state(self):
        self.step("put_stream")
        st = self.srv.status()
        self.assertEqual(st["entries"]["keys"], 1)  # the buffer object was deleted
        self.assertEqual(tmp_files(self.srv.data), [])


if __name__ == "__main__":
    unittest.main()
