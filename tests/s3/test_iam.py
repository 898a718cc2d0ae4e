"""The IAM and STS Query API on the S3 endpoint, driven by boto3's iam and sts clients.

Each module run makes two fresh tenants through the admin API (A and B), so listings hold
exactly what these tests created and isolation is tested between two real tenants.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from coffre.s3.iam.actions import IAM_ACTIONS
from tests.conftest import make_client
from tests.s3.test_audit import record_of
from tests.server import OPERATOR_ACCESS_KEY, OPERATOR_SECRET_KEY
from tests.tenants import create_tenant, tenant_status

pytestmark = pytest.mark.skipif("COFFRE_TEST_ENDPOINT" in os.environ, reason="needs coffre's admin API to make tenants")

ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
NS = "{https://iam.amazonaws.com/doc/2010-05-08/}"


def _client(service: str, endpoint: str, creds: tuple[str, str]):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=creds[0],
                        aws_secret_access_key=creds[1], config=Config(retries={"max_attempts": 1}))


def _tenant(server, endpoint: str) -> tuple[str, tuple[str, str]]:
    """A new tenant's id and root credentials (its id is the Account its root is in)."""
    creds = create_tenant(server)
    return _client("sts", endpoint, creds).get_caller_identity()["Account"], creds


class Tenant:
    def __init__(self, endpoint: str, tid: str, creds: tuple[str, str]) -> None:
        self.id = tid
        self.creds = creds
        self.endpoint = endpoint
        self.iam = _client("iam", endpoint, creds)
        self.sts = _client("sts", endpoint, creds)
        self.s3 = make_client(endpoint, creds)


@pytest.fixture(scope="module")
def a(server, endpoint) -> Tenant:
    return Tenant(endpoint, *_tenant(server, endpoint))


@pytest.fixture(scope="module")
def b(server, endpoint) -> Tenant:
    return Tenant(endpoint, *_tenant(server, endpoint))


