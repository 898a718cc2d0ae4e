"""CORS: Put/Get/DeleteBucketCors with boto3, preflight OPTIONS and actual requests as a browser sends them."""

from __future__ import annotations

import base64
import hashlib
import http.client
import urllib.parse
import xml.etree.ElementTree as ET

import botocore.exceptions
import pytest

from tests.conftest import make_client

VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
NOT_ALLOWED = ("CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
               "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not "
               "whitelisted by the resource's CORS spec.")

SITE_RULE = {
    "ID": "site",
    "AllowedOrigins": ["https://example.com", "https://*.example.com"],
    "AllowedMethods": ["GET", "PUT", "DELETE"],
    "AllowedHeaders": ["Content-Type", "x-amz-*"],
    "ExposeHeaders": ["ETag", "x-amz-request-id"],
    "MaxAgeSeconds": 3000,
}
PUBLIC_RULE = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"]}


def raw(endpoint: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    """A request as a browser sends it (no SDK in between): (status, headers, body)."""
    u = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def error(body: bytes) -> tuple[str, str]:
    root = ET.fromstring(body)
    return root.findtext("Code") or "", root.findtext("Message") or ""


def preflight(endpoint, path, origin=None, method=None, req_headers=None):
    h = {}
    if origin is not None:
        h["Origin"] = origin
    if method is not None:
        h["Access-Control-Request-Method"] = method
    if req_headers is not None:
        h["Access-Control-Request-Headers"] = req_headers
    return raw(endpoint, "OPTIONS", path, h)


@pytest.fixture
def cors_bucket(s3, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [SITE_RULE, PUBLIC_RULE]})
    return bucket


def test_put_get_delete_round_trip(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        s3.get_bucket_cors(Bucket=bucket)
    assert ei.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [SITE_RULE, PUBLIC_RULE]})
    rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules == [SITE_RULE, PUBLIC_RULE]
    # A new configuration replaces the old one whole.
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [PUBLIC_RULE]})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [PUBLIC_RULE]
    resp = s3.delete_bucket_cors(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        s3.get_bucket_cors(Bucket=bucket)
    assert ei.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    # Deleting what is not there succeeds, as on S3.
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_get_bucket_cors_xml_order(s3, cors_bucket, endpoint):
    url = s3.generate_presigned_url("get_bucket_cors", Params={"Bucket": cors_bucket})
    u = urllib.parse.urlsplit(url)
    status, _, body = raw(endpoint, "GET", f"{u.path}?{u.query}")
    assert status == 200
    rule = ET.fromstring(body)[0]
    tags = [el.tag.split("}")[1] for el in rule]
    assert tags == ["ID", "AllowedMethod", "AllowedMethod", "AllowedMethod", "AllowedOrigin", "AllowedOrigin",
                    "AllowedHeader", "AllowedHeader", "MaxAgeSeconds", "ExposeHeader", "ExposeHeader"]


@pytest.mark.parametrize("rule, message", [
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]},
     "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"),
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["get"]},
     "Found unsupported HTTP method in CORS config. Unsupported method is get"),
    ({"AllowedOrigins": ["https://*.example.*"], "AllowedMethods": ["GET"]},
     'AllowedOrigin "https://*.example.*" can not have more than one wildcard.'),
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["x-*-meta-*"]},
     'AllowedHeader "x-*-meta-*" can not have more than one wildcard.'),
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "ExposeHeaders": ["x-amz-*"]},
     'ExposeHeader "x-amz-*" contains wildcard. We currently do not support wildcard for ExposeHeader.'),
])
def test_invalid_rules(s3, bucket, rule, message):
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [PUBLIC_RULE, rule]})
    err = ei.value.response["Error"]
    assert (err["Code"], err["Message"]) == ("InvalidRequest", message)
    with pytest.raises(botocore.exceptions.ClientError):
        s3.get_bucket_cors(Bucket=bucket)


@pytest.mark.parametrize("rules", [
    [],
    [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}] * 101,
    [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "ID": "x" * 256}],
])
def test_malformed_configurations(s3, bucket, rules):
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    assert ei.value.response["Error"]["Code"] == "MalformedXML"


def test_hundred_rules_accepted(s3, bucket):
    rules = [{"ID": f"r{i}", "AllowedOrigins": [f"https://{i}.example"], "AllowedMethods": ["GET"]}
             for i in range(100)]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    assert len(s3.get_bucket_cors(Bucket=bucket)["CORSRules"]) == 100


