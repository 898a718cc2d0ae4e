"""The BlobStore conformance suite: every backend passes it unmodified (see conftest.py)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest

from coffre.blob.base import BlobNotFound, BlobStore, InvalidBlobId, new_blob_id
from coffre.blob.local import LocalBlobStore


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        await asyncio.sleep(0)
        yield p


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


async def everything(store: BlobStore) -> list[str]:
    return [b async for b in store.list_ids(time.time() + 3600)]


def leftovers(store: BlobStore, root: Path) -> list[str]:
    """Files of a local store that are not durable blobs (in-progress writes)."""
    if not isinstance(store, LocalBlobStore):
        return []
    return os.listdir(store.tmp)


async def test_put_get_roundtrip(blobs: BlobStore) -> None:
    await blobs.ping()
    data = payload(300_000)
    bid = new_blob_id()
    assert await blobs.put(bid, chunks([data[:1], data[1:70_000], b"", data[70_000:]])) == len(data)
    assert await blobs.size(bid) == len(data)
    assert await collect(blobs.get(bid)) == data
    assert await blobs.read(bid, 0, len(data)) == data


async def test_empty_blob(blobs: BlobStore) -> None:
    bid = new_blob_id()
    assert await blobs.put(bid, chunks([])) == 0
    assert await blobs.size(bid) == 0
    assert await collect(blobs.get(bid)) == b""
    assert await blobs.read(bid, 0, 10) == b""


@pytest.mark.parametrize("offset,length", [(0, 1), (0, None), (5, 10), (99_999, 1), (99_999, None),
                                           (100_000, None), (100_000, 5), (50_000, 1_000_000), (70_000, 30_000)])
async def test_ranges(blobs: BlobStore, offset: int, length: int | None) -> None:
    data = payload(100_000, 7)
    bid = new_blob_id()
    await blobs.put(bid, chunks([data]))
    end = len(data) if length is None else offset + length
    assert await collect(blobs.get(bid, offset, length)) == data[offset:end]
    assert await blobs.read(bid, offset, end - offset if length is not None else len(data)) == data[offset:end]


async def test_get_chunk_size(blobs: BlobStore) -> None:
    data = payload(10_000, 3)
    bid = new_blob_id()
    await blobs.put(bid, chunks([data]))
    pieces = [c async for c in blobs.get(bid, 10, 9_000, chunk_size=1000)]
    assert all(0 < len(p) <= 1000 for p in pieces)
    assert b"".join(pieces) == data[10:9010]


async def test_missing_blob(blobs: BlobStore) -> None:
    bid = new_blob_id()
    assert await blobs.size(bid) is None
    with pytest.raises(BlobNotFound):
        await collect(blobs.get(bid))
    with pytest.raises(BlobNotFound):
        await blobs.read(bid, 0, 1)
    await blobs.delete(bid)  # deleting a missing blob is not an error


async def test_delete_is_idempotent(blobs: BlobStore) -> None:
    bid, other = new_blob_id(), new_blob_id()
    await blobs.put(bid, chunks([b"abc"]))
    await blobs.put(other, chunks([b"def"]))
    await blobs.delete(bid)
    await blobs.delete(bid)
    assert await blobs.size(bid) is None
    with pytest.raises(BlobNotFound):
        await collect(blobs.get(bid))
    assert await collect(blobs.get(other)) == b"def"


async def test_list_ids_older_than(blobs: BlobStore) -> None:
    old = new_blob_id()
    await blobs.put(old, chunks([b"x"]))
    await asyncio.sleep(0.05)
    cut = time.time()
    await asyncio.sleep(0.05)
    young = new_blob_id()
    await blobs.put(young, chunks([b"y"]))
    assert [b async for b in blobs.list_ids(cut)] == [old]
    assert sorted(await everything(blobs)) == sorted([old, young])
    assert [b async for b in blobs.list_ids(0)] == []


class Boom(Exception):
    pass


async def failing(parts: list[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        yield p
        await asyncio.sleep(0)
    raise Boom()


@pytest.mark.parametrize("before", [0, 1, 3])
async def test_failed_source_leaves_nothing(blobs: BlobStore, blob_dir: Path, before: int) -> None:
    bid = new_blob_id()
    with pytest.raises(Boom):
        await blobs.put(bid, failing([payload(70_000, i) for i in range(before)]))
    assert await blobs.size(bid) is None
    with pytest.raises(BlobNotFound):
        await collect(blobs.get(bid))
    assert await everything(blobs) == []
    assert leftovers(blobs, blob_dir) == []
    # The id is not burnt: a later put of it succeeds.
    await blobs.put(bid, chunks([b"ok"]))
    assert await collect(blobs.get(bid)) == b"ok"


async def test_cancelled_put_leaves_nothing(blobs: BlobStore, blob_dir: Path) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for i in range(1000):
            yield payload(200_000, i)
            started.set()
            await asyncio.sleep(0)

    for delay in (0, 0.001, 0.01, 0.05):
        bid = new_blob_id()
        task = asyncio.ensure_future(blobs.put(bid, slow()))
        await started.wait()
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # A worker may still be finishing its write; cleanup follows it.
        for _ in range(200):
            if await blobs.size(bid) is None and not leftovers(blobs, blob_dir):
                break
            await asyncio.sleep(0.01)
        assert await blobs.size(bid) is None
        assert leftovers(blobs, blob_dir) == []
        started.clear()
    assert await everything(blobs) == []


@pytest.mark.parametrize("bad", ["", "../x", "../../etc/passwd", "A" * 32, "a" * 31, "a" * 33, "g" * 32,
                                 "/" + "a" * 31, "a" * 30 + "/.", "aa/bb/" + "c" * 26, "a" * 31 + "\n", "a" * 31 + "\x00"])
async def test_invalid_blob_ids(blobs: BlobStore, bad: str) -> None:
    with pytest.raises(InvalidBlobId):
        await blobs.put(bad, chunks([b"x"]))
    with pytest.raises(InvalidBlobId):
        await collect(blobs.get(bad))
    with pytest.raises(InvalidBlobId):
        await blobs.read(bad, 0, 1)
    with pytest.raises(InvalidBlobId):
        await blobs.size(bad)
    with pytest.raises(InvalidBlobId):
        await blobs.delete(bad)
    assert await everything(blobs) == []


async def test_concurrent_puts(blobs: BlobStore) -> None:
    ids = [new_blob_id() for _ in range(24)]
    datas = [payload(1000 * i + 1, i) for i in range(len(ids))]

    async def one(bid: str, data: bytes) -> int:
        return await blobs.put(bid, chunks([data[: len(data) // 2], data[len(data) // 2:]]))

    sizes = await asyncio.gather(*(one(b, d) for b, d in zip(ids, datas)))
    assert sizes == [len(d) for d in datas]
    got = await asyncio.gather(*(collect(blobs.get(b)) for b in ids))
    assert got == datas
    assert sorted(await everything(blobs)) == sorted(ids)


async def test_concurrent_reads_of_one_blob(blobs: BlobStore) -> None:
    data = payload(500_000, 9)
    bid = new_blob_id()
    await blobs.put(bid, chunks([data]))
    ranges = [(i * 37_000, 40_000) for i in range(12)]
    got = await asyncio.gather(*(collect(blobs.get(bid, o, n, chunk_size=8192)) for o, n in ranges))
    assert got == [data[o:o + n] for o, n in ranges]


async def test_blobs_seen_by_another_store(blobs: BlobStore, blob_factory: Callable[[], BlobStore]) -> None:
    # What one store acknowledged, a new store over the same place (a restart, another
    # gateway) reads back.
    bid = new_blob_id()
    await blobs.put(bid, chunks([b"durable"]))
    again = blob_factory()
    await again.open()
    try:
        assert await again.size(bid) == 7
        assert await collect(again.get(bid)) == b"durable"
    finally:
        await again.close()


async def test_cancelled_puts_never_touch_other_blobs(blobs: BlobStore, blob_dir: Path) -> None:
    # A put cancelled while a worker still writes must not give its descriptor back early:
    # the next file opened would get the same number and receive the worker's bytes.
    big = payload(4 << 20, 1)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield big

    kept: dict[str, bytes] = {}
    for i in range(30):
        bid = new_blob_id()
        task = asyncio.ensure_future(blobs.put(bid, source()))
        for _ in range(i % 6):
            await asyncio.sleep(0)
        await asyncio.sleep(0.0005 * (i % 5))
        task.cancel()
        other = new_blob_id()
        data = payload(100_000, i)
        await asyncio.gather(blobs.put(other, chunks([data[:50_000], data[50_000:]])), return_exceptions=True)
        kept[other] = data
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            kept[bid] = big * 3
    for _ in range(300):
        if not leftovers(blobs, blob_dir) and sorted(await everything(blobs)) == sorted(kept):
            break
        await asyncio.sleep(0.01)
    for bid, data in kept.items():
        assert await blobs.size(bid) == len(data)
        assert await collect(blobs.get(bid)) == data
    assert sorted(await everything(blobs)) == sorted(kept)
    assert leftovers(blobs, blob_dir) == []


# -- size_hint: a backend may store blobs announced small differently (the local store keeps
# them as rows of small.db); through the interface nothing may differ.

SMALL = 4096


def small_commits(store: BlobStore) -> int | None:
    """COMMITs of the local store's small-blob writer, where there is one."""
    small = getattr(store, "small", None)
    return None if small is None else int(small.commits)


