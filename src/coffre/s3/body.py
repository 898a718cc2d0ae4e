"""Request bodies as the domain layer sees them: plain, or aws-chunked.

``PlainBody`` streams a Content-Length body, verifying a signed payload's
sha256 at the end. ``ChunkedBody`` decodes aws-chunked framing, verifying
every chunk signature (and the trailer signature) in the signed modes and
collecting trailers. Both raise before the last byte is handed over when
anything is wrong, so the blob being written is discarded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from coffre.core.errors import IncompleteBody, InvalidArgument, SignatureDoesNotMatch, XAmzContentSHA256Mismatch
from coffre.s3 import sigv4
from coffre.s3.sigv4 import AuthInfo

MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 16
READ_SIZE = 1 << 20


class Reader(Protocol):
    async def readany(self) -> bytes: ...
    async def read(self, n: int = -1) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...
    async def readline(self) -> bytes: ...


class PlainBody:
    def __init__(self, reader: Reader, length: int | None, sha256_hex: str | None = None) -> None:
        self._reader = reader
        self._length = length
        self._sha = hashlib.sha256() if sha256_hex else None
        self._want = sha256_hex

    @property
    def trailers(self) -> Mapping[str, str]:
        return {}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        sha = self._sha
        while True:
            try:
                data = await self._reader.readany()
            except Exception as e:  # connection reset while reading the body
                raise IncompleteBody() from e
            if not data:
                break
            received += len(data)
            if sha is not None:
                sha.update(data)
            if sha is not None and self._length is not None and received >= self._length:
                # Verify before handing over the last bytes.
                self._check(sha)
                sha = None
            yield data
        if self._length is not None and received < self._length:
            raise IncompleteBody(expected=self._length, received=received)
        if sha is not None:
            self._check(sha)

    def _check(self, sha: hashlib._Hash) -> None:
        if not hmac.compare_digest(sha.hexdigest(), self._want or ""):
            raise XAmzContentSHA256Mismatch()


class ChunkedBody:
    """aws-chunked: ``hex-size[;chunk-signature=sig]\\r\\n data \\r\\n`` ... ``0...\\r\\n [trailers] \\r\\n``."""

    def __init__(self, reader: Reader, info: AuthInfo, key: bytes | None, decoded_length: int | None) -> None:
        self._reader = reader
        self._info = info
        self._key = key
        self._signed = info.payload_hash in (sigv4.STREAMING_SIGNED, sigv4.STREAMING_SIGNED_TRAILER)
        self._trailer_mode = info.payload_hash in (sigv4.STREAMING_SIGNED_TRAILER,
                                                   sigv4.STREAMING_UNSIGNED_TRAILER)
        self._decoded_length = decoded_length
        self._trailers: dict[str, str] = {}

    @property
    def trailers(self) -> Mapping[str, str]:
        return self._trailers

    async def _line(self) -> bytes:
        try:
            line = await self._reader.readline()
        except Exception as e:
            raise IncompleteBody() from e
        if not line:
            raise IncompleteBody()
        if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\r\n"):
            raise IncompleteBody("Malformed aws-chunked framing.")
        return line[:-2]

    async def _exact(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except Exception as e:
            raise IncompleteBody() from e

    def _verify(self, previous: str, sig: str | None, data: bytes) -> str:
        if sig is None:
            raise SignatureDoesNotMatch("Missing chunk signature")
        assert self._key is not None
        expected = sigv4.chunk_signature(self._key, self._info, previous, hashlib.sha256(data).hexdigest())
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise SignatureDoesNotMatch("The chunk signature does not match")
        return expected

    async def __aiter__(self) -> AsyncIterator[bytes]:
        previous = self._info.signature
        total = 0
        while True:
            header = await self._line()
            size_s, _, ext = header.partition(b";")
            try:
                size = int(size_s.strip(), 16)
            except ValueError as e:
                raise IncompleteBody("Malformed aws-chunked chunk size.") from e
            sig = None
            if ext:
                name, _, val = ext.partition(b"=")
                if name.strip() == b"chunk-signature":
                    sig = val.strip().decode("ascii", "replace")
            if size == 0:
                if self._signed:
                    previous = self._verify(previous, sig, b"")
                break
            data = await self._exact(size)
            if await self._exact(2) != b"\r\n":
                raise IncompleteBody("Malformed aws-chunked framing.")
            if self._signed:
                previous = self._verify(previous, sig, data)
            total += size
            if self._decoded_length is not None and total > self._decoded_length:
                raise IncompleteBody("More data than x-amz-decoded-content-length.")
            if self._decoded_length is not None and total == self._decoded_length:
                # Everything after this is framing: verify it before the last data goes out.
                await self._finish(previous, total)
                yield data
                return
            yield data
        await self._finish_after_zero(previous, total)

    async def _finish(self, previous: str, total: int) -> None:
        header = await self._line()
        size_s, _, ext = header.partition(b";")
        try:
            size = int(size_s.strip(), 16)
        except ValueError as e:
            raise IncompleteBody("Malformed aws-chunked chunk size.") from e
        if size != 0:
            raise IncompleteBody("More data than x-amz-decoded-content-length.")
        sig = None
        if ext:
            name, _, val = ext.partition(b"=")
            if name.strip() == b"chunk-signature":
                sig = val.strip().decode("ascii", "replace")
        if self._signed:
            previous = self._verify(previous, sig, b"")
        await self._finish_after_zero(previous, total)

    async def _finish_after_zero(self, previous: str, total: int) -> None:
        if self._decoded_length is not None and total != self._decoded_length:
            raise IncompleteBody(expected=self._decoded_length, received=total)
        trailer_sig = None
        canonical = []
        count = 0
        while True:
            try:
                line = await self._reader.readline()
            except Exception as e:
                raise IncompleteBody() from e
            if line in (b"\r\n", b"\n", b""):
                break
            count += 1
            if count > MAX_TRAILERS or len(line) > MAX_CHUNK_LINE:
                raise InvalidArgument("Too many or too large trailing headers.")
            name, sep, value = line.decode("utf-8", "replace").strip().partition(":")
            if not sep:
                raise IncompleteBody("Malformed trailing header.")
            name = name.strip().lower()
            value = value.strip()
            if name == "x-amz-trailer-signature":
                trailer_sig = value
                continue
            self._trailers[name] = value
            canonical.append(f"{name}:{value}\n")
        if self._info.payload_hash == sigv4.STREAMING_SIGNED_TRAILER:
            if trailer_sig is None:
                raise SignatureDoesNotMatch("Missing trailer signature")
            assert self._key is not None
            expected = sigv4.trailer_signature(self._key, self._info, previous,
                                               hashlib.sha256("".join(canonical).encode()).hexdigest())
            if not hmac.compare_digest(expected.encode(), trailer_sig.encode()):
                raise SignatureDoesNotMatch("The trailer signature does not match")
