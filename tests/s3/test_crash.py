"""Crash safety (DESIGN.md §3): SIGKILL the server while uploads are in flight, restart it on
the same data directory, and check that

- every acknowledged write reads back byte-exact (for a key written concurrently: the last
  acknowledged body or one that was still in flight, whole, never torn);
- nothing partial is visible: every listed object reads back whole and is one of the bodies
  sent for its key;
- nothing is left behind: once the collector has run, the blob files on disk are exactly
  the blobs the metadata references, and tmp/ is empty.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

from tests import blobs_on_disk as on_disk
from tests.conftest import make_client
from tests.server import ACCESS_KEY, SECRET_KEY, Server

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="kills and restarts a local server")

MiB = 1 << 20
BUCKET = "crash"
# While writes are in flight the collector keeps its default grace period: a blob that is
# durable but not yet committed must not be collected. Only the restarted server, which
# receives no writes, collects everything at once.
WRITE_ENV = {"COFFRE_MIN_PART_SIZE": str(MiB)}
COLLECT_ENV = {**WRITE_ENV, "COFFRE_GC_GRACE_SECONDS": "0", "COFFRE_GC_INTERVAL_SECONDS": "1",
               "COFFRE_GC_RELEASE_DELAY_SECONDS": "0"}


@dataclass
class Put:
    md5: str
    size: int
    start: float
    end: float | None = None  # set when acknowledged


@dataclass
class Ledger:
    """Every body sent, per key, with when it started and whether it was acknowledged."""

    puts: dict[str, list[Put]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, key: str, md5: str, size: int) -> Put:
        p = Put(md5, size, time.monotonic())
        with self.lock:
            self.puts[key].append(p)
        return p

    def acked(self, key: str) -> list[Put]:
        return [p for p in self.puts[key] if p.end is not None]

    def possible(self, key: str) -> set[str]:
        """Bodies the key may hold now: any sent, except acknowledged ones a later
        acknowledged write (started after their acknowledgement) has replaced."""
        acked = self.acked(key)
        return {p.md5 for p in self.puts[key]
                if p.end is None or not any(q.start > p.end for q in acked)}


def body_of(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.4:
        n = rng.randrange(0, 64 * 1024)
    elif kind < 0.5:
        n = rng.randrange(64 * 1024, MiB)
    else:
        n = rng.randrange(MiB, 4 * MiB)
    return os.urandom(n)


def writer(endpoint: str, ledger: Ledger, wid: int, rnd: int, stop: threading.Event, errors: list) -> None:
    client = make_client(endpoint, (ACCESS_KEY, SECRET_KEY), connect_timeout=2, read_timeout=20)
    rng = random.Random(wid * 1000 + rnd)
    n = 0
    while not stop.is_set():
        r = rng.random()
        if r < 0.35:
            key = f"hot/{rng.randrange(3)}"  # overwritten by every writer, concurrently
        elif r < 0.7:
            key = f"w{wid}/{rng.randrange(3)}"  # overwritten by this writer, in sequence
        else:
            key = f"once/{rnd}/{wid}/{n}"
        n += 1
        body = body_of(rng)
        md5 = hashlib.md5(body).hexdigest()
        put = ledger.begin(key, md5, len(body))
        try:
            resp = client.put_object(Bucket=BUCKET, Key=key, Body=body)
        except Exception:
            return  # the server is gone (or going): this write may or may not have committed
        if resp["ETag"] != f'"{md5}"':
            errors.append(f"{key}: acknowledged with ETag {resp['ETag']}, sent {md5}")
        put.end = time.monotonic()


def run_and_kill(srv: Server, ledger: Ledger, rnd: int, writers: int = 4) -> None:
    stop = threading.Event()
    errors: list[str] = []
    threads = [threading.Thread(target=writer, args=(srv.endpoint, ledger, w, rnd, stop, errors), daemon=True)
               for w in range(writers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20  # a loaded machine may be slow to acknowledge the first writes
    while time.monotonic() < deadline:
        with ledger.lock:
            if sum(1 for ps in ledger.puts.values() for p in ps if p.end is not None) >= 5 * (rnd + 1):
                break
        time.sleep(0.01)
    time.sleep(random.uniform(0.5, 2.0))
    # Kill while requests are in flight: wait for a moment when some are.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with ledger.lock:
            in_flight = sum(1 for ps in ledger.puts.values() for p in ps if p.end is None)
        if in_flight >= 2:
            break
        time.sleep(0.005)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []


def blob_files(data_dir: str) -> set[str]:
    """Every blob on disk: files, and small blobs, which are rows of blobs/small.db."""
    return on_disk.all_blobs(data_dir)


def referenced_blobs(data_dir: str) -> set[str]:
    conn = sqlite3.connect(f"file:{os.path.join(data_dir, 'meta.sqlite3')}?mode=ro", uri=True, timeout=30)
    try:
        out: set[str] = set()
        for table in ("objects", "object_parts", "parts"):
            out |= {r[0] for r in conn.execute(f"SELECT blob_id FROM {table} WHERE blob_id IS NOT NULL")}
        return out
    finally:
        conn.close()


def assert_collected(data_dir: str, timeout: float = 15) -> None:
    """Wait for the collector (grace 0, every second) to leave exactly the referenced blobs."""
    deadline = time.monotonic() + timeout
    while True:
        files, refs = blob_files(data_dir), referenced_blobs(data_dir)
        if files == refs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert refs - files == set(), "metadata points at missing blobs"
    assert files - refs == set(), "orphaned blobs were not collected"
    assert os.listdir(os.path.join(data_dir, "blobs", "tmp")) == []


def verify(client, ledger: Ledger) -> int:
    """Check every key against the ledger; return the number of objects checked."""
    listed: dict[str, dict] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for o in page.get("Contents", []):
            listed[o["Key"]] = o
    problems = []
    for key, puts in ledger.puts.items():
        if ledger.acked(key) and key not in listed:
            problems.append(f"{key}: acknowledged but missing")
    for key, o in listed.items():
        if key not in ledger.puts:
            problems.append(f"{key}: listed but never written")
            continue
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        md5 = hashlib.md5(body).hexdigest()
        if len(body) != o["Size"] or o["ETag"] != f'"{md5}"':
            problems.append(f"{key}: listing says {o['Size']} {o['ETag']}, body is {len(body)} {md5}")
        sent = {p.md5 for p in ledger.puts[key]}
        if md5 not in sent:
            problems.append(f"{key}: body {md5} ({len(body)} bytes) was never sent: torn or foreign")
        elif md5 not in ledger.possible(key):
            problems.append(f"{key}: body {md5} was replaced by a later acknowledged write (lost update)")
    assert problems == []
    return len(listed)


def test_sigkill_during_uploads_loses_no_acknowledged_write(tmp_path) -> None:
    data = str(tmp_path / "data")
    ledger = Ledger()
    srv = Server(data, env=WRITE_ENV).start()
    make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY)).create_bucket(Bucket=BUCKET)
    acked_total = 0
    for rnd in range(3):
        if rnd:
            srv = Server(data, port=srv.port, env=WRITE_ENV).start()
        run_and_kill(srv, ledger, rnd)
        srv = Server(data, port=srv.port, env=COLLECT_ENV).start()
        try:
            client = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY), read_timeout=30)
            count = verify(client, ledger)
            assert count > 0
            assert_collected(data)
        finally:
            srv.stop()
        acked_total = sum(len(ledger.acked(k)) for k in ledger.puts)
    # The test is only worth something if writes were acknowledged and some were cut.
    assert acked_total >= 10
    assert any(p.end is None for ps in ledger.puts.values() for p in ps)


# -- multipart -------------------------------------------------------------------------------

def test_sigkill_during_multipart_upload(tmp_path) -> None:
    """Parts in flight at the crash are listed whole or not at all; the upload completes after."""
    data = str(tmp_path / "data")
    srv = Server(data, env=WRITE_ENV).start()
    client = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY), connect_timeout=2, read_timeout=20)
    client.create_bucket(Bucket=BUCKET)
    key = "big/multipart"
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    sent: dict[int, list[tuple[str, bytes]]] = defaultdict(list)  # part number -> (md5, body)
    acked: dict[int, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def upload(wid: int) -> None:
        c = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY), connect_timeout=2, read_timeout=20)
        rng = random.Random(wid)
        while not stop.is_set():
            number = rng.randrange(1, 7)  # parts are re-uploaded, as clients do on retry
            body = os.urandom(rng.randrange(MiB, 2 * MiB))
            md5 = hashlib.md5(body).hexdigest()
            with lock:
                sent[number].append((md5, body))
            try:
                etag = c.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number,
                                     Body=body)["ETag"]
            except Exception:
                return
            with lock:
                if etag != f'"{md5}"':
                    errors.append(f"part {number}: acknowledged with ETag {etag}, sent {md5}")
                acked[number] = md5

    threads = [threading.Thread(target=upload, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20  # a loaded machine may be slow to acknowledge the first parts
    while len(acked) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0.2, 1.0))
    srv.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert acked, "no part was acknowledged before the crash"

    srv = Server(data, port=srv.port, env=COLLECT_ENV).start()
    try:
        client = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY), read_timeout=30)
        parts = client.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id).get("Parts", [])
        listed = {p["PartNumber"]: p for p in parts}
        for number in acked:
            assert number in listed, f"acknowledged part {number} is missing"
        bodies: dict[int, bytes] = {}
        for number, p in listed.items():
            match = [b for m, b in sent[number] if p["ETag"] == f'"{m}"']
            assert match, f"part {number} lists ETag {p['ETag']}, which was never sent"
            assert p["Size"] == len(match[0])
            bodies[number] = match[0]
        assert_collected(data)
        done = client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": listed[n]["ETag"]} for n in sorted(listed)]})
        assert done["ETag"].endswith(f'-{len(listed)}"')
        whole = b"".join(bodies[n] for n in sorted(bodies))
        got = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.md5(got).digest() == hashlib.md5(whole).digest()
        with pytest.raises(ClientError) as info:
            client.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id)
        assert info.value.response["Error"]["Code"] == "NoSuchUpload"
        # Parts left out of the object or replaced by a retry are collected too.
        assert_collected(data)
    finally:
        srv.stop()
