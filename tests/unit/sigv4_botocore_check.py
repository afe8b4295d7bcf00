#!/usr/bin/env python3
"""Cross-check common/sigv4.c against botocore, an independent signer.

For a few dozen random S3 requests (object keys with reserved characters,
':', '+', spaces, dot segments and UTF-8; query parameters with and without
values; header values with runs of blanks and repeated headers; session
tokens; signed and unsigned payloads), botocore signs the request and
sigv4_cli (tests/unit/sigv4_cli.c) must

  * produce the same Authorization header (S3SigV4Auth: the S3 signer does not
    normalize the path and signs x-amz-content-sha256),
  * produce the same presigned signature (S3SigV4QueryAuth),
  * produce the same SigV2 Authorization header (HmacV1Auth),
  * and accept every request botocore signed (the verifier).

Usage: sigv4_botocore_check.py [PATH_TO_SIGV4_CLI]   (default: $SIGV4_CLI,
else bin/sigv4_cli). SIGV4_CHECK_COUNT (default 40) requests per kind,
SIGV4_CHECK_SEED to replay a run.

Exit status: 0 all agree, 1 a mismatch (or the CLI failed), 77 botocore is not
importable (skipped).
"""

import datetime
import hashlib
import os
import random
import subprocess
import sys

try:
    import botocore.auth
    from botocore.auth import HmacV1Auth, S3SigV4Auth, S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials
    from botocore.utils import percent_encode
except ImportError as exc:
    print(f"SKIP: botocore is not importable ({exc})")
    sys.exit(77)

CLI = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SIGV4_CLI", "bin/sigv4_cli"))
COUNT = int(os.environ.get("SIGV4_CHECK_COUNT", "40"))
SEED = int(os.environ.get("SIGV4_CHECK_SEED", "20240601"))
HOST = "127.0.0.1:9000"
REGIONS = ["us-east-1", "eu-west-1", "auto"]

KEY_PIECES = [
    "a", "Z", "0", "-", "_", ".", "~", "/", "//", "/./", "/../", ":", "+", " ", "  ",
    "=", "&", "?", "#", "%", "%2F", "!", "*", "'", "(", ")", ";", "@", "$", ",", "[", "]",
    "\u00e9", "\u1234", "\U0001F600", "sha256:", "blobs/", "project/12/",
]
QUERY_NAMES = [
    "uploadId", "partNumber", "x-id", "prefix", "delimiter", "list-type", "encoding-type",
    "max-keys", "versionId", "acl", "tagging", "uploads", "continuation-token",
    "response-content-type", "start-after", "weird name+:/", "\u00e9t\u00e9", "A", "a", "a-b",
]
VALUE_CHARS = "abcXYZ019-_.~/:+ =&?#%!*'();@$,[]\u00e9"
HEADER_NAMES = [
    "Content-Type", "x-amz-meta-cachekey", "X-Amz-Meta-Cachekey", "x-amz-storage-class",
    "Content-MD5", "Range", "If-None-Match", "x-amz-meta-Multi", "Cache-Control",
    "x-amz-checksum-crc32",
]

failures = 0


def fail(kind, i, msg, detail=""):
    global failures
    failures += 1
    print(f"MISMATCH {kind} #{i} (seed {SEED}): {msg}")
    if detail:
        print(detail)


def rand_text(rng, chars, lo, hi):
    return "".join(rng.choice(chars) for _ in range(rng.randint(lo, hi)))


def rand_key(rng):
    return "".join(rng.choice(KEY_PIECES) for _ in range(rng.randint(1, 12)))


def rand_path(rng):
    bucket = rng.choice(["bucket", "cairn-cache", "b.dots"])
    return "/" + bucket + "/" + percent_encode(rand_key(rng), safe="/~")


