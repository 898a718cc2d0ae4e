"""Object and bucket tags: Put/Get/DeleteObjectTagging, Put/Get/DeleteBucketTagging, the
x-amz-tagging header (PutObject, CreateMultipartUpload, CopyObject) and x-amz-tagging-count."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.s3.chunked_client import object_url, send, sign

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _tagset(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _tags(s3, bucket: str, key: str, **kw) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key, **kw)["TagSet"]}


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"].get("Message", "")


def _doc(pairs: list[tuple[str, str]]) -> bytes:
    from xml.sax.saxutils import escape

    tags = "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in pairs)
    return f'<Tagging xmlns="{NS}"><TagSet>{tags}</TagSet></Tagging>'.encode()


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def _raw(endpoint, credentials, method: str, bucket: str, key: str, query: str, body: bytes = b"",
         headers: dict[str, str] | None = None):
    s = sign(method, object_url(endpoint, bucket, key, query=query), credentials, headers=headers or {}, body=body)
    return send(method, s.url, s.headers, body)


# -- object tagging --

def test_object_tagging_round_trip(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"hello", Metadata={"m": "v"}, ContentType="text/plain")
    before = s3.head_object(Bucket=bucket, Key="k")
    assert "x-amz-tagging-count" not in before["ResponseMetadata"]["HTTPHeaders"]
    # An object without tags answers an empty tag set, not an error.
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []

    tags = {"project": "coffre", "empty": "", "b c+d-e=f.g_h:i/j@k": "2 + 2 = 4", "ünï": "文字"}
    r = s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": _tagset(tags)})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]
    assert got == _tagset(tags)  # document order kept

    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "4"
    get = s3.get_object(Bucket=bucket, Key="k")
    assert get["TagCount"] == 4 and get["Body"].read() == b"hello"
    # Tagging changes the tags only: not the ETag, the date, the metadata or the content type.
    assert head["ETag"] == put["ETag"] == before["ETag"]
    assert head["LastModified"] == before["LastModified"]
    assert head["Metadata"] == {"m": "v"} and head["ContentType"] == "text/plain"

    # A new set replaces the whole previous one.
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    assert _tags(s3, bucket, "k") == {"only": "one"}

    r = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert "x-amz-tagging-count" not in s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="k")
    # Deleting tags that are not there is fine; so is an empty tag set.
    assert s3.delete_object_tagging(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": []})
    assert _tags(s3, bucket, "k") == {}


def test_object_tagging_raw_document(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    r = _raw(endpoint, credentials, "GET", bucket, "k", "tagging=")
    assert r.status == 200
    assert r.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Tagging xmlns="' + NS.encode() + b'">')
    assert b"<TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>" in r.body
    assert "x-amz-version-id" not in {k.lower() for k in r.headers}
    # PutObjectTagging needs no digest (unlike PutBucketTagging); one that is sent must match.
    body = _doc([("b", "2")])
    assert _raw(endpoint, credentials, "PUT", bucket, "k", "tagging=", body).status == 200
    assert _tags(s3, bucket, "k") == {"b": "2"}
    bad = _raw(endpoint, credentials, "PUT", bucket, "k", "tagging=", body, {"Content-MD5": _md5(b"other")})
    assert (bad.status, bad.error_code()) == (400, "BadDigest")
    ok = _raw(endpoint, credentials, "PUT", bucket, "k", "tagging=", _doc([("c", "3")]),
              {"Content-MD5": _md5(_doc([("c", "3")]))})
    assert ok.status == 200 and ok.body == b""
    assert _tags(s3, bucket, "k") == {"c": "3"}


def test_object_tagging_version_id(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object_tagging(Bucket=bucket, Key="k", VersionId="null", Tagging={"TagSet": [{"Key": "v", "Value": "1"}]})
    assert _tags(s3, bucket, "k", VersionId="null") == {"v": "1"}
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert _error(e)[:2] == (404, "NoSuchVersion")
    with pytest.raises(ClientError) as e:
        s3.delete_object_tagging(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert _error(e)[:2] == (404, "NoSuchVersion")
    assert _tags(s3, bucket, "k") == {"v": "1"}


def test_object_tagging_missing_object_or_bucket(s3, bucket):
    for call in (lambda: s3.get_object_tagging(Bucket=bucket, Key="missing"),
                 lambda: s3.delete_object_tagging(Bucket=bucket, Key="missing"),
                 lambda: s3.put_object_tagging(Bucket=bucket, Key="missing",
                                               Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})):
        with pytest.raises(ClientError) as e:
            call()
        assert _error(e)[:2] == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket="no-such-bucket-" + uuid.uuid4().hex[:8], Key="k")
    assert _error(e)[:2] == (404, "NoSuchBucket")


def test_overwriting_an_object_drops_its_tags(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="a=1")
    assert _tags(s3, bucket, "k") == {"a": "1"}
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    assert _tags(s3, bucket, "k") == {}


def test_limits_accepted_at_the_boundary(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    tags = {f"key-{i}": f"value-{i}" for i in range(7)}
    tags["k" * 128] = "v" * 256
    tags["é" * 128] = "文" * 256  # characters, not bytes
    tags["𝒜" * 64] = ""  # an astral letter counts as two (UTF-16), as AWS counts
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": _tagset(tags)})
    assert _tags(s3, bucket, "k") == tags
    assert s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "10"


BAD_KEY = "The TagKey you have provided is invalid"
BAD_VALUE = "The TagValue you have provided is invalid"
SYSTEM = "System tags cannot be added/updated by requester"


@pytest.mark.parametrize("pairs, code, message", [
    ([(f"k{i}", "") for i in range(11)], "BadRequest", "Object tags cannot be greater than 10"),
    ([("a", "1"), ("a", "2")], "InvalidTag", "Cannot provide multiple Tags with the same key"),
    ([("k" * 129, "v")], "InvalidTag", BAD_KEY),
    ([("𝒜" * 65, "v")], "InvalidTag", BAD_KEY),
    ([("", "v")], "InvalidTag", BAD_KEY),
    ([("k", "v" * 257)], "InvalidTag", BAD_VALUE),
    ([("a,b", "v")], "InvalidTag", BAD_KEY),
    ([("a#b", "v")], "InvalidTag", BAD_KEY),
    ([("k", "a;b")], "InvalidTag", BAD_VALUE),
    ([("k", "a\tb")], "InvalidTag", BAD_VALUE),
    ([("k", "😀")], "InvalidTag", BAD_VALUE),
    ([("k", "value-\u0345")], "InvalidTag", BAD_VALUE),  # a combining mark
    ([("aws:cost", "v")], "InvalidTag", SYSTEM),
    ([("AWS:cost", "v")], "InvalidTag", None),
])
def test_put_object_tagging_refused(endpoint, credentials, s3, bucket, pairs, code, message):
    # Sent as is: boto3 itself refuses some of these documents (an empty key) before sending.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=me")
    body = _doc(pairs)
    r = _raw(endpoint, credentials, "PUT", bucket, "k", "tagging=", body, {"Content-MD5": _md5(body)})
    assert (r.status, r.error_code()) == (400, code)
    if message is not None:
        assert r.error()["Message"] == message
    assert _tags(s3, bucket, "k") == {"keep": "me"}  # nothing changed


def test_invalid_tag_error_names_the_tag(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = _raw(endpoint, credentials, "PUT", bucket, "k", "tagging=", _doc([("k", "a;b")]))
    err = r.error()
    assert (r.status, err["Code"], err["Message"]) == (400, "InvalidTag", BAD_VALUE)
    assert err["TagKey"] == "k" and err["TagValue"] == "a;b"
    r = _raw(endpoint, credentials, "PUT", bucket, "k", "tagging=", _doc([("a,b", "v")]))
    assert r.error()["TagKey"] == "a,b" and "TagValue" not in r.error()


@pytest.mark.parametrize("body, code", [
    (b"<Tagging><TagSet>", "MalformedXML"),
    (b"<Tagging></Tagging>", "MalformedXML"),
    (b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>", "MalformedXML"),
    (b"<Tagging><TagSet><Tag><Value>a</Value></Tag></TagSet></Tagging>", "MalformedXML"),
    (b"<Tagging><TagSet><Tag><Key>a</Key><Key>b</Key><Value>a</Value></Tag></TagSet></Tagging>", "MalformedXML"),
    (b"<Tags><TagSet></TagSet></Tags>", "MalformedXML"),
    (b"<Tagging><TagSet><Other/></TagSet></Tagging>", "MalformedXML"),
    (b"", "MissingRequestBodyError"),
])
def test_put_object_tagging_bad_documents(endpoint, credentials, s3, bucket, body, code):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=me")
    r = _raw(endpoint, credentials, "PUT", bucket, "k", "tagging=", body, {"Content-MD5": _md5(body)})
    assert (r.status, r.error_code()) == (400, code)
    assert _tags(s3, bucket, "k") == {"keep": "me"}


# -- the x-amz-tagging header --

@pytest.mark.parametrize("header, tags", [
    ("a=1&b=2", {"a": "1", "b": "2"}),
    ("a&b=", {"a": "", "b": ""}),
    ("a%20b=c%2Bd&e+f=g=h", {"a b": "c+d", "e f": "g=h"}),
    ("%C3%BC=%E6%96%87", {"ü": "文"}),
    ("", {}),
])
def test_put_object_tagging_header(s3, bucket, header, tags):
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello", Tagging=header)
    assert _tags(s3, bucket, "k") == tags
    hdrs = s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    assert hdrs.get("x-amz-tagging-count") == (str(len(tags)) if tags else None)


HEADER_MESSAGE = ("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters "
                  "without tag name duplicates.")


@pytest.mark.parametrize("header, code", [
    ("a=1&a=2", "InvalidArgument"),
    ("=1", "InvalidArgument"),
    ("a=%FF", "InvalidArgument"),
    ("&".join(f"k{i}=" for i in range(11)), "BadRequest"),
    ("a%2Cb=1", "InvalidTag"),
    ("aws%3Acost=1", "InvalidTag"),
    ("k=" + "v" * 257, "InvalidTag"),
])
def test_put_object_tagging_header_refused(endpoint, credentials, s3, bucket, header, code):
    r = _raw(endpoint, credentials, "PUT", bucket, "new", "", b"hello", {"x-amz-tagging": header})
    assert (r.status, r.error_code()) == (400, code)
    if code == "InvalidArgument":
        err = r.error()
        assert err["Message"] == HEADER_MESSAGE
        assert err["ArgumentName"] == "x-amz-tagging" and err["ArgumentValue"] == header
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="new")
    assert _error(e)[0] == 404  # nothing stored


# -- multipart uploads --

def test_multipart_upload_tags_land_on_the_object(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="team=storage&tier=")
    parts = []
    for n, data in ((1, b"a" * (5 << 20)), (2, b"tail")):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=data)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    assert _tags(s3, bucket, "mp") == {"team": "storage", "tier": ""}
    assert s3.head_object(Bucket=bucket, Key="mp")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"


def test_create_multipart_upload_refuses_bad_tags(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="a=1&a=2")
    assert _error(e)[:2] == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="aws:x=1")
    assert _error(e)[:2] == (400, "InvalidTag")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- CopyObject --

def test_copy_object_tagging_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", Tagging="a=1&b=2")
    # COPY (the default) takes the source's tags, whatever the metadata directive.
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    assert _tags(s3, bucket, "copy") == {"a": "1", "b": "2"}
    s3.copy_object(Bucket=bucket, Key="copy-meta", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"x": "y"})
    assert _tags(s3, bucket, "copy-meta") == {"a": "1", "b": "2"}
    s3.copy_object(Bucket=bucket, Key="copy-explicit", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="COPY", Tagging="ignored=1")
    assert _tags(s3, bucket, "copy-explicit") == {"a": "1", "b": "2"}
    # REPLACE takes the request's tags, none when it gives none.
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE", Tagging="c=3")
    assert _tags(s3, bucket, "replaced") == {"c": "3"}
    s3.copy_object(Bucket=bucket, Key="bare", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE")
    assert _tags(s3, bucket, "bare") == {}
    assert _tags(s3, bucket, "src") == {"a": "1", "b": "2"}  # the source is untouched


def test_copy_object_tagging_refused(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", Tagging="a=1")
    r = _raw(endpoint, credentials, "PUT", bucket, "dst", "", b"",
             {"x-amz-copy-source": f"/{bucket}/src", "x-amz-tagging-directive": "MERGE"})
    assert (r.status, r.error_code()) == (400, "InvalidArgument")
    assert r.error()["ArgumentName"] == "x-amz-tagging-directive"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       TaggingDirective="REPLACE", Tagging="&".join(f"k{i}=v" for i in range(11)))
    assert _error(e)[:2] == (400, "BadRequest")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="dst")
    assert _error(e)[0] == 404


# -- bucket tagging --

def test_bucket_tagging_round_trip(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert _error(e) == (404, "NoSuchTagSet", "The TagSet does not exist")
    tags = {f"tag-{i}": f"value {i}" for i in range(49)}
    tags["empty"] = ""
    r = s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": _tagset(tags)})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == _tagset(tags)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "only", "Value": "one"}]
    r = s3.delete_bucket_tagging(Bucket=bucket)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert _error(e)[:2] == (404, "NoSuchTagSet")
    assert s3.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.parametrize("pairs, code, message", [
    ([(f"k{i}", "") for i in range(51)], "BadRequest", "Bucket tag count cannot be greater than 50"),
    ([("a", "1"), ("a", "2")], "InvalidTag", "Cannot provide multiple Tags with the same key"),
    ([("aws:sometag", "nope")], "InvalidTag", SYSTEM),
    ([("k" * 129, "v")], "InvalidTag", BAD_KEY),
    ([("k", "a!b")], "InvalidTag", BAD_VALUE),
])
def test_put_bucket_tagging_refused(s3, bucket, pairs, code, message):
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "keep", "Value": "me"}]})
    with pytest.raises(ClientError) as e:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in pairs]})
    assert _error(e) == (400, code, message)
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "keep", "Value": "me"}]


def test_put_bucket_tagging_needs_a_digest(endpoint, credentials, s3, bucket):
    body = _doc([("a", "1")])
    r = _raw(endpoint, credentials, "PUT", bucket, "", "tagging=", body)
    assert (r.status, r.error_code()) == (400, "InvalidRequest")
    r = _raw(endpoint, credentials, "PUT", bucket, "", "tagging=", body, {"Content-MD5": _md5(b"x")})
    assert (r.status, r.error_code()) == (400, "BadDigest")
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket=bucket)
    r = _raw(endpoint, credentials, "PUT", bucket, "", "tagging=", body, {"Content-MD5": _md5(body)})
    assert r.status == 204
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "a", "Value": "1"}]
    # Tags of the bucket are not tags of its objects.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert _tags(s3, bucket, "k") == {}


def test_bucket_tagging_missing_bucket_and_recreation(s3):
    name = "t-" + uuid.uuid4().hex[:20]
    for call in (lambda: s3.get_bucket_tagging(Bucket=name), lambda: s3.delete_bucket_tagging(Bucket=name),
                 lambda: s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})):
        with pytest.raises(ClientError) as e:
            call()
        assert _error(e)[:2] == (404, "NoSuchBucket")
    # A deleted bucket's tags go with it.
    s3.create_bucket(Bucket=name)
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    try:
        with pytest.raises(ClientError) as e:
            s3.get_bucket_tagging(Bucket=name)
        assert _error(e)[:2] == (404, "NoSuchTagSet")
    finally:
        s3.delete_bucket(Bucket=name)
