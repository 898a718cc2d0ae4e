"""Backends under test, one parametrized fixture per interface, and async tests without a plugin.

Every backend of an interface passes the same suite unmodified: to add one, add a
factory to META_BACKENDS or BLOB_BACKENDS (it gets a fresh private directory).
A test written ``async def`` runs to completion on the ``loop`` fixture's event
loop, the same loop that opened and will close the store it uses.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, Callable, Iterator
from pathlib import Path

import pytest

from coffre.blob.base import BlobStore, Piece
from coffre.blob.local import LocalBlobStore
from coffre.meta.base import MetadataStore
from coffre.meta.sqlite import SQLiteMetadataStore


class HintingLocalBlobStore(LocalBlobStore):
    """The local store with every put announced as small (size_hint 0) unless the test says
    otherwise: the whole suite then runs through small.db for blobs up to its limit, and
    through the fallback to a file (a hint that was wrong) for larger ones."""

    async def put(self, blob_id: str, chunks: AsyncIterable[Piece], size_hint: int | None = None) -> int:
        return await super().put(blob_id, chunks, 0 if size_hint is None else size_hint)


META_BACKENDS: dict[str, Callable[[Path], MetadataStore]] = {
    "sqlite": lambda d: SQLiteMetadataStore(str(d / "meta.sqlite3")),
}
BLOB_BACKENDS: dict[str, Callable[[Path], BlobStore]] = {
    "local": lambda d: LocalBlobStore(str(d / "blobs")),
    "local-small": lambda d: HintingLocalBlobStore(str(d / "blobs")),
}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.run_until_complete(lp.shutdown_asyncgens())
    lp.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    lp: asyncio.AbstractEventLoop = pyfuncitem._request.getfixturevalue("loop")
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    lp.run_until_complete(asyncio.wait_for(pyfuncitem.obj(**args), timeout=120))
    return True


@pytest.fixture(params=sorted(META_BACKENDS))
def meta(request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop,
         tmp_path: Path) -> Iterator[MetadataStore]:
    store = META_BACKENDS[request.param](tmp_path)
    loop.run_until_complete(store.open())
    yield store
    loop.run_until_complete(store.close())


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(params=sorted(BLOB_BACKENDS))
def blob_factory(request: pytest.FixtureRequest, blob_dir: Path) -> Callable[[], BlobStore]:
    """Makes (unopened) stores of the backend under test, all over the same place."""
    return lambda: BLOB_BACKENDS[request.param](blob_dir)


@pytest.fixture
def blobs(loop: asyncio.AbstractEventLoop, blob_factory: Callable[[], BlobStore]) -> Iterator[BlobStore]:
    store = blob_factory()
    loop.run_until_complete(store.open())
    yield store
    loop.run_until_complete(store.close())
