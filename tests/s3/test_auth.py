"""Authentication against a real server: SigV4 (header, presigned, every payload mode), SigV2, addressing.

Requests are signed with botocore's own signers and sent with http.client or raw
sockets, so the body framing is exactly what the test says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import socket
import time
import uuid
from urllib.parse import urlsplit

import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, CrtCrc32Checksum

from tests.conftest import empty_bucket, make_client
from tests.s3 import chunked_client as cc
from tests.server import Server

SPECIAL_KEYS = [
    "plain.txt",
    "with space",
    "unicodé/ключ/日本",
    "plus+sign",
    "percent%25and%",
    "question?mark",
    "hash#tag",
    "double//slash",
    "trailing/",
    "/leading",
    "tilde~star*quote'paren(",
    "amp&eq=semi;comma,",
    "emoji-\U0001f600",
]


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def head_status(s3, bucket: str, key: str) -> int:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return 200
    except ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])


def assert_absent(s3, bucket: str, key: str) -> None:
    # A refused upload must leave nothing; give a buggy server a moment to (wrongly) commit.
    for _ in range(5):
        assert head_status(s3, bucket, key) == 404
        time.sleep(0.05)


@pytest.fixture(params=["crt", "python"])
def signer_client(request, endpoint, credentials, monkeypatch):
    """boto3 as it signs with awscrt installed (the default here) and without it.

    signature_version is explicit, or botocore would presign with SigV2.
    """
    if request.param == "python":
        monkeypatch.setitem(botocore.auth.AUTH_TYPE_MAPS, "s3v4", botocore.auth.S3SigV4Auth)
        monkeypatch.setitem(botocore.auth.AUTH_TYPE_MAPS, "s3v4-query", botocore.auth.S3SigV4QueryAuth)
    else:
        assert botocore.auth.AUTH_TYPE_MAPS["s3v4"].__module__.startswith("botocore.crt"), \
            "awscrt is expected to be installed for the tests"
    return make_client(endpoint, credentials, signature_version="s3v4")


@pytest.fixture(scope="module")
def s3v4(endpoint, credentials):
    """A client that presigns with SigV4 (botocore's default presigner for S3 is SigV2)."""
    return make_client(endpoint, credentials, signature_version="s3v4")


# -- SigV4, Authorization header --
def test_boto3_default_put_get(signer_client, bucket):
    """boto3's default PutObject over http: signed sha256 payload + a CRC32 checksum header."""
    sent = {}

    def capture(request, **kw):
        sent.update({k.lower(): v for k, v in request.headers.items()})

    signer_client.meta.events.register("before-send.s3.PutObject", capture)
    data = os.urandom(200_000)
    r = signer_client.put_object(Bucket=bucket, Key="k", Body=data)
    content_sha = sent["x-amz-content-sha256"]
    content_sha = content_sha.decode() if isinstance(content_sha, bytes) else content_sha
    assert len(content_sha) == 64  # a real payload hash, verified by the server
    assert "x-amz-checksum-crc32" in sent
    assert r["ChecksumCRC32"] == cc.crc32_b64(data)
    assert signer_client.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    # upload_fileobj streams a file-like body (no len() up front).
    signer_client.upload_fileobj(io.BytesIO(data[:1000]), bucket, "k2")
    assert signer_client.get_object(Bucket=bucket, Key="k2")["Body"].read() == data[:1000]


@pytest.mark.parametrize("key", SPECIAL_KEYS)
def test_special_keys_header_and_presigned(signer_client, bucket, key):
    s3 = signer_client
    body = key.encode() + b"!"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]]
    assert key in listed
    s3.head_object(Bucket=bucket, Key=key)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, r.text
    assert r.content == body
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key})
    r = requests.put(put_url, data=b"via presigned", timeout=30)
    assert r.status_code == 200, r.text
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"via presigned"
    s3.delete_object(Bucket=bucket, Key=key)
    assert head_status(s3, bucket, key) == 404


