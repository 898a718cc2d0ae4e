"""Listings longer than one page, as real clients walk them: ListObjectsV2 continuation tokens
(aws cli), markers of ListObjects v1 (s3cmd), and rclone's own paging. A client that misses a page
re-uploads what it did not see, or lists too little."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.compat.helpers import clean_env, remote_state, require_binary, run, venv_binary

pytestmark = pytest.mark.compat

COUNT = 1234  # two pages of 1000, the second partial


@pytest.fixture(scope="session")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for i in range(COUNT):
        # Three levels so delimiters and prefixes in the listing matter to the clients.
        p = root / f"d{i % 3}" / f"s{i % 7}" / f"obj-{i:05d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"object {i}\n".encode() * (i % 5 + 1))
    return root


@pytest.fixture
def populated(s3, compat_bucket, many: Path) -> str:
    """The bucket holding the tree under many/, put there by boto3, 16 requests at a time."""
    files = [p for p in many.rglob("*") if p.is_file()]

    def put(p: Path) -> None:
        s3.put_object(Bucket=compat_bucket, Key="many/" + p.relative_to(many).as_posix(), Body=p.read_bytes())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, files))
    assert len(remote_state(s3, compat_bucket, "many/")) == COUNT
    return compat_bucket


@pytest.mark.parametrize("client", ["aws-v1", "aws-v2", "rclone", "s3cmd"])
def test_sync_over_two_pages_sends_nothing(client, endpoint, credentials, s3, populated, many: Path,
                                           tmp_path: Path, log_path):
    before = remote_state(s3, populated, "many/")
    url = f"s3://{populated}/many/"
    if client.startswith("aws"):
        exe = venv_binary("aws") if client == "aws-v1" else require_binary("/usr/bin/aws")
        env = clean_env(AWS_ACCESS_KEY_ID=credentials[0], AWS_SECRET_ACCESS_KEY=credentials[1],
                        AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
                        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_MAX_ATTEMPTS="1")
        aws = [exe, "--endpoint-url", endpoint, "s3"]
        out = run(aws + ["sync", "--no-progress", str(many), url], env=env, log_path=log_path).stdout
        assert [ln for ln in out.splitlines() if ln.startswith("upload:")] == []
        listed = run(aws + ["ls", "--recursive", url], env=env, log_path=log_path).stdout.splitlines()
        assert len(listed) == COUNT
        # One level of "directories", through the delimiter.
        top = run(aws + ["ls", url], env=env, log_path=log_path).stdout.split()
        assert sorted(w for w in top if w != "PRE") == ["d0/", "d1/", "d2/"]
    elif client == "rclone":
        exe = venv_binary("rclone")
        env = clean_env(RCLONE_CONFIG=str(tmp_path / "rclone.conf"), RCLONE_CONFIG_C_TYPE="s3",
                        RCLONE_CONFIG_C_PROVIDER="Other", RCLONE_CONFIG_C_ACCESS_KEY_ID=credentials[0],
                        RCLONE_CONFIG_C_SECRET_ACCESS_KEY=credentials[1], RCLONE_CONFIG_C_ENDPOINT=endpoint,
                        RCLONE_CONFIG_C_REGION="us-east-1", RCLONE_CONFIG_C_FORCE_PATH_STYLE="true")
        remote = f"c:{populated}/many"
        # --checksum: size and MD5 (the ETag) decide, as the objects carry no rclone mtime.
        proc = run([exe, "sync", "--checksum", "-v", "--stats", "1h", str(many), remote], env=env,
                   log_path=log_path)
        assert "There was nothing to transfer" in proc.stderr, proc.stderr[-3000:]
        # Every object was seen in the listing and matched its local file.
        assert re.search(rf"Checks:\s+{COUNT} / {COUNT}, 100%", proc.stderr), proc.stderr[-3000:]
        listed = run([exe, "lsf", "-R", "--files-only", remote], env=env, log_path=log_path).stdout.splitlines()
        assert len(listed) == COUNT
    else:
        exe = venv_binary("s3cmd")
        host = urlsplit(endpoint).netloc
        cfg = tmp_path / "s3cfg"
        cfg.write_text(f"[default]\naccess_key = {credentials[0]}\nsecret_key = {credentials[1]}\n"
                       f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\nprogress_meter = False\n")
        s3cmd = [exe, "-c", str(cfg)]
        env = clean_env(HOME=str(tmp_path))
        out = run(s3cmd + ["sync", "--stats", f"{many}/", url], env=env, log_path=log_path).stdout
        assert "Number of files transferred" not in out and "upload:" not in out, out[-3000:]
        listed = run(s3cmd + ["ls", "--recursive", url], env=env, log_path=log_path).stdout.splitlines()
        assert len(listed) == COUNT
    assert remote_state(s3, populated, "many/") == before
