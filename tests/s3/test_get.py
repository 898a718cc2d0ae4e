"""GetObject / HeadObject: ranges, part numbers, preconditions and response-* overrides."""

from __future__ import annotations

import datetime as dt
import os
from email.utils import format_datetime

import pytest
from botocore.exceptions import ClientError

from tests.s3.chunked_client import object_url, send, sign

DATA = bytes(range(256)) * 4  # 1024 bytes, every offset recognisable


@pytest.fixture
def obj(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="obj", Body=DATA)
    head = s3.head_object(Bucket=bucket, Key="obj")
    return {"bucket": bucket, "etag": r["ETag"], "last_modified": head["LastModified"]}


def _err(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-0", 0, 0),
    ("bytes=10-19", 10, 19),
    ("bytes=1000-", 1000, 1023),
    ("bytes=-24", 1000, 1023),
    ("bytes=-5000", 0, 1023),  # a suffix longer than the object is the whole object
    ("bytes=1000-99999", 1000, 1023),  # the last byte is clamped
    ("bytes=0-1023", 0, 1023),
])
def test_satisfiable_ranges(s3, obj, header, start, end):
    g = s3.get_object(Bucket=obj["bucket"], Key="obj", Range=header)
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["ContentRange"] == f"bytes {start}-{end}/1024"
    assert g["ContentLength"] == end - start + 1
    assert g["Body"].read() == DATA[start:end + 1]
    h = s3.head_object(Bucket=obj["bucket"], Key="obj", Range=header)
    assert h["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert h["ContentLength"] == end - start + 1
    assert h["ContentRange"] == f"bytes {start}-{end}/1024"


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges(endpoint, credentials, s3, obj, header):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=obj["bucket"], Key="obj", Range=header)
    assert _err(e) == (416, "InvalidRange")
    err = e.value.response["Error"]
    assert err["RangeRequested"] == header
    assert err["ActualObjectSize"] == "1024"
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == "bytes */1024"
    s = sign("HEAD", object_url(endpoint, obj["bucket"], "obj"), credentials, headers={"Range": header})
    r = send("HEAD", s.url, s.headers)
    assert r.status == 416 and r.body == b""


@pytest.mark.parametrize("header", ["bytes=5-2", "bytes=abc", "items=0-5", "bytes=0-1,4-5", "bytes=-"])
def test_ignored_ranges_serve_everything(s3, obj, header):
    g = s3.get_object(Bucket=obj["bucket"], Key="obj", Range=header)
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "ContentRange" not in g
    assert g["Body"].read() == DATA


def test_range_on_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="e", Body=b"")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="e", Range="bytes=0-")
    assert _err(e) == (416, "InvalidRange")


def test_part_number_on_simple_object(s3, obj):
    g = s3.get_object(Bucket=obj["bucket"], Key="obj", PartNumber=1)
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["ContentRange"] == "bytes 0-1023/1024"
    assert g["Body"].read() == DATA
    assert "PartsCount" not in g
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=obj["bucket"], Key="obj", PartNumber=2)
    assert _err(e) == (416, "InvalidPartNumber")


def test_part_number_with_range_is_refused(s3, obj):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=obj["bucket"], Key="obj", PartNumber=1, Range="bytes=0-1")
    assert _err(e) == (400, "InvalidRequest")


def test_part_number_out_of_bounds(endpoint, credentials, obj):
    for bad in ("0", "10001", "x"):
        s = sign("GET", object_url(endpoint, obj["bucket"], "obj", f"partNumber={bad}"), credentials)
        r = send("GET", s.url, s.headers)
        assert r.status == 400 and r.error_code() == "InvalidArgument"


def test_part_number_on_multipart_object(s3, bucket):
    try:
        up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    except ClientError as e:
        pytest.skip(f"multipart not available: {e}")
    p1, p2 = os.urandom(5 * 1024 * 1024), os.urandom(1000)
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=2, Body=p2)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    g = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["PartsCount"] == 2
    assert g["ContentRange"] == f"bytes {len(p1)}-{len(p1) + 999}/{len(p1) + 1000}"
    assert g["Body"].read() == p2
    h = s3.head_object(Bucket=bucket, Key="mp", PartNumber=1)
    assert h["ContentLength"] == len(p1) and h["PartsCount"] == 2
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=3)
    assert _err(e) == (416, "InvalidPartNumber")


# -- preconditions --
def _dates(obj):
    lm = obj["last_modified"].astimezone(dt.UTC)
    before = format_datetime(lm - dt.timedelta(hours=1), usegmt=True)
    after = format_datetime(lm + dt.timedelta(hours=1), usegmt=True)
    exact = format_datetime(lm, usegmt=True)
    return before, exact, after


