"""boto3 and aws-cli, real S3 clients, against cairnd's S3 API.

boto3 comes from the machine's python3 (pyenv: botocore 1.43, flexible
checksums on by default) or from Debian's python3-boto3 (an older botocore
without default checksums: the tests then ask for CRC32 themselves).  The
class is skipped when boto3 cannot be imported.  CRC32C and CRC64NVME need
botocore[crt] to be computed by the SDK; without it the test computes them
itself and hands the values to the SDK, which sends them as headers.

One server per class (with access keys); each test works in its own bucket.
"""
import base64
import binascii
import datetime
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import zlib

from harness import Server, tmp_files

AK, SK = "AKIDBOTO3TEST", "boto3/secret+key=="

try:
    import boto3  # noqa: F401
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError
    HAVE_BOTO3 = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_BOTO3 = False

MiB = 1 << 20


def botocore_version():
    return tuple(int(x) for x in botocore.__version__.split(".")[:2])


def default_checksums():
    """Does this botocore send a CRC32 with every upload by itself?"""
    return botocore_version() >= (1, 36)


def have_crt():
    try:
        import awscrt  # noqa: F401
        return True
    except ImportError:
        return False


# ---- pure-Python checksums (to check what the server stores and returns) ----

def _crc_table(poly, width):
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_T = _crc_table(0x82F63B78, 32)
_CRC64_T = _crc_table(0x9A6C9329AC4BC9B5, 64)  # CRC64NVME, reflected 0xAD93D23594C93659


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C_T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc64nvme(data):
    c = 0xFFFFFFFFFFFFFFFF
    for b in data:
        c = _CRC64_T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFFFFFFFFFF


def b64(raw):
    return base64.b64encode(raw).decode()


