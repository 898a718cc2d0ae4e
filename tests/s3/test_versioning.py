"""Bucket versioning with boto3: states, versions, delete markers, "null" versions, listing."""

from __future__ import annotations

import random
import uuid
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from tests.s3.chunked_client import object_url, send, sign

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def _headers(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, str]:
    return exc.value.response["ResponseMetadata"]["HTTPHeaders"]


def _listing(s3, bucket: str, **kw) -> dict:
    """One ListObjectVersions page in the server's own order (boto3 splits versions from markers).

    entries: (key, version id, is latest, is delete marker); prefixes; truncated; next markers.
    """
    bodies: list[bytes] = []

    def grab(http_response, **_):  # type: ignore[no-untyped-def]
        bodies.append(http_response.content)

    s3.meta.events.register("after-call.s3.ListObjectVersions", grab)
    try:
        r = s3.list_object_versions(Bucket=bucket, **kw)
    finally:
        s3.meta.events.unregister("after-call.s3.ListObjectVersions", grab)
    root = ET.fromstring(bodies[-1])
    entries = []
    for el in root:
        tag = el.tag.split("}")[-1]
        if tag in ("Version", "DeleteMarker"):
            entries.append((el.findtext(f"{NS}Key"), el.findtext(f"{NS}VersionId"),
                            el.findtext(f"{NS}IsLatest") == "true", tag == "DeleteMarker"))
    return {"entries": entries, "prefixes": [p["Prefix"] for p in r.get("CommonPrefixes", [])],
            "truncated": r["IsTruncated"], "next_key": r.get("NextKeyMarker"),
            "next_version": r.get("NextVersionIdMarker"), "response": r}


def _versions(s3, bucket: str, key: str) -> list[tuple[str, bool, bool]]:
    """(version id, is latest, is delete marker) of one key, newest first."""
    page = _listing(s3, bucket, Prefix=key)
    return [(vid, latest, dm) for k, vid, latest, dm in page["entries"] if k == key]


@pytest.fixture
def vbucket(s3):
    """A bucket with versioning enabled, every version removed afterwards."""
    name = "v-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    _purge(s3, name)


def _purge(s3, name: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if items:
            s3.delete_objects(Bucket=name, Delete={"Objects": items, "Quiet": True})
    s3.delete_bucket(Bucket=name)


# -- configuration --

def test_versioning_states(s3, bucket):
    r = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in r and "MFADelete" not in r
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Disabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})


def test_versioning_bad_configurations(endpoint, credentials, s3, bucket):
    for body in (b"<VersioningConfiguration><Status>Disabled</Status></VersioningConfiguration>",
                 b"<Other><Status>Enabled</Status></Other>", b"not xml",
                 b"<VersioningConfiguration><Status>enabled</Status></VersioningConfiguration>",
                 b"<VersioningConfiguration><Bogus>1</Bogus></VersioningConfiguration>"):
        r = _raw(endpoint, credentials, "PUT", bucket, "", "versioning=", body)
        assert r.status == 400 and r.error_code() == "MalformedXML", (body, r.body)
    r = _raw(endpoint, credentials, "PUT", bucket, "", "versioning=",
             b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Enabled</MfaDelete>"
             b"</VersioningConfiguration>")
    assert r.status == 501 and r.error_code() == "NotImplemented"
    # Nothing was changed by a refused request.
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_versioning(Bucket="no-such-bucket-coffre-ver")
    assert _error(e) == (404, "NoSuchBucket")


def _raw(endpoint, credentials, method: str, bucket: str, key: str, query: str, body: bytes = b""):
    signed = sign(method, object_url(endpoint, bucket, key, query=query), credentials, body=body)
    return send(method, signed.url, signed.headers, body)


# -- versions --

