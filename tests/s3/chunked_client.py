"""A tiny S3 client for tests that need exact control of signing and body framing.

It signs with botocore's own SigV4 signer (so the seed signature is the SDK's,
not ours) and produces the aws-chunked encodings AWS documents in
"sigv4-streaming" and "sigv4-streaming-trailers":

    signed:    hex(size);chunk-signature=SIG\\r\\n DATA \\r\\n ... 0;chunk-signature=SIG\\r\\n [trailers] \\r\\n
    unsigned:  hex(size)\\r\\n DATA \\r\\n ... 0\\r\\n [trailers] \\r\\n

Each chunk signature chains on the previous one (the first on the seed, the
Authorization header's signature); the trailer signature chains on the final
chunk's. Requests go out over http.client so a test can send any bytes it
likes, including a body shorter than its Content-Length.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import http.client
import importlib
import socket
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from unittest import mock
from urllib.parse import quote, urlsplit

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
REGION = "us-east-1"


@contextmanager
def clock(when: dt.datetime | None):
    """Make botocore (pure Python and CRT signers) sign as if the time were ``when`` (None: now)."""
    if when is None:
        yield
        return
    aware = when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)

    def fake(remove_tzinfo: bool = True) -> dt.datetime:
        return aware.replace(tzinfo=None) if remove_tzinfo else aware

    targets = [botocore.auth]
    try:
        targets.append(importlib.import_module("botocore.crt.auth"))
    except ImportError:  # awscrt absent: only the pure-Python signers exist
        pass
    with contextlib.ExitStack() as stack:
        for module in targets:
            stack.enter_context(mock.patch.object(module, "get_current_datetime", fake))
        yield


def object_url(endpoint: str, bucket: str, key: str = "", query: str = "") -> str:
    """Path-style URL, the key encoded as botocore does (``/`` kept, everything else escaped)."""
    path = "/" + bucket + ("/" + quote(key, safe="/~") if key else "")
    return endpoint + path + ("?" + query if query else "")


@dataclass
class Signed:
    """A request signed with SigV4 headers, ready to send."""

    method: str
    url: str
    headers: dict[str, str]
    seed: str  # the Authorization header's signature
    date: str  # x-amz-date
    scope: str  # yyyymmdd/region/s3/aws4_request
    key: bytes  # the SigV4 signing key, for chunk signatures


def signing_key(secret: str, date: str, region: str = REGION, service: str = "s3") -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def sign(method: str, url: str, credentials: tuple[str, str], *, headers: Mapping[str, str] | None = None,
         payload_hash: str | None = None, body: bytes = b"", when: dt.datetime | None = None,
         region: str = REGION) -> Signed:
    """Sign with botocore's S3SigV4Auth (pure Python). ``payload_hash`` overrides x-amz-content-sha256."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if payload_hash is not None:
        req.headers["X-Amz-Content-SHA256"] = payload_hash
    signer = _PayloadPreservingSigner(Credentials(*credentials), "s3", region)
    with clock(when):
        signer.add_auth(req)
    hdrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in req.headers.items()}
    auth = hdrs["Authorization"]
    seed = auth.rsplit("Signature=", 1)[1]
    date = hdrs["X-Amz-Date"]
    scope = f"{date[:8]}/{region}/s3/aws4_request"
    return Signed(method, req.url, hdrs, seed, date, scope, signing_key(credentials[1], date[:8], region))


class _PayloadPreservingSigner(botocore.auth.S3SigV4Auth):
    """S3SigV4Auth, but a caller-set X-Amz-Content-SHA256 (a STREAMING-* value) is kept."""

    def _modify_request_before_signing(self, request):  # type: ignore[no-untyped-def]
        preset = request.headers.get("X-Amz-Content-SHA256")
        super()._modify_request_before_signing(request)
        if preset is not None:
            del request.headers["X-Amz-Content-SHA256"]
            request.headers["X-Amz-Content-SHA256"] = preset


def chunk_signature(s: Signed, previous: str, data: bytes) -> str:
    sts = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", s.date, s.scope, previous, EMPTY_SHA256,
                     hashlib.sha256(data).hexdigest()))
    return hmac.new(s.key, sts.encode(), hashlib.sha256).hexdigest()


def trailer_signature(s: Signed, previous: str, trailers: Iterable[tuple[str, str]]) -> str:
    canonical = "".join(f"{k}:{v}\n" for k, v in trailers)
    sts = "\n".join(("AWS4-HMAC-SHA256-TRAILER", s.date, s.scope, previous,
                     hashlib.sha256(canonical.encode()).hexdigest()))
    return hmac.new(s.key, sts.encode(), hashlib.sha256).hexdigest()


