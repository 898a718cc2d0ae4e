"""MetadataStore: key versions, the data keys of a tenant in batches, and compare-and-set re-wraps."""

from __future__ import annotations

import base64
import time
from dataclasses import replace

import pytest

from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists
from coffre.meta.records import (
    ROOT_KEY_OWNER,
    KeyVersionRecord,
    ObjectPartRecord,
    OperatorRecord,
    RootWrapped,
)
from tests.conformance.test_meta import new_bucket, obj, part, tenant, upload

A, B = "111111111111", "222222222222"


async def test_a_new_tenant_has_key_version_1(meta: MetadataStore) -> None:
    t = tenant(A)
    await meta.create_tenant(t)
    [v] = await meta.list_key_versions(A)
    assert (v.owner, v.version, v.state, v.wrapped_key) == (A, 1, "active", t.wrapped_key)
    assert await meta.list_key_versions(B) == []


async def test_add_key_version_supersedes_the_active_one(meta: MetadataStore) -> None:
    await meta.create_tenant(tenant(A))
    now = time.time()
    await meta.add_key_version(KeyVersionRecord(A, 2, "active", b"w2", now, now))
    assert [(v.version, v.state, v.wrapped_key) for v in await meta.list_key_versions(A)] == [
        (1, "retiring", tenant(A).wrapped_key), (2, "active", b"w2")]
    with pytest.raises(AlreadyExists):  # a concurrent rotation made version 2 already
        await meta.add_key_version(KeyVersionRecord(A, 2, "active", b"x", now, now))
    await meta.set_key_version_state(A, 1, "retired", now)
    [v1, _] = await meta.list_key_versions(A)
    assert (v1.state, v1.wrapped_key) == ("retired", None)
    assert (await meta.get_tenant(A)).wrapped_key == b""  # version 1's copy is erased too
    # Root versions: rows are created on first mention.
    await meta.set_key_version_state(ROOT_KEY_OWNER, 1, "retiring", now)
    await meta.set_key_version_state(ROOT_KEY_OWNER, 2, "active", now)
    assert [(v.version, v.state) for v in await meta.list_key_versions(ROOT_KEY_OWNER)] == [
        (1, "retiring"), (2, "active")]
    assert {v.owner for v in await meta.list_key_versions()} == {A, ROOT_KEY_OWNER}


async def test_dek_batches_cover_objects_completed_parts_and_pending_parts(meta: MetadataStore) -> None:
    await new_bucket(meta, "a", A)
    await new_bucket(meta, "b", B)
    for i in range(7):
        await meta.put_object(obj("a", f"k{i}"))
    await meta.put_object(replace(obj("b", "other"), tenant_id=B))
    await meta.create_upload(upload("a", "mp", "u1"))
    p1, p2 = part("u1", 1), part("u1", 2)
    await meta.put_part(p1)
    await meta.put_part(p2)
    await meta.complete_upload("u1", obj("a", "mp"), [
        ObjectPartRecord(part_number=p.part_number, size=p.size, etag=p.etag, blob_id=p.blob_id, dek=p.dek)
        for p in (p1, p2)])
    await meta.create_upload(upload("a", "pending", "u2"))
    await meta.put_part(part("u2", 1))

    seen: dict[str, list[str]] = {}
    for table in ("objects", "object_parts", "parts"):
        after = None
        while True:
            batch = await meta.dek_batch(A, table, after, 3)
            if not batch:
                break
            assert len(batch) <= 3
            seen.setdefault(table, []).extend(r.blob_id for r in batch)
            after = batch[-1].row
    assert len(seen["objects"]) == 8 and len(seen["object_parts"]) == 2 and len(seen["parts"]) == 1
    assert len(set(sum(seen.values(), []))) == 11  # no row twice; B's object is not there

    # Compare-and-set: a row whose key changed since it was read keeps it.
    [first, second] = (await meta.dek_batch(A, "objects", None, 2))
    await meta.put_object(replace(obj("a", "k0"), dek=b"n" * 40))  # overwritten meanwhile (a new row)
    n = await meta.replace_deks([(first, b"r" * 40), (second, b"r" * 40)])
    assert n in (1, 2)
    refs = {r.row: r.dek for r in await meta.dek_batch(A, "objects", None, 100)}
    assert refs[second.row] == b"r" * 40
    assert await meta.replace_deks([(second, b"x" * 40)]) == 0  # read before the last change


async def test_root_wrapped_material_and_its_replacement(meta: MetadataStore) -> None:
    await meta.create_tenant(tenant(A))
    await meta.create_operator(OperatorRecord(name="op", created_at=time.time(), wrapped_totp=b"totp"))
    await meta.set_setting("admin_session_key", base64.b64encode(b"sess").decode())
    await meta.set_setting("unrelated", "x")
    items = {(i.kind, i.id): i.wrapped for i in await meta.root_wrapped()}
    assert items[("tenant", A)] == tenant(A).wrapped_key
    assert items[("tenant_key", f"{A}/1")] == tenant(A).wrapped_key
    assert items[("totp", "op")] == b"totp"
    assert items[("setting", "admin_session_key")] == b"sess"
    assert not any(k == ("setting", "unrelated") for k in items)
    assert await meta.replace_root_wrapped(RootWrapped("totp", "op", b"totp"), b"new")
    assert not await meta.replace_root_wrapped(RootWrapped("totp", "op", b"totp"), b"again")
    assert (await meta.get_operator("op")).wrapped_totp == b"new"
    assert await meta.replace_root_wrapped(RootWrapped("setting", "admin_session_key", b"sess"), b"s2")
    assert base64.b64decode(await meta.get_setting("admin_session_key") or "") == b"s2"
    assert await meta.replace_root_wrapped(RootWrapped("tenant_key", f"{A}/1", tenant(A).wrapped_key), b"t2")
    assert (await meta.list_key_versions(A))[0].wrapped_key == b"t2"
