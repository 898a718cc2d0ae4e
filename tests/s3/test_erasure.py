"""Crypto-erasure of a deleted tenant: after the grace period its key is destroyed, and no object
of it can be decrypted by anyone.

The proof reads the raw SQLite file and the raw blob files, as someone holding a copy of the
whole data directory would (the root key file included): before the erasure the test decrypts
the tenant's objects itself from those files (so the decryption below is known to work); after
it, with every key the deployment holds (every root key version, every other tenant's key, the
root key used directly), none opens; the tenant key's bytes appear nowhere in the data
directory, and nothing in the metadata unwraps to a key of that tenant. Boto3 reads fail
cleanly, other tenants are unaffected, each step is in the audit trail. Also: a deletion
cancelled before its date, a restart before the date (the worker erases after it), and Object
Lock holding the erasure back until the last retain-until date.

Then the reclaim of the erased tenant's space: its versions, uploads and buckets leave the
metadata, its blobs (files and small-blob rows) leave the disk through the garbage collector, its
bucket names are free, its usage is zero and its metering stops, the audit trail counts what went,
other tenants keep everything; and a reclaim cut short by a crash (tiny batches, SIGKILL mid-way)
leaks and loses nothing and finishes after the restart.

Grace periods are seconds here (tenant_delete_grace_seconds).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from coffre.cli.admin import ApiError
from coffre.core.keyring import Keyring, TenantKey
from coffre.crypto.keys import FileKeyProvider, KeyError_, unwrap_with
from coffre.crypto.segments import SegmentDecryptor
from tests import blobs_on_disk as on_disk
from tests.conftest import make_client
from tests.s3.test_audit import audit_records
from tests.s3.test_gc import garbage_rows
from tests.server import Server
from tests.tenants import admin_client, create_tenant

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="reads a local server's data directory")

GRACE = 4.0


def start(tmp_path_factory: pytest.TempPathFactory, name: str, grace: float = GRACE) -> Server:
    return Server(str(tmp_path_factory.mktemp(name) / "data"), env={
        "COFFRE_TENANT_DELETE_GRACE_SECONDS": str(grace), "COFFRE_ERASURE_INTERVAL_SECONDS": "0.3",
        "COFFRE_GC_INTERVAL_SECONDS": "3600"}).start()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    server = start(tmp_path_factory, "erasure")
    yield server
    server.stop()


def new_tenant(srv: Server) -> tuple[str, object]:
    name = "era-" + uuid.uuid4().hex[:12]
    return name, make_client(srv.endpoint, create_tenant(srv, name))


def status(srv: Server, name: str) -> dict[str, object]:
    doc: dict[str, object] = admin_client(srv).call("GET", f"/tenants/{name}")
    return doc


def wait_status(srv: Server, name: str, wanted: str, seconds: float) -> dict[str, object]:
    deadline = time.time() + seconds
    while True:
        doc = status(srv, name)
        if doc["status"] == wanted or time.time() > deadline:
            return doc
        time.sleep(0.2)


def fill(s3, bucket: str) -> dict[str, bytes]:
    """Objects of every shape: small, several segments, multipart, versions, a copy."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    bodies = {"small": secrets.token_bytes(100), "segments": secrets.token_bytes(300_000)}
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=bucket, Key="small", Body=b"second version " + secrets.token_bytes(50))
    part = secrets.token_bytes(5 * 1024 * 1024)
    up = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="multi", UploadId=up, PartNumber=1, Body=part)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "segments"})
    bodies["multi"] = part
    return bodies


