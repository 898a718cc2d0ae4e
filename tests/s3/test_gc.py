"""Garbage collection of blobs (DESIGN.md §3, step 5).

Blobs released by a commit (overwrite, delete, multipart complete or abort) are queued by
that commit and deleted once gc_release_delay_seconds have passed (right after the commit
when it is 0, as most tests here run), so reads streaming the old data can finish; if the
process dies in between, the collector deletes them at its next pass. Blobs no metadata knows (a crash after the blob
became durable, before its metadata committed) are deleted once older than the grace
period, never before: a young one may be about to be committed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time

import pytest
from botocore.exceptions import ClientError

from tests import blobs_on_disk as on_disk
from tests.conftest import make_client
from tests.server import ACCESS_KEY, SECRET_KEY, Server

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="inspects a local server's data directory")

MiB = 1 << 20
BUCKET = "gc-test"
ENV = {"COFFRE_GC_INTERVAL_SECONDS": "1", "COFFRE_MIN_PART_SIZE": str(MiB),  # default grace: one hour
       "COFFRE_GC_RELEASE_DELAY_SECONDS": "0"}


def db(data_dir: str) -> sqlite3.Connection:
    conn = sqlite3.connect(os.path.join(data_dir, "meta.sqlite3"), timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def blob_of(data_dir: str, key: str) -> str:
    conn = db(data_dir)
    try:
        row = conn.execute("SELECT blob_id FROM objects WHERE bucket=? AND key=? AND is_latest=1",
                           (BUCKET, key.encode())).fetchone()
    finally:
        conn.close()
    assert row is not None
    return row[0]


def path_of(data_dir: str, blob_id: str) -> str:
    return os.path.join(data_dir, "blobs", blob_id[:2], blob_id[2:4], blob_id)


def all_blobs(data_dir: str) -> set[str]:
    return on_disk.all_blobs(data_dir)  # files and small blobs' rows


def garbage_rows(data_dir: str) -> set[str]:
    conn = db(data_dir)
    try:
        return {r[0] for r in conn.execute("SELECT blob_id FROM garbage")}
    finally:
        conn.close()


def wait_until(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.fixture
def srv(tmp_path):
    server = Server(str(tmp_path / "data"), env=ENV).start()
    make_client(server.endpoint, (ACCESS_KEY, SECRET_KEY)).create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def test_released_blobs_are_deleted_with_the_commit(srv: Server) -> None:
    s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
    data = srv.data_dir
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"first" * 1000)
    first = blob_of(data, "k")
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"second" * 1000)
    second = blob_of(data, "k")
    assert first != second
    # Deleted by the time the overwrite is acknowledged, not at the next collector pass.
    assert not on_disk.exists(data, first)
    assert on_disk.exists(data, second)
    s3.delete_object(Bucket=BUCKET, Key="k")
    assert not on_disk.exists(data, second)
    assert all_blobs(data) == set()
    assert garbage_rows(data) == set()  # the queue entries went with them


def test_multipart_parts_left_out_or_aborted_are_deleted(srv: Server) -> None:
    s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
    data = srv.data_dir
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    etags = {}
    for n in (1, 2, 3):
        etags[n] = s3.upload_part(Bucket=BUCKET, Key="mp", UploadId=up, PartNumber=n, Body=os.urandom(MiB))["ETag"]
    # A part uploaded again replaces the first one's blob.
    etags[2] = s3.upload_part(Bucket=BUCKET, Key="mp", UploadId=up, PartNumber=2, Body=os.urandom(MiB))["ETag"]
    assert len(all_blobs(data)) == 3
    s3.complete_multipart_upload(Bucket=BUCKET, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2)]})
    assert len(all_blobs(data)) == 2  # part 3 was left out
    assert len(s3.get_object(Bucket=BUCKET, Key="mp")["Body"].read()) == 2 * MiB

    up = s3.create_multipart_upload(Bucket=BUCKET, Key="aborted")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="aborted", UploadId=up, PartNumber=1, Body=os.urandom(MiB))
    assert len(all_blobs(data)) == 3
    s3.abort_multipart_upload(Bucket=BUCKET, Key="aborted", UploadId=up)
    assert len(all_blobs(data)) == 2
    s3.delete_object(Bucket=BUCKET, Key="mp")
    assert all_blobs(data) == set()
    assert garbage_rows(data) == set()


def test_collector_after_a_crash(srv: Server) -> None:
    s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
    data = srv.data_dir
    body = os.urandom(300_000)
    s3.put_object(Bucket=BUCKET, Key="kept", Body=body)
    kept = blob_of(data, "kept")
    srv.kill()

    def fake_blob(blob_id: str, age: float) -> str:
        path = path_of(data, blob_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(path_of(data, kept), path)
        t = time.time() - age
        os.utime(path, (t, t))
        return path

    # A crash between a commit and the deletion of what it released: the blob is queued.
    released = fake_blob("a" * 32, age=0)
    # A crash after a blob became durable, before its metadata committed: an orphan.
    old_orphan = fake_blob("b" * 32, age=7200)
    young_orphan = fake_blob("c" * 32, age=60)  # within the grace period: maybe about to commit
    # A blob still referenced must survive even if queued (the collector checks) and however old.
    os.utime(path_of(data, kept), (time.time() - 7200, time.time() - 7200))
    # A write cut short in tmp/.
    tmp_leftover = os.path.join(data, "blobs", "tmp", "d" * 32)
    with open(tmp_leftover, "wb") as fh:
        fh.write(b"partial")
    conn = db(data)
    try:
        now = time.time()
        conn.executemany("INSERT INTO garbage VALUES(?, ?)", [("a" * 32, now), (kept, now)])
    finally:
        conn.close()

    srv.start()
    assert wait_until(lambda: not os.path.exists(released) and not os.path.exists(old_orphan)
                      and garbage_rows(data) == set())
    assert not os.path.exists(tmp_leftover)
    # Several passes later, the young orphan and the referenced blob are still there.
    time.sleep(2.5)
    assert os.path.exists(young_orphan)
    assert all_blobs(data) == {kept, "c" * 32}
    assert s3.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == body
    # Once past the grace period, the orphan goes too.
    t = time.time() - 7200
    os.utime(young_orphan, (t, t))
    assert wait_until(lambda: not os.path.exists(young_orphan))
    assert all_blobs(data) == {kept}
    s3.delete_object(Bucket=BUCKET, Key="kept")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="kept")
    assert all_blobs(data) == set()


def test_released_data_outlives_reads_already_streaming_it(tmp_path) -> None:
    env = {**ENV, "COFFRE_GC_RELEASE_DELAY_SECONDS": "3"}
    server = Server(str(tmp_path / "data"), env=env).start()
    try:
        s3 = make_client(server.endpoint, (ACCESS_KEY, SECRET_KEY))
        s3.create_bucket(Bucket=BUCKET)
        parts = [os.urandom(2 * MiB) for _ in range(8)]
        up = s3.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
        etags = [s3.upload_part(Bucket=BUCKET, Key="mp", UploadId=up, PartNumber=n + 1, Body=p)["ETag"]
                 for n, p in enumerate(parts)]
        s3.complete_multipart_upload(Bucket=BUCKET, Key="mp", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
        old = all_blobs(server.data_dir)
        assert len(old) == 8
        body = s3.get_object(Bucket=BUCKET, Key="mp")["Body"]
        head = body.read(64 * 1024)  # the server is now streaming, later parts not yet opened
        s3.put_object(Bucket=BUCKET, Key="mp", Body=b"new")
        time.sleep(1.5)  # the collector has run, the delay has not passed
        assert old <= all_blobs(server.data_dir)
        assert head + body.read() == b"".join(parts)
        assert wait_until(lambda: not (old & all_blobs(server.data_dir)))
        assert s3.get_object(Bucket=BUCKET, Key="mp")["Body"].read() == b"new"
    finally:
        server.stop()
