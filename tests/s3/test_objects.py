"""PutObject, GetObject, HeadObject, DeleteObject: bodies, metadata and stored headers round-trip."""

from __future__ import annotations

import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from tests.s3.chunked_client import object_url, send, sign


def test_put_get_head_delete(s3, bucket):
    data = os.urandom(1000)
    r = s3.put_object(Bucket=bucket, Key="k", Body=data)
    assert r["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert r["ServerSideEncryption"] == "AES256"
    g = s3.get_object(Bucket=bucket, Key="k")
    assert g["Body"].read() == data
    assert g["ETag"] == r["ETag"]
    assert g["ContentLength"] == 1000
    assert g["ContentType"] == "binary/octet-stream"
    assert g["AcceptRanges"] == "bytes"
    h = s3.head_object(Bucket=bucket, Key="k")
    assert h["ContentLength"] == 1000
    assert h["ETag"] == r["ETag"]
    assert h["LastModified"] == g["LastModified"]
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    g = s3.get_object(Bucket=bucket, Key="empty")
    assert g["Body"].read() == b""
    assert g["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0


def test_overwrite_replaces_body_and_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"one", Metadata={"a": "1"}, ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="k", Body=b"two!")
    g = s3.get_object(Bucket=bucket, Key="k")
    assert g["Body"].read() == b"two!"
    assert g["Metadata"] == {}
    assert g["ContentType"] == "binary/octet-stream"


def test_delete_missing_key_is_204(s3, bucket):
    r = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_in_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket="no-such-bucket-coffre-xyz", Key="k")
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"


def test_head_missing_is_404_without_body(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="nope")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_head_has_length_and_no_body(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 12345)
    s = sign("HEAD", object_url(endpoint, bucket, "k"), credentials)
    r = send("HEAD", s.url, s.headers)
    assert r.status == 200
    assert r.headers["Content-Length"] == "12345"
    assert r.body == b""


def test_stored_headers_round_trip(s3, bucket):
    headers = dict(ContentType="text/html; charset=utf-8", ContentEncoding="gzip",
                   ContentDisposition='attachment; filename="report 2024.pdf"', ContentLanguage="fr-CA",
                   CacheControl="max-age=3600, must-revalidate", Expires="Thu, 01 Dec 2044 16:00:00 GMT")
    s3.put_object(Bucket=bucket, Key="k", Body=b"<p>hi</p>", **headers)
    for r in (s3.get_object(Bucket=bucket, Key="k"), s3.head_object(Bucket=bucket, Key="k")):
        raw = r["ResponseMetadata"]["HTTPHeaders"]
        assert raw["content-type"] == headers["ContentType"]
        assert raw["content-encoding"] == "gzip"
        assert raw["content-disposition"] == headers["ContentDisposition"]
        assert raw["content-language"] == "fr-CA"
        assert raw["cache-control"] == headers["CacheControl"]
        assert raw["expires"] == headers["Expires"]


def test_user_metadata_round_trip(s3, bucket):
    meta = {"color": "blue", "with-dash": "a b  c", "empty": "", "Upper": "KeepsValueCase"}
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata=meta)
    got = s3.head_object(Bucket=bucket, Key="k")["Metadata"]
    # Names are case-insensitive HTTP headers: S3 stores and returns them in lower case.
    assert got == {"color": "blue", "with-dash": "a b  c", "empty": "", "upper": "KeepsValueCase"}


def test_rfc2047_metadata_is_returned_as_sent(s3, bucket):
    # boto3 refuses non-ASCII metadata; clients encode it (RFC 2047) and must get it back unchanged.
    encoded = "=?UTF-8?B?w6l0w6kg8J+YgA==?="
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"title": encoded},
                  ContentDisposition="attachment; filename*=UTF-8''%C3%A9t%C3%A9.txt")
    h = s3.head_object(Bucket=bucket, Key="k")
    assert h["Metadata"]["title"] == encoded
    assert h["ContentDisposition"] == "attachment; filename*=UTF-8''%C3%A9t%C3%A9.txt"