async def test_small_blob_roundtrip(blobs: BlobStore, blob_dir: Path) -> None:
    data = payload(SMALL, 5)
    bid = new_blob_id()
    assert await blobs.put(bid, chunks([data[:100], data[100:]]), size_hint=len(data)) == len(data)
    if isinstance(blobs, LocalBlobStore):  # a row, not a file
        assert not os.path.exists(blobs._path(bid))
    assert await blobs.size(bid) == len(data)
    assert await collect(blobs.get(bid)) == data
    for off, n in [(0, 1), (0, SMALL), (10, 100), (SMALL - 1, 1), (SMALL - 5, 100), (SMALL, 5), (SMALL + 10, 5)]:
        assert await collect(blobs.get(bid, off, n)) == data[off:off + n]
        assert await blobs.read(bid, off, n) == data[off:off + n]
    assert await collect(blobs.get(bid, 100)) == data[100:]
    pieces = [c async for c in blobs.get(bid, 10, 3000, chunk_size=1000)]
    assert [len(p) for p in pieces] == [1000, 1000, 1000]
    assert b"".join(pieces) == data[10:3010]
    # get_mapped: runs of chunk_size at their offsets, the last one short, and a span past
    # the end of the blob handed over short (the caller's length check sees it).
    runs = [r async for r in blobs.get_mapped(bid, 96, SMALL, 1000, lambda pos, d: (pos, bytes(d)))]
    assert [pos for pos, _ in runs] == [96, 1096, 2096, 3096]
    assert [len(d) for _, d in runs] == [1000, 1000, 1000, SMALL - 3096]
    assert b"".join(d for _, d in runs) == data[96:]
    assert sorted(await everything(blobs)) == [bid]
    await blobs.delete(bid)
    await blobs.delete(bid)
    assert await blobs.size(bid) is None
    with pytest.raises(BlobNotFound):
        await collect(blobs.get(bid))
    with pytest.raises(BlobNotFound):
        await blobs.read(bid, 0, 1)
    with pytest.raises(BlobNotFound):
        _ = [r async for r in blobs.get_mapped(bid, 0, 10, 10, lambda pos, d: d)]
    assert await everything(blobs) == []


