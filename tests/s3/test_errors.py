"""The shape of S3 errors on the wire: code, status, XML fields, request ids, HEAD, limits."""

from __future__ import annotations

import os
import re
import uuid
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from tests.s3 import chunked_client as cc


def test_error_xml_shape(endpoint, credentials):
    name = "missing-" + uuid.uuid4().hex[:12]
    s = cc.sign("GET", cc.object_url(endpoint, name, "some/key"), credentials)
    r = cc.send(s.method, s.url, s.headers)
    assert r.status == 404
    assert r.headers["Content-Type"] == "application/xml"
    assert r.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(r.body)
    assert root.tag == "Error"  # no namespace on errors, as S3
    fields = {c.tag: c.text for c in root}
    assert fields["Code"] == "NoSuchBucket"
    assert fields["Message"] == "The specified bucket does not exist"
    assert fields["Resource"] == f"/{name}/some/key"
    assert fields["BucketName"] == name
    assert fields["RequestId"] == r.headers["x-amz-request-id"]
    assert re.fullmatch(r"[0-9A-F]{16}", fields["RequestId"])
    assert fields["HostId"] == r.headers["x-amz-id-2"]


def test_request_id_on_every_response(s3, bucket, endpoint):
    ids = set()
    for call in (lambda: s3.list_buckets(), lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x"),
                 lambda: s3.head_object(Bucket=bucket, Key="k"), lambda: s3.get_object(Bucket=bucket, Key="k")):
        meta = call()["ResponseMetadata"]
        ids.add(meta["HTTPHeaders"]["x-amz-request-id"])
        assert meta["RequestId"] == meta["HTTPHeaders"]["x-amz-request-id"]
    for call in (lambda: s3.head_object(Bucket=bucket, Key="nope"), lambda: s3.get_object(Bucket=bucket, Key="no")):
        with pytest.raises(ClientError) as ei:
            call()
        ids.add(ei.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"])
    r = cc.send("GET", endpoint + "/", {})  # anonymous
    ids.add(r.headers["x-amz-request-id"])
    assert len(ids) == 7  # unique per request


@pytest.mark.parametrize("case", ["no-such-key", "no-such-bucket", "bad-signature", "anonymous"])
def test_head_errors_have_no_body(endpoint, credentials, bucket, case):
    if case == "anonymous":
        r = cc.send("HEAD", cc.object_url(endpoint, bucket, "k"), {})
        expected = 403
    else:
        creds = (credentials[0], "bad") if case == "bad-signature" else credentials
        b = "nb-" + uuid.uuid4().hex[:12] if case == "no-such-bucket" else bucket
        s = cc.sign("HEAD", cc.object_url(endpoint, b, "k"), creds)
        r = cc.send("HEAD", s.url, s.headers)
        expected = 403 if case == "bad-signature" else 404
    assert r.status == expected
    assert r.body == b""
    assert r.headers.get("Content-Length", "0") == "0"
    assert r.headers["x-amz-request-id"]


def test_head_bucket_errors(s3, endpoint, credentials):
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket="nb-" + uuid.uuid4().hex[:12])
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_header_section_too_large(endpoint, credentials, bucket):
    url = cc.object_url(endpoint, bucket)
    headers = {f"x-big-{i}": "v" * 1000 for i in range(20)}
    s = cc.sign("GET", url, credentials, headers=headers)
    r = cc.send("GET", url, s.headers)
    assert r.status == 400
    err = r.error()
    assert err["Code"] == "RequestHeaderSectionTooLarge"
    assert err["RequestId"] == r.headers["x-amz-request-id"]
    # Refused before authentication: an anonymous request gets the same answer.
    r = cc.send("GET", url, headers)
    assert (r.status, r.error_code()) == (400, "RequestHeaderSectionTooLarge")


def test_header_section_just_under_limit(endpoint, credentials, bucket):
    url = cc.object_url(endpoint, bucket)
    s = cc.sign("GET", url, credentials, headers={f"x-pad-{i}": "v" * 1000 for i in range(10)})
    assert cc.send("GET", url, s.headers).status == 200


def test_incomplete_body_keeps_previous_object(endpoint, credentials, bucket, s3):
    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    data = os.urandom(40_000)
    r = cc.streaming_put(endpoint, credentials, bucket, "k", data, decoded_length=len(data) + 100)
    assert r.status == 400
    err = r.error()
    assert err["Code"] == "IncompleteBody"
    assert err["Key"] == "k"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"old"


def test_secrets_never_in_errors_or_logs(server, endpoint, credentials, bucket):
    if server is None:
        pytest.skip("needs the local server's log")
    secret = credentials[1]
    bodies = []
    for creds in ((credentials[0], "wrong"), ("AKIDUNKNOWN000000000", secret)):
        for method in ("GET", "PUT"):
            s = cc.sign(method, cc.object_url(endpoint, bucket, "k"), creds, body=b"x" if method == "PUT" else b"")
            bodies.append(cc.send(method, s.url, s.headers, b"x" if method == "PUT" else b"").body)
    for b in bodies:
        assert secret.encode() not in b
        assert b"<Code>" in b
    with open(server.log_path, "rb") as fh:
        assert secret.encode() not in fh.read()


def test_method_not_allowed_is_xml(endpoint, credentials):
    s = cc.sign("POST", endpoint + "/", credentials)
    r = cc.send("POST", s.url, s.headers)
    assert r.status == 405
    assert r.error_code() == "MethodNotAllowed"
