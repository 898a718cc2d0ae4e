"""MetadataStore conformance for server-side encryption (issue #4): the SSE fields of objects,
multipart objects and uploads round-trip, a bucket's default encryption, and tenants' KMS keys."""

from __future__ import annotations

import time
import uuid

import pytest

from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, NotFound
from coffre.meta.records import (
    BucketRecord,
    KmsKeyRecord,
    ObjectPartRecord,
    ObjectRecord,
    PartRecord,
    SseRecord,
    UploadRecord,
)
from tests.conformance.test_meta import tenant

TID = "111111111111"
SSE_C = SseRecord("SSE-C", customer_check=b"\x01" * 16 + b"\x02" * 32)
SSE_KMS = SseRecord("aws:kms", kms_key_id=str(uuid.uuid4()), bucket_key=True, context_hash=b"\x03" * 32)


async def _bucket(meta: MetadataStore, name: str = "b") -> None:
    await meta.create_tenant(tenant(TID))
    await meta.create_bucket(BucketRecord(name=name, tenant_id=TID, region="us-east-1", created_at=time.time()))


def _obj(key: str, sse: SseRecord | None, **kw: object) -> ObjectRecord:
    return ObjectRecord(bucket="b", key=key, version_id="null", size=3, etag='"e"', last_modified=time.time(),
                        tenant_id=TID, owner="c" * 64, sse=sse, **kw)  # type: ignore[arg-type]


async def test_object_sse_round_trips(meta: MetadataStore) -> None:
    await _bucket(meta)
    for key, sse in (("plain", None), ("c", SSE_C), ("kms", SSE_KMS)):
        await meta.put_object(_obj(key, sse, blob_id=uuid.uuid4().hex, dek=b"d" * 40))
        got = await meta.get_object("b", key)
        assert got is not None and got.sse == sse
    listed = await meta.list_object_versions("b")
    assert {e.key: e.sse for e in listed.entries} == {"plain": None, "c": SSE_C, "kms": SSE_KMS}
    # Replaced by a plain version: the SSE fields go with the old one.
    await meta.put_object(_obj("c", None, blob_id=uuid.uuid4().hex, dek=b"d" * 40))
    got = await meta.get_object("b", "c")
    assert got is not None and got.sse is None


async def test_upload_sse_lands_on_the_completed_object(meta: MetadataStore) -> None:
    await _bucket(meta)
    up = UploadRecord(upload_id="u1", bucket="b", key="mp", tenant_id=TID, owner="c" * 64, initiated=time.time(),
                      sse=SSE_C)
    await meta.create_upload(up)
    got = await meta.get_upload("b", "u1")
    assert got is not None and got.sse == SSE_C
    plain = UploadRecord(upload_id="u2", bucket="b", key="p", tenant_id=TID, owner="c" * 64, initiated=time.time())
    await meta.create_upload(plain)
    got = await meta.get_upload("b", "u2")
    assert got is not None and got.sse is None
    parts = (ObjectPartRecord(part_number=1, size=3, etag='"p"', blob_id=uuid.uuid4().hex, dek=b"d" * 40),)
    await meta.put_part(PartRecord(upload_id="u1", part_number=1, size=3, etag='"p"', blob_id=parts[0].blob_id,
                                   dek=b"d" * 40, last_modified=time.time()))
    await meta.complete_upload("u1", _obj("mp", SSE_C, parts_count=1, parts=parts), parts, None)
    done = await meta.get_object("b", "mp", with_parts=True)
    assert done is not None and done.sse == SSE_C and len(done.parts) == 1


async def test_bucket_encryption(meta: MetadataStore) -> None:
    await _bucket(meta)
    got = await meta.get_bucket("b")
    assert got is not None and got.encryption is None
    await meta.set_bucket_encryption("b", '{"algorithm": "aws:kms"}')
    got = await meta.get_bucket("b")
    assert got is not None and got.encryption == '{"algorithm": "aws:kms"}'
    assert [b.encryption for b in await meta.list_buckets(TID)] == ['{"algorithm": "aws:kms"}']
    await meta.set_bucket_encryption("b", None)
    got = await meta.get_bucket("b")
    assert got is not None and got.encryption is None
    with pytest.raises(NotFound):
        await meta.set_bucket_encryption("nope", None)


async def test_kms_keys(meta: MetadataStore) -> None:
    await meta.create_tenant(tenant(TID))
    k1 = KmsKeyRecord(key_id=str(uuid.uuid4()), tenant_id=TID, wrapped_key=b"w" * 61, created_at=1.0,
                      description="first")
    k2 = KmsKeyRecord(key_id=str(uuid.uuid4()), tenant_id=TID, wrapped_key=b"x" * 61, created_at=2.0)
    other = KmsKeyRecord(key_id=str(uuid.uuid4()), tenant_id="222222222222", wrapped_key=b"y" * 61, created_at=1.5)
    for k in (k2, k1, other):
        await meta.create_kms_key(k)
    with pytest.raises(AlreadyExists):
        await meta.create_kms_key(k1)
    assert await meta.get_kms_key(k1.key_id) == k1
    assert await meta.get_kms_key(str(uuid.uuid4())) is None
    assert await meta.list_kms_keys(TID) == [k1, k2]
    await meta.set_kms_key_state(k1.key_id, "Disabled")
    got = await meta.get_kms_key(k1.key_id)
    assert got is not None and got.state == "Disabled"
    with pytest.raises(NotFound):
        await meta.set_kms_key_state(str(uuid.uuid4()), "Disabled")
