#!/usr/bin/env python3
# Copied from the project's shared benchmark tools (shared/bench/s3load.py); keep in step with it.
# ruff: noqa: S324, B023  -- md5 is what S3 ETags are; closures run within their loop iteration
"""s3load -- a small, reusable S3 load generator (coffre project).

Design goals
  * the client must not be the bottleneck: aiohttp (keep-alive connection
    pool) + our own minimal SigV4 signer with a cached signing key and
    ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` (the client never hashes the
    payload it sends), optional N worker processes (``--procs``);
  * self-contained: creates its own bucket, verifies that GET returns the bytes
    that were PUT (md5 of a sample of GETs, and the PUT ETag against the md5
    of the body), deletes everything it created;
  * one JSON line on stdout per invocation, with per-phase ops/s, MiB/s and
    latency percentiles, plus client CPU, and server CPU/RSS when the server
    PIDs are given (``--server-pid``, descendants are included).

Phases (``--ops``, run one after the other, separated by barriers):
  put     PUT new objects of ``--size`` for ``--duration`` s or ``--count`` ops
  get     GET objects written by the put phase (or by an untimed prefill)
  head    HEAD the same objects
  list    untimed prefill of ``--list-keys`` tiny objects, then paginated
          ListObjectsV2 (``--page-size``) of that prefix, ``--list-rounds``
          full listings, by one connection (as a client would)
  delete  DELETE every object written so far (timed)
  mix     concurrent weighted mix, ``--mix put=50,get=35,head=10,list=3,delete=2``

Plain HTTP mode (reference servers such as nginx): ``--plain-get /path``
GETs ``endpoint + path`` without signing; ``--expect-md5`` checks the body.

Example:
  s3load.py --endpoint http://127.0.0.1:18080 --access-key K --secret-key S \
      --size 1MiB --concurrency 8 --duration 10 --ops put,get
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import multiprocessing as mp
import os
import random
import re
import sys
import threading
import time
import uuid
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def parse_size(s: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", s.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r}")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    return int(float(m.group(1)) * mult)


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(sorted_vals) - 1)
    return sorted_vals[f] + (sorted_vals[c] - sorted_vals[f]) * (k - f)


def q(s: str) -> str:
    return quote(s, safe="-_.~")


# --------------------------------------------------------------------------
# SigV4 (header auth, unsigned payload).  Checked against botocore by --selftest.
# --------------------------------------------------------------------------
class SigV4:
    def __init__(self, access: str, secret: str, region: str, service: str = "s3"):
        self.access, self.secret, self.region, self.service = access, secret, region, service
        self._key_cache: dict[str, bytes] = {}

    def _key(self, datestamp: str) -> bytes:
        k = self._key_cache.get(datestamp)
        if k is None:
            k = ("AWS4" + self.secret).encode()
            for part in (datestamp, self.region, self.service, "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._key_cache = {datestamp: k}
        return k

    def sign(self, method, host, path, query, headers, payload_hash=UNSIGNED, now=None):
        """query: list of (k, v); path: un-encoded '/bucket/key'. Returns headers."""
        now = now or datetime.datetime.now(datetime.UTC)
        amzdate = now.strftime("%Y%m%dT%H%M%SZ")
        datestamp = amzdate[:8]
        h = {k.lower(): str(v).strip() for k, v in headers.items()}
        h["host"] = host
        h["x-amz-date"] = amzdate
        h["x-amz-content-sha256"] = payload_hash
        names = sorted(h)
        canon_headers = "".join(f"{n}:{' '.join(h[n].split())}\n" for n in names)
        signed = ";".join(names)
        canon_q = "&".join(f"{q(k)}={q(v)}" for k, v in sorted(query))
        creq = "\n".join([method, quote(path, safe="/~"), canon_q, canon_headers, signed, payload_hash])
        scope = f"{datestamp}/{self.region}/{self.service}/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(creq.encode()).hexdigest()])
        sig = hmac.new(self._key(datestamp), sts.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
                              f"SignedHeaders={signed}, Signature={sig}")
        del h["host"]  # aiohttp sets Host itself (same value)
        return h


class S3:
    """Tiny path-style S3 client on aiohttp."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, signer: SigV4 | None):
        u = urlsplit(endpoint)
        self.base = f"{u.scheme}://{u.netloc}"
        self.host = u.netloc
        self.s = session
        self.signer = signer

    def _req(self, method, path, query=(), headers=None, payload_hash=UNSIGNED):
        headers = headers or {}
        if self.signer is not None:
            headers = self.signer.sign(method, self.host, path, list(query), headers, payload_hash)
        qs = "&".join(q(k) if v == "" else f"{q(k)}={q(v)}" for k, v in query)
        url = URL(self.base + quote(path, safe="/~") + ("?" + qs if qs else ""), encoded=True)
        return url, headers

    async def request(self, method, path, query=(), headers=None, data=None, payload_hash=UNSIGNED):
        url, h = self._req(method, path, query, headers, payload_hash)
        async with self.s.request(method, url, headers=h, data=data) as r:
            body = await r.read()
            return r.status, r.headers, body

    async def put(self, path, body):
        url, h = self._req("PUT", path)
        async with self.s.put(url, headers=h, data=body) as r:
            await r.read()
            return r.status, r.headers.get("ETag", "").strip('"')

    async def get(self, path, verify: bool):
        url, h = self._req("GET", path)
        async with self.s.get(url, headers=h) as r:
            n = 0
            md = hashlib.md5() if verify else None
            async for chunk in r.content.iter_any():
                n += len(chunk)
                if md is not None:
                    md.update(chunk)
            return r.status, n, (md.hexdigest() if md else None)

    async def head(self, path):
        url, h = self._req("HEAD", path)
        async with self.s.head(url, headers=h) as r:
            return r.status

    async def delete(self, path):
        url, h = self._req("DELETE", path)
        async with self.s.delete(url, headers=h) as r:
            await r.read()
            return r.status

    async def list_page(self, bucket, prefix, max_keys, token=None):
        query = [("list-type", "2"), ("max-keys", str(max_keys)), ("prefix", prefix)]
        if token:
            query.append(("continuation-token", token))
        st, _, body = await self.request("GET", f"/{bucket}", query)
        if st != 200:
            raise RuntimeError(f"LIST {st} {body[:200]!r}")
        text = body.decode()
        keys = re.findall(r"<Key>(.*?)</Key>", text)
        m = re.search(r"<NextContinuationToken>(.*?)</NextContinuationToken>", text)
        trunc = "<IsTruncated>true</IsTruncated>" in text
        tok = None
        if trunc and m:
            tok = m.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")\
                .replace("&quot;", '"').replace("&apos;", "'")
        return keys, tok

    async def delete_many(self, bucket, keys):
        """DeleteObjects (1000 keys max per call); falls back to single DELETEs."""
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            xml = ("<Delete><Quiet>true</Quiet>" +
                   "".join(f"<Object><Key>{k}</Key></Object>" for k in chunk) + "</Delete>").encode()
            md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()
            st, _, body = await self.request(
                "POST", f"/{bucket}", [("delete", "")], {"Content-MD5": md5,
                                                         "Content-Type": "application/xml"},
                data=xml, payload_hash=hashlib.sha256(xml).hexdigest())
            if st != 200:
                sem = asyncio.Semaphore(16)

                async def one(k):
                    async with sem:
                        await self.delete(f"/{bucket}/{k}")
                await asyncio.gather(*(one(k) for k in chunk))


