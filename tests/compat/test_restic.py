"""restic (Debian's package) backing the tree up into a bucket: init, backup twice (the second adds
nothing), snapshots, check --read-data, restore and compare, forget --prune down to nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compat.helpers import assert_same_tree, clean_env, remote_state, require_binary, run

pytestmark = pytest.mark.compat


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _summary(out: str) -> dict:
    summaries = [m for m in _json_lines(out) if m.get("message_type") == "summary"]
    assert len(summaries) == 1, f"no backup summary in restic's output:\n{out[-3000:]}"
    return summaries[0]


def test_restic_round_trip(endpoint, credentials, s3, compat_bucket, tree, tree_manifest, tmp_path: Path,
                           log_path, tick):
    exe = require_binary("restic")
    env = clean_env(AWS_ACCESS_KEY_ID=credentials[0], AWS_SECRET_ACCESS_KEY=credentials[1],
                    RESTIC_PASSWORD="compat-test-password", RESTIC_CACHE_DIR=str(tmp_path / "cache"),
                    RESTIC_REPOSITORY=f"s3:{endpoint}/{compat_bucket}/repo", HOME=str(tmp_path))

    def restic(*args: str) -> str:
        return run([exe, *args], env=env, log_path=log_path, timeout=240).stdout

    restic("init")
    summary = _summary(restic("backup", "--json", str(tree)))
    assert summary["files_new"] == len(tree_manifest), summary
    # restic deduplicates and compresses nothing here (random data): all of it is stored.
    assert summary["data_added"] >= sum(size for size, _ in tree_manifest.values()), summary
    data_before = remote_state(s3, compat_bucket, "repo/data/")
    assert data_before, "restic stored no pack files"

    tick()
    summary = _summary(restic("backup", "--json", str(tree)))
    assert (summary["files_new"], summary["files_changed"], summary["data_blobs"]) == (0, 0, 0), summary
    assert summary["files_unmodified"] == len(tree_manifest), summary
    # Only directory metadata is new (restic records the ancestors of the tree, /tmp included,
    # whose times move): a few hundred bytes in one small pack, never file content again.
    assert summary["data_added"] < 64 * 1024, summary
    data_after = remote_state(s3, compat_bucket, "repo/data/")
    assert {k: data_after[k] for k in data_before} == data_before, "second backup rewrote pack files"
    assert sum(size for size, _, _ in data_after.values()) - sum(size for size, _, _ in data_before.values()) \
        < 64 * 1024, "second backup re-sent file data"

    snapshots = json.loads(restic("snapshots", "--json"))
    assert len(snapshots) == 2
    assert all(s["paths"] == [str(tree)] for s in snapshots), snapshots

    # Reads every pack back and verifies its hashes: any byte the server changes fails here.
    restic("check", "--read-data")

    dest = tmp_path / "restore"
    restic("restore", "latest", "--target", str(dest))
    assert_same_tree(tree_manifest, dest / tree.relative_to(tree.anchor))

    restic("forget", "--keep-last", "1", "--prune")
    remaining = json.loads(restic("snapshots", "--json"))
    assert len(remaining) == 1
    restic("forget", remaining[0]["id"], "--prune")
    assert json.loads(restic("snapshots", "--json")) in ([], None)
    assert remote_state(s3, compat_bucket, "repo/data/") == {}, "prune left pack files behind"
    assert remote_state(s3, compat_bucket, "repo/locks/") == {}, "restic's locks were not deleted"
