"""aws-chunked decoding (ChunkedBody) and plain bodies (PlainBody): framing, signatures, lengths."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from coffre.core.errors import (
    IncompleteBody,
    InvalidArgument,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
from coffre.s3 import sigv4
from coffre.s3.body import ChunkedBody, PlainBody
from tests.s3 import chunked_client as cc

SECRET = "unit-test-secret"
DATE = "20240102T030405Z"
SCOPE = "20240102/us-east-1/s3/aws4_request"
SEED = "a" * 64


class BytesReader:
    """A network stand-in: hands out ``data`` in small, uneven pieces, then EOF (or an error)."""

    def __init__(self, data: bytes, piece: int = 7, error_at_end: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.piece = piece
        self.error_at_end = error_at_end

    def _eof(self) -> bytes:
        if self.error_at_end:
            raise ConnectionResetError("peer went away")
        return b""

    async def readany(self) -> bytes:
        if self.pos >= len(self.data):
            return self._eof()
        out = self.data[self.pos:self.pos + self.piece]
        self.pos += len(out)
        return out

    async def read(self, n: int = -1) -> bytes:
        return await self.readany()

    async def readexactly(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            self.pos = len(self.data)
            raise asyncio.IncompleteReadError(b"", n)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    async def readline(self) -> bytes:
        i = self.data.find(b"\n", self.pos)
        end = len(self.data) if i < 0 else i + 1
        out = self.data[self.pos:end]
        self.pos = end
        return out


def info(mode: str) -> sigv4.AuthInfo:
    return sigv4.AuthInfo(version=4, access_key_id="AK", signature=SEED, presigned=False, date=DATE,
                          scope_date=DATE[:8], region="us-east-1", service="s3", payload_hash=mode)


def signed(mode: str) -> cc.Signed:
    return cc.Signed("PUT", "", {}, SEED, DATE, SCOPE, cc.signing_key(SECRET, DATE[:8]))


def key() -> bytes:
    return sigv4.signing_key(SECRET, DATE[:8], "us-east-1", "s3")


async def drain(body) -> bytes:
    out = bytearray()
    async for piece in body:
        out += piece
    return bytes(out)


def decode(raw: bytes, mode: str, decoded_length: int | None, piece: int = 7) -> tuple[bytes, dict[str, str]]:
    body = ChunkedBody(BytesReader(raw, piece), info(mode), key() if mode != cc.STREAMING_UNSIGNED_TRAILER else None,
                       decoded_length)
    data = asyncio.run(drain(body))
    return data, dict(body.trailers)


MODES = [cc.STREAMING_SIGNED, cc.STREAMING_SIGNED_TRAILER, cc.STREAMING_UNSIGNED_TRAILER]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sizes", [[], [1], [8192, 8192, 10], [65536, 1024], [3 * 1024 * 1024 + 5]])
def test_round_trip(mode, sizes):
    chunks = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    data = b"".join(chunks)
    trailers = [] if mode == cc.STREAMING_SIGNED else [("x-amz-checksum-sha256", cc.sha256_b64(data))]
    raw = cc.encode(chunks, mode, signed(mode), trailers)
    got, got_trailers = decode(raw, mode, len(data), piece=65536)
    assert got == data
    assert got_trailers == dict(trailers)
    got, _ = decode(raw, mode, None, piece=65536)  # without x-amz-decoded-content-length
    assert got == data


def test_aws_published_example_body():
    """The chunk bodies of AWS's sigv4-streaming example decode with its signatures."""
    sigs = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
    raw = (f"10000;chunk-signature={sigs[0]}\r\n".encode() + b"a" * 65536 + b"\r\n"
           + f"400;chunk-signature={sigs[1]}\r\n".encode() + b"a" * 1024 + b"\r\n"
           + f"0;chunk-signature={sigs[2]}\r\n\r\n".encode())
    assert len(raw) == 66824
    i = sigv4.AuthInfo(version=4, access_key_id="AKIAIOSFODNN7EXAMPLE",
                       signature="4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
                       presigned=False, date="20130524T000000Z", scope_date="20130524", region="us-east-1",
                       service="s3", payload_hash=sigv4.STREAMING_SIGNED)
    k = sigv4.signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3")
    assert asyncio.run(drain(ChunkedBody(BytesReader(raw, 4096), i, k, 66560))) == b"a" * 66560
    bad = raw.replace(b"a" * 1024, b"a" * 1023 + b"b")
    with pytest.raises(SignatureDoesNotMatch):
        asyncio.run(drain(ChunkedBody(BytesReader(bad, 4096), i, k, 66560)))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_tampered_chunk_signature(index):
    mode = cc.STREAMING_SIGNED
    raw = cc.encode([b"x" * 100, b"y" * 50], mode, signed(mode), framing=cc.Framing(tamper_chunk=index))
    with pytest.raises(SignatureDoesNotMatch):
        decode(raw, mode, 150)


def test_missing_chunk_signature():
    raw = cc.encode([b"x" * 10], cc.STREAMING_UNSIGNED_TRAILER)  # no signatures at all
    with pytest.raises(SignatureDoesNotMatch):
        decode(raw, cc.STREAMING_SIGNED, 10)


