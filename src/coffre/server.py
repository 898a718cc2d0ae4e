"""Wiring for ``coffre serve``: build the stores from settings and run the S3 listener."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from coffre.admin.app import AdminApp
from coffre.audit.delivery import DeliveryService
from coffre.audit.event import AuditEvent
from coffre.audit.forward import Forwarder
from coffre.audit.trail import AuditTrail
from coffre.blob.base import BlobStore
from coffre.blob.local import LocalBlobStore
from coffre.core.billing import PriceSheet
from coffre.core.coffre import Bootstrap, Coffre
from coffre.core.erasure import ErasureEvent
from coffre.core.metering import make_clock
from coffre.crypto.keys import KeyProvider
from coffre.crypto.providers import build_provider
from coffre.groupcommit import CommitThread
from coffre.meta.base import MetadataStore
from coffre.meta.sqlite import SQLiteMetadataStore
from coffre.notify.service import Notifier
from coffre.observability.instruments import Metrics
from coffre.s3 import coffre_api
from coffre.s3.app import S3App, make_server
from coffre.s3.errors import status_and_code
from coffre.s3.handlers.lifecycle import listener as lifecycle_listener
from coffre.settings import Settings
from coffre.tlsconfig import optional_server_context
from coffre.workers import Supervisor, orphaned_notify_directories, remove_empty

log = logging.getLogger("coffre")


def build(settings: Settings, metrics: Metrics | None = None) -> Coffre:
    # Everything the server creates is private to its user whatever umask it was started
    # with (PostgreSQL does the same): SQLite's -wal/-shm files and the blob fan-out
    # directories are created by code that does not pass a mode.
    os.umask(0o077)
    os.makedirs(settings.data_dir, mode=0o700, exist_ok=True)
    # Metering's clock: the system's, or a test's (metering_clock_file); the store integrates
    # stored bytes over time with it and the meter counts requests per hour with it.
    # One writer thread commits both the metadata and the small-blob rows (CommitThread).
    commits = CommitThread()
    meta: MetadataStore = SQLiteMetadataStore(settings.meta_path, clock=make_clock(settings), commit_thread=commits)
    blobs: BlobStore = LocalBlobStore(settings.blob_dir, small_max_bytes=settings.blob_small_max_bytes,
                                      commit_thread=commits)
    keys: KeyProvider = build_provider(settings)
    if metrics is not None:  # timed at their interface, the backends untouched
        meta = metrics.time_metadata(meta, MetadataStore)
        blobs = metrics.time_blobs(blobs, BlobStore)
        keys = metrics.time_keys(keys, KeyProvider)
    return Coffre(settings, meta, blobs, keys)


def announce(settings: Settings, boot: Bootstrap, scheme: str = "http", admin_scheme: str = "http") -> None:
    out = sys.stdout
    out.write(f"coffre listening on {scheme}://{settings.address} (data in {os.path.abspath(settings.data_dir)})\n")
    out.write(f"admin listener (metrics, health) on {admin_scheme}://{settings.admin_address} "
              "(admin API under /admin/v1/)\n")
    if boot.secret_key is not None:
        # Printed once, at creation: the secret is stored only encrypted and never shown again.
        out.write("Root operator credentials were generated (shown once, keep them safe; they work on the\n"
                  "admin API only: `coffre admin tenant create NAME` gives a tenant its S3 credentials):\n")
        out.write(f"  COFFRE_ROOT_ACCESS_KEY={boot.access_key_id}\n")
        out.write(f"  COFFRE_ROOT_SECRET_KEY={boot.secret_key}\n")
    else:
        out.write(f"Root operator access key: {boot.access_key_id}\n")
    out.flush()


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    # Before anything is created: a bad certificate or key stops the start with nothing changed.
    tls = optional_server_context(settings.tls_cert, settings.tls_key)
    admin_tls = optional_server_context(settings.admin_tls_cert, settings.admin_tls_key,
                                        ("admin_tls_cert", "admin_tls_key"))
    Forwarder.from_settings(settings)  # a mistake in the syslog / SIEM settings stops the start here
    PriceSheet.from_settings(settings)  # a malformed price sheet stops the start, not an export
    metrics = Metrics()
    notifier = Notifier(settings, metrics)  # a mistake in the notification targets stops the start here too
    coffre = build(settings, metrics)
    await coffre.open()
    boot = await coffre.bootstrap()
    coffre.start_gc()
    coffre.meter.start()
    # aiohttp's access log would write request lines, presigned signatures included; the audit
    # trail (its own issue) is the record of requests.
    audit = AuditTrail(settings)
    # Started before the listener: the first request is already recorded (or refused, when
    # the log cannot be written and audit_required is on).
    await audit.start()
    metrics.watch_audit(audit.queue_depth, settings.audit_queue_size, audit.accepting_writes)
    # Tenants' view of the trail (docs/audit.md, "Tenants"): refused requests name the bucket's
    # owner, the /_coffre/audit API exports, and deliveries into tenants' buckets run.
    audit.owner_of = _bucket_owner(coffre)
    if audit.forwarder is not None:
        audit.forwarder.register(metrics.registry)
    delivery = DeliveryService(coffre, audit, settings.audit_delivery_seconds, status_and_code)
    coffre_api.attach(coffre, audit, delivery)
    delivery.start()
    # Event notifications resume their queues before the first request, and deliver in the background
    # (with those left by secondary workers that no longer exist: docs/workers.md).
    orphans = orphaned_notify_directories(settings)
    await notifier.start(coffre.meta, orphans)
    remove_empty(orphans)
    # Lifecycle rules: applied in the background, each action audited (principal "lifecycle"),
    # counted and notified; paused while the audit log refuses writes.
    coffre.start_lifecycle(lifecycle_listener(audit.record, metrics, notifier),
                           audit.accepting_writes if settings.audit_required else None)
    # Crypto-erasure of deleted tenants past their grace period: each step audited (api "keys");
    # paused while the audit log refuses writes (no key is destroyed unrecorded).
    coffre.start_erasure(_erasure_audit(audit.record_fields),
                         audit.accepting_writes if settings.audit_required else None)
    # Key rotation steps (rotated, re-wrapped, retired) in the audit trail too (api "keys").
    coffre.keys.set_listener(_key_audit(audit.record))
    admin_runner = web.AppRunner(AdminApp(coffre, settings, metrics, audit.accepting_writes,
                                          audit.record).application(),
                                 handle_signals=False, access_log=None, shutdown_timeout=5)
    server = make_server(S3App(coffre, settings, audit, metrics, notifier), access_log=None,
                         keepalive_timeout=settings.keepalive_timeout)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=10)
    await admin_runner.setup()
    await runner.setup()
    # workers > 1: secondary processes share the S3 port (docs/workers.md); None with one process.
    supervisor = Supervisor(settings, audit) if settings.workers > 1 else None
    # Before the listeners: a stop asked while starting (secondaries included) is a clean stop.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        # The admin listener first: when the S3 port answers, health and metrics do too. A port
        # already taken stops the start here, with the audit log closed properly below.
        await web.TCPSite(admin_runner, settings.admin_host, settings.admin_port, reuse_address=True,
                          ssl_context=admin_tls).start()
        await web.TCPSite(runner, settings.host, settings.port, reuse_address=True, backlog=1024,
                          ssl_context=tls, reuse_port=True if supervisor is not None else None).start()
        if supervisor is not None:
            # Once this process holds the port: a port taken by something else stops the start
            # before any secondary exists.
            await supervisor.start()
        settle_heap()
        announce(settings, boot, "https" if tls is not None else "http",
                 "https" if admin_tls is not None else "http")
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        log.info("shutting down")
        # The secondaries stop while this process finishes its own requests; their last records
        # reach the trail before it closes below.
        stopping = asyncio.create_task(supervisor.stop()) if supervisor is not None else None
        await runner.cleanup()
        if stopping is not None:
            await stopping
        await admin_runner.cleanup()
        await notifier.close()  # after the last request: every answered event is on disk
        await delivery.close()
        await audit.close()  # after the last request: the closing checkpoint seals everything
        await coffre.close()


def settle_heap() -> None:
    """Once a process is started: what it built to start (modules, settings, stores, the app) is
    kept for its whole life, so the cyclic garbage collector stops walking it (``gc.freeze``).

    A full collection otherwise walks those ~60,000 objects each time, a pause of tens of
    milliseconds for every request in flight; requests free what they build by reference
    counting (no cycles: tests/s3/test_observability.py), so what the collector still walks is
    what requests in flight hold. Garbage left from the start is collected once, first. The
    price: a frozen object that later ends up in an unreachable cycle is never freed, which
    bounds any such leak by what the start built (a few MiB, once).
    """
    gc.collect()
    gc.freeze()


def _erasure_audit(record_fields: Callable[[dict[str, Any]], None]) -> Callable[[ErasureEvent], None]:
    """Each step of a tenant's crypto-erasure as an audit record: by the operator who asked
    (scheduled, cancelled) or by the worker ("erasure": postponed, destroyed, reclaimed). The
    reclaim's record also says what it removed (``reclaimed``: counts, never a name)."""
    def on_step(event: ErasureEvent) -> None:
        item = AuditEvent(
            time=event.at, request_id=uuid.uuid4().hex[:16].upper(), principal=event.operator or "erasure",
            tenant=event.tenant_id, access_key=None, operation=event.operation, bucket=None, key=None,
            version_id=None, status=200, error_code=None, bytes_in=0, bytes_out=0, source_ip=None,
            user_agent=None, duration_ms=0, api="keys", operator_action=event.operator is not None).fields()
        item["time"] = event.at
        if event.reclaimed is not None:
            item["reclaimed"] = event.reclaimed.counts()
        record_fields(item)

    return on_step


def _key_audit(record: Callable[[AuditEvent], None]) -> Callable[[str, dict[str, Any]], None]:
    """Each step of a key rotation (KeyRotated, KeysRewrapped, KeyRetired) as an audit record of
    principal "key-rotation"; the tenant is the owner of a tenant key, none for the root key."""
    def on_step(operation: str, fields: dict[str, Any]) -> None:
        owner = fields.get("owner")
        record(AuditEvent(
            time=time.time(), request_id=uuid.uuid4().hex[:16].upper(), principal="key-rotation",
            tenant=None if owner in (None, "root") else str(owner), access_key=None, operation=operation,
            bucket=None, key=f"version {fields['version']}" if "version" in fields else None, version_id=None,
            status=200, error_code=None, bytes_in=0, bytes_out=0, source_ip=None, user_agent=None,
            duration_ms=0, api="keys"))

    return on_step


def _bucket_owner(coffre: Coffre) -> Callable[[str], Awaitable[str | None]]:
    async def owner(name: str) -> str | None:
        bucket = await coffre.meta.get_bucket(name)
        return bucket.tenant_id if bucket is not None else None

    return owner


def run(settings: Settings) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    asyncio.run(serve(settings))
