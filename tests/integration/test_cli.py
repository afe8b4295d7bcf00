"""The cairn CLI against real cairnd nodes over a moto_server tier.

What is checked: after a node's folder is wiped, `cairn warmup` makes every
listed entry local (the metrics then count local hits, not tier reads); an
interrupted warmup resumes without fetching anything twice; the hot set of
one node warms another; --into DIR downloads verified files, skips what is
there, and keeps nothing when the server's bytes are damaged; the admin API
refuses keys that are not admin keys; the progress bar on a terminal and
plain lines in a pipe; put/get/stat/ls/rm/stats/evict/drain do what they say."""
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import test_tier as tt
from harness import CAIRN, Server, close_checked, random_seed, scrape, sha256, wait_for

KIB, MIB = 1024, 1024 * 1024
AK, SK = "cli-admin", "cli-admin-secret"


def metric(srv, name, **labels):
    text = scrape(srv)
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and all(
                ('%s="%s"' % kv) in (m.group(2) or "") for kv in labels.items()):
            total += float(m.group(3))
    return total


@unittest.skipUnless(tt.have_moto(), "moto_server missing")
class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.moto = tt.Moto("tier")
        cls.creds_file = tempfile.NamedTemporaryFile("w", suffix=".creds", delete=False)
        cls.creds_file.write("%s %s admin *\ncli-reader cli-reader-secret read *\n" % (AK, SK))
        cls.creds_file.close()

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()
        os.unlink(cls.creds_file.name)

    def node(self, prefix="cli", data=None):
        srv = Server(["--tier", "s3://tier/" + prefix, "--tier-endpoint", self.moto.url,
                      "--credentials", self.creds_file.name], data=data, env=tt.CREDS)
        self.addCleanup(close_checked, self, srv)
        return srv

    def cli(self, srv, *args, key=(AK, SK), stdin=None, timeout=300, url=None):
        env = dict(os.environ, CAIRN_URL=url or srv.url, CAIRN_CONFIG="/dev/null")
        for k in ("CAIRN_ACCESS_KEY", "CAIRN_SECRET_KEY", "AWS_ACCESS_KEY_ID",
                  "AWS_SECRET_ACCESS_KEY"):
            env.pop(k, None)
        if key:
            env["CAIRN_ACCESS_KEY"], env["CAIRN_SECRET_KEY"] = key
        p = subprocess.run([CAIRN] + list(args), input=stdin, capture_output=True, env=env,
                           timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def admin_get(self, srv, path_query):
        """A GET of the admin API, signed with the admin key as S3 requests are."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        path, _, query = path_query.partition("?")
        path_query = path + ("?" + urllib.parse.quote(query, safe="=&") if query else "")
        req = AWSRequest(method="GET", url=srv.url + path_query)
        S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
        return tt.request(srv, "GET", path_query, headers=dict(req.headers.items()))

    def s3(self, srv):
        import boto3
        return boto3.client("s3", endpoint_url=srv.url, region_name="us-east-1",
                            aws_access_key_id=AK, aws_secret_access_key=SK)

    def fill(self, srv, n_small=40, n_big=2, least=1):
        """Objects in bucket proj and blobs in the CAS; returns {item: body}."""
        rng = random.Random(random_seed())
        c = self.s3(srv)
        c.create_bucket(Bucket="proj")
        items = {}
        for i in range(n_small + n_big):
            size = rng.randint(least, 200 * KIB) if i < n_small else rng.randint(3 * MIB, 6 * MIB)
            body = rng.randbytes(size) if i % 2 else (b"log line %d\n" % i) * (size // 12 + 1)
            key = "runner/p%d/cache %d.zip" % (i % 3, i)  # a space: items escape it
            c.put_object(Bucket="proj", Key=key, Body=body)
            items["proj/" + key.replace(" ", "%20")] = body
        for i in range(4):
            body = rng.randbytes(rng.randint(10, 100 * KIB))
            self.assertEqual(tt.request(srv, "PUT", "/cas/" + sha256(body), body)[0], 200)
            items[sha256(body)] = body
        rc, out, err = self.cli(srv, "drain", "--timeout", "120s")
        self.assertEqual(rc, 0, err)
        self.assertIn("tier queue 0", out)
        return items

    def wipe(self, srv):
        srv.stop()
        shutil.rmtree(srv.data)
        os.mkdir(srv.data)
        srv.start()

    def read_all(self, srv, items):
        c = self.s3(srv)
        for name, body in items.items():
            if name.startswith("proj/"):
                got = c.get_object(Bucket="proj", Key=name[5:].replace("%20", " "))["Body"].read()
            else:
                got = tt.request(srv, "GET", "/cas/" + name)[2]
            self.assertEqual(got, body, name)

    def test_warmup_after_wipe_makes_every_entry_a_local_hit(self):
        a = self.node()
        items = self.fill(a)
        self.wipe(a)
        listing = "".join(n + "\n" for n in items) + "# a comment\n\n"
        rc, out, err = self.cli(a, "warmup", "--json", "-", stdin=listing.encode())
        self.assertEqual(rc, 0, err)
        s = json.loads(out)
        self.assertEqual((s["items"], s["warmed"], s["local"], s["missing"], s["failed"]),
                         (len(items), len(items), 0, 0, 0))
        self.assertEqual(s["bytes"], sum(len(b) for b in items.values()))
        tier_reads = metric(a, "cairn_tier_reads_total", result="hit")
        self.read_all(a, items)
        # every read was local: the hits say so, and the tier was not asked again
        # (a request is counted once its answer went out: the last one may
        # be a moment behind its client)
        local = lambda: metric(a, "cairn_cache_hits_total", level="local")
        self.assertTrue(wait_for(lambda: local() == len(items), timeout=5), local())
        self.assertEqual(metric(a, "cairn_cache_hits_total", level="tier"), 0)
        self.assertEqual(metric(a, "cairn_tier_reads_total", result="hit"), tier_reads)
        # again: all already local
        rc, out, err = self.cli(a, "warmup", "--json", "-", stdin=listing.encode())
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["local"], len(items))
        # an entry nobody has: counted missing, exit 1
        rc, out, err = self.cli(a, "warmup", "-", stdin=b"proj/not-there\n")
        self.assertEqual(rc, 1)
        self.assertIn("1 missing", out)

    def test_prefix_warmup_on_a_new_node_lists_the_tier(self):
        """A node with an empty folder warms one project's caches by prefix:
        the keys come from the tier, written by another node."""
        a = self.node(prefix="byprefix")
        items = self.fill(a, n_small=30, n_big=1)
        # a key too long to be spelled out in its record's name (it is cut
        # there and ends in a hash), with dots and non-ASCII letters
        long_key = "runner/p1/" + "\u00e9t\u00e9.d/" * 60 + "end"
        self.s3(a).put_object(Bucket="proj", Key=long_key, Body=b"long")
        rc, out, err = self.cli(a, "drain", "--timeout", "60s")
        self.assertEqual(rc, 0, err)
        items["proj/" + long_key] = b"long"
        b = self.node(prefix="byprefix")
        want = {n: body for n, body in items.items() if n.startswith("proj/runner/p1/")}
        rc, out, err = self.cli(b, "warmup", "--json", "--prefix", "proj/runner/p1/")
        self.assertEqual(rc, 0, err)
        s = json.loads(out)
        self.assertEqual((s["items"], s["warmed"], s["missing"], s["failed"]),
                         (len(want), len(want), 0, 0))
        # the same list, by the admin API, and nothing for a prefix nobody used
        st, _, body = self.admin_get(b, "/admin/keys?prefix=proj/runner/p1/")
        self.assertEqual(st, 200, body)
        self.assertEqual(sorted(body.decode().split()), sorted(want))
        st, _, body = self.admin_get(b, "/admin/keys?prefix=proj/nothing-here/")
        self.assertEqual((st, body), (200, b""))
        self.assertEqual(self.admin_get(b, "/admin/keys")[0], 400)
        self.assertEqual(tt.request(b, "GET", "/admin/keys?prefix=proj/")[0], 403)
        # every warmed entry is now a local hit
        tier_reads = metric(b, "cairn_tier_reads_total", result="hit")
        self.read_all(b, want)
        self.assertEqual(metric(b, "cairn_cache_hits_total", level="local"), len(want))
        self.assertEqual(metric(b, "cairn_tier_reads_total", result="hit"), tier_reads)
        # --into lists through /admin/keys too
        d = tempfile.mkdtemp(prefix="cairn-into-")
        self.addCleanup(shutil.rmtree, d, True)
        rc, out, err = self.cli(b, "warmup", "--json", "--prefix", "proj/runner/p1/", "--into", d)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["items"], len(want))
        # a bad prefix is refused before a job starts
        rc, out, err = self.cli(b, "warmup", "--prefix", "/runner")
        self.assertEqual(rc, 3, (out, err))
        self.assertIn("BUCKET", err)
        for native in ("cas/", "ac/", "ac/team-x/"):  # no bucket can be called so
            rc, out, err = self.cli(b, "warmup", "--prefix", native)
            self.assertEqual(rc, 3, (native, out, err))
            self.assertIn("one by one", err)
            self.assertEqual(self.admin_get(b, "/admin/keys?prefix=" + native)[0], 400)
        # a key deleted through one node is not listed by the other
        victim = sorted(want)[0]
        self.s3(a).delete_object(Bucket="proj", Key=victim[5:].replace("%20", " "))
        rc, out, err = self.cli(a, "drain", "--timeout", "60s")
        self.assertEqual(rc, 0, err)
        c = self.node(prefix="byprefix")
        st, _, body = self.admin_get(c, "/admin/keys?prefix=proj/runner/p1/")
        self.assertEqual(sorted(body.decode().split()), sorted(set(want) - {victim}))

    def test_interrupted_warmup_resumes_without_duplicates(self):
        a = self.node(prefix="resume")
        # larger than the key records carry, so not packed: one request each
        items = self.fill(a, n_small=150, n_big=0, least=80 * KIB)
        self.wipe(a)
        listing = "".join(n + "\n" for n in items).encode()
        env = dict(os.environ, CAIRN_URL=a.url, CAIRN_CONFIG="/dev/null", CAIRN_ACCESS_KEY=AK,
                   CAIRN_SECRET_KEY=SK)
        path = a.data + ".items"
        with open(path, "wb") as f:
            f.write(listing)
        self.addCleanup(os.unlink, path)
        p = subprocess.Popen([CAIRN, "warmup", "--parallel", "1", "--json", path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.assertTrue(wait_for(lambda: metric(a, "cairn_tier_reads_total", result="hit") >= 10,
                                 timeout=60))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        first = json.loads(out)
        self.assertEqual(first["state"], "stopped")
        self.assertLess(first["local"] + first["warmed"], len(items))
        rc, out, err = self.cli(a, "warmup", "--json", "-", stdin=listing)
        self.assertEqual(rc, 0, err)
        second = json.loads(out)
        self.assertEqual(second["state"], "done")
        self.assertEqual(second["local"], first["warmed"])  # what the first run warmed
        self.assertEqual(second["local"] + second["warmed"], len(items))
        # nothing was fetched from the tier twice
        self.assertEqual(metric(a, "cairn_tier_reads_total", result="hit"), len(items))
        self.read_all(a, items)

    def test_small_entries_come_from_packs_checked_against_the_listing(self):
        """Small key records also go up in packs; a warmup takes a record from
        a pack only while the pack's copy is the record the tier lists: not
        one overwritten or deleted since, nor one damaged in the pack."""
        a = self.node(prefix="packs")
        c = self.s3(a)
        c.create_bucket(Bucket="proj")
        rng = random.Random(random_seed())
        items = {}
        for i in range(120):
            body = rng.randbytes(rng.randint(0, 20 * KIB))
            key = "runner/p%d/cache %d.zip" % (i % 2, i)
            c.put_object(Bucket="proj", Key=key, Body=body, Metadata={"n": str(i)})
            items["proj/" + key.replace(" ", "%20")] = body
        rc, out, err = self.cli(a, "drain", "--timeout", "120s")
        self.assertEqual(rc, 0, err)
        self.assertGreaterEqual(metric(a, "cairn_tier_packs_total"), 1)
        self.assertEqual(metric(a, "cairn_tier_packed_records_total"), 120)
        names = sorted(items)
        # a few overwritten and a few deleted since (too few for a new pack)
        changed, gone = names[:5], names[5:8]
        for n in changed:
            items[n] = rng.randbytes(1000)
            c.put_object(Bucket="proj", Key=n[5:].replace("%20", " "), Body=items[n])
        for n in gone:
            c.delete_object(Bucket="proj", Key=n[5:].replace("%20", " "))
        rc, out, err = self.cli(a, "drain", "--timeout", "120s")
        self.assertEqual(rc, 0, err)
        # one record damaged inside its pack
        import boto3
        m = boto3.client("s3", endpoint_url=self.moto.url, region_name="us-east-1",
                         aws_access_key_id=tt.CREDS["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=tt.CREDS["AWS_SECRET_ACCESS_KEY"])
        packs = [o["Key"] for o in m.list_objects_v2(Bucket="tier", Prefix="packs/packs/")
                 .get("Contents", [])]
        self.assertTrue(packs)
        blob = bytearray(m.get_object(Bucket="tier", Key=packs[0])["Body"].read())
        self.assertEqual(blob[:4], b"CPK1")
        count, idx_len = struct.unpack_from("<II", blob, 4)
        p, off, damaged = 12, 12 + idx_len, None
        for _ in range(count):  # the index: length, SHA-256, ETag, name
            rl = struct.unpack_from("<I", blob, p)[0]
            el = blob[p + 36]
            nl = struct.unpack_from("<H", blob, p + 37 + el)[0]
            p += 39 + el + nl
            nkl = struct.unpack_from("<I", blob, off + 4)[0]  # the record: "CKR1", ns \0 key
            key = bytes(blob[off + 8:off + 8 + nkl]).split(b"\0", 1)[1].decode()
            item = "proj/" + key.replace(" ", "%20")
            if damaged is None and item not in changed + gone:
                damaged = item
                blob[off + rl - 1] ^= 0xFF  # the last byte of its body
            off += rl
        self.assertEqual(off, len(blob))
        self.assertIsNotNone(damaged)
        m.put_object(Bucket="tier", Key=packs[0], Body=bytes(blob))

        b = self.node(prefix="packs")  # a new node, its folder empty
        listing = "".join(n + "\n" for n in names).encode()
        rc, out, err = self.cli(b, "warmup", "--json", "-", stdin=listing)
        self.assertEqual(rc, 1, err)  # the deleted ones are missing
        s = json.loads(out)
        self.assertEqual((s["warmed"], s["local"], s["missing"], s["failed"]),
                         (len(names) - len(gone), 0, len(gone), 0))
        from_packs = metric(b, "cairn_tier_pack_reads_total")
        # all but the changed, the deleted and the damaged one came from packs
        self.assertEqual(from_packs, len(names) - len(changed) - len(gone) - 1)
        self.assertEqual(metric(b, "cairn_tier_reads_total", result="corrupt"), 1)
        self.assertEqual(metric(b, "cairn_tier_reads_total", result="hit"), len(names) - len(gone))
        for n in gone:
            del items[n]
        tier_reads = metric(b, "cairn_tier_reads_total", result="hit")
        self.read_all(b, items)
        self.assertEqual(metric(b, "cairn_cache_hits_total", level="local"), len(items))
        self.assertEqual(metric(b, "cairn_tier_reads_total", result="hit"), tier_reads)
        for i, n in enumerate(sorted(items)):
            if n not in changed:
                head = self.s3(b).head_object(Bucket="proj", Key=n[5:].replace("%20", " "))
                self.assertEqual(head["Metadata"]["n"], n.split("%20")[1][:-4])

    def test_a_failing_tier_is_failed_not_missing(self):
        proxy = tt.FaultProxy(self.moto.port)
        self.addCleanup(proxy.stop)
        a = Server(["--tier", "s3://tier/failing", "--tier-endpoint", proxy.url,
                    "--tier-timeout", "3s", "--credentials", self.creds_file.name], env=tt.CREDS)
        self.addCleanup(close_checked, self, a)
        items = self.fill(a, n_small=6, n_big=1)
        self.wipe(a)
        listing = "".join(n + "\n" for n in items).encode()
        proxy.mode = "500"
        rc, out, err = self.cli(a, "warmup", "--json", "-", stdin=listing)
        self.assertEqual(rc, 1, err)
        s = json.loads(out)
        self.assertEqual((s["failed"], s["missing"], s["warmed"]), (len(items), 0, 0))
        proxy.mode = "ok"
        rc, out, err = self.cli(a, "warmup", "--json", "-", stdin=listing)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["warmed"], len(items))

    def test_hot_set_of_one_node_warms_another(self):
        a = self.node(prefix="hot")
        items = self.fill(a, n_small=20, n_big=0)
        hot = [n for n in items if n.startswith("proj/")][:7]
        time.sleep(1.1)  # before this second, everything was written
        c = self.s3(a)
        for n in hot:
            c.get_object(Bucket="proj", Key=n[5:].replace("%20", " "))["Body"].read()
        b = self.node(prefix="hot")
        rc, out, err = self.cli(b, "warmup", "--hot", "--from", a.url, "--window", "1s",
                                "--json")
        self.assertEqual(rc, 0, err)
        s = json.loads(out)
        self.assertEqual((s["items"], s["warmed"]), (len(hot), len(hot)))
        for n in hot:
            got = self.s3(b).get_object(Bucket="proj", Key=n[5:].replace("%20", " "))
            self.assertEqual(got["Body"].read(), items[n])
        self.assertEqual(metric(b, "cairn_cache_hits_total", level="local"), len(hot))

    def test_warmup_into_a_directory(self):
        a = self.node(prefix="into")
        items = self.fill(a, n_small=12, n_big=1)
        for inst in ("", "team-x/"):  # action-cache entries: their digest is not their name
            body = b"an action's result, %s" % inst.encode()
            key = sha256(body + b" (its action)")
            self.assertEqual(tt.request(a, "PUT", "/%sac/%s" % (inst, key), body)[0], 200)
            items["ac/%s%s" % (inst, key)] = body
        d = tempfile.mkdtemp(prefix="cairn-into-")
        self.addCleanup(shutil.rmtree, d, True)
        listing = "".join(n + "\n" for n in items).encode()
        rc, out, err = self.cli(a, "warmup", "--into", d, "--json", "-", stdin=listing)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["warmed"], len(items))
        for n, body in items.items():
            path = os.path.join(d, "cas", n) if "/" not in n else \
                os.path.join(d, n.replace("%20", " "))
            with open(path, "rb") as f:
                self.assertEqual(f.read(), body, n)
        rc, out, err = self.cli(a, "warmup", "--into", d, "--json", "-", stdin=listing)
        self.assertEqual(json.loads(out)["local"], len(items))  # all there: skipped
        # a damaged answer: nothing kept, exit 1
        proxy = tt.FaultProxy(a.port)
        self.addCleanup(proxy.stop)
        proxy.mode = "flip"
        d2 = tempfile.mkdtemp(prefix="cairn-into-")
        self.addCleanup(shutil.rmtree, d2, True)
        some = [n for n in items if n.startswith("proj/")][:3] + \
            [n for n in items if "/" not in n][:2]
        rc, out, err = self.cli(a, "warmup", "--into", d2, "--json", "-",
                                stdin="".join(n + "\n" for n in some).encode(), url=proxy.url)
        self.assertEqual(rc, 1, err)
        self.assertEqual(json.loads(out)["failed"], len(some))
        self.assertIn("does not match its digest", err)
        left = [f for _, _, fs in os.walk(d2) for f in fs]
        self.assertEqual(left, [])

    def test_admin_needs_an_admin_key(self):
        a = self.node(prefix="auth")
        rc, out, err = self.cli(a, "warmup", "-", stdin=b"proj/x\n",
                                key=("cli-reader", "cli-reader-secret"))
        self.assertEqual(rc, 3)
        self.assertIn("403", err)
        rc, out, err = self.cli(a, "warmup", "-", stdin=b"proj/x\n", key=(AK, "wrong"))
        self.assertEqual(rc, 3)
        self.assertIn("signature", err.lower())
        rc, out, err = self.cli(a, "drain", key=None)
        self.assertEqual(rc, 3)
        # a bad item is refused before anything is sent
        rc, out, err = self.cli(a, "warmup", "-", stdin=b"no-slash\n")
        self.assertEqual(rc, 2)
        self.assertIn("not an item", err)
        audit = [json.loads(x) for x in a.read_log().splitlines() if '"audit"' in x]
        self.assertTrue(any(x.get("action") == "refused" for x in audit))

    def test_progress_on_a_terminal_and_plain_in_a_pipe(self):
        a = self.node(prefix="tty")
        items = self.fill(a, n_small=30, n_big=1)
        self.wipe(a)
        listing = os.path.join(a.data + ".items")
        with open(listing, "w") as f:
            f.write("".join(n + "\n" for n in items))
        self.addCleanup(os.unlink, listing)
        env = dict(os.environ, CAIRN_URL=a.url, CAIRN_CONFIG="/dev/null", CAIRN_ACCESS_KEY=AK,
                   CAIRN_SECRET_KEY=SK)
        # a real terminal: script(1) gives the CLI a pty
        p = subprocess.run(["script", "-qefc", "%s warmup --parallel 1 %s" % (CAIRN, listing),
                            "/dev/null"], capture_output=True, env=env, timeout=120)
        tty = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, tty)
        self.assertIn("\r", tty)
        self.assertRegex(tty, r"warmup \[[#-]{30}\] \d+/%d items" % len(items))
        self.assertIn("%d items: 0 already local, %d warmed" % (len(items), len(items)), tty)
        # piped: no bar, no carriage returns, plain lines
        self.wipe(a)
        rc, out, err = self.cli(a, "warmup", listing)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("\r", err)
        self.assertNotIn("[#", err)
        self.assertRegex(err, r"warmup: %d/%d items" % (len(items), len(items)))

    def test_drain_ends_at_its_timeout(self):
        """With the tier away, `cairn drain --timeout 2s` says the queue did
        not empty (exit 3) at its deadline, not at the end of the server's
        own wait of up to 5 s per request."""
        srv = Server(["--tier", "http://127.0.0.1:%d/" % tt.free_port(), "--credentials",
                      self.creds_file.name], env=tt.CREDS)
        self.addCleanup(close_checked, self, srv)
        self.assertEqual(tt.request(srv, "PUT", "/cas/" + sha256(b"owed"), b"owed")[0], 200)
        t0 = time.monotonic()
        rc, out, err = self.cli(srv, "drain", "--timeout", "2s")
        self.assertEqual(rc, 3, err)
        self.assertIn("did not empty in time", err)
        self.assertLess(time.monotonic() - t0, 4.5)

    def test_verify_quarantines_a_damaged_blob_and_the_tier_heals_it(self):
        a = self.node(prefix="verify")
        c = self.s3(a)
        c.create_bucket(Bucket="vvv")
        rnd = os.urandom(300 * KIB)
        text = b"".join(b"line %d of a log\n" % i for i in range(200000))  # zstd frames
        small = os.urandom(5 * KIB)  # kept in the index
        for k, b in (("rnd", rnd), ("text", text), ("small", small)):
            c.put_object(Bucket="vvv", Key=k, Body=b)
        rc, out, err = self.cli(a, "drain")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.cli(a, "verify", "--json")
        self.assertEqual(rc, 0, err)
        v = json.loads(out)
        self.assertEqual((v["items"], v["good"], v["corrupt"]), (3, 3, 0))
        self.assertEqual(v["bytes"], len(rnd) + len(text) + len(small))
        # flip one byte of the random blob's file, and one of the text's
        for body in (rnd, text):
            d = sha256(body)
            path = os.path.join(a.data, "blobs", d[:2], d)
            with open(path, "r+b") as f:
                f.seek(os.path.getsize(path) // 2)
                x = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([x[0] ^ 0x40]))
        rc, out, err = self.cli(a, "verify")
        self.assertEqual(rc, 1, err)
        self.assertIn("3 blobs: 1 good, 2 damaged (quarantined)", out)
        for body in (rnd, text):
            self.assertIn("quarantined " + sha256(body), out)
            self.assertTrue(os.path.exists(os.path.join(a.data, "quarantine", sha256(body))))
        self.assertEqual(metric(a, "cairn_quarantined_blobs_total"), 2)
        rc, out, err = self.cli(a, "verify", "--json")
        self.assertEqual((rc, json.loads(out)["items"]), (0, 1))
        # the keys now miss locally, and the tier gives the good bodies back
        self.assertEqual(c.get_object(Bucket="vvv", Key="rnd")["Body"].read(), rnd)
        self.assertEqual(c.get_object(Bucket="vvv", Key="text")["Body"].read(), text)
        self.assertEqual(metric(a, "cairn_cache_hits_total", level="tier"), 2)

    def test_gc_removes_orphans_and_abandoned_multipart_uploads(self):
        a = self.node(prefix="gc")
        c = self.s3(a)
        c.create_bucket(Bucket="ggg")
        up = c.create_multipart_upload(Bucket="ggg", Key="big")["UploadId"]
        c.upload_part(Bucket="ggg", Key="big", UploadId=up, PartNumber=1, Body=b"x" * (5 * MIB))
        orphan = sha256(b"nobody's")
        os.makedirs(os.path.join(a.data, "blobs", orphan[:2]), exist_ok=True)
        with open(os.path.join(a.data, "blobs", orphan[:2], orphan), "wb") as f:
            f.write(b"left by a crash")
        rc, out, err = self.cli(a, "gc")  # the upload is young: kept
        self.assertEqual(rc, 0, err)
        self.assertIn("1 orphan blob files removed, 0 abandoned", out)
        self.assertFalse(os.path.exists(os.path.join(a.data, "blobs", orphan[:2], orphan)))
        self.assertEqual(len(c.list_multipart_uploads(Bucket="ggg").get("Uploads", [])), 1)
        time.sleep(1.1)
        rc, out, err = self.cli(a, "gc", "--json", "--multipart-older-than", "1s")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"orphans_removed": 0, "multipart_expired": 1})
        self.assertEqual(c.list_multipart_uploads(Bucket="ggg").get("Uploads", []), [])

    def test_backup_during_writes_restores_every_acknowledged_object(self):
        a = Server(["--credentials", self.creds_file.name])  # no tier: the files are all
        self.addCleanup(close_checked, self, a)
        c = self.s3(a)
        c.create_bucket(Bucket="bak")
        rng = random.Random(random_seed())
        acked = []  # (key, body, when it was answered)
        stop = threading.Event()

        def writer():
            w = self.s3(a)
            i = 0
            while not stop.is_set():
                kind = i % 3
                body = rng.randbytes(2 * KIB) if kind == 0 else rng.randbytes(150 * KIB) \
                    if kind == 1 else (b"text %d " % i) * 60000
                key = "w/%06d" % i
                w.put_object(Bucket="bak", Key=key, Body=body)
                acked.append((key, body, time.time()))
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        self.assertTrue(wait_for(lambda: len(acked) >= 40, timeout=60))
        started = time.time()
        d = tempfile.mkdtemp(prefix="cairn-backup-")
        self.addCleanup(shutil.rmtree, d, True)
        rc, out, err = self.cli(a, "backup", os.path.join(d, "b"), "--json")
        time.sleep(0.5)
        stop.set()
        t.join()
        self.assertEqual(rc, 0, err)
        info = json.loads(out)
        self.assertGreater(info["files"], 0)
        self.assertGreater(info["inline"], 0)
        before = [x for x in acked if x[2] < started]
        self.assertGreaterEqual(len(before), 40)
        # a backup is not made over another
        rc, out, err = self.cli(a, "backup", os.path.join(d, "b"))
        self.assertEqual(rc, 2)
        # restored into a new folder, a new node has every object acknowledged before
        data = os.path.join(d, "restored")
        rc, out, err = self.cli(a, "restore", os.path.join(d, "b"), "--data", data)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.cli(a, "restore", os.path.join(d, "b"), "--data", data)
        self.assertEqual(rc, 2)  # not over a restored folder
        b = Server(["--credentials", self.creds_file.name], data=data)
        self.addCleanup(close_checked, self, b)
        cb = self.s3(b)
        for key, body, _ in before:
            self.assertEqual(cb.get_object(Bucket="bak", Key=key)["Body"].read(), body, key)
        # whatever it lists reads back equal (writes during the copy may or may not be in it)
        bodies = dict((k, v) for k, v, _ in acked)
        listed = [o["Key"] for p in cb.get_paginator("list_objects_v2").paginate(Bucket="bak")
                  for o in p.get("Contents", [])]
        self.assertGreaterEqual(len(listed), len(before))
        for key in listed:
            self.assertEqual(cb.get_object(Bucket="bak", Key=key)["Body"].read(), bodies[key])
        self.assertFalse(os.path.exists(os.path.join(data, "RESTORED")))
        rc, out, err = self.cli(b, "verify", "--json")
        self.assertEqual((rc, json.loads(out)["corrupt"]), (0, 0), err)

    def test_backup_leaves_tier_held_blobs_to_the_tier(self):
        a = self.node(prefix="backup")
        items = self.fill(a, n_small=10, n_big=1)  # drained: the tier holds every blob
        c = self.s3(a)
        late = os.urandom(300 * KIB)  # not yet in the tier when the copy is taken
        c.put_object(Bucket="proj", Key="late", Body=late)
        d = tempfile.mkdtemp(prefix="cairn-backup-")
        self.addCleanup(shutil.rmtree, d, True)
        rc, out, err = self.cli(a, "backup", os.path.join(d, "b"), "--json")
        self.assertEqual(rc, 0, err)
        info = json.loads(out)
        self.assertLess(info["files"], info["blobs"] - info["inline"])
        data = os.path.join(d, "restored")
        rc, out, err = self.cli(a, "restore", os.path.join(d, "b"), "--data", data)
        self.assertEqual(rc, 0, err)
        b = self.node(prefix="backup", data=data)
        self.read_all(b, items)
        self.assertEqual(self.s3(b).get_object(Bucket="proj", Key="late")["Body"].read(), late)

    def test_many_jobs_do_not_use_up_the_index_readers(self):
        """Each job's threads read the index; LMDB has 1024 reader slots, and
        threads that end must give theirs back."""
        a = Server([])  # no key: the admin API is open to loopback
        self.addCleanup(close_checked, self, a)
        body = os.urandom(100)
        self.assertEqual(tt.request(a, "PUT", "/cas/" + sha256(body), body)[0], 200)
        listing = (sha256(body) + "\n").encode()
        c = a.conn()
        job = None
        for i in range(1200):  # a thread (at least) each
            while True:
                c.request("POST", "/admin/warmup?parallel=1", listing)
                r = c.getresponse()
                data = r.read()
                if r.status != 503:  # 32 jobs at once at most: wait for some to end
                    break
                time.sleep(0.01)
            self.assertEqual(r.status, 202, data)
            job = json.loads(data)["job"]
        c.close()
        self.assertTrue(wait_for(lambda: json.loads(tt.request(
            a, "GET", "/admin/jobs/%d" % job)[2])["state"] == "done", timeout=30))
        got = json.loads(tt.request(a, "GET", "/admin/jobs/%d" % job)[2])
        self.assertEqual((got["local"], got["failed"]), (1, 0), got)

    def test_everyday_commands(self):
        a = self.node(prefix="daily")
        d = tempfile.mkdtemp(prefix="cairn-cli-")
        self.addCleanup(shutil.rmtree, d, True)
        body = os.urandom(300 * KIB)
        path = os.path.join(d, "f")
        with open(path, "wb") as f:
            f.write(body)
        self.s3(a).create_bucket(Bucket="daily")
        rc, out, err = self.cli(a, "put", path, "--key", "daily/dir/f.bin")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.cli(a, "put", path)
        self.assertEqual((rc, out.split()[0]), (0, sha256(body)), err)
        rc, out, err = self.cli(a, "get", "daily/dir/f.bin", "-o", os.path.join(d, "back"))
        self.assertEqual(rc, 0, err)
        with open(os.path.join(d, "back"), "rb") as f:
            self.assertEqual(f.read(), body)
        env = dict(os.environ, CAIRN_URL=a.url, CAIRN_CONFIG="/dev/null")
        p = subprocess.run([CAIRN, "get", sha256(body)], capture_output=True, env=env)
        self.assertEqual((p.returncode, p.stdout), (0, body))
        rc, out, err = self.cli(a, "stat", "--json", "daily/dir/f.bin")
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertEqual((st["size"], st["sha256"]), (len(body), sha256(body)))
        # a key holding a byte XML 1.0 cannot carry, and a '%': listed (the
        # listing asked for URL-encoded keys), shown %-escaped
        self.s3(a).put_object(Bucket="daily", Key="dir/odd\x01%41", Body=b"odd")
        rc, out, err = self.cli(a, "ls", "daily/dir/")
        self.assertEqual(rc, 0, err)
        self.assertIn("daily/dir/f.bin", out)
        self.assertIn(str(len(body)), out)
        self.assertIn("daily/dir/odd%01%2541", out)
        self.s3(a).delete_object(Bucket="daily", Key="dir/odd\x01%41")
        rc, out, err = self.cli(a, "ls")
        self.assertEqual(out.split(), ["daily"])
        rc, out, err = self.cli(a, "stats")
        self.assertEqual(rc, 0, err)
        self.assertIn("daily", out)
        self.assertIn("hit ratio", out)
        rc, out, err = self.cli(a, "rm", "daily/dir/f.bin")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.cli(a, "stat", "daily/dir/f.bin")
        self.assertEqual(rc, 1)
        self.assertIn("not found", err)
        rc, out, err = self.cli(a, "get", "0" * 64)
        self.assertEqual(rc, 1)
        rc, out, err = self.cli(a, "frobnicate")
        self.assertEqual(rc, 2)
        for cmd in ("warmup", "put", "get", "stat", "ls", "rm", "stats", "evict", "drain",
                    "verify", "gc", "backup", "restore"):
            rc, out, err = self.cli(a, cmd, "--help")
            self.assertEqual(rc, 0, cmd)
            self.assertIn("Usage: cairn", out, cmd)
        # evict down to nothing: the tier has it all, so every blob can go
        rc, out, err = self.cli(a, "drain")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.cli(a, "evict", "--to", "0")
        self.assertEqual(rc, 0, err)
        self.assertIn("stored 0 B in 0 blobs", out)

    def test_keys_with_dot_segments_are_keys_not_paths(self):
        """"dir/../target" and "dir/./x" are S3 keys like any other: get,
        stat and rm act on them, not on "target" or "dir/x"."""
        a = self.node(prefix="dots")
        s3 = self.s3(a)
        s3.create_bucket(Bucket="dots")
        bodies = {"dir/../target": b"I am dir/../target", "target": b"I am target",
                  "d/./x": b"I am d/./x"}
        for k, b in bodies.items():
            s3.put_object(Bucket="dots", Key=k, Body=b)
        d = tempfile.mkdtemp(prefix="cairn-cli-")
        self.addCleanup(shutil.rmtree, d, True)
        for k, b in bodies.items():
            out_path = os.path.join(d, "out")
            rc, out, err = self.cli(a, "get", "dots/" + k, "-o", out_path)
            self.assertEqual(rc, 0, err)
            with open(out_path, "rb") as f:
                self.assertEqual(f.read(), b, k)
            rc, out, err = self.cli(a, "stat", "--json", "dots/" + k)
            self.assertEqual((rc, json.loads(out)["size"]), (0, len(b)), k)
        rc, out, err = self.cli(a, "rm", "dots/dir/../target")
        self.assertEqual(rc, 0, err)
        left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="dots")["Contents"])
        self.assertEqual(left, ["d/./x", "target"])

    def test_warmup_into_a_name_taken_says_so(self):
        """Keys "c/a" and "c/a/b" cannot both be files under --into: the
        one that finds its name taken is not kept, and the message says
        why (not a digest that failed: its body was right)."""
        a = self.node(prefix="clash")
        s3 = self.s3(a)
        s3.create_bucket(Bucket="clash")
        s3.put_object(Bucket="clash", Key="c/a/b", Body=b"two")
        d = tempfile.mkdtemp(prefix="cairn-into-")
        self.addCleanup(shutil.rmtree, d, True)
        rc, out, err = self.cli(a, "warmup", "--into", d, "--json", "-", stdin=b"clash/c/a/b\n")
        self.assertEqual(rc, 0, err)
        s3.put_object(Bucket="clash", Key="c/a", Body=b"one")
        rc, out, err = self.cli(a, "warmup", "--into", d, "--json", "-", stdin=b"clash/c/a\n")
        self.assertEqual((rc, json.loads(out)["failed"]), (1, 1), err)
        self.assertIn("is a folder", err)
        # both at once, in a new folder: one of them is kept, the other
        # says why not (its name or its parent's is taken)
        d2 = tempfile.mkdtemp(prefix="cairn-into-")
        self.addCleanup(shutil.rmtree, d2, True)
        rc, out, err = self.cli(a, "warmup", "--into", d2, "--json", "-",
                                stdin=b"clash/c/a/b\nclash/c/a\n")
        self.assertEqual((rc, json.loads(out)["warmed"], json.loads(out)["failed"]), (1, 1, 1), err)
        self.assertNotIn("digest", err)


if __name__ == "__main__":
    unittest.main()