async def test_small_empty_blob(blobs: BlobStore) -> None:
    bid = new_blob_id()
    assert await blobs.put(bid, chunks([]), size_hint=0) == 0
    assert await blobs.size(bid) == 0
    assert await collect(blobs.get(bid)) == b""
    assert await blobs.read(bid, 0, 10) == b""
    assert [r async for r in blobs.get_mapped(bid, 0, 40, 40, lambda pos, d: bytes(d))] == []
    assert await everything(blobs) == [bid]


async def test_small_and_file_blobs_side_by_side(blobs: BlobStore) -> None:
    small, large, unhinted = new_blob_id(), new_blob_id(), new_blob_id()
    d_small, d_large, d_unhinted = payload(1000, 1), payload(200_000, 2), payload(1000, 3)
    await blobs.put(small, chunks([d_small]), size_hint=len(d_small))
    await blobs.put(large, chunks([d_large]), size_hint=len(d_large))
    await blobs.put(unhinted, chunks([d_unhinted]))
    for bid, data in ((small, d_small), (large, d_large), (unhinted, d_unhinted)):
        assert await blobs.size(bid) == len(data)
        assert await collect(blobs.get(bid)) == data
        assert await blobs.read(bid, 0, 500) == data[:500]
        assert await collect(blobs.get(bid, 900, 200)) == data[900:1100]
    assert sorted(await everything(blobs)) == sorted([small, large, unhinted])
    for bid in (small, large, unhinted):
        await blobs.delete(bid)
    assert await everything(blobs) == []