def put_raw_cors(endpoint, credentials, bucket: str, body: bytes, md5: bool = True) -> None:
    """PutBucketCors with a hand-written document (boto3 signs it; the body is ours)."""
    client = make_client(endpoint, credentials)

    def swap(request, **_):
        request.data = body
        for name in list(request.headers.keys()):
            if name.lower().startswith(("x-amz-checksum", "x-amz-sdk-checksum", "content-md5")):
                del request.headers[name]
        if md5:
            request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324

    client.meta.events.register("before-sign.s3.PutBucketCors", swap)
    client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [PUBLIC_RULE]})


RULE = "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"


@pytest.mark.parametrize("doc", [
    "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
    "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>",
    f"<CORSConfiguration><CORSRule>{RULE}<AllowedHeaders>*</AllowedHeaders></CORSRule></CORSConfiguration>",
    f"<CORSConfiguration><CORSRule>{RULE}<MaxAgeSeconds>-1</MaxAgeSeconds></CORSRule></CORSConfiguration>",
    f"<CORSConfiguration><CORSRule>{RULE}<MaxAgeSeconds>2147483648</MaxAgeSeconds></CORSRule></CORSConfiguration>",
    f"<CORSConfiguration><CORSRule>{RULE}<ID>a</ID><ID>b</ID></CORSRule></CORSConfiguration>",
    f"<CORSRules><CORSRule>{RULE}</CORSRule></CORSRules>",
    f"<CORSConfiguration>{RULE}</CORSConfiguration>",
    "<CORSConfiguration/>",
])
def test_malformed_documents(endpoint, credentials, bucket, doc):
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        put_raw_cors(endpoint, credentials, bucket, doc.encode())
    assert ei.value.response["Error"]["Code"] == "MalformedXML"


def test_document_values_kept_as_sent(s3, endpoint, credentials, bucket):
    doc = (b'<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule>'
           b"<AllowedOrigin>HTTPS://Example.COM</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod>"
           b"<MaxAgeSeconds>0042</MaxAgeSeconds></CORSRule></CORSConfiguration>")
    put_raw_cors(endpoint, credentials, bucket, doc)
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [
        {"AllowedOrigins": ["HTTPS://Example.COM"], "AllowedMethods": ["HEAD"], "MaxAgeSeconds": 42}]


def test_put_requires_a_digest(endpoint, credentials, bucket):
    doc = f"<CORSConfiguration><CORSRule>{RULE}</CORSRule></CORSConfiguration>".encode()
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        put_raw_cors(endpoint, credentials, bucket, doc, md5=False)
    err = ei.value.response["Error"]
    assert (err["Code"], err["Message"]) == ("InvalidRequest", "Missing required header for this request: Content-Md5")


def test_cors_needs_an_existing_bucket(s3):
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        s3.put_bucket_cors(Bucket="no-such-bucket-cors-x", CORSConfiguration={"CORSRules": [PUBLIC_RULE]})
    assert ei.value.response["Error"]["Code"] == "NoSuchBucket"


