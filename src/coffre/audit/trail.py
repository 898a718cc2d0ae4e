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
import os
from typing import Any

from coffre.audit import records as r
from coffre.audit.event import AuditEvent
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
        self.export_path = settings.audit_export_file
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
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            if self._dropped == 0:
                log.error("audit log unavailable (queue full): %s", self._refusal())
            self._dropped += 1

    def queue_depth(self) -> int:
        """Records waiting to be written (the coffre_audit_queue_depth metric)."""
        return self._queue.qsize()

    def _refusal(self) -> str:
        return "refusing writes" if self.required else "records are dropped (audit_required is off)"

    # -- life cycle --
    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.log.open)
        except Exception as e:  # noqa: BLE001 - any failure means: cannot record
            self._fail(e)
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            if not self._queue.full():
                self._queue.put_nowait({"_wake": True})
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.log.close)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            log.error("audit log unavailable: %s: %s", self._refusal(), exc)
        self._failure = str(exc) or type(exc).__name__

    # -- the writer --
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_tick = loop.time()
        while True:
            batch: list[dict[str, Any]] = []
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), self.checkpoint_seconds))
            except TimeoutError:
                pass
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [b for b in batch if "_wake" not in b]
            if batch:
                await self._write(batch)
            if self._closing and self._queue.empty():
                return  # close() writes the closing checkpoint
            if not batch or loop.time() - last_tick >= self.checkpoint_seconds:
                # Time-based checkpoint, rotation and retention, even under constant load.
                await self._write([])
                last_tick = loop.time()

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        """Write one batch, retrying until it is on disk (or the server stops)."""
        while True:
            dropped = self._dropped
            try:
                if batch or dropped:
                    await asyncio.to_thread(self.log.append, [dict(b) for b in batch], dropped)
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
            if batch and self.export_path:
                await asyncio.to_thread(_export, self.export_path, batch)
            return


def _export(path: str, batch: list[dict[str, Any]]) -> None:
    """Append the request records as JSON lines for a SIEM to tail (best effort, not chained)."""
    try:
        # Created private (keys and names are in it); appended to, never rewritten.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(b"".join(r.canonical({**item, "time": r.utc(item["time"])}) + b"\n" for item in batch))
    except OSError as e:
        log.warning("audit export to %s failed: %s", path, e)
