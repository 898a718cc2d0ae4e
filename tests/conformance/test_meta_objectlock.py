"""MetadataStore conformance for Object Lock: retention and legal hold columns, the refusal to
remove or replace a locked version inside the store's own transaction, compare-and-set of a
retention, lock buckets' versioning, and has_locked_versions (what a crypto-erasure waits for)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest

from coffre.meta.base import MetadataStore
from coffre.meta.errors import ConditionFailed, Locked, NotFound
from coffre.meta.records import LOCK_COMPLIANCE, LOCK_GOVERNANCE
from tests.conformance.test_meta import new_bucket, obj

TENANT = "111111111111"


async def test_lock_columns_round_trip(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    until = time.time() + 3600
    await meta.put_object(obj(b, "k", "v1", lock_mode=LOCK_COMPLIANCE, lock_until=until, legal_hold=True))
    got = await meta.get_object(b, "k", "v1")
    assert got is not None
    assert (got.lock_mode, got.lock_until, got.legal_hold) == (LOCK_COMPLIANCE, until, True)
    await meta.put_object(obj(b, "plain", "v1"))
    got = await meta.get_object(b, "plain")
    assert got is not None and (got.lock_mode, got.lock_until, got.legal_hold) == (None, None, None)
    listed = (await meta.list_object_versions(b)).entries
    assert [(o.key, o.lock_mode) for o in listed] == [("k", LOCK_COMPLIANCE), ("plain", None)]


async def test_locked_versions_are_never_removed(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    future = time.time() + 3600
    await meta.put_object(obj(b, "c", "v1", lock_mode=LOCK_COMPLIANCE, lock_until=future))
    await meta.put_object(obj(b, "g", "v1", lock_mode=LOCK_GOVERNANCE, lock_until=future))
    await meta.put_object(obj(b, "h", "v1", legal_hold=True))
    await meta.put_object(obj(b, "n", "null", lock_mode=LOCK_COMPLIANCE, lock_until=future))
    await meta.put_object(obj(b, "old", "v1", lock_mode=LOCK_COMPLIANCE, lock_until=time.time() - 1))
    for key, version in (("c", "v1"), ("g", "v1"), ("h", "v1"), ("n", "null")):
        with pytest.raises(Locked):
            await meta.delete_version(b, key, version)
        with pytest.raises(Locked):
            await meta.delete_object(b, key, version)
        assert await meta.get_object(b, key, version) is not None
    # The bypass opens GOVERNANCE only.
    for key in ("c", "h"):
        with pytest.raises(Locked):
            await meta.delete_version(b, key, "v1", bypass_governance=True)
    removed, _ = await meta.delete_version(b, "g", "v1", bypass_governance=True)
    assert removed is not None and removed.key == "g"
    # An expired retention protects nothing.
    removed, _ = await meta.delete_version(b, "old", "v1")
    assert removed is not None
    # A locked "null" version is not replaced by a write of the same id.
    with pytest.raises(Locked):
        await meta.put_object(obj(b, "n", "null"))
    got = await meta.get_object(b, "n", "null")
    assert got is not None and got.lock_mode == LOCK_COMPLIANCE
    # A new version on top (another id) is fine: the locked one stays.
    await meta.put_object(obj(b, "c", "v2"))
    assert await meta.get_object(b, "c", "v1") is not None


async def test_set_retention_and_legal_hold(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "k", "v1"))
    until = time.time() + 60
    await meta.set_object_retention(b, "k", "v1", LOCK_GOVERNANCE, until, expect_mode=None, expect_until=None)
    got = await meta.get_object(b, "k", "v1")
    assert got is not None and (got.lock_mode, got.lock_until) == (LOCK_GOVERNANCE, until)
    # Compare-and-set: a stale expectation changes nothing.
    with pytest.raises(ConditionFailed):
        await meta.set_object_retention(b, "k", "v1", None, None, expect_mode=None, expect_until=None)
    await meta.set_object_retention(b, "k", "v1", None, None, expect_mode=LOCK_GOVERNANCE, expect_until=until)
    got = await meta.get_object(b, "k", "v1")
    assert got is not None and (got.lock_mode, got.lock_until) == (None, None)
    await meta.set_object_legal_hold(b, "k", "v1", True)
    got = await meta.get_object(b, "k", "v1")
    assert got is not None and got.legal_hold is True
    await meta.set_object_legal_hold(b, "k", "v1", False)
    got = await meta.get_object(b, "k", "v1")
    assert got is not None and got.legal_hold is False
    with pytest.raises(NotFound):
        await meta.set_object_legal_hold(b, "k", "nope", True)
    await meta.put_object(obj(b, "k", "dm", delete_marker=True))
    with pytest.raises(NotFound):
        await meta.set_object_retention(b, "k", "dm", LOCK_GOVERNANCE, until, expect_mode=None, expect_until=None)


async def test_lock_bucket_versioning(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    with pytest.raises(ConditionFailed):
        await meta.enable_bucket_object_lock(b)  # not versioned
    await meta.set_bucket_versioning(b, "Enabled")
    await meta.enable_bucket_object_lock(b)
    got = await meta.get_bucket(b)
    assert got is not None and got.object_lock and got.versioning == "Enabled"
    with pytest.raises(Locked):
        await meta.set_bucket_versioning(b, "Suspended")
    got = await meta.get_bucket(b)
    assert got is not None and got.versioning == "Enabled"
    with pytest.raises(NotFound):
        await meta.enable_bucket_object_lock("no-such-bucket")


async def test_has_locked_versions(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    other = await new_bucket(meta, "other", tid="222222222222")
    now = time.time()
    assert await meta.has_locked_versions(TENANT, now) is None
    await meta.put_object(obj(b, "expired", "v1", lock_mode=LOCK_COMPLIANCE, lock_until=now - 10))
    await meta.put_object(obj(b, "plain", "v1"))
    assert await meta.has_locked_versions(TENANT, now) is None
    await meta.put_object(obj(b, "a", "v1", lock_mode=LOCK_GOVERNANCE, lock_until=now + 100))
    await meta.put_object(obj(b, "b", "v1", lock_mode=LOCK_COMPLIANCE, lock_until=now + 500))
    assert await meta.has_locked_versions(TENANT, now) == now + 500
    assert await meta.has_locked_versions(TENANT, now + 1000) is None
    # Another tenant's locks are its own.
    assert await meta.has_locked_versions("222222222222", now) is None
    await meta.put_object(replace(obj(other, "x", "v1", lock_mode=LOCK_COMPLIANCE, lock_until=now + 50),
                                  tenant_id="222222222222"))
    assert await meta.has_locked_versions("222222222222", now) == now + 50
    assert await meta.has_locked_versions(TENANT, now) == now + 500
    # A legal hold has no end.
    await meta.put_object(obj(b, "held", "v1", legal_hold=True))
    assert math.isinf(await meta.has_locked_versions(TENANT, now + 1000) or 0)
    await meta.set_object_legal_hold(b, "held", "v1", False)
    assert await meta.has_locked_versions(TENANT, now + 1000) is None
