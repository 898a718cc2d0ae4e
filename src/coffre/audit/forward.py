"""Copies of the audit trail for the operator's tools: syslog (RFC 5424) and a JSON-lines file.

Fed by the trail's writer once a batch is on disk (so a copy never shows a record the chained
log does not hold), through one bounded queue per destination: a slow or absent receiver never
delays a request nor the log, and never the other destination. When a queue is full the
records it cannot take are dropped and counted (``coffre_audit_forward_dropped_total``); the
chained log under ``<data_dir>/audit/`` stays the record of truth, and every copied record
carries its ``seq`` and ``hash`` so a SIEM can be reconciled with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from coffre.audit import records as r
from coffre.observability.metrics import Metric, Registry, escape_label, format_value
from coffre.settings import Settings

log = logging.getLogger("coffre.audit")

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14, "solaris-cron": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
# Severities: a success is informational, a refusal a notice, a server error a warning.
_INFO, _NOTICE, _WARNING = 6, 5, 4
_BOM = b"\xef\xbb\xbf"  # RFC 5424: a UTF-8 MSG starts with the byte order mark
_BATCH = 256
_RETRY_MAX = 30.0


class Sink(Protocol):
    name: str

    async def open(self) -> None: ...

    async def send(self, records: Sequence[dict[str, Any]]) -> None:
        """Deliver the records, or raise OSError (they are then counted as dropped)."""

    async def close(self) -> None: ...


def _printable(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, at most ``limit`` characters."""
    out = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:limit]
    return out or "-"


class SyslogFormat:
    def __init__(self, facility: str, app_name: str) -> None:
        if facility not in FACILITIES:
            raise ValueError(f"audit_syslog_facility: {facility!r} is not a syslog facility "
                             f"({', '.join(FACILITIES)})")
        self.facility = FACILITIES[facility]
        self.app_name = _printable(app_name, 48)
        self.hostname = _printable(socket.gethostname(), 255)
        self.procid = str(os.getpid())

    def message(self, rec: dict[str, Any]) -> bytes:
        """One RFC 5424 message: the record as canonical JSON in MSG, the operation as MSGID."""
        status = int(rec.get("status") or 0)
        severity = _WARNING if status >= 500 else _NOTICE if status >= 400 else _INFO
        header = (f"<{self.facility * 8 + severity}>1 {rec.get('time') or '-'} {self.hostname} {self.app_name} "
                  f"{self.procid} {_printable(str(rec.get('operation') or '-'), 32)} -")
        return header.encode("ascii") + b" " + _BOM + r.canonical(rec)


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"audit_syslog_address: {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class UdpSyslog:
    """RFC 5426: one message per datagram, sent without waiting (nothing ever blocks on it)."""

    def __init__(self, address: str, fmt: SyslogFormat) -> None:
        self.name = "syslog"
        self.host, self.port = _split_address(address)
        self.fmt = fmt
        self._sock: socket.socket | None = None

    async def open(self) -> None:
        infos = await asyncio.get_running_loop().getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(addr)  # a connected socket reports a receiver that is gone (ECONNREFUSED)
        self._sock = sock

    async def send(self, records: Sequence[dict[str, Any]]) -> None:
        if self._sock is None:
            await self.open()
        assert self._sock is not None
        for rec in records:
            self._sock.send(self.fmt.message(rec))

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class TcpSyslog:
    """RFC 6587 octet counting ("LEN SP MSG") over one TCP connection, re-opened when lost."""

    def __init__(self, address: str, fmt: SyslogFormat) -> None:
        self.name = "syslog"
        self.host, self.port = _split_address(address)
        self.fmt = fmt
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        _, self._writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)

    async def send(self, records: Sequence[dict[str, Any]]) -> None:
        if self._writer is None or self._writer.is_closing():
            await self.open()
        assert self._writer is not None
        data = bytearray()
        for rec in records:
            msg = self.fmt.message(rec)
            data += str(len(msg)).encode("ascii") + b" " + msg
        try:
            self._writer.write(bytes(data))
            await asyncio.wait_for(self._writer.drain(), 10)
        except (OSError, TimeoutError) as e:
            await self.close()
            raise OSError(f"syslog connection lost: {e}") from e

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None


