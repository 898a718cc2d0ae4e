"""s3cmd (PyPI) syncing the tree up and down, signing with SigV4 and, in a second run, with SigV2."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.compat.helpers import assert_same_tree, clean_env, expected_listing, remote_state, run, venv_binary

pytestmark = pytest.mark.compat

# s3cmd's default multipart_chunk_size_mb: the 100 MiB file goes up in 7 parts.
PARTS_OF_BIG = 7


def _stats(out: str) -> tuple[int, int]:
    """Files and bytes transferred, from s3cmd's --stats summary."""
    assert "Stats: Number of files:" in out, f"no --stats summary in s3cmd's output:\n{out[-3000:]}"
    m = re.search(r"Number of files transferred: (\d+) \((\d+) bytes\)", out)
    # s3cmd leaves the "transferred" line out when it sent nothing.
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@pytest.mark.parametrize("signature", ["v4", "v2"])
def test_s3cmd_round_trip(signature, endpoint, credentials, s3, compat_bucket, tree, tree_manifest,
                          tmp_path: Path, log_path, tick):
    exe = venv_binary("s3cmd")
    host = urlsplit(endpoint).netloc
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {credentials[0]}\n"
        f"secret_key = {credentials[1]}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"  # no %(bucket)s: path-style requests
        "bucket_location = us-east-1\n"
        "use_https = False\n"
        f"signature_v2 = {signature == 'v2'}\n"
        "multipart_chunk_size_mb = 15\n"
        "progress_meter = False\n"
        "max_retries = 1\n"
    )
    env = clean_env(HOME=str(tmp_path))

    def s3cmd(*args: str) -> str:
        return run([exe, "-c", str(cfg), *args], env=env, log_path=log_path).stdout

    url = f"s3://{compat_bucket}/tree/"
    files, size = _stats(s3cmd("sync", "--stats", f"{tree}/", url))
    assert files == len(tree_manifest)
    assert size == sum(s for s, _ in tree_manifest.values())

    listed = {}
    for line in s3cmd("ls", "--recursive", url).splitlines():
        m = re.match(r"^\S+ \S+\s+(\d+)\s+(s3://\S+?/.+)$", line)
        assert m, line
        listed[m.group(2).removeprefix(f"s3://{compat_bucket}/")] = int(m.group(1))
    assert listed == expected_listing(tree_manifest, "tree/")
    before = remote_state(s3, compat_bucket, "tree/")
    assert before["tree/big/big.bin"][1].endswith(f'-{PARTS_OF_BIG}"'), before["tree/big/big.bin"]

    tick()
    assert _stats(s3cmd("sync", "--stats", f"{tree}/", url)) == (0, 0), "re-sync sent files"
    assert remote_state(s3, compat_bucket, "tree/") == before

    dest = tmp_path / "down"
    dest.mkdir()
    files, _ = _stats(s3cmd("sync", "--stats", url, f"{dest}/"))
    assert files == len(tree_manifest)
    assert_same_tree(tree_manifest, dest)
    assert _stats(s3cmd("sync", "--stats", url, f"{dest}/"))[0] == 0, "re-sync downloaded files"

    # A query-string-signed URL (s3cmd signs these with SigV2), for a key that needs encoding.
    link = s3cmd("signurl", url + "odd/a+b=c&d~e.txt", "+300").strip()
    with urllib.request.urlopen(link, timeout=30) as resp:
        assert resp.read() == (tree / "odd/a+b=c&d~e.txt").read_bytes()

    s3cmd("del", "--recursive", "--force", url)
    assert remote_state(s3, compat_bucket) == {}
