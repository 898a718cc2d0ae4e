"""Quotas enforced on every S3 write path (PUT, copy, multipart complete, CreateBucket),
with the error clients see, over HTTP against a real server and boto3.

Quotas are set, and usage read, through the operator's admin API, as an operator would.
Only fresh buckets get a bucket quota; a tenant quota is set for one test and removed
before it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from coffre.meta.records import Usage
from tests import tenants
from tests.server import TENANT, Server


class Admin:
    """The quotas and usage of the test tenant, through the admin API."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def set_bucket_quota(self, bucket: str, max_bytes: int | None = None, max_objects: int | None = None) -> None:
        tenants.set_bucket_quota(self.server, TENANT, bucket, max_bytes=max_bytes, max_objects=max_objects)

    def set_tenant_quota(self, max_buckets: int | None = None) -> None:
        tenants.set_quota(self.server, TENANT, max_buckets=max_buckets)

    def bucket_usage(self, bucket: str) -> Usage:
        doc = tenants.admin_client(self.server).call("GET", f"/tenants/{TENANT}/usage")
        for b in doc["buckets"]:
            if b["name"] == bucket:
                return Usage(bytes=b["usage"]["bytes"], objects=b["usage"]["objects"])
        raise AssertionError(f"no usage reported for {bucket}")


@pytest.fixture(scope="module")
def admin(server: Any) -> Admin:
    if server is None:
        pytest.skip("sets quotas through a local coffre server's admin API")
    return Admin(server)


@pytest.fixture
def limited(admin: Admin, bucket: str) -> Iterator[str]:
    """A fresh bucket; its quota goes with it when the fixture deletes it."""
    yield bucket
    admin.set_bucket_quota(bucket)


def refused(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    err = exc.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"]["Message"]


def test_put_over_a_bucket_bytes_quota_is_refused(s3: Any, admin: Admin, limited: str) -> None:
    admin.set_bucket_quota(limited, max_bytes=1000)
    s3.put_object(Bucket=limited, Key="a", Body=b"x" * 600)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=limited, Key="b", Body=b"y" * 401)
    assert refused(exc) == (403, "QuotaExceeded", "The bucket quota of 1000 bytes would be exceeded by this write.")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=limited, Key="b")
    # What an overwrite replaces is accounted for: 600 -> 1000 fits, exactly at the maximum.
    s3.put_object(Bucket=limited, Key="a", Body=b"z" * 1000)
    assert s3.get_object(Bucket=limited, Key="a")["Body"].read() == b"z" * 1000
    assert admin.bucket_usage(limited) == Usage(1000, 1)
    # Freeing space makes room again; a delete is never refused.
    s3.delete_object(Bucket=limited, Key="a")
    s3.put_object(Bucket=limited, Key="b", Body=b"y" * 401)
    assert admin.bucket_usage(limited) == Usage(401, 1)


def test_copy_over_an_objects_quota_is_refused(s3: Any, admin: Admin, limited: str) -> None:
    admin.set_bucket_quota(limited, max_objects=2)
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
        s3: Any, admin: Admin, limited: str) -> None:
    admin.set_bucket_quota(limited, max_bytes=1000)
    up = s3.create_multipart_upload(Bucket=limited, Key="big")["UploadId"]
    etag = s3.upload_part(Bucket=limited, Key="big", UploadId=up, PartNumber=1, Body=b"p" * 2000)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=limited, Key="big", UploadId=up, MultipartUpload=parts)
    assert refused(exc)[:2] == (403, "QuotaExceeded")
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=limited).get("Uploads", [])] == [up]
    assert admin.bucket_usage(limited) == Usage()
    admin.set_bucket_quota(limited, max_bytes=2000)
    s3.complete_multipart_upload(Bucket=limited, Key="big", UploadId=up, MultipartUpload=parts)
    assert admin.bucket_usage(limited) == Usage(2000, 1)


def test_concurrent_puts_never_exceed_an_objects_quota(s3: Any, admin: Admin, limited: str) -> None:
    admin.set_bucket_quota(limited, max_objects=5)

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
    assert admin.bucket_usage(limited) == Usage(500, 5)


def test_bucket_count_quota_refuses_create_bucket(s3: Any, admin: Admin, bucket: str) -> None:
    owned = len(s3.list_buckets()["Buckets"])
    admin.set_tenant_quota(max_buckets=owned)
    try:
        with pytest.raises(ClientError) as exc:
            s3.create_bucket(Bucket=bucket + "-more")
        status, code, message = refused(exc)
        assert (status, code) == (400, "TooManyBuckets")
        assert f"quota is {owned} buckets" in message
        assert bucket + "-more" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        admin.set_tenant_quota()
