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
        pieces_after = blobs_of(srv.data_dir, tid)
        assert pieces_after  # the ciphertext is still there...
        for blob_id, wrapped, _size in pieces_after:  # ...and no key opens any of it
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