def test_query_parameters_are_signed(s3, bucket):
    """List with a prefix and delimiter that need encoding; continuation tokens round-trip."""
    for k in ("a b/1", "a b/2", "a+b/3", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.list_objects_v2(Bucket=bucket, Prefix="a b/", Delimiter="/", MaxKeys=1)
    assert [o["Key"] for o in r["Contents"]] == ["a b/1"]
    r2 = s3.list_objects_v2(Bucket=bucket, Prefix="a b/", ContinuationToken=r["NextContinuationToken"])
    assert [o["Key"] for o in r2["Contents"]] == ["a b/2"]
    r3 = s3.list_objects_v2(Bucket=bucket, Prefix="a+b/")
    assert [o["Key"] for o in r3["Contents"]] == ["a+b/3"]


def test_wrong_secret(endpoint, credentials, bucket):
    bad = make_client(endpoint, (credentials[0], "not-the-secret-at-all"))
    with pytest.raises(ClientError) as ei:
        bad.list_objects_v2(Bucket=bucket)
    err = ei.value.response
    assert err["Error"]["Code"] == "SignatureDoesNotMatch"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as ei:
        bad.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert ei.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_signature_mismatch_explains_without_secret(endpoint, credentials, bucket):
    s = cc.sign("GET", cc.object_url(endpoint, bucket), (credentials[0], "wrong-secret"))
    r = cc.send(s.method, s.url, s.headers)
    assert r.status == 403
    err = r.error()
    assert err["Code"] == "SignatureDoesNotMatch"
    assert err["AWSAccessKeyId"] == credentials[0]
    assert err["SignatureProvided"] == s.seed
    assert err["StringToSign"].startswith("AWS4-HMAC-SHA256\n" + s.date + "\n")
    assert err["CanonicalRequest"].startswith("GET\n/" + bucket + "\n")
    assert credentials[1].encode() not in r.body
    assert b"wrong-secret" not in r.body


def test_unknown_access_key(endpoint, bucket):
    other = make_client(endpoint, ("AKIDDOESNOTEXIST0000", "whatever-secret"))
    with pytest.raises(ClientError) as ei:
        other.list_objects_v2(Bucket=bucket)
    err = ei.value.response
    assert err["Error"]["Code"] == "InvalidAccessKeyId"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err["Error"]["AWSAccessKeyId"] == "AKIDDOESNOTEXIST0000"


@pytest.mark.parametrize("offset", [-3600, 3600, -16 * 60])
def test_request_time_too_skewed(endpoint, credentials, bucket, offset):
    s = cc.sign("GET", cc.object_url(endpoint, bucket), credentials, when=now_utc() + dt.timedelta(seconds=offset))
    r = cc.send(s.method, s.url, s.headers)
    assert r.status == 403
    err = r.error()
    assert err["Code"] == "RequestTimeTooSkewed"
    assert err["MaxAllowedSkewMilliseconds"] == "900000"
    assert err["RequestTime"] == s.date
    server_time = dt.datetime.strptime(err["ServerTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert abs((server_time - now_utc()).total_seconds()) < 60


def test_small_skew_is_accepted(endpoint, credentials, bucket):
    s = cc.sign("GET", cc.object_url(endpoint, bucket), credentials, when=now_utc() - dt.timedelta(minutes=10))
    assert cc.send(s.method, s.url, s.headers).status == 200


def test_anonymous_requests_are_denied(endpoint, bucket, s3):
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret data")
    for method, path, body in (("GET", "/", b""), ("GET", f"/{bucket}", b""), ("GET", f"/{bucket}/k", b""),
                               ("PUT", f"/{bucket}/new", b"data"), ("DELETE", f"/{bucket}/k", b""),
                               ("PUT", "/anon-bucket-" + uuid.uuid4().hex[:8], b"")):
        r = cc.send(method, endpoint + path, {}, body)
        assert r.status == 403, (method, path)
        assert r.error_code() == "AccessDenied"
        assert b"secret data" not in r.body
    assert head_status(s3, bucket, "new") == 404
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"secret data"


def test_signed_payload_mismatch_stores_nothing(endpoint, credentials, bucket, s3):
    url = cc.object_url(endpoint, bucket, "k")
    s = cc.sign("PUT", url, credentials, body=b"hello")
    r = cc.send("PUT", url, s.headers, b"HELLO")
    assert r.status == 400
    assert r.error_code() == "XAmzContentSHA256Mismatch"
    assert_absent(s3, bucket, "k")


def test_unsigned_payload(endpoint, credentials, bucket, s3):
    url = cc.object_url(endpoint, bucket, "k")
    s = cc.sign("PUT", url, credentials, headers={"Content-Length": "7"}, payload_hash=cc.UNSIGNED)
    assert s.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    r = cc.send("PUT", url, s.headers, b"payload")
    assert r.status == 200, r.body
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"


def test_missing_or_invalid_content_sha256(endpoint, credentials, bucket):
    url = cc.object_url(endpoint, bucket)
    s = cc.sign("GET", url, credentials)
    headers = {k: v for k, v in s.headers.items() if k.lower() != "x-amz-content-sha256"}
    headers["Authorization"] = headers["Authorization"].replace("x-amz-content-sha256;", "")
    r = cc.send("GET", url, headers)
    assert (r.status, r.error_code()) == (400, "InvalidRequest")
    s = cc.sign("GET", url, credentials, payload_hash="not-a-hash")
    r = cc.send("GET", url, s.headers)
    assert (r.status, r.error_code()) == (400, "InvalidArgument")


def test_unsigned_amz_header_is_refused(endpoint, credentials, bucket, s3):
    url = cc.object_url(endpoint, bucket, "k")
    s = cc.sign("PUT", url, credentials, body=b"data")
    r = cc.send("PUT", url, {**s.headers, "x-amz-meta-injected": "1"}, b"data")
    assert r.status == 403
    err = r.error()
    assert err["Code"] == "AccessDenied"
    assert err["HeadersNotSigned"] == "x-amz-meta-injected"
    assert_absent(s3, bucket, "k")


def test_malformed_authorization_header(endpoint, bucket):
    url = cc.object_url(endpoint, bucket)
    for auth in ("AWS4-HMAC-SHA256 Credential=abc", "AWS4-HMAC-SHA256 garbage",
                 "AWS4-HMAC-SHA256 Credential=AK/2020/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"):
        r = cc.send("GET", url, {"Authorization": auth, "x-amz-content-sha256": cc.EMPTY_SHA256,
                                 "x-amz-date": "20200101T000000Z"})
        assert (r.status, r.error_code()) == (400, "AuthorizationHeaderMalformed"), auth


def test_date_header_instead_of_x_amz_date(endpoint, credentials, bucket):
    """SigV4 allows the Date header to carry the request time."""
    url = cc.object_url(endpoint, bucket)
    req = AWSRequest(method="GET", url=url, headers={"Date": "placeholder"})
    botocore.auth.S3SigV4Auth(Credentials(*credentials), "s3", "us-east-1").add_auth(req)
    assert "X-Amz-Date" not in req.headers
    r = cc.send("GET", url, dict(req.headers.items()))
    assert r.status == 200, r.body


# -- aws-chunked streaming --
STREAMING_CASES = [
    (cc.STREAMING_SIGNED, []),
    (cc.STREAMING_SIGNED_TRAILER, ["x-amz-checksum-crc32"]),
    (cc.STREAMING_SIGNED_TRAILER, ["x-amz-checksum-sha256"]),
    (cc.STREAMING_UNSIGNED_TRAILER, ["x-amz-checksum-crc32"]),
    (cc.STREAMING_UNSIGNED_TRAILER, ["x-amz-checksum-sha256"]),
]


def _trailers(names: list[str], data: bytes) -> list[tuple[str, str]]:
    fn = {"x-amz-checksum-crc32": cc.crc32_b64, "x-amz-checksum-sha256": cc.sha256_b64}
    return [(n, fn[n](data)) for n in names]


@pytest.mark.parametrize("mode,trailer_names", STREAMING_CASES)
@pytest.mark.parametrize("size,chunk_size", [(0, 65536), (1, 65536), (300_000, 65536), (100_000, 8192),
                                             (3_000_000, 3_000_000)])
def test_streaming_upload(endpoint, credentials, bucket, s3, mode, trailer_names, size, chunk_size):
    data = os.urandom(size)
    trailers = _trailers(trailer_names, data)
    r = cc.streaming_put(endpoint, credentials, bucket, "k", data, mode=mode, chunk_size=chunk_size,
                         trailers=trailers, extra_headers={"Content-Type": "text/plain"})
    assert r.status == 200, r.body
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    # aws-chunked is framing: the object keeps no trace of it.
    assert got.get("ContentEncoding") in (None, "")
    assert got["ContentLength"] == size
    assert got["ContentType"] == "text/plain"
    if trailer_names == ["x-amz-checksum-crc32"]:
        assert got["ChecksumCRC32"] == trailers[0][1]
        assert r.headers["x-amz-checksum-crc32"] == trailers[0][1]
    if trailer_names == ["x-amz-checksum-sha256"]:
        assert got["ChecksumSHA256"] == trailers[0][1]


@pytest.mark.parametrize("mode,trailer_names", [c for c in STREAMING_CASES if c[0] != cc.STREAMING_UNSIGNED_TRAILER])
@pytest.mark.parametrize("chunk", [0, 2, 4])  # first, middle, the final empty chunk
def test_tampered_chunk_signature(endpoint, credentials, bucket, s3, mode, trailer_names, chunk):
    s3.put_object(Bucket=bucket, Key="k", Body=b"previous version")
    data = os.urandom(4 * 8192)
    r = cc.streaming_put(endpoint, credentials, bucket, "k", data, mode=mode, chunk_size=8192,
                         trailers=_trailers(trailer_names, data), framing=cc.Framing(tamper_chunk=chunk))
    assert r.status == 403
    assert r.error_code() == "SignatureDoesNotMatch"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"previous version"
    r = cc.streaming_put(endpoint, credentials, bucket, "fresh", data, mode=mode, chunk_size=8192,
                         trailers=_trailers(trailer_names, data), framing=cc.Framing(tamper_chunk=chunk))
    assert r.status == 403
    assert_absent(s3, bucket, "fresh")


def test_chunk_data_swapped_with_valid_signatures(endpoint, credentials, bucket, s3):
    """Signatures chain: valid chunks sent in another order do not verify."""
    url = cc.object_url(endpoint, bucket, "k")
    a, b = b"a" * 8192, b"b" * 8192
    probe = cc.encode([a, b], cc.STREAMING_SIGNED, cc._dummy_signed())
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "16384",
               "Content-Length": str(len(probe))}
    s = cc.sign("PUT", url, credentials, headers=headers, payload_hash=cc.STREAMING_SIGNED)
    body = cc.encode([a, b], cc.STREAMING_SIGNED, s)
    first_len = len(f"2000;chunk-signature={'0' * 64}\r\n") + 8192 + 2
    swapped = body[first_len:2 * first_len] + body[:first_len] + body[2 * first_len:]
    r = cc.send("PUT", url, s.headers, swapped)
    assert (r.status, r.error_code()) == (403, "SignatureDoesNotMatch")
    assert_absent(s3, bucket, "k")


@pytest.mark.parametrize("framing", [cc.Framing(tamper_trailer_signature=True),
                                     cc.Framing(omit_trailer_signature=True)])
def test_bad_trailer_signature(endpoint, credentials, bucket, s3, framing):
    data = os.urandom(20000)
    r = cc.streaming_put(endpoint, credentials, bucket, "k", data, mode=cc.STREAMING_SIGNED_TRAILER,
                         trailers=_trailers(["x-amz-checksum-crc32"], data), framing=framing)
    assert (r.status, r.error_code()) == (403, "SignatureDoesNotMatch")
    assert_absent(s3, bucket, "k")


@pytest.mark.parametrize("mode", [cc.STREAMING_SIGNED_TRAILER, cc.STREAMING_UNSIGNED_TRAILER])
@pytest.mark.parametrize("name", ["x-amz-checksum-crc32", "x-amz-checksum-sha256"])
def test_wrong_trailer_checksum_is_bad_digest(endpoint, credentials, bucket, s3, mode, name):
    data = os.urandom(100_000)
    wrong = _trailers([name], data + b"x")
    r = cc.streaming_put(endpoint, credentials, bucket, "k", data, mode=mode, trailers=wrong)
    assert (r.status, r.error_code()) == (400, "BadDigest")
    assert_absent(s3, bucket, "k")


@pytest.mark.parametrize("mode,trailer_names", STREAMING_CASES[:2] + STREAMING_CASES[3:4])
def test_decoded_length_longer_than_body(endpoint, credentials, bucket, s3, mode, trailer_names):
    data = os.urandom(50_000)
    r = cc.streaming_put(endpoint, credentials, bucket, "k", data, mode=mode, decoded_length=len(data) + 1,
                         trailers=_trailers(trailer_names, data))
    assert (r.status, r.error_code()) == (400, "IncompleteBody")
    assert_absent(s3, bucket, "k")
    r = cc.streaming_put(endpoint, credentials, bucket, "k", data, mode=mode, decoded_length=len(data) - 1,
                         trailers=_trailers(trailer_names, data))
    assert r.status == 400
    assert r.error_code() == "IncompleteBody"
    assert_absent(s3, bucket, "k")


@pytest.mark.parametrize("mode", [cc.STREAMING_SIGNED, cc.STREAMING_UNSIGNED_TRAILER])
def test_truncated_streaming_body_stores_nothing(endpoint, credentials, bucket, s3, mode):
    data = os.urandom(200_000)
    trailers = [] if mode == cc.STREAMING_SIGNED else _trailers(["x-amz-checksum-crc32"], data)
    try:
        r = cc.streaming_put(endpoint, credentials, bucket, "k", data, mode=mode, trailers=trailers, truncate=5000)
        assert r.status == 400
    except (ConnectionError, OSError):
        pass  # the server may drop a connection whose client stopped sending
    assert_absent(s3, bucket, "k")


def test_truncated_plain_body_stores_nothing(endpoint, credentials, bucket, s3):
    data = os.urandom(100_000)
    url = cc.object_url(endpoint, bucket, "k")
    s = cc.sign("PUT", url, credentials, body=data, payload_hash=cc.UNSIGNED,
                headers={"Content-Length": str(len(data))})
    try:
        r = cc.send_raw("PUT", url, s.headers, data[:60_000], half_close=True)
        assert (r.status, r.error_code()) == (400, "IncompleteBody")
    except (ConnectionError, OSError):
        pass
    assert_absent(s3, bucket, "k")


def test_botocore_aws_chunked_wrapper(endpoint, credentials, bucket, s3):
    """The exact body boto3 sends over https (unsigned payload, CRC32 trailer), here over http."""
    data = os.urandom(150_000)
    encoded = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=CrtCrc32Checksum,
                                checksum_name="x-amz-checksum-crc32", chunk_size=65536).read()
    url = cc.object_url(endpoint, bucket, "k")
    headers = {"Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
               "x-amz-decoded-content-length": str(len(data)), "Content-Length": str(len(encoded)),
               "x-amz-sdk-checksum-algorithm": "CRC32"}
    s = cc.sign("PUT", url, credentials, headers=headers, payload_hash=cc.STREAMING_UNSIGNED_TRAILER)
    r = cc.send("PUT", url, s.headers, encoded)
    assert r.status == 200, r.body
    assert r.headers["x-amz-checksum-crc32"] == cc.crc32_b64(data)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_streaming_upload_part(endpoint, credentials, bucket, s3):
    data = os.urandom(5 * 1024 * 1024)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    url = cc.object_url(endpoint, bucket, "mp", f"partNumber=1&uploadId={up['UploadId']}")
    chunks = cc.split(data, 65536)
    probe = cc.encode(chunks, cc.STREAMING_SIGNED, cc._dummy_signed())
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
               "Content-Length": str(len(probe))}
    s = cc.sign("PUT", url, credentials, headers=headers, payload_hash=cc.STREAMING_SIGNED)
    r = cc.send("PUT", url, s.headers, cc.encode(chunks, cc.STREAMING_SIGNED, s))
    assert r.status == 200, r.body
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r.headers["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == data


# -- presigned URLs --
def test_presigned_get_put(s3v4, bucket):
    s3v4.put_object(Bucket=bucket, Key="k", Body=b"content")
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    r = requests.get(url, timeout=30)
    assert (r.status_code, r.content) == (200, b"content")
    assert "x-amz-request-id" in r.headers
    url = s3v4.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": "k", "ResponseContentType": "application/x-test",
        "ResponseContentDisposition": 'attachment; filename="a b.txt"'})
    r = requests.get(url, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/x-test"
    assert r.headers["Content-Disposition"] == 'attachment; filename="a b.txt"'
    url = s3v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p", "ContentType": "text/x"})
    r = requests.put(url, data=b"uploaded", headers={"Content-Type": "text/x"}, timeout=30)
    assert r.status_code == 200, r.text
    got = s3v4.get_object(Bucket=bucket, Key="p")
    assert got["Body"].read() == b"uploaded"
    assert got["ContentType"] == "text/x"
    url = s3v4.generate_presigned_url("head_object", Params={"Bucket": bucket, "Key": "k"})
    assert requests.head(url, timeout=30).status_code == 200
    url = s3v4.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket, "Prefix": "k"})
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and b"<Key>k</Key>" in r.content