def test_if_match(s3, obj):
    g = s3.get_object(Bucket=obj["bucket"], Key="obj", IfMatch=obj["etag"])
    assert g["Body"].read() == DATA
    # Unquoted, in a list, and "*" all match.
    s3.get_object(Bucket=obj["bucket"], Key="obj", IfMatch=obj["etag"].strip('"'))
    s3.get_object(Bucket=obj["bucket"], Key="obj", IfMatch=f'"nope", {obj["etag"]}')
    s3.get_object(Bucket=obj["bucket"], Key="obj", IfMatch="*")
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as e:
            call(Bucket=obj["bucket"], Key="obj", IfMatch='"0123"')
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=obj["bucket"], Key="obj", IfMatch='"0123"')
    assert _err(e) == (412, "PreconditionFailed")
    assert e.value.response["Error"]["Condition"] == "If-Match"


def test_if_none_match(s3, obj):
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as e:
            call(Bucket=obj["bucket"], Key="obj", IfNoneMatch=obj["etag"])
        r = e.value.response
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 304
        assert r["ResponseMetadata"]["HTTPHeaders"]["etag"] == obj["etag"]
        assert "last-modified" in r["ResponseMetadata"]["HTTPHeaders"]
    g = s3.get_object(Bucket=obj["bucket"], Key="obj", IfNoneMatch='"other"')
    assert g["Body"].read() == DATA


def test_if_modified_since(s3, obj):
    before, exact, after = _dates(obj)
    assert s3.get_object(Bucket=obj["bucket"], Key="obj", IfModifiedSince=before)["Body"].read() == DATA
    for when in (exact, after):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=obj["bucket"], Key="obj", IfModifiedSince=when)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_if_unmodified_since(s3, obj):
    before, exact, after = _dates(obj)
    s3.get_object(Bucket=obj["bucket"], Key="obj", IfUnmodifiedSince=after)
    s3.get_object(Bucket=obj["bucket"], Key="obj", IfUnmodifiedSince=exact)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=obj["bucket"], Key="obj", IfUnmodifiedSince=before)
    assert _err(e) == (412, "PreconditionFailed")


def test_if_match_true_beats_if_unmodified_since_false(s3, obj):
    # AWS: If-Match holds and If-Unmodified-Since fails -> 200.
    before, _, _ = _dates(obj)
    g = s3.get_object(Bucket=obj["bucket"], Key="obj", IfMatch=obj["etag"], IfUnmodifiedSince=before)
    assert g["Body"].read() == DATA


def test_if_none_match_false_beats_if_modified_since_true(s3, obj):
    # AWS: If-None-Match fails and If-Modified-Since holds -> 304.
    before, _, _ = _dates(obj)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=obj["bucket"], Key="obj", IfNoneMatch=obj["etag"], IfModifiedSince=before)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_if_match_false_beats_if_none_match(s3, obj):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=obj["bucket"], Key="obj", IfMatch='"x"', IfNoneMatch=obj["etag"])
    assert _err(e) == (412, "PreconditionFailed")


def test_unparsable_dates_are_ignored(endpoint, credentials, obj):
    s = sign("GET", object_url(endpoint, obj["bucket"], "obj"), credentials,
             headers={"If-Modified-Since": "not a date", "If-Unmodified-Since": "yesterday"})
    r = send("GET", s.url, s.headers)
    assert r.status == 200 and r.body == DATA


def test_conditions_on_missing_object_are_404(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="missing", IfMatch='"x"')
    assert _err(e) == (404, "NoSuchKey")


def test_conditions_apply_before_range(s3, obj):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=obj["bucket"], Key="obj", IfMatch='"x"', Range="bytes=5000-")
    assert _err(e) == (412, "PreconditionFailed")


# -- response-* overrides --
def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain", CacheControl="no-cache")
    g = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="application/json",
                      ResponseContentLanguage="de", ResponseExpires=dt.datetime(2040, 1, 1, tzinfo=dt.UTC),
                      ResponseCacheControl="max-age=1", ResponseContentDisposition='attachment; filename="a b.txt"',
                      ResponseContentEncoding="identity")
    raw = g["ResponseMetadata"]["HTTPHeaders"]
    assert raw["content-type"] == "application/json"
    assert raw["content-language"] == "de"
    assert raw["cache-control"] == "max-age=1"
    assert raw["content-disposition"] == 'attachment; filename="a b.txt"'
    assert raw["content-encoding"] == "identity"
    assert raw["expires"] == "Sun, 01 Jan 2040 00:00:00 GMT"
    # Only that response: the stored headers are unchanged.
    h = s3.head_object(Bucket=bucket, Key="o")
    assert h["ContentType"] == "text/plain" and h["CacheControl"] == "no-cache"
    h = s3.head_object(Bucket=bucket, Key="o", ResponseContentType="image/png")
    assert h["ContentType"] == "image/png"


def test_response_override_cannot_inject_headers(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    s = sign("GET", object_url(endpoint, bucket, "o", "response-content-type=a%0D%0AX-Evil%3A%201"), credentials)
    r = send("GET", s.url, s.headers)
    assert r.status == 400 and r.error_code() == "InvalidArgument"
    assert "X-Evil" not in r.headers
