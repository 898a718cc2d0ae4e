"""Key rotation on a real SQLite store, blob directory and root key file: retirement is refused
while anything still names a version, and a re-wrap cut short resumes at the next start."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from coffre.blob.local import LocalBlobStore
from coffre.core.blobio import BlobIO, StoredBlob
from coffre.core.errors import DeleteConflict, ValidationError
from coffre.core.keyring import Keyring
from coffre.core.rotation import KeyRotation
from coffre.crypto.keys import FileKeyProvider, KeyError_, wrap_with, wrapped_version
from coffre.meta.records import ROOT_KEY_OWNER, AccessKeyRecord, BucketRecord, ObjectRecord, TenantRecord
from coffre.meta.sqlite import SQLiteMetadataStore

A = "111111111111"


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = SQLiteMetadataStore(str(root / "meta.sqlite3"))
        self.blobs = LocalBlobStore(str(root / "blobs"))
        self.provider = FileKeyProvider(str(root / "root.key"))
        self.keyring = Keyring(self.provider, self.meta)
        self.io = BlobIO(self.blobs, self.keyring, 1024)
        self.keys = KeyRotation(self.keyring, self.meta, grace_seconds=0)
        self.data: dict[str, tuple[bytes, StoredBlob]] = {}

    async def open(self, first: bool) -> None:
        await self.meta.open()
        await self.blobs.open()
        if first:
            await self.meta.create_tenant(TenantRecord(
                id=A, name="a", status="active", created_at=time.time(),
                wrapped_key=self.keyring.new_wrapped_tenant_key(A), canonical_id=secrets.token_hex(32)))
            await self.meta.create_bucket(BucketRecord(name="b", tenant_id=A, region="us-east-1",
                                                       created_at=time.time()))

    async def close(self) -> None:
        await self.keys.close()
        self.io.pool.shutdown(wait=True)
        await self.blobs.close()
        await self.meta.close()

    async def put(self, key: str, data: bytes) -> None:
        async def body() -> AsyncIterator[bytes]:
            yield data

        blob = await self.io.write(A, body(), max_size=1 << 20, expected_size=len(data))
        await self.meta.put_object(ObjectRecord(
            bucket="b", key=key, version_id="null", size=len(data), etag='"e"', last_modified=time.time(),
            tenant_id=A, owner="c" * 64, blob_id=blob.blob_id, dek=blob.dek))
        self.data[key] = (data, blob)

    async def get(self, key: str) -> bytes:
        o = await self.meta.get_object("b", key)
        assert o is not None and o.blob_id is not None and o.dek is not None
        return b"".join([bytes(c) async for c in self.io.read(A, o.blob_id, o.dek, o.size)])

    async def all_read_back(self) -> None:
        for key, (data, _) in self.data.items():
            assert await self.get(key) == data

    async def versions(self, owner: str = A) -> dict[int, str]:
        return {v["version"]: v["state"] for v in await self.keys.versions(owner)}

    async def dek_versions(self) -> set[int]:
        return {wrapped_version(r.dek) for r in await self.meta.dek_batch(A, "objects", None, 1000)}


def run(tmp_path: Path, *scenarios: Callable[[Env], Awaitable[None]]) -> None:
    """Each scenario on a fresh process-like Env over the same directory (a restart between)."""
    async def main() -> None:
        for i, scenario in enumerate(scenarios):
            env = Env(tmp_path)
            await env.open(first=i == 0)
            try:
                await scenario(env)
            finally:
                await env.close()

    asyncio.run(main())


def test_tenant_retire_is_refused_while_a_data_key_names_the_version(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        for i in range(5):
            await env.put(f"k{i}", os.urandom(3000 + i))
        assert await env.dek_versions() == {1}
        old = await env.keyring.tenant_key(A)
        assert await env.keys.rotate_tenant(A) == 2
        job = await env.keys.wait(A)
        assert job is not None and job.state == "done" and job.rewrapped == 5
        assert await env.dek_versions() == {2}
        # A data key still wrapped by version 1 (e.g. written by a gateway that had not seen the rotation).
        await env.put("late", b"late data")
        blob = env.data["late"][1]
        dek = env.keyring.open_data_key(await env.keyring.tenant_key(A), blob.dek, blob.blob_id)
        stale = wrap_with(old.keys[1], dek, b"dek|" + blob.blob_id.encode(), version=1)
        o = await env.meta.get_object("b", "late")
        assert o is not None
        await env.meta.put_object(replace(o, dek=stale))  # the same blob, its key wrapped by version 1
        with pytest.raises(ValidationError):
            await env.keys.retire(A, 2)  # the active version
        with pytest.raises(DeleteConflict):
            await env.keys.retire(A, 1)
        assert await env.versions() == {1: "retiring", 2: "active"}
        env.keys.start(A)
        await env.keys.wait(A)
        env.keys.grace_seconds = 3600  # writes begun before the rotation may still commit a version-1 key
        with pytest.raises(DeleteConflict, match="key_retire_grace_seconds"):
            await env.keys.retire(A, 1)
        env.keys.grace_seconds = 0
        await env.keys.retire(A, 1)
        assert await env.versions() == {1: "retired", 2: "active"}
        await env.all_read_back()
        # The retired version opens nothing any more, even for a fresh keyring.
        env.keyring.forget_tenant_key(A)
        with pytest.raises(KeyError_):
            Keyring.open_data_key(await env.keyring.tenant_key(A), stale, blob.blob_id)

    run(tmp_path, scenario)


def test_a_rewrap_cut_short_resumes_at_the_next_start(tmp_path: Path) -> None:
    async def first(env: Env) -> None:
        for i in range(12):
            await env.put(f"k{i}", os.urandom(500 + i))
        await env.keys.rotate_tenant(A)
        # Stopped before the job could run (close cancels it): every data key still names version 1.
        await env.keys.close()
        assert await env.dek_versions() == {1}
        assert await env.versions() == {1: "retiring", 2: "active"}

    async def second(env: Env) -> None:
        await env.keys.resume()
        job = await env.keys.wait(A)
        assert job is not None and job.state == "done"
        assert await env.dek_versions() == {2}
        await env.keys.retire(A, 1)
        for i in range(12):
            assert len(await env.get(f"k{i}")) == 500 + i

    run(tmp_path, first, second)


def test_root_retire_is_refused_while_a_secret_names_the_version(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        await env.put("k", b"data")
        secret = env.keyring.wrap_secret("AKIAEXAMPLE", "s3cr3t")
        await env.meta.put_access_key(AccessKeyRecord(access_key_id="AKIAEXAMPLE", tenant_id=A, principal="root",
                                                      wrapped_secret=secret, status="active",
                                                      created_at=time.time()))
        assert await env.keys.rotate_root() == 2
        await env.keys.wait(ROOT_KEY_OWNER)
        rec = await env.meta.get_access_key("AKIAEXAMPLE")
        assert rec is not None and wrapped_version(rec.wrapped_secret) == 2
        assert env.keyring.unwrap_secret("AKIAEXAMPLE", rec.wrapped_secret) == "s3cr3t"
        # Put back the version-1 wrap: retiring version 1 must now be refused.
        await env.meta.put_access_key(AccessKeyRecord(access_key_id="AKIAEXAMPLE", tenant_id=A, principal="root",
                                                      wrapped_secret=secret, status="active",
                                                      created_at=time.time()))
        with pytest.raises(DeleteConflict):
            await env.keys.retire(ROOT_KEY_OWNER, 1)
        env.keys.start(ROOT_KEY_OWNER)
        await env.keys.wait(ROOT_KEY_OWNER)
        await env.keys.retire(ROOT_KEY_OWNER, 1)
        assert await env.versions(ROOT_KEY_OWNER) == {1: "retired", 2: "active"}
        assert env.provider.versions() == (2,)
        assert not os.path.exists(env.root / "root.key")
        with pytest.raises(KeyError_):
            env.keyring.unwrap_secret("AKIAEXAMPLE", secret)
        env.keyring.forget_tenant_key(A)
        await env.all_read_back()

    async def after_restart(env: Env) -> None:
        # The key file of version 1 is gone; the provider neither recreates it nor needs it.
        assert env.provider.versions() == (2,)
        assert not os.path.exists(env.root / "root.key")
        await env.all_read_back()

    run(tmp_path, scenario, after_restart)