def rand_query(rng, allow_duplicates):
    pairs, seen = [], set()
    for _ in range(rng.randint(0, 5)):
        name = rng.choice(QUERY_NAMES)
        if name in seen and not allow_duplicates:
            continue
        seen.add(name)
        value = None if rng.random() < 0.25 else rand_text(rng, VALUE_CHARS, 0, 12)
        pairs.append((name, value))
    parts = []
    for name, value in pairs:
        enc = percent_encode(name, safe="-_.~")
        if value is not None:
            enc += "=" + percent_encode(value, safe="-_.~")
        parts.append(enc)
    return "&".join(parts)


def rand_header_value(rng):
    value = rand_text(rng, "abcXYZ019-_./:=,;\"'()", 1, 10)
    if rng.random() < 0.5:
        value = rng.choice([" ", "  ", "\t"]) + value
    if rng.random() < 0.5:
        value = value + rng.choice([" ", "   ", "\t "]) + rand_text(rng, "abc", 1, 4)
    if rng.random() < 0.3:
        value += rng.choice([" ", "  "])
    return value


def rand_headers(rng):
    headers = [("Host", HOST)]
    for _ in range(rng.randint(0, 4)):
        headers.append((rng.choice(HEADER_NAMES), rand_header_value(rng)))
    return headers


def rand_credentials(rng):
    akid = "AKID" + rand_text(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8, 16)
    secret = rand_text(rng, "abcdefABCDEF0123456789/+=", 20, 40)
    token = None
    if rng.random() < 0.3:
        token = rand_text(rng, "abcdefABCDEF0123456789/+=", 20, 60)
    return Credentials(akid, secret, token)


def rand_time(rng):
    return datetime.datetime(2015, 1, 1) + datetime.timedelta(
        seconds=rng.randint(0, 20 * 365 * 86400))


def freeze_time(when):
    botocore.auth.get_current_datetime = lambda *args, **kwargs: when


def run_cli(args, request_text):
    proc = subprocess.run([CLI] + args, input=request_text.encode("utf-8"),
                          capture_output=True, timeout=30)
    return proc.returncode, proc.stdout.decode("utf-8", "replace").strip(), \
        proc.stderr.decode("utf-8", "replace")


def request_text(method, target, headers):
    lines = [f"{method} {target}"] + [f"{name}:{value}" for name, value in headers]
    return "\n".join(lines) + "\n"


def target_of(url):
    rest = url.split("://", 1)[1]
    return rest[rest.index("/"):]


def make_request(method, path, query, headers, body):
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        req.headers[name] = value  # repeated assignment adds a repeated header
    return req


def verify(kind, i, method, url, headers, secret, region, when):
    now = when.strftime("%Y%m%dT%H%M%SZ")
    text = request_text(method, target_of(url), headers)
    rc, out, err = run_cli(["verify", secret, region, "s3", now], text)
    if rc != 0 or out != "OK":
        fail(kind + " verify", i, f"our verifier refused botocore's request: {out}",
             text + err)


def check_header(rng, i):
    method = rng.choice(["GET", "PUT", "HEAD", "DELETE", "POST"])
    path, query = rand_path(rng), rand_query(rng, allow_duplicates=True)
    headers = rand_headers(rng)
    body = rand_text(rng, "abc\n", 0, 64).encode() if method in ("PUT", "POST") else b""
    creds, region, when = rand_credentials(rng), rng.choice(REGIONS), rand_time(rng)
    req = make_request(method, path, query, headers, body)
    if rng.random() < 0.3:
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    freeze_time(when)
    S3SigV4Auth(creds, "s3", region).add_auth(req)

    content_sha = req.headers["X-Amz-Content-SHA256"]
    want = req.headers["Authorization"]
    ours_in = headers + [("X-Amz-Content-SHA256", content_sha)]
    args = ["sign", creds.access_key, creds.secret_key, region, "s3",
            when.strftime("%Y%m%dT%H%M%SZ"), creds.token or "-"]
    rc, out, err = run_cli(args, request_text(method, target_of(req.url), ours_in))
    if rc != 0 or out != want:
        fail("header", i, "Authorization differs",
             f"  botocore: {want}\n  ours:     {out}\n{err}"
             f"  request: {method} {req.url}\n  headers: {ours_in}")
    verify("header", i, method, req.url, list(req.headers.items()), creds.secret_key, region,
           when + datetime.timedelta(seconds=rng.randint(-900, 900)))


