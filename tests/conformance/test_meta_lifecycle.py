"""The metadata store's lifecycle methods (issue #6): the scan for configured buckets, the
per-bucket lease and cursor, and the compare-and-set actions that keep the worker from acting
twice on one object or on one that changed since it looked."""

from __future__ import annotations

import time
from dataclasses import replace

from coffre.meta.base import MetadataStore
from coffre.meta.errors import Locked
from coffre.meta.records import LIFECYCLE_CONFIG
from tests.conformance.test_meta import garbage, new_bucket, obj


async def test_list_bucket_configs(meta: MetadataStore) -> None:
    for name in ("b1", "b2", "b3"):
        await new_bucket(meta, name)
    await meta.put_bucket_config("b3", "lifecycle", "{3}")
    await meta.put_bucket_config("b1", "lifecycle", "{1}")
    await meta.put_bucket_config("b2", "cors", "{c}")
    assert await meta.list_bucket_configs("lifecycle") == [("b1", "{1}"), ("b3", "{3}")]
    assert await meta.list_bucket_configs("lifecycle", after="b1") == [("b3", "{3}")]
    assert await meta.list_bucket_configs("lifecycle", limit=1) == [("b1", "{1}")]
    await meta.put_bucket_config("b1", "lifecycle", None)
    assert await meta.list_bucket_configs("lifecycle") == [("b3", "{3}")]


async def test_bucket_read_carries_its_lifecycle_document(meta: MetadataStore) -> None:
    """get_bucket and list_buckets bring the lifecycle document with the bucket (x-amz-expiration
    is answered from it without a read of its own); other documents stay out of it."""
    for name in ("l1", "l2"):
        await new_bucket(meta, name)
    assert (await meta.get_bucket("l1")).lifecycle is None
    await meta.put_bucket_config("l1", LIFECYCLE_CONFIG, '{"rules":[]}')
    await meta.put_bucket_config("l2", "cors", "{c}")
    assert (await meta.get_bucket("l1")).lifecycle == '{"rules":[]}'
    assert (await meta.get_bucket("l2")).lifecycle is None
    assert [(b.name, b.lifecycle) for b in await meta.list_buckets("111111111111")
            if b.name in ("l1", "l2")] == [("l1", '{"rules":[]}'), ("l2", None)]
    await meta.put_bucket_config("l1", LIFECYCLE_CONFIG, None)
    assert (await meta.get_bucket("l1")).lifecycle is None


