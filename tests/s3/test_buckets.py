"""Buckets against a real server with boto3: create, head, delete, location, ListBuckets, tenancy."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.server import Server
from tests.tenants import create_tenant


def name(tag: str = "b") -> str:
    return f"{tag}-{uuid.uuid4().hex[:16]}"


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def raw(endpoint: str, credentials: tuple[str, str], method: str, path: str, body: bytes = b"",
        headers: dict[str, str] | None = None) -> requests.Response:
    """A SigV4-signed request with exactly this body (for what SDKs never send)."""
    req = AWSRequest(method=method, url=endpoint + path, data=body, headers=dict(headers or {}))
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(*credentials), "s3", "us-east-1").add_auth(req)
    return requests.request(method, endpoint + path, data=body, headers=dict(req.headers.items()), timeout=30)


@pytest.fixture(scope="module")
def other(server, endpoint):
    """A boto3 client of another tenant on the shared server."""
    if server is None:
        pytest.skip("needs a local coffre server to add a tenant to")
    return make_client(endpoint, create_tenant(server))


@pytest.fixture(scope="module")
def paris(tmp_path_factory) -> Iterator[tuple[Server, object]]:
    """A deployment in eu-west-3, where S3 has none of us-east-1's legacy behaviours."""
    srv = Server(str(tmp_path_factory.mktemp("paris") / "data"), env={"COFFRE_REGION": "eu-west-3"}).start()
    try:
        from tests.server import ACCESS_KEY, SECRET_KEY
        yield srv, make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
    finally:
        srv.stop()


# -- CreateBucket --

def test_create_head_delete(s3) -> None:
    b = name()
    r = s3.create_bucket(Bucket=b)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["Location"] == "/" + b
    h = s3.head_bucket(Bucket=b)
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert b in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    r = s3.delete_bucket(Bucket=b)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=b)
    assert error(exc) == (404, "404")
    assert b not in [x["Name"] for x in s3.list_buckets()["Buckets"]]


def test_recreate_own_bucket_in_us_east_1_is_ok(s3, bucket) -> None:
    # AWS: "For legacy compatibility, if you re-create an existing bucket that you already
    # own in the North Virginia Region, Amazon S3 returns 200 OK".
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    r = s3.create_bucket(Bucket=bucket)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"  # untouched


def test_recreate_own_bucket_elsewhere_conflicts(paris) -> None:
    _, c = paris
    b = name()
    c.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    with pytest.raises(ClientError) as exc:
        c.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    assert error(exc) == (409, "BucketAlreadyOwnedByYou")
    assert exc.value.response["Error"]["BucketName"] == b
    with pytest.raises(ClientError) as exc:
        c.create_bucket(Bucket=b)
    assert error(exc) == (409, "BucketAlreadyOwnedByYou")


def test_region_of_a_deployment(paris) -> None:
    _, c = paris
    b = name()
    c.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    assert c.get_bucket_location(Bucket=b)["LocationConstraint"] == "eu-west-3"
    assert c.head_bucket(Bucket=b)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-3"
    assert {x["Name"]: x["BucketRegion"] for x in c.list_buckets()["Buckets"]}[b] == "eu-west-3"
    for other_region in ("us-east-1", "eu-west-1", "EU"):
        with pytest.raises(ClientError) as exc:
            c.create_bucket(Bucket=name(), CreateBucketConfiguration={"LocationConstraint": other_region})
        assert error(exc) == (400, "IllegalLocationConstraintException")


def test_location_in_us_east_1(s3, endpoint, credentials) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name(), CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error(exc) == (400, "IllegalLocationConstraintException")
    assert "eu-west-1" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name(), CreateBucketConfiguration={"LocationConstraint": "not-a-region"})
    assert error(exc) == (400, "InvalidLocationConstraint")
    # An empty constraint is no constraint.
    b = name()
    body = b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint/></CreateBucketConfiguration>'
    r = raw(endpoint, credentials, "PUT", "/" + b, body)
    assert r.status_code == 200, r.text
    assert s3.get_bucket_location(Bucket=b)["LocationConstraint"] is None  # us-east-1 reads as empty
    s3.delete_bucket(Bucket=b)


@pytest.mark.parametrize("body", [b"not xml", b"<CreateBucketConfiguration>", b"<Other><LocationConstraint/></Other>",
                                  b"<?xml version='1.0'?>"])
def test_create_bucket_malformed_xml(endpoint, credentials, s3, body: bytes) -> None:
    b = name()
    r = raw(endpoint, credentials, "PUT", "/" + b, body)
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text, r.text
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=b)
    assert error(exc) == (404, "404")


BAD_NAMES = ["ab", "a" * 64, "Abc", "abC", "a_b", "-abc", "abc-", ".abc", "abc.", "a..b", "a.-b", "a-.b",
             "192.168.5.4", "10.0.0.1", "xn--abc", "sthree-abc", "sthree-configurator", "amzn-s3-demo-x",
             "abc-s3alias", "abc--ol-s3", "abc.mrap", "abc--table-s3"]  # "--x-s3": boto3 treats it as S3 Express