async def test_small_list_ids_older_than(blobs: BlobStore) -> None:
    old = new_blob_id()
    await blobs.put(old, chunks([b"x"]), size_hint=1)
    await asyncio.sleep(0.05)
    cut = time.time()
    await asyncio.sleep(0.05)
    young = new_blob_id()
    await blobs.put(young, chunks([b"y"]), size_hint=1)
    assert [b async for b in blobs.list_ids(cut)] == [old]
    assert sorted(await everything(blobs)) == sorted([old, young])


@pytest.mark.parametrize("real", [100_000, 3 << 20])
async def test_wrong_size_hint_still_stores_the_blob(blobs: BlobStore, real: int) -> None:
    # A hint below the truth costs the layout, never the blob: as bytes (seen before the
    # write) and as functions (whose bytes are only known once made, and made once).
    data = payload(real, 4)
    for source in ([data[:1000], data[1000:]], [lambda: data[:1000], lambda: data[1000:]]):
        bid = new_blob_id()
        calls = 0

        def once(piece: object) -> object:
            if not callable(piece):
                return piece

            def make() -> bytes:
                nonlocal calls
                calls += 1
                return piece()  # type: ignore[no-any-return]

            return make

        assert await blobs.put(bid, chunks([once(p) for p in source]), size_hint=10) == real  # type: ignore[misc]
        assert calls == (2 if callable(source[0]) else 0)
        assert await blobs.size(bid) == real
        assert await collect(blobs.get(bid)) == data
        assert await blobs.read(bid, 0, 10) == data[:10]
        await blobs.delete(bid)
    assert await everything(blobs) == []


async def test_many_concurrent_small_puts(blobs: BlobStore) -> None:
    ids = [new_blob_id() for _ in range(64)]
    datas = [payload(100 * i + 1, i) for i in range(len(ids))]
    before = small_commits(blobs)

    async def one(bid: str, data: bytes) -> int:
        # A function, as BlobIO hands over: made on the writer thread.
        return await blobs.put(bid, chunks([lambda: data]), size_hint=len(data))  # type: ignore[list-item]

    sizes = await asyncio.gather(*(one(b, d) for b, d in zip(ids, datas)))
    assert sizes == [len(d) for d in datas]
    got = await asyncio.gather(*(blobs.read(b, 0, len(d)) for b, d in zip(ids, datas)))
    assert got == datas
    assert sorted(await everything(blobs)) == sorted(ids)
    after = small_commits(blobs)
    if before is not None and after is not None:
        # Puts queued while the writer committed shared the next COMMIT.
        assert 1 <= after - before < len(ids) // 2