def test_presigned_tampering(s3v4, bucket):
    s3v4.put_object(Bucket=bucket, Key="k", Body=b"content")
    s3v4.put_object(Bucket=bucket, Key="other", Body=b"other")
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    r = requests.get(url.replace("/k?", "/other?"), timeout=30)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    r = requests.get(url.replace("X-Amz-Expires=3600", "X-Amz-Expires=3601"), timeout=30)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    r = requests.get(url + "&extra=1", timeout=30)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    # A presigned GET cannot be replayed as a PUT or DELETE.
    assert requests.put(url, data=b"x", timeout=30).status_code == 403
    assert requests.delete(url, timeout=30).status_code == 403
    assert s3v4.get_object(Bucket=bucket, Key="k")["Body"].read() == b"content"


def test_presigned_put_refuses_unsigned_amz_headers(s3v4, bucket):
    url = s3v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"})
    r = requests.put(url, data=b"x", headers={"x-amz-meta-evil": "1", "x-amz-tagging": "a=b"}, timeout=30)
    assert r.status_code == 403
    assert b"<HeadersNotSigned>x-amz-meta-evil, x-amz-tagging</HeadersNotSigned>" in r.content
    assert_absent(s3v4, bucket, "k")
    r = requests.put(url, data=b"x", headers={"x-amz-copy-source": f"{bucket}/k"}, timeout=30)
    assert r.status_code == 403
    # Signed metadata is fine.
    url = s3v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k", "Metadata": {"m": "v"}})
    r = requests.put(url, data=b"x", headers={"x-amz-meta-m": "v"}, timeout=30)
    assert r.status_code == 200, r.text
    assert s3v4.head_object(Bucket=bucket, Key="k")["Metadata"] == {"m": "v"}