@dataclass
class Framing:
    """Knobs for producing deliberately wrong encodings."""

    tamper_chunk: int | None = None  # index of the chunk whose signature is corrupted
    tamper_trailer_signature: bool = False
    omit_trailer_signature: bool = False
    extra_trailers: list[tuple[str, str]] = field(default_factory=list)


def encode(chunks: list[bytes], mode: str, signed: Signed | None = None,
           trailers: list[tuple[str, str]] | None = None, framing: Framing | None = None) -> bytes:
    """The aws-chunked body for ``chunks`` (a final empty chunk is added)."""
    framing = framing or Framing()
    trailers = list(trailers or []) + framing.extra_trailers
    out = bytearray()
    previous = signed.seed if signed is not None else ""
    for i, data in enumerate([*chunks, b""]):
        if mode in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
            assert signed is not None
            sig = chunk_signature(signed, previous, data)
            previous = sig
            if framing.tamper_chunk == i:
                sig = ("0" if sig[0] != "0" else "1") + sig[1:]
            out += f"{len(data):x};chunk-signature={sig}\r\n".encode()
        else:
            out += f"{len(data):x}\r\n".encode()
        if data:
            out += data + b"\r\n"
    for k, v in trailers:
        out += f"{k}:{v}\r\n".encode()
    if mode == STREAMING_SIGNED_TRAILER and not framing.omit_trailer_signature:
        assert signed is not None
        tsig = trailer_signature(signed, previous, trailers)
        if framing.tamper_trailer_signature:
            tsig = ("0" if tsig[0] != "0" else "1") + tsig[1:]
        out += f"x-amz-trailer-signature:{tsig}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or []


def crc32_b64(data: bytes) -> str:
    from awscrt import checksums

    return base64.b64encode(checksums.crc32(data).to_bytes(4, "big")).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def streaming_put(endpoint: str, credentials: tuple[str, str], bucket: str, key: str, data: bytes, *,
                  mode: str = STREAMING_SIGNED, chunk_size: int = 64 * 1024,
                  trailers: list[tuple[str, str]] | None = None, framing: Framing | None = None,
                  extra_headers: Mapping[str, str] | None = None, truncate: int | None = None,
                  decoded_length: int | None = None) -> Response:
    """PutObject with an aws-chunked body in ``mode``; returns the server's answer.

    ``truncate`` cuts that many bytes off the end of the encoded body while keeping
    the Content-Length of the full body (then closes the write side).
    """
    url = object_url(endpoint, bucket, key)
    trailers = trailers or []
    headers = {"Content-Encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data) if decoded_length is None else decoded_length)}
    if trailers:
        headers["x-amz-trailer"] = ",".join(k for k, _ in trailers)
    headers.update(extra_headers or {})
    # The encoded length depends only on sizes, so sign with it before encoding for real.
    probe = encode(split(data, chunk_size), mode, _dummy_signed(), trailers, framing)
    headers["Content-Length"] = str(len(probe))
    s = sign("PUT", url, credentials, headers=headers, payload_hash=mode)
    body = encode(split(data, chunk_size), mode, s, trailers, framing)
    assert len(body) == len(probe)
    if truncate:
        return send_raw(s.method, s.url, s.headers, body[:-truncate], half_close=True)
    return send(s.method, s.url, s.headers, body)


def _dummy_signed() -> Signed:
    return Signed("PUT", "", {}, "0" * 64, "20000101T000000Z", "20000101/us-east-1/s3/aws4_request", b"k")


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def error_code(self) -> str | None:
        import xml.etree.ElementTree as ET

        if not self.body:
            return None
        return ET.fromstring(self.body).findtext("Code")

    def error(self) -> dict[str, str]:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(self.body)
        return {child.tag: child.text or "" for child in root}


def send(method: str, url: str, headers: Mapping[str, str], body: bytes = b"",
         timeout: float = 30) -> Response:
    """Send a request as is (http.client adds nothing but what we set, bar Host)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        target = u.path + ("?" + u.query if u.query else "")
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k in headers}
        if "host" not in names:
            conn.putheader("Host", u.netloc)
        for k, v in headers.items():
            conn.putheader(k, v)
        if "content-length" not in names and (body or method in ("PUT", "POST")):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


def send_raw(method: str, url: str, headers: Mapping[str, str], body: bytes, *, half_close: bool = False,
             timeout: float = 30) -> Response:
    """Write the request bytes on a socket, optionally shut the write side, and parse the answer."""
    u = urlsplit(url)
    target = u.path + ("?" + u.query if u.query else "")
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in {k.lower() for k in headers}:
        lines.append(f"Host: {u.netloc}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        r = http.client.HTTPResponse(sock, method=method)
        r.begin()
        return Response(r.status, r.headers, r.read())
    finally:
        sock.close()
