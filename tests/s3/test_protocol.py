"""HTTP-level behaviour: lazy 100 Continue, stalled bodies, per-header size limit."""

from __future__ import annotations

import http.client
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import make_client
from tests.s3 import chunked_client as cc
from tests.server import Server


@pytest.fixture(scope="module")
def short_timeout_server(tmp_path_factory):
    srv = Server(str(tmp_path_factory.mktemp("idle") / "data"), env={"COFFRE_BODY_IDLE_TIMEOUT": "1"}).start()
    yield srv
    srv.stop()


def _open(url: str, head: bytes) -> socket.socket:
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=10)
    sock.sendall(head)
    return sock


def _head(method: str, url: str, headers: dict[str, str]) -> bytes:
    u = urlsplit(url)
    target = u.path + ("?" + u.query if u.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {u.netloc}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return int(data.split(b" ", 2)[1]), data


def test_stalled_body_gets_request_timeout_and_stores_nothing(short_timeout_server, credentials):
    endpoint = short_timeout_server.endpoint
    s3 = make_client(endpoint, credentials)
    s3.create_bucket(Bucket="stall")
    s3.put_object(Bucket="stall", Key="k", Body=b"old")
    url = cc.object_url(endpoint, "stall", "k")
    s = cc.sign("PUT", url, credentials, headers={"Content-Length": "1000"}, payload_hash="UNSIGNED-PAYLOAD")
    sock = _open(url, _head("PUT", url, s.headers) + b"x" * 100)  # then nothing more
    started = time.monotonic()
    try:
        r = http.client.HTTPResponse(sock, method="PUT")
        r.begin()
        body = r.read()
    finally:
        sock.close()
    assert r.status == 400
    assert b"<Code>RequestTimeout</Code>" in body
    assert time.monotonic() - started < 8
    assert s3.get_object(Bucket="stall", Key="k")["Body"].read() == b"old"


def test_continue_is_sent_only_when_the_body_is_needed(s3, bucket, endpoint, credentials):
    s3.put_object(Bucket=bucket, Key="exists", Body=b"v1")
    url = cc.object_url(endpoint, bucket, "exists")
    # A conditional PUT that fails: 412 comes straight away, without a 100 first.
    s = cc.sign("PUT", url, credentials, headers={"Content-Length": "5", "If-None-Match": "*",
                                                  "Expect": "100-continue"},
                payload_hash="UNSIGNED-PAYLOAD")
    sock = _open(url, _head("PUT", url, s.headers))
    try:
        status, data = _read_status(sock)
    finally:
        sock.close()
    assert status == 412, data[:200]
    # A PUT that proceeds gets its 100 and then its 200.
    s = cc.sign("PUT", cc.object_url(endpoint, bucket, "new"), credentials,
                headers={"Content-Length": "5", "Expect": "100-continue"}, payload_hash="UNSIGNED-PAYLOAD")
    url2 = cc.object_url(endpoint, bucket, "new")
    sock = _open(url2, _head("PUT", url2, s.headers))
    try:
        status, _ = _read_status(sock)
        assert status == 100
        sock.sendall(b"hello")
        status, data = _read_status(sock)
        if status == 100:  # both arrived in one read
            status = int(data.split(b"\r\n\r\n", 1)[1].split(b" ", 2)[1])
    finally:
        sock.close()
    assert status == 200
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"hello"


def test_one_header_over_the_limit(endpoint, credentials, bucket):
    url = cc.object_url(endpoint, bucket, "k")
    s = cc.sign("GET", url, credentials)
    headers = dict(s.headers)
    headers["X-Padding"] = "p" * 9000  # unsigned, but the size check comes first
    r = cc.send("GET", url, headers)
    assert r.status == 400
    assert r.error_code() == "RequestHeaderSectionTooLarge"
