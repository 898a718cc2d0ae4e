"""S3 Object Lock with boto3: bucket configuration, default retention, retention modes, legal
holds, the governance bypass (with and without the permission), and deletes refused as AWS
refuses them. Buckets holding compliance-locked versions are left behind on purpose: nothing,
not even the test's cleanup, may delete those versions before their date.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.tenants import create_tenant, create_user_key

LOCKED = "Access Denied because object protected by object lock."


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def _future(**delta: float) -> datetime:
    return (datetime.now(UTC) + timedelta(**delta)).replace(microsecond=0)


def _name() -> str:
    return "lk-" + uuid.uuid4().hex[:20]


@pytest.fixture
def lock_bucket(s3) -> str:
    name = _name()
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


# -- bucket configuration --

def test_create_with_lock_enables_versioning_and_lock(s3, lock_bucket):
    assert s3.get_bucket_versioning(Bucket=lock_bucket)["Status"] == "Enabled"
    conf = s3.get_object_lock_configuration(Bucket=lock_bucket)["ObjectLockConfiguration"]
    assert conf == {"ObjectLockEnabled": "Enabled"}
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=lock_bucket, VersioningConfiguration={"Status": "Suspended"})
    assert _error(e) == (409, "InvalidBucketState")
    assert s3.get_bucket_versioning(Bucket=lock_bucket)["Status"] == "Enabled"
    # Enabled again is no change, and accepted.
    s3.put_bucket_versioning(Bucket=lock_bucket, VersioningConfiguration={"Status": "Enabled"})


def test_configuration_not_found_on_plain_bucket(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object_lock_configuration(Bucket=bucket)
    assert _error(e) == (404, "ObjectLockConfigurationNotFoundError")
    # Not versioned: lock cannot be turned on.
    with pytest.raises(ClientError) as e:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert _error(e) == (409, "InvalidBucketState")
    # Lock headers on a bucket without lock: InvalidRequest.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=_future(days=1))
    assert _error(e) == (400, "InvalidRequest")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for call in (lambda: s3.get_object_retention(Bucket=bucket, Key="k"),
                 lambda: s3.get_object_legal_hold(Bucket=bucket, Key="k"),
                 lambda: s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})):
        with pytest.raises(ClientError) as e:
            call()
        assert _error(e) == (400, "InvalidRequest")


def test_enable_lock_on_existing_versioned_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="before", Body=b"x")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    conf = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert conf["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert _error(e) == (409, "InvalidBucketState")
    # The rule can be removed (lock stays enabled).
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert "Rule" not in s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    # The existing object has no retention; its deletion works (cleanup of the fixture).
    with pytest.raises(ClientError) as e:
        s3.get_object_retention(Bucket=bucket, Key="before")
    assert _error(e) == (404, "NoSuchObjectLockConfiguration")
    for v in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


@pytest.mark.parametrize("rule", [
    {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}},
    {"DefaultRetention": {"Mode": "GOVERNANCE"}},
    {"DefaultRetention": {"Mode": "NOPE", "Days": 1}},
    {},
])
def test_bad_configurations(s3, lock_bucket, rule):
    with pytest.raises(ClientError) as e:
        s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": rule})
    assert _error(e) == (400, "MalformedXML")


def test_non_positive_days(s3, lock_bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 0}}})
    assert _error(e) == (400, "InvalidArgument")


# -- default retention --

def test_default_retention_days_applied(s3, lock_bucket):
    s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}})
    put = s3.put_object(Bucket=lock_bucket, Key="d", Body=b"data")
    head = s3.head_object(Bucket=lock_bucket, Key="d")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    expected = head["LastModified"] + timedelta(days=2)
    assert abs((head["ObjectLockRetainUntilDate"] - expected).total_seconds()) < 2
    ret = s3.get_object_retention(Bucket=lock_bucket, Key="d", VersionId=put["VersionId"])["Retention"]
    assert ret["Mode"] == "GOVERNANCE"
    assert ret["RetainUntilDate"] == head["ObjectLockRetainUntilDate"]
    # A simple delete is a delete marker (allowed); the version itself is refused.
    marker = s3.delete_object(Bucket=lock_bucket, Key="d")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=lock_bucket, Key="d", VersionId=put["VersionId"])
    assert _error(e) == (403, "AccessDenied")
    assert e.value.response["Error"]["Message"] == LOCKED
    # The marker itself is no locked version: removing it brings the object back.
    s3.delete_object(Bucket=lock_bucket, Key="d", VersionId=marker["VersionId"])
    assert s3.get_object(Bucket=lock_bucket, Key="d")["Body"].read() == b"data"
    # The root may bypass governance (it holds s3:BypassGovernanceRetention).
    s3.delete_object(Bucket=lock_bucket, Key="d", VersionId=put["VersionId"], BypassGovernanceRetention=True)
    assert "Versions" not in s3.list_object_versions(Bucket=lock_bucket)


def test_default_retention_years_compliance(s3, lock_bucket):
    s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}})
    put = s3.put_object(Bucket=lock_bucket, Key="y", Body=b"data")
    head = s3.head_object(Bucket=lock_bucket, Key="y")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    lm = head["LastModified"]
    days = (head["ObjectLockRetainUntilDate"] - lm).total_seconds() / 86400
    assert 365 <= days <= 366.01
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=lock_bucket, Key="y", VersionId=put["VersionId"], BypassGovernanceRetention=True)
    assert _error(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=lock_bucket)
    assert _error(e) == (409, "BucketNotEmpty")


def test_digest_required_with_retention(endpoint, credentials, s3, lock_bucket):
    """AWS demands Content-MD5 or a checksum on a PUT that carries a retention (explicit or default)."""
    plain = make_client(endpoint, credentials, request_checksum_calculation="when_required")
    with pytest.raises(ClientError) as e:
        plain.put_object(Bucket=lock_bucket, Key="nd", Body=b"x", ObjectLockMode="GOVERNANCE",
                         ObjectLockRetainUntilDate=_future(days=1))
    assert _error(e) == (400, "InvalidRequest")
    assert "Content-MD5" in e.value.response["Error"]["Message"]
    # Without any lock: no digest needed.
    plain.put_object(Bucket=lock_bucket, Key="nd", Body=b"x")
    s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    with pytest.raises(ClientError) as e:
        plain.put_object(Bucket=lock_bucket, Key="nd2", Body=b"x")
    assert _error(e) == (400, "InvalidRequest")
    # With Content-MD5 it is accepted.
    plain.put_object(Bucket=lock_bucket, Key="nd2", Body=b"x", ContentMD5="ndTkYSaMgDT1yFZOFVxnpg==")


# -- explicit retention and headers --

def test_put_with_retention_headers(s3, lock_bucket):
    until = _future(days=3)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=lock_bucket, Key="h", Body=b"x", ObjectLockMode="GOVERNANCE")
    assert _error(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=lock_bucket, Key="h", Body=b"x", ObjectLockRetainUntilDate=until)
    assert _error(e) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=lock_bucket, Key="h", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=_future(days=-1))
    assert _error(e) == (400, "InvalidArgument")
    put = s3.put_object(Bucket=lock_bucket, Key="h", Body=b"x", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="OFF")
    got = s3.get_object(Bucket=lock_bucket, Key="h")
    assert got["ObjectLockMode"] == "GOVERNANCE"
    assert got["ObjectLockRetainUntilDate"] == until
    assert got["ObjectLockLegalHoldStatus"] == "OFF"
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="h")["LegalHold"]["Status"] == "OFF"
    # Overwriting creates a new version: allowed, the locked one stays.
    s3.put_object(Bucket=lock_bucket, Key="h", Body=b"y")
    assert s3.get_object(Bucket=lock_bucket, Key="h", VersionId=put["VersionId"])["Body"].read() == b"x"
    # The new version has no retention of its own (no default rule).
    with pytest.raises(ClientError) as e:
        s3.get_object_retention(Bucket=lock_bucket, Key="h")
    assert _error(e) == (404, "NoSuchObjectLockConfiguration")
    with pytest.raises(ClientError) as e:
        s3.get_object_legal_hold(Bucket=lock_bucket, Key="h")
    assert _error(e) == (404, "NoSuchObjectLockConfiguration")
    s3.delete_object(Bucket=lock_bucket, Key="h", VersionId=put["VersionId"], BypassGovernanceRetention=True)


def test_compliance_is_immutable(s3, lock_bucket):
    until = _future(days=2)
    put = s3.put_object(Bucket=lock_bucket, Key="c", Body=b"x", ObjectLockMode="COMPLIANCE",
                        ObjectLockRetainUntilDate=until)
    vid = put["VersionId"]
    for retention, bypass in (({"Mode": "COMPLIANCE", "RetainUntilDate": _future(days=1)}, True),
                              ({"Mode": "GOVERNANCE", "RetainUntilDate": _future(days=5)}, True),
                              ({}, True)):
        with pytest.raises(ClientError) as e:
            s3.put_object_retention(Bucket=lock_bucket, Key="c", VersionId=vid, Retention=retention,
                                    BypassGovernanceRetention=bypass)
        assert _error(e) == (403, "AccessDenied")
    # Extending is allowed.
    later = _future(days=4)
    s3.put_object_retention(Bucket=lock_bucket, Key="c", VersionId=vid,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    assert s3.get_object_retention(Bucket=lock_bucket, Key="c", VersionId=vid)["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": later}
    for kw in ({}, {"BypassGovernanceRetention": True}):
        with pytest.raises(ClientError) as e:
            s3.delete_object(Bucket=lock_bucket, Key="c", VersionId=vid, **kw)
        assert _error(e) == (403, "AccessDenied")
    # DeleteObjects reports it per key.
    r = s3.delete_objects(Bucket=lock_bucket, BypassGovernanceRetention=True,
                          Delete={"Objects": [{"Key": "c", "VersionId": vid}]})
    assert r["Errors"][0]["Code"] == "AccessDenied" and r["Errors"][0]["VersionId"] == vid
    assert "Deleted" not in r
    assert s3.get_object(Bucket=lock_bucket, Key="c", VersionId=vid)["Body"].read() == b"x"


def test_governance_rules(s3, lock_bucket):
    put = s3.put_object(Bucket=lock_bucket, Key="g", Body=b"x")
    vid = put["VersionId"]
    until = _future(days=3)
    s3.put_object_retention(Bucket=lock_bucket, Key="g", VersionId=vid,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    # Shortening, removing, or turning it into COMPLIANCE needs the bypass.
    for retention in ({"Mode": "GOVERNANCE", "RetainUntilDate": _future(days=1)}, {},
                      {"Mode": "COMPLIANCE", "RetainUntilDate": _future(days=3, seconds=5)}):
        with pytest.raises(ClientError) as e:
            s3.put_object_retention(Bucket=lock_bucket, Key="g", VersionId=vid, Retention=retention)
        assert _error(e) == (403, "AccessDenied")
    s3.put_object_retention(Bucket=lock_bucket, Key="g", VersionId=vid, BypassGovernanceRetention=True,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _future(days=1)})
    # Past dates are refused.
    with pytest.raises(ClientError) as e:
        s3.put_object_retention(Bucket=lock_bucket, Key="g", VersionId=vid, BypassGovernanceRetention=True,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _future(days=-1)})
    assert _error(e) == (400, "InvalidArgument")
    # Removing it with the bypass unlocks the version.
    s3.put_object_retention(Bucket=lock_bucket, Key="g", VersionId=vid, BypassGovernanceRetention=True,
                            Retention={})
    with pytest.raises(ClientError) as e:
        s3.get_object_retention(Bucket=lock_bucket, Key="g", VersionId=vid)
    assert _error(e) == (404, "NoSuchObjectLockConfiguration")
    s3.delete_object(Bucket=lock_bucket, Key="g", VersionId=vid)


def test_retention_expires(s3, lock_bucket):
    """A retention whose date has passed protects nothing (no clock games: a 2-second one)."""
    until = datetime.now(UTC) + timedelta(seconds=2)
    put = s3.put_object(Bucket=lock_bucket, Key="e", Body=b"x", ObjectLockMode="COMPLIANCE",
                        ObjectLockRetainUntilDate=until)
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=lock_bucket, Key="e", VersionId=put["VersionId"])
    while datetime.now(UTC) < until + timedelta(seconds=0.5):
        time.sleep(0.2)
    s3.delete_object(Bucket=lock_bucket, Key="e", VersionId=put["VersionId"])


def test_legal_hold(s3, lock_bucket):
    put = s3.put_object(Bucket=lock_bucket, Key="lh", Body=b"x", ObjectLockLegalHoldStatus="ON")
    vid = put["VersionId"]
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="lh")["LegalHold"]["Status"] == "ON"
    assert s3.head_object(Bucket=lock_bucket, Key="lh")["ObjectLockLegalHoldStatus"] == "ON"
    for kw in ({}, {"BypassGovernanceRetention": True}):
        with pytest.raises(ClientError) as e:
            s3.delete_object(Bucket=lock_bucket, Key="lh", VersionId=vid, **kw)
        assert _error(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        s3.put_object_legal_hold(Bucket=lock_bucket, Key="lh", VersionId=vid, LegalHold={"Status": "MAYBE"})
    assert _error(e) == (400, "MalformedXML")
    s3.put_object_legal_hold(Bucket=lock_bucket, Key="lh", VersionId=vid, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="lh", VersionId=vid)["LegalHold"]["Status"] == "OFF"
    s3.delete_object(Bucket=lock_bucket, Key="lh", VersionId=vid)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=lock_bucket, Key="lh", Body=b"x", ObjectLockLegalHoldStatus="MAYBE")
    assert _error(e) == (400, "InvalidArgument")


def test_multipart_with_lock(s3, lock_bucket):
    until = _future(days=2)
    up = s3.create_multipart_upload(Bucket=lock_bucket, Key="mp", ObjectLockMode="GOVERNANCE",
                                    ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")
    part = s3.upload_part(Bucket=lock_bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"m" * 100)
    done = s3.complete_multipart_upload(Bucket=lock_bucket, Key="mp", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    head = s3.head_object(Bucket=lock_bucket, Key="mp")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]) \
        == ("GOVERNANCE", until, "ON")
    # The internal upload bookkeeping never shows as object headers.
    assert not any(h.startswith("x-coffre") for h in head["ResponseMetadata"]["HTTPHeaders"])
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=lock_bucket, Key="mp", VersionId=done["VersionId"], BypassGovernanceRetention=True)
    assert _error(e) == (403, "AccessDenied")  # the legal hold wins over the bypass
    s3.put_object_legal_hold(Bucket=lock_bucket, Key="mp", LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=lock_bucket, Key="mp", VersionId=done["VersionId"], BypassGovernanceRetention=True)
    # Default retention reaches multipart objects too.
    s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    up = s3.create_multipart_upload(Bucket=lock_bucket, Key="mp2")
    part = s3.upload_part(Bucket=lock_bucket, Key="mp2", UploadId=up["UploadId"], PartNumber=1, Body=b"m")
    s3.complete_multipart_upload(Bucket=lock_bucket, Key="mp2", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.get_object_retention(Bucket=lock_bucket, Key="mp2")["Retention"]["Mode"] == "GOVERNANCE"
    # Lock headers on an upload into a plain bucket: refused at creation.
    plain = _name()
    s3.create_bucket(Bucket=plain)
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=plain, Key="x", ObjectLockMode="GOVERNANCE",
                                   ObjectLockRetainUntilDate=until)
    assert _error(e) == (400, "InvalidRequest")
    s3.delete_bucket(Bucket=plain)


def test_copy_with_lock(s3, lock_bucket, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied")
    until = _future(days=1)
    r = s3.copy_object(Bucket=lock_bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    vid = r["VersionId"]
    assert s3.get_object_retention(Bucket=lock_bucket, Key="dst")["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": until}
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=lock_bucket, Key="dst", VersionId=vid)
    assert _error(e) == (403, "AccessDenied")
    # A copy out of a lock bucket does not carry the lock along.
    s3.copy_object(Bucket=bucket, Key="out", CopySource={"Bucket": lock_bucket, "Key": "dst"})
    head = s3.head_object(Bucket=bucket, Key="out")
    assert "ObjectLockMode" not in head


# -- the governance bypass needs the permission --

def _user(server, endpoint, tenant_creds, tenant_name: str, statements: list[dict]):
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=tenant_creds[0],
                       aws_secret_access_key=tenant_creds[1], config=Config(retries={"max_attempts": 1}))
    user = "u-" + uuid.uuid4().hex[:10]
    creds = create_user_key(server, tenant_name, user)
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    return make_client(endpoint, creds)


def test_bypass_needs_permission(server, endpoint):
    from tests.tenants import admin_client

    tenant = "t-" + uuid.uuid4().hex[:12]
    root_creds = create_tenant(server, tenant)
    assert admin_client(server)  # the tenant exists on the admin plane
    root = make_client(endpoint, root_creds)
    b = _name()
    root.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
    allow_s3 = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    deny_bypass = {"Effect": "Deny", "Action": "s3:BypassGovernanceRetention", "Resource": "*"}
    allowed = _user(server, endpoint, root_creds, tenant, [allow_s3])
    refused = _user(server, endpoint, root_creds, tenant, [allow_s3, deny_bypass])
    limited = _user(server, endpoint, root_creds, tenant, [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
                                       "s3:PutObjectRetention"], "Resource": "*"}])

    def locked(key: str) -> str:
        return root.put_object(Bucket=b, Key=key, Body=b"x", ObjectLockMode="GOVERNANCE",
                               ObjectLockRetainUntilDate=_future(days=1))["VersionId"]

    # Without the permission the header changes nothing: refused like no bypass at all.
    for client in (refused, limited):
        vid = locked("k")
        with pytest.raises(ClientError) as e:
            client.delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True)
        assert _error(e) == (403, "AccessDenied")
        with pytest.raises(ClientError) as e:
            client.put_object_retention(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True,
                                        Retention={})
        assert _error(e) == (403, "AccessDenied")
        r = client.delete_objects(Bucket=b, BypassGovernanceRetention=True,
                                  Delete={"Objects": [{"Key": "k", "VersionId": vid}]})
        assert [x["Code"] for x in r["Errors"]] == ["AccessDenied"]
        # Extending needs no bypass.
        client.put_object_retention(Bucket=b, Key="k", VersionId=vid,
                                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _future(days=2)})
        root.delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True)
    # A user without s3:GetObjectRetention does not see the lock headers.
    locked("seen")
    assert "ObjectLockMode" not in limited.head_object(Bucket=b, Key="seen")
    assert allowed.head_object(Bucket=b, Key="seen")["ObjectLockMode"] == "GOVERNANCE"
    # With the permission and the header: allowed; without the header: refused.
    vid = locked("k2")
    with pytest.raises(ClientError) as e:
        allowed.delete_object(Bucket=b, Key="k2", VersionId=vid)
    assert _error(e) == (403, "AccessDenied")
    allowed.delete_object(Bucket=b, Key="k2", VersionId=vid, BypassGovernanceRetention=True)
    vid = locked("k3")
    r = allowed.delete_objects(Bucket=b, BypassGovernanceRetention=True,
                               Delete={"Objects": [{"Key": "k3", "VersionId": vid}]})
    assert [d["VersionId"] for d in r["Deleted"]] == [vid]
    # Writing with lock headers needs s3:PutObjectRetention / s3:PutObjectLegalHold.
    no_lock = _user(server, endpoint, root_creds, tenant, [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "*"}])
    with pytest.raises(ClientError) as e:
        no_lock.put_object(Bucket=b, Key="w", Body=b"x", ObjectLockMode="GOVERNANCE",
                           ObjectLockRetainUntilDate=_future(days=1))
    assert _error(e) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        no_lock.put_object(Bucket=b, Key="w", Body=b"x", ObjectLockLegalHoldStatus="ON")
    assert _error(e) == (403, "AccessDenied")
    no_lock.put_object(Bucket=b, Key="w", Body=b"x")
