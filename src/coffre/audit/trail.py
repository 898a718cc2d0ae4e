"""The audit trail as the server uses it: a bounded queue in front of the log files.

Recording costs a request one ``put_nowait``. One task drains the queue and hands each
batch to a worker thread that writes and fsyncs it (group commit). When the log cannot be
written (queue full, disk error), ``accepting_writes`` turns false: with ``audit_required``
the front end then refuses writes with 503 rather than act unrecorded, and reads go on;
records that could not be queued are counted and the count itself is recorded later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from coffre.audit.event import AuditEvent
from coffre.audit.forward import Forwarder
from coffre.audit.log import AuditLog
from coffre.settings import Settings

log = logging.getLogger("coffre.audit")

_BATCH = 512  # most records in one write + fsync
_RETRY_SECONDS = 1.0


class AuditTrail:
    def __init__(self, settings: Settings, audit_log: AuditLog | None = None) -> None:
        self.required = settings.audit_required
        self.log = audit_log or AuditLog(
            settings.audit_dir, segment_max_bytes=settings.audit_segment_max_bytes,
            checkpoint_records=settings.audit_checkpoint_records, retention_days=settings.audit_retention_days)
        self.checkpoint_seconds = settings.audit_checkpoint_seconds
        self.group_commit_seconds = settings.audit_group_commit_seconds
        # Syslog and the SIEM file, fed after each batch is on disk (forward.py); None: neither.
        self.forwarder: Forwarder | None = Forwarder.from_settings(settings)
        # The tenant owning a bucket, for a refused request that never read it (resolve_owners).
        self.owner_of: Callable[[str], Awaitable[str | None]] | None = None
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=settings.audit_queue_size)
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None  # why the log cannot be written, while it cannot
        self._dropped = 0  # records not queued since the last write
        self._closing = False

    # -- what the front end calls --
    def accepting_writes(self) -> bool:
        if not self.required:
            return True
        return self._failure is None and not self._queue.full()

    def record(self, event: AuditEvent) -> None:
        item = event.fields()
        item["time"] = event.time
        self.record_fields(item)

    def record_fields(self, item: dict[str, Any]) -> None:
        """Queue one record given as its fields and ``time`` (what ``record`` makes of an event;
        a secondary worker's records arrive so, workers.py)."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            if self._dropped == 0:
                log.error("audit log unavailable (queue full): %s", self._refusal())
            self._dropped += 1

    def count_lost(self, n: int) -> None:
        """Records another process could not queue: counted in the log's next "lost" record."""
        self._dropped += n

    def queue_depth(self) -> int:
        """Records waiting to be written (the coffre_audit_queue_depth metric)."""
        return self._queue.qsize()

    @property
    def directory(self) -> str:
        return self.log.directory

    def public_key_pem(self) -> bytes | None:
        """The deployment's audit signing public key (PEM), once the log is open."""
        from cryptography.hazmat.primitives import serialization

        if not self.log.ready:
            return None
        return self.log.signer.public.public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)

    async def seal(self, timeout: float = 10.0) -> bool:
        """Have every record queued so far written and covered by a signed checkpoint.

        A tenant's export ends at a signed checkpoint: asking for one now (one fsync) lets it
        include the records of the requests made just before. False when the log could not
        be written in time (the export then ends at the last checkpoint there is).
        """
        if self._task is None or self._failure is not None:
            return False
        # The writer answers True once the checkpoint is written (a secondary's relay: once the
        # primary says whether it was).
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait({"_seal": fut})
        except asyncio.QueueFull:
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return False

    def _refusal(self) -> str:
        return "refusing writes" if self.required else "records are dropped (audit_required is off)"

    # -- life cycle --
    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.log.open)
        except Exception as e:  # noqa: BLE001 - any failure means: cannot record
            self._fail(e)
        self._task = asyncio.create_task(self._run(), name="audit-writer")
        if self.forwarder is not None:
            self.forwarder.start()

    async def close(self) -> None:
        await self._drain()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.log.close)
        if self.forwarder is not None:
            await self.forwarder.close()

    async def _drain(self) -> None:
        """Stop taking records and let the writer task finish what is queued."""
        self._closing = True
        if self._task is not None:
            if not self._queue.full():
                self._queue.put_nowait({"_wake": True})
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            log.error("audit log unavailable: %s: %s", self._refusal(), exc)
        self._failure = str(exc) or type(exc).__name__

    # -- the writer --
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_tick = last_sync = loop.time()
        while True:
            batch: list[dict[str, Any]] = []
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), self.checkpoint_seconds))
            except TimeoutError:
                pass
            # Group commit: at most one write + fsync per audit_group_commit_seconds. Under load
            # the records of that interval share one fsync instead of one each (fsync costs the
            # kernel 0.1-0.4 ms of CPU here, more than writing a record); a record that finds the
            # log idle for longer is written at once. Requests never wait for this: they only
            # queue their record.
            wait = last_sync + self.group_commit_seconds - loop.time()
            if batch and wait > 0 and not self._closing:
                await asyncio.sleep(wait)
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            seals = [b["_seal"] for b in batch if "_seal" in b]
            batch = [b for b in batch if "_wake" not in b and "_seal" not in b]
            if batch:
                await self._resolve_owners(batch)
                await self._write(batch)
                last_sync = loop.time()
            if seals:
                await self._write([])  # the checkpoint that seals what was just written
                for fut in seals:
                    if not fut.done():
                        fut.set_result(True)
            if self._closing and self._queue.empty():
                return  # close() writes the closing checkpoint
            if not batch or loop.time() - last_tick >= self.checkpoint_seconds:
                # Time-based checkpoint, rotation and retention, even under constant load.
                await self._write([])
                last_tick = loop.time()

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        """Write one batch, retrying until it is on disk (or the server stops)."""
        # Encoding and hashing here, on the event loop's thread; only chaining, writing and the
        # fsync go to the worker thread (AuditLog.prepare says why).
        prepared = AuditLog.prepare(batch, self.log.clock()) if batch else []
        while True:
            dropped = self._dropped
            written: list[dict[str, Any]] = []
            try:
                if batch or dropped:
                    written = await asyncio.to_thread(self.log.append_prepared, prepared, dropped)
                else:
                    await asyncio.to_thread(self.log.tick)
            except Exception as e:  # noqa: BLE001 - disk full, I/O error, directory gone...
                self._fail(e)
                self.log.abandon()
                if self._closing:
                    return
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            self._dropped -= dropped
            if self._failure is not None:
                log.warning("audit log writable again: accepting writes")
                self._failure = None
            if written and self.forwarder is not None:
                self.forwarder.offer(written)  # never waits: a full queue drops and counts
            return

    async def _resolve_owners(self, batch: list[dict[str, Any]]) -> None:
        """Name the bucket's owner on refused requests that were refused before the bucket was
        read (a bad signature, an unknown key): they are attempts on that tenant's data, and
        its export shows them (docs/audit.md, "Tenants")."""
        if self.owner_of is None:
            return
        owners: dict[str, str | None] = {}
        for item in batch:
            bucket = item.get("bucket")
            # An authenticated caller's request read the bucket (bucket_owner is set when it is
            # another tenant's): only unauthenticated ones are looked up, and only when refused.
            if not bucket or item.get("bucket_owner") or item.get("tenant") or item.get("api") != "s3" \
                    or item.get("status", 0) < 400:
                continue
            if bucket not in owners:
                try:
                    owners[bucket] = await self.owner_of(bucket)
                except Exception:  # noqa: BLE001 - a name that is no bucket, a store hiccup: no owner
                    owners[bucket] = None
            owner = owners[bucket]
            if owner is not None and owner != item.get("tenant"):
                item["bucket_owner"] = owner
