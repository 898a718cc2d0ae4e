"""The audit trail across worker processes: one chain, one writer (docs/workers.md).

With ``workers`` > 1 the primary process writes the audit log, as it does alone; a secondary
worker's ``RelayedTrail`` sends its records to the primary over a private channel (a Unix
socketpair the primary created, inherited by the secondary) instead of writing them. Frames on
the channel are a 4-byte big-endian length and a JSON object with a type ``t``:

- secondary -> primary: ``records`` (a batch, plus how many records could not be queued),
  ``seal`` (an id: have everything sent so far written under a signed checkpoint), ``ready``
  (the S3 port is bound), ``bye`` (nothing follows: the secondary is stopping);
- primary -> secondary: ``hello`` (the worker's index and settings, first), ``status`` (whether
  the primary's log accepts writes, and its last seq; sent on change and every second),
  ``sealed`` (an id and whether the seal was written).

Recording costs a request what it costs in the primary: one ``put_nowait`` into a bounded queue.
A secondary refuses writes (with ``audit_required``) exactly when acting unrecorded could
happen: its own queue is full, the primary said its log cannot be written, the channel broke,
or the primary has been silent for ``_SILENCE`` seconds (stopped, stuck).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from coffre.audit.log import AuditLog
from coffre.audit.records import KEY_FILE, Signer
from coffre.audit.trail import AuditTrail
from coffre.settings import Settings

log = logging.getLogger("coffre.audit")

_HEADER = struct.Struct(">I")
_MAX_FRAME = 64 << 20  # a batch of 512 records is well under a megabyte; beyond this, a broken peer
_BATCH = 512
_HEARTBEAT = 1.0  # seconds between two status frames when nothing changes
_POLL = 0.1  # how often the primary looks whether its log's state changed
# A primary not heard from for this long is taken as unreachable: the secondary refuses writes.
# Far above any event loop pause under load, so a busy primary is never mistaken for a dead one.
_SILENCE = 10.0


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at the end of the channel (the peer closed it or died)."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > _MAX_FRAME:
            raise ValueError(f"worker channel: frame of {size} bytes")
        message: dict[str, Any] = json.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message


def read_frame_blocking(sock: socket.socket) -> dict[str, Any]:
    """The first message on a channel, read before an event loop runs (a secondary's hello)."""
    def exactly(n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("worker channel closed before the hello")
            data += chunk
        return bytes(data)

    (size,) = _HEADER.unpack(exactly(_HEADER.size))
    if size > _MAX_FRAME:
        raise ValueError(f"worker channel: frame of {size} bytes")
    message: dict[str, Any] = json.loads(exactly(size))
    return message


class RelayedTrail(AuditTrail):
    """A secondary worker's audit trail: the same interface as the primary's (the S3 front end
    and the tenant API use it unchanged), the records written by the primary."""

    def __init__(self, settings: Settings, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_lost: Callable[[], None]) -> None:
        # The log object is never opened here: it holds the signing key for tenants' exports
        # (read from the directory the primary writes) and the primary's last seq.
        super().__init__(settings, AuditLog(settings.audit_dir))
        self.forwarder = None  # syslog and the SIEM file are fed by the primary, once written
        self._reader = reader
        self._writer = writer
        self._on_lost = on_lost  # the primary is gone: the worker stops
        self._remote_accepting = False
        self._heard = float("-inf")  # monotonic time of the primary's last status
        self._heard_once = asyncio.Event()
        self._sealing: dict[int, asyncio.Future[bool]] = {}
        self._next_seal = 0
        self._listener: asyncio.Task[None] | None = None

    # -- what the front end calls --
    def accepting_writes(self) -> bool:
        if not self.required:
            return True
        return (self._failure is None and self._remote_accepting and not self._queue.full()
                and time.monotonic() - self._heard < _SILENCE)

    def send(self, message: dict[str, Any]) -> None:
        """Another message for the primary (``ready``), after whatever was sent before."""
        if not self._writer.is_closing():
            self._writer.write(encode(message))

    # -- life cycle --
    async def start(self, timeout: float = 30.0) -> None:
        """Start sending, and wait for the primary's first status (so the first request is not
        refused for want of it)."""
        await asyncio.to_thread(self._load_signer)
        self._listener = asyncio.create_task(self._listen(), name="audit-relay-listener")
        self._task = asyncio.create_task(self._run(), name="audit-relay")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._heard_once.wait(), timeout)

    async def close(self) -> None:
        """Send what is queued, then ``bye``; the primary writes it all before closing its log."""
        await self._drain()
        with contextlib.suppress(ConnectionError, OSError):
            self.send({"t": "bye"})
            await self._writer.drain()
        if self._listener is not None:
            # The primary closes its end once it has read ``bye``: the listener then ends.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._listener, 5.0)
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    def _load_signer(self) -> None:
        """The signing key, for exports; absent until the primary could open its log once."""
        if self.log.ready or not os.path.exists(os.path.join(self.log.directory, KEY_FILE)):
            return
        try:
            opened = AuditLog(self.log.directory, Signer.load(self.log.directory))
            opened.seq = self.log.seq
            self.log = opened
        except (OSError, ValueError) as e:
            log.warning("audit: cannot read the signing key for exports: %s", e)

    def _lost(self, reason: str) -> None:
        if self._closing:
            return
        self._fail(ConnectionError(reason))
        self._on_lost()

    # -- the sender and the listener --
    async def _run(self) -> None:
        while True:
            batch: list[dict[str, Any]] = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            records = [b for b in batch if "_wake" not in b and "_seal" not in b]
            lost = self._dropped
            try:
                if records or lost:
                    self.send({"t": "records", "records": records, "lost": lost})
                    self._dropped -= lost
                for b in batch:
                    if "_seal" in b:
                        self._next_seal += 1
                        self._sealing[self._next_seal] = b["_seal"]
                        self.send({"t": "seal", "id": self._next_seal})
                # Back-pressure from the channel lands here, never on a request: they only queue.
                await self._writer.drain()
            except (ConnectionError, OSError) as e:
                self._lost(f"the channel to the primary process broke: {e}")
                return
            if self._closing and self._queue.empty():
                return

    async def _listen(self) -> None:
        while (message := await read_frame(self._reader)) is not None:
            kind = message.get("t")
            if kind == "status":
                self._remote_accepting = bool(message.get("accepting"))
                self._heard = time.monotonic()
                # The primary's last seq: where an audit delivery configured here starts (a little
                # behind at worst, which delivers a few records more, never fewer).
                self.log.seq = int(message.get("seq", self.log.seq))
                if not self.log.ready and message.get("ready"):
                    await asyncio.to_thread(self._load_signer)
                self._heard_once.set()
            elif kind == "sealed":
                fut = self._sealing.pop(int(message.get("id", 0)), None)
                if fut is not None and not fut.done():
                    fut.set_result(bool(message.get("ok")))
        for fut in self._sealing.values():
            if not fut.done():
                fut.set_result(False)
        self._sealing.clear()
        self._lost("the primary process closed the channel")


async def serve_channel(trail: AuditTrail, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        on_ready: Callable[[], None]) -> None:
    """The primary's side of one secondary's channel: its records into the primary's trail (in
    the order sent), its seals, and the status it needs to accept or refuse writes. Returns when
    the secondary said ``bye`` or is gone."""
    seals: set[asyncio.Task[None]] = set()

    def send(message: dict[str, Any]) -> None:
        if not writer.is_closing():
            writer.write(encode(message))  # one write per frame: frames never interleave

    async def status() -> None:
        last: bool | None = None
        sent = float("-inf")
        while True:
            accepting = trail.accepting_writes()
            now = time.monotonic()
            if accepting != last or now - sent >= _HEARTBEAT:
                send({"t": "status", "accepting": accepting, "seq": trail.log.seq, "ready": trail.log.ready})
                last, sent = accepting, now
            await asyncio.sleep(_POLL)

    async def seal(seal_id: int) -> None:
        ok = await trail.seal()
        send({"t": "sealed", "id": seal_id, "ok": ok})

    reporter = asyncio.create_task(status(), name="audit-relay-status")
    try:
        while (message := await read_frame(reader)) is not None:
            kind = message.get("t")
            if kind == "records":
                for item in message.get("records", ()):
                    trail.record_fields(item)
                if message.get("lost"):
                    trail.count_lost(int(message["lost"]))
            elif kind == "seal":
                task = asyncio.create_task(seal(int(message.get("id", 0))))
                seals.add(task)
                task.add_done_callback(seals.discard)
            elif kind == "ready":
                on_ready()
            elif kind == "bye":
                break
    finally:
        reporter.cancel()
        for task in list(seals):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
