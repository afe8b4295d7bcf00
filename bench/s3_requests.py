"""Writes a wrk Lua script that replays pre-signed S3 requests.

    python3 bench/s3_requests.py URL BUCKET N SIZE METHOD OUT.lua [native]

For N keys, builds one request each (GET, or PUT with a distinct SIZE-byte
body), signed with SigV4 header authentication by botocore (the same signer
boto3 uses), and writes them into OUT.lua as a table that bench/replay.lua
sends round robin.  A signature stays valid for 15 minutes, so replaying it
measures the server's cost of verifying it on every request.  With "native",
the requests are unsigned PUT|GET /cas/<sha256> of the same bodies instead.
"""
import hashlib
import os
import sys
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

url, bucket, n, size, method, out = sys.argv[1:7]
native = len(sys.argv) > 7 and sys.argv[7] == "native"
n, size = int(n), int(size)
host = urlsplit(url).netloc
creds = Credentials(os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
                    os.environ.get("AWS_SECRET_ACCESS_KEY", "bench-secret"))


def body_of(i):
    # text-like and distinct per key, so bodies are neither all equal nor random
    line = ("key %08d lorem ipsum dolor sit amet consectetur\n" % i).encode()
    return (line * (size // len(line) + 1))[:size]


def lua_str(b):
    return '"' + "".join("\\%03d" % c if (c < 32 or c > 126 or c in (34, 92)) else chr(c)
                         for c in b) + '"'


with open(out, "w") as f:
    f.write("requests = {\n")
    for i in range(n):
        body = body_of(i)
        if native:
            path = "/cas/" + hashlib.sha256(body).hexdigest()
            headers = {}
        else:
            path = "/%s/obj-%08d" % (bucket, i)
            req = AWSRequest(method=method, url=url + path,
                             data=body if method == "PUT" else b"",
                             headers={"Host": host})
            req.headers["x-amz-content-sha256"] = (hashlib.sha256(body).hexdigest()
                                                   if method == "PUT" else
                                                   hashlib.sha256(b"").hexdigest())
            S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
            headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
        if method == "PUT":
            headers["Content-Type"] = "application/octet-stream"
        hs = ", ".join("[%s] = %s" % (lua_str(k.encode()), lua_str(v.encode()))
                       for k, v in headers.items())
        payload = lua_str(body) if method == "PUT" else "nil"
        f.write("  {%s, %s, {%s}, %s},\n" % (lua_str(method.encode()), lua_str(path.encode()),
                                              hs, payload))
    f.write("}\n")
