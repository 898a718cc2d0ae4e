"""Group commit in the SQLite writer: concurrent transactions share COMMITs, each fails alone.

A failing transaction (a condition, a missing row, a constraint) rolls back only itself and
raises to its own caller; the others of its batch are committed and survive a reopen.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from coffre.meta.errors import ConditionFailed
from coffre.meta.records import BucketRecord, ObjectRecord, TenantRecord, WriteCondition
from coffre.meta.sqlite import SQLiteMetadataStore

TID = "111111111111"


def obj(key: str, etag: str = '"e"') -> ObjectRecord:
    return ObjectRecord(bucket="b", key=key, version_id="null", size=1, etag=etag, last_modified=time.time(),
                        tenant_id=TID, owner="c" * 64, blob_id=uuid.uuid4().hex, dek=b"k" * 40)


async def opened(path: Path) -> SQLiteMetadataStore:
    s = SQLiteMetadataStore(str(path))
    await s.open()
    return s


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "meta.sqlite3"


def test_concurrent_writes_share_commits_and_fail_alone(path: Path) -> None:
    commits: list[str] = []

    async def main() -> list[object]:
        s = await opened(path)
        await s.create_tenant(TenantRecord(id=TID, name="t", status="active", created_at=1.0,
                                           wrapped_key=b"k", canonical_id="c" * 64))
        await s.create_bucket(BucketRecord(name="b", tenant_id=TID, region="us-east-1", created_at=1.0))
        assert s._writer is not None
        s._writer.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        # 40 writers race to create the same key (if-none-match: *): one wins; 40 others write
        # their own keys; 10 delete-tag a key that does not exist (NotFound).
        calls = [s.put_object(obj("race", f'"{i}"'), WriteCondition(if_none_match_any=True)) for i in range(40)]
        calls += [s.put_object(obj(f"k{i}")) for i in range(40)]
        calls += [s.set_object_tags("b", "absent", None, {}) for _ in range(10)]
        out = await asyncio.gather(*calls, return_exceptions=True)
        await s.close()
        return out

    out = run(main())
    assert isinstance(out, list)
    races, plain, tags = out[:40], out[40:80], out[80:]
    assert sum(1 for r in races if isinstance(r, list)) == 1
    assert sum(1 for r in races if isinstance(r, ConditionFailed)) == 39
    assert all(isinstance(r, list) for r in plain)
    assert all(type(r).__name__ == "NotFound" for r in tags)
    # 90 transactions took far fewer than 90 COMMITs (the first runs alone, the rest queue up).
    assert 1 <= len(commits) < 45, len(commits)

    async def check() -> None:
        s = await opened(path)
        page = await s.list_objects("b")
        assert sorted(o.key for o in page.objects) == sorted(["race"] + [f"k{i}" for i in range(40)])
        race = await s.get_object("b", "race")
        assert race is not None and race.etag in {f'"{i}"' for i in range(40)}
        await s.close()

    run(check())


def test_a_failed_commit_fails_only_what_did_not_commit(path: Path) -> None:
    """An error that aborts the whole batch (here: a trigger raising in one transaction's
    statement is fine, but a failing COMMIT is not): each transaction is retried alone."""

    async def main() -> list[object]:
        s = await opened(path)
        await s.create_tenant(TenantRecord(id=TID, name="t", status="active", created_at=1.0,
                                           wrapped_key=b"k", canonical_id="c" * 64))
        await s.create_bucket(BucketRecord(name="b", tenant_id=TID, region="us-east-1", created_at=1.0))

        def poison(c: sqlite3.Connection) -> None:
            # Ends the transaction behind the batch's back, as a fatal error would: the
            # batch's RELEASE then fails, and every transaction must be redone on its own.
            c.execute("ROLLBACK")
            raise sqlite3.OperationalError("simulated")

        calls = [s.put_object(obj(f"k{i}")) for i in range(10)]
        calls.insert(5, s._write(poison))
        out = await asyncio.gather(*calls, return_exceptions=True)
        page = await s.list_objects("b")
        await s.close()
        return [out, sorted(o.key for o in page.objects)]

    out, keys = run(main())  # type: ignore[misc]
    assert sum(1 for r in out if isinstance(r, sqlite3.Error)) == 1
    assert keys == sorted(f"k{i}" for i in range(10))