def make_session(limit: int) -> aiohttp.ClientSession:
    conn = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=3600,
                                enable_cleanup_closed=False)
    return aiohttp.ClientSession(connector=conn, auto_decompress=False,
                                 read_bufsize=1 << 20,
                                 timeout=aiohttp.ClientTimeout(total=600),
                                 skip_auto_headers=("Accept-Encoding", "User-Agent"))


# --------------------------------------------------------------------------
# /proc sampling (server RSS / CPU, client CPU)
# --------------------------------------------------------------------------
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_tree(roots):
    if not roots:
        return []
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError):
            pass
    out, todo = [], list(roots)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_rss(pids):
    cpu = 0.0
    rss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLK
            rss += int(fields[21]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
    return cpu, rss


def cpu_split(pids):
    """coffre addition: (user, kernel) CPU seconds of the processes, to tell fsync and socket
    work (kernel) from Python (user) without a profiler."""
    user = system = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            user += int(fields[11]) / CLK
            system += int(fields[12]) / CLK
        except (OSError, ValueError, IndexError):
            pass
    return user, system


class Sampler(threading.Thread):
    def __init__(self, roots, interval=0.25):
        super().__init__(daemon=True)
        self.roots, self.interval = roots, interval
        self.max_rss = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            _, rss = cpu_rss(proc_tree(self.roots))
            self.max_rss = max(self.max_rss, rss)
            self.stop_ev.wait(self.interval)


# --------------------------------------------------------------------------
# worker process
# --------------------------------------------------------------------------
def body_pool(size, nbodies, seed):
    rnd = random.Random(seed)
    bodies = [rnd.randbytes(size) for _ in range(nbodies)]
    return bodies, [hashlib.md5(b).hexdigest() for b in bodies]


class Stats:
    def __init__(self):
        self.lat = []
        self.bytes = 0
        self.errors = 0
        self.err_samples = []
        self.t0 = None
        self.t1 = None
        self.verified = 0
        self.verify_failed = 0

    def err(self, msg):
        self.errors += 1
        if len(self.err_samples) < 3:
            self.err_samples.append(str(msg)[:300])

    def dump(self):
        return dict(lat=self.lat, bytes=self.bytes, errors=self.errors, err_samples=self.err_samples,
                    t0=self.t0, t1=self.t1, verified=self.verified, verify_failed=self.verify_failed)


async def worker_main(a, wid, barrier, outq, ready_keys):
    conc = a.concurrency // a.procs + (1 if wid < a.concurrency % a.procs else 0)
    conc = max(conc, 1)
    signer = None if a.plain_get else SigV4(a.access_key, a.secret_key, a.region)
    nb = max(2, min(16, (a.body_pool_mib << 20) // max(a.size, 1))) if a.size else 1
    bodies, md5s = body_pool(a.size, nb, (a.seed or 0) * 1000 + wid)
    loop = asyncio.get_running_loop()
    results = {}
    my_keys: list[str] = []        # objects of --size written by this worker
    prefix = f"{a.run_id}/w{wid}"
    counter = [0]

    def new_key():
        n = counter[0]
        counter[0] += 1
        return f"{prefix}/o{n:08d}-b{n % nb}", n % nb

    async def bwait():
        await loop.run_in_executor(None, barrier.wait)

    # count budget per worker (shared among its coroutines)
    def budget():
        if not a.count:
            return None
        share = a.count // a.procs + (1 if wid < a.count % a.procs else 0)
        return [share]

    async with make_session(conc + 2) as sess:
        s3 = S3(sess, a.endpoint, signer)

        async def run_loop(stats, op_fn, nconc, deadline, bud):
            async def one():
                while True:
                    if bud is not None:
                        if bud[0] <= 0:
                            return
                        bud[0] -= 1
                    elif time.monotonic() >= deadline:
                        return
                    t = time.perf_counter()
                    try:
                        await op_fn(stats)
                        stats.lat.append(time.perf_counter() - t)
                    except Exception as e:  # noqa: BLE001
                        stats.err(repr(e))
                        await asyncio.sleep(0.01)
            stats.t0 = time.time()
            await asyncio.gather(*(one() for _ in range(nconc)))
            stats.t1 = time.time()

        async def op_put(stats):
            key, bi = new_key()
            st, etag = await s3.put(f"/{a.bucket}/{key}", bodies[bi])
            if st != 200:
                raise RuntimeError(f"PUT {st}")
            my_keys.append(key)
            stats.bytes += a.size
            if etag and "-" not in etag and len(etag) == 32:
                stats.verified += 1
                if etag != md5s[bi]:
                    stats.verify_failed += 1

        get_n = [0]

        async def op_get(stats, keys=my_keys):
            key = random.choice(keys)
            get_n[0] += 1
            verify = get_n[0] % a.verify_every == 1 or a.verify_every == 1
            st, n, md = await s3.get(f"/{a.bucket}/{key}", verify)
            if st != 200:
                raise RuntimeError(f"GET {st}")
            stats.bytes += n
            if verify:
                stats.verified += 1
                bi = int(key.rsplit("-b", 1)[1])
                if md != md5s[bi] or n != a.size:
                    stats.verify_failed += 1

        async def op_plain_get(stats):
            get_n[0] += 1
            verify = a.expect_md5 and (get_n[0] % a.verify_every == 1 or a.verify_every == 1)
            url = a.endpoint.rstrip("/") + a.plain_get
            async with sess.get(url) as r:
                n = 0
                md = hashlib.md5() if verify else None
                async for chunk in r.content.iter_any():
                    n += len(chunk)
                    if md is not None:
                        md.update(chunk)
                if r.status != 200:
                    raise RuntimeError(f"GET {r.status}")
            stats.bytes += n
            if verify:
                stats.verified += 1
                if md.hexdigest() != a.expect_md5:
                    stats.verify_failed += 1

        async def op_head(stats):
            key = random.choice(my_keys)
            st = await s3.head(f"/{a.bucket}/{key}")
            if st != 200:
                raise RuntimeError(f"HEAD {st}")

        async def op_list_page(stats):
            keys, _ = await s3.list_page(a.bucket, prefix + "/", a.page_size)
            stats.bytes += 0

        async def op_delete_one(stats):
            if not my_keys:
                return
            key = my_keys.pop(random.randrange(len(my_keys)))
            st = await s3.delete(f"/{a.bucket}/{key}")
            if st not in (200, 204):
                raise RuntimeError(f"DELETE {st}")

        for phase in a.phase_list:
            stats = Stats()
            await bwait()  # phase start
            deadline = time.monotonic() + a.duration
            if phase == "prefill":
                target = a.prefill_objects // a.procs + 1
                bud = [target]
                await run_loop(stats, op_put, conc, float("inf"), bud)
            elif phase == "put":
                await run_loop(stats, op_put, conc, deadline, budget())
            elif phase == "get":
                if a.plain_get:
                    await run_loop(stats, op_plain_get, conc, deadline, budget())
                else:
                    await run_loop(stats, op_get, conc, deadline, budget())
            elif phase == "head":
                await run_loop(stats, op_head, conc, deadline, budget())
            elif phase == "listprefill":
                share = a.list_keys // a.procs + (1 if wid < a.list_keys % a.procs else 0)
                it = iter(range(share))
                lkeys = []

                async def op_lput(st_):
                    try:
                        i = next(it)
                    except StopIteration:
                        return
                    k = f"{a.run_id}/list/w{wid}-{i:06d}"
                    st, _ = await s3.put(f"/{a.bucket}/{k}", b"x")
                    if st != 200:
                        raise RuntimeError(f"PUT {st}")
                    lkeys.append(k)
                await run_loop(stats, op_lput, conc, float("inf"), [share])
            elif phase == "list":
                if wid == 0:
                    stats.t0 = time.time()
                    total_keys = 0
                    for _ in range(a.list_rounds):
                        tok = None
                        while True:
                            t = time.perf_counter()
                            try:
                                keys, tok = await s3.list_page(a.bucket, f"{a.run_id}/list/",
                                                               a.page_size, tok)
                            except Exception as e:  # noqa: BLE001
                                stats.err(repr(e))
                                break
                            stats.lat.append(time.perf_counter() - t)
                            total_keys += len(keys)
                            if not tok:
                                break
                    stats.t1 = time.time()
                    stats.bytes = 0
                    stats.verified = 1
                    if total_keys != a.list_keys * a.list_rounds:
                        stats.verify_failed = 1
                        stats.err(f"listed {total_keys} keys, expected {a.list_keys * a.list_rounds}")
            elif phase == "delete":
                bud = [len(my_keys)]
                await run_loop(stats, op_delete_one, conc, float("inf"), bud)
            elif phase == "mix":
                weights = a.mix_weights
                ops = {"put": op_put, "get": op_get, "head": op_head,
                       "list": op_list_page, "delete": op_delete_one}
                names = list(weights)
                w = [weights[n] for n in names]
                per_op = {n: Stats() for n in names}

                async def op_mix(st_):
                    n = random.choices(names, w)[0]
                    if n in ("get", "head", "delete") and not my_keys:
                        n = "put"
                    s = per_op[n]
                    t = time.perf_counter()
                    try:
                        await ops[n](s)
                        s.lat.append(time.perf_counter() - t)
                    except Exception as e:  # noqa: BLE001
                        s.err(repr(e))
                    st_.bytes = sum(x.bytes for x in per_op.values())
                await run_loop(stats, op_mix, conc, deadline, budget())
                for n, s in per_op.items():
                    s.t0, s.t1 = stats.t0, stats.t1
                    results[f"mix.{n}"] = s.dump()
            await bwait()  # phase end
            results[phase] = stats.dump()
        # leave the remaining keys for the parent's sweep
    outq.put((wid, results))


def worker_entry(a, wid, barrier, outq):
    random.seed((a.seed or os.getpid()) + wid)
    asyncio.run(worker_main(a, wid, barrier, outq, None))


# --------------------------------------------------------------------------
# parent: bucket lifecycle, sampling, aggregation
# --------------------------------------------------------------------------
async def bucket_setup(a):
    async with make_session(4) as sess:
        s3 = S3(sess, a.endpoint, SigV4(a.access_key, a.secret_key, a.region))
        st, _, body = await s3.request("PUT", f"/{a.bucket}")
        if st not in (200, 409):
            raise SystemExit(f"create bucket {a.bucket}: HTTP {st} {body[:300]!r}")


async def bucket_cleanup(a):
    async with make_session(16) as sess:
        s3 = S3(sess, a.endpoint, SigV4(a.access_key, a.secret_key, a.region))
        left = 0
        for _ in range(3):
            keys, tok = [], None
            while True:
                k, tok = await s3.list_page(a.bucket, "", 1000, tok)
                keys += k
                if not tok:
                    break
            if not keys:
                break
            left = len(keys)
            await s3.delete_many(a.bucket, keys)
        st, _, _ = await s3.request("DELETE", f"/{a.bucket}")
        return st in (200, 204), left


def aggregate(a, dumps, phase, wall_cpu):
    lat, nbytes, errs, samples, ver, vfail = [], 0, 0, [], 0, 0
    t0s, t1s = [], []
    for d in dumps:
        if d is None:
            continue
        lat += d["lat"]
        nbytes += d["bytes"]
        errs += d["errors"]
        samples += d["err_samples"]
        ver += d["verified"]
        vfail += d["verify_failed"]
        if d["t0"]:
            t0s.append(d["t0"])
        if d["t1"]:
            t1s.append(d["t1"])
    wall = (max(t1s) - min(t0s)) if t0s and t1s else 0.0
    lat.sort()
    out = {
        "ops": len(lat),
        "wall_s": round(wall, 3),
        "ops_s": round(len(lat) / wall, 2) if wall else None,
        "mib_s": round(nbytes / wall / (1 << 20), 2) if wall else None,
        "lat_ms": {k: (round(v * 1000, 3) if v is not None else None) for k, v in
                   (("p50", pct(lat, 50)), ("p90", pct(lat, 90)), ("p99", pct(lat, 99)),
                    ("min", lat[0] if lat else None), ("max", lat[-1] if lat else None),
                    ("mean", (sum(lat) / len(lat)) if lat else None))},
        "errors": errs,
        "verified": ver,
        "verify_failed": vfail,
    }
    if samples:
        out["error_samples"] = samples[:3]
    if wall_cpu:
        out.update(wall_cpu)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT", "http://127.0.0.1:18080"))
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", "test"))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    p.add_argument("--bucket", help="default: a fresh s3load-<random> bucket, deleted at the end")
    p.add_argument("--size", type=parse_size, default=parse_size("1MiB"))
    p.add_argument("--concurrency", "-c", type=int, default=8)
    p.add_argument("--procs", "-P", type=int, default=1, help="client worker processes")
    p.add_argument("--duration", "-d", type=float, default=10.0, help="seconds per timed phase")
    p.add_argument("--count", "-n", type=int, default=0, help="ops per phase instead of a duration")
    p.add_argument("--ops", default="put,get", help="phases: put,get,head,list,delete,mix")
    p.add_argument("--mix", default="put=50,get=35,head=10,list=3,delete=2")
    p.add_argument("--prefill-objects", type=int, default=0,
                   help="objects to write (untimed) before get/head when no put phase precedes")
    p.add_argument("--list-keys", type=int, default=10000)
    p.add_argument("--list-rounds", type=int, default=3)
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--verify-every", type=int, default=10, help="md5-check 1 GET in N")
    p.add_argument("--body-pool-mib", type=int, default=256, help="distinct random bodies per process")
    p.add_argument("--server-pid", type=int, action="append", default=[],
                   help="server PID(s) to sample CPU and RSS (descendants included)")
    p.add_argument("--plain-get", help="unsigned GET of endpoint+PATH (nginx reference); no bucket")
    p.add_argument("--expect-md5", help="with --plain-get: md5 of the static file")
    p.add_argument("--keep", action="store_true", help="do not delete bucket/objects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default="", help="free text copied into the JSON line")
    p.add_argument("--selftest", action="store_true", help="check the SigV4 signer against botocore")
    # coffre additions: list the same prefilled keys in several invocations (bench/run.py)
    p.add_argument("--run-id", help="key prefix id (default random); reuse it with --keep to list again")
    p.add_argument("--list-no-prefill", action="store_true",
                   help="list keys a previous invocation with the same --run-id/--bucket wrote")
    a = p.parse_args(argv)

    if a.selftest:
        return selftest()

    a.run_id = a.run_id or "r" + uuid.uuid4().hex[:8]
    a.bucket = a.bucket or f"s3load-{uuid.uuid4().hex[:10]}"
    a.mix_weights = {k: float(v) for k, v in (kv.split("=") for kv in a.mix.split(","))}
    phases = [x.strip() for x in a.ops.split(",") if x.strip()]
    plist = []
    have_objects = False
    for ph in phases:
        if ph in ("get", "head") and not have_objects and not a.plain_get:
            if not a.prefill_objects:
                a.prefill_objects = max(2 * a.concurrency, min(1000, (1 << 30) // max(a.size, 1)))
            plist.append("prefill")
            have_objects = True
        if ph == "list" and not a.list_no_prefill:
            plist.append("listprefill")
        if ph in ("put", "mix"):
            have_objects = True
        plist.append(ph)
    a.phase_list = plist
    if a.procs > a.concurrency:
        a.procs = a.concurrency

    if not a.plain_get:
        asyncio.run(bucket_setup(a))

    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(a.procs + 1)
    outq = ctx.Queue()
    procs = [ctx.Process(target=worker_entry, args=(a, w, barrier, outq), daemon=True)
             for w in range(a.procs)]
    for pr in procs:
        pr.start()
    client_pids = [pr.pid for pr in procs]
    srv_sampler = Sampler(a.server_pid)
    srv_sampler.start()
    phase_cpu = {}
    for ph in plist:
        barrier.wait(timeout=3600)
        print(f"s3load: phase {ph} start", file=sys.stderr, flush=True)  # coffre: profilers wait on this
        c0 = cpu_rss(proc_tree(client_pids))[0]
        s0 = cpu_rss(proc_tree(a.server_pid))[0]
        u0, k0 = cpu_split(proc_tree(a.server_pid))  # coffre addition
        t0 = time.time()
        srv_sampler.max_rss = 0
        barrier.wait(timeout=3600)
        t1 = time.time()
        print(f"s3load: phase {ph} end", file=sys.stderr, flush=True)
        c1 = cpu_rss(proc_tree(client_pids))[0]
        s1 = cpu_rss(proc_tree(a.server_pid))[0]
        u1, k1 = cpu_split(proc_tree(a.server_pid))  # coffre addition
        d = {"client_cpu_s": round(c1 - c0, 2)}
        if a.server_pid:
            d["server_cpu_s"] = round(s1 - s0, 2)
            d["server_user_s"], d["server_sys_s"] = round(u1 - u0, 2), round(k1 - k0, 2)  # coffre addition
            d["server_rss_max_mib"] = round(srv_sampler.max_rss / (1 << 20), 1)
            d["server_cpu_util"] = round((s1 - s0) / (t1 - t0), 2) if t1 > t0 else None
        d["client_cpu_util"] = round((c1 - c0) / (t1 - t0), 2) if t1 > t0 else None
        phase_cpu[ph] = d
    dumps = {}
    for _ in procs:
        wid, res = outq.get(timeout=600)
        dumps[wid] = res
    for pr in procs:
        pr.join(timeout=30)
    srv_sampler.stop_ev.set()

    out = {"tool": "s3load", "label": a.label, "endpoint": a.endpoint, "size": a.size,
           "concurrency": a.concurrency, "procs": a.procs,
           "duration": a.duration if not a.count else None, "count": a.count or None,
           "bucket": None if a.plain_get else a.bucket, "phases": {}}
    names = list(plist)
    if "mix" in plist:
        names += [f"mix.{n}" for n in a.mix_weights]
    for ph in names:
        out["phases"][ph] = aggregate(a, [dumps[w].get(ph) for w in dumps], ph, phase_cpu.get(ph))
        if ph == "list":
            out["phases"][ph]["page_size"] = a.page_size
            out["phases"][ph]["keys"] = a.list_keys
    ok = True
    if not a.plain_get and not a.keep:
        clean, left = asyncio.run(bucket_cleanup(a))
        out["cleanup"] = {"bucket_deleted": clean, "objects_swept": left}
        ok = clean
    vf = sum(v.get("verify_failed", 0) for v in out["phases"].values())
    out["verify_failed"] = vf
    print(json.dumps(out), flush=True)
    return 0 if (vf == 0 and ok) else 2


def selftest():
    """Compare our SigV4 header signature with botocore's for the same request."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    cases = [("GET", "/bkt/a/b-c.txt", []),
             ("GET", "/bkt", [("list-type", "2"), ("max-keys", "1000"), ("prefix", "r1/list/"),
                              ("continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")]),
             ("PUT", "/bkt/o00000001-b1", []),
             ("POST", "/bkt", [("delete", "")])]
    ok = True
    for method, path, query in cases:
        qs = "&".join(q(k) if v == "" else f"{q(k)}={q(v)}" for k, v in query)
        # https + payload_signing_enabled=False makes botocore use UNSIGNED-PAYLOAD too
        req = AWSRequest(method=method, url="https://127.0.0.1:18080" + path + ("?" + qs if qs else ""))
        req.context["payload_signing_enabled"] = False
        auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret/KEY+x"), "s3", "us-east-1")
        auth.payload = lambda _req: UNSIGNED  # the client sends UNSIGNED-PAYLOAD
        auth.add_auth(req)
        theirs = req.headers["Authorization"]
        now = datetime.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.UTC)
        ours = SigV4("AKIDEXAMPLE", "secret/KEY+x", "us-east-1").sign(
            method, "127.0.0.1:18080", path, query, {}, UNSIGNED, now=now)
        same = theirs == ours["authorization"]
        ok &= same
        print(("OK  " if same else "DIFF"), method, path, query)
        if not same:
            print("  ours  :", ours["authorization"])
            print("  boto  :", theirs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