# -- preflight --
def test_preflight_exact_origin(endpoint, cors_bucket):
    status, h, body = preflight(endpoint, f"/{cors_bucket}/some/key", "https://example.com", "PUT",
                                "Content-Type, X-Amz-Date")
    assert status == 200, body
    assert h["Access-Control-Allow-Origin"] == "https://example.com"
    assert h["Access-Control-Allow-Methods"] == "GET, PUT, DELETE"
    assert h["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
    assert h["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    assert h["Access-Control-Max-Age"] == "3000"
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert h["Vary"] == VARY


def test_preflight_wildcard_origin_and_bucket_path(endpoint, cors_bucket):
    status, h, _ = preflight(endpoint, f"/{cors_bucket}", "https://app.example.com", "DELETE")
    assert status == 200
    assert h["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Headers" not in h


def test_preflight_literal_star_rule(endpoint, cors_bucket):
    # No rule before it allows this origin; the "*" rule answers "*", without credentials.
    status, h, _ = preflight(endpoint, f"/{cors_bucket}/k", "https://other.org", "GET")
    assert status == 200
    assert h["Access-Control-Allow-Origin"] == "*"
    assert h["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert "Access-Control-Allow-Credentials" not in h
    assert "Access-Control-Max-Age" not in h


def test_preflight_first_matching_rule_wins(endpoint, cors_bucket):
    # HEAD is not in the site rule: the public rule answers even for the site's origin.
    status, h, _ = preflight(endpoint, f"/{cors_bucket}/k", "https://example.com", "HEAD")
    assert status == 200 and h["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("origin, method, req_headers", [
    ("https://other.org", "PUT", None),  # only the site rule allows PUT
    ("https://EXAMPLE.com", "PUT", None),  # origins compare case-sensitively
    ("https://example.com.evil", "PUT", None),
    ("https://example.com", "POST", None),
    ("https://example.com", "PUT", "content-type, authorization"),  # a header no rule allows
    ("https://other.org", "GET", "content-type"),  # the public rule allows no header
])
def test_preflight_refused(endpoint, cors_bucket, origin, method, req_headers):
    status, h, body = preflight(endpoint, f"/{cors_bucket}/k", origin, method, req_headers)
    assert status == 403
    assert error(body) == ("AccessForbidden", NOT_ALLOWED)
    root = ET.fromstring(body)
    assert root.findtext("Method") == method and root.findtext("ResourceType") == "OBJECT"
    assert "Access-Control-Allow-Origin" not in h


def test_preflight_header_wildcards(s3, bucket, endpoint):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["http://localhost:*"], "AllowedMethods": ["PUT"], "AllowedHeaders": ["*"],
         "MaxAgeSeconds": 0}]})
    status, h, _ = preflight(endpoint, f"/{bucket}/k", "http://localhost:5173", "PUT",
                             "authorization,x-amz-content-sha256,x-custom")
    assert status == 200
    assert h["Access-Control-Allow-Headers"] == "authorization, x-amz-content-sha256, x-custom"
    assert h["Access-Control-Max-Age"] == "0"
    assert preflight(endpoint, f"/{bucket}/k", "http://localhost", "PUT")[0] == 403


def test_preflight_without_configuration(endpoint, bucket):
    status, _, body = preflight(endpoint, f"/{bucket}", "https://example.com", "GET")
    assert status == 403
    assert error(body) == ("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.")
    assert ET.fromstring(body).findtext("ResourceType") == "BUCKET"


@pytest.mark.parametrize("origin, method, message", [
    (None, "GET", "Insufficient information. Origin request header needed."),
    ("https://example.com", None, "Invalid Access-Control-Request-Method: null"),
    ("https://example.com", "PATCH", "Invalid Access-Control-Request-Method: PATCH"),
])
def test_preflight_bad_request(endpoint, cors_bucket, origin, method, message):
    status, _, body = preflight(endpoint, f"/{cors_bucket}/k", origin, method)
    assert status == 400
    assert error(body) == ("BadRequest", message)


def test_preflight_missing_bucket(endpoint):
    status, _, body = preflight(endpoint, "/no-such-bucket-for-cors/k", "https://example.com", "GET")
    assert status == 403 and error(body)[0] == "AccessForbidden"


# -- actual requests --
def test_actual_request_gets_cors_headers(s3, endpoint, cors_bucket):
    s3.put_object(Bucket=cors_bucket, Key="pub.txt", Body=b"hello")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "pub.txt"})
    u = urllib.parse.urlsplit(url)
    path = f"{u.path}?{u.query}"
    status, h, body = raw(endpoint, "GET", path, {"Origin": "https://www.example.com"})
    assert status == 200 and body == b"hello"
    assert h["Access-Control-Allow-Origin"] == "https://www.example.com"
    assert h["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert h["Vary"] == VARY
    # No Origin, or an origin no rule allows for GET: no CORS headers.
    _, h, _ = raw(endpoint, "GET", path)
    assert "Access-Control-Allow-Origin" not in h
    # Errors carry them too (a browser could not read the error otherwise).
    missing = s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "absent"})
    u = urllib.parse.urlsplit(missing)
    status, h, _ = raw(endpoint, "GET", f"{u.path}?{u.query}", {"Origin": "https://example.org"})
    assert status == 404
    assert h["Access-Control-Allow-Origin"] == "*"


def test_actual_request_follows_configuration_changes(s3, endpoint, cors_bucket):
    s3.put_object(Bucket=cors_bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url("head_object", Params={"Bucket": cors_bucket, "Key": "k"})
    u = urllib.parse.urlsplit(url)
    path = f"{u.path}?{u.query}"
    _, h, _ = raw(endpoint, "HEAD", path, {"Origin": "https://example.org"})
    assert h["Access-Control-Allow-Origin"] == "*"
    s3.delete_bucket_cors(Bucket=cors_bucket)
    _, h, _ = raw(endpoint, "HEAD", path, {"Origin": "https://example.org"})
    assert "Access-Control-Allow-Origin" not in h