def check_presign(rng, i):
    method = rng.choice(["GET", "PUT", "HEAD"])
    path, query = rand_path(rng), rand_query(rng, allow_duplicates=False)
    headers = [("Host", HOST)]
    if rng.random() < 0.5:
        headers.append(("x-amz-meta-cachekey", rand_header_value(rng)))
    creds, region, when = rand_credentials(rng), rng.choice(REGIONS), rand_time(rng)
    expires = rng.choice([1, 60, 3600, 86400, 604800, rng.randint(1, 604800)])
    req = make_request(method, path, query, headers, b"")
    freeze_time(when)
    S3SigV4QueryAuth(creds, "s3", region, expires=expires).add_auth(req)

    want = req.url.rsplit("X-Amz-Signature=", 1)[1]
    args = ["presign", creds.access_key, creds.secret_key, region, "s3",
            when.strftime("%Y%m%dT%H%M%SZ"), str(expires), creds.token or "-"]
    target = path + (f"?{query}" if query else "")
    rc, out, err = run_cli(args, request_text(method, target, headers))
    got = out.rsplit("X-Amz-Signature=", 1)[-1]
    if rc != 0 or got != want:
        fail("presign", i, "X-Amz-Signature differs",
             f"  botocore: {req.url}\n  ours:     {out}\n{err}")
    verify("presign", i, method, req.url, headers, creds.secret_key, region,
           when + datetime.timedelta(seconds=rng.randint(0, expires)))


def check_v2(rng, i):
    method = rng.choice(["GET", "PUT", "HEAD", "DELETE"])
    path = rand_path(rng)
    query = rand_query(rng, allow_duplicates=False)
    # SigV2 sub-resources carry no '=' when they have no value
    query = "&".join(p[:-1] if p.endswith("=") else p for p in query.split("&") if p)
    # botocore's SigV2 writes one line per occurrence of a repeated
    # Content-MD5 or Content-Type (a broken string to sign); real requests
    # never repeat them, so neither do these.
    headers, seen = [], set()
    for name, value in rand_headers(rng):
        if name.lower() in ("content-md5", "content-type"):
            if name.lower() in seen:
                continue
            seen.add(name.lower())
        headers.append((name, value))
    creds, when = rand_credentials(rng), rand_time(rng)
    date = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    req = make_request(method, path, query, headers, b"")
    auth = HmacV1Auth(creds)
    auth._get_date = lambda: date
    auth.add_auth(req)

    want = req.headers["Authorization"]
    ours_in = [(n, v) for n, v in req.headers.items() if n.lower() != "authorization"]
    rc, out, err = run_cli(["v2sign", creds.access_key, creds.secret_key],
                           request_text(method, target_of(req.url), ours_in))
    if rc != 0 or out != want:
        fail("v2", i, "Authorization differs",
             f"  botocore: {want}\n  ours:     {out}\n{err}"
             f"  request: {method} {req.url}\n  headers: {ours_in}")
    verify("v2", i, method, req.url, list(req.headers.items()), creds.secret_key, "us-east-1",
           when)


def main():
    if not os.access(CLI, os.X_OK):
        print(f"FAIL: {CLI} is not an executable (build tests/unit/sigv4_cli.c)")
        return 1
    rng = random.Random(SEED)
    for i in range(COUNT):
        check_header(rng, i)
        check_presign(rng, i)
        check_v2(rng, i)
    total = 3 * COUNT
    print(f"sigv4 vs botocore {botocore.__version__}: {total - failures} of {total} requests "
          f"agree (seed {SEED})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
