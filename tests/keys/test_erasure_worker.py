"""The erasure worker's reclaim of an erased tenant's space, in process over a real SQLite store:
it never acts while the audit log refuses writes (``may_act``), a pass stops at its time budget
and later passes finish the work, and the one record of the finished reclaim counts all of it.

(End to end, with a real server, clients, the collector and a crash: tests/s3/test_erasure.py.)
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from pathlib import Path

from coffre.core.erasure import DESTROYED, RECLAIMED, ErasureEvent, ErasureWorker
from coffre.core.keyring import Keyring
from coffre.crypto.keys import FileKeyProvider
from coffre.meta.records import BucketRecord, ObjectRecord, TenantRecord, Usage
from coffre.meta.sqlite import SQLiteMetadataStore
from coffre.settings import Settings

A = "111111111111"  # erased
B = "222222222222"  # kept


def _obj(bucket: str, key: str, version: str, tenant_id: str, size: int) -> ObjectRecord:
    return ObjectRecord(bucket=bucket, key=key, version_id=version, size=size, etag='"e"',
                        last_modified=time.time(), tenant_id=tenant_id, owner="c" * 64,
                        blob_id=uuid.uuid4().hex, dek=b"k" * 40)


class Env:
    def __init__(self, root: Path, batch: int) -> None:
        self.meta = SQLiteMetadataStore(str(root / "meta.sqlite3"))
        self.keyring = Keyring(FileKeyProvider(str(root / "root.key")), self.meta)
        self.worker = ErasureWorker(Settings(erasure_reclaim_batch=batch), self.meta, self.keyring, lambda _: None)
        self.events: list[ErasureEvent] = []
        self.worker.listener = self.events.append
        self.allowed = True
        self.worker.may_act = lambda: self.allowed

    async def open(self) -> None:
        await self.meta.open()
        for tid, status in ((A, "deleting"), (B, "active")):
            await self.meta.create_tenant(TenantRecord(
                id=tid, name=f"t{tid}", status=status, created_at=time.time(),
                wrapped_key=self.keyring.new_wrapped_tenant_key(tid), canonical_id=secrets.token_hex(32),
                delete_after=time.time() - 1 if status == "deleting" else None))
            for b in range(2):
                bucket = f"b{tid}-{b}"
                await self.meta.create_bucket(BucketRecord(name=bucket, tenant_id=tid, region="us-east-1",
                                                           created_at=time.time()))
                await self.meta.set_bucket_versioning(bucket, "Enabled")
                for i in range(10):
                    await self.meta.put_object(_obj(bucket, f"k{i % 4}", f"v{i}", tid, 100 + i))

    async def tenant(self, tid: str = A) -> TenantRecord:
        t = await self.meta.get_tenant(tid)
        assert t is not None
        return t


def run(tmp_path: Path, batch: int, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        env = Env(tmp_path, batch)
        await env.open()
        try:
            await scenario(env)
        finally:
            await env.meta.close()

    asyncio.run(main())


def test_nothing_is_reclaimed_while_the_audit_log_refuses(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        assert await env.meta.erase_tenant(A, time.time())  # erased (by another gateway, say)
        env.allowed = False
        await env.worker.run_once()
        assert await env.meta.tenant_usage(A) == Usage(bytes=2 * sum(100 + i for i in range(10)),
                                                      objects=20, buckets=2)
        # Allowed for two batches, then the log fails again: the reclaim stops there, unrecorded.
        calls = 0

        def twice() -> bool:
            nonlocal calls
            calls += 1
            return calls <= 3  # the pass's own check, then two batches
        env.allowed = True
        env.worker.may_act = twice
        await env.worker.run_once()
        assert (await env.meta.tenant_usage(A)).objects == 20 - 2 * 3
        assert env.worker.reclaim_pending and (await env.tenant()).reclaimed_at is None
        assert not [e for e in env.events if e.operation == RECLAIMED]
        # The log is back: the next pass finishes, and says so once.
        env.worker.may_act = lambda: True
        await env.worker.run_once()
        await env.worker.run_once()
        assert not env.worker.reclaim_pending
        assert (await env.tenant()).reclaimed_at is not None
        (done,) = [e for e in env.events if e.operation == RECLAIMED]
        assert done.tenant_id == A and done.reclaimed is not None
        assert (done.reclaimed.versions, done.reclaimed.buckets, done.reclaimed.blobs) == (20, 2, 20)
        assert await env.meta.list_buckets(A) == []
        assert len(await env.meta.list_buckets(B)) == 2 and (await env.meta.tenant_usage(B)).objects == 20

    run(tmp_path, 3, scenario)


def test_passes_stop_at_their_time_budget_and_the_next_ones_finish(tmp_path: Path) -> None:
    async def scenario(env: Env) -> None:
        # The pass that erases goes on to reclaim, here one batch only (no time left).
        assert await env.worker.run_once(reclaim_seconds=0) == [A]
        assert [e.operation for e in env.events] == [DESTROYED]
        assert env.worker.reclaim_pending
        assert (await env.meta.tenant_usage(A)).objects == 20 - 5
        passes = 1
        while env.worker.reclaim_pending:
            await env.worker.run_once(reclaim_seconds=0)
            passes += 1
            assert passes < 50
        assert passes >= 4  # 20 versions and 2 buckets, 5 rows a batch
        assert [e.operation for e in env.events] == [DESTROYED, RECLAIMED]
        reclaimed = env.events[-1].reclaimed
        assert reclaimed is not None and reclaimed.done
        assert (reclaimed.versions, reclaimed.uploads, reclaimed.buckets) == (20, 0, 2)
        assert reclaimed.bytes == 2 * sum(100 + i for i in range(10))
        # Reclaimed: later passes do nothing for it.
        stamp = (await env.tenant()).reclaimed_at
        await env.worker.run_once()
        assert (await env.tenant()).reclaimed_at == stamp and len(env.events) == 2
        # The erased tenant's row stays, with its dates.
        t = await env.tenant()
        assert t.status == "erased" and t.erased_at is not None and stamp is not None and stamp >= t.erased_at

    run(tmp_path, 5, scenario)
