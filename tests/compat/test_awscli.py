"""aws cli round trips: the current v1 from PyPI (default CRC32 checksums, aws-chunked trailers)
and Debian's older v2 (2.9), each syncing the tree up, listing, re-syncing, syncing down, deleting."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.compat.helpers import (
    assert_same_tree,
    clean_env,
    etag_matches,
    expected_listing,
    remote_state,
    require_binary,
    run,
    venv_binary,
)

pytestmark = pytest.mark.compat

PART = 8 << 20  # the aws cli's default multipart_chunksize (and threshold)


def _aws(which: str) -> str:
    if which == "v1":
        exe = venv_binary("aws")
        major = "1."
    else:
        exe = require_binary("/usr/bin/aws")
        major = "2."
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    assert version.startswith(f"aws-cli/{major}"), f"{exe} is {version!r}, expected aws-cli/{major}x"
    return exe


@pytest.mark.parametrize("which", ["v1", "v2"])
def test_aws_s3_sync_round_trip(which, endpoint, credentials, s3, compat_bucket, tree, tree_manifest,
                                tmp_path: Path, log_path, tick):
    exe = _aws(which)
    cfg = tmp_path / "aws-config"
    cfg.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = clean_env(AWS_ACCESS_KEY_ID=credentials[0], AWS_SECRET_ACCESS_KEY=credentials[1],
                    AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                    AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="", AWS_MAX_ATTEMPTS="1")
    aws = [exe, "--endpoint-url", endpoint]
    url = f"s3://{compat_bucket}/tree/"

    def sync(src: str, dst: str) -> list[str]:
        out = run(aws + ["s3", "sync", "--no-progress", src, dst], env=env, log_path=log_path).stdout
        return [ln for ln in out.splitlines() if re.match(r"^(upload|download|copy|delete):", ln)]

    sent = sync(str(tree), url)
    assert len(sent) == len(tree_manifest), sent

    # List: every key with its size, through the cli's own listing.
    out = run(aws + ["s3", "ls", "--recursive", url], env=env, log_path=log_path).stdout
    listed = {}
    for line in out.splitlines():
        m = re.match(r"^\S+ \S+\s+(\d+) (.+)$", line)
        assert m, line
        listed[m.group(2)] = int(m.group(1))
    assert listed == expected_listing(tree_manifest, "tree/")

    # The server's ETags are the ones AWS computes (whole-object md5, or md5 of part md5s).
    before = remote_state(s3, compat_bucket, "tree/")
    for key, (_size, etag, _lm) in before.items():
        assert etag_matches(tree / key.removeprefix("tree/"), etag, PART), f"{key}: ETag {etag}"
    assert before["tree/big/big.bin"][1].endswith('-13"'), before["tree/big/big.bin"]

    tick()
    assert sync(str(tree), url) == [], "re-sync sent files although nothing changed"
    assert remote_state(s3, compat_bucket, "tree/") == before

    dest = tmp_path / "down"
    got = sync(url, str(dest))
    assert len(got) == len(tree_manifest)
    assert_same_tree(tree_manifest, dest)
    assert sync(url, str(dest)) == [], "re-sync downloaded files although nothing changed"

    # A single object streamed to stdout (a ranged multipart download is not used for "-").
    proc = subprocess.run(aws + ["s3", "cp", url + "docs/guide.md", "-"], env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (tree / "docs/guide.md").read_bytes()

    run(aws + ["s3", "rm", "--recursive", url], env=env, log_path=log_path)
    assert remote_state(s3, compat_bucket) == {}


def test_unserved_operations_fail_and_touch_nothing(endpoint, credentials, s3, compat_bucket, tmp_path: Path):
    """Calls coffre does not serve are refused with 501, never run as the operation whose request
    they resemble (DELETE ?analytics is not DeleteBucket)."""
    exe = _aws("v1")
    env = clean_env(AWS_ACCESS_KEY_ID=credentials[0], AWS_SECRET_ACCESS_KEY=credentials[1],
                    AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
                    AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_MAX_ATTEMPTS="1")
    calls = [
        ["delete-bucket-analytics-configuration", "--bucket", compat_bucket, "--id", "a1"],
        ["delete-bucket-inventory-configuration", "--bucket", compat_bucket, "--id", "i1"],
        ["delete-bucket-metrics-configuration", "--bucket", compat_bucket, "--id", "m1"],
        ["delete-bucket-intelligent-tiering-configuration", "--bucket", compat_bucket, "--id", "t1"],
    ]
    # The bucket is empty: a DeleteBucket would remove it.
    for args in calls:
        proc = subprocess.run([exe, "--endpoint-url", endpoint, "s3api", *args], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode != 0 and "NotImplemented" in proc.stderr, (args, proc.stdout, proc.stderr)
        s3.head_bucket(Bucket=compat_bucket)  # still there
