"""SigV4/SigV2 canonicalisation checked against signatures botocore produces (and AWS's published example)."""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import time
from urllib.parse import quote, urlsplit

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from coffre.core.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from coffre.s3 import sigv4
from coffre.s3.app import parse_query

AK, SK = "AKIDEXAMPLE000000000", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDS = Credentials(AK, SK)
HOST = "s3.example.test:9000"


def to_request(req: AWSRequest) -> sigv4.Request:
    """What the server sees: the raw path and query as sent, lower-cased headers."""
    u = urlsplit(req.url)
    headers: dict[str, str] = {}
    for k, v in req.headers.items():
        v = v.decode() if isinstance(v, bytes) else v
        name = k.lower()
        headers[name] = f"{headers[name]},{v}" if name in headers else v
    headers.setdefault("host", u.netloc)
    return sigv4.Request(method=req.method, raw_path=u.path or "/", query=parse_query(u.query), headers=headers)


def sign_v4(method: str, path: str, query: str = "", headers: dict[str, str] | None = None, body: bytes = b"",
            signer: type = botocore.auth.S3SigV4Auth) -> sigv4.Request:
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer(CREDS, "s3", "us-east-1").add_auth(req)
    return to_request(req)


def verify(req: sigv4.Request, *, now: float | None = None, secret: str = SK) -> bytes:
    info = sigv4.parse_auth(req)
    assert info is not None
    return sigv4.verify_v4(req, info, secret, now=time.time() if now is None else now, max_skew=900,
                           max_expires=604800)


def botocore_path(key: str, bucket: str = "bkt") -> str:
    return f"/{bucket}/" + quote(key, safe="/~")


KEYS = ["simple", "with space", "plus+sign", "percent%", "q?mark", "hash#", "a//b", "trailing/", "ünïcödé/日本",
        "tilde~", "star*(paren)", "semi;colon,comma", "equals=amp&", "emoji\U0001f600", "dot/./dots/../x", " lead"]


@pytest.mark.parametrize("signer", [botocore.auth.S3SigV4Auth,
                                    pytest.param("crt", id="CrtS3SigV4Auth")])
@pytest.mark.parametrize("key", KEYS)
def test_header_signature_matches_botocore(signer, key):
    if signer == "crt":
        crt = pytest.importorskip("botocore.crt.auth")
        signer = crt.CrtS3SigV4Auth
    req = sign_v4("PUT", botocore_path(key), headers={"Content-Type": "text/plain", "x-amz-meta-a": "  b   c "},
                  body=b"body", signer=signer)
    key_bytes = verify(req)
    assert key_bytes == sigv4.signing_key(SK, req.headers.get("x-amz-date", "")[:8], "us-east-1", "s3")


@pytest.mark.parametrize("query", ["list-type=2&prefix=a%20b%2Bc&delimiter=%2F",
                                   "uploads", "uploadId=abc%3D%3D&partNumber=3",
                                   "prefix=%E6%97%A5&max-keys=5&encoding-type=url",
                                   "versions&key-marker=x~y", "a=1&a=0&b=", "acl"])
def test_query_canonicalisation(query):
    verify(sign_v4("GET", "/bkt", query))


def test_presigned_matches_botocore():
    url = f"http://{HOST}" + botocore_path("dir/some key+x")
    req = AWSRequest(method="GET", url=url + "?response-content-type=text%2Fplain", headers={})
    botocore.auth.S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=300).add_auth(req)
    r = to_request(req)
    info = sigv4.parse_auth(r)
    assert info is not None and info.presigned and info.expires == 300
    assert info.payload_hash == sigv4.UNSIGNED
    sigv4.verify_v4(r, info, SK, now=time.time(), max_skew=900, max_expires=604800)
    with pytest.raises(AccessDenied, match="expired"):
        sigv4.verify_v4(r, info, SK, now=time.time() + 400, max_skew=900, max_expires=604800)
    with pytest.raises(AuthorizationQueryParametersError):
        sigv4.verify_v4(r, info, SK, now=time.time(), max_skew=900, max_expires=200)


def test_wrong_secret_and_tampering():
    req = sign_v4("GET", "/bkt/key")
    with pytest.raises(SignatureDoesNotMatch) as ei:
        verify(req, secret="other")
    assert SK not in str(ei.value.fields) and "other" not in str(ei.value.fields)
    assert ei.value.fields["canonical_request"].startswith("GET\n/bkt/key\n")
    for change in ({"raw_path": "/bkt/kez"}, {"method": "PUT"}, {"query": [("x", "1")]}):
        with pytest.raises(SignatureDoesNotMatch):
            verify(dataclasses.replace(req, **change))
    with pytest.raises(SignatureDoesNotMatch):
        verify(sigv4.Request(req.method, req.raw_path, req.query, {**req.headers, "host": "evil.test"}))


def test_skew_and_dates():
    req = sign_v4("GET", "/bkt")
    t = calendar.timegm(time.strptime(req.headers["x-amz-date"], "%Y%m%dT%H%M%SZ"))
    verify(req, now=t + 899)
    with pytest.raises(RequestTimeTooSkewed) as ei:
        verify(req, now=t + 901)
    assert ei.value.fields["max_skew_ms"] == 900_000
    assert ei.value.fields["request_time"] == req.headers["x-amz-date"]
    with pytest.raises(RequestTimeTooSkewed):
        verify(req, now=t - 901)


@pytest.mark.parametrize("bad", ["20130231T000000Z", "20131301T000000Z", "20130524T240000Z", "2013-05-24T00:00:00Z", ""])
def test_amz_dates_parsed_and_refused_every_time(bad):
    # parse_amz_date is cached: a good date parses alike on every call, and a bad one is refused
    # on every call (an exception is never cached).
    for _ in range(2):
        assert sigv4.parse_amz_date("20240229T235959Z") == calendar.timegm((2024, 2, 29, 23, 59, 59, 0, 0, 0))
        with pytest.raises(ValueError):
            sigv4.parse_amz_date(bad)


