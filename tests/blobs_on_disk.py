"""Blobs as the local store keeps them on disk, for tests that look at (or damage) them.

A blob is a file ``blobs/ab/cd/<id>``, or, when small, a row of ``blobs/small.db``
(coffre.blob.small). These helpers find it in either place; the database is opened from
this other process while the server may be running (WAL allows it).
"""

from __future__ import annotations

import glob
import os
import sqlite3
import time
from contextlib import closing


def small_db(data_dir: str) -> str:
    return os.path.join(data_dir, "blobs", "small.db")


def file_path(data_dir: str, blob_id: str) -> str:
    return os.path.join(data_dir, "blobs", blob_id[:2], blob_id[2:4], blob_id)


def _conn(data_dir: str) -> sqlite3.Connection:
    return sqlite3.connect(small_db(data_dir), timeout=30)


def rows(data_dir: str) -> set[str]:
    if not os.path.exists(small_db(data_dir)):
        return set()
    with closing(_conn(data_dir)) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM blobs")}


def files(data_dir: str) -> set[str]:
    return {os.path.basename(p) for p in glob.glob(os.path.join(data_dir, "blobs", "??", "??", "*"))}


def all_blobs(data_dir: str) -> set[str]:
    """Every blob on disk, file or row."""
    f, r = files(data_dir), rows(data_dir)
    assert not f & r, "a blob both a file and a row"
    return f | r


def is_row(data_dir: str, blob_id: str) -> bool:
    return blob_id in rows(data_dir)


def exists(data_dir: str, blob_id: str) -> bool:
    return os.path.exists(file_path(data_dir, blob_id)) or is_row(data_dir, blob_id)


def read_blob(data_dir: str, blob_id: str) -> bytes:
    if os.path.exists(file_path(data_dir, blob_id)):
        with open(file_path(data_dir, blob_id), "rb") as fh:
            return fh.read()
    with closing(_conn(data_dir)) as conn:
        row = conn.execute("SELECT data FROM blobs WHERE id=?", (blob_id,)).fetchone()
    assert row is not None, f"no blob {blob_id}"
    return bytes(row[0])


def write_blob(data_dir: str, blob_id: str, raw: bytes, age: float = 0.0) -> None:
    """Replace (or create) a blob's bytes where it lies; a new blob is a row if small.db exists."""
    path = file_path(data_dir, blob_id)
    if os.path.exists(path) or not os.path.exists(small_db(data_dir)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(raw)
        t = time.time() - age
        os.utime(path, (t, t))
        return
    with closing(_conn(data_dir)) as conn, conn:
        conn.execute("INSERT OR REPLACE INTO blobs(id, mtime, data) VALUES(?, ?, ?)",
                     (blob_id, time.time() - age, raw))


def age_blob(data_dir: str, blob_id: str, age: float) -> None:
    """Make a blob look last written ``age`` seconds ago (for the collector's grace)."""
    t = time.time() - age
    path = file_path(data_dir, blob_id)
    if os.path.exists(path):
        os.utime(path, (t, t))
        return
    with closing(_conn(data_dir)) as conn, conn:
        conn.execute("UPDATE blobs SET mtime=? WHERE id=?", (t, blob_id))


def checkpoint(data_dir: str) -> None:
    """Fold small.db's WAL into the database file, as SQLite does on its own sooner or later."""
    if os.path.exists(small_db(data_dir)):
        with closing(_conn(data_dir)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
