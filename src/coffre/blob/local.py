"""Local-directory blob store: the embedded default.

Layout under ``root``: ``tmp/`` for blobs being written, ``ab/cd/<id>`` for
durable blobs (two levels of fan-out keep directories small). A blob is
written to ``tmp/``, fsync'd, renamed into place, and its directory fsync'd:
only then does ``put`` return, so the rename is the commit point of the blob.
Paths are built from server-generated hex ids only.

Small blobs (their size known up front and at most ``small_max_bytes``) are rows of
``small.db`` instead (coffre.blob.small): no file, and one group-committed fsync shared by
the puts that arrive together. Every read finds a blob wherever it is.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from coffre.blob.base import BlobNotFound, BlobStore, Buffer, Piece, check_blob_id
from coffre.blob.small import SmallBlobDB, TooLarge
from coffre.groupcommit import CommitThread

# Reads this small are served inline: a pread from the page cache (and, in get_mapped,
# decrypting it) costs less than a hop to a worker thread and back.
INLINE_READ = 128 * 1024
# Blobs of at most this many bytes (as stored), announced by put's size_hint, go to small.db.
SMALL_MAX_BYTES = 64 * 1024
# A put announced small whose source yields more pieces than this goes to a file after all:
# the pieces are held until the writer thread runs them, and a small blob makes one or two.
_SMALL_PIECES = 64

T = TypeVar("T")


def fsync_dir(path: str) -> None:
    """Make a directory's entries durable (after a create, rename or unlink in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore(BlobStore):
    def __init__(self, root: str, threads: int = 8, small_max_bytes: int = SMALL_MAX_BYTES,
                 commit_thread: CommitThread | None = None) -> None:
        self.root = os.path.abspath(root)
        self.commit_thread = commit_thread  # the small-blob rows' writer thread, if shared
        self.tmp = os.path.join(self.root, "tmp")
        self.small_max = max(0, small_max_bytes)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="coffre-blob")
        # Opened by open() when small blobs are enabled, or when an earlier run left some
        # (they stay readable and deletable with the limit set to 0).
        self.small: SmallBlobDB | None = None

    def _path(self, blob_id: str) -> str:
        check_blob_id(blob_id)
        return os.path.join(self.root, blob_id[:2], blob_id[2:4], blob_id)

    async def open(self) -> None:
        os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        # Leftovers in tmp/ are blobs whose write never completed: never visible, safe to drop.
        for name in os.listdir(self.tmp):
            try:
                os.unlink(os.path.join(self.tmp, name))
            except OSError:
                pass
        path = os.path.join(self.root, "small.db")
        if self.small is None and (self.small_max > 0 or os.path.exists(path)):
            small = SmallBlobDB(path, self._pool, self.commit_thread)
            await asyncio.get_running_loop().run_in_executor(self._pool, small.open)
            self.small = small

    async def close(self) -> None:
        if self.small is not None:
            await self.small.close()
        self._pool.shutdown(wait=True)

    async def ping(self) -> None:
        if not os.path.isdir(self.tmp) or not os.access(self.tmp, os.W_OK):
            raise OSError("blob directory is not writable")
        if self.small is not None:
            await self.small.ping()

    def _small_first(self, offset: int, length: int | None) -> bool:
        """Whether a span is small enough that the blob is likely a row: look there first."""
        return self.small is not None and length is not None and offset + length <= self.small_max

    async def _small_span(self, blob_id: str, offset: int, length: int | None) -> bytes | None:
        """The span of a small blob, or None when no row holds the blob."""
        if self.small is None:
            return None
        found = await self.small.span(blob_id, offset, length)
        return None if found is None else found[1]

    async def _open(self, blob_id: str, offset: int, length: int | None) -> tuple[int, bytes | None]:
        """Where a blob is: its span's bytes when a row holds it (fd -1), else an open descriptor
        of its file (bytes None, the caller closes it). Looks first where the span's size says
        the blob most likely is; raises BlobNotFound when it is in neither place."""
        path = self._path(blob_id)  # refuses an id this server did not make, before any lookup
        small_first = self._small_first(offset, length)
        data = await self._small_span(blob_id, offset, length) if small_first else None
        if data is not None:
            return -1, data
        try:
            return os.open(path, os.O_RDONLY), None
        except FileNotFoundError as e:
            data = None if small_first else await self._small_span(blob_id, offset, length)
            if data is None:
                raise BlobNotFound(blob_id) from e
            return -1, data

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _commit(self, fd: int, tmp: str, final: str, piece: Piece | None) -> int:
        """Write the last piece, then make the blob durable under its final name: one hop.

        The rename comes before the fsyncs. Nothing references the blob before ``put``
        returns, and ``put`` returns only after the file and its directory are fsync'd, so
        a crash in between leaves at most an unreferenced file (collected as an orphan),
        never a referenced blob that is not durable. In this order the file's fsync commits
        the rename in the same journal transaction, and the directory's fsync, still made
        because POSIX requires it, mostly finds nothing left to write.
        """
        n = _write_piece(fd, piece) if piece is not None else 0
        d = os.path.dirname(final)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            os.makedirs(d, mode=0o700, exist_ok=True)
            fsync_dir(os.path.dirname(d))
            fsync_dir(self.root)
            os.replace(tmp, final)
        os.fsync(fd)
        fsync_dir(d)
        return n

    @staticmethod
    def _discard(fd: int, tmp: str, final: str | None) -> None:
        """Undo a put that did not complete: no file of it stays, visible or not."""
        try:
            os.close(fd)
        except OSError:
            pass
        for path in (tmp, final):
            if path is not None:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    async def put(self, blob_id: str, chunks: AsyncIterable[Piece], size_hint: int | None = None) -> int:
        check_blob_id(blob_id)
        if self.small is None or self.small_max == 0 or size_hint is None or size_hint > self.small_max:
            return await self._put_file(blob_id, chunks)
        # Announced small: gather the pieces (not yet made: they may be functions that
        # encrypt) and hand them to the writer thread, which makes, inserts and commits them
        # with whatever else is queued. If the source fails, nothing was queued.
        it = aiter(chunks)
        pieces: list[Piece] = []
        known = 0
        while True:
            try:
                piece = await anext(it)
            except StopAsyncIteration:
                break
            pieces.append(piece)
            known += 0 if callable(piece) else len(piece)
            if known > self.small_max or len(pieces) > _SMALL_PIECES:
                # The hint was wrong: a file after all, with what was gathered and the rest.
                return await self._put_file(blob_id, _chain(pieces, it))
        try:
            return await self.small.put(blob_id, pieces, self.small_max)
        except TooLarge as e:
            # The pieces made more than the limit (the hint was wrong): nothing was inserted;
            # the bytes already made (and hashed, encrypted) are written as a file.
            return await self._put_file(blob_id, _chain([e.data], None))

    async def _put_file(self, blob_id: str, chunks: AsyncIterable[Piece]) -> int:
        final = self._path(blob_id)
        tmp = os.path.join(self.tmp, blob_id)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        loop = asyncio.get_running_loop()
        # The worker call currently using fd. Awaited through shield(): when the caller is
        # cancelled (a client hanging up) the worker still runs, and fd must stay open until
        # it is done, or a reused descriptor number could send its bytes into another file.
        inflight: asyncio.Future[int] | None = None
        committing = False
        done = False
        size = 0
        try:
            pending: Piece | None = None
            async for nxt in chunks:
                if pending is not None:
                    if inflight is not None:
                        size += await asyncio.shield(inflight)
                    # Not awaited here: the worker encrypts and writes this piece while the
                    # caller gathers the next one (at most one piece in flight, in order).
                    inflight = loop.run_in_executor(self._pool, _write_piece, fd, pending)
                    inflight.add_done_callback(_observe)
                pending = nxt
            if inflight is not None:
                size += await asyncio.shield(inflight)
            # One hop writes the last piece, fsyncs and renames: a small blob costs one hop.
            committing = True
            inflight = loop.run_in_executor(self._pool, self._commit, fd, tmp, final, pending)
            size += await asyncio.shield(inflight)
            done = True
        except Exception:
            # The source failed (not a cancellation): let a write in flight finish, so that
            # nothing of the blob is left once put raises.
            if inflight is not None and not inflight.done():
                await asyncio.wait([inflight])
            raise
        finally:
            # A put that does not return leaves nothing behind, even if its rename happened
            # (cancelled at the last moment, or the directory fsync failed).
            if done:
                os.close(fd)
            else:
                leftover = final if committing else None
                if inflight is not None and not inflight.done():
                    inflight.add_done_callback(lambda _f: self._discard(fd, tmp, leftover))
                else:
                    self._discard(fd, tmp, leftover)
        return size

    async def get(self, blob_id: str, offset: int = 0, length: int | None = None,
                  chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        fd, data = await self._open(blob_id, offset, length)
        if data is not None:
            for i in range(0, len(data), max(1, chunk_size)):
                yield data[i:i + chunk_size]
            return
        try:
            end = os.fstat(fd).st_size if length is None else offset + length
            pos = offset
            while pos < end:
                n = min(chunk_size, end - pos)
                if n <= INLINE_READ:
                    data = os.pread(fd, n, pos)
                else:
                    data = await self._run(os.pread, fd, n, pos)
                if not data:
                    break
                pos += len(data)
                yield data
        finally:
            os.close(fd)

    async def read(self, blob_id: str, offset: int, length: int) -> bytes:
        path = self._path(blob_id)
        small_first = self._small_first(offset, length)
        if small_first:
            data = await self._small_span(blob_id, offset, length)
            if data is not None:
                return data

        def rd() -> bytes | None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                return os.pread(fd, length, offset)
            finally:
                os.close(fd)

        got = rd() if length <= INLINE_READ else await self._run(rd)
        if got is None and not small_first:
            got = await self._small_span(blob_id, offset, length)
        if got is None:
            raise BlobNotFound(blob_id)
        return got

    async def get_mapped(self, blob_id: str, offset: int, length: int, chunk_size: int,
                         fn: Callable[[int, Buffer], T]) -> AsyncIterator[T]:
        if type(self).get is not LocalBlobStore.get:
            # A subclass that reshapes get() (tests do) is read through it.
            async for out in super().get_mapped(blob_id, offset, length, chunk_size, fn):
                yield out
            return
        fd, data = await self._open(blob_id, offset, length)
        if data is not None:
            # The span was read whole in one statement: a delete meanwhile cannot cut it.
            async for out in _map_runs(data, offset, chunk_size, fn, self._pool):
                yield out
            return
        loop = asyncio.get_running_loop()
        end = offset + length

        # One buffer the runs are read into, reused: only one worker uses it at a time, and
        # fn (decryption) leaves nothing pointing into it. No fresh pages to fault in per run.
        scratch = bytearray(min(chunk_size, length)) if length > INLINE_READ else None

        def submit(at: int) -> asyncio.Future[tuple[T] | None]:
            # One hop reads and transforms (decrypts) a run.
            f = loop.run_in_executor(self._pool, _read_map, fd, at, min(chunk_size, end - at), fn, scratch)
            f.add_done_callback(_observe)
            return f

        inflight: asyncio.Future[tuple[T] | None] | None = None
        try:
            pos = offset
            if length <= INLINE_READ:
                # Small: read (and decrypt) right here, cheaper than any hop.
                while pos < end:
                    res = _read_map(fd, pos, min(chunk_size, end - pos), fn)
                    if res is None:
                        break  # the blob ends early: the caller sees the runs missing
                    yield res[0]
                    pos += chunk_size
                return
            inflight = submit(pos)
            while inflight is not None:
                res = await asyncio.shield(inflight)
                inflight = None
                if res is None:
                    break
                pos += chunk_size
                if pos < end:
                    # The next run is read and decrypted while the caller sends this one.
                    inflight = submit(pos)
                yield res[0]
        finally:
            if inflight is not None and not inflight.done():
                # A worker still reads fd (cancelled, or a run prefetched for a reader that
                # stopped): close it only once the worker is done.
                inflight.add_done_callback(lambda _f: os.close(fd))
            else:
                os.close(fd)

    async def delete(self, blob_id: str) -> None:
        path = self._path(blob_id)
        if self.small is not None and await self.small.size(blob_id) is not None:
            # A blob is in one place: put writes a row or a file, never both (the fallback to
            # a file happens before any row is inserted).
            await self.small.delete(blob_id)
            return

        def rm() -> None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

        await self._run(rm)

    async def size(self, blob_id: str) -> int | None:
        path = self._path(blob_id)
        if self.small is not None and self.small_max > 0:
            n = await self.small.size(blob_id)
            if n is not None:
                return n
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            pass
        if self.small is not None and self.small_max == 0:
            return await self.small.size(blob_id)
        return None

    async def list_ids(self, older_than: float) -> AsyncIterator[str]:
        def scan(d1: str) -> list[str]:
            out = []
            p1 = os.path.join(self.root, d1)
            for d2 in os.listdir(p1):
                p2 = os.path.join(p1, d2)
                if not os.path.isdir(p2):
                    continue
                for name in os.listdir(p2):
                    try:
                        if os.stat(os.path.join(p2, name)).st_mtime < older_than:
                            out.append(name)
                    except FileNotFoundError:
                        pass
            return out

        for d1 in sorted(os.listdir(self.root)):
            if len(d1) != 2 or not os.path.isdir(os.path.join(self.root, d1)):
                continue
            for name in await self._run(scan, d1):
                yield name
        if self.small is not None:
            for name in await self.small.list_ids(older_than):
                yield name


def _write_all(fd: int, data: Buffer) -> None:
    mv = memoryview(data)
    while mv:
        n = os.write(fd, mv)
        mv = mv[n:]


def _write_piece(fd: int, piece: Piece) -> int:
    data = piece() if callable(piece) else piece
    if data:
        _write_all(fd, data)
    return len(data)


async def _chain(first: Sequence[Piece], rest: AsyncIterator[Piece] | None) -> AsyncIterator[Piece]:
    for piece in first:
        yield piece
    if rest is not None:
        async for piece in rest:
            yield piece


async def _map_runs(data: bytes, offset: int, chunk_size: int, fn: Callable[[int, Buffer], T],
                    pool: ThreadPoolExecutor) -> AsyncIterator[T]:
    """get_mapped over a span already in memory: runs of chunk_size, the last one short."""
    loop = asyncio.get_running_loop()
    step = max(1, chunk_size)
    for i in range(0, len(data), step):
        run = data[i:i + step]
        if len(run) > INLINE_READ:  # as the file path: decrypting more is worth a hop
            yield await loop.run_in_executor(pool, fn, offset + i, run)
        else:
            yield fn(offset + i, run)


def _observe(f: asyncio.Future[Any]) -> None:
    """Retrieve a piece write's error when the put already failed for another reason."""
    if not f.cancelled():
        f.exception()


def _read_map(fd: int, pos: int, n: int, fn: Callable[[int, Buffer], T],
              scratch: bytearray | None = None) -> tuple[T] | None:
    """Read exactly ``n`` bytes at ``pos`` (fewer only at the end of the file) and apply ``fn``.

    The bytes are read into ``scratch`` when given (``fn`` must not keep them). Returns None
    when nothing is left at ``pos``. A run cut short is still handed to ``fn``, whose length
    check turns it into an error.
    """
    if scratch is None:
        data = os.pread(fd, n, pos)
        if not data:
            return None
        if len(data) == n:
            return (fn(pos, data),)
        scratch = bytearray(n)
        scratch[:len(data)] = data
        got = len(data)
    else:
        got = 0
    mv = memoryview(scratch)[:n]
    try:
        while got < n:
            k = os.preadv(fd, [mv[got:]], pos + got)
            if k == 0:
                break
            got += k
        if got == 0:
            return None
        return (fn(pos, mv[:got]),)
    finally:
        mv.release()
