"""boto3's managed transfers (upload_file/download_file) through s3transfer, classic and with the
AWS CRT, doing what a sync tool does: upload, list, decide by ETag what to re-send, download, delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat.helpers import (
    MiB,
    assert_same_tree,
    etag_matches,
    expected_listing,
    missing,
    remote_state,
)
from tests.conftest import make_client

pytestmark = pytest.mark.compat

PART = 8 * MiB


def _manager_factory(kind: str, s3, endpoint: str, credentials: tuple[str, str]):
    """A function returning a fresh transfer manager of the wanted kind for one batch."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    cfg = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)
    if kind == "classic":
        return lambda: create_transfer_manager(s3, cfg)
    try:
        import botocore.session
        from awscrt.auth import AwsCredentialsProvider
        from botocore.config import Config
        from s3transfer.crt import BotocoreCRTRequestSerializer, CRTTransferManager, create_s3_crt_client
    except ImportError:
        missing("awscrt")
    # boto3's own CRT switch (preferred_transfer_client="crt") ignores endpoint_url and always
    # dials AWS over TLS, so the CRT transfer manager is assembled from s3transfer's parts, as the
    # aws cli v2 does: the CRT signs and sends, botocore only serializes the requests.
    crt = create_s3_crt_client("us-east-1", use_ssl=False, part_size=PART,
                               crt_credentials_provider=AwsCredentialsProvider.new_static(*credentials))
    serializer = BotocoreCRTRequestSerializer(
        botocore.session.get_session(),
        {"region_name": "us-east-1", "endpoint_url": endpoint, "config": Config(s3={"addressing_style": "path"})})
    return lambda: CRTTransferManager(crt, serializer, config=cfg)


@pytest.mark.parametrize("kind", ["classic", "crt"])
def test_boto3_managed_transfer_round_trip(kind, endpoint, credentials, compat_bucket, tree, tree_manifest,
                                           tmp_path: Path, tick):
    # The checksums botocore now adds by default (CRC32, sent as aws-chunked trailers).
    s3 = make_client(endpoint, credentials, request_checksum_calculation="when_supported",
                     response_checksum_validation="when_supported")
    new_manager = _manager_factory(kind, s3, endpoint, credentials)
    prefix = f"{kind}/"

    def transfer(direction: str, rels: list[str], root: Path) -> None:
        # One transfer manager for the whole batch, as the aws cli and s3transfer users do.
        with new_manager() as manager:
            assert ("CRT" in type(manager).__name__) == (kind == "crt"), type(manager)
            if direction == "upload":
                futures = [manager.upload(str(root / rel), compat_bucket, prefix + rel) for rel in rels]
            else:
                futures = [manager.download(compat_bucket, prefix + rel, str(root / rel)) for rel in rels]
            for f in futures:
                f.result()

    def sync_up() -> list[str]:
        remote = remote_state(s3, compat_bucket, prefix)
        todo = [rel for rel, (size, _) in tree_manifest.items()
                if prefix + rel not in remote or remote[prefix + rel][0] != size
                or not etag_matches(tree / rel, remote[prefix + rel][1], PART)]
        transfer("upload", todo, tree)
        return todo

    assert sorted(sync_up()) == sorted(tree_manifest)
    before = remote_state(s3, compat_bucket, prefix)
    assert {k: v[0] for k, v in before.items()} == expected_listing(tree_manifest, prefix)
    big = before[prefix + "big/big.bin"][1]
    assert big.endswith('-13"'), f"100 MiB in 8 MiB parts should be a 13-part multipart upload: {big}"

    tick()
    assert sync_up() == [], "ETags from the server do not match the local files: everything re-sent"
    assert remote_state(s3, compat_bucket, prefix) == before

    dest = tmp_path / "down"
    for rel in tree_manifest:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    transfer("download", list(tree_manifest), dest)
    assert_same_tree(tree_manifest, dest)

    keys = [{"Key": k} for k in before]
    resp = s3.delete_objects(Bucket=compat_bucket, Delete={"Objects": keys})
    assert not resp.get("Errors"), resp["Errors"]
    assert sorted(d["Key"] for d in resp["Deleted"]) == sorted(before)
    assert remote_state(s3, compat_bucket) == {}
