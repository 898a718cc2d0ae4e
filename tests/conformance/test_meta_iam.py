"""Conformance of the tenancy, identity, quota and usage part of MetadataStore (issue #3).

Every backend passes it unmodified (see conftest.py). Usage is checked against an oracle
recomputed from the versions listed, quotas against concurrent writers, and the SQLite
backend's upgrade against a data directory written by schema version 1.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, Conflict, NotFound, QuotaExceeded
from coffre.meta.records import (
    OPERATOR_TENANT,
    AccessKeyRecord,
    GroupRecord,
    ObjectPartRecord,
    OperatorRecord,
    PolicyRecord,
    QuotaRecord,
    Usage,
    UserRecord,
)
from coffre.meta.sqlite import SCHEMA_VERSION, SQLiteMetadataStore
from tests.conformance.test_meta import blob_id, new_bucket, obj, part, tenant, upload

A = "111111111111"
B = "222222222222"


def user(name: str, tid: str = A, **kw: object) -> UserRecord:
    return UserRecord(tenant_id=tid, name=name, user_id="AIDA" + name.upper().ljust(17, "X")[:17] + tid[-1],
                      created_at=time.time(), **kw)


def group(name: str, tid: str = A, **kw: object) -> GroupRecord:
    return GroupRecord(tenant_id=tid, name=name, group_id="AGPA" + name.upper().ljust(17, "X")[:17] + tid[-1],
                       created_at=time.time(), **kw)


def policy(name: str, document: str = '{"Version":"2012-10-17","Statement":[]}', tid: str = A) -> PolicyRecord:
    now = time.time()
    return PolicyRecord(tenant_id=tid, name=name, policy_id="ANPA" + name.upper().ljust(17, "X")[:17] + tid[-1],
                        document=document, created_at=now, updated_at=now)


def key(akid: str, tid: str = A, principal: str = "root", created_at: float | None = None) -> AccessKeyRecord:
    return AccessKeyRecord(access_key_id=akid, tenant_id=tid, principal=principal, wrapped_secret=b"s" * 50,
                           status="active", created_at=time.time() if created_at is None else created_at)


async def two_tenants(meta: MetadataStore) -> None:
    await meta.create_tenant(tenant(A, "acme"))
    await meta.create_tenant(tenant(B, "globex"))


def doc(sid: str) -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Sid": sid, "Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


# -- tenants --

async def test_tenant_fields_list_by_name_and_update(meta: MetadataStore) -> None:
    t = replace(tenant(B, "zulu"), public_access_block='{"BlockPublicAcls": true}')
    await meta.create_tenant(t)
    await meta.create_tenant(tenant(A, "alpha"))
    assert await meta.get_tenant(B) == t
    assert [x.name for x in await meta.list_tenants()] == ["alpha", "zulu"]
    assert await meta.get_tenant_by_name("zulu") == t
    assert await meta.get_tenant_by_name("nope") is None
    changed = replace(t, status="deleting", delete_after=123.5, public_access_block=None)
    await meta.update_tenant(changed)
    assert await meta.get_tenant(B) == changed
    with pytest.raises(AlreadyExists):  # names stay unique
        await meta.update_tenant(replace(changed, name="alpha"))
    assert await meta.get_tenant(B) == changed
    with pytest.raises(NotFound):
        await meta.update_tenant(replace(t, id="333333333333"))


# -- access keys --

async def test_access_keys_list_and_delete(meta: MetadataStore) -> None:
    await two_tenants(meta)
    await meta.put_access_key(key("AKIA3", A, "alice", 3.0))
    await meta.put_access_key(key("AKIA1", A, "root", 1.0))
    await meta.put_access_key(key("AKIA2", A, "alice", 2.0))
    await meta.put_access_key(key("AKIB1", B, "alice", 1.0))
    await meta.put_access_key(key("AKOP1", OPERATOR_TENANT, "ops", 1.0))  # an operator's: no tenant
    assert [k.access_key_id for k in await meta.list_access_keys(A)] == ["AKIA1", "AKIA2", "AKIA3"]
    assert [k.access_key_id for k in await meta.list_access_keys(A, "alice")] == ["AKIA2", "AKIA3"]
    assert [k.access_key_id for k in await meta.list_access_keys(B)] == ["AKIB1"]
    assert [k.access_key_id for k in await meta.list_access_keys(OPERATOR_TENANT)] == ["AKOP1"]
    assert await meta.list_access_keys(A, "bob") == []
    op = await meta.get_access_key("AKOP1")
    assert op is not None and op.tenant_id == OPERATOR_TENANT and op.principal == "ops"
    await meta.delete_access_key("AKIA2")
    assert await meta.get_access_key("AKIA2") is None
    assert [k.access_key_id for k in await meta.list_access_keys(A, "alice")] == ["AKIA3"]
    with pytest.raises(NotFound):
        await meta.delete_access_key("AKIA2")


# -- users --

async def test_users_case_insensitive_names(meta: MetadataStore) -> None:
    await two_tenants(meta)
    alice = user("Alice", path="/eng/", tags={"team": "red"})
    await meta.create_user(alice)
    assert await meta.get_user(A, "alice") == alice
    assert await meta.get_user(A, "ALICE") == alice  # found whatever the case, kept as created
    with pytest.raises(AlreadyExists):
        await meta.create_user(user("aLiCe"))
    await meta.create_user(user("bob"))
    await meta.create_user(user("Carol", path="/eng/ops/"))
    assert [u.name for u in await meta.list_users(A)] == ["Alice", "bob", "Carol"]
    assert [u.name for u in await meta.list_users(A, "/eng/")] == ["Alice", "Carol"]
    assert [u.name for u in await meta.list_users(A, "/eng/ops/")] == ["Carol"]
    updated = replace(alice, path="/sales/", tags={"team": "blue", "cost": "1"})
    await meta.update_user(updated)
    assert await meta.get_user(A, "alice") == updated
    with pytest.raises(NotFound):
        await meta.update_user(user("ghost"))


async def test_delete_user_conflicts_while_in_use(meta: MetadataStore) -> None:
    await two_tenants(meta)
    with pytest.raises(NotFound):
        await meta.delete_user(A, "alice")
    await meta.create_user(user("Alice"))
    await meta.create_group(group("devs"))
    await meta.create_policy(policy("readers"))

    # Each kind of use alone blocks the deletion.
    await meta.put_access_key(key("AKIA1", A, "Alice"))
    with pytest.raises(Conflict):
        await meta.delete_user(A, "alice")
    await meta.delete_access_key("AKIA1")

    await meta.put_inline_policy(A, "user", "alice", "p", doc("x"))
    with pytest.raises(Conflict):
        await meta.delete_user(A, "ALICE")
    await meta.delete_inline_policy(A, "user", "Alice", "p")

    await meta.attach_policy(A, "user", "alice", "readers")
    with pytest.raises(Conflict):
        await meta.delete_user(A, "alice")
    await meta.detach_policy(A, "user", "alice", "Readers")

    await meta.add_user_to_group(A, "devs", "alice")
    with pytest.raises(Conflict):
        await meta.delete_user(A, "alice")
    await meta.remove_user_from_group(A, "DEVS", "ALICE")

    assert await meta.get_user(A, "alice") is not None
    # A key of another tenant's user of the same name is not this user's.
    await meta.put_access_key(key("AKIB1", B, "alice"))
    await meta.delete_user(A, "alice")
    assert await meta.get_user(A, "alice") is None
    await meta.create_user(user("alice"))  # the name is free again


# -- groups --

async def test_groups_and_memberships(meta: MetadataStore) -> None:
    await two_tenants(meta)
    devs = group("Devs", path="/eng/")
    await meta.create_group(devs)
    await meta.create_group(group("admins"))
    with pytest.raises(AlreadyExists):
        await meta.create_group(group("DEVS"))
    assert await meta.get_group(A, "devs") == devs
    assert [g.name for g in await meta.list_groups(A)] == ["admins", "Devs"]
    assert [g.name for g in await meta.list_groups(A, "/eng/")] == ["Devs"]
    for name in ("Bob", "alice"):
        await meta.create_user(user(name))
    with pytest.raises(NotFound):
        await meta.add_user_to_group(A, "nope", "alice")
    with pytest.raises(NotFound):
        await meta.add_user_to_group(A, "devs", "nobody")
    await meta.add_user_to_group(A, "devs", "bob")
    await meta.add_user_to_group(A, "DEVS", "Alice")
    await meta.add_user_to_group(A, "devs", "ALICE")  # idempotent
    await meta.add_user_to_group(A, "admins", "alice")
    assert [u.name for u in await meta.list_group_members(A, "devs")] == ["alice", "Bob"]
    assert [g.name for g in await meta.list_groups_for_user(A, "alice")] == ["admins", "Devs"]
    assert [g.name for g in await meta.list_groups_for_user(A, "bob")] == ["Devs"]
    with pytest.raises(Conflict):  # still has members
        await meta.delete_group(A, "devs")
    await meta.remove_user_from_group(A, "devs", "bob")
    await meta.remove_user_from_group(A, "devs", "alice")
    with pytest.raises(NotFound):  # not a member any more
        await meta.remove_user_from_group(A, "devs", "alice")
    await meta.put_inline_policy(A, "group", "devs", "p", doc("g"))
    with pytest.raises(Conflict):  # has an inline policy
        await meta.delete_group(A, "devs")
    await meta.delete_inline_policy(A, "group", "devs", "p")
    await meta.create_policy(policy("readers"))
    await meta.attach_policy(A, "group", "devs", "readers")
    with pytest.raises(Conflict):  # has an attached policy
        await meta.delete_group(A, "devs")
    await meta.detach_policy(A, "group", "devs", "readers")
    await meta.delete_group(A, "Devs")
    assert await meta.get_group(A, "devs") is None
    with pytest.raises(NotFound):
        await meta.delete_group(A, "devs")


# -- inline and managed policies --

async def test_inline_policies(meta: MetadataStore) -> None:
    await two_tenants(meta)
    with pytest.raises(NotFound):  # the owner must exist
        await meta.put_inline_policy(A, "user", "alice", "p", doc("1"))
    with pytest.raises(NotFound):
        await meta.put_inline_policy(A, "group", "devs", "p", doc("1"))
    await meta.create_user(user("Alice"))
    await meta.create_group(group("alice"))  # a group of the same name is another owner
    await meta.put_inline_policy(A, "user", "alice", "zeta", doc("1"))
    await meta.put_inline_policy(A, "user", "ALICE", "alpha", doc("2"))
    await meta.put_inline_policy(A, "user", "alice", "zeta", doc("3"))  # replaced
    await meta.put_inline_policy(A, "group", "alice", "gp", doc("g"))
    assert await meta.get_inline_policy(A, "user", "Alice", "zeta") == doc("3")
    assert await meta.get_inline_policy(A, "user", "alice", "nope") is None
    assert await meta.list_inline_policies(A, "user", "alice") == ["alpha", "zeta"]
    assert await meta.list_inline_policies(A, "group", "alice") == ["gp"]
    await meta.delete_inline_policy(A, "user", "alice", "zeta")
    assert await meta.list_inline_policies(A, "user", "alice") == ["alpha"]
    with pytest.raises(NotFound):
        await meta.delete_inline_policy(A, "user", "alice", "zeta")
    with pytest.raises(ValueError):
        await meta.put_inline_policy(A, "role", "alice", "p", doc("1"))


async def test_managed_policies(meta: MetadataStore) -> None:
    await two_tenants(meta)
    p = replace(policy("ReadOnly", doc("r")), path="/team/", description="read it all")
    await meta.create_policy(p)
    await meta.create_policy(policy("admin"))
    with pytest.raises(AlreadyExists):
        await meta.create_policy(policy("readonly"))
    assert await meta.get_policy(A, "readonly") == p
    assert [x.name for x in await meta.list_policies(A)] == ["admin", "ReadOnly"]
    newer = replace(p, document=doc("r2"), description="v2", default_version="v2", updated_at=p.updated_at + 5)
    await meta.update_policy(newer)
    assert await meta.get_policy(A, "READONLY") == newer
    with pytest.raises(NotFound):
        await meta.update_policy(policy("ghost"))

    await meta.create_user(user("alice"))
    await meta.create_group(group("devs"))
    with pytest.raises(NotFound):  # no such policy
        await meta.attach_policy(A, "user", "alice", "ghost")
    with pytest.raises(NotFound):  # no such user
        await meta.attach_policy(A, "user", "bob", "readonly")
    await meta.attach_policy(A, "user", "alice", "readonly")
    await meta.attach_policy(A, "user", "Alice", "ReadOnly")  # idempotent
    await meta.attach_policy(A, "user", "alice", "admin")
    await meta.attach_policy(A, "group", "devs", "readonly")
    assert [x.name for x in await meta.list_attached_policies(A, "user", "alice")] == ["admin", "ReadOnly"]
    assert await meta.list_attached_policies(A, "group", "devs") == [newer]
    assert await meta.policy_attachment_count(A, "readonly") == 2
    assert await meta.policy_attachment_count(A, "ghost") == 0
    with pytest.raises(Conflict):
        await meta.delete_policy(A, "readonly")
    await meta.detach_policy(A, "user", "alice", "readonly")
    with pytest.raises(NotFound):  # not attached any more
        await meta.detach_policy(A, "user", "alice", "readonly")
    await meta.detach_policy(A, "group", "devs", "readonly")
    assert await meta.policy_attachment_count(A, "readonly") == 0
    await meta.delete_policy(A, "ReadOnly")
    assert await meta.get_policy(A, "readonly") is None
    with pytest.raises(NotFound):
        await meta.delete_policy(A, "readonly")


async def test_identity_policies_is_complete(meta: MetadataStore) -> None:
    await two_tenants(meta)
    for name in ("alice", "bob"):
        await meta.create_user(user(name))
    for name in ("devs", "ops", "empty"):
        await meta.create_group(group(name))
    await meta.add_user_to_group(A, "devs", "alice")
    await meta.add_user_to_group(A, "ops", "alice")
    await meta.add_user_to_group(A, "ops", "bob")
    await meta.put_inline_policy(A, "user", "alice", "mine", doc("alice-inline"))
    await meta.put_inline_policy(A, "user", "bob", "mine", doc("bob-inline"))
    await meta.put_inline_policy(A, "group", "devs", "g", doc("devs-inline"))
    await meta.put_inline_policy(A, "group", "ops", "g", doc("ops-inline"))
    await meta.put_inline_policy(A, "group", "empty", "g", doc("empty-inline"))
    await meta.create_policy(policy("m-user", doc("m-user")))
    await meta.create_policy(policy("m-devs", doc("m-devs")))
    await meta.create_policy(policy("m-both", doc("m-both")))
    await meta.create_policy(policy("m-unused", doc("m-unused")))
    await meta.attach_policy(A, "user", "alice", "m-user")
    await meta.attach_policy(A, "user", "alice", "m-both")
    await meta.attach_policy(A, "group", "devs", "m-devs")
    await meta.attach_policy(A, "group", "devs", "m-both")  # reached twice, counted once
    got = await meta.identity_policies(A, "ALICE")
    assert sorted(got) == sorted(doc(s) for s in ("alice-inline", "devs-inline", "ops-inline", "m-user",
                                                  "m-devs", "m-both"))
    assert sorted(await meta.identity_policies(A, "bob")) == sorted([doc("bob-inline"), doc("ops-inline")])
    assert await meta.identity_policies(A, "nobody") == []
    # What changes is seen by the next read.
    await meta.remove_user_from_group(A, "devs", "alice")
    got = await meta.identity_policies(A, "alice")
    assert sorted(got) == sorted(doc(s) for s in ("alice-inline", "ops-inline", "m-user", "m-both"))


async def test_tenant_isolation(meta: MetadataStore) -> None:
    """Tenant B, using the very same names, never sees or touches anything of tenant A."""
    await two_tenants(meta)
    await meta.create_user(user("alice", A))
    await meta.create_group(group("devs", A))
    await meta.create_policy(policy("readers", doc("a"), A))
    await meta.add_user_to_group(A, "devs", "alice")
    await meta.put_inline_policy(A, "user", "alice", "p", doc("a-inline"))
    await meta.put_inline_policy(A, "group", "devs", "p", doc("a-group"))
    await meta.attach_policy(A, "user", "alice", "readers")
    await meta.put_access_key(key("AKIA1", A, "alice"))

    assert await meta.get_user(B, "alice") is None
    assert await meta.list_users(B) == []
    assert await meta.get_group(B, "devs") is None
    assert await meta.list_groups(B) == []
    assert await meta.get_policy(B, "readers") is None
    assert await meta.list_policies(B) == []
    assert await meta.list_access_keys(B) == []
    assert await meta.list_access_keys(B, "alice") == []
    assert await meta.get_inline_policy(B, "user", "alice", "p") is None
    assert await meta.list_inline_policies(B, "user", "alice") == []
    assert await meta.list_attached_policies(B, "user", "alice") == []
    assert await meta.list_group_members(B, "devs") == []
    assert await meta.list_groups_for_user(B, "alice") == []
    assert await meta.identity_policies(B, "alice") == []
    assert await meta.policy_attachment_count(B, "readers") == 0
    for call in (meta.delete_user(B, "alice"), meta.delete_group(B, "devs"), meta.delete_policy(B, "readers"),
                 meta.add_user_to_group(B, "devs", "alice"), meta.remove_user_from_group(B, "devs", "alice"),
                 meta.put_inline_policy(B, "user", "alice", "p", doc("b")),
                 meta.delete_inline_policy(B, "user", "alice", "p"),
                 meta.attach_policy(B, "user", "alice", "readers"),
                 meta.detach_policy(B, "user", "alice", "readers"),
                 meta.update_user(replace(await meta.get_user(A, "alice") or user("x"), tenant_id=B)),
                 meta.update_policy(policy("readers", doc("b"), B))):
        with pytest.raises(NotFound):
            await call

    # B creates the same names as its own; A's are untouched.
    await meta.create_user(user("alice", B))
    await meta.create_group(group("devs", B))
    await meta.create_policy(policy("readers", doc("b"), B))
    await meta.add_user_to_group(B, "devs", "alice")
    assert await meta.identity_policies(B, "alice") == []
    assert sorted(await meta.identity_policies(A, "alice")) == sorted([doc("a-inline"), doc("a-group"), doc("a")])
    assert [u.tenant_id for u in await meta.list_group_members(A, "devs")] == [A]
    assert (await meta.get_policy(A, "readers") or policy("?")).document == doc("a")


# -- operators --

async def test_operators(meta: MetadataStore) -> None:
    first = OperatorRecord(name="root", created_at=1.0)
    human = OperatorRecord(name="ada", created_at=2.0, password_hash="$argon2id$v=19$m=65536,t=3,p=4$x$y",
                           wrapped_totp=b"t" * 40)
    await meta.create_operator(first)
    await meta.create_operator(human)
    with pytest.raises(AlreadyExists):
        await meta.create_operator(replace(first, created_at=3.0))
    assert await meta.get_operator("ada") == human
    assert await meta.get_operator("nobody") is None
    assert [o.name for o in await meta.list_operators()] == ["ada", "root"]
    locked = replace(human, failed_logins=5, locked_until=99.5, status="disabled", wrapped_totp=None)
    await meta.update_operator(locked)
    assert await meta.get_operator("ada") == locked
    with pytest.raises(NotFound):
        await meta.update_operator(OperatorRecord(name="ghost", created_at=1.0))


# -- bucket access documents and object ACLs --

async def test_bucket_policy_access_and_object_acl(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.set_bucket_policy(b, doc("bp"))
    await meta.set_bucket_access(b, '{"ownership": "BucketOwnerEnforced"}')
    got = await meta.get_bucket(b)
    assert got is not None and got.policy == doc("bp") and got.access == '{"ownership": "BucketOwnerEnforced"}'
    assert [x.policy for x in await meta.list_buckets(A)] == [doc("bp")]
    await meta.set_bucket_policy(b, None)
    await meta.set_bucket_access(b, None)
    got = await meta.get_bucket(b)
    assert got is not None and got.policy is None and got.access is None
    with pytest.raises(NotFound):
        await meta.set_bucket_policy("nope", doc("bp"))
    with pytest.raises(NotFound):
        await meta.set_bucket_access("nope", "{}")

    await meta.put_object(obj(b, "k", "v1", acl='[{"grantee": "AllUsers", "permission": "READ"}]'))
    await meta.put_object(obj(b, "k", "v2"))
    v1 = await meta.get_object(b, "k", "v1")
    assert v1 is not None and v1.acl == '[{"grantee": "AllUsers", "permission": "READ"}]'
    assert (await meta.get_object(b, "k") or obj(b, "?")).acl is None
    assert await meta.set_object_acl(b, "k", None, "[]") == "v2"
    assert (await meta.get_object(b, "k") or obj(b, "?")).acl == "[]"
    assert await meta.set_object_acl(b, "k", "v1", None) == "v1"
    assert (await meta.get_object(b, "k", "v1") or obj(b, "?")).acl is None
    with pytest.raises(NotFound):
        await meta.set_object_acl(b, "nope", None, "[]")
    await meta.put_object(obj(b, "k", "v3", delete_marker=True))
    with pytest.raises(NotFound):  # a delete marker has no ACL
        await meta.set_object_acl(b, "k", None, "[]")


# -- quotas and usage --

async def oracle(meta: MetadataStore, bucket: str) -> Usage:
    """Usage recomputed from every version listed: what bucket_usage must always equal."""
    total = count = 0
    key_marker = version_marker = ""
    while True:
        page = await meta.list_object_versions(bucket, key_marker=key_marker, version_id_marker=version_marker)
        for e in page.entries:
            if not e.is_delete_marker:
                total += e.size
                count += 1
        if not page.is_truncated:
            return Usage(bytes=total, objects=count)
        key_marker, version_marker = page.next_key_marker or "", page.next_version_id_marker or ""


async def test_quota_records(meta: MetadataStore) -> None:
    assert await meta.get_quota("tenant", A) is None
    q = QuotaRecord(scope="tenant", target=A, max_bytes=1000, max_objects=None, max_buckets=3)
    await meta.set_quota(q)
    assert await meta.get_quota("tenant", A) == q
    assert await meta.get_quota("bucket", A) is None  # scopes are separate
    q2 = replace(q, max_bytes=None, max_objects=7)
    await meta.set_quota(q2)
    assert await meta.get_quota("tenant", A) == q2
    await meta.set_quota(QuotaRecord(scope="tenant", target=A))  # all None: removed
    assert await meta.get_quota("tenant", A) is None
    with pytest.raises(ValueError):
        await meta.set_quota(QuotaRecord(scope="planet", target="earth", max_bytes=1))


async def test_usage_is_exact_over_a_scripted_sequence(meta: MetadataStore) -> None:
    b = await new_bucket(meta, "bkt", A)
    other = await new_bucket(meta, "other", A)
    await meta.create_tenant(tenant(B))
    await new_bucket(meta, "theirs", B)

    async def check(expected: Usage) -> None:
        assert await meta.bucket_usage(b) == expected
        assert await oracle(meta, b) == expected
        other_usage = await meta.bucket_usage(other)
        assert await meta.tenant_usage(A) == Usage(bytes=expected.bytes + other_usage.bytes,
                                                   objects=expected.objects + other_usage.objects, buckets=2)

    await check(Usage())
    await meta.put_object(obj(b, "a", size=100))  # unversioned PUT
    await check(Usage(100, 1))
    await meta.put_object(obj(b, "a", size=40))  # overwrite of the null version
    await check(Usage(40, 1))
    await meta.put_object(obj(b, "b", size=7))
    await check(Usage(47, 2))
    await meta.put_object(obj(b, "a", "v1", size=10))  # versioned PUT keeps the null version
    await meta.put_object(obj(b, "a", "v2", size=20))
    await check(Usage(77, 4))
    await meta.put_object(obj(b, "a", "v2", size=25))  # the same version id replaced
    await check(Usage(82, 4))
    await meta.put_object(obj(b, "a", "dm1", delete_marker=True))  # a delete marker counts nothing
    await check(Usage(82, 4))
    await meta.put_object(obj(b, "a", "null", delete_marker=True))  # a null delete marker replaces the null version
    await check(Usage(42, 3))
    await meta.put_object(obj(b, "a", "null", size=1))  # and is replaced by a null version again
    await check(Usage(43, 4))
    await meta.delete_object(b, "a", "v1")
    await check(Usage(33, 3))
    await meta.delete_object(b, "a", "dm1")  # removing a delete marker changes nothing
    await check(Usage(33, 3))
    removed, _ = await meta.delete_version(b, "a", "v2")
    assert removed is not None and removed.size == 25
    await check(Usage(8, 2))
    await meta.delete_object(b, "a", "nope")  # nothing there
    await check(Usage(8, 2))
    await meta.put_object(obj(other, "x", size=1000))  # another bucket of the tenant
    await check(Usage(8, 2))
    await meta.put_object(obj("theirs", "x", size=5))
    assert await meta.tenant_usage(B) == Usage(5, 1, 1)

    # Multipart: parts in progress count nothing, the completed object its size.
    await meta.create_upload(upload(b, "big", "u1"))
    parts = [part("u1", n) for n in (1, 2, 3)]
    for p in parts:
        await meta.put_part(p)
    await check(Usage(8, 2))
    pieces = [ObjectPartRecord(part_number=p.part_number, size=p.size, etag=p.etag, blob_id=p.blob_id, dek=p.dek)
              for p in parts[:2]]  # part 3 left out
    final = replace(obj(b, "big", size=sum(p.size for p in pieces), parts_count=2), blob_id=None, dek=None)
    await meta.complete_upload("u1", final, pieces)
    await check(Usage(8 + (10 << 20), 3))
    await meta.put_object(obj(b, "big", size=2))  # overwrite of a multipart object
    await check(Usage(10, 3))
    # An aborted upload never counted.
    await meta.create_upload(upload(b, "gone", "u2"))
    await meta.put_part(part("u2", 1))
    await meta.abort_upload("u2")
    await check(Usage(10, 3))

    # Emptied and deleted, the bucket's usage goes with it; a new bucket of that name starts at zero.
    for e in (await meta.list_object_versions(b)).entries:
        await meta.delete_version(b, e.key, e.version_id)
    await check(Usage())
    await meta.delete_bucket(b)
    assert await meta.bucket_usage(b) == Usage()
    assert await meta.tenant_usage(A) == Usage(1000, 1, 1)
    await new_bucket(meta, b, B)
    assert await meta.bucket_usage(b) == Usage()
    assert await meta.tenant_usage(B) == Usage(5, 1, 2)


async def test_usage_under_a_random_workload(meta: MetadataStore) -> None:
    import random
    rng = random.Random(3)
    b = await new_bucket(meta)
    versions: dict[str, list[str]] = {}
    for i in range(400):
        k = f"k{rng.randrange(12)}"
        op = rng.random()
        if op < 0.45:
            vid = "null" if rng.random() < 0.4 else f"v{i}"
            await meta.put_object(obj(b, k, vid, size=rng.randrange(0, 5000)))
            versions.setdefault(k, []).append(vid)
        elif op < 0.6:
            vid = "null" if rng.random() < 0.3 else f"d{i}"
            await meta.put_object(obj(b, k, vid, delete_marker=True))
            versions.setdefault(k, []).append(vid)
        elif versions.get(k):
            vid = rng.choice(versions[k])
            if rng.random() < 0.5:
                await meta.delete_object(b, k, vid)
            else:
                await meta.delete_version(b, k, vid)
            versions[k] = [v for v in versions[k] if v != vid]
        if i % 50 == 0:
            assert await meta.bucket_usage(b) == await oracle(meta, b)
    assert await meta.bucket_usage(b) == await oracle(meta, b)
    used = await meta.bucket_usage(b)
    assert await meta.tenant_usage(A) == Usage(used.bytes, used.objects, 1)


async def state(meta: MetadataStore, bucket: str) -> tuple[object, ...]:
    return (await meta.bucket_usage(bucket), await meta.tenant_usage(A),
            [(e.key, e.version_id, e.size, e.is_latest) for e in (await meta.list_object_versions(bucket)).entries],
            sorted(await meta.garbage_batch(100000)))


async def test_bucket_quota_refusal_leaves_state_unchanged(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.set_quota(QuotaRecord(scope="bucket", target=b, max_bytes=100, max_objects=3))
    await meta.put_object(obj(b, "a", size=60))
    await meta.put_object(obj(b, "b", size=40))  # exactly at the bytes maximum: allowed
    before = await state(meta, b)
    with pytest.raises(QuotaExceeded) as exc:
        await meta.put_object(obj(b, "c", size=1))
    assert (exc.value.scope, exc.value.target, exc.value.limit, exc.value.maximum) == ("bucket", b, "bytes", 100)
    with pytest.raises(QuotaExceeded):  # replacing a version by a bigger one
        await meta.put_object(obj(b, "a", size=61))
    assert await state(meta, b) == before
    await meta.put_object(obj(b, "a", size=59))  # smaller overwrite
    await meta.put_object(obj(b, "c", size=1))
    assert await meta.bucket_usage(b) == Usage(100, 3)
    with pytest.raises(QuotaExceeded) as exc:
        await meta.put_object(obj(b, "d", size=0))
    assert (exc.value.limit, exc.value.maximum) == ("objects", 3)
    # A quota lowered below the usage refuses growth, never shrinking or standing still.
    await meta.set_quota(QuotaRecord(scope="bucket", target=b, max_bytes=10, max_objects=1))
    await meta.put_object(obj(b, "a", size=59))  # same size, same count
    await meta.put_object(obj(b, "a", "dm", delete_marker=True))  # a delete marker grows nothing
    await meta.delete_object(b, "a", "dm")
    await meta.delete_object(b, "c", "null")
    assert await meta.bucket_usage(b) == Usage(99, 2)
    # Multipart completion is checked too, and a refused one leaves the upload as it was.
    await meta.set_quota(QuotaRecord(scope="bucket", target=b, max_bytes=1 << 30))
    await meta.create_upload(upload(b, "big", "u1"))
    p = part("u1", 1)
    await meta.put_part(p)
    await meta.set_quota(QuotaRecord(scope="bucket", target=b, max_bytes=1000))
    before = await state(meta, b)
    final = replace(obj(b, "big", size=p.size, parts_count=1), blob_id=None, dek=None)
    pieces = [ObjectPartRecord(part_number=1, size=p.size, etag=p.etag, blob_id=p.blob_id, dek=p.dek)]
    with pytest.raises(QuotaExceeded):
        await meta.complete_upload("u1", final, pieces)
    assert await state(meta, b) == before
    assert await meta.get_upload(b, "u1") is not None
    assert [x.blob_id for x in await meta.list_parts("u1")] == [p.blob_id]
    await meta.set_quota(QuotaRecord(scope="bucket", target=b))  # removed: unlimited again
    await meta.complete_upload("u1", final, pieces)
    assert await meta.bucket_usage(b) == Usage(99 + p.size, 3)


async def test_tenant_quota_spans_buckets(meta: MetadataStore) -> None:
    b1 = await new_bucket(meta, "one")
    b2 = await new_bucket(meta, "two")
    await meta.create_tenant(tenant(B))
    await new_bucket(meta, "theirs", B)
    await meta.set_quota(QuotaRecord(scope="tenant", target=A, max_bytes=100, max_objects=10))
    await meta.put_object(obj(b1, "a", size=70))
    await meta.put_object(obj(b2, "a", size=30))
    with pytest.raises(QuotaExceeded) as exc:
        await meta.put_object(obj(b2, "b", size=1))
    assert (exc.value.scope, exc.value.target, exc.value.limit) == ("tenant", A, "bytes")
    await meta.put_object(obj("theirs", "a", size=10_000))  # another tenant is not limited by A's quota
    await meta.delete_object(b1, "a", "null")
    await meta.put_object(obj(b2, "b", size=70))
    assert await meta.tenant_usage(A) == Usage(100, 2, 2)
    # The tighter of the bucket's and the tenant's quota applies.
    await meta.set_quota(QuotaRecord(scope="bucket", target=b1, max_objects=1))
    await meta.set_quota(QuotaRecord(scope="tenant", target=A, max_bytes=1000, max_objects=10))
    await meta.put_object(obj(b1, "x", size=1))
    with pytest.raises(QuotaExceeded) as exc:
        await meta.put_object(obj(b1, "y", size=1))
    assert (exc.value.scope, exc.value.limit) == ("bucket", "objects")


async def test_bucket_count_quota(meta: MetadataStore) -> None:
    await meta.create_tenant(tenant(A))
    await meta.create_tenant(tenant(B))
    await meta.set_quota(QuotaRecord(scope="tenant", target=A, max_buckets=2))
    await new_bucket(meta, "one", A)
    await new_bucket(meta, "two", A)
    with pytest.raises(QuotaExceeded) as exc:
        await new_bucket(meta, "three", A)
    assert (exc.value.scope, exc.value.target, exc.value.limit, exc.value.maximum) == ("tenant", A, "buckets", 2)
    assert await meta.get_bucket("three") is None
    await new_bucket(meta, "three", B)  # B has no such quota
    with pytest.raises(AlreadyExists):  # a taken name is still AlreadyExists, not a quota error
        await new_bucket(meta, "one", A)
    await meta.delete_bucket("two")
    await new_bucket(meta, "four", A)
    assert (await meta.tenant_usage(A)).buckets == 2


async def test_deleting_a_bucket_drops_its_quota(meta: MetadataStore) -> None:
    b = await new_bucket(meta, "shared-name", A)
    await meta.set_quota(QuotaRecord(scope="bucket", target=b, max_objects=1))
    await meta.delete_bucket(b)
    assert await meta.get_quota("bucket", b) is None
    await meta.create_tenant(tenant(B))
    await new_bucket(meta, b, B)  # a new owner of the name does not inherit the old limit
    await meta.put_object(replace(obj(b, "a"), tenant_id=B))
    await meta.put_object(replace(obj(b, "b"), tenant_id=B))
    assert await meta.bucket_usage(b) == Usage(6, 2)


@pytest.mark.parametrize("limit", ["objects", "bytes"])
async def test_concurrent_writers_never_exceed_a_quota(meta: MetadataStore, limit: str) -> None:
    b = await new_bucket(meta)
    if limit == "objects":
        await meta.set_quota(QuotaRecord(scope="bucket", target=b, max_objects=10))
    else:
        await meta.set_quota(QuotaRecord(scope="tenant", target=A, max_bytes=10 * 100))
    results = await asyncio.gather(*(meta.put_object(obj(b, f"k{i:02}", size=100)) for i in range(50)),
                                   return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(ok) == 10 and len(refused) == 40
    assert await meta.bucket_usage(b) == Usage(1000, 10)
    assert len((await meta.list_objects(b)).objects) == 10


# -- the SQLite backend's upgrade from schema version 1 --

def write_v1_store(path: Path) -> None:
    """A metadata file exactly as coffre before issue #3 left it."""
    c = sqlite3.connect(path, isolation_level=None)
    c.executescript(V1_SCHEMA)
    c.execute("INSERT INTO settings VALUES('schema_version', '1')")
    c.execute("INSERT INTO tenants VALUES(?,?,?,?,?,?)", (A, "acme", "active", 1.0, b"w" * 60, "c" * 64))
    c.execute("INSERT INTO access_keys VALUES(?,?,?,?,?,?)", ("AKIAOLD", A, "root", b"s" * 50, "active", 1.0))
    for name in ("full", "empty"):
        c.execute("INSERT INTO buckets VALUES(?,?,?,?,?,?)", (name, A, "us-east-1", 1.0, "Enabled", 0))

    def put(key: str, version: str, size: int, latest: bool, marker: bool = False, parts: int = 0) -> int:
        cur = c.execute(
            "INSERT INTO objects(bucket, key, version_id, is_latest, is_delete_marker, size, etag, last_modified, "
            "tenant_id, owner, content_type, headers, user_meta, blob_id, dek, parts_count, storage_class, tags) "
            "VALUES('full',?,?,?,?,?,'\"e\"',1.0,?,?,'text/plain','{}','{}',?,?,?,'STANDARD','{}')",
            (key.encode(), version, int(latest), int(marker), size, A, "c" * 64,
             None if marker or parts else blob_id(), None if marker or parts else b"k" * 40, parts))
        assert cur.lastrowid is not None
        return cur.lastrowid

    put("a", "v1", 5, False)
    put("a", "v2", 10, True)
    put("b", "v1", 7, False)
    put("b", "v2", 0, True, marker=True)
    oid = put("mp", "v1", 300, True, parts=2)
    for n in (1, 2):
        c.execute("INSERT INTO object_parts VALUES(?,?,?,?,?,?,?)", (oid, n, 150, '"p"', blob_id(), b"d" * 40, None))
    c.execute("INSERT INTO uploads VALUES('u1','full',?,?,?,1.0,'t','{}','{}',NULL,NULL,'STANDARD','{}')",
              (b"up", A, "c" * 64))
    c.execute("INSERT INTO parts VALUES('u1',1,999,'\"p\"',?,?,1.0,NULL)", (blob_id(), b"d" * 40))
    c.close()


