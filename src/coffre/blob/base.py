"""The blob store interface. Every backend passes tests/conformance/test_blob.py.

Blobs are immutable byte strings named by ids the server generates (never by
anything a client sent), written once, read by range, and deleted when no
committed metadata points at them any more.
"""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator

_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")


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
    async def put(self, blob_id: str, chunks: AsyncIterable[bytes]) -> int:
        """Write the blob from ``chunks`` and make it durable; return its size.

        When this returns, the blob survives a crash. If ``chunks`` raises, or
        anything fails, no blob of that id is left visible and the error propagates.
        """

    @abstractmethod
    def get(self, blob_id: str, offset: int = 0, length: int | None = None,
            chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the bytes [offset, offset+length) in pieces of at most ``chunk_size``.

        Raises BlobNotFound when the blob does not exist.
        """

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
