"""The MetadataStore conformance suite: every backend passes it unmodified (see conftest.py)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import replace

import pytest

from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, ConditionFailed, NotEmpty, NotFound
from coffre.meta.records import (
    AccessKeyRecord,
    BucketRecord,
    ObjectPartRecord,
    ObjectRecord,
    PartRecord,
    TenantRecord,
    UploadRecord,
    WriteCondition,
)
from tests.listing_reference import reference


def blob_id() -> str:
    return uuid.uuid4().hex


def tenant(tid: str = "111111111111", name: str | None = None) -> TenantRecord:
    return TenantRecord(id=tid, name=name or f"tenant-{tid}", status="active", created_at=time.time(),
                        wrapped_key=b"\x01" * 60, canonical_id="c" * 63 + tid[-1])


def obj(bucket: str, key: str, version: str = "null", *, etag: str = '"e1"', size: int = 3,
        blob: str | None = None, delete_marker: bool = False, **kw: object) -> ObjectRecord:
    return ObjectRecord(bucket=bucket, key=key, version_id=version, size=size, etag=etag,
                        last_modified=time.time(), tenant_id="111111111111", owner="c" * 64,
                        blob_id=None if delete_marker else (blob or blob_id()),
                        dek=None if delete_marker else b"k" * 40, is_delete_marker=delete_marker,
                        **kw)  # type: ignore[arg-type]


async def new_bucket(meta: MetadataStore, name: str = "bkt", tid: str = "111111111111") -> str:
    if await meta.get_tenant(tid) is None:
        await meta.create_tenant(tenant(tid))
    await meta.create_bucket(BucketRecord(name=name, tenant_id=tid, region="us-east-1", created_at=time.time()))
    return name


async def garbage(meta: MetadataStore) -> set[str]:
    return set(await meta.garbage_batch(100000))


# -- plumbing and settings --

async def test_ping_and_settings(meta: MetadataStore) -> None:
    await meta.ping()
    assert await meta.get_setting("nope") is None
    await meta.set_setting("a", "1")
    await meta.set_setting("a", "2")
    assert await meta.get_setting("a") == "2"
    # Insert-if-absent: the first value stays, whoever asks later (or at the same time) gets it.
    assert await meta.add_setting("a", "3") == "2"
    got = await asyncio.gather(*(meta.add_setting("first", str(i)) for i in range(20)))
    assert len(set(got)) == 1 and await meta.get_setting("first") == got[0]


# -- tenants and access keys --

async def test_tenants(meta: MetadataStore) -> None:
    t = tenant("123456789012", "acme")
    await meta.create_tenant(t)
    assert await meta.get_tenant("123456789012") == t
    assert await meta.get_tenant("999999999999") is None
    with pytest.raises(AlreadyExists):
        await meta.create_tenant(replace(t, name="other"))  # same id
    with pytest.raises(AlreadyExists):
        await meta.create_tenant(replace(t, id="210987654321", canonical_id="d" * 64))  # same name


async def test_access_keys(meta: MetadataStore) -> None:
    await meta.create_tenant(tenant())
    k = AccessKeyRecord(access_key_id="AKIA1", tenant_id="111111111111", principal="root",
                        wrapped_secret=b"s" * 50, status="active", created_at=time.time())
    await meta.put_access_key(k)
    assert await meta.get_access_key("AKIA1") == k
    assert await meta.get_access_key("AKIA2") is None
    await meta.put_access_key(replace(k, status="inactive"))
    got = await meta.get_access_key("AKIA1")
    assert got is not None and got.status == "inactive"


# -- buckets --

async def test_buckets_create_get_list(meta: MetadataStore) -> None:
    await meta.create_tenant(tenant("111111111111"))
    await meta.create_tenant(tenant("222222222222"))
    for name, tid in [("zeta", "111111111111"), ("alpha", "111111111111"), ("mid", "222222222222")]:
        await meta.create_bucket(BucketRecord(name=name, tenant_id=tid, region="eu-west-3", created_at=1.5))
    b = await meta.get_bucket("alpha")
    assert b == BucketRecord(name="alpha", tenant_id="111111111111", region="eu-west-3", created_at=1.5)
    assert await meta.get_bucket("nope") is None
    assert [b.name for b in await meta.list_buckets("111111111111")] == ["alpha", "zeta"]
    assert [b.name for b in await meta.list_buckets("222222222222")] == ["mid"]
    assert await meta.list_buckets("333333333333") == []


async def test_bucket_names_are_global(meta: MetadataStore) -> None:
    await meta.create_tenant(tenant("111111111111"))
    await meta.create_tenant(tenant("222222222222"))
    await meta.create_bucket(BucketRecord(name="shared", tenant_id="111111111111", region="r", created_at=1))
    for tid in ("111111111111", "222222222222"):
        with pytest.raises(AlreadyExists) as exc:
            await meta.create_bucket(BucketRecord(name="shared", tenant_id=tid, region="r", created_at=2))
        assert exc.value.owner_tenant_id == "111111111111"
    got = await meta.get_bucket("shared")
    assert got is not None and got.created_at == 1


async def test_delete_bucket(meta: MetadataStore) -> None:
    with pytest.raises(NotFound):
        await meta.delete_bucket("nope")
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "k"))
    with pytest.raises(NotEmpty):
        await meta.delete_bucket(b)
    await meta.delete_object(b, "k", "null")
    await meta.delete_bucket(b)
    assert await meta.get_bucket(b) is None
    with pytest.raises(NotFound):
        await meta.delete_bucket(b)


async def test_delete_bucket_not_empty_with_delete_marker_or_old_version(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "k", "v1"))
    await meta.put_object(obj(b, "k", "v2", delete_marker=True))
    assert (await meta.list_objects(b)).objects == []
    with pytest.raises(NotEmpty):
        await meta.delete_bucket(b)
    await meta.delete_object(b, "k", "v2")
    with pytest.raises(NotEmpty):  # v1 is the latest again
        await meta.delete_bucket(b)
    await meta.delete_object(b, "k", "v1")
    await meta.delete_bucket(b)


async def test_delete_bucket_takes_uploads_along(meta: MetadataStore) -> None:
    # In-progress multipart uploads do not keep a bucket alive (as on S3): they go with it,
    # and their part blobs are queued for collection in the same commit.
    b = await new_bucket(meta)
    await meta.create_upload(upload(b, "k", "u1"))
    p = part("u1", 1)
    await meta.put_part(p)
    await meta.delete_bucket(b)
    assert await meta.get_bucket(b) is None
    assert await meta.get_upload(b, "u1") is None
    assert p.blob_id in await garbage(meta)
    assert await meta.blob_referenced([p.blob_id]) == set()


# -- objects --

async def test_bucket_configs(meta: MetadataStore) -> None:
    b = await new_bucket(meta, "cfg")
    assert await meta.get_bucket_config(b, "tagging") is None
    await meta.put_bucket_config(b, "tagging", '{"a": "1"}')
    await meta.put_bucket_config(b, "cors", "[]")
    assert await meta.get_bucket_config(b, "tagging") == '{"a": "1"}'
    await meta.put_bucket_config(b, "tagging", '{"b": "2"}')  # replaced
    assert await meta.get_bucket_config(b, "tagging") == '{"b": "2"}'
    await meta.put_bucket_config(b, "tagging", None)  # removed
    assert await meta.get_bucket_config(b, "tagging") is None
    assert await meta.get_bucket_config(b, "cors") == "[]"
    with pytest.raises(NotFound):
        await meta.put_bucket_config("no-such-bucket", "cors", "[]")
    # Configuration goes with its bucket: a new bucket of the same name starts bare.
    await meta.delete_bucket(b)
    await new_bucket(meta, "cfg")
    assert await meta.get_bucket_config(b, "cors") is None


async def test_object_put_get(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    o = obj(b, "dir/ключ 😀", content_type="text/plain", headers={"Cache-Control": "no-cache"},
            user_meta={"a": "1"}, checksum_algorithm="CRC32", checksum_value="AAAAAA==",
            checksum_type="FULL_OBJECT")
    assert await meta.put_object(o) == []
    assert await meta.get_object(b, o.key) == o
    assert await meta.get_object(b, o.key, "null") == o
    assert await meta.get_object(b, "dir/other") is None
    assert await meta.get_object(b, o.key, "v9") is None
    assert await meta.get_object("other-bucket", o.key) is None


async def test_object_replace_releases_old_blob(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    first, second = blob_id(), blob_id()
    await meta.put_object(obj(b, "k", blob=first))
    released = await meta.put_object(obj(b, "k", blob=second, etag='"e2"'))
    assert released == [first]
    assert first in await garbage(meta)  # queued in the same commit: a crash loses nothing
    got = await meta.get_object(b, "k")
    assert got is not None and got.blob_id == second and got.etag == '"e2"'
    assert await meta.blob_referenced([first, second]) == {second}


async def test_object_versions(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    blobs = [blob_id() for _ in range(3)]
    for i, bl in enumerate(blobs):
        assert await meta.put_object(obj(b, "k", f"v{i}", blob=bl)) == []  # new versions release nothing
    latest = await meta.get_object(b, "k")
    assert latest is not None and latest.version_id == "v2" and latest.is_latest
    old = await meta.get_object(b, "k", "v0")
    assert old is not None and not old.is_latest and old.blob_id == blobs[0]
    # Deleting the latest version makes the newest remaining one latest.
    assert await meta.delete_object(b, "k", "v2") == [blobs[2]]
    latest = await meta.get_object(b, "k")
    assert latest is not None and latest.version_id == "v1" and latest.is_latest
    # Deleting an old version leaves the latest alone.
    assert await meta.delete_object(b, "k", "v0") == [blobs[0]]
    latest = await meta.get_object(b, "k")
    assert latest is not None and latest.version_id == "v1"
    assert await meta.delete_object(b, "k", "v0") == []  # already gone
    assert {blobs[0], blobs[2]} <= await garbage(meta)


async def test_delete_marker_hides_object(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "k", "v1"))
    await meta.put_object(obj(b, "k", "v2", delete_marker=True, size=0))
    got = await meta.get_object(b, "k")
    assert got is not None and got.is_delete_marker and got.blob_ids == []
    page = await meta.list_objects(b)
    assert page.objects == [] and not page.is_truncated


async def test_delete_object_missing(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    assert await meta.delete_object(b, "nope", "null") == []


async def test_delete_object_releases_parts(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    parts = await multipart_object(meta, b, "mp")
    released = await meta.delete_object(b, "mp", "null")
    assert sorted(released) == sorted(p.blob_id for p in parts)
    assert set(released) <= await garbage(meta)
    assert await meta.blob_referenced(released) == set()


# -- write conditions --

async def test_if_none_match_any(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    cond = WriteCondition(if_none_match_any=True)
    await meta.put_object(obj(b, "k"), cond)
    keep = await meta.get_object(b, "k")
    with pytest.raises(ConditionFailed):
        await meta.put_object(obj(b, "k", etag='"e2"'), cond)
    assert await meta.get_object(b, "k") == keep  # nothing changed
    # A delete marker is no current object.
    await meta.put_object(obj(b, "d", "v1"))
    await meta.put_object(obj(b, "d", "v2", delete_marker=True))
    await meta.put_object(obj(b, "d", "v3"), cond)


async def test_if_match(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    with pytest.raises(ConditionFailed):  # no object at all
        await meta.put_object(obj(b, "k"), WriteCondition(if_match='"e1"'))
    assert await meta.get_object(b, "k") is None
    await meta.put_object(obj(b, "k", etag='"e1"'))
    with pytest.raises(ConditionFailed):
        await meta.put_object(obj(b, "k", etag='"e3"'), WriteCondition(if_match='"e2"'))
    await meta.put_object(obj(b, "k", etag='"e2"'), WriteCondition(if_match='"e1"'))
    got = await meta.get_object(b, "k")
    assert got is not None and got.etag == '"e2"'
    await meta.put_object(obj(b, "k", "v2", delete_marker=True))
    with pytest.raises(ConditionFailed):  # the latest is a delete marker
        await meta.put_object(obj(b, "k", "v3"), WriteCondition(if_match='"e2"'))


async def test_empty_condition_always_holds(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "k"), WriteCondition())
    await meta.put_object(obj(b, "k"), WriteCondition())


async def test_condition_failure_rolls_back_release(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    first = blob_id()
    await meta.put_object(obj(b, "k", blob=first))
    with pytest.raises(ConditionFailed):
        await meta.put_object(obj(b, "k", blob=blob_id()), WriteCondition(if_none_match_any=True))
    assert first not in await garbage(meta)
    assert await meta.blob_referenced([first]) == {first}


# -- listing --

async def list_all(meta: MetadataStore, bucket: str, prefix: str, delimiter: str, page_size: int,
                   after: str = "") -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    for _ in range(10000):
        page = await meta.list_objects(bucket, prefix=prefix, delimiter=delimiter, start_after=after,
                                       max_keys=page_size)
        entries = [("key", o.key) for o in page.objects] + [("prefix", p) for p in page.common_prefixes]
        entries.sort(key=lambda e: e[1].encode())
        assert len(entries) <= page_size
        got += entries
        if not page.is_truncated:
            assert page.next_marker is None
            return got
        assert len(entries) == page_size  # never a short page that claims more
        assert page.next_marker == entries[-1][1]
        after = page.next_marker
    raise AssertionError("listing did not end")


TREE = ["a", "a/", "a/b", "a/b/c", "a/b/d", "a/c", "a//x", "ab", "b/1", "b/2", "b/3/x", "c-d--e", "c--f",
        "c-d-g", "d", "é", "z\uffff", "z\U0001F600", "Z", "z", "z+plus", "sp ace", "\u00ff", "\u0100/x"]


@pytest.mark.parametrize("prefix,delimiter", [
    ("", ""), ("", "/"), ("a", "/"), ("a/", "/"), ("a/b", "/"), ("", "--"), ("c-", "-"), ("", "b"),
    ("z", ""), ("nothing", "/"), ("", "\U0001F600"),
])
async def test_list_objects_matches_reference(meta: MetadataStore, prefix: str, delimiter: str) -> None:
    b = await new_bucket(meta)
    for k in TREE:
        await meta.put_object(obj(b, k))
    want = reference(TREE, prefix, delimiter, "")
    for size in range(1, 8):
        assert await list_all(meta, b, prefix, delimiter, size) == want, size
    assert await list_all(meta, b, prefix, delimiter, 1000) == want
    # Starting after any position (a key, a common prefix, or a string between) agrees too.
    for after in ["a", "a/", "a/b", "a/b/", "a/b/c", "b/", "b/2", "c", "z", "zz", "\U0001F600", ""]:
        assert await list_all(meta, b, prefix, delimiter, 3, after) == reference(TREE, prefix, delimiter, after)


async def test_list_objects_random_property(meta: MetadataStore) -> None:
    rnd = random.Random(1234)
    alphabet = ["a", "b", "/", "-", "é", "\uffff", "\U0001F600", "A"]
    keys = sorted({"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 6))) for _ in range(150)})
    b = await new_bucket(meta)
    for k in keys:
        await meta.put_object(obj(b, k))
    for _ in range(40):
        prefix = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 2)))
        delimiter = rnd.choice(["", "/", "-", "ab", "\U0001F600", "a/"])
        after = rnd.choice(["", rnd.choice(keys), rnd.choice(keys)[:2]])
        size = rnd.randint(1, 7)
        assert await list_all(meta, b, prefix, delimiter, size, after) == reference(keys, prefix, delimiter, after)


async def test_list_objects_utf8_byte_order(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    # UTF-16 order would put U+1F600 (a surrogate pair, 0xD83D...) before U+FFFF; UTF-8 puts it after.
    keys = ["\U0001F600", "\uffff", "a", "B", "é", "\u00ff", "~"]
    for k in keys:
        await meta.put_object(obj(b, k))
    page = await meta.list_objects(b)
    assert [o.key for o in page.objects] == ["B", "a", "~", "\u00e9", "\u00ff", "\uffff", "\U0001F600"]
    after = await meta.list_objects(b, start_after="\uffff")
    assert [o.key for o in after.objects] == ["\U0001F600"]


async def test_list_objects_hides_old_versions_and_markers(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "a", "v1"))
    await meta.put_object(obj(b, "a", "v2", etag='"new"'))
    await meta.put_object(obj(b, "b", "v1"))
    await meta.put_object(obj(b, "b", "v2", delete_marker=True))
    await meta.put_object(obj(b, "c/x", "v1", delete_marker=True))
    await meta.put_object(obj(b, "d"))
    page = await meta.list_objects(b, max_keys=1)
    assert [(o.key, o.etag) for o in page.objects] == [("a", '"new"')] and page.is_truncated
    page = await meta.list_objects(b, start_after="a", max_keys=1)
    assert [o.key for o in page.objects] == ["d"] and not page.is_truncated  # nothing listable after d
    page = await meta.list_objects(b, delimiter="/")
    assert page.common_prefixes == [] and [o.key for o in page.objects] == ["a", "d"]


async def test_list_objects_edges(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    empty = await meta.list_objects(b)
    assert (empty.objects, empty.common_prefixes, empty.is_truncated, empty.next_marker) == ([], [], False, None)
    for k in ["x/1", "x/2", "y"]:
        await meta.put_object(obj(b, k))
    zero = await meta.list_objects(b, max_keys=0)
    assert zero.objects == [] and zero.common_prefixes == [] and not zero.is_truncated
    # Exactly max_keys entries and nothing after: not truncated.
    page = await meta.list_objects(b, delimiter="/", max_keys=2)
    assert page.common_prefixes == ["x/"] and [o.key for o in page.objects] == ["y"]
    assert not page.is_truncated and page.next_marker is None
    page = await meta.list_objects(b, delimiter="/", max_keys=1)
    assert page.common_prefixes == ["x/"] and page.is_truncated and page.next_marker == "x/"
    page = await meta.list_objects(b, delimiter="/", max_keys=1, start_after="x/")
    assert [o.key for o in page.objects] == ["y"] and not page.is_truncated
    # Entries carry what a listing shows of the object's record.
    page = await meta.list_objects(b, prefix="x/2")
    rec = await meta.get_object(b, "x/2")
    assert rec is not None
    assert [(o.key, o.last_modified, o.etag, o.size, o.storage_class, o.owner, o.checksum_algorithm,
             o.checksum_type) for o in page.objects] == [
        (rec.key, rec.last_modified, rec.etag, rec.size, rec.storage_class, rec.owner, rec.checksum_algorithm,
         rec.checksum_type)]
    # Listing one bucket never shows another's keys.
    other = await new_bucket(meta, "other")
    assert (await meta.list_objects(other)).objects == []


# -- multipart uploads --

def upload(bucket: str, key: str, upload_id: str, initiated: float = 1.0) -> UploadRecord:
    return UploadRecord(upload_id=upload_id, bucket=bucket, key=key, tenant_id="111111111111", owner="c" * 64,
                        initiated=initiated, content_type="text/plain", user_meta={"m": "v"})


def part(upload_id: str, n: int, blob: str | None = None, etag: str | None = None) -> PartRecord:
    return PartRecord(upload_id=upload_id, part_number=n, size=5 << 20, etag=etag or f'"p{n}"',
                      blob_id=blob or blob_id(), dek=b"d" * 40, last_modified=time.time())


async def multipart_object(meta: MetadataStore, b: str, key: str, upload_id: str = "up1",
                           condition: WriteCondition | None = None) -> list[ObjectPartRecord]:
    await meta.create_upload(upload(b, key, upload_id))
    ps = [part(upload_id, n) for n in (1, 2)]
    for p in ps:
        await meta.put_part(p)
    pieces = [ObjectPartRecord(part_number=p.part_number, size=p.size, etag=p.etag, blob_id=p.blob_id, dek=p.dek)
              for p in ps]
    final = obj(b, key, etag='"mp-2"', size=sum(p.size for p in ps), parts_count=2)
    final = replace(final, blob_id=None, dek=None)
    await meta.complete_upload(upload_id, final, pieces, condition)
    return pieces


async def test_upload_lifecycle(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    u = upload(b, "big", "u1")
    await meta.create_upload(u)
    assert await meta.get_upload(b, "u1") == u
    assert await meta.get_upload("elsewhere", "u1") is None
    assert await meta.get_upload(b, "u2") is None
    first = part("u1", 1)
    assert await meta.put_part(first) == []
    again = part("u1", 1, etag='"p1b"')
    assert await meta.put_part(again) == [first.blob_id]  # replaced part's blob released
    assert first.blob_id in await garbage(meta)
    for n in (3, 2, 5):
        await meta.put_part(part("u1", n))
    assert [p.part_number for p in await meta.list_parts("u1")] == [1, 2, 3, 5]
    assert [p.part_number for p in await meta.list_parts("u1", part_number_marker=2)] == [3, 5]
    assert [p.part_number for p in await meta.list_parts("u1", max_parts=2)] == [1, 2]
    assert (await meta.list_parts("u1"))[0] == again
    listing = await meta.list_uploads(b)
    assert [x.upload_id for x in listing.uploads] == ["u1"] and not listing.is_truncated


async def test_put_part_after_abort(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.create_upload(upload(b, "k", "u1"))
    ps = [part("u1", n) for n in (1, 2)]
    for p in ps:
        await meta.put_part(p)
    released = await meta.abort_upload("u1")
    assert sorted(released) == sorted(p.blob_id for p in ps)
    assert set(released) <= await garbage(meta)
    assert await meta.get_upload(b, "u1") is None
    with pytest.raises(NotFound):
        await meta.put_part(part("u1", 3))
    with pytest.raises(NotFound):
        await meta.abort_upload("u1")


async def test_complete_upload(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    old = blob_id()
    await meta.put_object(obj(b, "k", blob=old))
    await meta.create_upload(upload(b, "k", "u1"))
    ps = [part("u1", n) for n in (1, 2, 3)]
    for p in ps:
        await meta.put_part(p)
    used = [ObjectPartRecord(part_number=p.part_number, size=p.size, etag=p.etag, blob_id=p.blob_id, dek=p.dek)
            for p in ps[:2]]  # part 3 left out
    final = replace(obj(b, "k", etag='"x-2"', size=10 << 20, parts_count=2), blob_id=None, dek=None)
    released = await meta.complete_upload("u1", final, used)
    assert sorted(released) == sorted([old, ps[2].blob_id])
    assert set(released) <= await garbage(meta)
    got = await meta.get_object(b, "k", with_parts=True)
    assert got is not None and got.parts == tuple(used) and got.parts_count == 2 and got.blob_id is None
    plain = await meta.get_object(b, "k")
    assert plain is not None and plain.parts_count == 2
    assert await meta.get_upload(b, "u1") is None
    assert await meta.list_parts("u1") == []
    assert await meta.blob_referenced([p.blob_id for p in ps] + [old]) == {ps[0].blob_id, ps[1].blob_id}
    with pytest.raises(NotFound):
        await meta.complete_upload("u1", final, used)


async def test_complete_upload_condition(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "k"))
    with pytest.raises(ConditionFailed):
        await multipart_object(meta, b, "k", "u1", WriteCondition(if_none_match_any=True))
    # The failed completion changed nothing: the upload and its parts are still there.
    assert await meta.get_upload(b, "u1") is not None
    assert len(await meta.list_parts("u1")) == 2
    got = await meta.get_object(b, "k")
    assert got is not None and got.parts_count == 0


# -- garbage --

async def test_garbage_queue(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    blobs = [blob_id() for _ in range(5)]
    for bl in blobs:
        await meta.put_object(obj(b, "k", blob=bl))
    queued = await meta.garbage_batch(1000)
    assert sorted(queued) == sorted(blobs[:4])
    assert len(await meta.garbage_batch(2)) == 2
    await meta.garbage_done(blobs[:2])
    assert sorted(await meta.garbage_batch()) == sorted(blobs[2:4])
    await meta.garbage_done([])
    await meta.garbage_done(blobs[2:4] + ["0" * 32])  # unknown ids are ignored
    assert await meta.garbage_batch() == []
    assert await meta.blob_referenced(blobs + ["f" * 32]) == {blobs[4]}
    assert await meta.blob_referenced([]) == set()


# -- object tags --

async def test_object_tags_round_trip(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    tags = {"project": "coffre", "empty": "", "ünï": "文字 + = . _ : / @"}
    await meta.put_object(obj(b, "tagged", tags=tags))
    await meta.put_object(obj(b, "plain"))
    got = await meta.get_object(b, "tagged")
    assert got is not None and got.tags == tags
    plain = await meta.get_object(b, "plain")
    assert plain is not None and plain.tags == {}
    page = await meta.list_objects(b)
    # A listing shows no tags (S3 lists none): its entries are light rows without them.
    assert [o.key for o in page.objects] == ["plain", "tagged"]
    assert not any(hasattr(o, "tags") for o in page.objects)


async def test_set_object_tags_changes_only_the_tags(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "k", tags={"a": "1"}, user_meta={"m": "v"}, content_type="text/plain"))
    before = await meta.get_object(b, "k")
    assert before is not None
    assert await meta.set_object_tags(b, "k", None, {"b": "2", "c": ""}) == "null"
    after = await meta.get_object(b, "k")
    assert after is not None and after.tags == {"b": "2", "c": ""}
    assert replace(after, tags=before.tags) == before  # nothing else moved (etag, dates, blob, metadata)
    assert await meta.set_object_tags(b, "k", "null", {}) == "null"
    cleared = await meta.get_object(b, "k")
    assert cleared is not None and cleared.tags == {}
    assert await garbage(meta) == set()  # re-tagging releases no blob


async def test_set_object_tags_on_a_given_version(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    await meta.put_object(obj(b, "k", "v1", tags={"old": "1"}))
    await meta.put_object(obj(b, "k", "v2"))
    assert await meta.set_object_tags(b, "k", "v1", {"old": "2"}) == "v1"
    v1 = await meta.get_object(b, "k", "v1")
    v2 = await meta.get_object(b, "k")
    assert v1 is not None and v1.tags == {"old": "2"} and not v1.is_latest
    assert v2 is not None and v2.version_id == "v2" and v2.tags == {}
    assert await meta.set_object_tags(b, "k", None, {"new": "x"}) == "v2"
    v2 = await meta.get_object(b, "k", "v2")
    assert v2 is not None and v2.tags == {"new": "x"}


async def test_set_object_tags_not_found(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    with pytest.raises(NotFound):
        await meta.set_object_tags(b, "missing", None, {"a": "1"})
    await meta.put_object(obj(b, "k"))
    with pytest.raises(NotFound):
        await meta.set_object_tags(b, "k", "no-such-version", {"a": "1"})
    with pytest.raises(NotFound):
        await meta.set_object_tags("other-bucket", "k", None, {"a": "1"})
    await meta.put_object(obj(b, "k", "dm", delete_marker=True))
    with pytest.raises(NotFound):  # a delete marker has no tags
        await meta.set_object_tags(b, "k", None, {"a": "1"})


async def test_upload_tags_land_on_the_completed_object(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    u = replace(upload(b, "k", "u1"), tags={"t": "1", "e": ""})
    await meta.create_upload(u)
    assert await meta.get_upload(b, "u1") == u
    listed = await meta.list_uploads(b)
    assert listed.uploads[0].tags == {"t": "1", "e": ""}
    assert (await meta.get_upload(b, "u1") or u).tags == {"t": "1", "e": ""}
    plain = upload(b, "k2", "u2")
    await meta.create_upload(plain)
    assert (await meta.get_upload(b, "u2") or u).tags == {}
    await meta.put_part(part("u1", 1))
    parts = await meta.list_parts("u1")
    pieces = [ObjectPartRecord(part_number=p.part_number, size=p.size, etag=p.etag, blob_id=p.blob_id, dek=p.dek)
              for p in parts]
    final = replace(obj(b, "k", etag='"x-1"', size=5 << 20, parts_count=1, tags=u.tags), blob_id=None, dek=None)
    await meta.complete_upload("u1", final, pieces)
    got = await meta.get_object(b, "k", with_parts=True)
    assert got is not None and got.tags == {"t": "1", "e": ""}


# -- versioning --

async def test_set_bucket_versioning(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    got = await meta.get_bucket(b)
    assert got is not None and got.versioning == ""
    for status in ("Enabled", "Suspended", "Enabled"):
        await meta.set_bucket_versioning(b, status)
        got = await meta.get_bucket(b)
        assert got is not None and got.versioning == status
    with pytest.raises(NotFound):
        await meta.set_bucket_versioning("no-such-bucket", "Enabled")


async def test_delete_version(meta: MetadataStore) -> None:
    b = await new_bucket(meta)
    b1, b2 = blob_id(), blob_id()
    await meta.put_object(obj(b, "k", "v1", blob=b1))
    await meta.put_object(obj(b, "k", "v2", blob=b2))
    await meta.put_object(obj(b, "k", "dm", delete_marker=True, size=0))
    # Removing the latest delete marker brings the newest remaining version back.
    removed, released = await meta.delete_version(b, "k", "dm")
    assert removed is not None and removed.is_delete_marker and removed.version_id == "dm" and released == []
    latest = await meta.get_object(b, "k")
    assert latest is not None and latest.version_id == "v2" and latest.is_latest
    removed, released = await meta.delete_version(b, "k", "v1")
    assert removed is not None and not removed.is_delete_marker and released == [b1]
    assert b1 in await garbage(meta)
    assert await meta.delete_version(b, "k", "v1") == (None, [])
    latest = await meta.get_object(b, "k")
    assert latest is not None and latest.version_id == "v2"


async def test_null_version_replaced_only(meta: MetadataStore) -> None:
    """A "null" write replaces the null version wherever it is, and becomes the latest."""
    b = await new_bucket(meta)
    n1, v = blob_id(), blob_id()
    await meta.put_object(obj(b, "k", "null", blob=n1))
    await meta.put_object(obj(b, "k", "v1", blob=v))
    released = await meta.put_object(obj(b, "k", "null", delete_marker=True, size=0))
    assert released == [n1]
    page = await meta.list_object_versions(b)
    assert [(o.version_id, o.is_latest, o.is_delete_marker) for o in page.entries] == [
        ("null", True, True), ("v1", False, False)]


def version_reference(model: list[tuple[str, str]], prefix: str, delimiter: str) -> list[tuple[str, str]]:
    """Entries (key, version) newest first per key, and ("prefix", p), in listing order."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for k, v in model:
        if not k.startswith(prefix):
            continue
        i = k.find(delimiter, len(prefix)) if delimiter else -1
        if i >= 0:
            cp = k[: i + len(delimiter)]
            if cp not in seen:
                seen.add(cp)
                out.append(("prefix", cp))
            continue
        out.append((k, v))
    return out


