"""Shared pieces of the real-client round trips: the tree, byte comparison, ETags, subprocesses."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MiB = 1 << 20
BIG_SIZE = 100 * MiB

# Small files of the tree, by relative path. Names carry what breaks naive clients and signers:
# spaces, non-ASCII, characters that percent-encode differently in paths and SigV4 ("+", "=",
# "&", "~"), an empty file and a deep path. big.bin (the shared 100 MiB file) is added beside them.
SMALL_FILES: dict[str, int] = {
    "readme.txt": 1234,
    "empty.dat": 0,
    "docs/guide.md": 40_000,
    "docs/deep/nested/dir/file with spaces.txt": 777,
    "données/été-ünïcode.csv": 5000,
    "odd/a+b=c&d~e.txt": 321,
    # 9 MiB: above the 8 MiB multipart threshold of the aws cli and boto3, so a second,
    # two-part multipart object (last part short) sits beside the big one.
    "medium/nine-mib.bin": 9 * MiB,
}
BIG_NAME = "big/big.bin"


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing(what: str) -> None:
    """A client that is not installed: a failure in CI (which installs everything), else a skip."""
    if in_ci():
        pytest.fail(f"{what} is not installed; .ci/run must install it")
    pytest.skip(f"{what} is not installed")


def require_binary(path_or_name: str) -> str:
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) \
        else shutil.which(path_or_name)
    if not found:
        missing(path_or_name)
    return str(found)


def venv_binary(name: str) -> str:
    """A console script installed beside this interpreter (pip puts aws, rclone, s3cmd there)."""
    return require_binary(str(Path(sys.executable).parent / name))


def write_random(path: Path, size: int, seed: bytes) -> None:
    """Deterministic pseudo-random bytes (incompressible, distinct per file), written streaming."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        counter = 0
        left = size
        while left > 0:
            block = hashlib.shake_256(seed + counter.to_bytes(8, "big")).digest(min(left, MiB))
            fh.write(block)
            left -= len(block)
            counter += 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def manifest(root: Path) -> dict[str, tuple[int, str]]:
    """relative path (with /) -> (size, sha256) of every regular file under root."""
    out: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            out[rel] = (p.stat().st_size, sha256_file(p))
    return out


def assert_same_tree(expected: dict[str, tuple[int, str]], root: Path) -> None:
    got = manifest(root)
    assert sorted(got) == sorted(expected), f"file sets differ under {root}"
    for rel, (size, digest) in expected.items():
        assert got[rel][0] == size, f"{rel}: size {got[rel][0]} != {size}"
        assert got[rel][1] == digest, f"{rel}: downloaded bytes differ from the uploaded ones"


def s3_etag(path: Path, part_size: int | None) -> str:
    """The ETag S3 gives a file uploaded whole (part_size None) or in parts of part_size bytes."""
    if part_size is None:
        h = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as fh:
            while chunk := fh.read(MiB):
                h.update(chunk)
        return f'"{h.hexdigest()}"'
    digests = []
    with open(path, "rb") as fh:
        while True:
            part = fh.read(part_size)
            if not part and digests:
                break
            digests.append(hashlib.md5(part, usedforsecurity=False).digest())
            if len(part) < part_size:
                break
    whole = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f'"{whole}-{len(digests)}"'


def etag_matches(path: Path, etag: str, part_size: int) -> bool:
    """What a sync tool decides: the remote ETag is the one this local file produces.

    A multipart ETag ("...-N") is recomputed with the client's part size, so a server whose
    multipart ETags differ from AWS's (md5 of the parts' binary md5s, dash, part count) makes
    every re-sync upload again.
    """
    if not etag.startswith('"'):
        etag = f'"{etag}"'
    return etag == s3_etag(path, part_size if "-" in etag else None)


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 180,
        log_path: str | None = None, check: bool = True, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one client command; on failure, the assertion shows its output and the server log's tail."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n{proc.stdout[-6000:]}\n"
            f"--- stderr\n{proc.stderr[-6000:]}\n--- server log tail\n{log_tail(log_path)}")
    return proc


def log_tail(log_path: str | None, lines: int = 40) -> str:
    if not log_path or not os.path.exists(log_path):
        return "(no server log)"
    with open(log_path, errors="replace") as fh:
        return "".join(fh.readlines()[-lines:])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a client subprocess: no AWS settings leak in from the caller's machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_", "RESTIC_"))}
    env.update(extra)
    return env


def remote_state(s3, bucket: str, prefix: str = "") -> dict[str, tuple[int, str, object]]:
    """key -> (size, ETag, LastModified) as the server lists them (boto3, paginated)."""
    out: dict[str, tuple[int, str, object]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["Size"], o["ETag"], o["LastModified"])
    return out


def expected_listing(tree: dict[str, tuple[int, str]], prefix: str) -> dict[str, int]:
    return {prefix + rel: size for rel, (size, _) in tree.items()}