GOOD_NAMES = ["abc", "a" * 63, "a.b-c", "1abc", "0-0", "my.bucket.name", "192.168.5.4x", "a--b", "xn-abc"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_invalid_bucket_names(s3, bad: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=bad)
    assert error(exc) == (400, "InvalidBucketName")


def test_valid_bucket_names(s3) -> None:
    for good in GOOD_NAMES:
        n = good if len(good) == 63 else f"{good}{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=n)
        s3.head_bucket(Bucket=n)
        s3.delete_bucket(Bucket=n)


# -- HeadBucket / DeleteBucket / GetBucketLocation --

def test_head_missing_bucket_has_no_body(endpoint, credentials) -> None:
    r = raw(endpoint, credentials, "HEAD", "/" + name("missing"))
    assert r.status_code == 404
    assert r.headers.get("Content-Length", "0") == "0"  # HEAD errors carry no XML


def test_delete_bucket_errors(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="x", Body=b"1")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert error(exc) == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=bucket, Key="x")
    missing = name("missing")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=missing)
    assert error(exc) == (404, "NoSuchBucket")
    assert exc.value.response["Error"]["BucketName"] == missing


def test_delete_bucket_with_uploads_in_progress(s3) -> None:
    b = name()
    s3.create_bucket(Bucket=b)
    s3.create_multipart_upload(Bucket=b, Key="pending")
    s3.delete_bucket(Bucket=b)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=b)
    assert error(exc) == (404, "404")


def test_get_bucket_location_us_east_1(s3, bucket) -> None:
    r = s3.get_bucket_location(Bucket=bucket)
    assert r["LocationConstraint"] is None
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_location(Bucket=name("missing"))
    assert error(exc) == (404, "NoSuchBucket")


# -- another tenant --

def test_another_tenants_bucket(s3, other, bucket, endpoint) -> None:
    with pytest.raises(ClientError) as exc:
        other.head_bucket(Bucket=bucket)
    assert error(exc) == (403, "403")
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket=bucket)
    assert error(exc) == (409, "BucketAlreadyExists")
    for call in (lambda: other.delete_bucket(Bucket=bucket), lambda: other.list_objects_v2(Bucket=bucket),
                 lambda: other.list_objects(Bucket=bucket), lambda: other.get_bucket_location(Bucket=bucket)):
        with pytest.raises(ClientError) as exc:
            call()
        assert error(exc) == (403, "AccessDenied")
    s3.head_bucket(Bucket=bucket)  # still there, still ours
    assert bucket not in [x["Name"] for x in other.list_buckets()["Buckets"]]
    # Bucket names are global: the other way round conflicts too.
    mine = name("theirs")
    other.create_bucket(Bucket=mine)
    try:
        with pytest.raises(ClientError) as exc:
            s3.create_bucket(Bucket=mine)
        assert error(exc) == (409, "BucketAlreadyExists")
        assert mine not in [x["Name"] for x in s3.list_buckets()["Buckets"]]
        owner = other.list_buckets()["Owner"]["ID"]
        assert owner != s3.list_buckets()["Owner"]["ID"]
    finally:
        other.delete_bucket(Bucket=mine)


# -- ListBuckets --

@pytest.fixture(scope="module")
def lister(server, endpoint):
    """A tenant of its own, so ListBuckets sees only this module's buckets."""
    if server is None:
        pytest.skip("needs a local coffre server to add a tenant to")
    c = make_client(endpoint, create_tenant(server))
    names = sorted(f"lb-{tag}-{uuid.uuid4().hex[:6]}" for tag in ["a1", "a2", "a3", "b1", "b2", "c1", "c2"])
    for n in names:
        c.create_bucket(Bucket=n)
    yield c, names
    for n in names:
        c.delete_bucket(Bucket=n)


def test_list_buckets(lister) -> None:
    c, names = lister
    r = c.list_buckets()
    assert [b["Name"] for b in r["Buckets"]] == names
    assert all(b["BucketRegion"] == "us-east-1" and b["CreationDate"] for b in r["Buckets"])
    assert len(r["Owner"]["ID"]) == 64
    assert "ContinuationToken" not in r


def test_list_buckets_prefix(lister) -> None:
    c, names = lister
    r = c.list_buckets(Prefix="lb-a")
    assert [b["Name"] for b in r["Buckets"]] == [n for n in names if n.startswith("lb-a")]
    assert r["Prefix"] == "lb-a"
    assert c.list_buckets(Prefix="zzz")["Buckets"] == []
    assert c.list_buckets(BucketRegion="us-east-1")["Buckets"] != []
    assert c.list_buckets(BucketRegion="eu-west-3")["Buckets"] == []


@pytest.mark.parametrize("size", [1, 2, 3, 6, 7, 8])
def test_list_buckets_pages(lister, size: int) -> None:
    c, names = lister
    seen: list[str] = []
    kwargs: dict[str, object] = {"MaxBuckets": size}
    for _ in range(20):
        r = c.list_buckets(**kwargs)
        page = [b["Name"] for b in r["Buckets"]]
        assert 0 < len(page) <= size
        seen += page
        if "ContinuationToken" not in r:
            break
        assert len(page) == size
        kwargs["ContinuationToken"] = r["ContinuationToken"]
    assert seen == names
    paged = [b["Name"] for p in c.get_paginator("list_buckets").paginate(PaginationConfig={"PageSize": size})
             for b in p["Buckets"]]
    assert paged == names


@pytest.mark.parametrize("query", ["max-buckets=0", "max-buckets=10001", "max-buckets=x", "continuation-token=%21%21"])
def test_list_buckets_invalid(endpoint, credentials, query: str) -> None:
    r = raw(endpoint, credentials, "GET", "/?" + query)
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, r.text


@pytest.mark.parametrize("encoded", ["abc%0A", "abc%20d", "ab%C3%A9c", "abc%2F"])
def test_invalid_bucket_names_sdks_refuse(endpoint, credentials, encoded: str) -> None:
    r = raw(endpoint, credentials, "PUT", "/" + encoded)
    assert r.status_code == 400 and "<Code>InvalidBucketName</Code>" in r.text, r.text