async def list_versions_all(meta: MetadataStore, bucket: str, prefix: str, delimiter: str,
                            page_size: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    key_marker, version_marker = "", ""
    for _ in range(10000):
        page = await meta.list_object_versions(bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
                                               version_id_marker=version_marker, max_keys=page_size)
        entries = [(o.key, o.version_id) for o in page.entries] + [("prefix", p) for p in page.common_prefixes]
        # Stable: versions of a key keep their newest-first order.
        entries.sort(key=lambda e: (e[1] if e[0] == "prefix" else e[0]).encode())
        assert len(entries) <= page_size
        got += entries
        if not page.is_truncated:
            assert page.next_key_marker is None and page.next_version_id_marker is None
            return got
        assert len(entries) == page_size
        assert page.next_key_marker is not None
        key_marker, version_marker = page.next_key_marker, page.next_version_id_marker or ""
    raise AssertionError("listing did not end")


async def test_list_object_versions_matches_reference(meta: MetadataStore) -> None:
    rnd = random.Random(99)
    b = await new_bucket(meta)
    keys = ["a", "a/", "a/b", "a/b/c", "b/1", "b/2", "c", "é", "\U0001F600", "\uffff", "z/x/y"]
    history: dict[str, list[str]] = {}
    for n in range(90):
        k = rnd.choice(keys)
        v = "null" if rnd.random() < 0.2 else f"v{n:03d}"
        if v in history.get(k, []):
            history[k].remove(v)  # a null write replaces the null version and becomes the latest
        history.setdefault(k, []).append(v)
        await meta.put_object(obj(b, k, v, delete_marker=rnd.random() < 0.2, size=0))
    model = [(k, v) for k in sorted(history, key=lambda s: s.encode()) for v in reversed(history[k])]
    page = await meta.list_object_versions(b)
    assert [(o.key, o.version_id) for o in page.entries] == model
    latest = {k: vs[-1] for k, vs in history.items()}
    assert all(o.is_latest == (latest[o.key] == o.version_id) for o in page.entries)
    for prefix, delimiter in [("", ""), ("", "/"), ("a", "/"), ("a/", "/"), ("b", ""), ("zz", "/")]:
        want = version_reference(model, prefix, delimiter)
        for size in (1, 2, 3, 7, 1000):
            assert await list_versions_all(meta, b, prefix, delimiter, size) == want, (prefix, delimiter, size)
    # A version marker that no longer exists resumes at the next key.
    k0 = model[0][0]
    page = await meta.list_object_versions(b, key_marker=k0, version_id_marker="gone")
    assert [(o.key, o.version_id) for o in page.entries] == [e for e in model if e[0].encode() > k0.encode()]
    # A key marker alone starts after every version of that key.
    page = await meta.list_object_versions(b, key_marker="a/b")
    assert [(o.key, o.version_id) for o in page.entries] == [e for e in model if e[0].encode() > b"a/b"]
    assert (await meta.list_object_versions(b, max_keys=0)).entries == []
