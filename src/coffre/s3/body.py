"""Request bodies as the domain layer sees them: plain, or aws-chunked.

``PlainBody`` streams a Content-Length body, verifying a signed payload's
sha256 at the end. ``ChunkedBody`` decodes aws-chunked framing, verifying
every chunk signature (and the trailer signature) in the signed modes and
collecting trailers. Both raise before the last byte is handed over when
anything is wrong, so the blob being written is discarded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

from coffre.core.errors import (
    CoffreError,
    IncompleteBody,
    InvalidArgument,
    RequestTimeout,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
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


class RequestReader:
    """The connection's body stream as handlers read it.

    It sends ``100 Continue`` on the first read, so a request refused before its body is
    needed (authentication, size, preconditions) never makes the client send it; and it
    bounds how long one read may wait, so a client that stops sending mid-body gets
    RequestTimeout instead of holding the request open for ever.
    """

    def __init__(self, reader: Reader, idle_timeout: float,
                 send_continue: Callable[[], Awaitable[None]] | None = None) -> None:
        self._reader = reader
        self._timeout = idle_timeout
        self._send_continue = send_continue
        self.continued = False  # the 100 Continue went out

    async def _go(self, read: Awaitable[bytes]) -> bytes:
        if self._send_continue is not None:
            send, self._send_continue = self._send_continue, None
            self.continued = True
            await send()
        try:
            async with asyncio.timeout(self._timeout):
                return await read
        except TimeoutError as e:
            raise RequestTimeout() from e

    async def readany(self) -> bytes:
        return await self._go(self._reader.readany())

    async def read(self, n: int = -1) -> bytes:
        return await self._go(self._reader.read(n))

    async def readexactly(self, n: int) -> bytes:
        return await self._go(self._reader.readexactly(n))

    async def readline(self) -> bytes:
        return await self._go(self._reader.readline())


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
            except CoffreError:
                raise
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
    """aws-chunked: ``hex-size[;chunk-signature=sig]\\r\\n data \\r\\n`` ... ``0...\\r\\n [trailers] \\r\\n``.

    A chunk's data is streamed in pieces of at most READ_SIZE bytes (a client may
    declare a chunk of any size; it is never held whole), and its signature is
    checked once its last byte has arrived. A bad signature or framing raises
    before the stream ends, so the consumer never completes a write with it.
    """

    def __init__(self, reader: Reader, info: AuthInfo, key: bytes | None, decoded_length: int | None) -> None:
        self._reader = reader
        self._info = info
        self._key = key
        self._signed = info.payload_hash in (sigv4.STREAMING_SIGNED, sigv4.STREAMING_SIGNED_TRAILER)
        if self._signed and key is None:
            raise ValueError("signed aws-chunked bodies need the signing key")
        self._decoded_length = decoded_length
        self._trailers: dict[str, str] = {}

    @property
    def trailers(self) -> Mapping[str, str]:
        return self._trailers

    async def _readline(self) -> bytes:
        try:
            return await self._reader.readline()
        except CoffreError:
            raise
        except Exception as e:  # connection lost, or a line over the reader's limit
            raise IncompleteBody() from e

    async def _line(self) -> bytes:
        line = await self._readline()
        if not line:
            raise IncompleteBody()
        if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\r\n"):
            raise IncompleteBody("Malformed aws-chunked framing.")
        return line[:-2]

    async def _exact(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except CoffreError:
            raise
        except Exception as e:
            raise IncompleteBody() from e

    @staticmethod
    def _header(line: bytes) -> tuple[int, str | None]:
        """Chunk size and chunk-signature from ``hex-size[;name=value]*``."""
        size_s, *exts = line.split(b";")
        size_s = size_s.strip()
        if not size_s or len(size_s) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size_s):
            raise IncompleteBody("Malformed aws-chunked chunk size.")
        sig = None
        for ext in exts:
            name, _, val = ext.partition(b"=")
            if name.strip() == b"chunk-signature":
                sig = val.strip().decode("ascii", "replace")
        return int(size_s, 16), sig

    def _verify(self, previous: str, sig: str | None, sha: hashlib._Hash) -> str:
        if sig is None:
            raise SignatureDoesNotMatch("The chunk signature is missing.")
        assert self._key is not None
        expected = sigv4.chunk_signature(self._key, self._info, previous, sha.hexdigest())
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise SignatureDoesNotMatch()
        return expected

    async def __aiter__(self) -> AsyncIterator[bytes]:
        previous = self._info.signature
        total = 0
        while True:
            size, sig = self._header(await self._line())
            total += size
            if self._decoded_length is not None and total > self._decoded_length:
                raise IncompleteBody("The aws-chunked body is longer than its x-amz-decoded-content-length.")
            sha = hashlib.sha256() if self._signed else None
            remaining = size
            while remaining:
                piece = await self._exact(min(remaining, READ_SIZE))
                remaining -= len(piece)
                if sha is not None:
                    sha.update(piece)
                if remaining == 0:
                    await self._chunk_end()
                    if sha is not None:
                        previous = self._verify(previous, sig, sha)
                yield piece
            if size == 0:
                if sha is not None:
                    previous = self._verify(previous, sig, sha)
                break
        if self._decoded_length is not None and total != self._decoded_length:
            raise IncompleteBody(expected=self._decoded_length, received=total)
        await self._read_trailers(previous)

    async def _chunk_end(self) -> None:
        if await self._exact(2) != b"\r\n":
            raise IncompleteBody("Malformed aws-chunked framing: chunk data longer than its size.")

    async def _read_trailers(self, previous: str) -> None:
        trailer_sig = None
        canonical = []
        count = 0
        while True:
            line = await self._readline()
            if line in (b"\r\n", b"\n", b""):
                # b"": the body ended without the closing blank line; tolerated, as some clients omit it.
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
                raise SignatureDoesNotMatch("The trailer signature is missing.")
            assert self._key is not None
            expected = sigv4.trailer_signature(self._key, self._info, previous,
                                               hashlib.sha256("".join(canonical).encode()).hexdigest())
            if not hmac.compare_digest(expected.encode(), trailer_sig.encode()):
                raise SignatureDoesNotMatch()
