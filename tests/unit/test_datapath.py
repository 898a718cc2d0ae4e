"""The batched data path: one buffer per batch each way, same bytes as the segment format says."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coffre.blob.local import LocalBlobStore
from coffre.crypto.segments import HEADER_SIZE, TAG_SIZE, IntegrityError, SegmentDecryptor, SegmentEncryptor

KEY = bytes(range(32))
BLOB = "ab" * 16
SEG = 1024


def reference(data: bytes, seg: int = SEG) -> bytes:
    enc = SegmentEncryptor(KEY, BLOB, seg)
    return b"".join(enc.update(data) + enc.finish())


def sealed(data: bytes, cuts: list[int], batches: list[int], seg: int = SEG) -> bytes:
    """Encrypt with seal(): body pieces cut at ``cuts``, grouped ``batches`` pieces at a time."""
    pieces = [memoryview(data)[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    enc = SegmentEncryptor(KEY, BLOB, seg)
    out = []
    i = 0
    for n in batches:
        out.append(bytes(enc.seal(pieces[i:i + n], final=False)))  # valid until the next call
        i += n
    out.append(bytes(enc.seal(pieces[i:], final=True)))
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 5 * SEG + 17])
def test_seal_gives_the_same_ciphertext_however_the_batches_fall(size: int) -> None:
    rnd = random.Random(size)
    data = rnd.randbytes(size)
    want = reference(data)
    assert sealed(data, [], []) == want
    for _ in range(20):
        cuts = sorted(rnd.sample(range(1, size), min(size - 1, rnd.randint(0, 6)))) if size > 1 else []
        npieces = len(cuts) + 1
        batches = []
        left = npieces
        while left > 1 and rnd.random() < 0.7:
            n = rnd.randint(0, left - 1)
            batches.append(n)
            left -= n
        assert sealed(data, cuts, batches) == want


def test_decrypt_into_one_buffer_round_trips_and_checks_everything() -> None:
    data = os.urandom(4 * SEG + 100)
    blob = reference(data)
    dec = SegmentDecryptor(KEY, BLOB, len(data), SEG)
    plain = dec.decrypt_span(0, dec.count - 1, blob[HEADER_SIZE:])
    assert plain == data
    with pytest.raises(IntegrityError):  # cut inside the final tag
        dec.decrypt(0, blob[HEADER_SIZE:-(TAG_SIZE - 3)])
    with pytest.raises(IntegrityError):  # a segment and its tag swapped for another's
        body = bytearray(blob[HEADER_SIZE:])
        body[0] ^= 1
        dec.decrypt(0, bytes(body))


def run(coro_fn) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(coro_fn())


def test_get_mapped_hands_runs_of_exactly_the_chunk_size(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalBlobStore(str(tmp_path))
        await store.open()
        data = os.urandom(3 * (1 << 20) + 5)

        async def body() -> AsyncIterator[bytes]:
            yield data

        await store.put(BLOB, body())
        seen: list[tuple[int, int]] = []
        async for pos, n in store.get_mapped(BLOB, 7, len(data) - 7, 1 << 20, lambda p, d: (p, len(d))):
            seen.append((pos, n))
        assert seen == [(7, 1 << 20), (7 + (1 << 20), 1 << 20), (7 + (2 << 20), (1 << 20) - 2)]
        # Past the end of the file the runs come short, never padded.
        out = [n async for _, n in store.get_mapped(BLOB, 0, len(data) + 100, 1 << 20, lambda p, d: (p, len(d)))]
        assert out[-1] == len(data) - 3 * (1 << 20)
        await store.close()

    run(main)


def test_a_put_whose_pieces_are_functions_runs_them_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalBlobStore(str(tmp_path))
        await store.open()
        calls: list[int] = []

        def piece(i: int):  # type: ignore[no-untyped-def]
            def make() -> bytes:
                calls.append(i)
                return bytes([i]) * 1000
            return make

        async def body():  # type: ignore[no-untyped-def]
            for i in range(10):
                await asyncio.sleep(0)
                yield piece(i)

        assert await store.put(BLOB, body()) == 10_000
        assert calls == list(range(10))
        got = b"".join([c async for c in store.get(BLOB)])
        assert got == b"".join(bytes([i]) * 1000 for i in range(10))
        await store.close()

    run(main)