def test_presigned_expired(s3v4, bucket):
    s3v4.put_object(Bucket=bucket, Key="k", Body=b"content")
    with cc.clock(now_utc() - dt.timedelta(hours=2)):
        url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=3600)
    r = requests.get(url, timeout=30)
    assert r.status_code == 403
    assert b"<Code>AccessDenied</Code>" in r.content
    assert b"<Message>Request has expired</Message>" in r.content
    assert b"<X-Amz-Expires>3600</X-Amz-Expires>" in r.content
    assert b"<ServerTime>" in r.content


def test_presigned_expires_bounds(s3v4, bucket):
    s3v4.put_object(Bucket=bucket, Key="k", Body=b"content")
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=604800)
    assert requests.get(url, timeout=30).status_code == 200
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=604801)
    r = requests.get(url, timeout=30)
    assert r.status_code == 400
    assert b"<Code>AuthorizationQueryParametersError</Code>" in r.content
    # A URL signed in the future (beyond the allowed skew) is not valid yet.
    with cc.clock(now_utc() + dt.timedelta(hours=1)):
        url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    r = requests.get(url, timeout=30)
    assert r.status_code == 403 and b"AccessDenied" in r.content


def test_presigned_missing_parameters(s3v4, bucket):
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    base, _, query = url.partition("?")
    for drop in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires"):
        q = "&".join(p for p in query.split("&") if not p.startswith(drop + "="))
        r = requests.get(base + "?" + q, timeout=30)
        assert r.status_code == 400, drop
        assert b"AuthorizationQueryParametersError" in r.content, drop


