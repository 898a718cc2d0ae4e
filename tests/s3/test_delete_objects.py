"""DeleteObjects: POST /bucket?delete."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

from tests.s3.chunked_client import crc32_b64, object_url, send, sign

MISSING = "Missing required header for this request: Content-Md5"


def _post(endpoint, credentials, bucket, body: bytes, headers: dict[str, str]):
    s = sign("POST", object_url(endpoint, bucket, query="delete="), credentials, headers=headers, body=body)
    return send("POST", s.url, s.headers, body)


def _doc(keys, quiet=False) -> bytes:
    objs = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    q = "<Quiet>true</Quiet>" if quiet else ""
    return f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{q}{objs}</Delete>'.encode()


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def _keys(s3, bucket):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_delete_several(s3, bucket):
    for k in ("a", "b", "c/d", "x&y<z>"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ("a", "c/d", "missing", "x&y<z>")]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["a", "c/d", "missing", "x&y<z>"]
    assert "Errors" not in r
    assert _keys(s3, bucket) == ["b"]


def test_quiet_mode_reports_only_errors(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "zz"}], "Quiet": True})
    assert "Deleted" not in r and "Errors" not in r
    assert _keys(s3, bucket) == []


def test_per_key_errors(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="b", Body=b"1")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b", "VersionId": ""}],
                                                 "Quiet": True})
    assert [d["Key"] for d in r.get("Deleted", [])] == []
    assert len(r["Errors"]) == 1
    err = r["Errors"][0]
    assert err["Key"] == "b" and err["Code"] == "InvalidArgument" and err["Message"]
    assert _keys(s3, bucket) == ["b"]


def test_null_version_id(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": "null"}]})
    assert r["Deleted"] == [{"Key": "a", "VersionId": "null"}]
    assert _keys(s3, bucket) == []


def test_thousand_keys_allowed_more_is_malformed(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k-0", Body=b"1")
    body = _doc([f"k-{i}" for i in range(1000)], quiet=True)
    r = _post(endpoint, credentials, bucket, body, {"Content-MD5": _md5(body)})
    assert r.status == 200, r.body
    assert _keys(s3, bucket) == []
    s3.put_object(Bucket=bucket, Key="k-0", Body=b"1")
    body = _doc([f"k-{i}" for i in range(1001)], quiet=True)
    r = _post(endpoint, credentials, bucket, body, {"Content-MD5": _md5(body)})
    assert r.status == 400 and r.error_code() == "MalformedXML"
    assert _keys(s3, bucket) == ["k-0"]


def test_digest_is_required(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    body = _doc(["a"])
    r = _post(endpoint, credentials, bucket, body, {})
    assert r.status == 400 and r.error_code() == "InvalidRequest"
    assert r.error()["Message"] == MISSING
    assert _keys(s3, bucket) == ["a"]
    # Either digest is enough.
    assert _post(endpoint, credentials, bucket, body, {"x-amz-checksum-crc32": crc32_b64(body)}).status == 200
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    assert _post(endpoint, credentials, bucket, body, {"Content-MD5": _md5(body)}).status == 200
    assert _keys(s3, bucket) == []


def test_wrong_digest_is_refused(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    body = _doc(["a"])
    r = _post(endpoint, credentials, bucket, body, {"Content-MD5": _md5(b"something else")})
    assert r.status == 400 and r.error_code() == "BadDigest"
    r = _post(endpoint, credentials, bucket, body, {"x-amz-checksum-crc32": crc32_b64(b"other")})
    assert r.status == 400 and r.error_code() == "BadDigest"
    r = _post(endpoint, credentials, bucket, body, {"Content-MD5": "not base64!"})
    assert r.status == 400 and r.error_code() == "InvalidDigest"
    assert _keys(s3, bucket) == ["a"]


@pytest.mark.parametrize("body", [b"<Delete>", b"<Other><Object><Key>a</Key></Object></Other>",
                                  b"<Delete></Delete>", b"<Delete><Object><VersionId>x</VersionId></Object></Delete>",
                                  b"not xml at all"])
def test_malformed_documents(endpoint, credentials, bucket, body):
    r = _post(endpoint, credentials, bucket, body, {"Content-MD5": _md5(body)})
    assert r.status == 400 and r.error_code() == "MalformedXML", r.body


def test_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket="no-such-bucket-coffre-del", Delete={"Objects": [{"Key": "a"}]})
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"


def test_response_shape(endpoint, credentials, s3, bucket):
    body = _doc(["a"])
    r = _post(endpoint, credentials, bucket, body, {"Content-MD5": _md5(body)})
    assert r.status == 200
    assert b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' in r.body
    assert b"<Deleted><Key>a</Key></Deleted>" in r.body