def test_raw_utf8_metadata_round_trips_byte_exact(endpoint, credentials, bucket):
    value = "été 😀 – ü"
    url = object_url(endpoint, bucket, "utf8")
    s = sign("PUT", url, credentials, headers={"x-amz-meta-t": value, "Content-Language": "dé"}, body=b"abc")
    assert _send_encoded("PUT", s.url, s.headers, b"abc", "utf-8").status == 200
    g = sign("GET", url, credentials)
    r = send("GET", g.url, g.headers)
    assert r.status == 200 and r.body == b"abc"
    # http.client decodes header bytes as latin-1: re-encode to get the bytes on the wire.
    got = r.headers["x-amz-meta-t"].encode("latin-1")
    assert got == value.encode("utf-8")
    assert r.headers["Content-Language"].encode("latin-1") == "dé".encode()


def test_invalid_utf8_metadata_is_refused(endpoint, credentials, bucket):
    # Bytes that are not UTF-8 (latin-1 "é") could never be returned as sent: refused, never a 500.
    url = object_url(endpoint, bucket, "bad")
    s = sign("PUT", url, credentials, headers={"Content-Disposition": "\xe9"}, body=b"abc")
    r = _send_encoded("PUT", s.url, s.headers, b"abc", "latin-1")
    assert r.status in (400, 403), r.body
    # Unsigned (Content-Disposition need not be signed), so the value reaches the object layer.
    s = sign("PUT", url, credentials, body=b"abc")
    r = _send_encoded("PUT", s.url, {**s.headers, "Content-Disposition": "\xe9"}, b"abc", "latin-1")
    assert r.status == 400 and r.error_code() == "InvalidArgument", r.body
    g = sign("HEAD", url, credentials)
    assert send("HEAD", g.url, g.headers).status == 404


def _send_encoded(method, url, headers, body, encoding):
    """Send a request whose header section is ``encoding``-encoded text (http.client allows latin-1 only)."""
    import http.client
    import socket
    from urllib.parse import urlsplit

    from tests.s3.chunked_client import Response

    u = urlsplit(url)
    lines = [f"{method} {u.path} HTTP/1.1", f"Host: {u.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode(encoding) + body)
        r = http.client.HTTPResponse(sock, method=method)
        r.begin()
        return Response(r.status, r.headers, r.read())
    finally:
        sock.close()


def test_large_object_streams_back(s3, bucket):
    # Several MiB: served through the streaming path, not one buffered write.
    data = os.urandom(5 * 1024 * 1024 + 17)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    g = s3.get_object(Bucket=bucket, Key="big")
    assert g["ContentLength"] == len(data)
    h = hashlib.sha256()
    for chunk in g["Body"].iter_chunks(65536):
        h.update(chunk)
    assert h.digest() == hashlib.sha256(data).digest()
    part = s3.get_object(Bucket=bucket, Key="big", Range="bytes=1048570-4194310")["Body"].read()
    assert part == data[1048570:4194311]


def test_checksum_returned_on_request(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"hello", ChecksumAlgorithm="SHA256")
    assert r["ChecksumSHA256"] == "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
    g = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert g["ChecksumSHA256"] == r["ChecksumSHA256"]


def test_checksum_only_when_asked(endpoint, credentials, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello", ChecksumAlgorithm="SHA256")
    s = sign("GET", object_url(endpoint, bucket, "k"), credentials)
    assert "x-amz-checksum-sha256" not in send("GET", s.url, s.headers).headers
    s = sign("GET", object_url(endpoint, bucket, "k"), credentials, headers={"x-amz-checksum-mode": "ENABLED"})
    assert send("GET", s.url, s.headers).headers["x-amz-checksum-sha256"] == \
        "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="


def test_content_md5_mismatch_is_bad_digest(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"hello", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
    assert e.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