# -- SigV2 --
@pytest.fixture
def s3v2(endpoint, credentials):
    return make_client(endpoint, credentials, signature_version="s3")


@pytest.mark.parametrize("key", SPECIAL_KEYS)
def test_sigv2_header_and_presigned(s3v2, bucket, key):
    s3v2.put_object(Bucket=bucket, Key=key, Body=b"v2 body", Metadata={"a": "b"})
    got = s3v2.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"v2 body"
    assert got["Metadata"] == {"a": "b"}
    assert key in [o["Key"] for o in s3v2.list_objects(Bucket=bucket)["Contents"]]
    url = s3v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    r = requests.get(url, timeout=30)
    assert (r.status_code, r.content) == (200, b"v2 body")


def test_sigv2_subresources(s3v2, bucket):
    s3v2.put_object(Bucket=bucket, Key="k", Body=b"x")
    up = s3v2.create_multipart_upload(Bucket=bucket, Key="mp")
    part = s3v2.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"p")
    s3v2.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                   MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3v2.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"p"
    url = s3v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k",
                                                            "ResponseContentType": "text/weird"})
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/weird"


def test_sigv2_presigned_put_with_metadata(s3v2, bucket):
    url = s3v2.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k", "Metadata": {"m": "v"}})
    assert "x-amz-meta-m=v" in url
    r = requests.put(url, data=b"x", headers={"x-amz-meta-m": "v"}, timeout=30)
    assert r.status_code == 200, r.text
    assert s3v2.head_object(Bucket=bucket, Key="k")["Metadata"] == {"m": "v"}


