"""bench/long_requests.py - do requests that take long hold up the others?

    python3 bench/long_requests.py [CAIRND...]     (make bench runs it on bin/cairnd)

1. A node without a cold tier; 32 boto3 clients copy 64 MiB parts
   (UploadPartCopy) from one object, over and over, for 8 s, while one more
   client asks /healthz every 20 ms, each time on a new connection (as a
   load balancer's or Kubernetes' probe does).  Prints how many probes got
   their answer in that time and how long they took (median, p90, max).
2. The same node with --threads 2 (8 offload threads); 12 clients each copy
   a 256 MiB part; meanwhile one ListBuckets and one PUT with If-None-Match:
   * (both also run on the offload threads), timed.
With several binaries, each in turn, three rounds.  Everything on 127.0.0.1,
ports chosen at run time, folders removed.
"""
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(binary, extra=()):
    """cairnd on a free port and a fresh folder: (process, port, folder, client)."""
    d = tempfile.mkdtemp(prefix="cairn-long-")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:%d" % port, "--data", d,
                          "--log-level", "warn"] + list(extra), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            h = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            h.request("GET", "/healthz")
            h.getresponse().read()
            h.close()
            break
        except OSError:
            time.sleep(0.05)
    c = boto3.client("s3", endpoint_url="http://127.0.0.1:%d" % port, region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="y",
                     config=Config(max_pool_connections=64, retries={"max_attempts": 0}))
    return p, port, d, c


def stop_node(p, d):
    p.terminate()
    p.wait(30)
    shutil.rmtree(d, ignore_errors=True)


def name(binary):
    return os.path.basename(os.path.dirname(binary)) + "/" + os.path.basename(binary)


def queued(binary):
    """Scenario 2: ListBuckets and a conditional PUT beside 12 long copies."""
    p, port, d, c = start(binary, ["--threads", "2"])
    try:
        c.create_bucket(Bucket="long")
        c.put_object(Bucket="long", Key="big", Body=os.urandom(256 << 20))
        up = c.create_multipart_upload(Bucket="long", Key="dst")["UploadId"]
        ths = [threading.Thread(target=lambda n=n: c.upload_part_copy(
            Bucket="long", Key="dst", UploadId=up, PartNumber=n,
            CopySource={"Bucket": "long", "Key": "big"})) for n in range(1, 13)]
        for t in ths:
            t.start()
        time.sleep(0.3)
        t0 = time.time()
        c.list_buckets()
        lb = time.time() - t0
        t0 = time.time()
        c.put_object(Bucket="long", Key="cond", Body=b"x", IfNoneMatch="*")
        cp = time.time() - t0
        for t in ths:
            t.join()
    finally:
        stop_node(p, d)
    return "%-28s ListBuckets %.3f s, conditional PUT %.3f s (beside 12 part copies of 256 MiB)" % (
        name(binary), lb, cp)


def one(binary):
    p, port, d, c = start(binary)
    try:
        c.create_bucket(Bucket="long")
        c.put_object(Bucket="long", Key="big", Body=os.urandom(64 << 20))
        up = c.create_multipart_upload(Bucket="long", Key="dst")["UploadId"]
        stop = time.time() + 8
        copies = [0]

        def copier(n):
            while time.time() < stop:
                c.upload_part_copy(Bucket="long", Key="dst", UploadId=up, PartNumber=n,
                                   CopySource={"Bucket": "long", "Key": "big"})
                copies[0] += 1
        ths = [threading.Thread(target=copier, args=(i + 1,)) for i in range(32)]
        for t in ths:
            t.start()
        time.sleep(0.5)
        lat = []
        while time.time() < stop - 0.5:
            h = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            t0 = time.time()
            h.request("GET", "/healthz")
            h.getresponse().read()
            lat.append((time.time() - t0) * 1000)
            h.close()
            time.sleep(0.02)
        for t in ths:
            t.join()
    finally:
        stop_node(p, d)
    lat.sort()
    return "%-28s %4d probes, median %7.1f ms, p90 %7.1f ms, max %7.1f ms; %d part copies" % (
        name(binary), len(lat), statistics.median(lat), lat[int(len(lat) * 0.9)], lat[-1],
        copies[0])


def main():
    bins = sys.argv[1:] or [os.path.join(ROOT, "bin", "cairnd")]
    print("cairn long-requests bench %s: 32 clients copying 64 MiB parts, /healthz probes on new "
          "connections" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for rnd in range(3 if len(bins) > 1 else 1):
        for b in bins:
            print("round %d: %s" % (rnd + 1, one(b)), flush=True)
    for rnd in range(3 if len(bins) > 1 else 1):
        for b in bins:
            print("round %d: %s" % (rnd + 1, queued(b)), flush=True)


if __name__ == "__main__":
    main()
