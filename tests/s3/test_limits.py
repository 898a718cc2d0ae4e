"""Limits, each with the error AWS answers (documented in docs/limits.md)."""

from __future__ import annotations

import http.client
import os
import socket
import time
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.s3.chunked_client import UNSIGNED, object_url, send, send_raw, sign, streaming_put
from tests.server import Server

GiB = 1 << 30


def _err(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


# -- key length: 1024 bytes of UTF-8 --
@pytest.mark.parametrize(("unit", "fits"), [("a", 1024), ("é", 512), ("😀", 256)])
def test_key_length_counts_utf8_bytes(s3, bucket, unit, fits):
    key = unit * fits
    assert len(key.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=key, Body=b"ok")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"ok"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key=key + "a", Body=b"too long")
    assert _err(e) == (400, "KeyTooLongError")
    s3.delete_object(Bucket=bucket, Key=key)


def test_key_too_long_on_copy_destination(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="k" * 1025, CopySource={"Bucket": bucket, "Key": "src"})
    assert _err(e) == (400, "KeyTooLongError")


# -- user metadata: 2 KB of names + values --
def test_metadata_limit(s3, bucket):
    # 2048 bytes exactly: name "m" (1) + value (2047).
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"m": "v" * 2047})
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"]["m"] == "v" * 2047
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", Metadata={"m": "v" * 2048})
    assert _err(e) == (400, "MetadataTooLarge")
    # Spread over several entries, names count too.
    meta = {f"n{i:02d}": "v" * 97 for i in range(21)}  # 21 * (3 + 97) = 2100
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k3", Body=b"x", Metadata=meta)
    assert _err(e) == (400, "MetadataTooLarge")
    for k in ("k2", "k3"):
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=k)


# -- single PUT size: 5 GiB, refused from Content-Length before the body is read --
def test_entity_too_large_from_content_length(endpoint, credentials, bucket):
    url = object_url(endpoint, bucket, "huge")
    size = 5 * GiB + 1
    s = sign("PUT", url, credentials, payload_hash=UNSIGNED)
    headers = {**s.headers, "Content-Length": str(size)}
    start = time.monotonic()
    # Only ten bytes follow: an answer can only come from the declared length.
    r = send_raw("PUT", s.url, headers, b"0123456789", timeout=20)
    assert time.monotonic() - start < 15
    assert r.status == 400 and r.error_code() == "EntityTooLarge", r.body
    err = r.error()
    assert err["ProposedSize"] == str(size)
    assert err["MaxSizeAllowed"] == str(5 * GiB)


def test_exactly_5gib_declared_is_not_refused_up_front(endpoint, credentials, bucket):
    # 5 GiB is allowed: the server accepts the request and waits for the body.
    url = object_url(endpoint, bucket, "five")
    s = sign("PUT", url, credentials, payload_hash=UNSIGNED)
    u = urlsplit(s.url)
    head = [f"PUT {u.path} HTTP/1.1", f"Host: {u.netloc}", f"Content-Length: {5 * GiB}"]
    head += [f"{k}: {v}" for k, v in s.headers.items() if k.lower() not in ("host", "content-length")]
    with socket.create_connection((u.hostname, u.port), timeout=1.5) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"0123456789")
        with pytest.raises(TimeoutError):
            sock.recv(1)


# -- body shorter than Content-Length --
def test_incomplete_body_stores_nothing(endpoint, credentials, s3, bucket):
    url = object_url(endpoint, bucket, "short")
    s = sign("PUT", url, credentials, payload_hash=UNSIGNED)
    try:
        r = send_raw("PUT", s.url, {**s.headers, "Content-Length": "100"}, b"x" * 50, half_close=True)
    except http.client.RemoteDisconnected:
        pass  # the server may drop a half-closed connection instead of answering
    else:
        assert r.status == 400 and r.error_code() == "IncompleteBody", r.body
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="short")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_chunked_body_shorter_than_declared_length(endpoint, credentials, s3, bucket):
    # aws-chunked framing ends cleanly, but with fewer bytes than x-amz-decoded-content-length.
    r = streaming_put(endpoint, credentials, bucket, "short-chunked", b"a" * 500, chunk_size=200,
                      decoded_length=600)
    assert r.status == 400 and r.error_code() == "IncompleteBody", r.body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="short-chunked")


def test_missing_content_length(endpoint, credentials, bucket):
    s = sign("PUT", object_url(endpoint, bucket, "nolen"), credentials, payload_hash=UNSIGNED)
    r = send_raw("PUT", s.url, {k: v for k, v in s.headers.items() if k.lower() != "content-length"}, b"")
    assert r.status == 411 and r.error_code() == "MissingContentLength", r.body


# -- a server with small limits: the streaming checks, not only the declared length --
@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    if os.environ.get("COFFRE_TEST_ENDPOINT"):
        pytest.skip("needs a local server with special settings")
    srv = Server(str(tmp_path_factory.mktemp("limits") / "data"),
                 env={"COFFRE_MAX_PUT_SIZE": "1000", "COFFRE_MAX_KEY_LENGTH": "20",
                      "COFFRE_MAX_USER_METADATA": "10", "COFFRE_MIN_PART_SIZE": "100"}).start()
    yield srv
    srv.stop()


def test_configured_limits(small_server, credentials):
    s3 = make_client(small_server.endpoint, credentials)
    s3.create_bucket(Bucket="limits")
    s3.put_object(Bucket="limits", Key="k" * 20, Body=b"x" * 1000, Metadata={"ab": "12345678"})
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="limits", Key="k" * 21, Body=b"x")
    assert _err(e) == (400, "KeyTooLongError")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="limits", Key="m", Body=b"x", Metadata={"ab": "123456789"})
    assert _err(e) == (400, "MetadataTooLarge")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="limits", Key="big", Body=b"x" * 1001)
    assert _err(e) == (400, "EntityTooLarge")
    # aws-chunked: the decoded length is what counts.
    r = streaming_put(small_server.endpoint, credentials, "limits", "chunked", b"y" * 1001, chunk_size=300)
    assert r.status == 400 and r.error_code() == "EntityTooLarge", r.body
    r = streaming_put(small_server.endpoint, credentials, "limits", "chunked", b"y" * 1000, chunk_size=300)
    assert r.status == 200, r.body


def test_copy_source_too_large(small_server, credentials):
    # A multipart object may exceed the single-PUT size; copying it in one CopyObject may not.
    s3 = make_client(small_server.endpoint, credentials)
    s3.create_bucket(Bucket="copylimit")
    up = s3.create_multipart_upload(Bucket="copylimit", Key="src")
    parts = []
    for n in (1, 2):
        r = s3.upload_part(Bucket="copylimit", Key="src", UploadId=up["UploadId"], PartNumber=n, Body=b"z" * 600)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket="copylimit", Key="src", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="copylimit", Key="dst", CopySource={"Bucket": "copylimit", "Key": "src"})
    assert _err(e) == (400, "InvalidRequest")
    assert "copy source is larger than the maximum allowable size" in e.value.response["Error"]["Message"]


def test_plain_send_helper_sanity(endpoint, credentials, bucket):
    # The raw helpers sign correctly (otherwise the tests above would test nothing).
    s = sign("PUT", object_url(endpoint, bucket, "plain"), credentials, body=b"abc")
    assert send("PUT", s.url, s.headers, b"abc").status == 200
