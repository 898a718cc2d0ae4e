"""Fixtures of the real-client suite: one shared tree (with one 100 MiB file) per session."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.compat.helpers import BIG_NAME, BIG_SIZE, SMALL_FILES, manifest, write_random
from tests.conftest import empty_bucket


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory tree with nested and oddly named files and ONE 100 MiB file, made once."""
    root = tmp_path_factory.mktemp("tree")
    for i, (rel, size) in enumerate(sorted(SMALL_FILES.items())):
        write_random(root / rel, size, f"small-{i}".encode())
    write_random(root / BIG_NAME, BIG_SIZE, b"big")
    return root


@pytest.fixture(scope="session")
def tree_manifest(tree: Path) -> dict[str, tuple[int, str]]:
    return manifest(tree)


@pytest.fixture(scope="session")
def log_path(server) -> str | None:
    return server.log_path if server is not None else None


@pytest.fixture
def compat_bucket(s3):
    name = "compat-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    try:
        s3.delete_bucket(Bucket=name)
    except Exception:
        pass


@pytest.fixture
def tick():
    """Wait past the current second, so a re-upload would show in LastModified."""
    return lambda: time.sleep(1.1)
