"""Quotas enforced on every S3 write path (PUT, copy, multipart complete, CreateBucket),
with the error clients see, over HTTP against a real server and boto3.

Quotas are set in the server's metadata store from this process (SQLite is safe to share
between processes; the server reads them inside each committing transaction), so these
tests do not depend on the admin API. Only fresh buckets get a bucket quota; a tenant
quota is set for one test and removed before it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError

from coffre.meta.records import QuotaRecord, Usage
from coffre.meta.sqlite import SQLiteMetadataStore
from coffre.settings import load_settings

T = TypeVar("T")


class Meta:
    """The running server's metadata store, opened briefly for each call."""

    def __init__(self, data_dir: str) -> None:
        self.path = load_settings(env={"COFFRE_DATA_DIR": data_dir}).meta_path

    def _run(self, fn: Callable[[SQLiteMetadataStore], Awaitable[T]]) -> T:
        async def go() -> T:
            store = SQLiteMetadataStore(self.path)
            await store.open()
            try:
                return await fn(store)
            finally:
                await store.close()

        return asyncio.run(go())

    def set_quota(self, quota: QuotaRecord) -> None:
        self._run(lambda m: m.set_quota(quota))

    def bucket_usage(self, bucket: str) -> Usage:
        return self._run(lambda m: m.bucket_usage(bucket))

    def tenant_of(self, bucket: str) -> str:
        rec = self._run(lambda m: m.get_bucket(bucket))
        assert rec is not None
        return str(rec.tenant_id)


@pytest.fixture(scope="module")
def meta(server: Any) -> Meta:
    if server is None:
        pytest.skip("sets quotas in a local coffre server's metadata store")
    return Meta(server.data_dir)


@pytest.fixture
def limited(meta: Meta, bucket: str) -> Iterator[str]:
    """A fresh bucket; its quota goes with it when the fixture deletes it."""
    yield bucket
    meta.set_quota(QuotaRecord(scope="bucket", target=bucket))


def refused(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    err = exc.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"]["Message"]


def test_put_over_a_bucket_bytes_quota_is_refused(s3: Any, meta: Meta, limited: str) -> None:
    meta.set_quota(QuotaRecord(scope="bucket", target=limited, max_bytes=1000))
    s3.put_object(Bucket=limited, Key="a", Body=b"x" * 600)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=limited, Key="b", Body=b"y" * 401)
    assert refused(exc) == (403, "QuotaExceeded", "The bucket quota of 1000 bytes would be exceeded by this write.")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=limited, Key="b")
    # What an overwrite replaces is accounted for: 600 -> 1000 fits, exactly at the maximum.
    s3.put_object(Bucket=limited, Key="a", Body=b"z" * 1000)
    assert s3.get_object(Bucket=limited, Key="a")["Body"].read() == b"z" * 1000
    assert meta.bucket_usage(limited) == Usage(1000, 1)
    # Freeing space makes room again; a delete is never refused.
    s3.delete_object(Bucket=limited, Key="a")
    s3.put_object(Bucket=limited, Key="b", Body=b"y" * 401)
    assert meta.bucket_usage(limited) == Usage(401, 1)


def test_copy_over_an_objects_quota_is_refused(s3: Any, meta: Meta, limited: str) -> None:
    meta.set_quota(QuotaRecord(scope="bucket", target=limited, max_objects=2))
    s3.put_object(Bucket=limited, Key="one", Body=b"1")
    s3.copy_object(Bucket=limited, Key="two", CopySource={"Bucket": limited, "Key": "one"})
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=limited, Key="three", CopySource={"Bucket": limited, "Key": "one"})
    assert refused(exc) == (403, "QuotaExceeded", "The bucket quota of 2 objects would be exceeded by this write.")
    # A copy onto an existing key replaces it: the count does not grow.
    s3.copy_object(Bucket=limited, Key="two", CopySource={"Bucket": limited, "Key": "one"},
                   MetadataDirective="REPLACE", Metadata={"m": "v"})
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=limited).get("Contents", [])]
    assert keys == ["one", "two"]


def test_multipart_complete_over_a_quota_is_refused_and_the_upload_kept(
        s3: Any, meta: Meta, limited: str) -> None:
    meta.set_quota(QuotaRecord(scope="bucket", target=limited, max_bytes=1000))
    up = s3.create_multipart_upload(Bucket=limited, Key="big")["UploadId"]
    etag = s3.upload_part(Bucket=limited, Key="big", UploadId=up, PartNumber=1, Body=b"p" * 2000)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=limited, Key="big", UploadId=up, MultipartUpload=parts)
    assert refused(exc)[:2] == (403, "QuotaExceeded")
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=limited).get("Uploads", [])] == [up]
    assert meta.bucket_usage(limited) == Usage()
    meta.set_quota(QuotaRecord(scope="bucket", target=limited, max_bytes=2000))
    s3.complete_multipart_upload(Bucket=limited, Key="big", UploadId=up, MultipartUpload=parts)
    assert meta.bucket_usage(limited) == Usage(2000, 1)


def test_concurrent_puts_never_exceed_an_objects_quota(s3: Any, meta: Meta, limited: str) -> None:
    meta.set_quota(QuotaRecord(scope="bucket", target=limited, max_objects=5))

    def put(i: int) -> bool:
        try:
            s3.put_object(Bucket=limited, Key=f"k{i:02}", Body=b"x" * 100)
            return True
        except ClientError as e:
            assert e.response["Error"]["Code"] == "QuotaExceeded"
            return False

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(put, range(30)))
    assert sum(outcomes) == 5
    assert len(s3.list_objects_v2(Bucket=limited).get("Contents", [])) == 5
    assert meta.bucket_usage(limited) == Usage(500, 5)


def test_bucket_count_quota_refuses_create_bucket(s3: Any, meta: Meta, bucket: str) -> None:
    tenant = meta.tenant_of(bucket)
    owned = len(s3.list_buckets()["Buckets"])
    meta.set_quota(QuotaRecord(scope="tenant", target=tenant, max_buckets=owned))
    try:
        with pytest.raises(ClientError) as exc:
            s3.create_bucket(Bucket=bucket + "-more")
        status, code, message = refused(exc)
        assert (status, code) == (400, "TooManyBuckets")
        assert f"quota is {owned} buckets" in message
        assert bucket + "-more" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        meta.set_quota(QuotaRecord(scope="tenant", target=tenant))