def test_signature_from_another_seed():
    other = cc.Signed("PUT", "", {}, "b" * 64, DATE, SCOPE, cc.signing_key(SECRET, DATE[:8]))
    raw = cc.encode([b"x" * 10], cc.STREAMING_SIGNED, other)
    with pytest.raises(SignatureDoesNotMatch):
        decode(raw, cc.STREAMING_SIGNED, 10)


@pytest.mark.parametrize("framing", [cc.Framing(tamper_trailer_signature=True), cc.Framing(omit_trailer_signature=True),
                                     cc.Framing(extra_trailers=[("x-amz-meta-late", "1")])])
def test_trailer_signature(framing):
    mode = cc.STREAMING_SIGNED_TRAILER
    trailers = [("x-amz-checksum-crc32", cc.crc32_b64(b"data"))]
    raw = cc.encode([b"data"], mode, signed(mode), trailers, framing)
    if framing.extra_trailers:
        # An added trailer is covered by the signature as well: it decodes and is kept.
        _, got = decode(raw, mode, 4)
        assert got["x-amz-meta-late"] == "1"
        forged = raw.replace(b"x-amz-meta-late:1", b"x-amz-meta-late:2")
        with pytest.raises(SignatureDoesNotMatch):
            decode(forged, mode, 4)
    else:
        with pytest.raises(SignatureDoesNotMatch):
            decode(raw, mode, 4)


@pytest.mark.parametrize("raw", [
    b"zz\r\nabc\r\n0\r\n\r\n",  # size not hex
    b"\r\nabc\r\n0\r\n\r\n",  # empty size
    b"3\r\nabcd\r\n0\r\n\r\n",  # data longer than its size
    b"3\nabc\r\n0\r\n\r\n",  # bare LF
    b"3\r\nab",  # EOF inside the data
    b"3\r\nabc",  # EOF before the CRLF after data
    b"3\r\nabc\r\n",  # EOF before the final chunk
    b"1" * 5000 + b"\r\n",  # over-long line
    b"-3\r\nabc\r\n0\r\n\r\n",  # negative
    b"ffffffffffffffffff\r\n",  # absurd size
])
def test_framing_errors(raw):
    with pytest.raises(IncompleteBody):
        decode(raw, cc.STREAMING_UNSIGNED_TRAILER, None)


def test_decoded_length_mismatch():
    raw = cc.encode([b"abc", b"de"], cc.STREAMING_UNSIGNED_TRAILER)
    assert decode(raw, cc.STREAMING_UNSIGNED_TRAILER, 5)[0] == b"abcde"
    with pytest.raises(IncompleteBody):
        decode(raw, cc.STREAMING_UNSIGNED_TRAILER, 6)
    with pytest.raises(IncompleteBody):
        decode(raw, cc.STREAMING_UNSIGNED_TRAILER, 4)


def test_too_many_trailers():
    trailers = [(f"x-amz-meta-t{i}", "v") for i in range(40)]
    raw = cc.encode([b"abc"], cc.STREAMING_UNSIGNED_TRAILER, trailers=trailers)
    with pytest.raises(InvalidArgument):
        decode(raw, cc.STREAMING_UNSIGNED_TRAILER, 3)


def test_malformed_trailer():
    raw = cc.encode([b"abc"], cc.STREAMING_UNSIGNED_TRAILER)[:-2] + b"no-colon-here\r\n\r\n"
    with pytest.raises(IncompleteBody):
        decode(raw, cc.STREAMING_UNSIGNED_TRAILER, 3)


def test_large_chunk_is_streamed_in_pieces():
    """A single huge chunk is never handed over whole (the server does not hold it in memory)."""
    data = b"z" * (5 * 1024 * 1024)
    raw = cc.encode([data], cc.STREAMING_SIGNED, signed(cc.STREAMING_SIGNED))

    async def sizes() -> list[int]:
        body = ChunkedBody(BytesReader(raw, 1 << 20), info(cc.STREAMING_SIGNED), key(), len(data))
        return [len(p) async for p in body]

    got = asyncio.run(sizes())
    assert sum(got) == len(data)
    assert max(got) <= 1 << 20


# -- PlainBody --
def plain(data: bytes, length: int | None, sha: str | None, error_at_end: bool = False) -> bytes:
    return asyncio.run(drain(PlainBody(BytesReader(data, 1000, error_at_end), length, sha)))


def test_plain_body():
    data = bytes(range(256)) * 40
    assert plain(data, len(data), hashlib.sha256(data).hexdigest()) == data
    assert plain(data, len(data), None) == data
    with pytest.raises(XAmzContentSHA256Mismatch):
        plain(data, len(data), hashlib.sha256(data + b"!").hexdigest())
    with pytest.raises(IncompleteBody):
        plain(data[:-1], len(data), None)
    with pytest.raises(IncompleteBody):
        plain(data[:-1], len(data), None, error_at_end=True)


def test_plain_body_mismatch_raised_before_last_piece():
    data = b"q" * 5000
    seen = []

    async def run() -> None:
        async for piece in PlainBody(BytesReader(data, 1000), len(data), "0" * 64):
            seen.append(piece)

    with pytest.raises(XAmzContentSHA256Mismatch):
        asyncio.run(run())
    assert sum(map(len, seen)) < len(data)
