"""GetObjectAttributes: GET /bucket/key?attributes."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from tests.s3.chunked_client import object_url, send, sign

ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def test_simple_object(s3, bucket):
    data = b"attributes"
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm="SHA256")
    r = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=ALL)
    assert r["ETag"] == hashlib.md5(data).hexdigest()  # no quotes here
    assert r["ETag"] == put["ETag"].strip('"')
    assert r["ObjectSize"] == len(data)
    assert r["StorageClass"] == "STANDARD"
    assert r["Checksum"] == {"ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
                             "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in r
    assert r["LastModified"] == s3.head_object(Bucket=bucket, Key="k")["LastModified"]


def test_only_requested_attributes(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert r["ObjectSize"] == 1
    for absent in ("ETag", "Checksum", "StorageClass", "ObjectParts"):
        assert absent not in r


def test_default_checksum_is_reported(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Checksum"])
    assert r["Checksum"]["ChecksumType"] == "FULL_OBJECT"
    assert len([k for k in r["Checksum"] if k.startswith("Checksum") and k != "ChecksumType"]) == 1


def test_missing_object_and_bucket(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="nope", ObjectAttributes=["ETag"])
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket="no-such-bucket-coffre-attr", Key="k", ObjectAttributes=["ETag"])
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"


def test_header_required_and_validated(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = object_url(endpoint, bucket, "k", "attributes=")
    s = sign("GET", url, credentials)
    r = send("GET", s.url, s.headers)
    assert r.status == 400 and r.error_code() == "InvalidRequest"
    s = sign("GET", url, credentials, headers={"x-amz-object-attributes": "ETag,ETags"})
    r = send("GET", s.url, s.headers)
    assert r.status == 400 and r.error_code() == "InvalidArgument"
    assert r.error()["ArgumentName"] == "x-amz-object-attributes"
    assert r.error()["ArgumentValue"] == "ETags"


def test_response_shape(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s = sign("GET", object_url(endpoint, bucket, "k", "attributes="), credentials,
             headers={"x-amz-object-attributes": "ETag,ObjectSize"})
    r = send("GET", s.url, s.headers)
    assert r.status == 200
    assert b'<GetObjectAttributesResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' in r.body
    assert b"<ETag>9dd4e461268c8034f5c8564e155c67a6</ETag>" in r.body
    assert r.headers["Last-Modified"]


@pytest.fixture
def multipart(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA1")
    bodies = [os.urandom(5 * 1024 * 1024), os.urandom(5 * 1024 * 1024), os.urandom(123)]
    parts = []
    for n, body in enumerate(bodies, 1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=body,
                           ChecksumAlgorithm="SHA1")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA1": r["ChecksumSHA1"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts})
    return bodies, parts, done


def test_multipart_parts(s3, bucket, multipart):
    bodies, parts, done = multipart
    r = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL)
    assert r["ETag"] == done["ETag"].strip('"') and r["ETag"].endswith("-3")
    assert r["ObjectSize"] == sum(len(b) for b in bodies)
    op = r["ObjectParts"]
    assert op["TotalPartsCount"] == 3
    assert op["IsTruncated"] is False
    assert [p["PartNumber"] for p in op["Parts"]] == [1, 2, 3]
    assert [p["Size"] for p in op["Parts"]] == [len(b) for b in bodies]
    assert [p["ChecksumSHA1"] for p in op["Parts"]] == [p["ChecksumSHA1"] for p in parts]
    assert r["Checksum"]["ChecksumSHA1"].endswith("-3")
    assert r["Checksum"]["ChecksumType"] == "COMPOSITE"


def test_multipart_parts_paging(s3, bucket, multipart):
    r = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2)
    op = r["ObjectParts"]
    assert [p["PartNumber"] for p in op["Parts"]] == [1, 2]
    assert op["IsTruncated"] is True and op["NextPartNumberMarker"] == 2 and op["MaxParts"] == 2
    r = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2,
                                 PartNumberMarker=op["NextPartNumberMarker"])
    op = r["ObjectParts"]
    assert [p["PartNumber"] for p in op["Parts"]] == [3]
    assert op["IsTruncated"] is False and op["PartNumberMarker"] == 2
