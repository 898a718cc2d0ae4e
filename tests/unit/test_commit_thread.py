"""One writer thread for the metadata store and the small-blob rows (what ``coffre serve`` wires).

Both stores commit on the same thread, concurrently, and everything acknowledged survives a
reopen; closing one store answers its queued writes and leaves the other working; the thread
stops once both are closed.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from coffre.blob.local import LocalBlobStore
from coffre.groupcommit import CommitThread
from coffre.meta.records import BucketRecord, ObjectRecord, TenantRecord
from coffre.meta.sqlite import SQLiteMetadataStore

TID = "111111111111"


def _obj(key: str, blob_id: str) -> ObjectRecord:
    return ObjectRecord(bucket="b", key=key, version_id="null", size=4, etag='"e"', last_modified=time.time(),
                        tenant_id=TID, owner="c" * 64, blob_id=blob_id, dek=b"k" * 40)


async def _stores(root: Path, commits: CommitThread) -> tuple[SQLiteMetadataStore, LocalBlobStore]:
    meta = SQLiteMetadataStore(str(root / "meta.sqlite3"), commit_thread=commits)
    blobs = LocalBlobStore(str(root / "blobs"), commit_thread=commits)
    await meta.open()
    await blobs.open()
    return meta, blobs


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _commit_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("coffre-commit")]


def test_both_stores_commit_on_one_thread_and_close_in_any_order(tmp_path: Path) -> None:
    async def main() -> None:
        commits = CommitThread()
        meta, blobs = await _stores(tmp_path, commits)
        await meta.create_tenant(TenantRecord(id=TID, name="t", status="active", created_at=time.time(),
                                              wrapped_key=b"w" * 40, canonical_id="c" * 64))
        await meta.create_bucket(BucketRecord(name="b", tenant_id=TID, region="eu", created_at=time.time()))

        async def put(i: int) -> None:
            blob_id = uuid.uuid4().hex
            await blobs.put(blob_id, _chunks(f"{i:04d}".encode()), size_hint=4)
            await meta.put_object(_obj(f"k{i:03d}", blob_id), None)

        await asyncio.gather(*(put(i) for i in range(200)))
        assert len(_commit_threads()) == 1  # one writer thread for both stores
        names = {t.name for t in threading.enumerate()}
        assert not any(n.startswith(("coffre-meta-w", "coffre-blob-w")) for n in names)

        # The metadata store goes first: its release waits for its queued writes, and the
        # small-blob rows keep committing on the same thread afterwards.
        await meta.close()
        later = uuid.uuid4().hex
        await blobs.put(later, _chunks(b"late"), size_hint=4)
        assert _commit_threads()
        await blobs.close()
        for t in _commit_threads():
            t.join(5)
        assert not _commit_threads()  # stopped with the last store

        meta2 = SQLiteMetadataStore(str(tmp_path / "meta.sqlite3"))
        blobs2 = LocalBlobStore(str(tmp_path / "blobs"))
        await meta2.open()
        await blobs2.open()
        try:
            for i in (0, 117, 199):
                obj = await meta2.get_object("b", f"k{i:03d}")
                assert obj is not None and obj.blob_id is not None
                assert await blobs2.read(obj.blob_id, 0, 4) == f"{i:04d}".encode()
            assert await blobs2.read(later, 0, 4) == b"late"
        finally:
            await meta2.close()
            await blobs2.close()

    asyncio.run(main())
