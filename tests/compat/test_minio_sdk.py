"""The MinIO Python SDK: fput_object (multipart above 5 MiB), listing, ETag-based re-sync, fget_object, remove_objects."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.compat.helpers import assert_same_tree, etag_matches, expected_listing, missing, remote_state

pytestmark = pytest.mark.compat


def test_minio_sdk_round_trip(endpoint, credentials, s3, compat_bucket, tree, tree_manifest, tmp_path: Path, tick):
    try:
        from minio import Minio
        from minio.deleteobjects import DeleteObject
        from minio.helpers import get_part_info
    except ImportError:
        missing("minio (Python SDK)")
    client = Minio(urlsplit(endpoint).netloc, access_key=credentials[0], secret_key=credentials[1],
                   secure=False, region="us-east-1")
    prefix = "tree/"

    def part_size(size: int) -> int:
        # The SDK's own choice for part_size=0 (5 MiB for these sizes).
        return get_part_info(size, 0)[0]

    def sync_up() -> list[str]:
        remote = {o.object_name: o for o in client.list_objects(compat_bucket, prefix=prefix, recursive=True)}
        sent = []
        for rel, (size, _) in sorted(tree_manifest.items()):
            o = remote.get(prefix + rel)
            if o is not None and o.size == size and etag_matches(tree / rel, o.etag, part_size(size)):
                continue
            result = client.fput_object(compat_bucket, prefix + rel, str(tree / rel))
            assert result.etag, rel
            sent.append(rel)
        return sent

    assert sync_up() == sorted(tree_manifest)
    listed = {o.object_name: o.size for o in client.list_objects(compat_bucket, prefix=prefix, recursive=True)}
    assert listed == expected_listing(tree_manifest, prefix)
    before = remote_state(s3, compat_bucket, prefix)
    assert before["tree/big/big.bin"][1].endswith('-20"'), before["tree/big/big.bin"]

    tick()
    assert sync_up() == [], "ETags from the server do not match the local files: everything re-sent"
    assert remote_state(s3, compat_bucket, prefix) == before

    dest = tmp_path / "down"
    for rel in tree_manifest:
        client.fget_object(compat_bucket, prefix + rel, str(dest / rel))
    assert_same_tree(tree_manifest, dest)

    # A ranged read through the SDK.
    resp = client.get_object(compat_bucket, prefix + "big/big.bin", offset=50 << 20, length=1000)
    try:
        with open(tree / "big/big.bin", "rb") as fh:
            fh.seek(50 << 20)
            assert resp.read() == fh.read(1000)
    finally:
        resp.close()
        resp.release_conn()

    errors = list(client.remove_objects(compat_bucket, [DeleteObject(k) for k in before]))
    assert errors == []
    assert remote_state(s3, compat_bucket) == {}