def b64_crc32(data):
    return b64((binascii.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big"))


def b64_crc32c(data):
    return b64(crc32c(data).to_bytes(4, "big"))


def b64_crc64nvme(data):
    return b64(crc64nvme(data).to_bytes(8, "big"))


def err_code(exc):
    return exc.response.get("Error", {}).get("Code")


def status_of(exc):
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


@unittest.skipUnless(HAVE_BOTO3, "boto3 is not installed (pip boto3 or Debian python3-boto3)")
class Boto3Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        assert crc64nvme(b"123456789") == 0xAE8B14860A799888
        assert crc32c(b"123456789") == 0xE3069283
        cls.srv = Server(["--access-key", AK, "--secret-key", SK])
        cls.work = tempfile.mkdtemp(prefix="cairn-boto3-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        rc = cls.srv.close()
        assert rc == 0, "cairnd exited with %s\n%s" % (rc, cls.srv.last_log[-6000:])

    def client(self, **cfg):
        s3cfg = {"addressing_style": "path"}
        config = Config(s3=s3cfg, retries={"max_attempts": 1}, **cfg)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.srv.url, aws_access_key_id=AK, aws_secret_access_key=SK,
            region_name="us-east-1", config=config)

    def setUp(self):
        self.s3 = self.client()
        self.bucket = "b-" + self._testMethodName.replace("_", "-")[:50].lower()
        self.s3.create_bucket(Bucket=self.bucket)

    def put_kw(self):
        """Ask for CRC32 where botocore would not send one by itself."""
        return {} if default_checksums() else {"ChecksumAlgorithm": "CRC32"}

    def assertClientError(self, code, status, fn, *a, **kw):
        with self.assertRaises(ClientError) as cm:
            fn(*a, **kw)
        self.assertEqual(err_code(cm.exception), code, cm.exception.response)
        if status is not None:
            self.assertEqual(status_of(cm.exception), status, cm.exception.response)
        return cm.exception

    # ---- put / get and checksums ------------------------------------------------

    def test_put_get_default_crc32(self):
        body = os.urandom(100_000)
        r = self.s3.put_object(Bucket=self.bucket, Key="obj", Body=body, **self.put_kw())
        self.assertEqual(r["ETag"], '"%s"' % hashlib.md5(body).hexdigest())
        self.assertEqual(r.get("ChecksumCRC32"), b64_crc32(body))
        g = self.s3.get_object(Bucket=self.bucket, Key="obj", ChecksumMode="ENABLED")
        self.assertEqual(g["Body"].read(), body)
        self.assertEqual(g.get("ChecksumCRC32"), b64_crc32(body))
        self.assertEqual(g["ContentLength"], len(body))
        self.assertEqual(g["ETag"], r["ETag"])
        h = self.s3.head_object(Bucket=self.bucket, Key="obj", ChecksumMode="ENABLED")
        self.assertEqual(h.get("ChecksumCRC32"), b64_crc32(body))
        # without the mode, no checksum is returned (botocore >= 1.36 asks for it by
        # default: turn that off)
        plain = self.client(response_checksum_validation="when_required") \
            if default_checksums() else self.s3
        g = plain.get_object(Bucket=self.bucket, Key="obj")
        g["Body"].read()
        self.assertNotIn("x-amz-checksum-crc32", g["ResponseMetadata"]["HTTPHeaders"])

    def test_put_get_explicit_sha256_and_sha1(self):
        for alg, fn in (("SHA256", hashlib.sha256), ("SHA1", hashlib.sha1)):
            body = os.urandom(70_000)
            want = b64(fn(body).digest())
            r = self.s3.put_object(Bucket=self.bucket, Key=alg, Body=body, ChecksumAlgorithm=alg)
            self.assertEqual(r.get("Checksum" + alg), want)
            g = self.s3.get_object(Bucket=self.bucket, Key=alg, ChecksumMode="ENABLED")
            self.assertEqual(g["Body"].read(), body)
            self.assertEqual(g.get("Checksum" + alg), want)
            # a ranged GET (206) never carries the whole object's checksum
            g = self.s3.get_object(Bucket=self.bucket, Key=alg, ChecksumMode="ENABLED",
                                   Range="bytes=10-19")
            self.assertEqual(g["ResponseMetadata"]["HTTPStatusCode"], 206)
            self.assertEqual(g["Body"].read(), body[10:20])
            self.assertEqual(g["ContentRange"], "bytes 10-19/%d" % len(body))
            hdrs = g["ResponseMetadata"]["HTTPHeaders"]
            self.assertFalse([k for k in hdrs if k.startswith("x-amz-checksum-")
                              and k != "x-amz-checksum-type"], hdrs)

    def put_with_header(self, key, body, name, value):
        """PutObject with an extra header (for parameters an older botocore lacks)."""
        member = {"x-amz-checksum-crc32c": "ChecksumCRC32C",
                  "x-amz-checksum-crc64nvme": "ChecksumCRC64NVME"}.get(name)
        shape = self.s3.meta.service_model.operation_model("PutObject").input_shape
        if member in shape.members:
            return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body,
                                      **{member: value})

        def add(request, **kw):
            request.headers[name] = value
        self.s3.meta.events.register("before-sign.s3.PutObject", add)
        try:
            return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        finally:
            self.s3.meta.events.unregister("before-sign.s3.PutObject", add)

    def test_put_crc32c_crc64nvme(self):
        """Values computed here (or by the SDK when botocore[crt] is installed)."""
        for alg, fn in (("CRC32C", b64_crc32c), ("CRC64NVME", b64_crc64nvme)):
            hdr = "x-amz-checksum-" + alg.lower()
            body = os.urandom(5000)
            want = fn(body)
            r = self.put_with_header(alg, body, hdr, want)
            self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"].get(hdr), want)
            g = self.s3.get_object(Bucket=self.bucket, Key=alg, ChecksumMode="ENABLED")
            self.assertEqual(g["Body"].read(), body)
            self.assertEqual(g["ResponseMetadata"]["HTTPHeaders"].get(hdr), want)
            # a wrong value: BadDigest, the old object stays
            bad = fn(body + b"x")
            self.assertClientError("BadDigest", 400, self.put_with_header, alg, b"other", hdr,
                                   bad)
            g = self.s3.get_object(Bucket=self.bucket, Key=alg)
            self.assertEqual(g["Body"].read(), body)
            algs = self.s3.meta.service_model.operation_model("PutObject").input_shape \
                .members["ChecksumAlgorithm"].enum
            if have_crt() and alg in algs:
                r = self.s3.put_object(Bucket=self.bucket, Key=alg + "-sdk", Body=body,
                                       ChecksumAlgorithm=alg)
                self.assertEqual(r.get("Checksum" + alg), want)

    def test_put_wrong_crc32_bad_digest(self):
        self.assertClientError("BadDigest", 400, self.s3.put_object, Bucket=self.bucket,
                               Key="k", Body=b"hello", ChecksumCRC32=b64_crc32(b"hellO"))
        self.assertClientError("NoSuchKey", 404, self.s3.get_object, Bucket=self.bucket,
                               Key="k")

    def test_user_metadata_and_content_headers(self):
        self.s3.put_object(Bucket=self.bucket, Key="m", Body=b"x", ContentType="text/plain",
                           CacheControl="max-age=60",
                           Metadata={"cachekey": "abc", "Two": "2", "empty": ""})
        h = self.s3.head_object(Bucket=self.bucket, Key="m")
        self.assertEqual(h["Metadata"], {"cachekey": "abc", "two": "2", "empty": ""})
        got = self.s3.get_object(Bucket=self.bucket, Key="m")
        self.assertEqual(got["Metadata"], {"cachekey": "abc", "two": "2", "empty": ""})
        self.assertEqual(h["ContentType"], "text/plain")
        self.assertEqual(h["CacheControl"], "max-age=60")
        self.assertEqual(h["ContentLength"], 1)

    def test_missing_key_and_bucket(self):
        self.assertClientError("NoSuchKey", 404, self.s3.get_object, Bucket=self.bucket,
                               Key="nope")
        self.assertClientError("404", 404, self.s3.head_object, Bucket=self.bucket, Key="nope")
        self.assertClientError("NoSuchBucket", 404, self.s3.get_object, Bucket="no-such-bkt",
                               Key="k")
        self.assertClientError("NoSuchBucket", 404, self.s3.list_objects_v2,
                               Bucket="no-such-bkt")

    def test_get_part_number(self):
        """An object is one part: part 1 is all of it, answered as S3 answers
        it for an object uploaded whole (206 with Content-Range, which SDKs'
        part-wise downloads read); part 2 does not exist."""
        body = os.urandom(1000)
        self.s3.put_object(Bucket=self.bucket, Key="parts", Body=body)
        r = self.s3.get_object(Bucket=self.bucket, Key="parts", PartNumber=1)
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 206)
        self.assertEqual(r["ContentRange"], "bytes 0-999/1000")
        self.assertEqual(r["Body"].read(), body)
        h = self.s3.head_object(Bucket=self.bucket, Key="parts", PartNumber=1)
        self.assertEqual((h["ResponseMetadata"]["HTTPStatusCode"], h["ContentLength"]),
                         (206, 1000))
        self.assertClientError("InvalidPartNumber", 416, self.s3.get_object, Bucket=self.bucket,
                               Key="parts", PartNumber=2)

    # ---- transfers: multipart upload_file / ranged download_file ------------------

    def test_upload_file_download_file_50mib(self):
        src = os.path.join(self.work, "big.bin")
        dst = os.path.join(self.work, "big.out")
        with open(src, "wb") as f:
            for _ in range(50):
                f.write(os.urandom(MiB))
        self.addCleanup(os.unlink, src)
        from boto3.s3.transfer import TransferConfig
        mpdir = os.path.join(self.srv.data, "multipart")
        uploads_before = set(os.listdir(mpdir))
        tc = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                            max_concurrency=4)
        self.s3.upload_file(src, self.bucket, "dir/big.bin", Config=tc)
        h = self.s3.head_object(Bucket=self.bucket, Key="dir/big.bin")
        self.assertEqual(h["ContentLength"], 50 * MiB)
        self.assertTrue(h["ETag"].endswith('-7"'), h["ETag"])  # 6 x 8 MiB + 2 MiB
        # the multipart ETag is S3's
        md5s = b""
        with open(src, "rb") as f:
            while True:
                part = f.read(8 * MiB)
                if not part:
                    break
                md5s += hashlib.md5(part).digest()
        self.assertEqual(h["ETag"], '"%s-7"' % hashlib.md5(md5s).hexdigest())
        self.s3.download_file(self.bucket, "dir/big.bin", dst, Config=tc)
        self.addCleanup(os.unlink, dst)
        with open(src, "rb") as a, open(dst, "rb") as b:
            self.assertEqual(hashlib.sha256(a.read()).digest(), hashlib.sha256(b.read()).digest())
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []),
                         [])
        self.assertEqual(set(os.listdir(mpdir)), uploads_before)
        self.assertEqual(tmp_files(self.srv.data), [])

    # ---- listings -----------------------------------------------------------------

    def fill(self, keys):
        for k in keys:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=k.encode())

    def test_list_v2_pagination_delimiter_start_after(self):
        keys = sorted(["a/%02d" % i for i in range(7)] + ["b/x", "b/y/z", "c", "d/e/f"])
        self.fill(keys)
        pages = list(self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, PaginationConfig={"PageSize": 3}))
        self.assertEqual(len(pages), 4)
        self.assertEqual([c["Key"] for p in pages for c in p.get("Contents", [])], keys)
        self.assertTrue(all(p["IsTruncated"] for p in pages[:-1]))
        self.assertFalse(pages[-1]["IsTruncated"])
        self.assertTrue(all("NextContinuationToken" in p for p in pages[:-1]))
        self.assertEqual([p["KeyCount"] for p in pages], [3, 3, 3, 2])
        c = pages[0]["Contents"][0]
        self.assertEqual(c["Size"], len(c["Key"]))
        self.assertEqual(c["ETag"], '"%s"' % hashlib.md5(c["Key"].encode()).hexdigest())

        r = self.s3.list_objects_v2(Bucket=self.bucket, Delimiter="/")
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["a/", "b/", "d/"])
        self.assertEqual([c["Key"] for c in r["Contents"]], ["c"])
        self.assertEqual(r["KeyCount"], 4)
        r = self.s3.list_objects_v2(Bucket=self.bucket, Delimiter="/", Prefix="b/")
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["b/y/"])
        self.assertEqual([c["Key"] for c in r["Contents"]], ["b/x"])
        # delimiter with pagination: a common prefix counts as one and is not repeated
        pages = list(self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Delimiter="/", PaginationConfig={"PageSize": 1}))
        got = [x.get("Prefix") or x.get("Key") for p in pages
               for x in p.get("CommonPrefixes", []) + p.get("Contents", [])]
        self.assertEqual(sorted(got), ["a/", "b/", "c", "d/"])
        self.assertEqual(len(got), 4)

        r = self.s3.list_objects_v2(Bucket=self.bucket, StartAfter="a/05")
        self.assertEqual([c["Key"] for c in r["Contents"]], [k for k in keys if k > "a/05"])
        self.assertEqual(r["StartAfter"], "a/05")
        r = self.s3.list_objects_v2(Bucket=self.bucket, MaxKeys=0)
        self.assertEqual(r.get("Contents", []), [])
        r = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="zzz")
        self.assertEqual(r.get("Contents", []), [])
        self.assertEqual(r["KeyCount"], 0)

    WEIRD = ["with space", "plus+sign", "per%cent", "colon:blobs/sha256:abc",
             "unicodé/ключ/日本", "amp&lt<gt>\"quote'", "tilde~star*", "hash#q?x=1",
             "a b/c d"]

    def test_list_encoding_type_url(self):
        self.fill(self.WEIRD)
        # botocore asks for encoding-type=url by itself and decodes the answer
        r = self.s3.list_objects_v2(Bucket=self.bucket)
        self.assertEqual([c["Key"] for c in r["Contents"]], sorted(self.WEIRD))
        # asked for explicitly, the keys come back encoded: decode them here
        r = self.s3.list_objects_v2(Bucket=self.bucket, EncodingType="url")
        self.assertEqual(r.get("EncodingType"), "url")
        raw = [c["Key"] for c in r["Contents"]]
        for k in raw:
            self.assertNotIn(" ", k)
            self.assertTrue(all(ord(ch) < 128 for ch in k), k)
        self.assertEqual([urllib.parse.unquote_plus(k) for k in raw], sorted(self.WEIRD))
        # delimiter and prefix with encoded characters
        r = self.s3.list_objects_v2(Bucket=self.bucket, Delimiter="/", Prefix="unicodé/")
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["unicodé/ключ/"])
        r = self.s3.list_objects(Bucket=self.bucket, Delimiter=" ")
        self.assertEqual(sorted(p["Prefix"] for p in r["CommonPrefixes"]), ["a ", "with "])
        # each key reads back
        for k in self.WEIRD:
            self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key=k)["Body"].read(),
                             k.encode())

    def test_list_v1_marker(self):
        keys = ["k%02d" % i for i in range(10)]
        self.fill(keys)
        r = self.s3.list_objects(Bucket=self.bucket, MaxKeys=4)
        self.assertTrue(r["IsTruncated"])
        self.assertEqual([c["Key"] for c in r["Contents"]], keys[:4])
        r = self.s3.list_objects(Bucket=self.bucket, Marker="k03", MaxKeys=4)
        self.assertEqual([c["Key"] for c in r["Contents"]], keys[4:8])
        self.assertEqual(r["Marker"], "k03")
        pages = list(self.s3.get_paginator("list_objects").paginate(
            Bucket=self.bucket, PaginationConfig={"PageSize": 3}))
        self.assertEqual([c["Key"] for p in pages for c in p["Contents"]], keys)
        # with a delimiter, NextMarker is given
        self.fill(["p/1", "p/2", "q/1"])
        r = self.s3.list_objects(Bucket=self.bucket, Delimiter="/", MaxKeys=11)
        self.assertTrue(r["IsTruncated"])
        self.assertEqual(r["NextMarker"], "p/")
        r = self.s3.list_objects(Bucket=self.bucket, Delimiter="/", Marker=r["NextMarker"])
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["q/"])

    def test_a_marker_equal_to_the_prefix_is_a_marker(self):
        """Keys after the marker, as S3 lists them, when the marker is the
        prefix itself (the prefix a key of its own): paging by one key at a
        time through such a prefix goes forward."""
        keys = ["m", "m a", "m b", "mz"]
        self.fill(keys)
        r = self.s3.list_objects(Bucket=self.bucket, Prefix="m", Marker="m")
        self.assertEqual([c["Key"] for c in r["Contents"]], keys[1:])
        r = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="m", StartAfter="m")
        self.assertEqual([c["Key"] for c in r["Contents"]], keys[1:])
        pages = self.s3.get_paginator("list_objects").paginate(
            Bucket=self.bucket, Prefix="m", PaginationConfig={"PageSize": 1})
        self.assertEqual([c["Key"] for p in pages for c in p["Contents"]], keys)

    def test_list_v1_paginator_with_delimiter(self):
        """botocore's ListObjects paginator follows NextMarker, which is a common prefix
        here: the next page must start after everything under it."""
        self.fill(["a", "p/1", "p/2", "q/1", "r"])
        pages = list(self.s3.get_paginator("list_objects").paginate(
            Bucket=self.bucket, Delimiter="/", PaginationConfig={"PageSize": 1}))
        got = [x.get("Prefix") or x.get("Key") for p in pages
               for x in p.get("CommonPrefixes", []) + p.get("Contents", [])]
        self.assertEqual(got, ["a", "p/", "q/", "r"])

    def test_delete_objects(self):
        keys = ["d%d" % i for i in range(5)]
        self.fill(keys)
        r = self.s3.delete_objects(Bucket=self.bucket, Delete={
            "Objects": [{"Key": "d0"}, {"Key": "d1"}, {"Key": "missing"}]})
        self.assertEqual(sorted(d["Key"] for d in r["Deleted"]), ["d0", "d1", "missing"])
        self.assertEqual(r.get("Errors", []), [])
        r = self.s3.delete_objects(Bucket=self.bucket, Delete={
            "Objects": [{"Key": "d2"}], "Quiet": True})
        self.assertEqual(r.get("Deleted", []), [])
        left = [c["Key"] for c in self.s3.list_objects_v2(Bucket=self.bucket)["Contents"]]
        self.assertEqual(left, ["d3", "d4"])
        self.s3.delete_object(Bucket=self.bucket, Key="d3")
        self.s3.delete_object(Bucket=self.bucket, Key="never-there")  # 204 too

    # ---- copy -----------------------------------------------------------------------

    def test_copy_object(self):
        body = os.urandom(3000)
        self.s3.put_object(Bucket=self.bucket, Key="src", Body=body, ContentType="x/y",
                           Metadata={"a": "1"})
        r = self.s3.copy_object(Bucket=self.bucket, Key="dst/copy",
                                CopySource={"Bucket": self.bucket, "Key": "src"})
        self.assertEqual(r["CopyObjectResult"]["ETag"], '"%s"' % hashlib.md5(body).hexdigest())
        g = self.s3.get_object(Bucket=self.bucket, Key="dst/copy")
        self.assertEqual(g["Body"].read(), body)
        self.assertEqual(g["Metadata"], {"a": "1"})
        # the copy's time, as its listing shows it (to the millisecond)
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="dst/copy")["Contents"][0]
        self.assertEqual(r["CopyObjectResult"]["LastModified"], listed["LastModified"])
        self.assertEqual(g["ContentType"], "x/y")
        # across buckets, with a key that needs encoding in x-amz-copy-source
        self.s3.create_bucket(Bucket=self.bucket + "-2")
        self.s3.put_object(Bucket=self.bucket, Key="sp ace+plus:colon", Body=b"weird")
        self.s3.copy_object(Bucket=self.bucket + "-2", Key="k",
                            CopySource={"Bucket": self.bucket, "Key": "sp ace+plus:colon"})
        self.assertEqual(self.s3.get_object(Bucket=self.bucket + "-2", Key="k")["Body"].read(),
                         b"weird")
        self.assertClientError("NoSuchKey", 404, self.s3.copy_object, Bucket=self.bucket,
                               Key="x", CopySource={"Bucket": self.bucket, "Key": "nope"})
        # onto itself without REPLACE: refused
        self.assertClientError("InvalidRequest", 400, self.s3.copy_object, Bucket=self.bucket,
                               Key="src", CopySource={"Bucket": self.bucket, "Key": "src"})

    def test_copy_onto_itself_replace_touch(self):
        """BuildKit's touch: self-copy with MetadataDirective=REPLACE."""
        body = os.urandom(1000)
        self.s3.put_object(Bucket=self.bucket, Key="blobs/sha256:ab", Body=body,
                           Metadata={"old": "1"})
        before = self.s3.head_object(Bucket=self.bucket, Key="blobs/sha256:ab")
        r = self.s3.copy_object(Bucket=self.bucket, Key="blobs/sha256:ab",
                                CopySource={"Bucket": self.bucket, "Key": "blobs/sha256:ab"},
                                MetadataDirective="REPLACE", Metadata={"touched": "yes"},
                                ContentType="application/vnd.test")
        self.assertEqual(r["CopyObjectResult"]["ETag"], before["ETag"])
        after = self.s3.head_object(Bucket=self.bucket, Key="blobs/sha256:ab")
        self.assertEqual(after["Metadata"], {"touched": "yes"})
        self.assertEqual(after["ContentType"], "application/vnd.test")
        self.assertEqual(after["ETag"], before["ETag"])
        self.assertGreaterEqual(after["LastModified"], before["LastModified"])
        self.assertEqual(self.s3.get_object(Bucket=self.bucket,
                                            Key="blobs/sha256:ab")["Body"].read(), body)

    # ---- presigned URLs --------------------------------------------------------------

    def presigned_roundtrip(self, s3, name):
        body = os.urandom(2000)
        put_url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": name,
                                  "ContentType": "application/octet-stream"}, ExpiresIn=600)
        req = urllib.request.Request(put_url, data=body, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=30) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["ETag"], '"%s"' % hashlib.md5(body).hexdigest())
        get_url = s3.generate_presigned_url("get_object",
                                            Params={"Bucket": self.bucket, "Key": name},
                                            ExpiresIn=600)
        with urllib.request.urlopen(get_url, timeout=30) as r:
            self.assertEqual(r.read(), body)
        # the URL is for that key only
        other = get_url.replace("/" + urllib.parse.quote(name), "/" + "other", 1)
        self.s3.put_object(Bucket=self.bucket, Key="other", Body=b"o")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(other, timeout=30)
        self.assertEqual(cm.exception.code, 403)
        self.assertIn(b"<Code>SignatureDoesNotMatch</Code>", cm.exception.read())
        return get_url

    def test_presigned_default_signer(self):
        url = self.presigned_roundtrip(self.s3, "pre/default key+1")
        # botocore's default for presigning with a custom endpoint: SigV2 or SigV4
        self.assertTrue("AWSAccessKeyId=" in url or "X-Amz-Signature=" in url, url)

    def test_presigned_sigv4(self):
        s3v4 = self.client(signature_version="s3v4")
        url = self.presigned_roundtrip(s3v4, "pre/v4 key:1")
        self.assertIn("X-Amz-Algorithm=AWS4-HMAC-SHA256", url)

    # ---- conditionals -------------------------------------------------------------

    def test_conditional_get(self):
        r = self.s3.put_object(Bucket=self.bucket, Key="c", Body=b"cond")
        etag = r["ETag"]
        lm = self.s3.head_object(Bucket=self.bucket, Key="c")["LastModified"]
        self.assertClientError("304", 304, self.s3.get_object, Bucket=self.bucket, Key="c",
                               IfNoneMatch=etag)
        self.assertClientError("PreconditionFailed", 412, self.s3.get_object,
                               Bucket=self.bucket, Key="c", IfMatch='"0123"')
        self.assertClientError("412", 412, self.s3.head_object, Bucket=self.bucket, Key="c",
                               IfMatch='"0123"')
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="c",
                                            IfMatch=etag)["Body"].read(), b"cond")
        self.assertClientError("304", 304, self.s3.get_object, Bucket=self.bucket, Key="c",
                               IfModifiedSince=lm)
        self.assertClientError("304", 304, self.s3.get_object, Bucket=self.bucket, Key="c",
                               IfModifiedSince=lm + datetime.timedelta(hours=1))
        g = self.s3.get_object(Bucket=self.bucket, Key="c",
                               IfModifiedSince=lm - datetime.timedelta(hours=1))
        self.assertEqual(g["Body"].read(), b"cond")
        self.assertClientError("PreconditionFailed", 412, self.s3.get_object,
                               Bucket=self.bucket, Key="c",
                               IfUnmodifiedSince=lm - datetime.timedelta(hours=1))

    def put_if_none_match(self, key, body):
        shape = self.s3.meta.service_model.operation_model("PutObject").input_shape
        if "IfNoneMatch" in shape.members:
            return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
        # older botocore: the header by hand, before signing
        def add(request, **kw):
            request.headers["If-None-Match"] = "*"
        self.s3.meta.events.register("before-sign.s3.PutObject", add)
        try:
            return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        finally:
            self.s3.meta.events.unregister("before-sign.s3.PutObject", add)

    def test_conditional_put(self):
        self.put_if_none_match("new", b"first")  # absent: stored
        self.assertClientError("PreconditionFailed", 412, self.put_if_none_match, "new",
                               b"second")
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key="new")["Body"].read(),
                         b"first")

    def test_conditional_writes_at_once(self):
        """Writers racing on one key, each with a condition: exactly one of
        them wins, the others get 412 and change nothing (the condition is
        held to in the write's own commit, not only checked before it)."""
        import concurrent.futures
        import botocore.exceptions

        def race(key, write):
            def one(i):
                try:
                    write(key, b"writer %d " % i * 5000)
                    return i
                except botocore.exceptions.ClientError as e:
                    self.assertEqual(e.response["Error"]["Code"], "PreconditionFailed")
                    return None
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                won = [i for i in ex.map(one, range(8)) if i is not None]
            self.assertEqual(len(won), 1, (key, won))
            got = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            self.assertEqual(got, b"writer %d " % won[0] * 5000)

        for n in range(6):
            race("create-%d" % n, lambda k, b: self.s3.put_object(
                Bucket=self.bucket, Key=k, Body=b, IfNoneMatch="*"))
            key = "update-%d" % n
            etag = self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"v1")["ETag"]
            race(key, lambda k, b, etag=etag: self.s3.put_object(
                Bucket=self.bucket, Key=k, Body=b, IfMatch=etag))

    # ---- buckets -------------------------------------------------------------------

    def test_bucket_operations(self):
        r = self.s3.head_bucket(Bucket=self.bucket)
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertClientError("404", 404, self.s3.head_bucket, Bucket="no-such-bucket-x")
        loc = self.s3.get_bucket_location(Bucket=self.bucket)
        self.assertIn(loc.get("LocationConstraint"), (None, ""))
        self.assertClientError("BucketAlreadyOwnedByYou", 409, self.s3.create_bucket,
                               Bucket=self.bucket)
        names = [b["Name"] for b in self.s3.list_buckets()["Buckets"]]
        self.assertIn(self.bucket, names)
        self.s3.put_object(Bucket=self.bucket, Key="k", Body=b"v")
        self.assertClientError("BucketNotEmpty", 409, self.s3.delete_bucket, Bucket=self.bucket)
        self.s3.delete_object(Bucket=self.bucket, Key="k")
        self.s3.delete_bucket(Bucket=self.bucket)
        self.assertClientError("404", 404, self.s3.head_bucket, Bucket=self.bucket)
        self.assertClientError("NoSuchBucket", 404, self.s3.delete_bucket, Bucket=self.bucket)
        self.assertNotIn(self.bucket, [b["Name"] for b in self.s3.list_buckets()["Buckets"]])
        self.s3.create_bucket(Bucket=self.bucket)  # for tearDown symmetry

    # ---- multipart API --------------------------------------------------------------

    def test_multipart_api(self):
        key = "mp/object"
        parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1024)]
        up = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key,
                                             Metadata={"m": "v"})["UploadId"]
        etags = []
        for i, d in enumerate(parts_data, 1):
            r = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=up, PartNumber=i,
                                    Body=d, ChecksumAlgorithm="CRC32")
            self.assertEqual(r["ETag"], '"%s"' % hashlib.md5(d).hexdigest())
            # the part's checksum, checked, comes back as from S3
            crc = base64.b64encode(zlib.crc32(d).to_bytes(4, "big")).decode()
            self.assertEqual(r.get("ChecksumCRC32"), crc)
            etags.append(r["ETag"])
        lp = self.s3.list_parts(Bucket=self.bucket, Key=key, UploadId=up)
        self.assertEqual([(p["PartNumber"], p["ETag"], p["Size"]) for p in lp["Parts"]],
                         [(i + 1, etags[i], len(parts_data[i])) for i in range(3)])
        ups = self.s3.list_multipart_uploads(Bucket=self.bucket)["Uploads"]
        self.assertEqual([(u["Key"], u["UploadId"]) for u in ups], [(key, up)])

        mpu = {"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]}
        r = self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up,
                                              MultipartUpload=mpu)
        want = hashlib.md5(b"".join(hashlib.md5(d).digest() for d in parts_data)).hexdigest()
        self.assertEqual(r["ETag"], '"%s-3"' % want)
        # a second Complete of the same upload: same answer
        r2 = self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up,
                                               MultipartUpload=mpu)
        self.assertEqual(r2["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(r2["ETag"], r["ETag"])
        g = self.s3.get_object(Bucket=self.bucket, Key=key)
        self.assertEqual(g["ETag"], r["ETag"])
        self.assertEqual(g["Metadata"], {"m": "v"})
        self.assertEqual(hashlib.sha256(g["Body"].read()).digest(),
                         hashlib.sha256(b"".join(parts_data)).digest())
        # a ranged read across the part boundary
        g = self.s3.get_object(Bucket=self.bucket, Key=key,
                               Range="bytes=%d-%d" % (5 * MiB - 10, 5 * MiB + 9))
        self.assertEqual(g["Body"].read(), parts_data[0][-10:] + parts_data[1][:10])
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []),
                         [])

        # abort another upload: gone afterwards
        up2 = self.s3.create_multipart_upload(Bucket=self.bucket, Key="mp/aborted")["UploadId"]
        self.s3.upload_part(Bucket=self.bucket, Key="mp/aborted", UploadId=up2, PartNumber=1,
                            Body=b"abc")
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key="mp/aborted", UploadId=up2)
        self.assertClientError("NoSuchUpload", 404, self.s3.list_parts, Bucket=self.bucket,
                               Key="mp/aborted", UploadId=up2)
        self.assertClientError("NoSuchUpload", 404, self.s3.upload_part, Bucket=self.bucket,
                               Key="mp/aborted", UploadId=up2, PartNumber=2, Body=b"x")
        self.assertClientError("NoSuchUpload", 404, self.s3.complete_multipart_upload,
                               Bucket=self.bucket, Key="mp/aborted", UploadId=up2,
                               MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"%s"' %
                                                           hashlib.md5(b"abc").hexdigest()}]})
        self.assertClientError("NoSuchKey", 404, self.s3.get_object, Bucket=self.bucket,
                               Key="mp/aborted")
        left = set(os.listdir(os.path.join(self.srv.data, "multipart")))
        self.assertNotIn(up, left)
        self.assertNotIn(up2, left)

    def test_multipart_entity_too_small_and_invalid_part(self):
        key = "mp/small"
        up = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        small = os.urandom(1 * MiB)
        e1 = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=up, PartNumber=1,
                                 Body=small)["ETag"]
        e2 = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=up, PartNumber=2,
                                 Body=b"tail")["ETag"]
        self.assertClientError("EntityTooSmall", 400, self.s3.complete_multipart_upload,
                               Bucket=self.bucket, Key=key, UploadId=up,
                               MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                          {"PartNumber": 2, "ETag": e2}]})
        self.assertClientError("InvalidPart", 400, self.s3.complete_multipart_upload,
                               Bucket=self.bucket, Key=key, UploadId=up,
                               MultipartUpload={"Parts": [
                                   {"PartNumber": 1, "ETag": '"%s"' % ("0" * 32)}]})
        self.assertClientError("InvalidPart", 400, self.s3.complete_multipart_upload,
                               Bucket=self.bucket, Key=key, UploadId=up,
                               MultipartUpload={"Parts": [{"PartNumber": 3, "ETag": e2}]})
        # out of order: either check may come first
        with self.assertRaises(ClientError) as cm:
            self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2},
                                           {"PartNumber": 1, "ETag": e1}]})
        self.assertIn(err_code(cm.exception), ("InvalidPartOrder", "EntityTooSmall"))
        self.assertClientError("NoSuchKey", 404, self.s3.get_object, Bucket=self.bucket,
                               Key=key)
        # the upload is still usable: the small part alone is a valid last part
        r = self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up,
                                              MultipartUpload={"Parts": [
                                                  {"PartNumber": 1, "ETag": e1}]})
        self.assertTrue(r["ETag"].endswith('-1"'))
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(), small)

    def test_upload_part_copy(self):
        """UploadPartCopy: parts copied from ranges of existing objects (here
        and in another bucket), mixed with uploaded parts; its errors change
        nothing; boto3's managed copy (s3transfer) uses it above 8 MiB."""
        b = self.bucket
        src = os.urandom(6 * MiB + 100)
        self.s3.put_object(Bucket=b, Key="src", Body=src)
        self.s3.create_bucket(Bucket=b + "-other")
        other = os.urandom(7000)
        self.s3.put_object(Bucket=b + "-other", Key="o k", Body=other)
        up = self.s3.create_multipart_upload(Bucket=b, Key="dst")["UploadId"]
        r1 = self.s3.upload_part_copy(Bucket=b, Key="dst", UploadId=up, PartNumber=1,
                                      CopySource={"Bucket": b, "Key": "src"},
                                      CopySourceRange="bytes=100-%d" % (5 * MiB + 99))
        self.assertEqual(r1["CopyPartResult"]["ETag"],
                         '"%s"' % hashlib.md5(src[100:5 * MiB + 100]).hexdigest())
        self.assertIn("LastModified", r1["CopyPartResult"])
        r2 = self.s3.upload_part(Bucket=b, Key="dst", UploadId=up, PartNumber=2,
                                 Body=b"x" * (5 * MiB))
        r3 = self.s3.upload_part_copy(Bucket=b, Key="dst", UploadId=up, PartNumber=3,
                                      CopySource={"Bucket": b + "-other", "Key": "o k"})
        self.assertEqual(r3["CopyPartResult"]["ETag"], '"%s"' % hashlib.md5(other).hexdigest())
        # refused, and the upload's parts unchanged
        src_ref = {"Bucket": b, "Key": "src"}
        for rng in ("bytes=0-%d" % len(src), "bytes=5-4", "bytes=-5", "bytes=5-", "0-5",
                    "bytes=a-b"):
            self.assertClientError("InvalidArgument", 400, self.s3.upload_part_copy, Bucket=b,
                                   Key="dst", UploadId=up, PartNumber=4, CopySource=src_ref,
                                   CopySourceRange=rng)
        self.assertClientError("NoSuchKey", 404, self.s3.upload_part_copy, Bucket=b, Key="dst",
                               UploadId=up, PartNumber=4, CopySource={"Bucket": b, "Key": "no"})
        self.assertClientError("NoSuchBucket", 404, self.s3.upload_part_copy, Bucket=b,
                               Key="dst", UploadId=up, PartNumber=4,
                               CopySource={"Bucket": b + "-none", "Key": "src"})
        self.assertClientError("NoSuchUpload", 404, self.s3.upload_part_copy, Bucket=b,
                               Key="dst", UploadId="nonesuch", PartNumber=4, CopySource=src_ref)
        self.assertClientError("NoSuchUpload", 404, self.s3.upload_part_copy, Bucket=b,
                               Key="other-key", UploadId=up, PartNumber=4, CopySource=src_ref)
        self.assertClientError("PreconditionFailed", 412, self.s3.upload_part_copy, Bucket=b,
                               Key="dst", UploadId=up, PartNumber=4, CopySource=src_ref,
                               CopySourceIfMatch='"0123"')
        unchecked = self.client(parameter_validation=False)
        self.assertClientError("InvalidArgument", 400, unchecked.upload_part_copy, Bucket=b,
                               Key="dst", UploadId=up, PartNumber=0, CopySource=src_ref)
        lp = self.s3.list_parts(Bucket=b, Key="dst", UploadId=up)["Parts"]
        self.assertEqual([(p["PartNumber"], p["Size"]) for p in lp],
                         [(1, 5 * MiB), (2, 5 * MiB), (3, len(other))])
        etags = [r1["CopyPartResult"]["ETag"], r2["ETag"], r3["CopyPartResult"]["ETag"]]
        self.s3.complete_multipart_upload(
            Bucket=b, Key="dst", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e}
                                       for i, e in enumerate(etags)]})
        got = self.s3.get_object(Bucket=b, Key="dst")["Body"].read()
        self.assertEqual(got, src[100:5 * MiB + 100] + b"x" * (5 * MiB) + other)

        # boto3's managed copy: 8 MiB parts copied, then completed
        big = os.urandom(17 * MiB)
        self.s3.put_object(Bucket=b, Key="big", Body=big)
        blobs = self.srv.status()["entries"]["blobs"]
        self.s3.copy({"Bucket": b, "Key": "big"}, b, "big-copy")
        head = self.s3.head_object(Bucket=b, Key="big-copy")
        self.assertTrue(head["ETag"].endswith('-3"'), head)
        self.assertEqual(self.s3.get_object(Bucket=b, Key="big-copy")["Body"].read(), big)
        self.assertEqual(self.srv.status()["entries"]["blobs"], blobs)  # the body kept once
        # s3transfer's copy asks for the source's tags (none here) to copy them along
        self.assertEqual(self.s3.get_object_tagging(Bucket=b, Key="big")["TagSet"], [])
        self.assertClientError("NoSuchKey", 404, self.s3.get_object_tagging, Bucket=b,
                               Key="none")

    def test_parts_racing_an_abort_leave_no_file(self):
        """Parts (uploaded and copied) still arriving when their upload is
        aborted or completed are not kept: the upload's folder goes whole,
        nothing is left for a later abort to miss."""
        import concurrent.futures
        b = self.bucket
        src = os.urandom(5 * MiB)
        self.s3.put_object(Bucket=b, Key="src", Body=src)
        mp = os.path.join(self.srv.data, "multipart")
        for end in ("abort", "complete", "abort", "complete"):
            up = self.s3.create_multipart_upload(Bucket=b, Key="dst")["UploadId"]
            e1 = self.s3.upload_part(Bucket=b, Key="dst", UploadId=up, PartNumber=1,
                                     Body=src)["ETag"]

            def part(n):
                try:
                    if n % 2:
                        self.s3.upload_part_copy(Bucket=b, Key="dst", UploadId=up,
                                                 PartNumber=n, CopySource={"Bucket": b,
                                                                           "Key": "src"})
                    else:
                        self.s3.upload_part(Bucket=b, Key="dst", UploadId=up, PartNumber=n,
                                            Body=src)
                    return 200
                except ClientError as e:
                    return err_code(e)
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                runs = [ex.submit(part, n) for n in range(2, 26)]
                time.sleep(0.05)
                if end == "abort":
                    self.s3.abort_multipart_upload(Bucket=b, Key="dst", UploadId=up)
                else:
                    self.s3.complete_multipart_upload(
                        Bucket=b, Key="dst", UploadId=up,
                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]})
                answers = {r.result() for r in runs}
            self.assertLessEqual(answers, {200, "NoSuchUpload", "SlowDown"}, answers)
            self.assertFalse(os.path.exists(os.path.join(mp, up)), (end, os.listdir(mp)))
        self.assertEqual(self.s3.get_object(Bucket=b, Key="dst")["Body"].read(), src)

    def test_one_part_sent_by_several_at_once_is_kept(self):
        """Several clients sending the same part number at once (retries that
        overlap): one of their bodies is the part, never none."""
        import concurrent.futures
        b = self.bucket
        bodies = [os.urandom(256 * 1024) for _ in range(4)]
        etags = {'"%s"' % hashlib.md5(x).hexdigest() for x in bodies}
        for _ in range(12):
            up = self.s3.create_multipart_upload(Bucket=b, Key="same")["UploadId"]
            with concurrent.futures.ThreadPoolExecutor(4) as ex:
                list(ex.map(lambda x: self.s3.upload_part(Bucket=b, Key="same", UploadId=up,
                                                          PartNumber=1, Body=x), bodies))
            parts = self.s3.list_parts(Bucket=b, Key="same", UploadId=up).get("Parts", [])
            self.assertEqual(len(parts), 1, parts)
            self.assertIn(parts[0]["ETag"], etags)
            self.s3.complete_multipart_upload(
                Bucket=b, Key="same", UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": parts[0]["ETag"]}]})
            got = self.s3.get_object(Bucket=b, Key="same")["Body"].read()
            self.assertEqual('"%s"' % hashlib.md5(got).hexdigest(), parts[0]["ETag"])

    def test_abort_and_complete_at_once_one_wins(self):
        """An abort sent while a completion runs: one of them wins. If the
        abort answers 204, there is no object; if the completion answers
        200, the abort finds no upload."""
        import concurrent.futures
        b = self.bucket
        part = os.urandom(5 * MiB)
        for rnd in range(6):
            key = "race%d" % rnd
            up = self.s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
            etags = [self.s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=n,
                                         Body=part)["ETag"] for n in range(1, 9)]

            def until_decided(call, ok):
                # (503 SlowDown while the other is under way: asked again,
                # as the SDKs' retries do)
                while True:
                    try:
                        call()
                        return ok
                    except ClientError as e:
                        if err_code(e) != "SlowDown":
                            return err_code(e)
                        time.sleep(0.05)

            def complete():
                return until_decided(lambda: self.s3.complete_multipart_upload(
                    Bucket=b, Key=key, UploadId=up,
                    MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e}
                                               for n, e in enumerate(etags)]}), 200)

            def abort():
                time.sleep(0.01 * rnd)
                return until_decided(lambda: self.s3.abort_multipart_upload(
                    Bucket=b, Key=key, UploadId=up), 204)
            with concurrent.futures.ThreadPoolExecutor(2) as ex:
                c, a = ex.submit(complete), ex.submit(abort)
                c, a = c.result(), a.result()
            exists = bool(self.s3.list_objects_v2(Bucket=b, Prefix=key).get("Contents"))
            if a == 204:
                self.assertNotEqual(c, 200, rnd)
                self.assertFalse(exists, (rnd, c, a))
            else:
                self.assertEqual((a, c), ("NoSuchUpload", 200), rnd)
                self.assertTrue(exists, rnd)
            self.assertFalse(os.path.exists(os.path.join(self.srv.data, "multipart", up)))

    def test_conditional_complete_copy_and_delete(self):
        """If-None-Match and If-Match hold for a multipart upload's
        completion and a copy's destination as for a PUT; If-Match for a
        delete.  A write refused with 412 changes nothing."""
        b = self.bucket
        self.s3.put_object(Bucket=b, Key="o", Body=b"first")
        etag = self.s3.head_object(Bucket=b, Key="o")["ETag"]
        up = self.s3.create_multipart_upload(Bucket=b, Key="o")["UploadId"]
        e1 = self.s3.upload_part(Bucket=b, Key="o", UploadId=up, PartNumber=1,
                                 Body=b"second")["ETag"]
        parts = {"Parts": [{"PartNumber": 1, "ETag": e1}]}
        for cond in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123"'}):
            self.assertClientError("PreconditionFailed", 412, self.s3.complete_multipart_upload,
                                   Bucket=b, Key="o", UploadId=up, MultipartUpload=parts, **cond)
            self.assertEqual(self.s3.get_object(Bucket=b, Key="o")["Body"].read(), b"first")
        self.s3.complete_multipart_upload(Bucket=b, Key="o", UploadId=up, MultipartUpload=parts,
                                          IfMatch=etag)
        self.assertEqual(self.s3.get_object(Bucket=b, Key="o")["Body"].read(), b"second")
        self.s3.put_object(Bucket=b, Key="src", Body=b"source")
        self.assertClientError("PreconditionFailed", 412, self.s3.copy_object, Bucket=b,
                               Key="o", CopySource={"Bucket": b, "Key": "src"}, IfNoneMatch="*")
        self.assertEqual(self.s3.get_object(Bucket=b, Key="o")["Body"].read(), b"second")
        self.s3.copy_object(Bucket=b, Key="new", CopySource={"Bucket": b, "Key": "src"},
                            IfNoneMatch="*")
        self.assertEqual(self.s3.get_object(Bucket=b, Key="new")["Body"].read(), b"source")
        self.assertClientError("PreconditionFailed", 412, self.s3.delete_object, Bucket=b,
                               Key="new", IfMatch='"0123"')
        self.assertEqual(self.s3.get_object(Bucket=b, Key="new")["Body"].read(), b"source")
        self.s3.delete_object(Bucket=b, Key="new",
                              IfMatch=self.s3.head_object(Bucket=b, Key="new")["ETag"])
        self.assertClientError("NoSuchKey", 404, self.s3.get_object, Bucket=b, Key="new")

    def test_copy_source_conditions(self):
        """x-amz-copy-source-if-(un)modified-since and -if-(none-)match hold
        as S3 documents them: 412 when the copy must not happen, nothing
        written; If-Match true wins over If-Unmodified-Since false, and
        If-None-Match false over If-Modified-Since true."""
        b = self.bucket
        self.s3.put_object(Bucket=b, Key="cs", Body=b"source")
        head = self.s3.head_object(Bucket=b, Key="cs")
        etag, mtime = head["ETag"], head["LastModified"]
        past, future = mtime - datetime.timedelta(days=1), mtime + datetime.timedelta(days=1)
        src = {"Bucket": b, "Key": "cs"}
        for cond in ({"CopySourceIfUnmodifiedSince": past},
                     {"CopySourceIfModifiedSince": future},
                     {"CopySourceIfMatch": '"0123"'},
                     {"CopySourceIfNoneMatch": etag},
                     {"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": past}):
            self.assertClientError("PreconditionFailed", 412, self.s3.copy_object, Bucket=b,
                                   Key="cd", CopySource=src, **cond)
            self.assertClientError("404", 404, self.s3.head_object, Bucket=b, Key="cd")
        for i, cond in enumerate(({"CopySourceIfModifiedSince": past},
                                  {"CopySourceIfUnmodifiedSince": future},
                                  {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past},
                                  {"CopySourceIfNoneMatch": '"0123"'})):
            self.s3.copy_object(Bucket=b, Key="cd%d" % i, CopySource=src, **cond)
            self.assertEqual(self.s3.get_object(Bucket=b, Key="cd%d" % i)["Body"].read(),
                             b"source")

    def test_counts_that_are_not_numbers_are_refused(self):
        b = self.bucket
        up = self.s3.create_multipart_upload(Bucket=b, Key="n")["UploadId"]
        unchecked = self.client(parameter_validation=False)  # (botocore checks them itself)
        for fn, kw in ((unchecked.list_multipart_uploads, {"MaxUploads": "many"}),
                       (unchecked.list_multipart_uploads, {"MaxUploads": -1}),
                       (unchecked.list_parts, {"Key": "n", "UploadId": up, "MaxParts": "x"}),
                       (unchecked.list_parts, {"Key": "n", "UploadId": up,
                                               "PartNumberMarker": "x"}),
                       (unchecked.list_objects_v2, {"MaxKeys": "1k"}),
                       (unchecked.list_objects_v2, {"MaxKeys": "+5"}),
                       (unchecked.list_objects, {"MaxKeys": 3000000000})):
            self.assertClientError("InvalidArgument", 400, fn, Bucket=b, **kw)
        # none asked for: none listed, and no page follows
        self.s3.upload_part(Bucket=b, Key="n", UploadId=up, PartNumber=1, Body=b"p")
        r = self.s3.list_parts(Bucket=b, Key="n", UploadId=up, MaxParts=0)
        self.assertEqual((r.get("Parts", []), r["IsTruncated"]), ([], False))
        r = self.s3.list_multipart_uploads(Bucket=b, MaxUploads=0)
        self.assertEqual((r.get("Uploads", []), r["IsTruncated"]), ([], False))
        self.s3.abort_multipart_upload(Bucket=b, Key="n", UploadId=up)

    def test_delete_objects_with_a_version_id(self):
        """Buckets are unversioned: in DeleteObjects a key with a version ID
        other than "null" gets an error of its own and is not deleted."""
        b = self.bucket
        for k in ("dv1", "dv2"):
            self.s3.put_object(Bucket=b, Key=k, Body=b"x")
        r = self.s3.delete_objects(Bucket=b, Delete={"Objects": [
            {"Key": "dv1", "VersionId": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"},
            {"Key": "dv2", "VersionId": "null"}]})
        self.assertEqual([(e["Key"], e["Code"]) for e in r["Errors"]], [("dv1", "InvalidArgument")])
        self.assertEqual([d["Key"] for d in r["Deleted"]], ["dv2"])
        self.assertEqual(self.s3.get_object(Bucket=b, Key="dv1")["Body"].read(), b"x")
        self.assertClientError("NoSuchKey", 404, self.s3.get_object, Bucket=b, Key="dv2")

    def test_deleting_a_bucket_aborts_its_uploads(self):
        """S3 deletes a bucket with unfinished multipart uploads, and they
        go with it: a bucket made again under the name has none."""
        self.s3.create_bucket(Bucket="mpu-gone")
        up = self.s3.create_multipart_upload(Bucket="mpu-gone", Key="k")["UploadId"]
        self.s3.upload_part(Bucket="mpu-gone", Key="k", UploadId=up, PartNumber=1, Body=b"p")
        self.s3.delete_bucket(Bucket="mpu-gone")
        self.s3.create_bucket(Bucket="mpu-gone")
        self.assertEqual(self.s3.list_multipart_uploads(Bucket="mpu-gone").get("Uploads", []), [])
        self.assertClientError("NoSuchUpload", 404, self.s3.list_parts, Bucket="mpu-gone",
                               Key="k", UploadId=up)
        self.s3.delete_bucket(Bucket="mpu-gone")

    def test_list_buckets_by_prefix_and_pages(self):
        names = ["lbp-%d" % i for i in range(5)]
        for n in names:
            self.s3.create_bucket(Bucket=n)
        r = self.s3.list_buckets(Prefix="lbp-")
        self.assertEqual([x["Name"] for x in r["Buckets"]], names)
        self.assertEqual(r.get("Prefix"), "lbp-")
        seen = []
        for page in self.s3.get_paginator("list_buckets").paginate(
                Prefix="lbp-", PaginationConfig={"PageSize": 2}):
            self.assertLessEqual(len(page["Buckets"]), 2)
            seen += [x["Name"] for x in page["Buckets"]]
        self.assertEqual(seen, names)
        every = [x["Name"] for x in self.s3.list_buckets()["Buckets"]]
        self.assertEqual(every, sorted(every))
        self.assertTrue(set(names) <= set(every))
        unchecked = self.client(parameter_validation=False)  # (botocore checks it itself)
        for bad in (0, 10001):
            self.assertClientError("InvalidArgument", 400, unchecked.list_buckets, MaxBuckets=bad)
        for n in names:
            self.s3.delete_bucket(Bucket=n)

    def test_unknown_metadata_directive_is_refused(self):
        b = self.bucket
        self.s3.put_object(Bucket=b, Key="s", Body=b"x")
        self.assertClientError("InvalidArgument", 400, self.s3.copy_object, Bucket=b, Key="d",
                               CopySource={"Bucket": b, "Key": "s"}, MetadataDirective="BOGUS")
        self.assertClientError("404", 404, self.s3.head_object, Bucket=b, Key="d")

    def test_version_ids_other_than_null_are_refused(self):
        """Buckets are unversioned: "null" names an object's one version;
        any other version ID is refused, and nothing is deleted."""
        b = self.bucket
        self.s3.put_object(Bucket=b, Key="v", Body=b"kept")
        for fn in (self.s3.get_object, self.s3.head_object, self.s3.delete_object):
            self.assertClientError("400" if fn == self.s3.head_object else "InvalidArgument", 400,
                                   fn, Bucket=b, Key="v", VersionId="3HL4kqtJlcpXroDTDmJ")
        self.assertClientError("InvalidArgument", 400, self.s3.copy_object, Bucket=b, Key="c",
                               CopySource={"Bucket": b, "Key": "v", "VersionId": "abc"})
        self.assertEqual(self.s3.get_object(Bucket=b, Key="v", VersionId="null")["Body"].read(),
                         b"kept")
        self.s3.copy_object(Bucket=b, Key="c", CopySource={"Bucket": b, "Key": "v",
                                                           "VersionId": "null"})
        self.s3.delete_object(Bucket=b, Key="v", VersionId="null")
        self.assertClientError("NoSuchKey", 404, self.s3.get_object, Bucket=b, Key="v")

    def test_sigv2_requests_of_a_bucket(self):
        """botocore's SigV2 signs a bucket alone as "/bucket/" (S3 takes it
        so): listings, the location and HEAD of a bucket, path style."""
        b = self.bucket
        self.s3.put_object(Bucket=b, Key="k", Body=b"x")
        v2 = self.client(signature_version="s3")
        self.assertEqual([o["Key"] for o in v2.list_objects_v2(Bucket=b)["Contents"]], ["k"])
        self.assertIn("LocationConstraint", v2.get_bucket_location(Bucket=b))
        v2.head_bucket(Bucket=b)
        url = v2.generate_presigned_url("list_objects_v2", Params={"Bucket": b}, ExpiresIn=60)
        with urllib.request.urlopen(url) as r:
            self.assertIn(b"<Key>k</Key>", r.read())
        bad = boto3.session.Session().client(
            "s3", endpoint_url=self.srv.url, aws_access_key_id=AK, aws_secret_access_key="wrong",
            region_name="us-east-1", config=Config(signature_version="s3",
                                                   s3={"addressing_style": "path"},
                                                   retries={"max_attempts": 1}))
        self.assertClientError("SignatureDoesNotMatch", 403, bad.list_objects_v2, Bucket=b)

    def test_list_multipart_uploads_pages(self):
        """ListMultipartUploads pages by key-marker and upload-id-marker (the
        paginator sees every upload), rolls keys up by a delimiter, and
        url-encodes when asked."""
        b = self.bucket
        keys = ["a/1", "a/2", "b", "b", "c&<", "d e"]
        ups = sorted((k, self.s3.create_multipart_upload(Bucket=b, Key=k)["UploadId"])
                     for k in keys)
        seen, pages = [], 0
        for page in self.s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=b, PaginationConfig={"PageSize": 1}):
            pages += 1
            seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        self.assertEqual(seen, ups)
        self.assertGreaterEqual(pages, len(ups))
        r = self.s3.list_multipart_uploads(Bucket=b, MaxUploads=2)
        self.assertTrue(r["IsTruncated"])
        self.assertEqual((r["NextKeyMarker"], r["NextUploadIdMarker"]), ups[1])
        r = self.s3.list_multipart_uploads(Bucket=b, KeyMarker=ups[1][0],
                                           UploadIdMarker=ups[1][1])
        self.assertEqual([(u["Key"], u["UploadId"]) for u in r["Uploads"]], ups[2:])
        r = self.s3.list_multipart_uploads(Bucket=b, Delimiter="/")
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["a/"])
        self.assertEqual([u["Key"] for u in r["Uploads"]], ["b", "b", "c&<", "d e"])
        r = self.s3.list_multipart_uploads(Bucket=b, Delimiter="/", MaxUploads=1)
        self.assertEqual(([p["Prefix"] for p in r["CommonPrefixes"]], r["NextKeyMarker"]),
                         (["a/"], "a/"))
        r = self.s3.list_multipart_uploads(Bucket=b, Delimiter="/", KeyMarker="a/")
        self.assertEqual([u["Key"] for u in r["Uploads"]], ["b", "b", "c&<", "d e"])
        r = self.s3.list_multipart_uploads(Bucket=b, Prefix="d", EncodingType="url")
        self.assertEqual([u["Key"] for u in r["Uploads"]], ["d%20e"])  # (botocore leaves it so)
        for k, u in ups:
            self.s3.abort_multipart_upload(Bucket=b, Key=k, UploadId=u)


