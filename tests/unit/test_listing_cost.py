"""A listing page costs what the page holds, not what the bucket holds (SQLite backend).

Counts SQLite virtual-machine steps (``set_progress_handler`` called every step)
spent by ``list_objects`` for a 1000-entry page, in a bucket of 1,000 objects and
in one of 50,000 objects (with many delete markers and old versions too); with a
delimiter, a 50,000-key "directory" must roll up into one common prefix without
being walked.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coffre.meta.records import BucketRecord, ObjectRecord, TenantRecord
from coffre.meta.sqlite import SQLiteMetadataStore

BIG = 50_000
SMALL = 1_000


def record(bucket: str, key: str, version: str = "null", marker: bool = False) -> ObjectRecord:
    return ObjectRecord(bucket=bucket, key=key, version_id=version, size=1, etag='"e"', last_modified=1.0,
                        tenant_id="111111111111", owner="c" * 64, blob_id=None if marker else "0" * 32,
                        dek=None if marker else b"k", is_delete_marker=marker)


def keys(n: int) -> list[str]:
    # "big/" holds nearly all of them; a few siblings sort before and after it.
    return ([f"a{i}" for i in range(5)] + [f"big/{i:06d}" for i in range(n)] + [f"big0{i}" for i in range(5)]
            + [f"c/{i}/x" for i in range(1500)] + [f"d{i:04d}" for i in range(1500)])


async def fill(store: SQLiteMetadataStore, bucket: str, n: int) -> None:
    await store.create_bucket(BucketRecord(name=bucket, tenant_id="111111111111", region="us-east-1",
                                           created_at=1.0))
    rows = [record(bucket, k) for k in keys(n)]
    # Noise listings must step over for free: delete markers and superseded versions.
    rows += [record(bucket, f"big/{i:06d}m", "v1") for i in range(0, n, 2)]
    rows += [record(bucket, f"big/{i:06d}m", "v2", marker=True) for i in range(0, n, 2)]
    rows += [record(bucket, f"az{i:06d}", "v1", marker=True) for i in range(n // 2)]  # a run of them

    # One transaction through the store's own row writer: tens of thousands of
    # separately committed (fsync'd) puts would take minutes.
    def tx(c: sqlite3.Connection) -> None:
        for r in rows:
            store._insert_object(c, r, ())

    await store._write(tx)


class Steps:
    """Counts VM steps on every connection of a store."""

    def __init__(self, store: SQLiteMetadataStore) -> None:
        self.n = 0
        for conn in store._all:
            conn.set_progress_handler(self._tick, 1)

    def _tick(self) -> int:
        self.n += 1
        return 0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("cost") / "meta.sqlite3"
    s = SQLiteMetadataStore(str(path), readers=1)
    loop = asyncio.new_event_loop()

    async def setup() -> None:
        await s.open()
        await s.create_tenant(TenantRecord(id="111111111111", name="t", status="active", created_at=1.0,
                                           wrapped_key=b"k", canonical_id="c" * 64))
        await fill(s, "small", SMALL)
        await fill(s, "big", BIG)
        await s.list_objects("small", max_keys=1)  # the reader connection exists from now on

    loop.run_until_complete(setup())
    yield s, loop
    loop.run_until_complete(s.close())
    loop.close()


def cost(store: SQLiteMetadataStore, loop: asyncio.AbstractEventLoop,
         call: Callable[[], object]) -> tuple[int, object]:
    steps = Steps(store)
    result = loop.run_until_complete(call())  # type: ignore[arg-type]
    return steps.n, result


CASES = {
    "plain": {},
    "prefix": {"prefix": "big/"},
    "delimiter": {"delimiter": "/"},
    "prefix+delimiter": {"prefix": "c/", "delimiter": "/"},
    "after": {"start_after": "big/000500"},
    "after-prefix": {"start_after": "big/", "delimiter": "/"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_page_cost_does_not_grow_with_bucket(store, case: str) -> None:
    s, loop = store
    kwargs = CASES[case]
    small_steps, small_page = cost(s, loop, lambda: s.list_objects("small", max_keys=1000, **kwargs))
    big_steps, big_page = cost(s, loop, lambda: s.list_objects("big", max_keys=1000, **kwargs))
    assert big_page.is_truncated  # type: ignore[attr-defined]
    n = len(big_page.objects) + len(big_page.common_prefixes)  # type: ignore[attr-defined]
    assert n == 1000
    # Fifty times the objects may cost a deeper B-tree (a few steps per seek), nothing more.
    assert big_steps < 2 * small_steps + 10_000, (case, small_steps, big_steps)
    assert big_steps < 200 * 1000, (case, big_steps)  # a few hundred steps per entry at most


def test_delimiter_rolls_up_a_big_directory_without_walking_it(store) -> None:
    s, loop = store
    steps, page = cost(s, loop, lambda: s.list_objects("big", delimiter="/", max_keys=12))
    assert page.common_prefixes == ["big/", "c/"]  # type: ignore[attr-defined]
    assert [o.key for o in page.objects][:5] == [f"a{i}" for i in range(5)]  # type: ignore[attr-defined]
    assert steps < 5_000, steps  # walking big/ would be over 50,000 rows, each many steps


def test_timing_sanity(store) -> None:
    # Not a benchmark: only a guard against a page that walks the bucket.
    s, loop = store
    t = time.perf_counter()
    loop.run_until_complete(s.list_objects("big", delimiter="/", max_keys=1000))
    assert time.perf_counter() - t < 5