# -- reading the data directory as an outsider would --
def db(data_dir: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{os.path.join(data_dir, 'meta.sqlite3')}?mode=ro", uri=True, timeout=30)


def root_keys(data_dir: str) -> list[bytes]:
    """Every root key version on disk (root.key, root.key.vN), as raw 32-byte keys."""
    return [open(p, "rb").read() for p in sorted(glob.glob(os.path.join(data_dir, "root.key*")))
            if not p.endswith((".tmp", ".lock")) and os.path.getsize(p) == 32]


def tenant_id(data_dir: str, name: str) -> str:
    conn = db(data_dir)
    try:
        return str(conn.execute("SELECT id FROM tenants WHERE name=?", (name,)).fetchone()[0])
    finally:
        conn.close()


def tenant_keys(data_dir: str, tid: str) -> dict[int, bytes]:
    """A tenant's key versions, opened from the raw database with the root key file."""
    root = FileKeyProvider(os.path.join(data_dir, "root.key"))
    conn = db(data_dir)
    try:
        rows = conn.execute("SELECT version, wrapped_key FROM key_versions WHERE owner=? AND wrapped_key IS NOT NULL",
                            (tid,)).fetchall()
    finally:
        conn.close()
    return {v: root.unwrap(bytes(w), Keyring.tenant_context(tid, v)) for v, w in rows}


def blobs_of(data_dir: str, tid: str) -> list[tuple[str, bytes, int]]:
    """(blob id, wrapped data key, plaintext size) of every stored piece of every version of the tenant."""
    conn = db(data_dir)
    try:
        rows = conn.execute("SELECT blob_id, dek, size FROM objects WHERE tenant_id=? AND blob_id IS NOT NULL",
                            (tid,)).fetchall()
        rows += conn.execute("SELECT p.blob_id, p.dek, p.size FROM object_parts p JOIN objects o ON o.id=p.object_id "
                             "WHERE o.tenant_id=?", (tid,)).fetchall()
    finally:
        conn.close()
    return [(b, bytes(d), s) for b, d, s in rows]


def decrypt_blob(data_dir: str, blob_id: str, dek: bytes, size: int) -> bytes:
    dec = SegmentDecryptor(dek, blob_id, size)
    first, last = dec.segments_for(0, size)
    off, length = dec.ciphertext_span(first, last)
    raw = on_disk.read_blob(data_dir, blob_id)  # a file, or a small blob's row
    return bytes(dec.decrypt_span(first, last, raw[off:off + length]))


def open_with_any(data_dir: str, blob_id: str, wrapped: bytes, candidates: list[bytes]) -> bytes | None:
    """Try every candidate key-encryption key on one wrapped data key (as a tenant key version, and
    as a raw key); the data key when one opens it."""
    for kek in candidates:
        for tk in (TenantKey("x", 1, {v: kek for v in range(1, 9)}), kek):
            try:
                return Keyring.open_data_key(tk, wrapped, blob_id)
            except (KeyError_, ValueError):
                pass
    return None


def wrapped_copies(data_dir: str, tid: str) -> int:
    """How many byte strings in the metadata files (database, log) open under a root key version
    with one of the tenant's key contexts: every wrapped copy of its key, wherever it lies."""
    raw = open(os.path.join(data_dir, "meta.sqlite3"), "rb").read()
    for extra in glob.glob(os.path.join(data_dir, "meta.sqlite3-*")):
        raw += open(extra, "rb").read()
    contexts = [b"root|" + Keyring.tenant_context(tid, v) for v in range(1, 4)]
    found = 0
    for root in root_keys(data_dir):
        for at in range(0, len(raw) - 61):
            # Shaped like a wrapped 32-byte key: unversioned, 61 bytes from 0x01; versioned, 65 from 0x02.
            n = {1: 61, 2: 65}.get(raw[at])
            if n is None:
                continue
            for ctx in contexts:
                try:
                    unwrap_with(root, raw[at:at + n], ctx)
                    found += 1
                except KeyError_:
                    pass
    return found


def all_files(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_erasure_leaves_nothing_anyone_can_decrypt(srv: Server, tmp_path_factory) -> None:
    name, s3 = new_tenant(srv)
    other_name, other = new_tenant(srv)
    bodies = fill(s3, name)
    other_bodies = fill(other, other_name)
    tid, other_tid = tenant_id(srv.data_dir, name), tenant_id(srv.data_dir, other_name)
    # Before: from the raw files alone (root key file + database + blobs), the test decrypts
    # every piece of the tenant: the method below is sound, so its failure afterwards means something.
    keys_before = tenant_keys(srv.data_dir, tid)
    assert keys_before
    pieces = blobs_of(srv.data_dir, tid)
    assert len(pieces) >= 5  # two versions of "small", "segments", its copy, the part of "multi"
    plains = set()
    for blob_id, wrapped, size in pieces:
        dek = Keyring.open_data_key(TenantKey(tid, max(keys_before), keys_before), wrapped, blob_id)
        plains.add(decrypt_blob(srv.data_dir, blob_id, dek, size))
    assert {bodies["small"], bodies["segments"], bodies["multi"]} <= plains
    conn = sqlite3.connect(os.path.join(srv.data_dir, "meta.sqlite3"), timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    assert wrapped_copies(srv.data_dir, tid) >= 1  # the scan below finds the key while it exists

    doc = admin_client(srv).call("DELETE", f"/tenants/{name}")
    assert doc["status"] == "deleting" and doc["delete_after"]
    with pytest.raises(ClientError) as refused:  # refused at once, data not yet destroyed
        s3.get_object(Bucket=name, Key="small")
    assert refused.value.response["Error"]["Code"] == "AccountProblem"
    erased = wait_status(srv, name, "erased", GRACE + 30)
    assert erased["status"] == "erased" and erased["erased_at"]

    # Clean failures for the tenant's clients (its keys are gone with it); others unaffected.
    for call in (lambda: s3.get_object(Bucket=name, Key="small"), lambda: s3.list_objects_v2(Bucket=name),
                 lambda: s3.put_object(Bucket=name, Key="new", Body=b"x")):
        with pytest.raises(ClientError) as failed:
            call()
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert failed.value.response["Error"]["Code"] in ("InvalidAccessKeyId", "AccountProblem")
    assert other.get_object(Bucket=other_name, Key="multi")["Body"].read() == other_bodies["multi"]
    other.put_object(Bucket=other_name, Key="after", Body=b"still fine")
    with pytest.raises(ApiError) as resumed:  # nothing brings it back
        admin_client(srv).call("POST", f"/tenants/{name}/resume")
    assert resumed.value.code == "ValidationError"

    # The audit trail has every step.
    srv.stop()
    try:
        records = [json.loads(line) for p in sorted(glob.glob(os.path.join(srv.data_dir, "audit", "*.jsonl")))
                   for line in open(p) if line.strip()]
        steps = [(r.get("operation"), r.get("principal")) for r in records if r.get("tenant") == tid
                 and r.get("api") == "keys"]
        assert ("TenantErasureScheduled", "root") in steps and ("TenantKeyDestroyed", "erasure") in steps

        # After: the raw files, with every key the deployment holds.
        assert tenant_keys(srv.data_dir, tid) == {}
        conn = db(srv.data_dir)
        try:
            row = conn.execute("SELECT status, wrapped_key, key_provider FROM tenants WHERE id=?", (tid,)).fetchone()
            assert row[0] == "erased" and bytes(row[1]) == b"" and row[2] is None
            assert conn.execute("SELECT COUNT(*) FROM access_keys WHERE tenant_id=?", (tid,)).fetchone()[0] == 0
        finally:
            conn.close()
        candidates = root_keys(srv.data_dir) + list(tenant_keys(srv.data_dir, other_tid).values())
        assert len(candidates) >= 2
        # The wrapped data keys as read before the erasure (its rows go with the reclaim that
        # follows it; someone may hold an older copy of them): no key the deployment holds opens any.
        for blob_id, wrapped, _size in pieces:
            assert open_with_any(srv.data_dir, blob_id, wrapped, candidates) is None
        # The tenant key itself is nowhere on disk, in clear or wrapped under any root key version.
        files = all_files(srv.data_dir)
        for key in keys_before.values():
            assert not [p for p in files if key in open(p, "rb").read()]
        found = wrapped_copies(srv.data_dir, tid)
        assert found == 0, "a wrapped copy of the erased tenant key is still in the metadata files"
        # The other tenant's objects still decrypt from the same raw files.
        other_keys = tenant_keys(srv.data_dir, other_tid)
        for blob_id, wrapped, size in blobs_of(srv.data_dir, other_tid):
            dek = Keyring.open_data_key(TenantKey(other_tid, max(other_keys), other_keys), wrapped, blob_id)
            decrypt_blob(srv.data_dir, blob_id, dek, size)
    finally:
        srv.start()
    assert other.get_object(Bucket=other_name, Key="after")["Body"].read() == b"still fine"


def test_resume_before_the_date_cancels(srv: Server) -> None:
    name, s3 = new_tenant(srv)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"kept")
    admin = admin_client(srv)
    admin.call("DELETE", f"/tenants/{name}")
    doc = admin.call("POST", f"/tenants/{name}/resume")
    assert doc["status"] == "active" and doc["delete_after"] is None
    time.sleep(GRACE + 1.5)  # past the date the deletion would have had, several worker passes
    assert status(srv, name)["status"] == "active"
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"kept"
    srv.stop()
    try:
        records = [json.loads(line) for p in sorted(glob.glob(os.path.join(srv.data_dir, "audit", "*.jsonl")))
                   for line in open(p) if line.strip()]
    finally:
        srv.start()
    tid = tenant_id(srv.data_dir, name)
    ops = [r["operation"] for r in records if r.get("tenant") == tid and r.get("api") == "keys"]
    assert ops == ["TenantErasureScheduled", "TenantErasureCancelled"]


def test_a_restart_before_the_date_does_not_lose_the_erasure(tmp_path_factory) -> None:
    server = start(tmp_path_factory, "erasure-restart", grace=3.0)
    try:
        name, s3 = new_tenant(server)
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="k", Body=b"doomed")
        admin_client(server).call("DELETE", f"/tenants/{name}")
        server.kill()  # a crash: the schedule is in the metadata, nothing in memory matters
        time.sleep(3.5)  # the date passes while no gateway runs
        server.start()
        assert wait_status(server, name, "erased", 30)["status"] == "erased"
        tid = tenant_id(server.data_dir, name)
        assert tenant_keys(server.data_dir, tid) == {}
    finally:
        server.stop()


def test_object_lock_holds_the_erasure_back_until_the_last_lock_date(tmp_path_factory) -> None:
    server = start(tmp_path_factory, "erasure-lock", grace=1.0)
    try:
        name, s3 = new_tenant(server)
        held_name, held = new_tenant(server)
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        until = datetime.now(UTC) + timedelta(seconds=6)
        s3.put_object(Bucket=name, Key="locked", Body=b"must be kept", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=until)
        held.create_bucket(Bucket=held_name, ObjectLockEnabledForBucket=True)
        held.put_object(Bucket=held_name, Key="held", Body=b"on hold", ObjectLockLegalHoldStatus="ON")
        admin = admin_client(server)
        admin.call("DELETE", f"/tenants/{name}")
        admin.call("DELETE", f"/tenants/{held_name}")
        time.sleep(2.5)  # past the grace: the retention and the legal hold keep the keys
        for n in (name, held_name):
            assert status(server, n)["status"] == "deleting"
            assert tenant_keys(server.data_dir, tenant_id(server.data_dir, n))
        doc = wait_status(server, name, "erased", 30)
        assert doc["status"] == "erased"
        assert datetime.fromisoformat(str(doc["erased_at"]).replace("Z", "+00:00")) >= until.replace(microsecond=0)
        # A legal hold has no end date: that tenant's key stays as long as the hold does...
        assert status(server, held_name)["status"] == "deleting"
        assert tenant_keys(server.data_dir, tenant_id(server.data_dir, held_name))
        # ...and, past the date, the tenant can still be resumed to lift it (only while held back).
        with pytest.raises(ApiError) as erased_resume:
            admin.call("POST", f"/tenants/{name}/resume")
        assert erased_resume.value.code == "ValidationError"
        assert admin.call("POST", f"/tenants/{held_name}/resume")["status"] == "active"
        held.put_object_legal_hold(Bucket=held_name, Key="held", LegalHold={"Status": "OFF"})
        assert held.get_object(Bucket=held_name, Key="held")["Body"].read() == b"on hold"
        admin.call("DELETE", f"/tenants/{held_name}")
        assert wait_status(server, held_name, "erased", 30)["status"] == "erased"
    finally:
        server.stop()
    records = [json.loads(line) for p in sorted(glob.glob(os.path.join(server.data_dir, "audit", "*.jsonl")))
               for line in open(p) if line.strip()]
    held_tid = tenant_id(server.data_dir, held_name)
    postponed = [r for r in records if r.get("tenant") == held_tid and r.get("operation") == "TenantErasurePostponed"]
    assert len(postponed) == 1  # reported once, not at every pass (the second deletion had nothing to wait for)


# -- reclaiming the erased tenant's space --

T0 = 1793491200  # 2026-11-01T00:00:00Z: metering's clock (a file the server reads)
H = 3600


def start_reclaiming(tmp_path_factory: pytest.TempPathFactory, name: str, batch: int,
                     clock: str | None = None) -> Server:
    env = {"COFFRE_TENANT_DELETE_GRACE_SECONDS": "1", "COFFRE_ERASURE_INTERVAL_SECONDS": "0.3",
           "COFFRE_ERASURE_RECLAIM_BATCH": str(batch), "COFFRE_GC_INTERVAL_SECONDS": "1",
           "COFFRE_GC_RELEASE_DELAY_SECONDS": "0", "COFFRE_MIN_PART_SIZE": str(1 << 20)}
    if clock is not None:
        env["COFFRE_METERING_CLOCK_FILE"] = clock
    return Server(str(tmp_path_factory.mktemp(name) / "data"), env=env).start()


def set_clock(path: str, t: int) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(str(t))
    os.replace(path + ".tmp", path)


def stored_blobs(data_dir: str, tid: str) -> set[str]:
    """Every blob id the metadata of a tenant's buckets refers to: versions, parts of multipart
    objects, parts of uploads in progress."""
    conn = db(data_dir)
    try:
        q = ("SELECT o.blob_id FROM objects o JOIN buckets b ON b.name=o.bucket WHERE b.tenant_id=? "
             "AND o.blob_id IS NOT NULL UNION SELECT p.blob_id FROM object_parts p JOIN objects o ON o.id=p.object_id "
             "JOIN buckets b ON b.name=o.bucket WHERE b.tenant_id=? UNION SELECT p.blob_id FROM parts p "
             "JOIN uploads u ON u.upload_id=p.upload_id JOIN buckets b ON b.name=u.bucket WHERE b.tenant_id=?")
        return {r[0] for r in conn.execute(q, (tid, tid, tid))}
    finally:
        conn.close()


def rows_of(data_dir: str, tid: str, buckets: list[str]) -> dict[str, int]:
    """How many rows of each table still belong to the tenant or its buckets (raw SQLite)."""
    conn = db(data_dir)
    marks = ",".join("?" * len(buckets))
    try:
        out = {t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE bucket IN ({marks})", buckets).fetchone()[0]
               for t in ("objects", "uploads", "bucket_configs", "bucket_usage", "lifecycle_state")}
        out["buckets"] = conn.execute(f"SELECT COUNT(*) FROM buckets WHERE name IN ({marks}) OR tenant_id=?",
                                      (*buckets, tid)).fetchone()[0]
        out["objects_by_tenant"] = conn.execute("SELECT COUNT(*) FROM objects WHERE tenant_id=?", (tid,)).fetchone()[0]
        out["uploads_by_tenant"] = conn.execute("SELECT COUNT(*) FROM uploads WHERE tenant_id=?", (tid,)).fetchone()[0]
        out["object_parts"] = conn.execute("SELECT COUNT(*) FROM object_parts WHERE object_id NOT IN "
                                           "(SELECT id FROM objects)").fetchone()[0]  # orphans
        out["parts"] = conn.execute("SELECT COUNT(*) FROM parts WHERE upload_id NOT IN "
                                    "(SELECT upload_id FROM uploads)").fetchone()[0]  # orphans
        out["tenant_usage"] = conn.execute("SELECT COUNT(*) FROM tenant_usage WHERE tenant_id=?", (tid,)).fetchone()[0]
        out["quotas"] = conn.execute(f"SELECT COUNT(*) FROM quotas WHERE scope='bucket' AND target IN ({marks})",
                                     buckets).fetchone()[0]
        return out
    finally:
        conn.close()


def wait_until(cond, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def test_reclaim_frees_the_space_the_names_and_the_meter(tmp_path_factory) -> None:
    clock = str(tmp_path_factory.mktemp("reclaim-clock") / "clock")
    set_clock(clock, T0)
    server = start_reclaiming(tmp_path_factory, "reclaim", batch=4, clock=clock)
    try:
        name, s3 = new_tenant(server)
        other_name, other = new_tenant(server)
        _, third = new_tenant(server)
        # Every kind of row: versions (small ones are rows of small.db, larger ones files), a
        # multipart object, a copy, a delete marker; a second bucket with configuration and an
        # upload in progress; Object Lock retention long expired is no obstacle.
        fill(s3, name)
        s3.delete_object(Bucket=name, Key="segments")
        second = name + "-two"
        s3.create_bucket(Bucket=second)
        s3.put_bucket_cors(Bucket=second, CORSConfiguration={"CORSRules": [
            {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]})
        s3.put_bucket_tagging(Bucket=second, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
        for i in range(6):
            s3.put_object(Bucket=second, Key=f"tiny/{i}", Body=secrets.token_bytes(10 + i))
        up = s3.create_multipart_upload(Bucket=second, Key="pending")["UploadId"]
        s3.upload_part(Bucket=second, Key="pending", UploadId=up, PartNumber=1, Body=secrets.token_bytes(1 << 20))
        other_bodies = fill(other, other_name)
        tid, other_tid = tenant_id(server.data_dir, name), tenant_id(server.data_dir, other_name)
        doomed = stored_blobs(server.data_dir, tid)
        kept = stored_blobs(server.data_dir, other_tid)
        assert len(doomed) >= 12 and all(on_disk.exists(server.data_dir, b) for b in doomed)
        assert {b for b in doomed if on_disk.is_row(server.data_dir, b)}, "no small blob among them"
        assert {b for b in doomed if not on_disk.is_row(server.data_dir, b)}, "no blob file among them"
        conn = db(server.data_dir)
        try:
            versions = conn.execute("SELECT COUNT(*) FROM objects WHERE tenant_id=?", (tid,)).fetchone()[0]
        finally:
            conn.close()
        admin = admin_client(server)
        stored = admin.call("GET", f"/tenants/{name}")["usage"]
        assert stored["buckets"] == 2 and stored["bytes"] > 5 << 20

        set_clock(clock, T0 + H)  # held for one hour (on metering's clock), then deleted
        admin.call("DELETE", f"/tenants/{name}")
        assert wait_status(server, name, "erased", 30)["status"] == "erased"
        assert wait_until(lambda: status(server, name)["reclaimed_at"] is not None, 30)
        doc = admin.call("GET", f"/tenants/{name}")
        assert doc["status"] == "erased" and doc["reclaimed_at"] >= doc["erased_at"]
        assert doc["usage"] == {"bytes": 0, "objects": 0, "buckets": 0} and doc["buckets"] == []

        # The collector deletes every blob: files and small-blob rows alike, and their queue entries.
        assert wait_until(lambda: not any(on_disk.exists(server.data_dir, b) for b in doomed), 30)
        assert wait_until(lambda: not garbage_rows(server.data_dir) & doomed, 10)
        left = rows_of(server.data_dir, tid, [name, second])
        assert left == dict.fromkeys(left, 0), left
        assert stored_blobs(server.data_dir, tid) == set()

        # Metering stopped at the reclaim: one hour of bytes, however late the month is read.
        set_clock(clock, T0 + 10 * H)
        metering = admin.call("GET", f"/tenants/{name}/usage")["metering"]
        assert metering["byte_seconds"] == stored["bytes"] * H
        listed = {t["tenant"]: t for t in admin.call("GET", "/usage")["tenants"]}
        assert listed[name]["usage"]["bytes"] == 0 and listed[name]["metering"]["byte_seconds"] == stored["bytes"] * H

        # The other tenant: every object still reads, every blob is still there.
        assert all(on_disk.exists(server.data_dir, b) for b in kept)
        for key, body in other_bodies.items():  # "small" as its first version (a second one is the latest)
            assert other.get_object(Bucket=other_name, Key=key, **({"VersionId": version_of(
                other, other_name, key, oldest=True)} if key == "small" else {}))["Body"].read() == body
        assert len(other.list_object_versions(Bucket=other_name)["Versions"]) == 5
        # The erased tenant's bucket names are free: another tenant takes them, starting empty.
        for bucket in (name, second):
            third.create_bucket(Bucket=bucket)
            assert third.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
            third.put_object(Bucket=bucket, Key="mine", Body=b"new owner")
            assert third.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"new owner"
        with pytest.raises(ClientError) as no_cors:
            third.get_bucket_cors(Bucket=second)
        assert no_cors.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    finally:
        server.stop()
    records = [r for r in audit_records(server.data_dir) if r.get("tenant") == tid and r.get("api") == "keys"]
    ops = [r["operation"] for r in records]
    assert ops.index("TenantKeyDestroyed") < ops.index("TenantDataReclaimed")
    (done,) = [r for r in records if r["operation"] == "TenantDataReclaimed"]
    assert done["principal"] == "erasure" and done["status"] == 200
    part_bytes = 1 << 20  # the upload in progress
    assert done["reclaimed"] == {"versions": versions, "uploads": 1, "buckets": 2,
                                 "bytes": stored["bytes"] + part_bytes, "blobs": len(doomed)}


def test_reclaim_cut_short_by_a_crash_loses_and_leaks_nothing(tmp_path_factory) -> None:
    server = start_reclaiming(tmp_path_factory, "reclaim-crash", batch=1)
    try:
        name, s3 = new_tenant(server)
        other_name, other = new_tenant(server)
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        for i in range(150):
            s3.put_object(Bucket=name, Key=f"k{i % 50}", Body=secrets.token_bytes(64 + i))
        other.create_bucket(Bucket=other_name)
        other.put_object(Bucket=other_name, Key="kept", Body=b"kept")
        tid = tenant_id(server.data_dir, name)
        doomed = stored_blobs(server.data_dir, tid)
        assert len(doomed) == 150

        def versions_left() -> int:
            conn = db(server.data_dir)
            try:
                return int(conn.execute("SELECT COUNT(*) FROM objects WHERE tenant_id=?", (tid,)).fetchone()[0])
            finally:
                conn.close()

        admin_client(server).call("DELETE", f"/tenants/{name}")
        # One version per transaction: kill the server as soon as the reclaim is under way.
        deadline = time.monotonic() + 30
        while versions_left() == 150 and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill()
        left = versions_left()
        assert 0 < left < 150, "the reclaim was not cut short; nothing to resume"
        assert status_raw(server.data_dir, tid) == ("erased", None)
        # Nothing leaked: each blob is still referenced, queued for the collector, or deleted.
        referenced, queued = stored_blobs(server.data_dir, tid), garbage_rows(server.data_dir)
        assert len(referenced) == left
        for b in doomed - referenced:
            assert b in queued or not on_disk.exists(server.data_dir, b)

        server.start()  # the next pass goes on from what is left
        assert wait_until(lambda: status_raw(server.data_dir, tid)[1] is not None, 60)
        assert versions_left() == 0
        assert wait_until(lambda: not any(on_disk.exists(server.data_dir, b) for b in doomed), 30)
        assert other.get_object(Bucket=other_name, Key="kept")["Body"].read() == b"kept"
        s3_again = make_client(server.endpoint, create_tenant(server, name + "-new"))
        s3_again.create_bucket(Bucket=name)  # the name is free
    finally:
        server.stop()
    # One record, counting the work of both runs.
    (done,) = [r for r in audit_records(server.data_dir)
               if r.get("tenant") == tid and r.get("operation") == "TenantDataReclaimed"]
    assert done["reclaimed"]["versions"] == 150 and done["reclaimed"]["buckets"] == 1
    assert done["reclaimed"]["blobs"] == 150


def version_of(s3, bucket: str, key: str, oldest: bool) -> str:  # type: ignore[no-untyped-def]
    versions = [v for v in s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"] if v["Key"] == key]
    return str(versions[-1 if oldest else 0]["VersionId"])  # newest first


def status_raw(data_dir: str, tid: str) -> tuple[str, float | None]:
    conn = db(data_dir)
    try:
        row = conn.execute("SELECT status, reclaimed_at FROM tenants WHERE id=?", (tid,)).fetchone()
        return str(row[0]), row[1]
    finally:
        conn.close()
