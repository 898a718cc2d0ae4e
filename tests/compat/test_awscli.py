"""aws cli round trips: the current v1 from PyPI (default CRC32 checksums, aws-chunked trailers)
and Debian's older v2 (2.9), each syncing the tree up, listing, re-syncing, syncing down, deleting."""

from __future__ import annotations

import hashlib
import re
import subprocess
import urllib.request
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


def _env(credentials: tuple[str, str], tmp_path: Path) -> dict[str, str]:
    """Only what the test sets: no profile, credentials file or instance metadata of the machine."""
    cfg = tmp_path / "aws-config"
    cfg.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    return clean_env(AWS_ACCESS_KEY_ID=credentials[0], AWS_SECRET_ACCESS_KEY=credentials[1],
                     AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                     AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="", AWS_MAX_ATTEMPTS="1")


@pytest.mark.parametrize("which", ["v1", "v2"])
def test_aws_s3_sync_round_trip(which, endpoint, credentials, s3, compat_bucket, tree, tree_manifest,
                                tmp_path: Path, log_path, tick):
    exe = _aws(which)
    env = _env(credentials, tmp_path)
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

    run(aws + ["s3", "rm", "--recursive", f"s3://{compat_bucket}/"], env=env, log_path=log_path)
    assert remote_state(s3, compat_bucket) == {}


@pytest.mark.parametrize("which", ["v1", "v2"])
def test_aws_s3_server_side_copy_and_presign(which, endpoint, credentials, s3, compat_bucket, tree, tree_manifest,
                                             tmp_path: Path, log_path):
    exe = _aws(which)
    env = _env(credentials, tmp_path)
    aws = [exe, "--endpoint-url", endpoint]
    for rel in ("big/big.bin", "medium/nine-mib.bin"):
        s3.upload_file(str(tree / rel), compat_bucket, rel)

    # Server-side copy of the 100 MiB object: CreateMultipartUpload, UploadPartCopy with source
    # ranges, CompleteMultipartUpload; the aws cli v2 also copies the tags (GetObjectTagging).
    src, dst = f"s3://{compat_bucket}/big/big.bin", f"s3://{compat_bucket}/copy/big.bin"
    run(aws + ["s3", "cp", "--no-progress", src, dst], env=env, log_path=log_path)
    assert _streamed_sha256(aws + ["s3", "cp", dst, "-"], env) == tree_manifest["big/big.bin"][1]
    assert s3.head_object(Bucket=compat_bucket, Key="copy/big.bin")["ContentLength"] == 100 << 20

    # A presigned GET, fetched by a plain HTTP client.
    link = run(aws + ["s3", "presign", f"s3://{compat_bucket}/medium/nine-mib.bin", "--expires-in", "300"],
               env=env, log_path=log_path).stdout.strip()
    with urllib.request.urlopen(link, timeout=60) as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == tree_manifest["medium/nine-mib.bin"][1]


def _streamed_sha256(cmd: list[str], env: dict[str, str]) -> str:
    """sha256 of what a command writes to stdout, read as it comes (never whole in memory)."""
    h = hashlib.sha256()
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            h.update(chunk)
        err = proc.stderr.read() if proc.stderr else b""
    assert proc.returncode == 0, err
    return h.hexdigest()


def test_unserved_operations_fail_and_touch_nothing(endpoint, credentials, s3, compat_bucket, tmp_path: Path):
    """Calls coffre does not serve are refused with 501, never run as the operation whose request
    they resemble (DELETE ?analytics is not DeleteBucket)."""
    exe = _aws("v1")
    env = _env(credentials, tmp_path)
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
