"""What the protocol layer hands the domain layer as a request body."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol, TypeAlias

# A piece of payload: the protocol layer hands bytes, a copy source hands the buffers it decrypted.
Chunk: TypeAlias = bytes | bytearray | memoryview


class Body(Protocol):
    """An async stream of payload bytes (already de-framed and, where signed, verified).

    ``trailers`` holds the trailing headers (lower-case names) once the stream is exhausted.
    The stream raises a domain error (IncompleteBody, SignatureDoesNotMatch, ...) where
    the payload turns out to be bad; the blob being written is then discarded.
    """

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    @property
    def trailers(self) -> Mapping[str, str]: ...


class BytesBody:
    """A body already in memory (small internal payloads, tests)."""

    def __init__(self, data: bytes, trailers: Mapping[str, str] | None = None) -> None:
        self._data = data
        self._trailers = dict(trailers or {})

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._data:
            yield self._data

    @property
    def trailers(self) -> Mapping[str, str]:
        return self._trailers


class StreamBody:
    """Wrap any async iterator of byte buffers as a Body without trailers."""

    def __init__(self, it: AsyncIterator[Chunk]) -> None:
        self._it = it

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._it

    @property
    def trailers(self) -> Mapping[str, str]:
        return {}
