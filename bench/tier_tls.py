"""bench/tier_tls.py - cold reads from a tier over https, where connections
(and TLS sessions) can be kept.

    python3 bench/tier_tls.py [CAIRND ...]     (default: bin/cairnd)

moto_server closes every connection after its answer, so bench/tier.py
cannot show what keeping connections saves.  Here nginx terminates TLS in
front of moto_server (a self-signed certificate: the nodes run with
--tier-insecure true) and keeps its connections to the nodes open.  N bodies
(default 60) of SIZE random bytes (default 300 KiB: each a blob of its own
in the tier, so a cold read is two requests, the key record and then the
blob on a thread of its own) are written once; then, for RUNS rounds
(default 3), each binary given in turn reads every body cold, one at a time
with boto3, through a node with an empty folder.  Prints each pass's time
and cairnd's CPU, and the medians.  Everything on 127.0.0.1, stopped on exit.
"""
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tier as T  # noqa: E402

NGINX_HTTP = """
    client_max_body_size 0;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:%(port)d ssl;
        ssl_certificate %(d)s/cert.pem;
        ssl_certificate_key %(d)s/key.pem;
        location / {
            proxy_pass %(up)s;
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
        }
    }
"""


def main():
    binaries = sys.argv[1:] or [T.CAIRND]
    n = int(os.environ.get("N", "60"))
    size = int(os.environ.get("SIZE", str(300 * T.KIB)))
    runs = int(os.environ.get("RUNS", "3"))
    work = tempfile.mkdtemp(prefix="cairn-tls-")
    moto, url = T.start_moto()
    nginx, nodes = None, []
    try:
        d = os.path.join(work, "nginx")
        os.mkdir(d)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", os.path.join(d, "key.pem"),
                        "-out", os.path.join(d, "cert.pem")], check=True, capture_output=True)
        port = T.free_port()
        nginx = T.nginx_start(d, 1, NGINX_HTTP % dict(d=d, port=port, up=url))
        T.wait_http(url)
        T.client(url).create_bucket(Bucket="bench")
        tier_url = "https://127.0.0.1:%d" % port
        rng = random.Random(1)
        bodies = [rng.randbytes(size) for _ in range(n)]
        keys = [("o/%05d" % i, hashlib.sha256(b).hexdigest()) for i, b in enumerate(bodies)]
        T.CAIRND = binaries[0]
        w = T.Node(tempfile.mkdtemp(dir=work), tier_url, "tls", ["--tier-insecure", "true"])
        nodes.append(w)
        cw = T.client(w.url)
        cw.create_bucket(Bucket="objs")
        for (k, _), b in zip(keys, bodies):
            cw.put_object(Bucket="objs", Key=k, Body=b)
        w.drain()
        del bodies
        res = {b: [] for b in binaries}
        for _ in range(runs):
            for binary in binaries:
                T.CAIRND = binary
                r = T.Node(tempfile.mkdtemp(dir=work), tier_url, "tls", ["--tier-insecure", "true"])
                nodes.append(r)
                c = T.client(r.url)
                c0, t0 = T.cpu_seconds([r.proc.pid]), time.time()
                for k, digest in keys:
                    if hashlib.sha256(c.get_object(Bucket="objs", Key=k)["Body"].read()
                                      ).hexdigest() != digest:
                        raise RuntimeError("%s: %s: wrong body" % (binary, k))
                wall, cpu = time.time() - t0, T.cpu_seconds([r.proc.pid]) - c0
                res[binary].append((wall, cpu))
                print("  %s: %.2f s, cairnd CPU %.2f s" % (binary, wall, cpu), flush=True)
                r.stop()
                nodes.remove(r)
        lines = [T.title("cold-tier-tls"),
                 "command: python3 bench/tier_tls.py%s (N=%d, SIZE=%d, RUNS=%d); moto_server "
                 "behind nginx's TLS as the tier" % ("".join(" " + a for a in sys.argv[1:]), n,
                                                     size, runs),
                 "%d cold reads of %d KiB (each a key record, then a blob), boto3 one at a time:"
                 % (n, size // T.KIB)]
        for binary in binaries:
            lines.append("  %-40s median %.2f s, cairnd CPU %.2f s" % (
                binary, statistics.median(x[0] for x in res[binary]),
                statistics.median(x[1] for x in res[binary])))
        T.save("tier-tls", lines)
    finally:
        if nginx:
            nginx.terminate()
            nginx.wait(30)
        T.teardown(nodes, moto, work)


if __name__ == "__main__":
    main()
