"""Conditional writes: If-None-Match: * and If-Match on PutObject; racing writers never both win."""

from __future__ import annotations

import os
import threading

import pytest
from botocore.exceptions import ClientError

from tests import blobs_on_disk as on_disk
from tests.conftest import make_client


def _err(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def test_if_none_match_star(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert _err(e) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"
    # Once deleted, the key may be created again.
    s3.delete_object(Bucket=bucket, Key="k")
    s3.put_object(Bucket=bucket, Key="k", Body=b"third", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"third"


def test_if_none_match_etag_is_not_implemented(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", IfNoneMatch='"abc"')
    assert _err(e) == (501, "NotImplemented")


def test_if_match(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    etag2 = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)["ETag"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag)  # stale
    assert _err(e) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"
    s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag2)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v3"


def test_if_match_on_missing_key_is_404(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch='"d41d8cd98f00b204e9800998ecf8427e"')
    assert _err(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="absent")


def _race(endpoint, credentials, bucket, key, n, **kw):
    bodies = [os.urandom(256 * 1024) + bytes([i]) for i in range(n)]
    results: list[tuple[int, str | None]] = [(0, None)] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        client = make_client(endpoint, credentials)
        barrier.wait()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=bodies[i], **kw)
            results[i] = (200, None)
        except ClientError as e:
            results[i] = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bodies, results


def test_racing_creators_exactly_one_wins(endpoint, credentials, s3, bucket):
    for attempt in range(3):
        key = f"race-{attempt}"
        bodies, results = _race(endpoint, credentials, bucket, key, 8, IfNoneMatch="*")
        winners = [i for i, (status, _) in enumerate(results) if status == 200]
        assert len(winners) == 1, results
        for i, (status, code) in enumerate(results):
            if i != winners[0]:
                assert (status, code) in ((412, "PreconditionFailed"), (409, "ConditionalRequestConflict")), results
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == bodies[winners[0]]


def test_racing_updaters_with_if_match(endpoint, credentials, s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"base")["ETag"]
    bodies, results = _race(endpoint, credentials, bucket, "k", 6, IfMatch=etag)
    winners = [i for i, (status, _) in enumerate(results) if status == 200]
    assert len(winners) == 1, results
    assert all(r in ((412, "PreconditionFailed"), (409, "ConditionalRequestConflict"))
               for i, r in enumerate(results) if i != winners[0]), results
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == bodies[winners[0]]


def test_losers_leave_no_blob_behind(server, endpoint, credentials, s3, bucket):
    if server is None:
        pytest.skip("needs the local server's data directory")
    def count() -> int:
        return len(on_disk.all_blobs(server.data_dir))  # files and small blobs' rows

    before = count()
    _race(endpoint, credentials, bucket, "solo", 5, IfNoneMatch="*")
    # One new blob: the winner's. The losers' blobs were dropped when their commit failed.
    assert count() == before + 1