def test_sigv2_wrong_secret_and_skew(endpoint, credentials, bucket):
    bad = make_client(endpoint, (credentials[0], "nope"), signature_version="s3")
    with pytest.raises(ClientError) as ei:
        bad.list_objects(Bucket=bucket)
    assert ei.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    url = cc.object_url(endpoint, bucket)
    req = AWSRequest(method="GET", url=url)
    signer = botocore.auth.HmacV1Auth(Credentials(*credentials))
    signer._get_date = lambda: "Mon, 01 Jan 2001 00:00:00 GMT"  # an old client clock
    signer.add_auth(req)
    r = cc.send("GET", url, dict(req.headers.items()))
    assert (r.status, r.error_code()) == (403, "RequestTimeTooSkewed")
    assert r.error()["MaxAllowedSkewMilliseconds"] == "900000"


def test_sigv2_presigned_expired(endpoint, credentials, bucket, s3):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = cc.object_url(endpoint, bucket, "k")
    req = AWSRequest(method="GET", url=url)
    botocore.auth.HmacV1QueryAuth(Credentials(*credentials), expires=-10).add_auth(req)
    r = requests.get(req.url, timeout=30)
    assert r.status_code == 403 and b"Request has expired" in r.content


# -- addressing --
@pytest.fixture(scope="module")
def vhost_server(tmp_path_factory):
    if os.environ.get("COFFRE_TEST_ENDPOINT"):
        pytest.skip("needs its own server")
    srv = Server(str(tmp_path_factory.mktemp("vhost") / "data"),
                 env={"COFFRE_VIRTUAL_HOST_DOMAINS": "s3.test.local,alt.example"}).start()
    yield srv
    srv.stop()