def test_enabled_bucket_keeps_every_version(s3, vbucket):
    ids = [s3.put_object(Bucket=vbucket, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(3)]
    assert len(set(ids)) == 3 and "null" not in ids
    for vid in ids:
        assert len(vid) >= 32 and vid.replace("-", "").replace("_", "").isalnum()
    for i, vid in enumerate(ids):
        r = s3.get_object(Bucket=vbucket, Key="k", VersionId=vid)
        assert r["Body"].read() == f"v{i}".encode() and r["VersionId"] == vid
        assert s3.head_object(Bucket=vbucket, Key="k", VersionId=vid)["VersionId"] == vid
    r = s3.get_object(Bucket=vbucket, Key="k")
    assert r["Body"].read() == b"v2" and r["VersionId"] == ids[2]
    assert _versions(s3, vbucket, "k") == [(ids[2], True, False), (ids[1], False, False), (ids[0], False, False)]
    # Listings show only the latest version.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=vbucket)["Contents"]] == ["k"]


def test_delete_marker(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="k", Body=b"one")["VersionId"]
    r = s3.delete_object(Bucket=vbucket, Key="k")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert r["DeleteMarker"] is True
    marker = r["VersionId"]
    assert marker not in (v1, "null")
    assert s3.list_objects_v2(Bucket=vbucket).get("KeyCount") == 0
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=vbucket, Key="k")
    assert _error(e) == (404, "NoSuchKey")
    assert _headers(e)["x-amz-delete-marker"] == "true" and _headers(e)["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=vbucket, Key="k")
    assert _error(e)[0] == 404
    assert _headers(e)["x-amz-delete-marker"] == "true" and _headers(e)["x-amz-version-id"] == marker
    # Naming the marker: 405 MethodNotAllowed, on GET and HEAD.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert _error(e) == (405, "MethodNotAllowed")
    assert _headers(e)["x-amz-delete-marker"] == "true"
    assert e.value.response["Error"].get("ResourceType") == "DeleteMarker"
    assert e.value.response["Error"].get("Method") == "GET"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert _error(e)[0] == 405 and _headers(e)["x-amz-delete-marker"] == "true"
    assert _headers(e)["last-modified"].endswith(" GMT")
    # The old version is still there.
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert _versions(s3, vbucket, "k") == [(marker, True, True), (v1, False, False)]
    # Deleting the marker "undeletes" the object.
    r = s3.delete_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert r["DeleteMarker"] is True and r["VersionId"] == marker
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"one"
    assert _versions(s3, vbucket, "k") == [(v1, True, False)]


def test_delete_marker_for_missing_key(s3, vbucket):
    r = s3.delete_object(Bucket=vbucket, Key="never")
    assert r["DeleteMarker"] is True
    assert _versions(s3, vbucket, "never") == [(r["VersionId"], True, True)]


def test_delete_version_permanently(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="k", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=vbucket, Key="k", Body=b"2")["VersionId"]
    r = s3.delete_object(Bucket=vbucket, Key="k", VersionId=v2)
    assert r["VersionId"] == v2 and "DeleteMarker" not in r
    # The newest remaining version becomes the current one.
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"1"
    assert _versions(s3, vbucket, "k") == [(v1, True, False)]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=vbucket, Key="k", VersionId=v2)
    assert _error(e) == (404, "NoSuchVersion")
    assert e.value.response["Error"].get("VersionId") == v2
    # Deleting it again, or an id never issued, still succeeds.
    assert s3.delete_object(Bucket=vbucket, Key="k", VersionId=v2)["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=v1)
    assert _versions(s3, vbucket, "k") == []


def test_version_id_validation(s3, vbucket):
    s3.put_object(Bucket=vbucket, Key="k", Body=b"1")
    for call in (lambda v: s3.get_object(Bucket=vbucket, Key="k", VersionId=v),
                 lambda v: s3.delete_object(Bucket=vbucket, Key="k", VersionId=v),
                 lambda v: s3.get_object_tagging(Bucket=vbucket, Key="k", VersionId=v)):
        with pytest.raises(ClientError) as e:
            call("abc")
        assert _error(e) == (400, "InvalidArgument")
        with pytest.raises(ClientError) as e:
            call("")
        assert _error(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=vbucket, Key="k", VersionId="abc")
    assert _error(e)[0] == 400
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=vbucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert _error(e) == (404, "NoSuchVersion")


def test_pre_versioning_object_is_the_null_version(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    # An unversioned bucket shows no version id at all.
    assert "VersionId" not in s3.head_object(Bucket=bucket, Key="k")
    assert "VersionId" not in s3.get_object(Bucket=bucket, Key="k")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    try:
        v = s3.put_object(Bucket=bucket, Key="k", Body=b"new")["VersionId"]
        got = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
        assert got["Body"].read() == b"old" and got["VersionId"] == "null"
        assert _versions(s3, bucket, "k") == [(v, True, False), ("null", False, False)]
    finally:
        for vid in ("null", v):
            s3.delete_object(Bucket=bucket, Key="k", VersionId=vid)


def test_suspended_bucket_null_semantics(s3, bucket):
    """AWS's walk-through: enable, put, suspend, put, put, list, delete, list."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"enabled")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"null-1")
    # AWS's PutObject answer in a suspended bucket carries no version id; GET and HEAD say "null".
    assert "VersionId" not in r
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == "null"
    assert s3.get_object(Bucket=bucket, Key="k")["VersionId"] == "null"
    assert _versions(s3, bucket, "k") == [("null", True, False), (v1, False, False)]
    # A second write replaces the null version, and only it.
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-2")
    assert _versions(s3, bucket, "k") == [("null", True, False), (v1, False, False)]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"null-2"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"enabled"
    # A simple delete removes the null version's data and puts a null delete marker.
    r = s3.delete_object(Bucket=bucket, Key="k")
    assert r["DeleteMarker"] is True and r["VersionId"] == "null"
    assert _versions(s3, bucket, "k") == [("null", True, True), (v1, False, False)]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert _error(e) == (404, "NoSuchKey") and _headers(e)["x-amz-delete-marker"] == "true"
    # Writing again replaces the null delete marker with a null version.
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-3")
    assert _versions(s3, bucket, "k") == [("null", True, False), (v1, False, False)]
    # A suspended delete whose latest version is not null keeps that version under the marker.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"enabled-2")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.delete_object(Bucket=bucket, Key="k")
    assert _versions(s3, bucket, "k") == [("null", True, True), (v2, False, False), (v1, False, False)]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v2)["Body"].read() == b"enabled-2"
    # A bucket once versioned never goes back to unversioned; versions keep it non-empty.
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert _error(e) == (409, "BucketNotEmpty")
    for vid in ("null", v1, v2):
        s3.delete_object(Bucket=bucket, Key="k", VersionId=vid)
    assert _versions(s3, bucket, "k") == []


def test_only_delete_marker_keeps_bucket(s3):
    name = "v-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    marker = s3.delete_object(Bucket=name, Key="gone")["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert _error(e) == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=name, Key="gone", VersionId=marker)
    s3.delete_bucket(Bucket=name)


def test_copy_by_version(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=vbucket, Key="src", Body=b"second")
    r = s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": vbucket, "Key": "src", "VersionId": v1})
    assert r["CopySourceVersionId"] == v1
    assert r["VersionId"] not in (None, "null")
    got = s3.get_object(Bucket=vbucket, Key="dst")
    assert got["Body"].read() == b"first" and got["VersionId"] == r["VersionId"]
    # Copying a key whose latest is a delete marker: NoSuchKey; naming a marker: InvalidRequest.
    marker = s3.delete_object(Bucket=vbucket, Key="src")["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=vbucket, Key="dst2", CopySource={"Bucket": vbucket, "Key": "src"})
    assert _error(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=vbucket, Key="dst2", CopySource={"Bucket": vbucket, "Key": "src", "VersionId": marker})
    assert _error(e) == (400, "InvalidRequest")
    up = s3.create_multipart_upload(Bucket=vbucket, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=vbucket, Key="mp", UploadId=up, PartNumber=1,
                            CopySource={"Bucket": vbucket, "Key": "src", "VersionId": marker})
    assert _error(e) == (400, "InvalidRequest")
    r = s3.upload_part_copy(Bucket=vbucket, Key="mp", UploadId=up, PartNumber=1,
                            CopySource={"Bucket": vbucket, "Key": "src", "VersionId": v1})
    assert r["CopySourceVersionId"] == v1
    s3.abort_multipart_upload(Bucket=vbucket, Key="mp", UploadId=up)
    # Copying an old version onto its own key makes it the newest version.
    s3.copy_object(Bucket=vbucket, Key="src", CopySource={"Bucket": vbucket, "Key": "src", "VersionId": v1})
    assert s3.get_object(Bucket=vbucket, Key="src")["Body"].read() == b"first"


def test_multipart_creates_a_version(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="mp", Body=b"small")["VersionId"]
    up = s3.create_multipart_upload(Bucket=vbucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=vbucket, Key="mp", UploadId=up, PartNumber=1, Body=b"p" * 100)["ETag"]
    r = s3.complete_multipart_upload(Bucket=vbucket, Key="mp", UploadId=up,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    v2 = r["VersionId"]
    assert v2 not in (v1, "null")
    assert s3.get_object(Bucket=vbucket, Key="mp", VersionId=v1)["Body"].read() == b"small"
    assert s3.get_object(Bucket=vbucket, Key="mp")["Body"].read() == b"p" * 100
    assert _versions(s3, vbucket, "mp") == [(v2, True, False), (v1, False, False)]


def test_delete_objects_with_versions(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="a", Body=b"1")["VersionId"]
    s3.put_object(Bucket=vbucket, Key="b", Body=b"1")
    r = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    deleted = {d["Key"]: d for d in r["Deleted"]}
    assert deleted["a"]["DeleteMarker"] is True and deleted["b"]["DeleteMarker"] is True
    marker_a = deleted["a"]["DeleteMarkerVersionId"]
    assert "VersionId" not in deleted["a"]
    assert _versions(s3, vbucket, "a") == [(marker_a, True, True), (v1, False, False)]
    r = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [{"Key": "a", "VersionId": marker_a},
                                                             {"Key": "a", "VersionId": "abc"}]})
    assert r["Deleted"] == [{"Key": "a", "VersionId": marker_a, "DeleteMarker": True,
                             "DeleteMarkerVersionId": marker_a}]
    assert [(x["Key"], x["VersionId"], x["Code"]) for x in r["Errors"]] == [("a", "abc", "NoSuchVersion")]
    assert s3.get_object(Bucket=vbucket, Key="a")["Body"].read() == b"1"
    r = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [{"Key": "a", "VersionId": v1}]})
    assert r["Deleted"] == [{"Key": "a", "VersionId": v1}]


def test_tagging_and_attributes_by_version(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="k", Body=b"1", Tagging="a=1")["VersionId"]
    v2 = s3.put_object(Bucket=vbucket, Key="k", Body=b"22")["VersionId"]
    r = s3.put_object_tagging(Bucket=vbucket, Key="k", VersionId=v1, Tagging={"TagSet": [{"Key": "b", "Value": "2"}]})
    assert r["VersionId"] == v1
    r = s3.get_object_tagging(Bucket=vbucket, Key="k", VersionId=v1)
    assert r["VersionId"] == v1 and r["TagSet"] == [{"Key": "b", "Value": "2"}]
    r = s3.get_object_tagging(Bucket=vbucket, Key="k")
    assert r["VersionId"] == v2 and r["TagSet"] == []
    r = s3.get_object_attributes(Bucket=vbucket, Key="k", VersionId=v1, ObjectAttributes=["ObjectSize"])
    assert r["ObjectSize"] == 1 and r["VersionId"] == v1
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=vbucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert _error(e) == (404, "NoSuchKey")
    assert _headers(e)["x-amz-delete-marker"] == "true" and _headers(e)["x-amz-version-id"] == marker


# -- ListObjectVersions --

def test_list_versions_shape(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="dir/a", Body=b"12345")["VersionId"]
    m = s3.delete_object(Bucket=vbucket, Key="dir/a")["VersionId"]
    v3 = s3.put_object(Bucket=vbucket, Key="top", Body=b"x")["VersionId"]
    r = s3.list_object_versions(Bucket=vbucket)
    assert r["Name"] == vbucket and r["IsTruncated"] is False and r["MaxKeys"] == 1000
    assert r["KeyMarker"] == "" and r["VersionIdMarker"] == ""
    assert "NextKeyMarker" not in r
    (ver_a, ver_top), (dm,) = r["Versions"], r["DeleteMarkers"]
    assert ver_a["Key"] == "dir/a" and ver_a["VersionId"] == v1 and ver_a["IsLatest"] is False
    assert ver_a["Size"] == 5 and ver_a["ETag"].startswith('"') and ver_a["StorageClass"] == "STANDARD"
    assert ver_a["Owner"]["ID"]
    assert ver_top["VersionId"] == v3 and ver_top["IsLatest"] is True
    assert dm["Key"] == "dir/a" and dm["VersionId"] == m and dm["IsLatest"] is True and dm["Owner"]["ID"]
    assert "Size" not in dm and "ETag" not in dm
    r = s3.list_object_versions(Bucket=vbucket, Delimiter="/")
    assert r["CommonPrefixes"] == [{"Prefix": "dir/"}] and [v["Key"] for v in r["Versions"]] == ["top"]
    assert "DeleteMarkers" not in r and r["Delimiter"] == "/"
    r = s3.list_object_versions(Bucket=vbucket, Prefix="dir/", EncodingType="url")
    assert r["EncodingType"] == "url" and len(r["Versions"]) == 1


def test_list_versions_marker_errors(s3, vbucket):
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=vbucket, VersionIdMarker="null")
    assert _error(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=vbucket, KeyMarker="k", VersionIdMarker="abc")
    assert _error(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=vbucket, MaxKeys=-1)
    assert _error(e) == (400, "InvalidArgument")


def _reference(model: list[tuple[str, str, bool, bool]], prefix: str, delimiter: str):
    """Entries and common prefixes a complete listing holds, in order."""
    out: list[tuple] = []
    seen: set[str] = set()
    for key, vid, latest, dm in model:
        if not key.startswith(prefix):
            continue
        if delimiter:
            i = key.find(delimiter, len(prefix))
            if i >= 0:
                cp = key[: i + len(delimiter)]
                if cp not in seen:
                    seen.add(cp)
                    out.append(("prefix", cp))
                continue
        out.append((key, vid, latest, dm))
    return out


@pytest.mark.parametrize("prefix,delimiter", [("", ""), ("", "/"), ("d/", "/"), ("d", "")])
def test_list_versions_paging_matches_reference(s3, vbucket, prefix, delimiter):
    rng = random.Random(7)
    # Keys in byte order; each with a few versions and sometimes delete markers.
    history: dict[str, list[tuple[str, bool]]] = {}
    keys = ["a", "d/1", "d/2", "d/e/3", "d/e/4", "dz", "e/5", "z"]
    for _ in range(26):
        key = rng.choice(keys)
        if rng.random() < 0.25:
            vid = s3.delete_object(Bucket=vbucket, Key=key)["VersionId"]
            history.setdefault(key, []).append((vid, True))
        else:
            vid = s3.put_object(Bucket=vbucket, Key=key, Body=b"x")["VersionId"]
            history.setdefault(key, []).append((vid, False))
    model = []
    for key in sorted(history, key=lambda k: k.encode()):
        vs = history[key][::-1]
        model += [(key, vid, i == 0, dm) for i, (vid, dm) in enumerate(vs)]
    want = _reference(model, prefix, delimiter)
    for max_keys in (1, 2, 3, 1000):
        got: list[tuple] = []
        kw: dict[str, object] = {"Prefix": prefix, "Delimiter": delimiter, "MaxKeys": max_keys}
        pages = 0
        while True:
            r = _listing(s3, vbucket, **{k: v for k, v in kw.items() if v != ""})
            pages += 1
            assert len(r["entries"]) + len(r["prefixes"]) <= max_keys
            got += r["entries"] + [("prefix", p) for p in r["prefixes"]]
            if not r["truncated"]:
                break
            kw["KeyMarker"] = r["next_key"]
            if r["next_version"] is not None:
                kw["VersionIdMarker"] = r["next_version"]
            else:
                kw.pop("VersionIdMarker", None)
            assert pages < 100
        assert got_sorted(got) == want, max_keys


def got_sorted(got: list[tuple]) -> list[tuple]:
    """Entries and prefixes of all pages in one order: each page lists its prefixes after its
    entries, so prefixes are put back at their key position (a stable sort keeps versions' order)."""
    return sorted(got, key=lambda e: (e[1] if e[0] == "prefix" else e[0]).encode())
