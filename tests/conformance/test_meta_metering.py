"""Metering in every metadata backend: byte-seconds integrated in the committing transaction, split
into UTC hours on the store's clock, request counters added (never replaced), history kept after a
bucket is deleted, and the open interval counted at read time."""

from __future__ import annotations

from coffre.meta.base import MetadataStore
from coffre.meta.records import MeteredUsage, RequestCounts
from tests.conformance.test_meta import new_bucket, obj

T0 = 1793491200  # 2026-11-01T00:00:00Z
H = 3600


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_byte_seconds_split_into_hours(meta: MetadataStore) -> None:
    clock = Clock(T0)
    meta.clock = clock
    b = await new_bucket(meta)
    clock.t = T0 + 600
    await meta.put_object(obj(b, "a", size=1000))
    clock.t = T0 + H + 1200  # 01:20: a second object
    await meta.put_object(obj(b, "b", size=500))
    clock.t = T0 + 2 * H + 1800  # 02:30: replace a, 1000 -> 10
    await meta.put_object(obj(b, "a", size=10))
    clock.t = T0 + 3 * H  # 03:00

    whole = 1000 * (H + 600) + 1500 * (H + 600) + 510 * 1800
    assert await meta.metered_usage(T0, T0 + 720 * H) == [MeteredUsage("111111111111", b, byte_seconds=whole)]
    # A span of hours counts only those hours, the open interval clipped to it.
    assert (await meta.metered_usage(T0 + H, T0 + 2 * H))[0].byte_seconds == 1000 * 1200 + 1500 * 2400
    assert (await meta.metered_usage(T0 + 2 * H, T0 + 3 * H))[0].byte_seconds == 1500 * 1800 + 510 * 1800
    assert await meta.metered_usage(T0 - H, T0) == []
    assert await meta.metered_usage(T0, T0 + 720 * H, "999999999999") == []

    # The hourly roll moves the open interval into rows and changes no total.
    clock.t = T0 + 5 * H + 7
    before = await meta.metered_usage(T0, T0 + 720 * H)
    await meta.roll_byte_hours()
    assert await meta.metered_usage(T0, T0 + 720 * H) == before
    assert before[0].byte_seconds == whole + 510 * (2 * H + 7)
    clock.t = T0 + 3 * H  # the clock stepped back: nothing negative, nothing lost
    assert (await meta.metered_usage(T0, T0 + 720 * H))[0].byte_seconds == whole + 510 * (2 * H + 7)


async def test_request_counts_add_up_and_history_outlives_the_bucket(meta: MetadataStore) -> None:
    clock = Clock(T0 + 10)
    meta.clock = clock
    b = await new_bucket(meta, "counted")
    await meta.put_object(obj(b, "k", size=100))
    rows = [RequestCounts("111111111111", b, T0, write_requests=2, read_requests=3, free_requests=1,
                          bytes_in=100, bytes_out=50),
            RequestCounts("111111111111", "", T0 + H, write_requests=1)]
    await meta.add_request_counts(rows)
    await meta.add_request_counts(rows[:1])  # a second gateway's flush of the same hour adds to it
    await meta.add_request_counts([])
    clock.t = T0 + 110
    await meta.delete_object(b, "k", "null")
    await meta.delete_bucket(b)
    clock.t = T0 + 2 * H
    got = await meta.metered_usage(T0, T0 + 720 * H)
    assert got == [MeteredUsage("111111111111", "", write_requests=1),
                   MeteredUsage("111111111111", b, byte_seconds=100 * 100, write_requests=4, read_requests=6,
                                free_requests=2, bytes_in=200, bytes_out=100)]