def name(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def raw(endpoint: str, body: str, creds: tuple[str, str] | None, service: str = "iam") -> requests.Response:
    """A Query API call as an SDK sends it (form body, SigV4 without x-amz-content-sha256)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    req = AWSRequest(method="POST", url=endpoint + "/", data=body.encode(), headers=headers)
    if creds is not None:
        SigV4Auth(Credentials(*creds), service, "us-east-1").add_auth(req)
    return requests.post(endpoint + "/", data=body.encode(), headers=dict(req.headers), timeout=30)


def error_of(resp: requests.Response) -> tuple[str, str]:
    """(Type, Code) of a Query API error (IAM's or STS's namespace)."""
    root = ET.fromstring(resp.content)
    for el in root.iter():
        el.tag = el.tag.split("}", 1)[-1]
    assert root.tag == "ErrorResponse", resp.text
    assert root.findtext("RequestId") == resp.headers["x-amz-request-id"]
    return root.findtext("Error/Type") or "", root.findtext("Error/Code") or ""


# -- identity --
def test_caller_identity_of_a_tenant_root(a):
    got = a.sts.get_caller_identity()
    assert got["Account"] == a.id
    assert got["Arn"] == f"arn:aws:iam::{a.id}:root"
    assert got["UserId"] == a.id


def test_caller_identity_of_the_test_tenant_root(endpoint, credentials):
    got = _client("sts", endpoint, credentials).get_caller_identity()
    assert got["Arn"].endswith(":root") and got["Arn"] == f"arn:aws:iam::{got['Account']}:root"


def test_caller_identity_of_a_user(a):
    u = name()
    created = a.iam.create_user(UserName=u, Path="/team/")["User"]
    key = a.iam.create_access_key(UserName=u)["AccessKey"]
    got = _client("sts", a.endpoint, (key["AccessKeyId"], key["SecretAccessKey"])).get_caller_identity()
    assert got == {**got, "Account": a.id, "UserId": created["UserId"],
                   "Arn": f"arn:aws:iam::{a.id}:user/team/{u}"}


# -- users --
def test_user_crud(a):
    u = name()
    created = a.iam.create_user(UserName=u, Path="/eng/", Tags=[{"Key": "team", "Value": "storage"}])["User"]
    assert created["UserName"] == u and created["Path"] == "/eng/"
    assert created["Arn"] == f"arn:aws:iam::{a.id}:user/eng/{u}"
    assert created["UserId"].startswith("AIDA") and len(created["UserId"]) == 21
    assert created["Tags"] == [{"Key": "team", "Value": "storage"}]
    got = a.iam.get_user(UserName=u)["User"]
    assert got["UserId"] == created["UserId"] and got["CreateDate"] == created["CreateDate"]
    # Names are unique case-insensitively, and found case-insensitively.
    with pytest.raises(ClientError) as e:
        a.iam.create_user(UserName=u.upper())
    assert code(e) == ("EntityAlreadyExists", 409)
    assert a.iam.get_user(UserName=u.upper())["User"]["UserName"] == u
    assert u in [x["UserName"] for x in a.iam.list_users()["Users"]]
    assert [x["UserName"] for x in a.iam.list_users(PathPrefix="/eng/")["Users"]] == [u]
    a.iam.update_user(UserName=u, NewPath="/ops/")
    assert a.iam.get_user(UserName=u)["User"]["Path"] == "/ops/"
    a.iam.delete_user(UserName=u)
    with pytest.raises(ClientError) as e:
        a.iam.get_user(UserName=u)
    assert code(e) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as e:
        a.iam.delete_user(UserName=u)
    assert code(e) == ("NoSuchEntity", 404)


@pytest.mark.parametrize("bad, expected", [
    ("has space", "ValidationError"), ("x" * 65, "ValidationError"), ("a/b", "ValidationError"),
    ("root", "InvalidInput"), ("ROOT", "InvalidInput"),
])
def test_invalid_user_names(a, bad, expected):
    with pytest.raises(ClientError) as e:
        a.iam.create_user(UserName=bad)
    assert code(e) == (expected, 400)


def test_invalid_path(a):
    with pytest.raises(ClientError) as e:
        a.iam.create_user(UserName=name(), Path="no-slashes")
    assert code(e) == ("ValidationError", 400)


def test_user_tags(a):
    u = name()
    a.iam.create_user(UserName=u)
    a.iam.tag_user(UserName=u, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    a.iam.tag_user(UserName=u, Tags=[{"Key": "A", "Value": "3"}])  # keys compare case-insensitively
    assert sorted((t["Key"], t["Value"]) for t in a.iam.list_user_tags(UserName=u)["Tags"]) == [("A", "3"),
                                                                                              ("b", "2")]
    a.iam.untag_user(UserName=u, TagKeys=["b"])
    assert a.iam.list_user_tags(UserName=u)["Tags"] == [{"Key": "A", "Value": "3"}]
    with pytest.raises(ClientError) as e:
        a.iam.tag_user(UserName=u, Tags=[{"Key": "aws:reserved", "Value": "x"}])
    assert code(e) == ("InvalidInput", 400)
    with pytest.raises(ClientError) as e:
        a.iam.tag_user(UserName=u, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    assert code(e) == ("LimitExceeded", 409)
    a.iam.untag_user(UserName=u, TagKeys=["A"])
    a.iam.delete_user(UserName=u)


def test_list_users_pagination(a):
    path = f"/page-{uuid.uuid4().hex[:8]}/"
    names = sorted(name() for _ in range(7))
    for n in names:
        a.iam.create_user(UserName=n, Path=path)
    first = a.iam.list_users(PathPrefix=path, MaxItems=3)
    assert first["IsTruncated"] is True and first["Marker"]
    assert [u["UserName"] for u in first["Users"]] == names[:3]
    second = a.iam.list_users(PathPrefix=path, MaxItems=3, Marker=first["Marker"])
    assert [u["UserName"] for u in second["Users"]] == names[3:6]
    got = [u["UserName"] for page in a.iam.get_paginator("list_users").paginate(
        PathPrefix=path, PaginationConfig={"PageSize": 2}) for u in page["Users"]]
    assert got == names
    last = a.iam.list_users(PathPrefix=path, MaxItems=1000)
    assert last["IsTruncated"] is False and "Marker" not in last
    with pytest.raises(ClientError) as e:
        a.iam.list_users(MaxItems=1001)
    assert code(e) == ("ValidationError", 400)
    for n in names:
        a.iam.delete_user(UserName=n)


# -- access keys --
def test_access_keys(a):
    u = name()
    a.iam.create_user(UserName=u)
    k1 = a.iam.create_access_key(UserName=u)["AccessKey"]
    assert k1["UserName"] == u and k1["Status"] == "Active" and len(k1["SecretAccessKey"]) >= 40
    k2 = a.iam.create_access_key(UserName=u)["AccessKey"]
    with pytest.raises(ClientError) as e:
        a.iam.create_access_key(UserName=u)
    assert code(e) == ("LimitExceeded", 409)
    listed = a.iam.list_access_keys(UserName=u)["AccessKeyMetadata"]
    assert sorted(k["AccessKeyId"] for k in listed) == sorted([k1["AccessKeyId"], k2["AccessKeyId"]])
    # The secret is shown once, at creation.
    assert all("SecretAccessKey" not in k for k in listed)
    last = a.iam.get_access_key_last_used(AccessKeyId=k1["AccessKeyId"])
    assert last["UserName"] == u and "AccessKeyLastUsed" in last
    a.iam.update_access_key(UserName=u, AccessKeyId=k1["AccessKeyId"], Status="Inactive")
    statuses = {k["AccessKeyId"]: k["Status"] for k in a.iam.list_access_keys(UserName=u)["AccessKeyMetadata"]}
    assert statuses == {k1["AccessKeyId"]: "Inactive", k2["AccessKeyId"]: "Active"}
    # An inactive key authenticates nothing.
    with pytest.raises(ClientError) as e:
        _client("sts", a.endpoint, (k1["AccessKeyId"], k1["SecretAccessKey"])).get_caller_identity()
    assert code(e) == ("InvalidClientTokenId", 403)
    with pytest.raises(ClientError) as e:
        a.iam.update_access_key(UserName=u, AccessKeyId=k1["AccessKeyId"], Status="Bogus")
    assert code(e)[1] == 400
    for k in (k1, k2):
        a.iam.delete_access_key(UserName=u, AccessKeyId=k["AccessKeyId"])
    with pytest.raises(ClientError) as e:
        a.iam.delete_access_key(UserName=u, AccessKeyId=k1["AccessKeyId"])
    assert code(e) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as e:
        a.iam.create_access_key(UserName=name())
    assert code(e) == ("NoSuchEntity", 404)
    a.iam.delete_user(UserName=u)


def test_root_access_keys(a):
    """Without UserName, key calls act on the caller: for a tenant root, the root's keys."""
    before = a.iam.list_access_keys()["AccessKeyMetadata"]
    assert a.creds[0] in [k["AccessKeyId"] for k in before]
    assert all("UserName" not in k for k in before)
    made = []
    for _ in range(2 - len(before)):
        made.append(a.iam.create_access_key()["AccessKey"])
    with pytest.raises(ClientError) as e:
        a.iam.create_access_key()
    assert code(e) == ("LimitExceeded", 409)
    for k in made:
        got = _client("sts", a.endpoint, (k["AccessKeyId"], k["SecretAccessKey"])).get_caller_identity()
        assert got["Arn"] == f"arn:aws:iam::{a.id}:root"
        a.iam.delete_access_key(AccessKeyId=k["AccessKeyId"])


def test_user_key_works_on_s3_only_with_a_policy(a):
    u = name()
    a.iam.create_user(UserName=u)
    key = a.iam.create_access_key(UserName=u)["AccessKey"]
    creds = (key["AccessKeyId"], key["SecretAccessKey"])
    s3 = make_client(a.endpoint, creds)
    bucket = "iam-" + uuid.uuid4().hex[:16]
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=bucket)
    assert code(e) == ("AccessDenied", 403)
    a.iam.put_user_policy(UserName=u, PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    # Removing the policy takes effect at once (caches are dropped on every change).
    a.iam.delete_user_policy(UserName=u, PolicyName="s3")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert code(e) == ("AccessDenied", 403)
    a.s3.delete_object(Bucket=bucket, Key="k")
    a.s3.delete_bucket(Bucket=bucket)
    a.iam.delete_access_key(UserName=u, AccessKeyId=key["AccessKeyId"])
    a.iam.delete_user(UserName=u)


def test_users_need_iam_permissions(a):
    u = name()
    a.iam.create_user(UserName=u)
    key = a.iam.create_access_key(UserName=u)["AccessKey"]
    user_iam = _client("iam", a.endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
    with pytest.raises(ClientError) as e:
        user_iam.list_users()
    assert code(e) == ("AccessDenied", 403)
    assert f"arn:aws:iam::{a.id}:user/{u}" in e.value.response["Error"]["Message"]
    assert "iam:ListUsers" in e.value.response["Error"]["Message"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:ListUsers", "iam:GetUser"], "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:*AccessKey*", "Resource": "arn:aws:iam::*:user/${aws:username}"}]}
    a.iam.put_user_policy(UserName=u, PolicyName="self", PolicyDocument=json.dumps(policy))
    assert u in [x["UserName"] for x in user_iam.list_users()["Users"]]
    assert user_iam.get_user()["User"]["UserName"] == u  # no UserName: the caller
    with pytest.raises(ClientError) as e:
        user_iam.create_user(UserName=name())
    assert code(e) == ("AccessDenied", 403)
    # Its own keys, through ${aws:username}; nobody else's.
    assert [k["AccessKeyId"] for k in user_iam.list_access_keys()["AccessKeyMetadata"]] == [key["AccessKeyId"]]
    other = name()
    a.iam.create_user(UserName=other)
    with pytest.raises(ClientError) as e:
        user_iam.create_access_key(UserName=other)
    assert code(e) == ("AccessDenied", 403)
    # GetCallerIdentity needs no permission at all.
    assert _client("sts", a.endpoint, (key["AccessKeyId"], key["SecretAccessKey"])).get_caller_identity()
    a.iam.delete_user(UserName=other)
    a.iam.delete_user_policy(UserName=u, PolicyName="self")
    a.iam.delete_access_key(UserName=u, AccessKeyId=key["AccessKeyId"])
    a.iam.delete_user(UserName=u)


def test_a_right_over_every_users_keys_does_not_reach_the_roots(a):
    """"root" names the tenant root in IamService; as a UserName it is no one (no user may be
    called so), even for a user allowed every key action on every user."""
    u = name()
    a.iam.create_user(UserName=u)
    key = a.iam.create_access_key(UserName=u)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}
    a.iam.put_user_policy(UserName=u, PolicyName="keys", PolicyDocument=json.dumps(policy))
    user_iam = _client("iam", a.endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
    for call in (lambda: user_iam.create_access_key(UserName="root"),
                 lambda: user_iam.list_access_keys(UserName="root"),
                 lambda: user_iam.update_access_key(UserName="root", AccessKeyId=a.creds[0], Status="Inactive"),
                 lambda: user_iam.delete_access_key(UserName="Root", AccessKeyId=a.creds[0]),
                 lambda: user_iam.update_access_key(AccessKeyId=a.creds[0], Status="Inactive")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == ("NoSuchEntity", 404)
    assert a.sts.get_caller_identity()["Arn"].endswith(":root")  # the root key still works
    a.iam.delete_user_policy(UserName=u, PolicyName="keys")
    a.iam.delete_access_key(UserName=u, AccessKeyId=key["AccessKeyId"])
    a.iam.delete_user(UserName=u)


def test_concurrent_key_creation_stays_within_the_limit(a):
    u = name()
    a.iam.create_user(UserName=u)
    clients = [_client("iam", a.endpoint, a.creds) for _ in range(6)]

    def create(c):
        try:
            return c.create_access_key(UserName=u)["AccessKey"]["AccessKeyId"]
        except ClientError as e:
            return e.response["Error"]["Code"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(create, clients))
    assert sorted(r for r in results if r == "LimitExceeded") == ["LimitExceeded"] * 4
    assert len(a.iam.list_access_keys(UserName=u)["AccessKeyMetadata"]) == 2
    for k in a.iam.list_access_keys(UserName=u)["AccessKeyMetadata"]:
        a.iam.delete_access_key(UserName=u, AccessKeyId=k["AccessKeyId"])
    a.iam.delete_user(UserName=u)


def test_conditions_on_the_target_users_tags(a):
    """ABAC: a user may manage the keys of users tagged with its own team, and no others."""
    admin, mine, theirs = name(), name(), name()
    a.iam.create_user(UserName=admin, Tags=[{"Key": "team", "Value": "blue"}])
    a.iam.create_user(UserName=mine, Tags=[{"Key": "team", "Value": "blue"}])
    a.iam.create_user(UserName=theirs, Tags=[{"Key": "team", "Value": "red"}])
    key = a.iam.create_access_key(UserName=admin)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "iam:ListAccessKeys", "Resource": "*",
        "Condition": {"StringEquals": {"aws:ResourceTag/team": "${aws:PrincipalTag/team}"}}}]}
    a.iam.put_user_policy(UserName=admin, PolicyName="team", PolicyDocument=json.dumps(policy))
    user_iam = _client("iam", a.endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
    assert user_iam.list_access_keys(UserName=mine)["AccessKeyMetadata"] == []
    with pytest.raises(ClientError) as e:
        user_iam.list_access_keys(UserName=theirs)
    assert code(e) == ("AccessDenied", 403)
    a.iam.delete_user_policy(UserName=admin, PolicyName="team")
    a.iam.delete_access_key(UserName=admin, AccessKeyId=key["AccessKeyId"])
    for u in (admin, mine, theirs):
        a.iam.delete_user(UserName=u)


# -- inline policies --
def test_user_inline_policies(a):
    u = name()
    a.iam.create_user(UserName=u)
    doc = {"Version": "2012-10-17", "Statement": [{"Sid": "Read", "Effect": "Allow", "Action": "s3:GetObject",
                                                  "Resource": "arn:aws:s3:::b/some key & more/*"}]}
    a.iam.put_user_policy(UserName=u, PolicyName="read", PolicyDocument=json.dumps(doc))
    got = a.iam.get_user_policy(UserName=u, PolicyName="read")
    assert got["UserName"] == u and got["PolicyName"] == "read"
    assert got["PolicyDocument"] == doc  # botocore URL-decodes and parses it, as from AWS
    a.iam.put_user_policy(UserName=u, PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
    assert a.iam.list_user_policies(UserName=u)["PolicyNames"] == ["read", "s3"]
    page = a.iam.list_user_policies(UserName=u, MaxItems=1)
    assert page["PolicyNames"] == ["read"] and page["IsTruncated"]
    with pytest.raises(ClientError) as e:
        a.iam.get_user_policy(UserName=u, PolicyName="nope")
    assert code(e) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as e:
        a.iam.put_user_policy(UserName=u, PolicyName="bad", PolicyDocument='{"Statement": "nope"')
    assert code(e) == ("MalformedPolicyDocument", 400)
    with pytest.raises(ClientError) as e:
        a.iam.put_user_policy(UserName=u, PolicyName="bad", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                                                     "Principal": "*"}]}))
    assert code(e) == ("MalformedPolicyDocument", 400)
    with pytest.raises(ClientError) as e:
        a.iam.put_user_policy(UserName=name(), PolicyName="p", PolicyDocument=json.dumps(ALLOW_S3))
    assert code(e) == ("NoSuchEntity", 404)
    # A user's inline policies total at most 2,048 non-white-space characters (AWS's quota).
    big = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::bucket/{'x' * 60}{i}/*"}
        for i in range(25)]}
    with pytest.raises(ClientError) as e:
        a.iam.put_user_policy(UserName=u, PolicyName="big", PolicyDocument=json.dumps(big))
    assert code(e) == ("LimitExceeded", 409)
    for p in ("read", "s3"):
        a.iam.delete_user_policy(UserName=u, PolicyName=p)
    with pytest.raises(ClientError) as e:
        a.iam.delete_user_policy(UserName=u, PolicyName="read")
    assert code(e) == ("NoSuchEntity", 404)
    a.iam.delete_user(UserName=u)


def test_delete_user_conflicts(a):
    u, g = name(), name("g")
    a.iam.create_user(UserName=u)
    a.iam.create_group(GroupName=g)
    key = a.iam.create_access_key(UserName=u)["AccessKey"]
    a.iam.put_user_policy(UserName=u, PolicyName="p", PolicyDocument=json.dumps(ALLOW_S3))
    a.iam.add_user_to_group(GroupName=g, UserName=u)
    for undo in (lambda: a.iam.delete_access_key(UserName=u, AccessKeyId=key["AccessKeyId"]),
                 lambda: a.iam.delete_user_policy(UserName=u, PolicyName="p"),
                 lambda: a.iam.remove_user_from_group(GroupName=g, UserName=u)):
        with pytest.raises(ClientError) as e:
            a.iam.delete_user(UserName=u)
        assert code(e) == ("DeleteConflict", 409)
        undo()
    a.iam.delete_user(UserName=u)
    a.iam.delete_group(GroupName=g)


# -- managed policies --
def test_managed_policies(a):
    u, g, p = name(), name("g"), name("p")
    a.iam.create_user(UserName=u)
    a.iam.create_group(GroupName=g)
    created = a.iam.create_policy(PolicyName=p, Path="/app/", PolicyDocument=json.dumps(ALLOW_S3),
                                  Description="all of s3")["Policy"]
    arn = f"arn:aws:iam::{a.id}:policy/app/{p}"
    assert created["Arn"] == arn and created["PolicyId"].startswith("ANPA")
    assert created["DefaultVersionId"] == "v1" and created["AttachmentCount"] == 0
    got = a.iam.get_policy(PolicyArn=arn)["Policy"]
    assert got["PolicyName"] == p and got["Description"] == "all of s3"
    version = a.iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert version["Document"] == ALLOW_S3 and version["IsDefaultVersion"] is True
    with pytest.raises(ClientError) as e:
        a.iam.get_policy_version(PolicyArn=arn, VersionId="v2")
    assert code(e) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as e:
        a.iam.create_policy(PolicyName=p.upper(), PolicyDocument=json.dumps(ALLOW_S3))
    assert code(e) == ("EntityAlreadyExists", 409)
    assert arn in [x["Arn"] for x in a.iam.list_policies(Scope="Local")["Policies"]]
    assert a.iam.list_policies(Scope="AWS")["Policies"] == []

    a.iam.attach_user_policy(UserName=u, PolicyArn=arn)
    a.iam.attach_group_policy(GroupName=g, PolicyArn=arn)
    assert a.iam.list_attached_user_policies(UserName=u)["AttachedPolicies"] == [{"PolicyName": p, "PolicyArn": arn}]
    assert a.iam.list_attached_group_policies(GroupName=g)["AttachedPolicies"] == [{"PolicyName": p,
                                                                                     "PolicyArn": arn}]
    assert a.iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 2
    attached = a.iam.list_policies(Scope="Local", OnlyAttached=True)["Policies"]
    assert [x["Arn"] for x in attached] == [arn]
    with pytest.raises(ClientError) as e:
        a.iam.delete_policy(PolicyArn=arn)
    assert code(e) == ("DeleteConflict", 409)
    with pytest.raises(ClientError) as e:
        a.iam.delete_user(UserName=u)
    assert code(e) == ("DeleteConflict", 409)
    a.iam.detach_user_policy(UserName=u, PolicyArn=arn)
    a.iam.detach_group_policy(GroupName=g, PolicyArn=arn)
    with pytest.raises(ClientError) as e:
        a.iam.detach_user_policy(UserName=u, PolicyArn=arn)
    assert code(e) == ("NoSuchEntity", 404)
    a.iam.delete_policy(PolicyArn=arn)
    with pytest.raises(ClientError) as e:
        a.iam.get_policy(PolicyArn=arn)
    assert code(e) == ("NoSuchEntity", 404)
    # AWS-managed policies do not exist here; a malformed ARN is invalid input.
    with pytest.raises(ClientError) as e:
        a.iam.attach_user_policy(UserName=u, PolicyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess")
    assert code(e) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as e:
        a.iam.get_policy(PolicyArn="arn:aws:s3:::not-a-policy-arn")
    assert code(e) == ("InvalidInput", 400)
    with pytest.raises(ClientError) as e:
        a.iam.create_policy(PolicyName=name("p"), PolicyDocument="not json")
    assert code(e) == ("MalformedPolicyDocument", 400)
    a.iam.delete_user(UserName=u)
    a.iam.delete_group(GroupName=g)


def test_policy_versions_and_entities(a):
    """What IaC tools do to update a managed policy: a new default version, then the old one
    deleted; and who a policy is attached to."""
    u, g, p = name(), name("g"), name("p")
    a.iam.create_user(UserName=u)
    a.iam.create_group(GroupName=g)
    arn = a.iam.create_policy(PolicyName=p, PolicyDocument=json.dumps(ALLOW_S3))["Policy"]["Arn"]
    a.iam.attach_user_policy(UserName=u, PolicyArn=arn)
    a.iam.attach_group_policy(GroupName=g, PolicyArn=arn)
    entities = a.iam.list_entities_for_policy(PolicyArn=arn)
    assert [x["UserName"] for x in entities["PolicyUsers"]] == [u]
    assert [x["GroupName"] for x in entities["PolicyGroups"]] == [g]
    assert entities["PolicyRoles"] == []
    assert a.iam.list_entities_for_policy(PolicyArn=arn, EntityFilter="Group")["PolicyUsers"] == []

    read_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}
    v2 = a.iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(read_only),
                                     SetAsDefault=True)["PolicyVersion"]
    assert v2["VersionId"] == "v2" and v2["IsDefaultVersion"] is True
    assert a.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"
    assert a.iam.get_policy_version(PolicyArn=arn, VersionId="v2")["PolicyVersion"]["Document"] == read_only
    assert [v["VersionId"] for v in a.iam.list_policy_versions(PolicyArn=arn)["Versions"]] == ["v2"]
    with pytest.raises(ClientError) as e:
        a.iam.delete_policy_version(PolicyArn=arn, VersionId="v1")
    assert code(e) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as e:
        a.iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
    assert code(e) == ("DeleteConflict", 409)
    with pytest.raises(ClientError) as e:
        a.iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(ALLOW_S3), SetAsDefault=False)
    assert code(e) == ("InvalidInput", 400)
    a.iam.set_default_policy_version(PolicyArn=arn, VersionId="v2")
    a.iam.detach_user_policy(UserName=u, PolicyArn=arn)
    a.iam.detach_group_policy(GroupName=g, PolicyArn=arn)
    a.iam.delete_policy(PolicyArn=arn)
    a.iam.delete_user(UserName=u)
    a.iam.delete_group(GroupName=g)


def test_managed_policy_through_a_group_grants_s3(a):
    u, g, p = name(), name("g"), name("p")
    a.iam.create_user(UserName=u)
    a.iam.create_group(GroupName=g)
    arn = a.iam.create_policy(PolicyName=p, PolicyDocument=json.dumps(ALLOW_S3))["Policy"]["Arn"]
    key = a.iam.create_access_key(UserName=u)["AccessKey"]
    s3 = make_client(a.endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
    with pytest.raises(ClientError):
        s3.list_buckets()
    a.iam.attach_group_policy(GroupName=g, PolicyArn=arn)
    a.iam.add_user_to_group(GroupName=g, UserName=u)
    s3.list_buckets()
    a.iam.remove_user_from_group(GroupName=g, UserName=u)
    with pytest.raises(ClientError) as e:
        s3.list_buckets()
    assert code(e) == ("AccessDenied", 403)
    a.iam.detach_group_policy(GroupName=g, PolicyArn=arn)
    a.iam.delete_policy(PolicyArn=arn)
    a.iam.delete_access_key(UserName=u, AccessKeyId=key["AccessKeyId"])
    a.iam.delete_user(UserName=u)
    a.iam.delete_group(GroupName=g)


# -- groups --
def test_groups(a):
    g, u1, u2 = name("g"), name(), name()
    created = a.iam.create_group(GroupName=g, Path="/x/")["Group"]
    assert created["Arn"] == f"arn:aws:iam::{a.id}:group/x/{g}" and created["GroupId"].startswith("AGPA")
    with pytest.raises(ClientError) as e:
        a.iam.create_group(GroupName=g.upper())
    assert code(e) == ("EntityAlreadyExists", 409)
    for u in (u1, u2):
        a.iam.create_user(UserName=u)
        a.iam.add_user_to_group(GroupName=g, UserName=u)
    a.iam.add_user_to_group(GroupName=g, UserName=u1)  # idempotent
    got = a.iam.get_group(GroupName=g)
    assert got["Group"]["GroupName"] == g
    assert sorted(x["UserName"] for x in got["Users"]) == sorted([u1, u2])
    assert [x["GroupName"] for x in a.iam.list_groups_for_user(UserName=u1)["Groups"]] == [g]
    assert g in [x["GroupName"] for x in a.iam.list_groups(PathPrefix="/x/")["Groups"]]
    a.iam.put_group_policy(GroupName=g, PolicyName="gp", PolicyDocument=json.dumps(ALLOW_S3))
    assert a.iam.get_group_policy(GroupName=g, PolicyName="gp")["PolicyDocument"] == ALLOW_S3
    assert a.iam.list_group_policies(GroupName=g)["PolicyNames"] == ["gp"]
    with pytest.raises(ClientError) as e:
        a.iam.delete_group(GroupName=g)
    assert code(e) == ("DeleteConflict", 409)
    a.iam.remove_user_from_group(GroupName=g, UserName=u1)
    a.iam.remove_user_from_group(GroupName=g, UserName=u2)
    with pytest.raises(ClientError) as e:
        a.iam.remove_user_from_group(GroupName=g, UserName=u2)
    assert code(e) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as e:
        a.iam.delete_group(GroupName=g)  # its inline policy still
    assert code(e) == ("DeleteConflict", 409)
    a.iam.delete_group_policy(GroupName=g, PolicyName="gp")
    a.iam.delete_group(GroupName=g)
    with pytest.raises(ClientError) as e:
        a.iam.get_group(GroupName=g)
    assert code(e) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as e:
        a.iam.add_user_to_group(GroupName=g, UserName=u1)
    assert code(e) == ("NoSuchEntity", 404)
    for u in (u1, u2):
        a.iam.delete_user(UserName=u)


# -- tenants see only themselves --
def test_tenant_isolation(a, b):
    u, g, p = name(), name("g"), name("p")
    a.iam.create_user(UserName=u)
    a.iam.create_group(GroupName=g)
    key = a.iam.create_access_key(UserName=u)["AccessKey"]
    arn = a.iam.create_policy(PolicyName=p, PolicyDocument=json.dumps(ALLOW_S3))["Policy"]["Arn"]
    a.iam.put_user_policy(UserName=u, PolicyName="inline", PolicyDocument=json.dumps(ALLOW_S3))
    b_user = name()
    b.iam.create_user(UserName=b_user)

    assert u not in [x["UserName"] for x in b.iam.list_users()["Users"]]
    assert g not in [x["GroupName"] for x in b.iam.list_groups()["Groups"]]
    assert arn not in [x["Arn"] for x in b.iam.list_policies()["Policies"]]
    doc = json.dumps(ALLOW_S3)
    # Every IAM action that names an entity, by tenant B's root, on tenant A's entities.
    attempts = {
        "GetUser": lambda: b.iam.get_user(UserName=u),
        "UpdateUser": lambda: b.iam.update_user(UserName=u, NewPath="/stolen/"),
        "DeleteUser": lambda: b.iam.delete_user(UserName=u),
        "TagUser": lambda: b.iam.tag_user(UserName=u, Tags=[{"Key": "k", "Value": "v"}]),
        "UntagUser": lambda: b.iam.untag_user(UserName=u, TagKeys=["k"]),
        "ListUserTags": lambda: b.iam.list_user_tags(UserName=u),
        "CreateAccessKey": lambda: b.iam.create_access_key(UserName=u),
        "ListAccessKeys": lambda: b.iam.list_access_keys(UserName=u),
        "UpdateAccessKey": lambda: b.iam.update_access_key(AccessKeyId=key["AccessKeyId"], Status="Inactive"),
        "DeleteAccessKey": lambda: b.iam.delete_access_key(AccessKeyId=key["AccessKeyId"]),
        "GetAccessKeyLastUsed": lambda: b.iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]),
        "PutUserPolicy": lambda: b.iam.put_user_policy(UserName=u, PolicyName="x", PolicyDocument=doc),
        "GetUserPolicy": lambda: b.iam.get_user_policy(UserName=u, PolicyName="inline"),
        "DeleteUserPolicy": lambda: b.iam.delete_user_policy(UserName=u, PolicyName="inline"),
        "ListUserPolicies": lambda: b.iam.list_user_policies(UserName=u),
        "AttachUserPolicy": lambda: b.iam.attach_user_policy(UserName=b_user, PolicyArn=arn),
        "DetachUserPolicy": lambda: b.iam.detach_user_policy(UserName=u, PolicyArn=arn),
        "ListAttachedUserPolicies": lambda: b.iam.list_attached_user_policies(UserName=u),
        "ListGroupsForUser": lambda: b.iam.list_groups_for_user(UserName=u),
        "GetPolicy": lambda: b.iam.get_policy(PolicyArn=arn),
        "DeletePolicy": lambda: b.iam.delete_policy(PolicyArn=arn),
        "GetPolicyVersion": lambda: b.iam.get_policy_version(PolicyArn=arn, VersionId="v1"),
        "ListPolicyVersions": lambda: b.iam.list_policy_versions(PolicyArn=arn),
        "CreatePolicyVersion": lambda: b.iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc,
                                                                   SetAsDefault=True),
        "DeletePolicyVersion": lambda: b.iam.delete_policy_version(PolicyArn=arn, VersionId="v1"),
        "SetDefaultPolicyVersion": lambda: b.iam.set_default_policy_version(PolicyArn=arn, VersionId="v1"),
        "ListEntitiesForPolicy": lambda: b.iam.list_entities_for_policy(PolicyArn=arn),
        "GetGroup": lambda: b.iam.get_group(GroupName=g),
        "DeleteGroup": lambda: b.iam.delete_group(GroupName=g),
        "AddUserToGroup": lambda: b.iam.add_user_to_group(GroupName=g, UserName=b_user),
        "RemoveUserFromGroup": lambda: b.iam.remove_user_from_group(GroupName=g, UserName=u),
        "PutGroupPolicy": lambda: b.iam.put_group_policy(GroupName=g, PolicyName="x", PolicyDocument=doc),
        "GetGroupPolicy": lambda: b.iam.get_group_policy(GroupName=g, PolicyName="x"),
        "DeleteGroupPolicy": lambda: b.iam.delete_group_policy(GroupName=g, PolicyName="x"),
        "ListGroupPolicies": lambda: b.iam.list_group_policies(GroupName=g),
        "AttachGroupPolicy": lambda: b.iam.attach_group_policy(GroupName=g, PolicyArn=arn),
        "DetachGroupPolicy": lambda: b.iam.detach_group_policy(GroupName=g, PolicyArn=arn),
        "ListAttachedGroupPolicies": lambda: b.iam.list_attached_group_policies(GroupName=g),
    }
    # The others create or list inside the caller's own tenant (checked above and below).
    own_tenant = {"CreateUser", "ListUsers", "CreateGroup", "ListGroups", "CreatePolicy", "ListPolicies"}
    assert set(attempts) | own_tenant == set(IAM_ACTIONS), "an IAM action is missing from the matrix"
    for action, attempt in attempts.items():
        with pytest.raises(ClientError) as e:
            attempt()
        assert code(e) == ("NoSuchEntity", 404), action
    # Tenant A is untouched.
    assert a.iam.get_user(UserName=u)["User"]["UserName"] == u
    assert a.iam.list_access_keys(UserName=u)["AccessKeyMetadata"][0]["Status"] == "Active"
    assert a.iam.get_policy(PolicyArn=arn)["Policy"]["PolicyName"] == p
    assert a.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v1"
    assert a.iam.get_user(UserName=u)["User"]["Path"] == "/"
    assert a.iam.list_user_policies(UserName=u)["PolicyNames"] == ["inline"]
    # B's user of the same name is B's own.
    b.iam.create_user(UserName=u)
    assert b.iam.get_user(UserName=u)["User"]["Arn"] == f"arn:aws:iam::{b.id}:user/{u}"
    for user in (u, b_user):
        b.iam.delete_user(UserName=user)
    a.iam.delete_user_policy(UserName=u, PolicyName="inline")
    a.iam.delete_access_key(UserName=u, AccessKeyId=key["AccessKeyId"])
    a.iam.delete_user(UserName=u)
    a.iam.delete_group(GroupName=g)
    a.iam.delete_policy(PolicyArn=arn)


@pytest.mark.parametrize("action", sorted(IAM_ACTIONS))
def test_anonymous_callers_are_refused(endpoint, action):
    r = raw(endpoint, f"Action={action}&Version=2010-05-08&UserName=alice", None)
    assert (r.status_code, error_of(r)) == (403, ("Sender", "MissingAuthenticationToken"))


def test_anonymous_sts_is_refused(endpoint):
    r = raw(endpoint, "Action=GetCallerIdentity&Version=2011-06-15", None)
    assert (r.status_code, error_of(r)[1]) == (403, "MissingAuthenticationToken")


def test_audit_records_iam_calls_without_secrets(server, a):
    u = name()
    made = a.iam.create_user(UserName=u)
    key = a.iam.create_access_key(UserName=u)
    rec = record_of(server.data_dir, made["ResponseMetadata"]["RequestId"])
    assert rec["operation"] == "iam:CreateUser" and rec["status"] == 200
    assert rec["principal"] == f"arn:aws:iam::{a.id}:root" and rec["tenant"] == a.id
    rec = record_of(server.data_dir, key["ResponseMetadata"]["RequestId"])
    assert rec["operation"] == "iam:CreateAccessKey"
    assert key["AccessKey"]["SecretAccessKey"] not in json.dumps(rec)
    with pytest.raises(ClientError) as e:
        a.iam.get_user(UserName=name())
    rec = record_of(server.data_dir, e.value.response["ResponseMetadata"]["RequestId"])
    assert (rec["operation"], rec["status"], rec["error_code"]) == ("iam:GetUser", 404, "NoSuchEntity")
    a.iam.delete_access_key(UserName=u, AccessKeyId=key["AccessKey"]["AccessKeyId"])
    a.iam.delete_user(UserName=u)


# -- the protocol itself --
def test_unknown_action_and_version(a):
    r = raw(a.endpoint, "Action=FlyToTheMoon&Version=2010-05-08", a.creds)
    assert r.status_code == 400
    assert error_of(r) == ("Sender", "InvalidAction")
    r = raw(a.endpoint, "Action=ListUsers&Version=1999-01-01", a.creds)
    assert (r.status_code, error_of(r)[1]) == (400, "InvalidAction")
    r = raw(a.endpoint, "Version=2010-05-08", a.creds)
    assert (r.status_code, error_of(r)[1]) == (400, "MissingAction")
    # STS answers only its own actions.
    r = raw(a.endpoint, "Action=ListUsers&Version=2011-06-15", a.creds, service="sts")
    assert (r.status_code, error_of(r)[1]) == (400, "InvalidAction")


def test_response_envelope(a):
    r = raw(a.endpoint, "Action=ListUsers&Version=2010-05-08&MaxItems=1", a.creds)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(r.content)
    assert root.tag == f"{NS}ListUsersResponse"
    assert root.find(f"{NS}ListUsersResult/{NS}IsTruncated") is not None
    assert root.findtext(f"{NS}ResponseMetadata/{NS}RequestId") == r.headers["x-amz-request-id"]


def test_authentication_errors(a, endpoint):
    body = "Action=ListUsers&Version=2010-05-08"
    r = raw(endpoint, body, None)
    assert (r.status_code, error_of(r)[1]) == (403, "MissingAuthenticationToken")
    r = raw(endpoint, body, (a.creds[0], "wrong-secret-wrong-secret-wrong-secret00"))
    assert (r.status_code, error_of(r)[1]) == (403, "SignatureDoesNotMatch")
    r = raw(endpoint, body, ("CONOSUCHKEY000000000", "x" * 40))
    assert (r.status_code, error_of(r)[1]) == (403, "InvalidClientTokenId")
    # The signature covers the body: another body under the same signature is refused.
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    req = AWSRequest(method="POST", url=endpoint + "/", data=body.encode(), headers=headers)
    SigV4Auth(Credentials(*a.creds), "iam", "us-east-1").add_auth(req)
    r = requests.post(endpoint + "/", data=b"Action=CreateUser&Version=2010-05-08&UserName=evil",
                      headers=dict(req.headers), timeout=30)
    assert (r.status_code, error_of(r)[1]) == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError) as e:
        a.iam.get_user(UserName="evil")
    assert code(e) == ("NoSuchEntity", 404)


def test_operator_credentials_refused(endpoint):
    r = raw(endpoint, "Action=GetCallerIdentity&Version=2011-06-15", (OPERATOR_ACCESS_KEY, OPERATOR_SECRET_KEY),
            service="sts")
    assert r.status_code == 403
    assert error_of(r)[1] in ("InvalidClientTokenId", "AccessDenied")


def test_suspended_tenant_is_refused(server, endpoint):
    tenant = "iam-susp-" + uuid.uuid4().hex[:8]
    creds = create_tenant(server, tenant)
    iam = _client("iam", endpoint, creds)
    iam.create_user(UserName="alice")
    tenant_status(server, tenant, "suspend")
    with pytest.raises(ClientError) as e:
        iam.list_users()
    assert code(e) == ("AccountProblem", 403)
    tenant_status(server, tenant, "resume")
    assert [u["UserName"] for u in iam.list_users()["Users"]] == ["alice"]


def test_oversized_body_refused(a):
    r = raw(a.endpoint, "Action=ListUsers&Version=2010-05-08&Pad=" + "x" * (200 * 1024), a.creds)
    assert r.status_code == 400
    assert error_of(r)[0] == "Sender"


def test_s3_signed_post_to_root_is_not_iam(a):
    """A POST / signed for s3 stays an S3 request (S3's error shape, not the Query API's)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    body = b"Action=ListUsers&Version=2010-05-08"
    req = AWSRequest(method="POST", url=a.endpoint + "/", data=body, headers=headers)
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(*a.creds), "s3", "us-east-1").add_auth(req)
    r = requests.post(a.endpoint + "/", data=body, headers=dict(req.headers), timeout=30)
    assert r.status_code == 405
    assert ET.fromstring(r.content).tag == "Error"
