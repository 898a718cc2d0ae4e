"""Usage metering: what each tenant stores over time, the requests it makes and the bytes it moves.

Two halves, with different costs and guarantees (docs/billing.md):

- Stored bytes are integrated over time by the metadata store itself, inside the transaction
  that changes them (MetadataStore.clock, ``usage_hours.byte_seconds``): exact, and as durable
  as the write it accounts for. A crash never loses any of it.
- Requests and bytes in/out are counted here, in memory, per (tenant, bucket, UTC hour): one
  dictionary increment on the request path, no database write. A background task adds the
  counters to the store every ``metering_flush_seconds`` in one transaction (and at clean
  shutdown). A crash loses at most the counters of the last interval, never stored bytes.

Nothing here ever sees an object's name or contents: counters are keyed by tenant, bucket and
hour only.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from coffre.meta.base import MetadataStore
from coffre.meta.records import HOUR, MeteredUsage, RequestCounts
from coffre.settings import Settings

log = logging.getLogger("coffre.metering")

WRITE, READ, FREE = 0, 1, 2  # request classes (indexes in a counter row)
_BYTES_IN, _BYTES_OUT = 3, 4

# AWS's request classes: "PUT, COPY, POST, LIST" requests are the dearer class (writes and
# listings), "GET, SELECT and all other requests" the cheaper one, "DELETE and CANCEL" free.
_WRITE_PREFIXES = ("Put", "Create", "Copy", "Complete", "Upload", "List", "Post", "Restore", "Rename", "Update")
_FREE_PREFIXES = ("Delete",)
_FREE_OPERATIONS = frozenset({"AbortMultipartUpload", "IAM"})


@functools.lru_cache(maxsize=512)  # a fixed set of operation names: the hot path looks it up
def request_class(operation: str) -> int:
    """WRITE, READ or FREE for an S3 operation name (docs/billing.md has the table).

    DeleteObjects is a POST but deletes: free, as a DELETE is. Everything not named a write or
    a delete (Get*, Head*, OPTIONS, SelectObjectContent, unknown requests) is a read."""
    if operation in _FREE_OPERATIONS or operation.startswith(_FREE_PREFIXES):
        return FREE
    if operation.startswith(_WRITE_PREFIXES):
        return WRITE
    return READ


def billable(status: int) -> bool:
    """Whether a request with this status is counted: not when refused (403: AWS no longer bills
    refused requests to the bucket owner) nor when the server failed (5xx)."""
    return status != 403 and status < 500


def make_clock(settings: Settings) -> Callable[[], float]:
    """Metering's clock: the system's, or (tests only) the time written in a file.

    ``metering_clock_file`` exists so a test can play a workload at chosen instants (a PUT
    at 00:10, an overwrite at 01:40...) and check byte-hours to the byte-second. It moves
    nothing but metering's idea of now; never set it on a server that bills."""
    path = settings.metering_clock_file
    if not path:
        return time.time

    def from_file() -> float:
        with open(path, encoding="ascii") as f:
            return float(f.read().strip())

    from_file()  # a missing or malformed file stops the start, not the first request
    return from_file


@dataclass(frozen=True, slots=True)
class Period:
    """A billing period: one UTC calendar month, as whole hours [start, end)."""

    name: str  # "2026-11"
    start: int
    end: int

    @property
    def hours(self) -> int:
        return (self.end - self.start) // HOUR

    @staticmethod
    def parse(text: str) -> Period:
        try:
            year_s, month_s = text.split("-")
            year, month = int(year_s), int(month_s)
            if len(year_s) != 4 or len(month_s) != 2 or not 1 <= month <= 12 or year < 1970:
                raise ValueError(text)
        except ValueError:
            raise ValueError(f"a period is a month written YYYY-MM, not {text!r}") from None
        return Period._of(year, month)

    @staticmethod
    def containing(ts: float) -> Period:
        t = time.gmtime(ts)
        return Period._of(t.tm_year, t.tm_mon)

    @staticmethod
    def _of(year: int, month: int) -> Period:
        start = calendar.timegm((year, month, 1, 0, 0, 0))
        end = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
        return Period(f"{year:04d}-{month:02d}", start, end)


class Meter:
    """The in-memory request counters of this gateway, and their flush to the store."""

    def __init__(self, settings: Settings, meta: MetadataStore, clock: Callable[[], float]) -> None:
        self.meta = meta
        self.clock = clock
        self.interval = settings.metering_flush_seconds
        # (tenant_id, bucket, hour) -> [write, read, free, bytes_in, bytes_out]
        self._counts: dict[tuple[str, str, int], list[int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._rolled_hour = 0
        self._roll_hours = True

    def count(self, tenant_id: str, bucket: str, operation: str, status: int, bytes_in: int,
              bytes_out: int) -> None:
        """Count one answered request (the hot path: a few dictionary operations, no I/O)."""
        if not billable(status):
            return
        now = int(self.clock())
        key = (tenant_id, bucket, now - now % HOUR)
        row = self._counts.get(key)
        if row is None:
            row = self._counts[key] = [0, 0, 0, 0, 0]
        row[request_class(operation)] += 1
        row[_BYTES_IN] += bytes_in
        row[_BYTES_OUT] += bytes_out

    def pending(self) -> int:
        """Counter rows not yet in the store."""
        return len(self._counts)

    async def flush(self) -> None:
        """Add the counters to the store in one transaction. On failure they are kept (merged
        back) for the next attempt, so a store outage delays counts but does not lose them."""
        async with self._flush_lock:
            if not self._counts:
                return
            batch, self._counts = self._counts, {}
            rows = [RequestCounts(tenant_id=t, bucket=b, hour=h, write_requests=v[WRITE], read_requests=v[READ],
                                  free_requests=v[FREE], bytes_in=v[_BYTES_IN], bytes_out=v[_BYTES_OUT])
                    for (t, b, h), v in batch.items()]
            try:
                await self.meta.add_request_counts(rows)
            except BaseException:
                for key, v in batch.items():
                    row = self._counts.setdefault(key, [0, 0, 0, 0, 0])
                    for i, n in enumerate(v):
                        row[i] += n
                raise

    async def _roll(self) -> None:
        """Once per hour: move every bucket's open interval into the hourly rows."""
        now = int(self.clock())
        hour = now - now % HOUR
        if hour != self._rolled_hour:
            await self.meta.roll_byte_hours()
            self._rolled_hour = hour

    def start(self, roll: bool = True) -> None:
        """Flush the counters every ``metering_flush_seconds``; with ``roll``, also move the
        buckets' byte-hours once an hour (one process does it: a secondary worker only flushes
        its own counters, which are additive)."""
        self._roll_hours = roll
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
                if self._roll_hours:
                    await self._roll()
            except Exception:
                log.exception("metering flush failed; counters kept for the next attempt")

    async def close(self) -> None:
        """Stop the background task and flush what is left (clean shutdown loses nothing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("metering: the last flush failed; %d counter rows lost", len(self._counts))

    async def usage(self, period: Period, tenant_id: str | None = None) -> list[MeteredUsage]:
        """A period's metered usage per (tenant, bucket), counters of this gateway included."""
        await self.flush()
        return await self.meta.metered_usage(period.start, period.end, tenant_id)
