"""The notifier: from a committed change to a message in each matching target's queue, then out.

A request that changed objects calls ``emit`` once it has its successful answer. Matching
rules are read from the bucket's stored configuration; when one matches, the message is
handed to a single writer task that writes every pending message of every request in one
group commit per target (write, fsync, rename, fsync the directory) in a worker thread, so
the event loop never waits on the disk and concurrent requests share one fsync. By default
the answer does not wait for that write (a few milliseconds of fsync would be most of a small
PUT's time); with ``notify_wait_durable`` it goes out only once the messages are on disk, so
a client that saw success can count on the event even across a power cut. A bucket without
a configuration costs one metadata read.

One deliverer task per target sends its queue in order and deletes a file only once the
broker acknowledged every message in it; failures back off (doubling, up to
``notify_retry_max_seconds``) and retry forever. The queue is bounded
(``notify_queue_limit`` messages per target): beyond it the oldest files are dropped, logged
and counted, because a notification must never block or fail a write (S3 behaves the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coffre.core.identity import Principal
from coffre.meta.base import MetadataStore
from coffre.notify import config as cfg
from coffre.notify import events as ev
from coffre.notify.queue import DiskQueue
from coffre.notify.targets import Sender, sender
from coffre.observability.instruments import Metrics
from coffre.settings import Settings

log = logging.getLogger("coffre.notify")

_BATCH = 1024  # most requests' messages in one group commit
_SEND_TIMEOUT = 15.0
_FIRST_RETRY = 0.25
_DROP_LOG_SECONDS = 60.0


@dataclass
class _Pending:
    messages: list[tuple[str, bytes]]  # (target id, message)
    done: asyncio.Future[None]


@dataclass
class _TargetState:
    target: cfg.Target
    disk: DiskQueue
    sender: Sender
    files: deque[tuple[int, int]] = field(default_factory=deque)  # (seq, messages) oldest first
    next_seq: int = 1
    depth: int = 0  # messages on disk not yet acknowledged
    in_flight: int | None = None  # the file being delivered (never dropped)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    failing: bool = False
    drop_logged: float = -_DROP_LOG_SECONDS  # monotonic time of the last "dropped" line
    unlogged_drops: int = 0


class Notifier:
    def __init__(self, settings: Settings, metrics: Metrics | None = None, directory: str | None = None) -> None:
        self.region = settings.region
        self.meta: MetadataStore | None = None
        self.targets = cfg.parse_targets(settings.notify_targets)
        self.limit = settings.notify_queue_limit
        self.retry_max = max(settings.notify_retry_max_seconds, _FIRST_RETRY)
        # One writer per queue directory: a secondary worker process has its own (docs/workers.md).
        self.directory = directory or os.path.join(settings.data_dir, "notify")
        self._secrets = [s for t in self.targets.values() for s in t.secrets()]
        self._states: dict[str, _TargetState] = {
            tid: _TargetState(t, DiskQueue(os.path.join(self.directory, tid)), sender(t))
            for tid, t in self.targets.items()}
        self._pending: asyncio.Queue[_Pending] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._waiting = 0  # messages handed to the writer, not yet on disk
        self.wait_durable = settings.notify_wait_durable
        self._parsed: dict[str, list[cfg.Rule]] = {}  # stored document -> rules (documents rarely change)
        self._metrics(metrics)

    def _metrics(self, metrics: Metrics | None) -> None:
        self._delivered = self._failures = self._dropped = self._depth = None
        if metrics is None or not self.targets:
            return
        r = metrics.registry
        self._depth = r.gauge("coffre_notify_queue_depth",
                              "Event messages on disk waiting for their target to acknowledge them.", ("target",))
        self._delivered = r.counter("coffre_notify_delivered_total",
                                    "Event messages a target acknowledged.", ("target",))
        self._failures = r.counter("coffre_notify_failures_total",
                                   "Failed delivery attempts (each is retried).", ("target",))
        self._dropped = r.counter("coffre_notify_dropped_total",
                                  "Event messages dropped: queue over notify_queue_limit, or not written.",
                                  ("target",))
        for tid in self.targets:
            self._depth.set(0, (tid,))
            self._delivered.inc((tid,), 0)
            self._failures.inc((tid,), 0)
            self._dropped.inc((tid,), 0)

    def _set_depth(self, st: _TargetState) -> None:
        if self._depth is not None:
            self._depth.set(st.depth, (st.target.id,))

    def _count(self, counter: Any, tid: str, n: int = 1) -> None:
        if counter is not None:
            counter.inc((tid,), n)

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    # -- life cycle --
    async def start(self, meta: MetadataStore, adopt: Sequence[str] = ()) -> None:
        """Resume every target's queue from disk (what a previous run left) and start delivering.

        ``adopt``: queue directories no process writes any more (those of secondary workers
        beyond the current ``workers``): their messages move into this notifier's queues."""
        self.meta = meta
        self._pending = asyncio.Queue()
        for st in self._states.values():
            found = await asyncio.to_thread(st.disk.scan)
            st.files.extend(found)
            st.depth = sum(n for _, n in found)
            st.next_seq = (found[-1][0] + 1) if found else 1
            for directory in adopt:
                await self._adopt(st, DiskQueue(os.path.join(directory, st.target.id)))
            self._set_depth(st)
            if st.depth:
                log.info("notify: target %s resumes with %d queued message(s)", st.target.id, st.depth)
            st.task = asyncio.create_task(self._deliver(st), name=f"notify-{st.target.id}")
        if self._states:
            self._writer = asyncio.create_task(self._write_loop(), name="notify-writer")

    async def _adopt(self, st: _TargetState, other: DiskQueue) -> None:
        """Move another queue's files into ``st``'s, in order. Each is written here before it is
        removed there: a crash in between sends its messages twice, never loses them."""
        if not os.path.isdir(other.directory):
            return
        for seq, _ in await asyncio.to_thread(other.scan):
            msgs = await asyncio.to_thread(other.read, seq)
            if msgs:
                await self._append(st, msgs)
            await asyncio.to_thread(other.remove, seq)
        with contextlib.suppress(OSError):  # not empty: a file that is no queue's; left alone
            os.rmdir(other.directory)

    async def close(self) -> None:
        """Write what is pending, stop the deliverers (keeping what they had not sent), close connections."""
        self._closing = True
        if self._writer is not None and self._pending is not None:
            self._pending.put_nowait(_Pending([], asyncio.get_running_loop().create_future()))
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        for st in self._states.values():
            if st.task is not None:
                await _stop(st.task)
            with contextlib.suppress(Exception):
                await st.sender.close()

    # -- what the front end calls --
    async def emit(self, bucket: str, changes: Sequence[ev.Change], principal: Principal | None,
                   source_ip: str | None, request_id: str, host_id: str) -> None:
        """Queue the messages of one request's committed changes for the writer; with
        ``notify_wait_durable``, return only once they are on disk.

        Never raises: the change is committed and answered whatever happens here.
        """
        if not self._states or self._closing or self._pending is None:
            return
        if principal is None or principal.is_anonymous:
            principal_id = "anonymous"
        else:  # S3 writes "AWS:" and the IAM user id; a tenant root's user id is its tenant id
            principal_id = "AWS:" + (principal.user_id or principal.tenant_id)
        origin_fields = {"principal_id": principal_id, "source_ip": source_ip or "", "request_id": request_id,
                         "host_id": host_id}
        try:
            messages = await self._messages(bucket, changes, origin_fields)
        except Exception:
            log.exception("notify: reading the notification configuration of %s failed", bucket)
            return
        if not messages:
            return
        if self._waiting + len(messages) > self.limit:
            # The disk cannot keep up (or fails): never hold writes back for notifications.
            for tid, _ in messages:
                self._count(self._dropped, tid)
            log.error("notify: %d event message(s) of bucket %s dropped: too many waiting to be written",
                      len(messages), bucket)
            return
        pending = _Pending(messages, asyncio.get_running_loop().create_future())
        self._waiting += len(messages)
        self._pending.put_nowait(pending)
        if not self.wait_durable:
            return
        try:
            await asyncio.shield(pending.done)
        except Exception as e:  # noqa: BLE001 - logged; the write itself stands
            log.error("notify: %d event message(s) of bucket %s could not be queued: %s", len(messages), bucket, e)

    async def _messages(self, bucket: str, changes: Sequence[ev.Change],
                        origin_fields: Mapping[str, str]) -> list[tuple[str, bytes]]:
        assert self.meta is not None
        document = await self.meta.get_bucket_config(bucket, "notification")
        if not document:
            return []
        rules = self._parsed.get(document)
        if rules is None:
            rules = cfg.loads(document)
            if len(self._parsed) > 1024:
                self._parsed.clear()
            self._parsed[document] = rules
        record = await self.meta.get_bucket(bucket)
        owner = record.tenant_id if record is not None else ""
        allowed = set(self._states)
        if any(st.target.restricted for st in self._states.values()):
            # The operator may have closed a target to this tenant since the rules were stored.
            tenant = await self.meta.get_tenant(owner)
            allowed = set(cfg.available(self.targets, owner, tenant.name if tenant is not None else None))
        origin = ev.Origin(region=self.region, owner_id=owner, **origin_fields)
        now = time.time()
        out: list[tuple[str, bytes]] = []
        for change in changes:
            for rule in rules:
                if not rule.matches(change.name, change.key):
                    continue
                parsed = cfg.parse_arn(rule.arn)
                if parsed is None or parsed[1] not in allowed:
                    continue  # a target the operator removed (or closed to the tenant) since
                out.append((parsed[1], ev.message(ev.record(change, bucket, origin, rule.id, now))))
        return out

    # -- the group-commit writer --
    async def _write_loop(self) -> None:
        assert self._pending is not None
        while True:
            batch = [await self._pending.get()]
            while len(batch) < _BATCH and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            by_target: dict[str, list[bytes]] = {}
            for p in batch:
                for tid, msg in p.messages:
                    by_target.setdefault(tid, []).append(msg)
            error: Exception | None = None
            for tid, msgs in by_target.items():
                try:
                    await self._append(self._states[tid], msgs)
                except Exception as e:  # noqa: BLE001 - disk full, I/O error: reported to the requests
                    self._count(self._dropped, tid, len(msgs))
                    error = e
            for p in batch:
                self._waiting -= len(p.messages)
                if error is not None and p.messages and not self.wait_durable:
                    log.error("notify: %d event message(s) could not be queued: %s", len(p.messages), error)
                if not p.done.done():
                    if error is not None and p.messages:
                        p.done.set_exception(error)
                        p.done.exception()  # retrieved here: emit logs it
                    else:
                        p.done.set_result(None)
            if self._closing and self._pending.empty():
                return

    async def _append(self, st: _TargetState, msgs: list[bytes]) -> None:
        seq = st.next_seq
        st.next_seq += 1
        await asyncio.to_thread(st.disk.write, seq, msgs)
        st.files.append((seq, len(msgs)))
        st.depth += len(msgs)
        await self._enforce_limit(st)
        self._set_depth(st)
        st.wake.set()

    async def _enforce_limit(self, st: _TargetState) -> None:
        dropped = 0
        while st.depth > self.limit:
            victim = next(((seq, n) for seq, n in st.files if seq != st.in_flight), None)
            if victim is None or victim == st.files[-1]:
                break  # never the batch just written: the newest events are the ones kept
            st.files.remove(victim)
            st.depth -= victim[1]
            dropped += victim[1]
            await asyncio.to_thread(st.disk.remove, victim[0])
        if dropped:
            self._count(self._dropped, st.target.id, dropped)
            st.unlogged_drops += dropped
            now = time.monotonic()
            if now - st.drop_logged >= _DROP_LOG_SECONDS:  # a target down for long: one line a minute
                log.error("notify: target %s: queue over notify_queue_limit (%d): dropped the %d oldest message(s)",
                          st.target.id, self.limit, st.unlogged_drops)
                st.unlogged_drops, st.drop_logged = 0, now

    # -- the deliverers --
    async def _deliver(self, st: _TargetState) -> None:
        tid = st.target.id
        delay = _FIRST_RETRY
        while True:
            if not st.files:
                st.wake.clear()
                await st.wake.wait()
                continue
            seq, _ = st.files[0]
            st.in_flight = seq
            msgs = await asyncio.to_thread(st.disk.read, seq)
            sent = 0
            try:
                while sent < len(msgs):
                    try:
                        await asyncio.wait_for(st.sender.send(msgs[sent]), _SEND_TIMEOUT)
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:  # noqa: BLE001 - any failure: keep the message, retry
                        self._count(self._failures, tid)
                        if not st.failing:
                            log.warning("notify: target %s (%s) unavailable, retrying: %s", tid, st.target.type,
                                        self._scrub(f"{type(e).__name__}: {e}"))
                            st.failing = True
                        with contextlib.suppress(Exception):
                            await st.sender.close()
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self.retry_max)
                        continue
                    if st.failing:
                        log.warning("notify: target %s delivering again", tid)
                        st.failing = False
                    delay = _FIRST_RETRY
                    sent += 1
                    st.depth -= 1
                    self._count(self._delivered, tid)
                    self._set_depth(st)
            except asyncio.CancelledError:
                if 0 < sent < len(msgs):  # shutdown part-way: keep only what was not acknowledged
                    with contextlib.suppress(Exception):
                        await asyncio.shield(asyncio.to_thread(st.disk.rewrite, seq, msgs[sent:]))
                raise
            await asyncio.to_thread(st.disk.remove, seq)
            if st.files and st.files[0][0] == seq:
                st.files.popleft()
            st.in_flight = None


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a deliverer until it ends. Once is not always enough: on Python 3.11, a cancel that
    reaches ``asyncio.wait_for`` just as the send it waits for fails is lost (wait_for raises the
    send's error instead), and the deliverer would go on retrying forever, holding the stop."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        task.exception()  # retrieved: a deliverer's own failure was logged where it happened