def test_unsigned_amz_headers_refused():
    req = sign_v4("PUT", "/bkt/k", body=b"x")
    with pytest.raises(AccessDenied) as ei:
        verify(sigv4.Request(req.method, req.raw_path, req.query,
                             {**req.headers, "x-amz-acl": "public-read", "x-amz-meta-z": "1"}))
    assert ei.value.fields["headers_not_signed"] == "x-amz-acl, x-amz-meta-z"


def test_header_parse_errors():
    base = {"host": HOST, "x-amz-date": "20240101T000000Z", "x-amz-content-sha256": sigv4.EMPTY_SHA256}
    for auth in ("AWS4-HMAC-SHA256 Credential=x", "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=0",
                 "Bearer abc"):
        with pytest.raises(AuthorizationHeaderMalformed):
            sigv4.parse_auth(sigv4.Request("GET", "/", [], {**base, "authorization": auth}))
    good = "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"
    no_sha = {k: v for k, v in base.items() if k != "x-amz-content-sha256"}
    with pytest.raises(InvalidRequest):
        sigv4.parse_auth(sigv4.Request("GET", "/", [], {**no_sha, "authorization": good}))
    assert sigv4.parse_auth(sigv4.Request("GET", "/", [], {"host": HOST})) is None


def test_service_scope_must_be_s3():
    url = f"http://{HOST}/bkt"
    req = AWSRequest(method="GET", url=url, headers={})
    botocore.auth.S3SigV4Auth(CREDS, "iam", "us-east-1").add_auth(req)
    with pytest.raises(AuthorizationHeaderMalformed):
        verify(to_request(req))


def test_non_utf8_path_round_trips():
    """A key with bytes that are not UTF-8 signs and verifies byte for byte."""
    raw = "/bkt/%FF%FEkey"
    req = AWSRequest(method="GET", url=f"http://{HOST}{raw}", headers={})
    botocore.auth.S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    verify(to_request(req))
    assert sigv4.uri_encode(sigv4.unquote_raw("%FF%FEk y"), safe="/") == "%FF%FEk%20y"


def test_aws_published_streaming_example():
    """AWS's "sigv4-streaming" example: its seed and chunk signatures, recomputed here."""
    headers = {"host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
               "x-amz-storage-class": "REDUCED_REDUNDANCY", "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": "66560", "content-length": "66824",
               "x-amz-content-sha256": sigv4.STREAMING_SIGNED,
               "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                                "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                                "x-amz-decoded-content-length;x-amz-storage-class,"
                                "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"}
    req = sigv4.Request("PUT", "/examplebucket/chunkObject.txt", [], headers)
    info = sigv4.parse_auth(req)
    assert info is not None
    now = calendar.timegm((2013, 5, 24, 0, 0, 0))
    key = sigv4.verify_v4(req, info, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", now=now, max_skew=900,
                          max_expires=604800)
    s1 = sigv4.chunk_signature(key, info, info.signature, hashlib.sha256(b"a" * 65536).hexdigest())
    assert s1 == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    s2 = sigv4.chunk_signature(key, info, s1, hashlib.sha256(b"a" * 1024).hexdigest())
    assert s2 == "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    s3 = sigv4.chunk_signature(key, info, s2, sigv4.EMPTY_SHA256)
    assert s3 == "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"


# -- SigV2 --
def sign_v2(method: str, path: str, query: str = "", headers: dict[str, str] | None = None) -> sigv4.Request:
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    botocore.auth.HmacV1Auth(CREDS).add_auth(req)
    return to_request(req)


@pytest.mark.parametrize("key", KEYS)
def test_v2_header_matches_botocore(key):
    req = sign_v2("PUT", botocore_path(key), headers={"Content-Type": "a/b", "x-amz-meta-x": "y",
                                                      "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
    info = sigv4.parse_auth(req)
    assert info is not None and info.version == 2
    sigv4.verify_v2(req, info, SK, req.raw_path, now=time.time(), max_skew=900)
    with pytest.raises(SignatureDoesNotMatch):
        sigv4.verify_v2(req, info, "other", req.raw_path, now=time.time(), max_skew=900)


@pytest.mark.parametrize("query", ["uploads", "uploadId=x%2By&partNumber=2", "acl", "versioning",
                                   "list-type=2&prefix=a"])
def test_v2_subresources(query):
    req = sign_v2("GET", "/bkt/key", query)
    info = sigv4.parse_auth(req)
    assert info is not None
    sigv4.verify_v2(req, info, SK, req.raw_path, now=time.time(), max_skew=900)


def test_v2_presigned_and_expiry():
    req = AWSRequest(method="GET", url=f"http://{HOST}/bkt/k", headers={})
    botocore.auth.HmacV1QueryAuth(CREDS, expires=60).add_auth(req)
    r = to_request(req)
    info = sigv4.parse_auth(r)
    assert info is not None and info.presigned and info.version == 2
    sigv4.verify_v2(r, info, SK, r.raw_path, now=time.time(), max_skew=900)
    with pytest.raises(AccessDenied):
        sigv4.verify_v2(r, info, SK, r.raw_path, now=time.time() + 120, max_skew=900)


def test_v2_skew():
    req = sign_v2("GET", "/bkt")
    info = sigv4.parse_auth(req)
    assert info is not None
    with pytest.raises(RequestTimeTooSkewed) as ei:
        sigv4.verify_v2(req, info, SK, req.raw_path, now=time.time() + 3600, max_skew=900)
    assert ei.value.fields["max_skew_ms"] == 900_000