@unittest.skipUnless(shutil.which("aws"), "aws (aws-cli) is not installed")
class AwsCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--access-key", AK, "--secret-key", SK])
        cls.work = tempfile.mkdtemp(prefix="cairn-awscli-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        rc = cls.srv.close()
        assert rc == 0, "cairnd exited with %s\n%s" % (rc, cls.srv.last_log[-6000:])

    def aws(self, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1",
                   AWS_CONFIG_FILE=os.path.join(self.work, "none"),
                   AWS_SHARED_CREDENTIALS_FILE=os.path.join(self.work, "none"),
                   AWS_PAGER="", AWS_MAX_ATTEMPTS="1")
        p = subprocess.run(["aws", "--endpoint-url", self.srv.url] + list(args), env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, "aws %s: %s\n%s" % (args, p.stdout, p.stderr))
        return p.stdout

    def test_cp_up_down_and_ls(self):
        src = os.path.join(self.work, "twenty.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(20 * MiB))
        self.aws("s3", "mb", "s3://cli-bucket")
        self.aws("s3", "cp", src, "s3://cli-bucket/dir/twenty.bin")
        self.aws("s3", "cp", src, "s3://cli-bucket/top file.bin")
        out = self.aws("s3", "ls", "s3://cli-bucket/")
        self.assertIn("PRE dir/", out)
        self.assertIn("top file.bin", out)
        out = self.aws("s3", "ls", "--recursive", "s3://cli-bucket/")
        self.assertIn("%d dir/twenty.bin" % (20 * MiB), out)
        out = self.aws("s3", "ls")
        self.assertIn("cli-bucket", out)
        dst = os.path.join(self.work, "back.bin")
        self.aws("s3", "cp", "s3://cli-bucket/dir/twenty.bin", dst)
        with open(src, "rb") as a, open(dst, "rb") as b:
            self.assertEqual(hashlib.sha256(a.read()).digest(), hashlib.sha256(b.read()).digest())
        self.aws("s3", "rm", "s3://cli-bucket/top file.bin")
        out = self.aws("s3", "ls", "s3://cli-bucket/")
        self.assertNotIn("top file.bin", out)
        self.assertEqual(os.listdir(os.path.join(self.srv.data, "multipart")), [])


if __name__ == "__main__":
    unittest.main()
