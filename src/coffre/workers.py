"""Worker processes for ``coffre serve`` (setting ``workers``; docs/workers.md).

The process started by ``coffre serve`` is the primary: with ``workers`` = N > 1 it does all it
does alone (migrations, bootstrap, admin listener, the audit writer, every background worker)
and serves S3 on a port bound with SO_REUSEPORT; it then starts N-1 secondary processes (fresh
interpreters: ``python -m coffre serve --worker-channel FD``, never a fork of a process that has
SQLite connections and threads open) that bind the same port and serve S3 requests only.

Each secondary talks to the primary over its own Unix socketpair, created by the primary and
inherited by the child (no path in the data directory, no permission to get right). On it the
secondary receives its settings (so both run with exactly the same ones, however they were
given) and sends its audit records to the one writer (audit/relay.py). The channel is also how
each side learns the other is gone: a secondary whose primary died sees the end of the channel,
refuses writes and exits; the primary restarts a secondary that died (with backoff).

What a secondary keeps per process, as another gateway sharing the metadata store would: its
request metering counters (flushed every ``metering_flush_seconds`` and at stop; the store adds
them up), its notification queues (a directory of its own, which it delivers), and the caches
whose staleness across gateways is bounded already (credentials and policies 30 s, tenant key
versions 30 s, keys from a tenant's key service ``external_key_cache_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, fields, replace
from typing import Any

from aiohttp import web

from coffre.audit.delivery import DeliveryService
from coffre.audit.relay import RelayedTrail, encode, read_frame_blocking, serve_channel
from coffre.audit.trail import AuditTrail
from coffre.notify.service import Notifier
from coffre.observability.instruments import Metrics
from coffre.s3 import coffre_api
from coffre.s3.app import S3App, make_server
from coffre.s3.errors import status_and_code
from coffre.settings import Settings
from coffre.tlsconfig import optional_server_context

log = logging.getLogger("coffre.workers")

_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
_HEALTHY_SECONDS = 60.0  # a secondary that lived this long restarts after the first backoff again
_STOP_SECONDS = 20.0  # a secondary's graceful stop (in-flight requests: 10 s) before it is killed
_READY_SECONDS = 30.0


def notify_directory(settings: Settings, index: int) -> str:
    """Secondary ``index``'s notification queues (the primary's stay in data_dir/notify)."""
    return os.path.join(settings.data_dir, "notify-workers", str(index))


def orphaned_notify_directories(settings: Settings) -> list[str]:
    """Queues of secondaries that no longer exist (``workers`` was lowered): the primary adopts them."""
    parent = os.path.join(settings.data_dir, "notify-workers")
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return []
    return [os.path.join(parent, n) for n in sorted(names) if n.isdigit() and int(n) >= settings.workers]


def remove_empty(directories: list[str]) -> None:
    """Remove adopted queue directories once empty (one holding anything else is left alone)."""
    for d in directories:
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _settings_doc(settings: Settings) -> dict[str, Any]:
    return asdict(settings)


def _settings_from(doc: dict[str, Any]) -> Settings:
    base = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in doc:
            continue
        value = doc[f.name]
        if isinstance(getattr(base, f.name), tuple):  # JSON made lists of them
            value = tuple(dict(v) if isinstance(v, dict) else v for v in value)
        values[f.name] = value
    return replace(base, **values)


class Supervisor:
    """The primary's side: starts the secondaries, feeds their records into its trail, restarts
    those that die, and stops them all (gracefully) before the primary closes its log."""

    def __init__(self, settings: Settings, trail: AuditTrail) -> None:
        self.settings = settings
        self.trail = trail
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._ready: dict[int, asyncio.Event] = {}
        self._stopping = asyncio.Event()

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    async def start(self) -> None:
        """Start every secondary and wait (bounded) until each serves: when ``coffre serve``
        says it listens, all its workers do."""
        for index in range(1, self.settings.workers):
            self._ready[index] = asyncio.Event()
            self._tasks[index] = asyncio.create_task(self._keep(index), name=f"worker-{index}")
        waits = [asyncio.create_task(e.wait()) for e in self._ready.values()]
        _, late = await asyncio.wait(waits, timeout=_READY_SECONDS)
        for w in late:
            w.cancel()
        if late:
            log.error("%d secondary worker(s) not serving after %.0f s; going on without them for now",
                      len(late), _READY_SECONDS)

    async def stop(self) -> None:
        """SIGTERM to every secondary: each finishes its requests, flushes its counters and sends
        its last records (then ``bye``); killed if it takes longer than _STOP_SECONDS."""
        self._stopping.set()
        for proc in list(self._procs.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        if not self._tasks:
            return
        _, late = await asyncio.wait(list(self._tasks.values()), timeout=_STOP_SECONDS)
        if late:
            for index, proc in self._procs.items():
                if proc.returncode is None:
                    log.error("worker %d (pid %d) did not stop in %.0f s: killed", index, proc.pid, _STOP_SECONDS)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.wait(late, timeout=5.0)

    async def _keep(self, index: int) -> None:
        """Run secondary ``index`` until the primary stops, restarting it when it dies."""
        delay = _FIRST_BACKOFF
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                code = await self._run_one(index)
            except Exception:  # noqa: BLE001 - cannot start (fork failed, fds...): retried like a crash
                log.exception("worker %d could not be started", index)
                code = None
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= _HEALTHY_SECONDS:
                delay = _FIRST_BACKOFF
            log.error("worker %d exited unexpectedly (%s); restarting it in %.0f s", index,
                      _describe(code), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, _MAX_BACKOFF)

    async def _run_one(self, index: int) -> int | None:
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "coffre", "serve", "--worker-channel", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the child's copy only: when it dies, ours reads the end of the channel
        self._procs[index] = proc
        log.info("worker %d started (pid %d)", index, proc.pid)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        # The settings travel on the private channel, never on a command line or in a file.
        writer.write(encode({"t": "hello", "index": index, "settings": _settings_doc(self.settings)}))
        ready = self._ready[index]
        channel = asyncio.create_task(serve_channel(self.trail, reader, writer, ready.set),
                                      name=f"worker-{index}-channel")
        try:
            code = await proc.wait()
        finally:
            # The channel ends when the child is gone (its last records are read first).
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(channel, 5.0)
            if not channel.done():
                channel.cancel()
        return code


def _describe(code: int | None) -> str:
    if code is None:
        return "not started"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


# -- the secondary's side --
def run_secondary(fd: int) -> None:
    """Entry point of a secondary worker (``coffre serve --worker-channel FD``)."""
    from coffre.observability.logs import configure_logging

    # Signals first: a stop asked while starting is a stop, not a traceback.
    stop_early: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop_early.append(signum))
    sock = socket.socket(fileno=fd)
    sock.settimeout(_READY_SECONDS)
    hello = read_frame_blocking(sock)
    sock.setblocking(False)
    settings = _settings_from(hello["settings"])
    index = int(hello["index"])
    os.umask(0o077)  # as the primary (server.build): whatever this process creates is private
    configure_logging(settings.log_level, settings.log_format, secrets=(settings.root_secret_key,))
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    asyncio.run(_serve_secondary(settings, index, sock, stop_early))


async def _serve_secondary(settings: Settings, index: int, sock: socket.socket, stop_early: list[int]) -> None:
    from coffre.server import build, settle_heap  # the same stores, built the same way as the primary's

    tls = optional_server_context(settings.tls_cert, settings.tls_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if stop_early:
        return
    metrics = Metrics()  # for the instrumented stores' sake; this process has no /metrics listener
    notifier = Notifier(settings, metrics, notify_directory(settings, index))
    coffre = build(settings, metrics)
    # No migrations to wait for (the primary ran them before starting us), no key re-wraps,
    # no GC, lifecycle, erasure or audit delivery: those run in the primary alone.
    await coffre.open(resume=False)
    coffre.meter.start(roll=False)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    audit = RelayedTrail(settings, reader, writer, on_lost=stop.set)
    await audit.start()
    # Delivery's configuration (the tenant API) works here; its deliveries run in the primary.
    coffre_api.attach(coffre, audit, DeliveryService(coffre, audit, settings.audit_delivery_seconds,
                                                     status_and_code))
    await notifier.start(coffre.meta)
    server = make_server(S3App(coffre, settings, audit, metrics, notifier), access_log=None,
                         keepalive_timeout=settings.keepalive_timeout)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=10)
    await runner.setup()
    try:
        if not stop.is_set():
            await web.TCPSite(runner, settings.host, settings.port, reuse_address=True, reuse_port=True,
                              backlog=1024, ssl_context=tls).start()
            settle_heap()
            audit.send({"t": "ready"})
            log.info("worker %d serving (pid %d)", index, os.getpid())
            await stop.wait()
    finally:
        await runner.cleanup()  # in-flight requests finish (their records are queued)
        await notifier.close()
        await audit.close()  # every record sent, then "bye"
        await coffre.close()  # metering's last flush
