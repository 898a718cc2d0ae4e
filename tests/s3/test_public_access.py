"""Block Public Access, bucket and tenant level (the S3 Control API shape), with boto3."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.s3.test_policy import anonymous, code, public_read
from tests.server import TENANT
from tests.tenants import admin_client

ALL_ON = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
          "RestrictPublicBuckets": True}
ALL_OFF = dict.fromkeys(ALL_ON, False)


@pytest.fixture(scope="module")
def control(endpoint, credentials):
    """boto3's S3 Control client. It puts the account id in front of the endpoint's host, which an
    IP address cannot take: the prefix is removed before signing (a DNS name would carry it)."""
    client = boto3.client("s3control", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1],
                          config=Config(retries={"max_attempts": 1}))

    def unprefix(request, **kwargs):
        account = request.headers["x-amz-account-id"]
        account = account.decode() if isinstance(account, bytes) else account
        request.url = request.url.replace(f"//{account}.", "//", 1)

    client.meta.events.register("before-sign.s3-control.*", unprefix)
    return client


@pytest.fixture(scope="module")
def account(server) -> str:
    return admin_client(server).call("GET", f"/tenants/{TENANT}")["id"]


def test_bucket_level_round_trip(s3, bucket):
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == ALL_ON  # AWS default
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == dict(
        ALL_OFF, BlockPublicPolicy=True)
    resp = s3.delete_public_access_block(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_public_access_block(Bucket=bucket)
    assert code(e) == "NoSuchPublicAccessBlockConfiguration"


def test_malformed_configuration(s3, bucket):
    s3.meta.events.register_first("before-sign.s3.PutPublicAccessBlock", _break_body)
    try:
        with pytest.raises(ClientError) as e:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
        assert code(e) == "MalformedXML"
    finally:
        s3.meta.events.unregister("before-sign.s3.PutPublicAccessBlock", _break_body)


def _break_body(request, **kwargs):
    request.data = request.data.replace(b"<BlockPublicAcls>true<", b"<BlockPublicAcls>yes<")
    for name in [h for h in request.headers if h.lower().startswith(("x-amz-checksum-", "content-md5",
                                                                      "x-amz-sdk-checksum"))]:
        del request.headers[name]


def test_tenant_level_block_overrides_buckets(s3, endpoint, bucket, control, account):
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"public")
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    assert anonymous("GET", f"{endpoint}/{bucket}/k") == (200, b"public")
    with pytest.raises(ClientError) as e:
        control.get_public_access_block(AccountId=account)
    assert code(e) == "NoSuchPublicAccessBlockConfiguration"
    try:
        control.put_public_access_block(AccountId=account, PublicAccessBlockConfiguration={
            "RestrictPublicBuckets": True, "BlockPublicPolicy": True})
        got = control.get_public_access_block(AccountId=account)["PublicAccessBlockConfiguration"]
        assert got == dict(ALL_OFF, RestrictPublicBuckets=True, BlockPublicPolicy=True)
        assert anonymous("GET", f"{endpoint}/{bucket}/k")[0] == 403
        with pytest.raises(ClientError) as e:  # the tenant's BlockPublicPolicy applies to every bucket
            s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
        assert code(e) == "AccessDenied"
        # The bucket's own setting shows only its own level.
        with pytest.raises(ClientError) as e:
            s3.get_public_access_block(Bucket=bucket)
        assert code(e) == "NoSuchPublicAccessBlockConfiguration"
    finally:
        control.delete_public_access_block(AccountId=account)
    assert anonymous("GET", f"{endpoint}/{bucket}/k") == (200, b"public")
    s3.delete_bucket_policy(Bucket=bucket)


def test_tenant_level_is_the_callers_own(control, account):
    with pytest.raises(ClientError) as e:
        control.get_public_access_block(AccountId="000000000000" if account != "000000000000" else "111111111111")
    assert code(e) == "AccessDenied"


def test_policy_status(s3, bucket):
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}}]}))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    s3.delete_bucket_policy(Bucket=bucket)