async def test_sqlite_upgrades_a_version_1_store(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    write_v1_store(path)
    store = SQLiteMetadataStore(str(path))
    await store.open()
    try:
        assert await store.get_setting("schema_version") == str(SCHEMA_VERSION)
        t = await store.get_tenant(A)
        assert t is not None and (t.name, t.delete_after, t.public_access_block) == ("acme", None, None)
        k = await store.get_access_key("AKIAOLD")
        assert k is not None and (k.tenant_id, k.principal, k.wrapped_secret) == (A, "root", b"s" * 50)
        bkt = await store.get_bucket("full")
        assert bkt is not None and (bkt.versioning, bkt.policy, bkt.access) == ("Enabled", None, None)
        mp = await store.get_object("full", "mp", with_parts=True)
        assert mp is not None and mp.size == 300 and len(mp.parts) == 2 and mp.acl is None
        # Usage computed from what was there: versions, not delete markers, not parts in progress.
        assert await store.bucket_usage("full") == Usage(5 + 10 + 7 + 300, 4)
        assert await store.bucket_usage("empty") == Usage()
        assert await store.tenant_usage(A) == Usage(322, 4, 2)
        assert await oracle(store, "full") == Usage(322, 4)
        # And kept from there on; the new tables work; operators' keys have no tenant.
        await store.put_object(replace(obj("full", "a", "v3", size=8), tenant_id=A))
        assert await store.bucket_usage("full") == Usage(330, 5)
        await store.put_access_key(key("AKOP", OPERATOR_TENANT, "ops"))
        await store.create_user(user("alice"))
        await store.put_access_key(key("AKIAALICE", A, "alice"))
        assert [x.access_key_id for x in await store.list_access_keys(A, "alice")] == ["AKIAALICE"]
    finally:
        await store.close()
    # Opening again finds version 2 and migrates nothing.
    again = SQLiteMetadataStore(str(path))
    await again.open()
    try:
        assert await again.bucket_usage("full") == Usage(330, 5)
        assert await again.get_user(A, "ALICE") is not None
    finally:
        await again.close()


async def test_sqlite_failed_upgrade_leaves_version_1_intact(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    write_v1_store(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("CREATE TABLE quotas(x)")  # makes a late step of the migration fail
    c.close()
    store = SQLiteMetadataStore(str(path))
    with pytest.raises(sqlite3.OperationalError):
        await store.open()
    await store.close()
    c = sqlite3.connect(path)
    assert c.execute("SELECT value FROM settings WHERE name='schema_version'").fetchone() == ("1",)
    cols = [r[1] for r in c.execute("PRAGMA table_info(tenants)")]
    assert "delete_after" not in cols  # the columns added before the failure were rolled back too
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "users" not in tables and "bucket_usage" not in tables and "access_keys" in tables
    c.close()


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    store = SQLiteMetadataStore(str(path))
    await store.open()
    await store.set_setting("schema_version", str(SCHEMA_VERSION + 1))
    await store.close()
    newer = SQLiteMetadataStore(str(path))
    with pytest.raises(RuntimeError, match="newer"):
        await newer.open()
    await newer.close()



# The schema of version 1, as released (src/coffre/meta/sqlite.py before issue #3).
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings(
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenants(
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    wrapped_key BLOB NOT NULL,
    canonical_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS access_keys(
    access_key_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    principal TEXT NOT NULL,
    wrapped_secret BLOB NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets(
    name TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    region TEXT NOT NULL,
    created_at REAL NOT NULL,
    versioning TEXT NOT NULL DEFAULT '',
    object_lock INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS buckets_tenant ON buckets(tenant_id, name);
CREATE TABLE IF NOT EXISTS objects(
    id INTEGER PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    version_id TEXT NOT NULL,
    is_latest INTEGER NOT NULL,
    is_delete_marker INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified REAL NOT NULL,
    tenant_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL,
    user_meta TEXT NOT NULL,
    checksum_algorithm TEXT,
    checksum_value TEXT,
    checksum_type TEXT,
    blob_id TEXT,
    dek BLOB,
    parts_count INTEGER NOT NULL DEFAULT 0,
    storage_class TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS objects_version ON objects(bucket, key, version_id);
CREATE UNIQUE INDEX IF NOT EXISTS objects_latest ON objects(bucket, key) WHERE is_latest = 1;
CREATE INDEX IF NOT EXISTS objects_blob ON objects(blob_id) WHERE blob_id IS NOT NULL;
-- Listings walk only what they list (latest versions that are not delete markers).
CREATE INDEX IF NOT EXISTS objects_listing ON objects(bucket, key) WHERE is_latest = 1 AND is_delete_marker = 0;
-- ListObjectVersions: keys in order, newest version (highest id) first within a key.
CREATE INDEX IF NOT EXISTS objects_versions ON objects(bucket, key, id DESC);
CREATE TABLE IF NOT EXISTS object_parts(
    object_id INTEGER NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    dek BLOB NOT NULL,
    checksum TEXT,
    PRIMARY KEY(object_id, part_number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS object_parts_blob ON object_parts(blob_id);
CREATE TABLE IF NOT EXISTS uploads(
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    tenant_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    initiated REAL NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL,
    user_meta TEXT NOT NULL,
    checksum_algorithm TEXT,
    checksum_type TEXT,
    storage_class TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS uploads_bucket_key ON uploads(bucket, key, initiated, upload_id);
CREATE TABLE IF NOT EXISTS parts(
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    dek BLOB NOT NULL,
    last_modified REAL NOT NULL,
    checksum TEXT,
    PRIMARY KEY(upload_id, part_number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parts_blob ON parts(blob_id);
CREATE TABLE IF NOT EXISTS bucket_configs(
    bucket TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY(bucket, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS garbage(
    blob_id TEXT PRIMARY KEY,
    queued_at REAL NOT NULL
) WITHOUT ROWID;
"""
