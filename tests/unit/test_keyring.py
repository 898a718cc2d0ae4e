"""Tenant keys, data keys and encrypted blobs on a real SQLite store and blob directory."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from coffre.blob.local import LocalBlobStore
from coffre.core.blobio import BlobIO, StoredBlob
from coffre.core.errors import AccountProblem
from coffre.core.keyring import Keyring
from coffre.crypto.keys import FileKeyProvider, KeyError_
from coffre.crypto.segments import HEADER_SIZE, TAG_SIZE, IntegrityError
from coffre.meta.records import TenantRecord
from coffre.meta.sqlite import SQLiteMetadataStore
from tests import blobs_on_disk as on_disk

SEG = 1024
STRIDE = SEG + TAG_SIZE
A, B = "111111111111", "222222222222"


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = SQLiteMetadataStore(str(root / "meta.sqlite3"))
        self.blobs = LocalBlobStore(str(root / "blobs"))
        self.keyring = Keyring(FileKeyProvider(str(root / "root.key")), self.meta)
        self.io = BlobIO(self.blobs, self.keyring, SEG)

    async def open(self) -> None:
        await self.meta.open()
        await self.blobs.open()
        for tid in (A, B):
            await self.meta.create_tenant(TenantRecord(
                id=tid, name="t" + tid, status="active", created_at=time.time(),
                wrapped_key=self.keyring.new_wrapped_tenant_key(tid), canonical_id=secrets.token_hex(32)))

    async def close(self) -> None:
        self.io.pool.shutdown(wait=True)
        await self.blobs.close()
        await self.meta.close()

    async def write(self, tenant: str, data: bytes, piece: int = 700) -> StoredBlob:
        async def body() -> AsyncIterator[bytes]:
            for i in range(0, len(data), piece):
                yield data[i:i + piece]

        return await self.io.write(tenant, body(), max_size=1 << 30, expected_size=len(data))

    async def read(self, tenant: str, blob: StoredBlob, start: int = 0, end: int | None = None,
                   dek: bytes | None = None, blob_id: str | None = None) -> bytes:
        """Read as a stream (a large GET) and in one buffer (a small GET): both must agree."""
        out = []
        async for chunk in self.io.read(tenant, blob_id or blob.blob_id, dek or blob.dek, blob.size, start, end):
            out.append(chunk)
        streamed = b"".join(out)
        whole = await self.read_span(tenant, blob, start, end, dek, blob_id)
        assert whole == streamed
        return streamed

    async def read_span(self, tenant: str, blob: StoredBlob, start: int = 0, end: int | None = None,
                        dek: bytes | None = None, blob_id: str | None = None) -> bytes:
        return bytes(await self.io.read_span(tenant, blob_id or blob.blob_id, dek or blob.dek, blob.size,
                                             start, end))

    def path(self, blob_id: str) -> Path:
        return self.root / "blobs" / blob_id[:2] / blob_id[2:4] / blob_id


def run(tmp_path: Path, scenario: Callable[[Env], Awaitable[None]]) -> None:
    async def main() -> None:
        env = Env(tmp_path)
        await env.open()
        try:
            await scenario(env)
        finally:
            await env.close()

    asyncio.run(main())


def test_round_trip_and_ranges(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        for size in (0, 1, SEG, 3 * SEG + 5, (1 << 20) + 3 * SEG + 1, (2 << 20) + 7):
            data = os.urandom(size)
            blob = await env.write(A, data)
            assert blob.size == size
            assert await env.read(A, blob) == data
            if size > 10:
                for start, end in ((0, 1), (size // 2, size // 2 + SEG + 3), (size - 5, size), (1, size - 1)):
                    assert await env.read(A, blob, start, end) == data[start:end]

    run(tmp_path, scenario)


def test_a_blob_of_tenant_a_cannot_be_read_with_tenant_b_key(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        data = b"tenant A secret " * 500
        blob = await env.write(A, data)
        assert await env.read(A, blob) == data
        with pytest.raises(KeyError_):
            await env.read(B, blob)
        # B's tenant key cannot unwrap A's data key either way it is asked.
        key_b = await env.keyring.tenant_key(B)
        with pytest.raises(KeyError_):
            Keyring.open_data_key(key_b, blob.dek, blob.blob_id)
        assert await env.keyring.tenant_key(A) != key_b

    run(tmp_path, scenario)


def test_a_tenant_key_is_bound_to_its_tenant(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        a = await env.meta.get_tenant(A)
        assert a is not None
        # A's wrapped key copied into another tenant's record does not open.
        with pytest.raises(KeyError_):
            env.keyring.provider.unwrap(a.wrapped_key, Keyring.tenant_context(B))
        with pytest.raises(AccountProblem):
            await env.keyring.tenant_key("999999999999")

    run(tmp_path, scenario)


def test_a_data_key_is_bound_to_its_blob(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        x = await env.write(A, b"x" * 3000)
        y = await env.write(A, b"y" * 3000)
        with pytest.raises(KeyError_):
            await env.read(A, y, dek=x.dek)  # y's blob with x's wrapped key

    run(tmp_path, scenario)


async def expect_integrity_error(env: Env, blob: StoredBlob, start: int = 0, end: int | None = None) -> None:
    with pytest.raises(IntegrityError):
        await env.read(A, blob, start, end)
    with pytest.raises(IntegrityError):  # nothing comes back from a span that does not authenticate
        await env.read_span(A, blob, start, end)


def test_tampered_blobs_fail(tmp_path: Path) -> None:
    # 5 KiB: a small blob, a row of small.db (tests/s3/test_at_rest.py damages files too).
    async def scenario(env: Env) -> None:
        size = 5 * SEG + 100

        async def fresh() -> tuple[StoredBlob, bytearray]:
            blob = await env.write(A, os.urandom(size))
            return blob, bytearray(on_disk.read_blob(str(env.root), blob.blob_id))

        # A flipped byte in a segment.
        blob, raw = await fresh()
        raw[HEADER_SIZE + 2 * STRIDE + 9] ^= 0x40
        on_disk.write_blob(str(env.root), blob.blob_id, bytes(raw))
        await expect_integrity_error(env, blob)
        await expect_integrity_error(env, blob, 2 * SEG, 2 * SEG + 1)
        assert len(await env.read(A, blob, 0, 2 * SEG)) == 2 * SEG  # undamaged segments still read

        # Two segments swapped.
        blob, raw = await fresh()
        s1 = raw[HEADER_SIZE + STRIDE:HEADER_SIZE + 2 * STRIDE]
        s2 = raw[HEADER_SIZE + 2 * STRIDE:HEADER_SIZE + 3 * STRIDE]
        raw[HEADER_SIZE + STRIDE:HEADER_SIZE + 3 * STRIDE] = s2 + s1
        on_disk.write_blob(str(env.root), blob.blob_id, bytes(raw))
        await expect_integrity_error(env, blob)

        # The last segment truncated, partly or wholly, and cut at a segment boundary.
        for cut in (1, 100 + TAG_SIZE, 100 + TAG_SIZE + STRIDE):
            blob, raw = await fresh()
            on_disk.write_blob(str(env.root), blob.blob_id, bytes(raw[:-cut]))
            await expect_integrity_error(env, blob)
            await expect_integrity_error(env, blob, size - 1, size)

        # Another blob's bytes moved over this blob.
        x, _ = await fresh()
        y, _ = await fresh()
        on_disk.write_blob(str(env.root), y.blob_id, on_disk.read_blob(str(env.root), x.blob_id))
        await expect_integrity_error(env, y)

    run(tmp_path, scenario)


def test_a_blob_deleted_while_being_read_is_still_read_whole(tmp_path: Path) -> None:
    # An overwrite releases the old blob at once; a GET already streaming it must
    # finish with the old bytes rather than fail half-way.
    async def scenario(env: Env) -> None:
        data = os.urandom((3 << 20) + 11)
        blob = await env.write(A, data)
        out = []
        gen = env.io.read(A, blob.blob_id, blob.dek, blob.size)
        out.append(await gen.__anext__())
        await env.blobs.delete(blob.blob_id)
        assert not env.path(blob.blob_id).exists()
        async for chunk in gen:
            out.append(chunk)
        assert b"".join(out) == data

    run(tmp_path, scenario)


def test_a_failed_write_leaves_no_blob(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        async def body() -> AsyncIterator[bytes]:
            yield b"a" * 5000
            raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError):
            await env.io.write(A, body(), max_size=1 << 20)
        assert [p for p in (env.root / "blobs").rglob("*") if p.is_file() and not p.name.startswith("small.db")] == []
        assert on_disk.all_blobs(str(env.root)) == set()

    run(tmp_path, scenario)


class SmallPieces(LocalBlobStore):
    """A backend within the contract that yields pieces smaller than asked (as a network store may)."""

    async def get(self, blob_id: str, offset: int = 0, length: int | None = None,
                  chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        async for piece in super().get(blob_id, offset, length, chunk_size):
            for i in range(0, len(piece), 77_777):
                yield piece[i:i + 77_777]


def test_reads_do_not_depend_on_how_the_backend_splits_its_pieces(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        env.blobs = SmallPieces(str(env.root / "blobs"))
        env.io = BlobIO(env.blobs, env.keyring, SEG)
        data = os.urandom((2 << 20) + 12_345)
        blob = await env.write(A, data)
        assert await env.read(A, blob) == data
        assert await env.read(A, blob, 1000, (1 << 20) + 5000) == data[1000:(1 << 20) + 5000]
        env.path(blob.blob_id).write_bytes(env.path(blob.blob_id).read_bytes()[:-(SEG + TAG_SIZE)])
        await expect_integrity_error(env, blob)

    run(tmp_path, scenario)
