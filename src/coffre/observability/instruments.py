"""coffre's metrics, all prefixed ``coffre_`` (the list is in docs/observability.md)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from coffre import __version__
from coffre.observability.metrics import STORE_BUCKETS, Labels, Registry
from coffre.observability.timing import instrument


def _gc_stat(field: str) -> dict[Labels, float]:
    return {(str(gen),): float(st[field]) for gen, st in enumerate(gc.get_stats())}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.counter(
            "coffre_requests_total", "S3 requests answered, by operation and HTTP status.",
            ("operation", "status"))
        self.duration = r.histogram(
            "coffre_request_duration_seconds",
            "Time from a request's arrival to its answer (the whole body, for a streamed download).",
            ("operation",))
        self.bytes_in = r.counter(
            "coffre_request_bytes_total", "Request body bytes received, as sent (aws-chunked framing included).",
            ("operation",))
        self.bytes_out = r.counter(
            "coffre_response_bytes_total", "Response body bytes sent.", ("operation",))
        self._in_flight = 0
        r.gauge("coffre_requests_in_flight", "S3 requests being served now.", source=lambda: self._in_flight)
        self.meta_seconds = r.histogram(
            "coffre_metadata_store_duration_seconds", "Metadata store calls, by method.", ("method",),
            STORE_BUCKETS)
        self.blob_seconds = r.histogram(
            "coffre_blob_store_duration_seconds",
            "Blob store calls, by method (put includes receiving the body; reads streamed to a client are not timed).",
            ("method",), STORE_BUCKETS)
        self.key_seconds = r.histogram(
            "coffre_key_provider_duration_seconds", "Root key provider calls (wrap, unwrap, check).", ("method",),
            STORE_BUCKETS)
        self.store_errors = r.counter(
            "coffre_store_errors_total", "Store and key-provider calls that raised, by component and method.",
            ("component", "method"))
        r.gauge("coffre_build_info", "Always 1; the version is a label.", ("version",)).set(1, (__version__,))
        started = time.time()
        r.gauge("coffre_start_time_seconds", "When this process started (Unix time).", source=lambda: started)
        # The cyclic garbage collector: a request's objects go when it ends (reference counting);
        # objects collected here are reference cycles, and each collection pauses the event loop.
        r.counter("coffre_python_gc_collections_total",
                  "Runs of Python's cyclic garbage collector in this process, by generation.",
                  ("generation",), source=lambda: _gc_stat("collections"))
        r.counter("coffre_python_gc_collected_objects_total",
                  "Objects Python's cyclic garbage collector freed in this process (reference cycles), "
                  "by generation.", ("generation",), source=lambda: _gc_stat("collected"))
        r.gauge("coffre_python_gc_frozen_objects",
                "Objects built while starting, kept for the process' life, that the collector no longer walks.",
                source=gc.get_freeze_count)

    # -- the S3 front end, per request: a few dict operations, no lock --
    def request_started(self) -> float:
        self._in_flight += 1
        return time.perf_counter()

    def request_done(self, token: float, operation: str, status: int, bytes_in: int, bytes_out: int) -> None:
        self._in_flight -= 1
        labels = (operation,)
        self.requests.inc((operation, str(status)))
        self.duration.observe(time.perf_counter() - token, labels)
        if bytes_in:
            self.bytes_in.inc(labels, bytes_in)
        if bytes_out:
            self.bytes_out.inc(labels, bytes_out)

    # -- wiring --
    def time_metadata(self, store: Any, interface: type) -> Any:
        return instrument(store, interface, self.meta_seconds, self.store_errors, "metadata")

    def time_blobs(self, store: Any, interface: type) -> Any:
        return instrument(store, interface, self.blob_seconds, self.store_errors, "blob")

    def time_keys(self, provider: Any, interface: type) -> Any:
        return instrument(provider, interface, self.key_seconds, self.store_errors, "key_provider")

    def watch_audit(self, depth: Callable[[], int], capacity: int, accepting: Callable[[], bool]) -> None:
        r = self.registry
        r.gauge("coffre_audit_queue_depth", "Audit records waiting to be written.", source=depth)
        r.gauge("coffre_audit_queue_capacity", "Audit records that may wait (audit_queue_size).",
                source=lambda: capacity)
        r.gauge("coffre_audit_accepting_writes",
                "1 while the audit log can be written, 0 while writes are refused (or records dropped).",
                source=lambda: 1 if accepting() else 0)

    def render(self) -> str:
        return self.registry.render()
