"""curl --aws-sigv4, a real SigV4 signer, against cairnd's S3 API.

Facts about curl 7.88 (Debian 12) that shape these tests:
- it never sends x-amz-content-sha256 by itself but signs the SHA-256 of the
  body; PUTs therefore pass -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' (or a
  hex digest), which curl then signs as the payload hash;
- it signs the query string as written, without sorting it: queries are
  written here already sorted (list-type=2&prefix=..., not the reverse);
- it signs the query as written in other ways too: a parameter without a
  value must be written "name=" (SigV4's canonical form), values encoded;
- it signs the path as written: keys are percent-encoded here the way S3
  wants (every byte but A-Z a-z 0-9 - _ . ~ and /, uppercase hex), and
  --path-as-is keeps '.' and '..' segments.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse
import xml.etree.ElementTree as ET

from harness import Server, tmp_files

AK, SK = "AKIDCURLTEST", "curl/secret+key"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def s3_quote(key):
    return urllib.parse.quote(key.encode(), safe="/-_.~")


def curl_has_sigv4():
    if not shutil.which("curl"):
        return False
    p = subprocess.run(["curl", "--help", "all"], capture_output=True, text=True)
    return "--aws-sigv4" in p.stdout


@unittest.skipUnless(curl_has_sigv4(), "curl with --aws-sigv4 is not installed")
class CurlSigV4Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(["--access-key", AK, "--secret-key", SK])
        cls.work = tempfile.mkdtemp(prefix="cairn-curl-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        rc = cls.srv.close()
        assert rc == 0, "cairnd exited with %s\n%s" % (rc, cls.srv.last_log[-6000:])

    def curl(self, method, path, data=None, headers=(), user=AK + ":" + SK, extra=()):
        """Returns (status, headers with lowercase names, body bytes)."""
        hfile = os.path.join(self.work, "h")
        bfile = os.path.join(self.work, "b")
        args = ["curl", "-sS", "--path-as-is", "-D", hfile, "-o", bfile,
                "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", user]
        if method == "HEAD":
            args.append("-I")
        elif method != "GET":
            args += ["-X", method]
        if data is not None:
            dfile = os.path.join(self.work, "d")
            with open(dfile, "wb") as f:
                f.write(data)
            args += ["--data-binary", "@" + dfile]
        for h in headers:
            args += ["-H", h]
        args += list(extra) + [self.srv.url + path]
        p = subprocess.run(args, capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(hfile, "rb") as f:
            blocks = [b for b in f.read().split(b"\r\n\r\n") if b.strip()]
        head = [b for b in blocks if not b.startswith(b"HTTP/1.1 1")][-1].decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        body = b""
        if method == "HEAD":  # curl -I writes the head where the body would go
            os.unlink(bfile)
        elif os.path.exists(bfile):
            with open(bfile, "rb") as f:
                body = f.read()
            os.unlink(bfile)
        return status, hdrs, body

    def put(self, path, data, sha="UNSIGNED-PAYLOAD", headers=()):
        return self.curl("PUT", path, data, ["x-amz-content-sha256: " + sha] + list(headers))

    def assertS3Error(self, resp, status, code):
        st, h, body = resp
        self.assertEqual(st, status, body)
        self.assertEqual(h.get("content-type"), "application/xml")
        root = ET.fromstring(body)
        self.assertEqual(root.tag, "Error")
        self.assertEqual(root.findtext("Code"), code, body)
        self.assertTrue(root.findtext("Message"), body)
        return root

    def make_bucket(self, name):
        st, _, body = self.curl("PUT", "/" + name)
        self.assertEqual(st, 200, body)

    def test_put_get_head_delete(self):
        self.make_bucket("curl-basic")
        body = os.urandom(3 * 1024 * 1024)  # big enough for Expect: 100-continue
        st, h, _ = self.put("/curl-basic/dir/obj.bin", body,
                            headers=["Content-Type: application/octet-stream",
                                     "x-amz-meta-cachekey: k1"])
        self.assertEqual(st, 200)
        self.assertEqual(h["etag"], '"%s"' % hashlib.md5(body).hexdigest())
        st, h, got = self.curl("GET", "/curl-basic/dir/obj.bin")
        self.assertEqual(st, 200)
        self.assertEqual(got, body)
        self.assertEqual(h["x-amz-meta-cachekey"], "k1")
        self.assertEqual(h["content-type"], "application/octet-stream")
        st, h, got = self.curl("HEAD", "/curl-basic/dir/obj.bin")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-length"], str(len(body)))
        self.assertIn("last-modified", h)
        st, h, got = self.curl("GET", "/curl-basic/dir/obj.bin", headers=["Range: bytes=0-0"])
        self.assertEqual(st, 206)
        self.assertEqual(got, body[:1])
        self.assertEqual(h["content-range"], "bytes 0-0/%d" % len(body))
        # If-Range: the range only while the object is the version named,
        # by its ETag (strong) or its Last-Modified; else the whole body
        etag, lm = h["etag"], h["last-modified"]
        for cond, whole in ((etag, False), (lm, False), ('"0123"', True), ("W/" + etag, True),
                            ("Mon, 01 Jan 2001 00:00:00 GMT", True)):
            st, _, got = self.curl("GET", "/curl-basic/dir/obj.bin",
                                   headers=["Range: bytes=0-9", "If-Range: " + cond])
            self.assertEqual((st, got == (body if whole else body[:10])),
                             (200 if whole else 206, True), cond)
        # a range past the end: 416, naming the object's size
        st, h, got = self.curl("GET", "/curl-basic/dir/obj.bin",
                               headers=["Range: bytes=%d-" % len(body)])
        self.assertS3Error((st, h, got), 416, "InvalidRange")
        self.assertEqual(h["content-range"], "bytes */%d" % len(body))
        self.assertIn(b"<ActualObjectSize>%d</ActualObjectSize>" % len(body), got)
        # a hex x-amz-content-sha256 that matches
        small = b"small body"
        st, _, _ = self.put("/curl-basic/hex", small, sha=hashlib.sha256(small).hexdigest())
        self.assertEqual(st, 200)
        # DELETE, then the key is gone
        st, _, got = self.curl("DELETE", "/curl-basic/dir/obj.bin")
        self.assertEqual(st, 204)
        self.assertS3Error(self.curl("GET", "/curl-basic/dir/obj.bin"), 404, "NoSuchKey")
        self.assertEqual(self.curl("HEAD", "/curl-basic/dir/obj.bin")[0], 404)

    def test_put_without_content_sha256(self):
        """curl 7.88 signs the body's SHA-256 but does not send the header: a clear error,
        naming the header, and nothing stored."""
        self.make_bucket("curl-nohdr")
        keys_before = self.srv.status()["entries"]["keys"]
        resp = self.curl("PUT", "/curl-nohdr/obj", b"some body bytes")
        st, h, body = resp
        self.assertTrue(400 <= st < 500, (st, body))
        root = ET.fromstring(body)
        self.assertTrue(root.findtext("Code"), body)
        self.assertIn("x-amz-content-sha256", root.findtext("Message") or "",
                      "the error does not say what is missing: %r" % body)
        self.assertEqual(self.curl("HEAD", "/curl-nohdr/obj")[0], 404)
        self.assertEqual(self.srv.status()["entries"]["keys"], keys_before)
        self.assertEqual(tmp_files(self.srv.data), [])
        # an empty body needs no header: curl signs the empty hash
        st, _, _ = self.curl("PUT", "/curl-nohdr/empty", b"")
        self.assertEqual(st, 200)
        st, h, got = self.curl("GET", "/curl-nohdr/empty")
        self.assertEqual((st, got), (200, b""))

    def test_list_buckets_and_objects(self):
        self.make_bucket("curl-list")
        for k in ("a/1", "a/2", "b", "c/d/e"):
            self.assertEqual(self.put("/curl-list/" + k, k.encode())[0], 200)
        st, _, body = self.curl("GET", "/")
        self.assertEqual(st, 200)
        root = ET.fromstring(body)
        self.assertEqual(root.tag, NS + "ListAllMyBucketsResult")
        self.assertIn("curl-list", [b.findtext(NS + "Name") for b in root.iter(NS + "Bucket")])
        st, _, body = self.curl("GET", "/curl-list?list-type=2")
        self.assertEqual(st, 200)
        root = ET.fromstring(body)
        self.assertEqual([c.findtext(NS + "Key") for c in root.iter(NS + "Contents")],
                         ["a/1", "a/2", "b", "c/d/e"])
        self.assertEqual(root.findtext(NS + "KeyCount"), "4")
        st, _, body = self.curl("GET", "/curl-list?delimiter=%2F&list-type=2&max-keys=2&prefix=")
        self.assertEqual(st, 200)
        root = ET.fromstring(body)
        self.assertEqual([p.findtext(NS + "Prefix") for p in root.iter(NS + "CommonPrefixes")],
                         ["a/"])
        self.assertEqual([c.findtext(NS + "Key") for c in root.iter(NS + "Contents")], ["b"])
        self.assertEqual(root.findtext(NS + "IsTruncated"), "true")
        token = root.findtext(NS + "NextContinuationToken")
        self.assertTrue(token)
        st, _, body = self.curl("GET", "/curl-list?continuation-token=%s&delimiter=%%2F"
                                "&list-type=2&max-keys=2" % s3_quote(token).replace("/", "%2F"))
        self.assertEqual(st, 200, body)
        root = ET.fromstring(body)
        self.assertEqual([p.findtext(NS + "Prefix") for p in root.iter(NS + "CommonPrefixes")],
                         ["c/"])
        self.assertEqual(root.findtext(NS + "IsTruncated"), "false")
        # GetBucketLocation: empty constraint is us-east-1 ("location=": curl 7.88 signs a
        # value-less parameter as written, where SigV4 wants "name=")
        st, _, body = self.curl("GET", "/curl-list?location=")
        self.assertEqual(st, 200, body)
        self.assertEqual(ET.fromstring(body).text, None)

    RESERVED_KEYS = [
        "sp ace", "plus+sign", "colon:blobs/sha256:0123", "bang!dollar$amp&", "quote'paren()",
        "star*comma,semi;eq=", "at@brackets[x]", "hash#frag", "q?x=1&y=2", "pct%41%zz",
        "tilde~under_dash-dot.", "unicodé/ключ/日本語", "dir//double", "dot/./x", "dot/../y",
        "trailing/", "back\\slash", "caret^pipe|brace{}", "lt<gt>", 'dq"', "tab\tkey",
    ]

    def test_keys_with_reserved_characters(self):
        self.make_bucket("curl-keys")
        for k in self.RESERVED_KEYS:
            st, _, body = self.put("/curl-keys/" + s3_quote(k), k.encode())
            self.assertEqual(st, 200, (k, body))
        for k in self.RESERVED_KEYS:
            st, _, got = self.curl("GET", "/curl-keys/" + s3_quote(k))
            self.assertEqual((st, got), (200, k.encode()), k)
        st, _, body = self.curl("GET", "/curl-keys?list-type=2")
        self.assertEqual(st, 200)
        listed = [c.findtext(NS + "Key") for c in ET.fromstring(body).iter(NS + "Contents")]
        self.assertEqual(listed, sorted(self.RESERVED_KEYS, key=lambda k: k.encode()))
        st, _, body = self.curl("GET", "/curl-keys?encoding-type=url&list-type=2")
        self.assertEqual(st, 200)
        listed = [urllib.parse.unquote_plus(c.findtext(NS + "Key"))
                  for c in ET.fromstring(body).iter(NS + "Contents")]
        self.assertEqual(listed, sorted(self.RESERVED_KEYS, key=lambda k: k.encode()))
        # "dot/../y" is a key of its own, not "y"
        self.assertEqual(self.curl("GET", "/curl-keys/y")[0], 404)
        self.assertEqual(self.curl("GET", "/curl-keys/dot/x")[0], 404)
        for k in self.RESERVED_KEYS:
            self.assertEqual(self.curl("DELETE", "/curl-keys/" + s3_quote(k))[0], 204, k)
        st, _, body = self.curl("GET", "/curl-keys?list-type=2")
        self.assertEqual(list(ET.fromstring(body).iter(NS + "Contents")), [])

    def test_features_cairn_lacks_are_refused_and_change_nothing(self):
        """A subresource or header of a feature cairn does not have gets 501
        NotImplemented: DELETE /bucket?policy does not delete the bucket, GET
        ?attributes does not answer the body, a PUT asking for encryption
        with the client's key, an object lock or tags is not stored without
        them.  A method S3 does not know gets 405 MethodNotAllowed."""
        self.make_bucket("curl-lacks")
        self.assertEqual(self.put("/curl-lacks/k", b"kept")[0], 200)
        for sub in ("policy", "lifecycle", "tagging", "cors", "website", "encryption",
                    "publicAccessBlock", "ownershipControls", "replication"):
            self.assertS3Error(self.curl("DELETE", "/curl-lacks?" + sub), 501, "NotImplemented")
            self.assertS3Error(self.curl("GET", "/curl-lacks?" + sub), 501, "NotImplemented")
        self.assertEqual(self.curl("HEAD", "/curl-lacks")[0], 200)
        for sub in ("attributes", "torrent", "retention", "legal-hold"):
            self.assertS3Error(self.curl("GET", "/curl-lacks/k?" + sub), 501, "NotImplemented")
        # an object's tags cannot be set, so its set reads empty (aws-cli v2
        # asks for it before a multipart copy, to copy the tags along)
        self.assertS3Error(self.put("/curl-lacks/k?tagging",
                                    b'<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag>'
                                    b'</TagSet></Tagging>'), 501, "NotImplemented")
        self.assertS3Error(self.curl("DELETE", "/curl-lacks/k?tagging"), 501, "NotImplemented")
        # ("tagging=": curl 7.88 signs a bare "?tagging" without its "=")
        st, _, body = self.curl("GET", "/curl-lacks/k?tagging=")
        self.assertEqual(st, 200, body)
        doc = ET.fromstring(body)
        self.assertEqual((doc.tag, [t.tag for t in doc], list(doc.find(NS + "TagSet"))),
                         (NS + "Tagging", [NS + "TagSet"], []))
        self.assertS3Error(self.curl("GET", "/curl-lacks/none?tagging="), 404, "NoSuchKey")
        self.assertS3Error(self.curl("GET", "/curl-nobucket/k?tagging="), 404, "NoSuchBucket")
        for h in ("x-amz-server-side-encryption-customer-algorithm: AES256",
                  "x-amz-server-side-encryption: aws:kms", "x-amz-object-lock-mode: COMPLIANCE",
                  "x-amz-tagging: team=a"):
            self.assertS3Error(self.put("/curl-lacks/n", b"no", headers=[h]), 501,
                               "NotImplemented")
            self.assertEqual(self.curl("HEAD", "/curl-lacks/n")[0], 404)
        # S3's own keys (SSE-S3) are the disk's business: taken
        self.assertEqual(self.put("/curl-lacks/s", b"s",
                                  headers=["x-amz-server-side-encryption: AES256"])[0], 200)
        self.assertS3Error(self.curl("PATCH", "/curl-lacks/k"), 405, "MethodNotAllowed")
        st, _, body = self.curl("GET", "/curl-lacks/k")
        self.assertEqual((st, body), (200, b"kept"))
        # and a copy's answer is in S3's namespace, as every other
        st, _, body = self.curl("PUT", "/curl-lacks/c",
                                headers=["x-amz-copy-source: /curl-lacks/k"])
        self.assertEqual(st, 200, body)
        self.assertEqual(ET.fromstring(body).tag,
                         "{http://s3.amazonaws.com/doc/2006-03-01/}CopyObjectResult")

    def test_wrong_secret_and_missing_bucket(self):
        self.assertS3Error(self.curl("GET", "/", user=AK + ":wrong"), 403,
                           "SignatureDoesNotMatch")
        self.assertS3Error(self.curl("GET", "/", user="NOSUCHKEY:" + SK), 403,
                           "InvalidAccessKeyId")
        self.assertS3Error(self.curl("GET", "/curl-nope/k"), 404, "NoSuchBucket")
        self.assertS3Error(self.put("/curl-nope/k", b"x"), 404, "NoSuchBucket")


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(curl_has_sigv4(), "curl with --aws-sigv4 is not installed")
class VirtualHostTest(unittest.TestCase):
    """--s3-domain: bucket.DOMAIN addressing, signed by curl for that host name
    (curl --resolve sends it to the loopback server); path style still works."""

    def test_virtual_host_style(self):
        srv = Server(["--access-key", AK, "--secret-key", SK, "--s3-domain", "s3.test"])
        work = tempfile.mkdtemp(prefix="cairn-vhost-")
        try:
            port = srv.port

            def curl(url, *extra):
                host = url.split("/")[2]
                p = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "--aws-sigv4",
                                    "aws:amz:us-east-1:s3", "--user", AK + ":" + SK,
                                    "--resolve", "%s:127.0.0.1" % host] + list(extra) + [url],
                                   capture_output=True)
                body, _, code = p.stdout.rpartition(b"\n")
                return int(code), body

            self.assertEqual(curl("http://127.0.0.1:%d/vbucket" % port, "-X", "PUT")[0], 200)
            src = os.path.join(work, "f")
            with open(src, "wb") as f:
                f.write(b"virtual host body")
            base = "http://vbucket.s3.test:%d" % port
            # a key that starts with the bucket's name must not confuse the signature check
            put = curl(base + "/vbucket/k.txt", "-T", src,
                       "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD")
            self.assertEqual(put[0], 200, put[1])
            self.assertEqual(curl(base + "/vbucket/k.txt"), (200, b"virtual host body"))
            # the same object, path style
            self.assertEqual(curl("http://127.0.0.1:%d/vbucket/vbucket/k.txt" % port),
                             (200, b"virtual host body"))
            code, body = curl(base + "/?list-type=2")
            self.assertEqual(code, 200)
            keys = [k.text for k in ET.fromstring(body).iter(NS + "Key")]
            self.assertEqual(keys, ["vbucket/k.txt"])
            # a signature made with a wrong secret does not pass
            bad = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                  "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                                  AK + ":" + SK + "x", "--resolve",
                                  "vbucket.s3.test:%d:127.0.0.1" % port, base + "/vbucket/k.txt"],
                                 capture_output=True, text=True)
            self.assertEqual(bad.stdout, "403")
        finally:
            shutil.rmtree(work, ignore_errors=True)
            self.assertEqual(srv.close(), 0, srv.last_log[-4000:])