async def test_small_put_whose_source_fails_leaves_nothing(blobs: BlobStore, blob_dir: Path) -> None:
    bid, good = new_blob_id(), new_blob_id()

    def boom() -> bytes:
        raise Boom()

    # Raising while the pieces are gathered, and while they are made on the writer thread
    # next to a put that succeeds in the same batch.
    with pytest.raises(Boom):
        await blobs.put(bid, failing([b"abc"]), size_hint=3)
    results = await asyncio.gather(blobs.put(bid, chunks([b"abc", boom]), size_hint=10),  # type: ignore[list-item]
                                   blobs.put(good, chunks([b"good"]), size_hint=4), return_exceptions=True)
    assert isinstance(results[0], Boom) and results[1] == 4
    assert await blobs.size(bid) is None
    with pytest.raises(BlobNotFound):
        await blobs.read(bid, 0, 3)
    assert await everything(blobs) == [good]
    assert leftovers(blobs, blob_dir) == []
    await blobs.put(bid, chunks([b"ok"]), size_hint=2)  # the id is not burnt
    assert await blobs.read(bid, 0, 2) == b"ok"


async def test_cancelled_small_put_leaves_nothing(blobs: BlobStore, blob_dir: Path) -> None:
    kept: dict[str, bytes] = {}
    for delay in (0, 0.001, 0.005, 0.02, 0.05):
        bid, other = new_blob_id(), new_blob_id()

        def slow() -> bytes:
            time.sleep(0.02)  # made on the writer thread: the caller is cancelled meanwhile
            return b"slow"

        task = asyncio.ensure_future(blobs.put(bid, chunks([slow]), size_hint=4))  # type: ignore[list-item]
        neighbour = asyncio.ensure_future(blobs.put(other, chunks([b"neighbour"]), size_hint=9))
        await asyncio.sleep(delay)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            kept[bid] = b"slow"
        assert await neighbour == 9
        kept[other] = b"neighbour"
        for _ in range(200):
            if sorted(await everything(blobs)) == sorted(kept):
                break
            await asyncio.sleep(0.01)
        if bid not in kept:
            assert await blobs.size(bid) is None
        assert sorted(await everything(blobs)) == sorted(kept)
        assert leftovers(blobs, blob_dir) == []
    for bid, data in kept.items():
        assert await blobs.read(bid, 0, 100) == data


async def test_small_blobs_seen_by_another_store(blobs: BlobStore, blob_factory: Callable[[], BlobStore]) -> None:
    bid = new_blob_id()
    await blobs.put(bid, chunks([b"durable"]), size_hint=7)
    again = blob_factory()
    await again.open()
    try:
        assert await again.size(bid) == 7
        assert await collect(again.get(bid)) == b"durable"
    finally:
        await again.close()


async def test_small_blobs_outlive_the_limit(blobs: BlobStore, blob_dir: Path) -> None:
    # With small blobs turned off (limit 0), those already stored stay readable, listed and
    # deletable; new blobs are files.
    if not isinstance(blobs, LocalBlobStore):
        pytest.skip("local store setting")
    bid = new_blob_id()
    await blobs.put(bid, chunks([b"row"]), size_hint=3)
    off = LocalBlobStore(blobs.root, small_max_bytes=0)
    await off.open()
    try:
        assert await off.size(bid) == 3
        assert await off.read(bid, 0, 3) == b"row"
        assert await collect(off.get(bid, 1, 1)) == b"o"
        assert [r async for r in off.get_mapped(bid, 0, 3, 2, lambda pos, d: bytes(d))] == [b"ro", b"w"]
        new = new_blob_id()
        await off.put(new, chunks([b"file"]), size_hint=4)
        assert os.path.exists(off._path(new))
        assert sorted(await everything(off)) == sorted([bid, new])
        await off.delete(bid)
        assert await off.size(bid) is None
    finally:
        await off.close()