class JsonLinesFile:
    """Appends records to a file (mode 0600) for a log shipper, rotated by size (``PATH.1``...)."""

    def __init__(self, path: str, max_bytes: int, keep: int) -> None:
        self.name = "file"
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep

    async def open(self) -> None:
        return None

    async def send(self, records: Sequence[dict[str, Any]]) -> None:
        lines = [r.canonical(rec) + b"\n" for rec in records]
        await asyncio.to_thread(self._append, lines)

    def _append(self, lines: list[bytes]) -> None:
        """Append ``lines``, rotating before the one that would take the file past
        ``max_bytes``: a batch is split across files, so that no file grows past the limit
        unless a single record is larger than it."""
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            size = 0
        pending: list[bytes] = []
        for line in lines:
            if self.max_bytes and size and size + len(line) > self.max_bytes:
                self._write(pending)
                pending = []
                self._rotate()
                size = 0
            pending.append(line)
            size += len(line)
        self._write(pending)

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        # Created private (keys and names are in it); appended to, never rewritten.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(b"".join(lines))

    def _rotate(self) -> None:
        """PATH becomes PATH.1, PATH.1 PATH.2...; the oldest beyond ``keep`` is deleted (as logrotate)."""
        if self.keep <= 0:
            os.unlink(self.path)
            return
        for i in range(self.keep - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    async def close(self) -> None:
        return None


class _Lane:
    """One destination, its bounded queue and its sender task."""

    def __init__(self, sink: Sink, size: int) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.sent = 0
        self.task: asyncio.Task[None] | None = None
        self._down = False

    def offer(self, records: Sequence[dict[str, Any]]) -> None:
        for rec in records:
            try:
                self.queue.put_nowait(rec)
            except asyncio.QueueFull:
                self.dropped += 1

    async def run(self) -> None:
        wait = 1.0
        while True:
            first = await self.queue.get()
            batch = [first] if first is not None else []
            while len(batch) < _BATCH and not self.queue.empty():
                item = self.queue.get_nowait()
                if item is None:
                    first = None
                    break
                batch.append(item)
            if batch:
                try:
                    await self.sink.send(batch)
                except (OSError, ValueError) as e:
                    # The receiver is down: these records are lost to it (counted); the queue
                    # keeps filling meanwhile and drops beyond its size.
                    self.dropped += len(batch)
                    if not self._down:
                        log.warning("audit %s export failing (%s): records are dropped and counted "
                                    "until it works again", self.sink.name, e)
                    self._down = True
                    if first is None:
                        return
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, _RETRY_MAX)
                    continue
                self.sent += len(batch)
                wait = 1.0
                if self._down:
                    log.warning("audit %s export working again", self.sink.name)
                    self._down = False
            if first is None:
                return


class _LaneMetric(Metric):
    """Read from the lanes when scraped: they count with plain integers on the hot path."""

    def __init__(self, name: str, kind: str, help: str, lanes: Sequence[_Lane],
                 value: Callable[[_Lane], int]) -> None:
        super().__init__(name, help, ("sink",))
        self.kind = kind
        self._lanes = lanes
        self._value = value

    def samples(self) -> Iterable[str]:
        for lane in self._lanes:
            yield f'{self.name}{{sink="{escape_label(lane.sink.name)}"}} {format_value(self._value(lane))}'


class Forwarder:
    def __init__(self, sinks: Sequence[Sink], queue_size: int) -> None:
        self.lanes = [_Lane(s, queue_size) for s in sinks]

    @classmethod
    def from_settings(cls, settings: Settings) -> Forwarder | None:
        """The destinations configured; a mistake in them stops the start (ValueError)."""
        sinks: list[Sink] = []
        if settings.audit_syslog_address:
            fmt = SyslogFormat(settings.audit_syslog_facility, settings.audit_syslog_app_name)
            proto = settings.audit_syslog_protocol.lower()
            if proto == "udp":
                sinks.append(UdpSyslog(settings.audit_syslog_address, fmt))
            elif proto == "tcp":
                sinks.append(TcpSyslog(settings.audit_syslog_address, fmt))
            else:
                raise ValueError(f"audit_syslog_protocol: {settings.audit_syslog_protocol!r} is not udp or tcp")
        if settings.audit_export_file:
            sinks.append(JsonLinesFile(settings.audit_export_file, settings.audit_export_file_max_bytes,
                                       settings.audit_export_file_keep))
        if not sinks:
            return None
        return cls(sinks, settings.audit_forward_queue_size)

    def register(self, registry: Registry) -> None:
        registry.register(_LaneMetric(
            "coffre_audit_forward_dropped_total", "counter",
            "Audit records not copied to syslog or the SIEM file (receiver down, or its queue full), by sink.",
            self.lanes, lambda lane: lane.dropped))
        registry.register(_LaneMetric(
            "coffre_audit_forwarded_total", "counter", "Audit records copied to syslog or the SIEM file, by sink.",
            self.lanes, lambda lane: lane.sent))
        registry.register(_LaneMetric(
            "coffre_audit_forward_queue_depth", "gauge",
            "Audit records waiting to be copied to syslog or the SIEM file, by sink.",
            self.lanes, lambda lane: lane.queue.qsize()))

    def start(self) -> None:
        for lane in self.lanes:
            lane.task = asyncio.create_task(lane.run(), name=f"audit-forward-{lane.sink.name}")

    def offer(self, records: Sequence[dict[str, Any]]) -> None:
        for lane in self.lanes:
            lane.offer(records)

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then stop."""
        for lane in self.lanes:
            if lane.task is None:
                continue
            try:
                lane.queue.put_nowait(None)
            except asyncio.QueueFull:
                lane.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(lane.task, timeout)
            await lane.sink.close()
