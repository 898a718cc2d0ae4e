"""The blob store interface. Every backend passes tests/conformance/test_blob.py.

Blobs are immutable byte strings named by ids the server generates (never by
anything a client sent), written once, read by range, and deleted when no
committed metadata points at them any more.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TypeVar

_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")

Buffer = bytes | bytearray | memoryview
# A piece of a blob being written: its bytes, or a function that makes them (it is called
# on the store's writer thread, in order, so encrypting a batch and writing it cost one hop).
Piece = Buffer | Callable[[], Buffer]
T = TypeVar("T")
# Pieces the generic get_mapped path hands its function on a worker thread, not inline.
_MAP_INLINE = 128 * 1024


class BlobNotFound(Exception):
    pass


class InvalidBlobId(ValueError):
    pass


def new_blob_id() -> str:
    return secrets.token_hex(16)


def check_blob_id(blob_id: str) -> str:
    """Only ids this server generated reach a backend (so no id can name a path outside it)."""
    if not isinstance(blob_id, str) or not _BLOB_ID.match(blob_id):
        raise InvalidBlobId("invalid blob id")
    return blob_id


class BlobStore(ABC):
    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot answer."""

    @abstractmethod
    async def put(self, blob_id: str, chunks: AsyncIterable[Piece], size_hint: int | None = None) -> int:
        """Write the blob from ``chunks`` and make it durable; return its size.

        ``size_hint``: the blob's size as stored, when the caller knows it before the first
        byte (a PUT with a Content-Length). A backend may use it to choose how to store the
        blob (the local store keeps small blobs out of files) or ignore it; a wrong hint
        must never corrupt or lose a blob, only cost the better layout.

        A piece may be a zero-argument function returning the bytes: the store calls those
        one after the other, in order, possibly on a worker thread.

        When this returns, the blob survives a crash. If ``chunks`` raises, or
        anything fails, no blob of that id is left visible and the error propagates.
        """

    @abstractmethod
    def get(self, blob_id: str, offset: int = 0, length: int | None = None,
            chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the bytes [offset, offset+length) in pieces of at most ``chunk_size``.

        Raises BlobNotFound when the blob does not exist.
        """

    async def get_mapped(self, blob_id: str, offset: int, length: int, chunk_size: int,
                         fn: Callable[[int, Buffer], T]) -> AsyncIterator[T]:
        """Yield ``fn(pos, data)`` for consecutive runs ``data`` of [offset, offset+length) of
        exactly ``chunk_size`` bytes (the last run may be shorter, and is shorter still when the
        blob ends early), ``pos`` being the run's offset in the blob.

        ``fn`` may run on a worker thread; a store that can read a run and call ``fn`` in the
        same hop should. The blob is opened once for the whole span, so a blob deleted
        meanwhile is still read whole. This generic version regroups what ``get`` yields.
        """
        loop = asyncio.get_running_loop()

        async def call(pos: int, data: Buffer) -> T:
            if len(data) > _MAP_INLINE:
                return await loop.run_in_executor(None, fn, pos, data)
            return fn(pos, data)

        stream = self.get(blob_id, offset, length, chunk_size=chunk_size)
        pos = offset
        buf = bytearray()
        try:
            async for piece in stream:
                if not buf and len(piece) == chunk_size:
                    yield await call(pos, piece)  # the usual case: the backend honoured chunk_size
                    pos += chunk_size
                    continue
                buf += piece
                while len(buf) >= chunk_size:
                    run = bytes(buf[:chunk_size])
                    del buf[:chunk_size]
                    yield await call(pos, run)
                    pos += chunk_size
            if buf:
                yield await call(pos, bytes(buf))
        finally:
            aclose = getattr(stream, "aclose", None)  # close the file now, not when collected
            if aclose is not None:
                await aclose()

    @abstractmethod
    async def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Read exactly [offset, offset+length) (shorter only at the end of the blob)."""

    @abstractmethod
    async def delete(self, blob_id: str) -> None:
        """Delete the blob; deleting a missing blob is not an error."""

    @abstractmethod
    async def size(self, blob_id: str) -> int | None:
        """The blob's size, or None when it does not exist."""

    @abstractmethod
    def list_ids(self, older_than: float) -> AsyncIterator[str]:
        """Ids of blobs last written before the POSIX time ``older_than`` (for orphan collection)."""
