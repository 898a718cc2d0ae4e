"""MetadataStore conformance: a tenant's key columns, moving its key to another wrapper (hold
your own key), crypto-erasure (exactly one caller erases; nothing of the key is left), and
reclaiming an erased tenant's space (bounded batches, every blob queued, usage and metering
closed, other tenants untouched, exactly one caller finishes)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from coffre.meta.base import MetadataStore
from coffre.meta.errors import ConditionFailed, Conflict, NotFound
from coffre.meta.records import (
    AccessKeyRecord,
    BucketRecord,
    KeyVersionRecord,
    ObjectPartRecord,
    PartRecord,
    QuotaRecord,
    Reclaimed,
    UploadRecord,
    Usage,
)
from coffre.meta.sqlite import SCHEMA_VERSION, SQLiteMetadataStore
from tests.conformance.test_meta import blob_id, new_bucket, obj, tenant
from tests.conformance.test_meta_metering import Clock

TID = "123456789012"
HYOK = '{"key_id": "acme", "token_ref": "r1", "type": "external", "url": "https://keys.example"}'


async def _tenant(meta: MetadataStore, status: str = "active", delete_after: float | None = None) -> None:
    await meta.create_tenant(replace(tenant(TID, "acme"), status=status, delete_after=delete_after,
                                     wrapped_key=b"\x01" + b"K" * 59))


async def test_update_tenant_never_writes_key_columns(meta: MetadataStore) -> None:
    await _tenant(meta)
    stale = await meta.get_tenant(TID)
    assert stale is not None and stale.key_provider is None and stale.erased_at is None
    await meta.set_tenant_key_wrapping(TID, HYOK, [(1, stale.wrapped_key, b"\x02new-wrap")])
    # A caller holding the record read before the move changes the status: the key stays moved.
    await meta.update_tenant(replace(stale, status="suspended"))
    now = await meta.get_tenant(TID)
    assert now is not None and now.status == "suspended"
    assert now.wrapped_key == b"\x02new-wrap" and now.key_provider == HYOK


async def test_set_tenant_key_wrapping_is_compare_and_set(meta: MetadataStore) -> None:
    await _tenant(meta)
    t = await meta.get_tenant(TID)
    assert t is not None
    await meta.set_setting(f"secret:hyok-token/{TID}/old", "b2xk")
    await meta.set_setting(f"secret:hyok-token/{TID}/r1", "bmV3")
    with pytest.raises(ConditionFailed):  # the old wrapped form is not what is stored
        await meta.set_tenant_key_wrapping(TID, HYOK, [(1, b"something else", b"\x02x")], f"secret:hyok-token/{TID}/r1")
    with pytest.raises(ConditionFailed):  # a version the caller did not move (a rotation ran meanwhile)
        await meta.add_key_version(KeyVersionRecord(owner=TID, version=2, state="active", wrapped_key=b"v2",
                                                    created_at=time.time(), updated_at=time.time()))
        await meta.set_tenant_key_wrapping(TID, HYOK, [(1, t.wrapped_key, b"\x02x")], f"secret:hyok-token/{TID}/r1")
    unchanged = await meta.get_tenant(TID)
    assert unchanged is not None and unchanged.wrapped_key == t.wrapped_key and unchanged.key_provider is None
    assert await meta.get_setting(f"secret:hyok-token/{TID}/old") == "b2xk"  # nothing changed
    await meta.set_tenant_key_wrapping(TID, HYOK, [(1, t.wrapped_key, b"\x02x"), (2, b"v2", b"\x02y")],
                                       f"secret:hyok-token/{TID}/r1")
    moved = await meta.get_tenant(TID)
    assert moved is not None and moved.wrapped_key == b"\x02x" and moved.key_provider == HYOK
    assert {r.version: r.wrapped_key for r in await meta.list_key_versions(TID)} == {1: b"\x02x", 2: b"\x02y"}
    # The token the new provider uses stays; the older one goes.
    assert await meta.get_setting(f"secret:hyok-token/{TID}/r1") == "bmV3"
    assert await meta.get_setting(f"secret:hyok-token/{TID}/old") is None
    with pytest.raises(NotFound):
        await meta.set_tenant_key_wrapping("999999999999", None, [])


async def test_erase_tenant_only_when_due_and_only_once(meta: MetadataStore) -> None:
    now = time.time()
    await _tenant(meta, "deleting", now + 100)
    assert await meta.erase_tenant(TID, now) is False  # not yet due
    t = await meta.get_tenant(TID)
    assert t is not None and t.status == "deleting" and t.wrapped_key
    await meta.update_tenant(replace(t, status="active", delete_after=None))  # resumed
    assert await meta.erase_tenant(TID, now + 200) is False  # active: never erased
    await meta.update_tenant(replace(t, status="deleting", delete_after=now + 100))
    # Several gateways at once: exactly one erases.
    results = await asyncio.gather(*(meta.erase_tenant(TID, now + 200) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    erased = await meta.get_tenant(TID)
    assert erased is not None and erased.status == "erased" and erased.erased_at == now + 200
    assert erased.wrapped_key == b"" and erased.key_provider is None
    with pytest.raises(Conflict):  # nothing brings it back
        await meta.update_tenant(replace(erased, status="active"))
    with pytest.raises(Conflict):
        await meta.set_tenant_key_wrapping(TID, None, [])


async def test_erase_tenant_leaves_no_key_material(meta: MetadataStore) -> None:
    now = time.time()
    await _tenant(meta, "deleting", now - 1)
    await meta.add_key_version(KeyVersionRecord(owner=TID, version=2, state="active", wrapped_key=b"W" * 61,
                                                created_at=now, updated_at=now))
    await meta.set_setting(f"secret:hyok-token/{TID}/r1", "dG9rZW4=")
    await meta.put_access_key(AccessKeyRecord(access_key_id="COERASEDTENANT00001", tenant_id=TID, principal="root",
                                              wrapped_secret=b"S" * 60, status="active", created_at=now))
    other = tenant("210987654321", "other")
    await meta.create_tenant(other)
    assert await meta.erase_tenant(TID, now) is True
    assert all(r.wrapped_key is None and r.state == "destroyed" for r in await meta.list_key_versions(TID))
    assert await meta.get_setting(f"secret:hyok-token/{TID}/r1") is None
    assert await meta.get_access_key("COERASEDTENANT00001") is None
    # Another tenant keeps everything.
    assert await meta.get_tenant(other.id) == other
    assert [r.wrapped_key for r in await meta.list_key_versions(other.id)] == [other.wrapped_key]


# -- reclaiming an erased tenant's space --

OTHER = "210987654321"
T0 = 1793491200  # 2026-11-01T00:00:00Z, metering's clock
H = 3600


def _obj(bucket: str, key: str, version: str, tid: str = TID, **kw: object):  # type: ignore[no-untyped-def]
    return replace(obj(bucket, key, version, **kw), tenant_id=tid)


async def _fill(meta: MetadataStore, tid: str, bucket: str) -> dict[str, object]:
    """A bucket holding every kind of row: versions, a delete marker, a multipart object, an
    upload in progress with parts, configuration documents, a lifecycle lease, a bucket quota.
    Returns what a reclaim of it must account for."""
    await new_bucket(meta, bucket, tid)
    await meta.set_bucket_versioning(bucket, "Enabled")
    blobs: set[str] = set()
    size = 0
    for key, version, n in (("a", "v1", 100), ("a", "v2", 200), ("b", "v1", 300), ("c", "v1", 5)):
        o = _obj(bucket, key, version, tid, size=n)
        await meta.put_object(o)
        blobs.add(str(o.blob_id))
        size += n
    await meta.put_object(_obj(bucket, "b", "v2", tid, delete_marker=True))
    pieces = [ObjectPartRecord(part_number=n, size=1000, etag=f'"p{n}"', blob_id=blob_id(), dek=b"d" * 40)
              for n in (1, 2)]
    await meta.create_upload(UploadRecord(upload_id=f"done-{bucket}", bucket=bucket, key="mp", tenant_id=tid,
                                          owner="c" * 64, initiated=1.0, content_type="text/plain"))
    for p in pieces:
        await meta.put_part(PartRecord(upload_id=f"done-{bucket}", part_number=p.part_number, size=p.size,
                                       etag=p.etag, blob_id=p.blob_id, dek=p.dek, last_modified=time.time()))
    await meta.complete_upload(f"done-{bucket}", replace(_obj(bucket, "mp", "v1", tid, size=2000, parts_count=2),
                                                        blob_id=None, dek=None), pieces)
    blobs |= {p.blob_id for p in pieces}
    size += 2000
    await meta.create_upload(UploadRecord(upload_id=f"open-{bucket}", bucket=bucket, key="big", tenant_id=tid,
                                          owner="c" * 64, initiated=2.0, content_type="text/plain"))
    for n in (1, 2, 3):
        b = blob_id()
        await meta.put_part(PartRecord(upload_id=f"open-{bucket}", part_number=n, size=700, etag=f'"q{n}"',
                                       blob_id=b, dek=b"d" * 40, last_modified=time.time()))
        blobs.add(b)
    await meta.put_bucket_config(bucket, "cors", '{"rules": []}')
    await meta.put_bucket_config(bucket, "lifecycle", '{"rules": []}')
    assert await meta.lifecycle_acquire(bucket, "gw-1", time.time(), 60) is not None
    await meta.set_quota(QuotaRecord(scope="bucket", target=bucket, max_bytes=10**9))
    return {"versions": 6, "uploads": 1, "bytes": size + 3 * 700, "blobs": blobs}


async def _erased(meta: MetadataStore, tid: str = TID, name: str = "acme") -> None:
    """A tenant past its deletion date: the caller fills it, then erases it (erase_tenant)."""
    await meta.create_tenant(replace(tenant(tid, name), status="deleting", delete_after=time.time() - 1))


async def test_reclaim_leaves_unerased_tenants_alone(meta: MetadataStore) -> None:
    await _tenant(meta)  # active
    await _fill(meta, TID, "live")
    before = await meta.bucket_usage("live")
    assert await meta.reclaim_tenant(TID, time.time(), 1000) == Reclaimed()
    t = await meta.get_tenant(TID)
    assert t is not None
    await meta.update_tenant(replace(t, status="deleting", delete_after=time.time() + 100))
    assert await meta.reclaim_tenant(TID, time.time(), 1000) == Reclaimed()  # deleting: the key is still there
    assert await meta.reclaim_tenant("999999999999", time.time(), 1000) == Reclaimed()
    assert await meta.get_bucket("live") is not None and await meta.bucket_usage("live") == before
    assert len((await meta.list_object_versions("live")).entries) == 6
    assert await meta.get_upload("live", "open-live") is not None
    got = await meta.get_tenant(TID)
    assert got is not None and got.reclaimed_at is None


async def test_reclaim_removes_everything_in_bounded_batches(meta: MetadataStore) -> None:
    clock = Clock(T0)
    meta.clock = clock
    await _erased(meta)
    expected = [await _fill(meta, TID, name) for name in ("gone-1", "gone-2")]
    await new_bucket(meta, "gone-3", TID)  # an empty one too
    kept = await _fill(meta, OTHER, "kept")
    kept_usage = await meta.tenant_usage(OTHER)
    clock.t = T0 + H  # the erased tenant held its bytes for one hour
    assert await meta.erase_tenant(TID, time.time())
    held = sum(int(str(e["bytes"])) - 3 * 700 for e in expected)  # parts in progress are not usage
    assert (await meta.tenant_usage(TID)).bytes == held

    steps: list[Reclaimed] = []
    while not (step := await meta.reclaim_tenant(TID, 1234.5, limit=3)).done:
        assert not step.empty
        # At most the limit, but always progress: one version of "mp" (1 + 2 parts) or the upload
        # in progress (1 + 3 parts) may go alone.
        assert step.versions + step.uploads + step.buckets <= 3
        steps.append(step)
        assert len(steps) < 100
    assert len(steps) >= 5  # many transactions, each one bounded
    total_blobs = set().union(*(e["blobs"] for e in expected))  # type: ignore[arg-type]
    assert step.done
    assert (step.versions, step.uploads, step.buckets) == (12, 2, 3)
    assert step.bytes == sum(int(str(e["bytes"])) for e in expected)
    assert step.blobs == len(total_blobs)
    assert sum(s.versions for s in steps) <= step.versions  # the totals add the batches up
    # Every blob is queued for the collector, and no row refers to any of them any more.
    queued = set(await meta.garbage_batch(100000))
    assert total_blobs <= queued
    assert await meta.blob_referenced(sorted(total_blobs)) == set()
    assert not queued & set(kept["blobs"])  # type: ignore[arg-type]
    # Nothing of the tenant is left: buckets (names free), versions, parts, uploads, configs,
    # lifecycle state, bucket quotas, usage.
    for name in ("gone-1", "gone-2", "gone-3"):
        assert await meta.get_bucket(name) is None
        assert await meta.get_quota("bucket", name) is None
        assert await meta.get_upload(name, f"open-{name}") is None
        assert await meta.bucket_usage(name) == Usage()
    assert await meta.list_buckets(TID) == []
    for table in ("objects", "object_parts", "parts"):
        assert await meta.dek_batch(TID, table, None) == []
    assert [b for b, _ in await meta.list_bucket_configs("cors")] == ["kept"]
    assert await meta.tenant_usage(TID) == Usage()
    t = await meta.get_tenant(TID)
    assert t is not None and t.status == "erased" and t.reclaimed_at == 1234.5
    # Metering: the bytes were integrated up to the reclaim (one hour), then nothing more.
    clock.t = T0 + 10 * H
    mine = await meta.metered_usage(T0, T0 + 720 * H, TID)
    assert sum(m.byte_seconds for m in mine) == held * H
    # Done for good: later calls change nothing.
    assert await meta.reclaim_tenant(TID, 9999.0, 3) == Reclaimed()
    t = await meta.get_tenant(TID)
    assert t is not None and t.reclaimed_at == 1234.5
    # The other tenant keeps everything, and a name of the erased tenant's is free for it.
    assert await meta.tenant_usage(OTHER) == kept_usage
    assert len((await meta.list_object_versions("kept")).entries) == 6
    assert len(await meta.list_parts("open-kept")) == 3
    assert await meta.get_bucket_config("kept", "cors") is not None
    assert await meta.get_quota("bucket", "kept") is not None
    assert await meta.blob_referenced(sorted(kept["blobs"])) == kept["blobs"]  # type: ignore[arg-type]
    await meta.create_bucket(BucketRecord(name="gone-1", tenant_id=OTHER, region="us-east-1", created_at=time.time()))
    assert await meta.bucket_usage("gone-1") == Usage()
    assert await meta.get_bucket_config("gone-1", "cors") is None


async def test_reclaim_by_several_callers_finishes_once(meta: MetadataStore) -> None:
    await _erased(meta)
    expected = await _fill(meta, TID, "shared")
    assert await meta.erase_tenant(TID, time.time())

    async def gateway() -> list[Reclaimed]:
        out = []
        while True:
            step = await meta.reclaim_tenant(TID, time.time(), 2)
            if step.empty:
                return out  # finished by someone (or by this caller just before)
            out.append(step)
            if step.done:
                return out

    runs = await asyncio.gather(*(gateway() for _ in range(4)))
    finals = [s for run in runs for s in run if s.done]
    assert len(finals) == 1  # exactly one caller finished it
    final = finals[0]
    assert (final.versions, final.uploads, final.buckets) == (6, 1, 1)
    assert final.bytes == expected["bytes"] and final.blobs == len(expected["blobs"])  # type: ignore[arg-type]
    # The batches of all callers add up to the totals: nothing removed twice, nothing missed.
    assert sum(s.versions for run in runs for s in run if not s.done) <= 6
    assert await meta.get_bucket("shared") is None


# -- the SQLite backend's upgrade to the reclaim columns --

async def test_sqlite_upgrade_from_version_6_keeps_erased_tenants_to_reclaim(tmp_path: Path) -> None:
    """A deployment that erased tenants before the reclaim existed: after the upgrade, their
    space is reclaimed like any other's."""
    path = tmp_path / "meta.sqlite3"
    store = SQLiteMetadataStore(str(path))
    await store.open()
    try:
        await _erased(store)
        expected = await _fill(store, TID, "old")
        assert await store.erase_tenant(TID, time.time())
    finally:
        await store.close()
    # Back to the version-6 schema, as the release before this one left it.
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("ALTER TABLE tenants DROP COLUMN reclaimed_at")
    c.execute("ALTER TABLE tenants DROP COLUMN reclaim_counts")
    c.execute("UPDATE settings SET value='6' WHERE name='schema_version'")
    c.close()
    store = SQLiteMetadataStore(str(path))
    await store.open()
    try:
        assert await store.get_setting("schema_version") == str(SCHEMA_VERSION) == "7"
        t = await store.get_tenant(TID)
        assert t is not None and t.status == "erased" and t.reclaimed_at is None
        while not (step := await store.reclaim_tenant(TID, 42.0)).done:
            pass
        assert (step.versions, step.uploads, step.buckets, step.blobs) == (6, 1, 1, len(expected["blobs"]))  # type: ignore[arg-type]
        t = await store.get_tenant(TID)
        assert t is not None and t.reclaimed_at == 42.0
    finally:
        await store.close()