async def test_lease_and_cursor(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    t = 1000.0
    lease = await meta.lifecycle_acquire(b, "gw1", t, 60)
    assert lease is not None and lease.cursor is None and lease.holder == "gw1"
    # Another holder waits while the lease runs; the holder itself renews it.
    assert await meta.lifecycle_acquire(b, "gw2", t + 30, 60) is None
    assert await meta.lifecycle_acquire(b, "gw1", t + 30, 60) is not None
    assert await meta.lifecycle_save(b, "gw1", "cur-1", t + 31, 60)
    assert not await meta.lifecycle_save(b, "gw2", "stolen", t + 31, 60)
    # Expired: another takes over and finds the cursor; the old holder can no longer save.
    lease = await meta.lifecycle_acquire(b, "gw2", t + 200, 60)
    assert lease is not None and lease.cursor == "cur-1"
    assert not await meta.lifecycle_save(b, "gw1", "late", t + 201, 60)
    # Released with a cursor (a pass cut short): free at once, the cursor kept.
    await meta.lifecycle_release(b, "gw2", "cur-2", None)
    lease = await meta.lifecycle_acquire(b, "gw1", t + 202, 60)
    assert lease is not None and lease.cursor == "cur-2" and lease.last_done is None
    await meta.lifecycle_release(b, "gw1", None, t + 203)
    lease = await meta.lifecycle_acquire(b, "gw1", t + 204, 60)
    assert lease is not None and lease.cursor is None and lease.last_done == t + 203
    # A bucket deleted and made again starts afresh.
    await meta.lifecycle_release(b, "gw1", "cur-3", None)
    await meta.delete_bucket(b)
    await new_bucket(meta, b)
    lease = await meta.lifecycle_acquire(b, "gw3", t + 205, 60)
    assert lease is not None and lease.cursor is None


async def test_expire_latest_unversioned(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    o = obj(b, "k")
    await meta.put_object(o)
    now = time.time()
    # Overwritten since the worker looked (another write time): nothing happens.
    removed, released = await meta.expire_version(b, "k", "null", last_modified=o.last_modified - 1, latest=True,
                                                  now=now)
    assert removed is None and released == []
    # Not noncurrent: nothing either.
    removed, _ = await meta.expire_version(b, "k", "null", last_modified=o.last_modified, latest=False, now=now)
    assert removed is None
    removed, released = await meta.expire_version(b, "k", "null", last_modified=o.last_modified, latest=True,
                                                  now=now)
    assert removed is not None and released == o.blob_ids
    assert set(o.blob_ids) <= await garbage(meta)
    assert await meta.get_object(b, "k") is None
    assert (await meta.bucket_usage(b)).objects == 0
    # A second time (a repeated pass): nothing.
    removed, _ = await meta.expire_version(b, "k", "null", last_modified=o.last_modified, latest=True, now=now)
    assert removed is None


async def test_expire_latest_adds_marker_once(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.set_bucket_versioning(b, "Enabled")
    v1 = obj(b, "k", "v1")
    await meta.put_object(v1)
    marker = obj(b, "k", "m1", delete_marker=True)
    assert await meta.expire_latest(marker, "v1", v1.last_modified - 1) is None  # not what was seen
    assert await meta.expire_latest(marker, "v1", v1.last_modified) == []
    latest = await meta.get_object(b, "k")
    assert latest is not None and latest.version_id == "m1" and latest.is_delete_marker
    # Repeated: the latest is a delete marker now, so no second marker.
    assert await meta.expire_latest(replace(marker, version_id="m2"), "v1", v1.last_modified) is None
    page = await meta.list_object_versions(b)
    assert [e.version_id for e in page.entries] == ["m1", "v1"]


async def test_expire_noncurrent_conditions(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.set_bucket_versioning(b, "Enabled")
    v1, v2, v3 = obj(b, "k", "v1"), obj(b, "k", "v2"), obj(b, "k", "v3")
    for v in (v1, v2, v3):
        await meta.put_object(v)
    v1 = await meta.get_object(b, "k", "v1")
    v2 = await meta.get_object(b, "k", "v2")
    v3 = await meta.get_object(b, "k", "v3")
    assert v1 and v2 and v3
    now = time.time()
    # v1 has one noncurrent version newer than it (v2): keeping 2 refuses.
    removed, _ = await meta.expire_version(b, "k", "v1", last_modified=v1.last_modified, latest=False, now=now,
                                           min_newer_noncurrent=2)
    assert removed is None
    # Its successor (v2) was written later than the worker believed: refused.
    removed, _ = await meta.expire_version(b, "k", "v1", last_modified=v1.last_modified, latest=False, now=now,
                                           successor_before=v2.last_modified - 1)
    assert removed is None
    # The latest version is never removed as noncurrent.
    removed, _ = await meta.expire_version(b, "k", "v3", last_modified=v3.last_modified, latest=False, now=now)
    assert removed is None
    removed, released = await meta.expire_version(b, "k", "v1", last_modified=v1.last_modified, latest=False,
                                                  now=now, min_newer_noncurrent=1,
                                                  successor_before=v2.last_modified)
    assert removed is not None and removed.version_id == "v1" and released == v1.blob_ids
    page = await meta.list_object_versions(b)
    assert [e.version_id for e in page.entries] == ["v3", "v2"]
    assert (await meta.get_object(b, "k")).version_id == "v3"  # type: ignore[union-attr]


async def test_expire_only_delete_marker(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.set_bucket_versioning(b, "Enabled")
    v1 = obj(b, "k", "v1")
    await meta.put_object(v1)
    m = obj(b, "k", "m1", delete_marker=True)
    await meta.put_object(m)
    now = time.time()
    # Not the only version yet.
    removed, _ = await meta.expire_version(b, "k", "m1", last_modified=m.last_modified, latest=True, now=now,
                                           only_version=True)
    assert removed is None
    await meta.delete_version(b, "k", "v1")
    removed, released = await meta.expire_version(b, "k", "m1", last_modified=m.last_modified, latest=True,
                                                  now=now, only_version=True)
    assert removed is not None and removed.is_delete_marker and released == []
    assert (await meta.list_object_versions(b)).entries == []


async def test_expire_version_honours_object_lock(meta: MetadataStore) -> None:
    """A version under retention or a legal hold is never removed by lifecycle (governance
    included): the store refuses in the removing transaction."""
    b = await new_bucket(meta)
    await meta.set_bucket_versioning(b, "Enabled")
    now = time.time()
    held = obj(b, "held", "v1")
    kept = obj(b, "kept", "v1")
    await meta.put_object(held)
    await meta.put_object(kept)
    await meta.put_object(obj(b, "held", "v2"))
    await meta.put_object(obj(b, "kept", "v2"))
    await meta.set_object_legal_hold(b, "held", "v1", True)
    await meta.set_object_retention(b, "kept", "v1", "GOVERNANCE", now + 3600, expect_mode=None, expect_until=None)
    for key, o in (("held", held), ("kept", kept)):
        try:
            await meta.expire_version(b, key, "v1", last_modified=o.last_modified, latest=False, now=now)
        except Locked:
            pass
        else:
            raise AssertionError(f"{key} v1 was removed")
        assert await meta.get_object(b, key, "v1") is not None
    # Once the retention has passed (as seen at ``now``), it goes.
    removed, _ = await meta.expire_version(b, "kept", "v1", last_modified=kept.last_modified, latest=False,
                                           now=now + 7200)
    assert removed is not None