@pytest.fixture
def resolve_test_domains(monkeypatch):
    """Resolve *.s3.test.local to 127.0.0.1 inside this process, as DNS would for a real deployment."""
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if isinstance(host, str) and (host.endswith("s3.test.local") or host.endswith("alt.example")):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_virtual_hosted_style(vhost_server, credentials, resolve_test_domains, signature_version):
    endpoint = f"http://s3.test.local:{vhost_server.port}"
    vs3 = make_client(endpoint, credentials, s3={"addressing_style": "virtual"},
                      signature_version=signature_version)
    name = "vh-" + uuid.uuid4().hex[:12]
    sent_hosts = []
    vs3.meta.events.register("before-send.s3.*", lambda request, **kw: sent_hosts.append(urlsplit(request.url).netloc))
    vs3.create_bucket(Bucket=name)
    try:
        for key in ("a", "dir/b c", "x+y", "trailing/"):
            vs3.put_object(Bucket=name, Key=key, Body=key.encode())
            assert vs3.get_object(Bucket=name, Key=key)["Body"].read() == key.encode()
        assert sorted(o["Key"] for o in vs3.list_objects_v2(Bucket=name)["Contents"]) == \
            ["a", "dir/b c", "trailing/", "x+y"]
        url = vs3.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "dir/b c"})
        assert urlsplit(url).hostname == f"{name}.s3.test.local"
        assert requests.get(url, timeout=30).content == b"dir/b c"
        assert all(h.startswith(name + ".") for h in sent_hosts[1:])
        # The same bucket by path style on the same server, and through the second domain.
        ps3 = make_client(f"http://127.0.0.1:{vhost_server.port}", credentials)
        assert ps3.get_object(Bucket=name, Key="a")["Body"].read() == b"a"
        alt = make_client(f"http://alt.example:{vhost_server.port}", credentials, s3={"addressing_style": "virtual"})
        assert alt.get_object(Bucket=name, Key="x+y")["Body"].read() == b"x+y"
    finally:
        empty_bucket(vs3, name)
        vs3.delete_bucket(Bucket=name)


