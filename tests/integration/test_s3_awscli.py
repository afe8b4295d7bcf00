"""aws-cli v2 against cairnd's S3 API.

aws-cli v2 is Debian's package awscli, installed as /usr/bin/aws (the `aws`
on PATH may be a pyenv aws-cli v1: it is never used here).  Every call gets
its own HOME, config and credentials files, so nothing of the user's setup
leaks in, and talks to a fresh server with access keys.  Outputs are parsed
(--output json for s3api) and the store is checked through GET /status.

Skipped when /usr/bin/aws is missing or is not aws-cli v2.  A test that needs
what this aws-cli version lacks (CRC64NVME arrived in 2.23, January 2025) is
skipped with the reason.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import unittest
import zlib

from harness import Server, wait_for

AWS = "/usr/bin/aws"
AK, SK = "AKIDAWSCLITEST", "awscli/secret+key=="
MiB = 1 << 20


def _aws_version():
    if not os.access(AWS, os.X_OK):
        return None
    try:
        out = subprocess.run([AWS, "--version"], capture_output=True, text=True, timeout=60,
                             env={"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir()})
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"aws-cli/(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    return tuple(int(x) for x in m.groups()) if m else None


# ---- pure-Python checksums, to check what the server stores -----------------

def _table(poly):
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _table(0x82F63B78)
_CRC64NVME = _table(0x9A6C9329AC4BC9B5)


def b64_crc32(data):
    return base64.b64encode(struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF)).decode()


def b64_crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return base64.b64encode(struct.pack(">I", c ^ 0xFFFFFFFF)).decode()


def b64_crc64nvme(data):
    c = 0xFFFFFFFFFFFFFFFF
    for b in data:
        c = _CRC64NVME[(c ^ b) & 0xFF] ^ (c >> 8)
    return base64.b64encode(struct.pack(">Q", c ^ 0xFFFFFFFFFFFFFFFF)).decode()


def b64_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


VERSION = _aws_version()


@unittest.skipIf(VERSION is None, "aws-cli v2 is not installed as /usr/bin/aws (Debian package awscli)")
@unittest.skipIf(VERSION is not None and VERSION[0] != 2,
                 "/usr/bin/aws is aws-cli %s, not v2" % (VERSION,))
class AwsCliTest(unittest.TestCase):

    def setUp(self):
        self.srv = Server(["--access-key", AK, "--secret-key", SK])
        self.tmp = tempfile.mkdtemp(prefix="cairn-awscli-")
        home = os.path.join(self.tmp, "home")
        os.mkdir(home)
        config = os.path.join(home, "config")
        with open(config, "w") as f:
            f.write("[default]\nregion = us-east-1\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(HOME=home, AWS_CONFIG_FILE=config,
                   AWS_SHARED_CREDENTIALS_FILE=os.path.join(home, "credentials"),
                   AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK,
                   AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                   AWS_PAGER="", AWS_CLI_AUTO_PROMPT="off")
        self.env = env

    def tearDown(self):
        rc = self.srv.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(rc, 0, "cairnd exited with %s\n%s" % (rc, self.srv.last_log[-6000:]))

    # ---- helpers ---------------------------------------------------------------

    def aws(self, *args, ok=True, timeout=300):
        """Runs aws-cli v2; returns (returncode, stdout, stderr)."""
        p = subprocess.run([AWS, "--endpoint-url", self.srv.url] + list(args), env=self.env,
                           capture_output=True, text=True, timeout=timeout, cwd=self.tmp)
        if ok:
            self.assertEqual(p.returncode, 0, "aws %s failed (%d):\n%s\n%s\nserver log:\n%s" % (
                " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:],
                self.srv.read_log()[-3000:]))
        return p.returncode, p.stdout, p.stderr

    def api(self, *args):
        """s3api with JSON output, parsed ({} when the CLI prints nothing)."""
        _, out, _ = self.aws("s3api", *(list(args) + ["--output", "json"]))
        return json.loads(out) if out.strip() else {}

    def api_fails(self, *args):
        """s3api expected to fail; returns the error code from the message."""
        rc, out, err = self.aws("s3api", *(list(args) + ["--output", "json"]), ok=False)
        self.assertNotEqual(rc, 0, "aws s3api %s succeeded: %s" % (" ".join(args), out))
        m = re.search(r"An error occurred \(([^)]+)\)", err)
        return m.group(1) if m else err

    def path(self, name, data=None):
        p = os.path.join(self.tmp, name)
        if data is not None:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        return p

    def tree(self, root, files):
        for rel, data in files.items():
            self.path(os.path.join(root, rel), data)
        return self.path(root)

    def counts(self):
        s = self.srv.status()
        return s["entries"]["keys"], s["entries"]["blobs"]

    def mb(self, bucket):
        _, out, _ = self.aws("s3", "mb", "s3://" + bucket)
        self.assertEqual(out.strip(), "make_bucket: " + bucket)

    # ---- s3 mb / cp: a 100 MiB file --------------------------------------------

    def test_cp_100mib_multipart_up_ranged_down(self):
        self.mb("big")
        self.assertEqual(self.api_fails("create-bucket", "--bucket", "big"),
                         "BucketAlreadyOwnedByYou")
        src = self.path("big.bin", os.urandom(100 * MiB))
        want = file_sha256(src)
        t0 = time.time()
        self.aws("s3", "cp", src, "s3://big/archives/big.bin", "--no-progress", "--only-show-errors")
        up = time.time() - t0
        head = self.api("head-object", "--bucket", "big", "--key", "archives/big.bin")
        self.assertEqual(head["ContentLength"], 100 * MiB)
        # 8 MiB parts: aws-cli switched to a multipart upload of 13 parts
        self.assertTrue(head["ETag"].endswith('-13"'), head)
        self.assertEqual(self.counts(), (1, 1))
        self.assertEqual(self.api("list-multipart-uploads", "--bucket", "big").get("Uploads"), None)
        mp = os.path.join(self.srv.data, "multipart")
        self.assertTrue(wait_for(lambda: not os.path.isdir(mp) or os.listdir(mp) == [], 5),
                        "parts left behind")

        # download: ranged GETs of 8 MiB on several threads (seen in --debug)
        dst = self.path("big.down")
        t0 = time.time()
        _, _, dbg = self.aws("s3", "cp", "s3://big/archives/big.bin", dst, "--no-progress",
                             "--only-show-errors", "--debug")
        down = time.time() - t0
        self.assertEqual(file_sha256(dst), want)
        tasks = re.findall(r"- (ThreadPoolExecutor-\d+_\d+) - s3transfer\.tasks - DEBUG - Executing task "
                           r"GetObjectTask\(transfer_id=\d+, \{[^}]*'Range': 'bytes=(\d+)-(\d*)'", dbg)
        # s3transfer leaves the last range open: 'bytes=100663296-'
        ranges = sorted((int(a), int(b) if b else 100 * MiB - 1) for _, a, b in tasks)
        self.assertEqual(len(ranges), 13, ranges)
        self.assertEqual(ranges[0][0], 0)
        self.assertEqual(ranges[-1][1], 100 * MiB - 1)
        self.assertGreater(len({t for t, _, _ in tasks}), 1, "downloaded on several threads")
        # every range answered exactly: 206 with its Content-Range
        answered = re.findall(r"'Content-Range': 'bytes (\d+)-(\d+)/(\d+)'", dbg)
        self.assertEqual(sorted((int(a), int(b)) for a, b, _ in answered), ranges)
        self.assertTrue(all(int(t) == 100 * MiB for _, _, t in answered))
        print(" [100 MiB up %.1fs, down %.1fs]" % (up, down), end=" ", flush=True)

    # ---- s3 sync, ls, rm -------------------------------------------------------

    def test_sync_both_ways_ls_rm(self):
        self.mb("tree")
        files = {
            "a.txt": b"alpha\n",
            "with space.txt": b"space in the name\n",
            "plus+sign.txt": b"plus in the name\n",
            "sub/b.bin": os.urandom(70000),
            "sub/deeper/c.txt": b"c" * 1000,
        }
        local = self.tree("up", files)
        _, out, _ = self.aws("s3", "sync", local, "s3://tree/t/", "--no-progress")
        self.assertEqual(len([l for l in out.splitlines() if l.startswith("upload:")]), 5, out)
        self.assertEqual(self.counts(), (5, 5))
        # nothing changed: nothing to do
        _, out, _ = self.aws("s3", "sync", local, "s3://tree/t/", "--no-progress")
        self.assertEqual(out.strip(), "")

        # ls: one level, recursive (the bucket list is in test_rb_...)
        _, out, _ = self.aws("s3", "ls", "s3://tree/t/")
        lines = sorted(l.split(None, 3)[-1] if not l.strip().startswith("PRE") else l.strip()
                       for l in out.splitlines())
        self.assertEqual(lines, ["PRE sub/", "a.txt", "plus+sign.txt", "with space.txt"], out)
        _, out, _ = self.aws("s3", "ls", "--recursive", "s3://tree")
        listed = {}
        for l in out.splitlines():
            date, tm, size, key = l.split(None, 3)
            listed[key] = int(size)
        self.assertEqual(listed, {"t/" + k: len(v) for k, v in files.items()})

        # sync down into an empty folder, then once more: nothing to do
        down = self.path("down")
        _, out, _ = self.aws("s3", "sync", "s3://tree/t/", down, "--no-progress")
        self.assertEqual(len([l for l in out.splitlines() if l.startswith("download:")]), 5, out)
        for rel, data in files.items():
            with open(os.path.join(down, rel), "rb") as f:
                self.assertEqual(f.read(), data, rel)

        # a changed file goes up alone; a removed one is deleted with --delete
        self.path(os.path.join("up", "a.txt"), b"alpha, longer now\n")
        os.unlink(os.path.join(local, "sub", "deeper", "c.txt"))
        _, out, _ = self.aws("s3", "sync", local, "s3://tree/t/", "--delete", "--no-progress")
        self.assertEqual(sorted(l.split(":")[0] for l in out.splitlines()), ["delete", "upload"], out)
        self.assertIn("s3://tree/t/sub/deeper/c.txt", out)
        self.assertEqual(self.counts(), (4, 4))

        # rm one key, then a folder recursively
        _, out, _ = self.aws("s3", "rm", "s3://tree/t/with space.txt")
        self.assertEqual(out.strip(), "delete: s3://tree/t/with space.txt")
        _, out, _ = self.aws("s3", "rm", "--recursive", "s3://tree/t/sub/")
        self.assertEqual(out.strip(), "delete: s3://tree/t/sub/b.bin")
        _, out, _ = self.aws("s3", "ls", "--recursive", "s3://tree")
        self.assertEqual(sorted(l.split(None, 3)[3] for l in out.splitlines()),
                         ["t/a.txt", "t/plus+sign.txt"])
        self.assertTrue(wait_for(lambda: self.counts() == (2, 2), 10), self.counts())

    # ---- listings ----------------------------------------------------------------

    def test_list_objects_pagination_and_delimiter(self):
        self.mb("lists")
        files = {"top %02d+x.txt" % i: b"t%d" % i for i in range(5)}
        files.update({"d1/f%02d" % i: b"d1-%d" % i for i in range(10)})
        files.update({"d2/g%02d" % i: b"d2-%d" % i for i in range(10)})
        self.aws("s3", "sync", self.tree("lists", files), "s3://lists", "--only-show-errors")
        every = sorted(files)
        self.assertEqual(self.counts(), (25, 25))

        # server-side pages of 4 keys: continuation tokens (v2) and markers (v1)
        for op in ("list-objects-v2", "list-objects"):
            out = self.api(op, "--bucket", "lists", "--page-size", "4")
            self.assertEqual([c["Key"] for c in out["Contents"]], every, op)
            self.assertNotIn("NextToken", out)

        # --max-items: the CLI's own pagination over server pages, resumed by token
        got, token, calls = [], None, 0
        while True:
            args = ["list-objects-v2", "--bucket", "lists", "--max-items", "9", "--page-size", "4"]
            if token:
                args += ["--starting-token", token]
            out = self.api(*args)
            calls += 1
            keys = [c["Key"] for c in out.get("Contents", [])]
            self.assertLessEqual(len(keys), 9)
            got += keys
            token = out.get("NextToken")
            if not token:
                break
            self.assertLess(calls, 10)
        self.assertEqual(got, every)
        self.assertEqual(calls, 3)

        # one level with the delimiter: 5 keys and two common prefixes, in pages
        # of two across prefixes and keys: nothing twice, nothing lost.  v1 resumes
        # from NextMarker, which is then a common prefix ("d2/"): everything under
        # it must be skipped, as with v2's continuation token.
        # list-object-versions resumes from NextKeyMarker the same way.
        for op, items in (("list-objects-v2", "Contents"), ("list-objects", "Contents"),
                          ("list-object-versions", "Versions")):
            with self.subTest(op=op):
                out = self.api(op, "--bucket", "lists", "--delimiter", "/", "--page-size", "2")
                self.assertEqual([c["Key"] for c in out[items]], sorted(files)[-5:])
                self.assertEqual([p["Prefix"] for p in out["CommonPrefixes"]], ["d1/", "d2/"])
        out = self.api("list-objects-v2", "--bucket", "lists", "--prefix", "d2/", "--delimiter", "/",
                       "--max-items", "4")
        self.assertEqual([c["Key"] for c in out["Contents"]], ["d2/g00", "d2/g01", "d2/g02", "d2/g03"])
        self.assertIn("NextToken", out)
        self.assertNotIn("CommonPrefixes", out)

    # ---- checksums ---------------------------------------------------------------

    def test_put_get_with_checksums(self):
        self.mb("sums")
        body = os.urandom(20000) + b"end"
        src = self.path("body.bin", body)
        expect = {"CRC32": b64_crc32(body), "CRC32C": b64_crc32c(body), "SHA256": b64_sha256(body)}
        for alg, value in expect.items():
            key = "obj-" + alg.lower()
            out = self.api("put-object", "--bucket", "sums", "--key", key, "--body", src,
                           "--checksum-algorithm", alg)
            self.assertEqual(out.get("Checksum" + alg), value, out)
            self.assertEqual(out["ETag"], '"%s"' % hashlib.md5(body).hexdigest())
            dst = self.path("got-" + alg)
            out = self.api("get-object", "--bucket", "sums", "--key", key, "--checksum-mode",
                           "ENABLED", dst)
            self.assertEqual(out.get("Checksum" + alg), value, out)
            with open(dst, "rb") as f:
                self.assertEqual(f.read(), body)
        # a ranged read carries no checksum of the whole object
        out = self.api("get-object", "--bucket", "sums", "--key", "obj-crc32", "--range", "bytes=0-9",
                       "--checksum-mode", "ENABLED", self.path("part"))
        self.assertEqual(out["ContentRange"], "bytes 0-9/%d" % len(body))
        self.assertNotIn("ChecksumCRC32", out)
        # HEAD returns it too
        out = self.api("head-object", "--bucket", "sums", "--key", "obj-crc32c", "--checksum-mode",
                       "ENABLED")
        self.assertEqual(out.get("ChecksumCRC32C"), expect["CRC32C"])
        # same body under three keys: one blob
        self.assertEqual(self.counts(), (3, 1))
        # a wrong checksum is refused and stores nothing
        self.assertEqual(self.api_fails("put-object", "--bucket", "sums", "--key", "bad", "--body", src,
                                        "--checksum-crc32", b64_crc32(b"something else")),
                         "BadDigest")
        self.assertEqual(self.counts(), (3, 1))

    def test_put_get_crc64nvme(self):
        self.mb("nvme")
        body = os.urandom(5000)
        src = self.path("body.bin", body)
        rc, out, err = self.aws("s3api", "put-object", "--bucket", "nvme", "--key", "k", "--body", src,
                                "--checksum-algorithm", "CRC64NVME", "--output", "json", ok=False)
        if rc != 0 and re.search(r"Unsupported checksum algorithm|Invalid choice|invalid choice", err):
            self.skipTest("aws-cli %s predates CRC64NVME (added in 2.23, January 2025): %s"
                          % (".".join(map(str, VERSION)), err.strip()))
        self.assertEqual(rc, 0, err)
        want = b64_crc64nvme(body)
        self.assertEqual(json.loads(out).get("ChecksumCRC64NVME"), want)
        got = self.api("get-object", "--bucket", "nvme", "--key", "k", "--checksum-mode", "ENABLED",
                       self.path("got"))
        self.assertEqual(got.get("ChecksumCRC64NVME"), want)
        # and by default, without asking: aws-cli v2 since 2025 sends CRC64NVME by itself
        out = self.api("put-object", "--bucket", "nvme", "--key", "default", "--body", src)
        got = self.api("head-object", "--bucket", "nvme", "--key", "default", "--checksum-mode",
                       "ENABLED")
        self.assertEqual(got.get("ChecksumCRC64NVME"), want, got)
        self.assertEqual(self.counts(), (2, 1))

    # ---- s3 cp / mv / sync between keys: multipart copies (UploadPartCopy) ------

    def test_cp_mv_sync_between_keys_of_20mib(self):
        """aws-cli copies an object over 8 MiB from key to key with
        UploadPartCopy (8 MiB ranges of the source, then Complete): the copy
        has the same bytes and metadata, and the store keeps the body once."""
        self.mb("pcopy")
        body = os.urandom(20 * MiB + 12345)
        src = self.path("pc.bin", body)
        self.aws("s3", "cp", src, "s3://pcopy/a/pc.bin", "--content-type", "application/x-pc",
                 "--metadata", "origin=first", "--only-show-errors")
        self.assertEqual(self.counts(), (1, 1))
        _, _, dbg = self.aws("s3", "cp", "s3://pcopy/a/pc.bin", "s3://pcopy/b/pc.bin",
                             "--only-show-errors", "--debug")
        self.assertIn("UploadPartCopy", dbg)  # (the CLI's own operation name, in its log)
        head = self.api("head-object", "--bucket", "pcopy", "--key", "b/pc.bin")
        self.assertEqual(head["ContentLength"], len(body))
        self.assertTrue(head["ETag"].endswith('-3"'), head)
        self.assertEqual(head["ContentType"], "application/x-pc")
        self.assertEqual(head["Metadata"], {"origin": "first"})
        self.aws("s3", "mv", "s3://pcopy/b/pc.bin", "s3://pcopy/c/moved.bin", "--only-show-errors")
        self.aws("s3", "sync", "s3://pcopy/a/", "s3://pcopy/d/", "--only-show-errors")
        listed = self.api("list-objects-v2", "--bucket", "pcopy")["Contents"]
        self.assertEqual(sorted(o["Key"] for o in listed),
                         ["a/pc.bin", "c/moved.bin", "d/pc.bin"])
        for key in ("c/moved.bin", "d/pc.bin"):
            dst = self.path(key.replace("/", "_"))
            self.aws("s3", "cp", "s3://pcopy/" + key, dst, "--only-show-errors")
            self.assertEqual(file_sha256(dst), hashlib.sha256(body).hexdigest())
        self.assertEqual(self.counts(), (3, 1))  # three keys, one body
        self.assertEqual(self.api("list-multipart-uploads", "--bucket", "pcopy").get("Uploads"), None)

    # ---- copy onto itself, delete-objects, versions, acl --------------------------

    def test_copy_object_onto_itself_replace(self):
        self.mb("touch")
        body = b"blob that BuildKit touches" * 100
        src = self.path("b", body)
        self.api("put-object", "--bucket", "touch", "--key", "blobs/sha256:abc", "--body", src,
                 "--metadata", "origin=first", "--content-type", "application/x-first",
                 "--checksum-algorithm", "CRC32")
        before = self.api("head-object", "--bucket", "touch", "--key", "blobs/sha256:abc")
        # onto itself without changing anything: refused
        self.assertEqual(self.api_fails("copy-object", "--bucket", "touch", "--key", "blobs/sha256:abc",
                                        "--copy-source", "touch/blobs/sha256:abc"), "InvalidRequest")
        time.sleep(1.1)  # Last-Modified has one-second resolution
        out = self.api("copy-object", "--bucket", "touch", "--key", "blobs/sha256:abc",
                       "--copy-source", "touch/blobs/sha256:abc", "--metadata-directive", "REPLACE",
                       "--metadata", "touched=yes", "--content-type", "application/x-second")
        etag = '"%s"' % hashlib.md5(body).hexdigest()
        self.assertEqual(out["CopyObjectResult"]["ETag"], etag)
        after = self.api("head-object", "--bucket", "touch", "--key", "blobs/sha256:abc",
                         "--checksum-mode", "ENABLED")
        self.assertEqual(after["Metadata"], {"touched": "yes"})
        self.assertEqual(after["ContentType"], "application/x-second")
        self.assertEqual((after["ETag"], after["ContentLength"]), (etag, len(body)))
        self.assertGreater(after["LastModified"], before["LastModified"])
        self.assertEqual(self.counts(), (1, 1))
        # the checksum belongs to the bytes, which did not change: S3 keeps it on a copy
        self.assertEqual(after.get("ChecksumCRC32"), b64_crc32(body),
                         "CopyObject (REPLACE) dropped the stored checksum: %s" % after)

    def test_delete_objects(self):
        self.mb("dels")
        files = {"k%d" % i: b"v%d" % i for i in range(4)}
        self.aws("s3", "sync", self.tree("dels", files), "s3://dels", "--only-show-errors")
        self.assertEqual(self.counts(), (4, 4))
        req = {"Objects": [{"Key": "k0"}, {"Key": "k1"}, {"Key": "k2"}, {"Key": "never-was"}],
               "Quiet": False}
        out = self.api("delete-objects", "--bucket", "dels", "--delete", json.dumps(req))
        self.assertEqual(sorted(d["Key"] for d in out["Deleted"]), ["k0", "k1", "k2", "never-was"])
        self.assertNotIn("Errors", out)
        out = self.api("list-objects-v2", "--bucket", "dels")
        self.assertEqual([c["Key"] for c in out["Contents"]], ["k3"])
        self.assertTrue(wait_for(lambda: self.counts() == (1, 1), 10), self.counts())
        out = self.api("delete-objects", "--bucket", "dels", "--delete",
                       json.dumps({"Objects": [{"Key": "k3"}], "Quiet": True}))
        self.assertNotIn("Deleted", out)
        self.assertNotIn("Errors", out)
        self.assertTrue(wait_for(lambda: self.counts() == (0, 0), 10), self.counts())

    def test_versions_and_versioning_of_unversioned_bucket_and_acl(self):
        self.mb("plain")
        src = self.path("x", b"some bytes")
        out = self.api("put-object", "--bucket", "plain", "--key", "private/x", "--body", src,
                       "--acl", "private")
        self.assertEqual(out["ETag"], '"%s"' % hashlib.md5(b"some bytes").hexdigest())
        self.api("put-object", "--bucket", "plain", "--key", "y", "--body", src)
        self.assertEqual(self.api("get-bucket-versioning", "--bucket", "plain"), {})
        out = self.api("list-object-versions", "--bucket", "plain")
        self.assertEqual([(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in out["Versions"]],
                         [("private/x", "null", True, 10), ("y", "null", True, 10)])
        self.assertNotIn("DeleteMarkers", out)
        self.assertEqual(self.counts(), (2, 1))

    # ---- rb ----------------------------------------------------------------------

    def test_rb_non_empty_fails_then_succeeds(self):
        self.mb("gone")
        self.aws("s3", "cp", self.path("f", b"keep me"), "s3://gone/dir/f", "--only-show-errors")
        rc, out, err = self.aws("s3", "rb", "s3://gone", ok=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("BucketNotEmpty", err)
        self.assertEqual(self.counts(), (1, 1))
        self.aws("s3", "rm", "--recursive", "s3://gone", "--only-show-errors")
        _, out, _ = self.aws("s3", "rb", "s3://gone")
        self.assertEqual(out.strip(), "remove_bucket: gone")
        self.assertEqual(self.api_fails("head-bucket", "--bucket", "gone"), "404")
        self.assertTrue(wait_for(lambda: self.counts() == (0, 0), 10), self.counts())
        self.mb("other")
        _, out, _ = self.aws("s3", "ls")  # the bucket list
        self.assertRegex(out, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d other\n$")


if __name__ == "__main__":
    unittest.main()
