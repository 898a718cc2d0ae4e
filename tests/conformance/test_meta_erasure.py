"""MetadataStore conformance: a tenant's key columns, moving its key to another wrapper (hold
your own key), and crypto-erasure (exactly one caller erases; nothing of the key is left)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from coffre.meta.base import MetadataStore
from coffre.meta.errors import ConditionFailed, Conflict, NotFound
from coffre.meta.records import AccessKeyRecord, KeyVersionRecord
from tests.conformance.test_meta import tenant

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