def test_virtual_host_raw_request(vhost_server, credentials):
    """Host: bucket.s3.test.local with path /key addresses the bucket; unknown domains stay path-style."""
    ps3 = make_client(f"http://127.0.0.1:{vhost_server.port}", credentials)
    name = "vh-" + uuid.uuid4().hex[:12]
    ps3.create_bucket(Bucket=name)
    try:
        ps3.put_object(Bucket=name, Key="k", Body=b"hello")
        url = f"http://127.0.0.1:{vhost_server.port}/k"
        s = cc.sign("GET", url, credentials, headers={"Host": f"{name}.s3.test.local:{vhost_server.port}"})
        r = cc.send("GET", url, s.headers)
        assert (r.status, r.body) == (200, b"hello")
        # A host outside the configured domains is not a bucket name: /k is then a bucket.
        s = cc.sign("GET", url, credentials, headers={"Host": f"{name}.elsewhere.test:{vhost_server.port}"})
        r = cc.send("GET", url, s.headers)
        assert (r.status, r.error_code()) == (404, "NoSuchBucket")
    finally:
        empty_bucket(ps3, name)
        ps3.delete_bucket(Bucket=name)


# -- Expect: 100-continue --
def _exchange(endpoint: str, head: bytes, body: bytes | None, wait: float = 2.0) -> tuple[bytes, bool]:
    """Send the header section; send ``body`` only once a 100 Continue arrives. Returns (reply, body_sent)."""
    u = urlsplit(endpoint)
    sock = socket.create_connection((u.hostname, u.port), timeout=wait)
    out = b""
    sent = False
    try:
        sock.sendall(head)
        while True:
            try:
                d = sock.recv(65536)
            except TimeoutError:
                break
            if not d:
                break
            out += d
            if body is not None and not sent and out.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
                sock.sendall(body)
                sent = True
            if b"\r\n\r\n" in out.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n"):
                rest = out.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
                head_part, _, payload = rest.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(payload) >= length[0]:
                    break
    finally:
        sock.close()
    return out, sent


def test_expect_continue_only_after_authentication(endpoint, credentials, bucket, s3):
    u = urlsplit(endpoint)
    head = (f"PUT /{bucket}/anon HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    reply, sent = _exchange(endpoint, head, b"hello")
    assert not sent
    assert reply.startswith(b"HTTP/1.1 403 ")
    assert b"100 Continue" not in reply
    assert b"<Code>AccessDenied</Code>" in reply
    url = cc.object_url(endpoint, bucket, "signed")
    s = cc.sign("PUT", url, credentials, headers={"Content-Length": "5", "Expect": "100-continue"}, body=b"hello")
    head = (f"PUT /{bucket}/signed HTTP/1.1\r\nHost: {u.netloc}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in s.headers.items()) + "\r\n").encode()
    reply, sent = _exchange(endpoint, head, b"hello")
    assert sent
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == b"hello"
    assert_absent(s3, bucket, "anon")


def test_connection_usable_after_refused_expect(endpoint, credentials, bucket):
    """boto3 holds its body back after a refusal; the next request on its pool must still work."""
    bad = make_client(endpoint, (credentials[0], "wrong"))
    for _ in range(3):
        with pytest.raises(ClientError) as ei:
            bad.put_object(Bucket=bucket, Key="k", Body=b"x" * 5000)
        assert ei.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        with pytest.raises(ClientError) as ei:
            bad.head_bucket(Bucket=bucket)
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_presigned_put_with_payload_hash(s3v4, bucket, credentials, endpoint):
    """A content-sha256 header beside a presigned URL is tolerated; a hash named in the URL binds the body."""
    url = s3v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"})
    r = requests.put(url, data=b"abc", headers={"x-amz-content-sha256": hashlib.sha256(b"abc").hexdigest()},
                     timeout=30)
    assert r.status_code == 200, r.text
    digest = hashlib.sha256(b"signed body").hexdigest()
    req = AWSRequest(method="PUT", url=cc.object_url(endpoint, bucket, "h", f"X-Amz-Content-Sha256={digest}"))
    with cc.clock(now_utc()):
        _HashedQueryAuth(Credentials(*credentials), "s3", "us-east-1", expires=60).add_auth(req)
    assert requests.put(req.url, data=b"signed body", timeout=30).status_code == 200
    r = requests.put(req.url, data=b"other body!", timeout=30)
    assert r.status_code == 400 and b"XAmzContentSHA256Mismatch" in r.content
    assert s3v4.get_object(Bucket=bucket, Key="h")["Body"].read() == b"signed body"


class _HashedQueryAuth(botocore.auth.S3SigV4QueryAuth):
    """A presigner that signs the payload hash its URL names (as SDKs that hoist it into the query do)."""

    def payload(self, request):
        from urllib.parse import parse_qs

        return parse_qs(urlsplit(request.url).query)["X-Amz-Content-Sha256"][0]
