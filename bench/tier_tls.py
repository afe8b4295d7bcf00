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
with boto3, through a node with an empty folder, after one read of another
body (untimed), as a node that has been up a while has a connection.  CLIENTS=K (default 1)
reads with K boto3 clients at once, each its share of the keys: a burst
that wants more connections than a node keeps idle, so new ones are made
(and resume a TLS session when the node can share it between them).
Prints each pass's time and cairnd's CPU, and the medians.  Everything on 127.0.0.1, stopped on exit.
"""
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tier as T  # noqa: E402

NGINX_HTTP = """
    log_format conn '$connection $ssl_session_reused';
    client_max_body_size 0;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:%(port)d ssl;
        ssl_certificate %(d)s/cert.pem;
        ssl_certificate_key %(d)s/key.pem;
        ssl_session_cache shared:tls:1m;  # sessions resumable, as S3's and GCS's are
        access_log %(d)s/conn.log conn;  # each request's connection, and how it began
        location / {
            proxy_pass %(up)s;
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
        }
    }
"""


def handshakes(d):
    """TLS connections nginx logged since the last call, as (full, resumed);
    the log is emptied."""
    path = os.path.join(d, "conn.log")
    conns = {}
    with open(path, "r+") as f:
        for line in f:
            c, r = line.split()
            conns[c] = r == "r"
        f.truncate(0)
    return sum(not r for r in conns.values()), sum(conns.values())


def main():
    binaries = sys.argv[1:] or [T.CAIRND]
    n = int(os.environ.get("N", "60"))
    size = int(os.environ.get("SIZE", str(300 * T.KIB)))
    runs = int(os.environ.get("RUNS", "3"))
    clients = int(os.environ.get("CLIENTS", "1"))
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
        cw.put_object(Bucket="objs", Key="first", Body=rng.randbytes(size))
        w.drain()
        w.stop()
        nodes.remove(w)
        handshakes(d)  # (the writes' connections)
        del bodies
        res = {b: [] for b in binaries}
        for _ in range(runs):
            for binary in binaries:
                T.CAIRND = binary
                r = T.Node(tempfile.mkdtemp(dir=work), tier_url, "tls", ["--tier-insecure", "true"])
                nodes.append(r)
                cs = [T.client(r.url) for _ in range(clients)]
                wrong = []

                def read(i):
                    for k, digest in keys[i::clients]:
                        if hashlib.sha256(cs[i].get_object(Bucket="objs", Key=k)["Body"].read()
                                          ).hexdigest() != digest:
                            wrong.append(k)
                threads = [threading.Thread(target=read, args=(i,)) for i in range(clients)]
                # a first read, untimed: the node has a connection (and a TLS session)
                cs[0].get_object(Bucket="objs", Key="first")["Body"].read()
                handshakes(d)
                c0, t0 = T.cpu_seconds([r.proc.pid]), time.time()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if wrong:
                    raise RuntimeError("%s: %s: wrong body" % (binary, wrong[0]))
                wall, cpu = time.time() - t0, T.cpu_seconds([r.proc.pid]) - c0
                full, resumed = handshakes(d)
                res[binary].append((wall, cpu, full, resumed))
                print("  %s: %.2f s, cairnd CPU %.2f s, TLS handshakes %d full, %d resumed" % (
                    binary, wall, cpu, full, resumed), flush=True)
                r.stop()
                nodes.remove(r)
        lines = [T.title("cold-tier-tls"),
                 "command: python3 bench/tier_tls.py%s (N=%d, SIZE=%d, RUNS=%d, CLIENTS=%d); "
                 "moto_server behind nginx's TLS as the tier" % (
                     "".join(" " + a for a in sys.argv[1:]), n, size, runs, clients),
                 "%d cold reads of %d KiB (each a key record, then a blob), %s; TLS "
                 "handshakes as nginx counts them:" % (
                     n, size // T.KIB, "boto3 one at a time" if clients == 1 else
                     "%d boto3 clients at once" % clients)]
        for binary in binaries:
            lines.append("  %-40s median %.2f s, cairnd CPU %.2f s, handshakes %d full, %d resumed"
                         % (binary, statistics.median(x[0] for x in res[binary]),
                            statistics.median(x[1] for x in res[binary]),
                            statistics.median(x[2] for x in res[binary]),
                            statistics.median(x[3] for x in res[binary])))
        T.save("tier-tls", lines)
    finally:
        if nginx:
            nginx.terminate()
            nginx.wait(30)
        T.teardown(nodes, moto, work)


if __name__ == "__main__":
    main()
