"""Shared fixtures: a real coffre server on 127.0.0.1 and clients pointed at it.

The S3 tests act as the root of the tenant "test" (``credentials``), which the server fixture
creates through the admin API with the root operator's credentials (``operator_credentials``,
refused on S3). tests/tenants.py makes other tenants, users and quotas the same way.

Set COFFRE_TEST_ENDPOINT (with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) to run
the S3 tests against another S3 implementation instead.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.server import ACCESS_KEY, OPERATOR_ACCESS_KEY, OPERATOR_SECRET_KEY, SECRET_KEY, TENANT, Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("COFFRE_TEST_ENDPOINT"):
        yield None
        return
    srv = Server(str(tmp_path_factory.mktemp("coffre") / "data")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return os.environ.get("COFFRE_TEST_ENDPOINT") or server.endpoint


@pytest.fixture(scope="session")
def credentials() -> tuple[str, str]:
    if os.environ.get("COFFRE_TEST_ENDPOINT"):
        return os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    return ACCESS_KEY, SECRET_KEY


@pytest.fixture(scope="session")
def tenant_name() -> str:
    """The tenant whose root ``credentials`` are (for admin API calls about it)."""
    return TENANT


@pytest.fixture(scope="session")
def operator_credentials() -> tuple[str, str]:
    """The root operator's key: the admin API's, refused on S3."""
    return OPERATOR_ACCESS_KEY, OPERATOR_SECRET_KEY


@pytest.fixture(scope="session")
def admin_endpoint(server) -> str:
    if server is None:
        pytest.skip("needs a local coffre server (the admin API is coffre's own)")
    return server.admin_endpoint


def make_client(endpoint: str, credentials: tuple[str, str], **config):
    import boto3
    from botocore.config import Config

    cfg = {"retries": {"max_attempts": 1}, "s3": {"addressing_style": "path"}}
    cfg.update(config)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1],
                        config=Config(**cfg))


@pytest.fixture(scope="session")
def s3(endpoint, credentials):
    return make_client(endpoint, credentials)


def _fresh_bucket(s3):
    name = "t-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def bucket(s3):
    yield from _fresh_bucket(s3)


@pytest.fixture
def other_bucket(s3):
    """A second fresh bucket, for cross-bucket tests."""
    yield from _fresh_bucket(s3)


def empty_bucket(s3, name: str) -> None:
    try:
        for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    except Exception:
        pass
