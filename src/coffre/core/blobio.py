"""Streaming plaintext into encrypted blobs and back.

Write: body chunks are gathered into batches; each batch is hashed (MD5 for
the ETag, the requested checksum) and encrypted in one call, on a worker
thread when it is large, inline when it is small (a thread hop costs more
than hashing a few KiB). The blob store makes the ciphertext durable. Nothing
is ever held beyond one batch.

Read: only the segments overlapping the requested range are fetched and
decrypted, in batches of about one MiB.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from coffre.blob.base import BlobStore, new_blob_id
from coffre.core.checksums import Checksum
from coffre.core.errors import EntityTooLarge, IncompleteBody
from coffre.core.keyring import Keyring
from coffre.crypto.segments import TAG_SIZE, IntegrityError, SegmentDecryptor, SegmentEncryptor

BATCH = 1 << 20
INLINE_LIMIT = 128 * 1024
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    blob_id: str
    dek: bytes  # wrapped
    size: int
    md5: bytes
    checksum: Checksum | None


class _Writer:
    """Hashes and encrypts batches; used from one task at a time."""

    def __init__(self, dek: bytes, blob_id: str, segment_size: int, checksum: Checksum | None) -> None:
        self.md5 = hashlib.md5()  # noqa: S324 - MD5 is the S3 ETag, not a security hash
        self.checksum = checksum
        self.enc = SegmentEncryptor(dek, blob_id, segment_size)

    def process(self, data: bytes | bytearray) -> bytes:
        self.md5.update(data)
        if self.checksum is not None:
            self.checksum.update(data)
        out = self.enc.update(data)
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self, data: bytes | bytearray) -> bytes:
        head = self.process(data) if data else b""
        tail = self.enc.finish()
        return head + b"".join(tail)


class BlobIO:
    def __init__(self, blobs: BlobStore, keyring: Keyring, segment_size: int, threads: int = 4) -> None:
        self.blobs = blobs
        self.keyring = keyring
        self.segment_size = segment_size
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="coffre-cpu")

    async def _cpu(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def write(self, tenant_id: str, body: AsyncIterable[bytes], *, max_size: int,
                    expected_size: int | None = None, checksum: Checksum | None = None) -> StoredBlob:
        """Encrypt ``body`` into a new durable blob. Raises (and leaves nothing) on any failure."""
        tenant_key = await self.keyring.tenant_key(tenant_id)
        blob_id = new_blob_id()
        dek, wrapped = self.keyring.new_data_key(tenant_key, blob_id)
        w = _Writer(dek, blob_id, self.segment_size, checksum)
        total = 0

        async def ciphertext() -> AsyncIterator[bytes]:
            nonlocal total
            buf = bytearray()
            async for chunk in body:
                if not chunk:
                    continue
                total += len(chunk)
                if total > max_size:
                    raise EntityTooLarge(size=total, max=max_size)
                if expected_size is not None and total > expected_size:
                    raise IncompleteBody("The request body is longer than its Content-Length.")
                buf += chunk
                if len(buf) >= BATCH:
                    data, buf = buf, bytearray()
                    yield await self._cpu(w.process, data)
            if expected_size is not None and total != expected_size:
                raise IncompleteBody(expected=expected_size, received=total)
            if len(buf) > INLINE_LIMIT:
                yield await self._cpu(w.finish, buf)
            else:
                yield w.finish(buf)

        await self.blobs.put(blob_id, ciphertext())
        return StoredBlob(blob_id, wrapped, total, w.md5.digest(), checksum)

    async def read(self, tenant_id: str, blob_id: str, wrapped_dek: bytes, size: int,
                   start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield plaintext bytes [start, end) of one blob holding ``size`` plaintext bytes.

        Raises IntegrityError if the blob fails authentication or is shorter than
        ``size`` says, possibly after some bytes were yielded: a caller that has
        already sent some must cut its stream rather than end it normally.
        """
        end = size if end is None else min(end, size)
        if start >= end and size > 0:
            return
        tenant_key = await self.keyring.tenant_key(tenant_id)
        dek = self.keyring.open_data_key(tenant_key, wrapped_dek, blob_id)
        dec = SegmentDecryptor(dek, blob_id, size, self.segment_size)
        if size == 0:
            off, length = dec.ciphertext_span(0, 0)
            dec.decrypt_span(0, 0, await self.blobs.read(blob_id, off, length))  # authenticates the empty final segment
            return
        first, last = dec.segments_for(start, end - start)
        per_batch = max(1, BATCH // dec.seg)
        off, total = dec.ciphertext_span(first, last)
        batch_bytes = per_batch * self.stride(dec.seg)
        # One stream over the whole span rather than a read per batch: the blob is
        # opened once, so an overwrite that deletes it meanwhile does not cut this read
        # short (on POSIX an open file outlives its unlink).
        stream = self.blobs.get(blob_id, off, total, chunk_size=batch_bytes)
        index = first
        try:
            async for data in _aligned(stream, batch_bytes):
                if index > last:
                    raise IntegrityError(f"blob {blob_id} is longer than its segments")
                upto = min(last, index + per_batch - 1)
                plain = await self._open(dec, index, upto, data)  # checks the batch is whole
                yield self._cut(plain, dec.seg, index, first, start, end)
                index = upto + 1
            if index <= last:
                raise IntegrityError(f"blob {blob_id} ends before segment {index}")
        finally:
            aclose = getattr(stream, "aclose", None)  # close the file now, not when collected
            if aclose is not None:
                await aclose()

    async def _open(self, dec: SegmentDecryptor, first: int, last: int, data: bytes) -> bytes:
        if len(data) > INLINE_LIMIT:
            return await self._cpu(dec.decrypt_span, first, last, data)
        return dec.decrypt_span(first, last, data)

    @staticmethod
    def _cut(plain: bytes, seg: int, index: int, first: int, start: int, end: int) -> bytes:
        """Trim decrypted segments starting at ``index`` to the plaintext range [start, end)."""
        lo = start - index * seg if index == first else 0
        hi = end - index * seg
        if lo > 0 or hi < len(plain):
            return plain[lo:hi]
        return plain

    @staticmethod
    def stride(segment_size: int) -> int:
        return segment_size + TAG_SIZE


async def _aligned(pieces: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup ``pieces`` into runs of exactly ``size`` bytes (the last may be shorter).

    A backend is free to return pieces of any length; decryption needs whole segments.
    """
    buf = bytearray()
    async for piece in pieces:
        if not buf and len(piece) == size:
            yield piece  # the usual case: the backend honoured chunk_size
            continue
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)
