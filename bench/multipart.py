"""A large object through multipart upload, then one streamed download (bench/run.py --multipart).

The client keeps two 64 MiB part buffers (A and B, alternating, so a part served out of order is
caught) and checks the download with crc32 against the expected stream; it reports throughput,
server CPU per GiB each way and the server's peak RSS, which must stay flat however big the object.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import zlib

import aiohttp
from s3load import S3, Sampler, SigV4, cpu_rss, make_session, proc_tree

MiB, GiB = 1 << 20, 1 << 30
PART = 64 * MiB


async def _run(endpoint: str, access: str, secret: str, size: int, conc: int, pids: list[int]) -> dict:
    bufs = [os.urandom(PART), os.urandom(PART)]
    nparts = -(-size // PART)
    bucket, key = f"mpbench-{os.urandom(4).hex()}", "big/object"
    async with make_session(conc + 2) as sess:
        s3 = S3(sess, endpoint, SigV4(access, secret, "us-east-1"))
        st, _, body = await s3.request("PUT", f"/{bucket}")
        assert st == 200, body
        st, _, body = await s3.request("POST", f"/{bucket}/{key}", [("uploads", "")])
        m = re.search(rb"<UploadId>(.*?)</UploadId>", body)
        assert st == 200 and m, body
        upload_id = m.group(1).decode()
        etags: dict[int, str] = {}
        todo = list(range(1, nparts + 1))

        async def worker() -> None:
            while todo:
                n = todo.pop(0)
                data = bufs[n % 2] if n < nparts else bufs[n % 2][: size - (nparts - 1) * PART]
                url, h = s3._req("PUT", f"/{bucket}/{key}", [("partNumber", str(n)), ("uploadId", upload_id)])
                async with sess.put(url, headers=h, data=data) as r:
                    await r.read()
                    assert r.status == 200, r.status
                    etags[n] = r.headers["ETag"]

        t0 = time.time()
        await asyncio.gather(*(worker() for _ in range(conc)))
        xml = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etags[n]}</ETag></Part>" for n in sorted(etags)
        ) + "</CompleteMultipartUpload>"
        st, _, body = await s3.request("POST", f"/{bucket}/{key}", [("uploadId", upload_id)],
                                       data=xml.encode())
        assert st == 200 and b"Error" not in body, body
        t_up = time.time() - t0
        cpu_mid = cpu_rss(proc_tree(pids))[0]
        expect = 0
        for n in range(1, nparts + 1):
            expect = zlib.crc32(bufs[n % 2] if n < nparts else bufs[n % 2][: size - (nparts - 1) * PART],
                                expect)
        url, h = s3._req("GET", f"/{bucket}/{key}")
        cpu_mid2 = cpu_rss(proc_tree(pids))[0]  # the server idled while we computed the crc
        t1 = time.time()
        crc, got = 0, 0
        async with sess.get(url, headers=h, timeout=aiohttp.ClientTimeout(total=3600)) as r:
            assert r.status == 200, r.status
            async for chunk in r.content.iter_chunked(4 * MiB):
                crc = zlib.crc32(chunk, crc)
                got += len(chunk)
        t_down = time.time() - t1
        cpu_end = cpu_rss(proc_tree(pids))[0]
        await s3.request("DELETE", f"/{bucket}/{key}")
        await s3.request("DELETE", f"/{bucket}")
    return {"up_s": t_up, "down_s": t_down, "ok": crc == expect and got == size,
            "cpu_up": cpu_mid, "cpu_down": cpu_end - cpu_mid2}


def run_multipart(endpoint: str, access: str, secret: str, pids: list[int], server: str,
                  size: int = 5 * GiB, conc: int = 4) -> dict:
    sampler = Sampler(pids)
    sampler.start()
    c0 = cpu_rss(proc_tree(pids))[0]
    try:
        res = asyncio.run(_run(endpoint, access, secret, size, conc, pids))
    except (AssertionError, aiohttp.ClientError) as e:
        sampler.stop_ev.set()
        return {"kind": "multipart", "server": server, "size": size, "ok": False, "error": repr(e)[:500]}
    sampler.stop_ev.set()
    gib = size / GiB
    return {"kind": "multipart", "server": server, "size": size, "part_size": PART, "concurrency": conc,
            "ok": res["ok"], "up_mib_s": round(size / MiB / res["up_s"], 1),
            "down_mib_s": round(size / MiB / res["down_s"], 1),
            "up_cpu_s_gib": round((res["cpu_up"] - c0) / gib, 2),
            "down_cpu_s_gib": round(res["cpu_down"] / gib, 2),
            "rss_max_mib": round(sampler.max_rss / MiB, 1), "loadavg": os.getloadavg()[0]}
