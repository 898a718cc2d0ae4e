"""CopyObject: within and across buckets, metadata directives, self-copy rules, source preconditions."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import zlib

import pytest
from botocore.exceptions import ClientError

from tests.s3.chunked_client import object_url, send, sign

SELF_COPY = ("This copy request is illegal because it is trying to copy an object to itself without changing "
             "the object's metadata, storage class, website redirect location or encryption attributes.")


def _err(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def test_copy_within_bucket_keeps_metadata(s3, bucket):
    data = os.urandom(3000)
    s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"a": "1"}, ContentType="text/csv",
                  CacheControl="no-store", ContentDisposition="inline")
    r = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       Metadata={"ignored": "x"}, ContentType="ignored/by-copy")
    res = r["CopyObjectResult"]
    assert res["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert isinstance(res["LastModified"], dt.datetime)
    assert r["ServerSideEncryption"] == "AES256"
    g = s3.get_object(Bucket=bucket, Key="dst")
    assert g["Body"].read() == data
    assert g["Metadata"] == {"a": "1"}
    assert g["ContentType"] == "text/csv"
    assert g["CacheControl"] == "no-store"
    assert g["ContentDisposition"] == "inline"
    assert g["ETag"] == res["ETag"]


def test_copy_replace_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"abc", Metadata={"a": "1"}, ContentType="text/csv",
                  CacheControl="no-store")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="application/json")
    h = s3.head_object(Bucket=bucket, Key="dst")
    assert h["Metadata"] == {"b": "2"}
    assert h["ContentType"] == "application/json"
    assert "CacheControl" not in h


def test_copy_across_buckets(s3, bucket, other_bucket):
    data = os.urandom(10)
    s3.put_object(Bucket=bucket, Key="a/b c+d", Body=data)
    s3.copy_object(Bucket=other_bucket, Key="x/y", CopySource={"Bucket": bucket, "Key": "a/b c+d"})
    assert s3.get_object(Bucket=other_bucket, Key="x/y")["Body"].read() == data
    # The source is untouched.
    assert s3.get_object(Bucket=bucket, Key="a/b c+d")["Body"].read() == data


def test_copy_source_with_special_characters(s3, bucket):
    key = "dir/ünï cødé?&=%2F#.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"special")
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == b"special"
    # The string form (botocore percent-encodes it, '?' included).
    s3.copy_object(Bucket=bucket, Key="copied2", CopySource=f"{bucket}/{key}")
    assert s3.get_object(Bucket=bucket, Key="copied2")["Body"].read() == b"special"


def test_copy_overwrites_destination(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"new")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"old-and-longer", Metadata={"old": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    g = s3.get_object(Bucket=bucket, Key="dst")
    assert g["Body"].read() == b"new" and g["Metadata"] == {}


def test_copy_large_object(s3, bucket):
    data = os.urandom(6 * 1024 * 1024 + 3)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    s3.copy_object(Bucket=bucket, Key="big2", CopySource={"Bucket": bucket, "Key": "big"})
    got = s3.get_object(Bucket=bucket, Key="big2")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_copy_to_itself_without_change_is_illegal(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"a": "1"})
    for extra in ({}, {"MetadataDirective": "COPY"}, {"Metadata": {"b": "2"}}):
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"}, **extra)
        assert _err(e) == (400, "InvalidRequest")
        assert e.value.response["Error"]["Message"] == SELF_COPY


def test_copy_to_itself_with_replace_updates_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"body", Metadata={"a": "1"})
    before = s3.head_object(Bucket=bucket, Key="k")
    s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"},
                   MetadataDirective="REPLACE", Metadata={"a": "2"}, ContentType="text/plain")
    g = s3.get_object(Bucket=bucket, Key="k")
    assert g["Body"].read() == b"body"
    assert g["Metadata"] == {"a": "2"} and g["ContentType"] == "text/plain"
    assert g["ETag"] == before["ETag"]


def test_copy_to_itself_with_other_changes_is_allowed(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"body", Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"}, ServerSideEncryption="AES256")
    s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"}, ChecksumAlgorithm="SHA256")
    h = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert h["Metadata"] == {"a": "1"}
    assert h["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"body").digest()).decode()


def test_unknown_metadata_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "k"}, MetadataDirective="MERGE")
    assert _err(e) == (400, "InvalidArgument")


def test_copy_missing_source(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "missing"})
    assert _err(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": "no-such-bucket-coffre-zz", "Key": "k"})
    assert _err(e) == (404, "NoSuchBucket")


def test_bad_copy_source_header(endpoint, credentials, bucket):
    s = sign("PUT", object_url(endpoint, bucket, "d"), credentials, headers={"x-amz-copy-source": "just-a-bucket"})
    r = send("PUT", s.url, s.headers)
    assert r.status == 400 and r.error_code() == "InvalidArgument"


def test_copy_source_preconditions(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"x")["ETag"]
    lm = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    src = {"Bucket": bucket, "Key": "src"}
    past, future = lm - dt.timedelta(hours=1), lm + dt.timedelta(hours=1)
    ok = [dict(CopySourceIfMatch=etag), dict(CopySourceIfNoneMatch='"other"'),
          dict(CopySourceIfModifiedSince=past), dict(CopySourceIfUnmodifiedSince=future),
          # AWS precedence: If-Match true wins over If-Unmodified-Since false.
          dict(CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=past)]
    for cond in ok:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **cond)
    failing = [dict(CopySourceIfMatch='"other"'), dict(CopySourceIfNoneMatch=etag),
               dict(CopySourceIfModifiedSince=future), dict(CopySourceIfUnmodifiedSince=past),
               # If-None-Match false and If-Modified-Since true: 412 (never 304 on a copy).
               dict(CopySourceIfNoneMatch=etag, CopySourceIfModifiedSince=past)]
    for cond in failing:
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="dst2", CopySource=src, **cond)
        assert _err(e) == (412, "PreconditionFailed"), cond
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="dst2")


def test_copy_keeps_source_checksum_algorithm(s3, bucket):
    data = b"checksum me"
    s3.put_object(Bucket=bucket, Key="src", Body=data, ChecksumAlgorithm="CRC32")
    r = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert r["CopyObjectResult"]["ChecksumCRC32"] == crc
    assert r["CopyObjectResult"]["ChecksumType"] == "FULL_OBJECT"
    h = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == crc


def test_copy_with_requested_checksum_algorithm(s3, bucket):
    data = b"checksum me"
    s3.put_object(Bucket=bucket, Key="src", Body=data, ChecksumAlgorithm="CRC32")
    r = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       ChecksumAlgorithm="SHA1")
    sha1 = base64.b64encode(hashlib.sha1(data).digest()).decode()
    assert r["CopyObjectResult"]["ChecksumSHA1"] == sha1
    assert "ChecksumCRC32" not in r["CopyObjectResult"]


def test_copy_conditional_on_destination(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"y")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*")
    assert _err(e) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"y"


def test_copy_storage_class(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   StorageClass="STANDARD_IA")
    assert s3.head_object(Bucket=bucket, Key="src")["StorageClass"] == "STANDARD_IA"


def test_copy_metadata_too_large_on_replace(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       MetadataDirective="REPLACE", Metadata={"m": "v" * 2100})
    assert _err(e) == (400, "MetadataTooLarge")


def test_copy_multipart_source(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32C")
    p1, p2 = os.urandom(5 * 1024 * 1024), os.urandom(777)
    parts = []
    for n, body in ((1, p1), (2, p2)):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=body,
                           ChecksumAlgorithm="CRC32C")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32C": r["ChecksumCRC32C"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    r = s3.copy_object(Bucket=bucket, Key="flat", CopySource={"Bucket": bucket, "Key": "mp"})
    # The copy is one new object: its ETag is the MD5 of the bytes, its checksum a full-object one.
    assert r["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(p1 + p2).hexdigest()}"'
    assert "ChecksumCRC32C" in r["CopyObjectResult"]
    assert s3.get_object(Bucket=bucket, Key="flat")["Body"].read() == p1 + p2
