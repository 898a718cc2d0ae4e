"""Bucket policies and the authorisation of every request, with real clients.

A tenant root (the ``s3`` fixture), another tenant made through the admin API, users with
managed policies, and an anonymous caller that signs nothing (urllib).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import empty_bucket, make_client
from tests.server import TENANT
from tests.tenants import admin_client, create_tenant, create_user_key


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def anonymous(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """An unsigned HTTP request, as a browser or curl sends it."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def public_read(bucket: str) -> str:
    return policy({"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                   "Resource": f"arn:aws:s3:::{bucket}/*"})


@pytest.fixture
def open_bucket(s3, bucket):
    """A bucket whose Block Public Access is off (a new one blocks everything)."""
    s3.delete_public_access_block(Bucket=bucket)
    return bucket


@pytest.fixture(scope="module")
def other(server, endpoint):
    """Another tenant: its name, id and root client."""
    name = "other-" + uuid.uuid4().hex[:10]
    akid, secret = create_tenant(server, name)
    doc = admin_client(server).call("GET", f"/tenants/{name}")
    client = make_client(endpoint, (akid, secret))
    return {"name": name, "id": doc["id"], "client": client, "creds": (akid, secret)}


@pytest.fixture(scope="module")
def test_tenant_id(server) -> str:
    return admin_client(server).call("GET", f"/tenants/{TENANT}")["id"]


def user_with_policy(server, endpoint, tenant: str, document: str | None) -> tuple[object, str]:
    """A new user of ``tenant`` with ``document`` as its managed policy; its client and name."""
    name = "u" + uuid.uuid4().hex[:10]
    akid, secret = create_user_key(server, tenant, name)
    if document is not None:
        c = admin_client(server)
        c.call("POST", f"/tenants/{tenant}/policies", {"name": "p-" + name, "document": json.loads(document)})
        c.call("PUT", f"/tenants/{tenant}/users/{name}/policies/p-{name}")
    return make_client(endpoint, (akid, secret)), name


def test_every_handler_has_an_authorisation_rule():
    """A new operation cannot skip authorisation: each registered handler names its action."""
    import coffre.s3.app  # noqa: F401  registers every handler
    from coffre.s3.authz import ACTIONS
    from coffre.s3.context import HANDLERS

    assert sorted(set(HANDLERS) - set(ACTIONS)) == []


def test_public_read_policy_opens_objects_to_anonymous_get(s3, endpoint, open_bucket):
    b = open_bucket
    s3.put_object(Bucket=b, Key="pub/hello.txt", Body=b"hello world")
    assert anonymous("GET", f"{endpoint}/{b}/pub/hello.txt")[0] == 403
    s3.put_bucket_policy(Bucket=b, Policy=public_read(b))
    status, body = anonymous("GET", f"{endpoint}/{b}/pub/hello.txt")
    assert (status, body) == (200, b"hello world")
    assert anonymous("HEAD", f"{endpoint}/{b}/pub/hello.txt")[0] == 200
    # Only what the policy grants: no listing, no writes, no deletes.
    assert anonymous("GET", f"{endpoint}/{b}")[0] == 403
    assert anonymous("PUT", f"{endpoint}/{b}/x", b"x")[0] == 403
    assert anonymous("DELETE", f"{endpoint}/{b}/pub/hello.txt")[0] == 403
    # Without s3:ListBucket a missing key is AccessDenied, not NoSuchKey (no existence probe).
    status, body = anonymous("GET", f"{endpoint}/{b}/pub/missing.txt")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is True


def test_block_public_access_overrides_a_public_policy(s3, endpoint, open_bucket):
    b = open_bucket
    s3.put_object(Bucket=b, Key="k", Body=b"v")
    s3.put_bucket_policy(Bucket=b, Policy=public_read(b))
    assert anonymous("GET", f"{endpoint}/{b}/k")[0] == 200
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
    assert anonymous("GET", f"{endpoint}/{b}/k")[0] == 403
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"v"  # the owner is not restricted
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    assert anonymous("GET", f"{endpoint}/{b}/k")[0] == 200  # an existing policy keeps working
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket=b, Policy=public_read(b))
    assert code(e) == "AccessDenied"


def test_new_buckets_block_public_policies(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    assert code(e) == "AccessDenied"
    # A policy that is not public is accepted.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False


def test_policy_round_trip(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert code(e) == "NoSuchBucketPolicy"
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy_status(Bucket=bucket)
    assert code(e) == "NoSuchBucketPolicy"
    text = ('{"Version":"2012-10-17","Statement":[{"Sid":"x","Effect":"Deny","Principal":{"AWS":"*"},'
            f'"Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::{bucket}"}}]}}')
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == text  # byte for byte
    resp = s3.delete_bucket_policy(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert code(e) == "NoSuchBucketPolicy"


@pytest.mark.parametrize("document, message", [
    ("not json", "Policies must be valid JSON"),
    ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",'
     '"Resource":"arn:aws:s3:::BUCKET/*"}]}', "Principal"),
    ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",'
     '"Resource":"arn:aws:s3:::another-bucket-entirely/*"}]}', "resource"),
    ('{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject",'
     '"Resource":"arn:aws:s3:::BUCKET/*"}]}', "Effect"),
    ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:NoSuchAction",'
     '"Resource":"arn:aws:s3:::BUCKET/*"}]}', "action"),
])
def test_malformed_policies_say_what_is_wrong(s3, bucket, document, message):
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket=bucket, Policy=document.replace("BUCKET", bucket))
    assert code(e) == "MalformedPolicy"
    assert message.lower() in e.value.response["Error"]["Message"].lower()


def test_policy_size_limit(s3, bucket):
    big = policy(*[{"Sid": f"s{i}", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                    "Resource": f"arn:aws:s3:::{bucket}/{'x' * 200}{i}"} for i in range(120)])
    assert len(big) > 20 * 1024
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket=bucket, Policy=big)
    assert code(e) == "MalformedPolicy"


def test_explicit_deny_binds_the_tenant_root(s3, bucket, test_tenant_id):
    s3.put_object(Bucket=bucket, Key="keep/me", Body=b"1")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({
        "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{test_tenant_id}:root"},
        "Action": ["s3:DeleteObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{bucket}/keep/*"}))
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=bucket, Key="keep/me")
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="keep/other", Body=b"2")
    assert code(e) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="keep/me")["Body"].read() == b"1"
    s3.put_object(Bucket=bucket, Key="elsewhere", Body=b"3")
    # DeleteObjects: each key on its own; the denied one is an AccessDenied entry.
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep/me"}, {"Key": "elsewhere"}]})
    assert [d["Key"] for d in out.get("Deleted", [])] == ["elsewhere"]
    assert [(x["Key"], x["Code"]) for x in out["Errors"]] == [("keep/me", "AccessDenied")]
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="keep/me")


def test_conditions_source_ip_and_prefix(s3, endpoint, open_bucket):
    b = open_bucket
    s3.put_object(Bucket=b, Key="public/a", Body=b"a")
    s3.put_object(Bucket=b, Key="private/b", Body=b"b")
    s3.put_bucket_policy(Bucket=b, Policy=policy(
        {"Sid": "ListPublicOnly", "Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
         "Resource": f"arn:aws:s3:::{b}", "Condition": {"StringEquals": {"s3:prefix": "public/"}}},
        {"Sid": "ReadFromLoopback", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{b}/*", "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        {"Sid": "NothingFromDocNet", "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{b}/*", "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}))
    status, body = anonymous("GET", f"{endpoint}/{b}?list-type=2&prefix=public/")
    assert status == 200 and b"<Key>public/a</Key>" in body and b"private/b" not in body
    assert anonymous("GET", f"{endpoint}/{b}?list-type=2")[0] == 403
    assert anonymous("GET", f"{endpoint}/{b}?list-type=2&prefix=private/")[0] == 403
    assert anonymous("GET", f"{endpoint}/{b}/private/b") == (200, b"b")
    assert anonymous("PUT", f"{endpoint}/{b}/new", b"n")[0] == 403  # not from 192.0.2.0/24
    # An explicit deny on the caller's address binds even the owner.
    s3.put_bucket_policy(Bucket=b, Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}}))
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=b, Key="public/a")
    assert code(e) == "AccessDenied"
    s3.delete_bucket_policy(Bucket=b)


def test_unknown_bucket_is_no_such_bucket_for_anyone(endpoint, other):
    name = "nobody-" + uuid.uuid4().hex[:12]
    status, body = anonymous("GET", f"{endpoint}/{name}/k")
    assert status == 404 and b"NoSuchBucket" in body
    with pytest.raises(ClientError) as e:
        other["client"].get_object(Bucket=name, Key="k")
    assert code(e) == "NoSuchBucket"


def test_another_tenant_is_denied_without_revealing_objects(s3, bucket, other):
    s3.put_object(Bucket=bucket, Key="exists", Body=b"x")
    b_s3 = other["client"]
    for call in (lambda: b_s3.get_object(Bucket=bucket, Key="exists"),
                 lambda: b_s3.get_object(Bucket=bucket, Key="does-not-exist"),
                 lambda: b_s3.list_objects_v2(Bucket=bucket),
                 lambda: b_s3.put_object(Bucket=bucket, Key="intruder", Body=b"x"),
                 lambda: b_s3.get_bucket_policy(Bucket=bucket),
                 lambda: b_s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket)),
                 lambda: b_s3.get_bucket_acl(Bucket=bucket),
                 lambda: b_s3.delete_bucket(Bucket=bucket)):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        b_s3.head_object(Bucket=bucket, Key="exists")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    names = [x["Name"] for x in b_s3.list_buckets()["Buckets"]]
    assert bucket not in names
    assert anonymous("GET", f"{endpoint_of(s3)}/")[0] == 403  # anonymous ListBuckets


def endpoint_of(client) -> str:
    return client.meta.endpoint_url


def test_cross_tenant_access_needs_both_sides(server, endpoint, s3, bucket, other):
    s3.put_object(Bucket=bucket, Key="shared/doc", Body=b"shared")
    b_root = other["client"]
    b_user, b_user_name = user_with_policy(server, endpoint, other["name"], None)
    b_reader, _ = user_with_policy(server, endpoint, other["name"], policy(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"}))
    for client in (b_root, b_user, b_reader):
        with pytest.raises(ClientError) as e:
            client.get_object(Bucket=bucket, Key="shared/doc")
        assert code(e) == "AccessDenied"
    # The resource side: tenant A opens shared/* to tenant B (its account principal).
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{other['id']}:root"}, "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/shared/*"}))
    assert b_root.get_object(Bucket=bucket, Key="shared/doc")["Body"].read() == b"shared"
    assert b_reader.get_object(Bucket=bucket, Key="shared/doc")["Body"].read() == b"shared"
    with pytest.raises(ClientError) as e:  # its own tenant granted it nothing
        b_user.get_object(Bucket=bucket, Key="shared/doc")
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:  # only what was granted
        b_root.put_object(Bucket=bucket, Key="shared/new", Body=b"x")
    assert code(e) == "AccessDenied"
    # Only the bucket's own tenant manages its policy, whatever a policy says (AWS: 405).
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({
        "Effect": "Allow", "Principal": {"AWS": other["id"]}, "Action": "s3:GetBucketPolicy",
        "Resource": f"arn:aws:s3:::{bucket}"}))
    with pytest.raises(ClientError) as e:
        b_root.get_bucket_policy(Bucket=bucket)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    s3.delete_bucket_policy(Bucket=bucket)


def test_cross_tenant_write_belongs_to_the_bucket_owner(s3, bucket, other):
    b_root = other["client"]
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({
        "Effect": "Allow", "Principal": {"AWS": other["id"]}, "Action": ["s3:PutObject", "s3:GetObject"],
        "Resource": f"arn:aws:s3:::{bucket}/*"}))
    b_root.put_object(Bucket=bucket, Key="from-b", Body=b"written by b")
    owner = s3.list_objects(Bucket=bucket)["Contents"][0]["Owner"]["ID"]
    assert owner == s3.list_buckets()["Owner"]["ID"]  # BucketOwnerEnforced: the bucket owner
    # Encrypted for the bucket's tenant: both read it back.
    assert s3.get_object(Bucket=bucket, Key="from-b")["Body"].read() == b"written by b"
    assert b_root.get_object(Bucket=bucket, Key="from-b")["Body"].read() == b"written by b"
    s3.delete_bucket_policy(Bucket=bucket)


def test_user_policy_with_username_variable(server, endpoint, s3, bucket):
    doc = policy(
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": f"arn:aws:s3:::{bucket}/home/${{aws:username}}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": "home/${aws:username}/*"}}})
    alice, name = user_with_policy(server, endpoint, TENANT, doc)
    alice.put_object(Bucket=bucket, Key=f"home/{name}/notes.txt", Body=b"mine")
    assert alice.get_object(Bucket=bucket, Key=f"home/{name}/notes.txt")["Body"].read() == b"mine"
    keys = [o["Key"] for o in alice.list_objects_v2(Bucket=bucket, Prefix=f"home/{name}/")["Contents"]]
    assert keys == [f"home/{name}/notes.txt"]
    s3.put_object(Bucket=bucket, Key="home/bob/secret", Body=b"bob's")
    for call in (lambda: alice.put_object(Bucket=bucket, Key="home/bob/x", Body=b"x"),
                 lambda: alice.get_object(Bucket=bucket, Key="home/bob/secret"),
                 lambda: alice.list_objects_v2(Bucket=bucket),
                 lambda: alice.list_objects_v2(Bucket=bucket, Prefix="home/bob/"),
                 lambda: alice.delete_object(Bucket=bucket, Key=f"home/{name}/notes.txt"),
                 lambda: alice.get_bucket_policy(Bucket=bucket),
                 lambda: alice.create_bucket(Bucket="u-" + uuid.uuid4().hex[:12])):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "AccessDenied"
    # A user without a policy may do nothing, not even list its tenant's buckets.
    nobody, _ = user_with_policy(server, endpoint, TENANT, None)
    with pytest.raises(ClientError) as e:
        nobody.list_buckets()
    assert code(e) == "AccessDenied"


def test_bucket_policy_naming_a_user_is_enough_inside_the_tenant(server, endpoint, s3, bucket, test_tenant_id):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    carol, name = user_with_policy(server, endpoint, TENANT, None)
    # An allow to the tenant itself delegates to its identity policies: carol has none.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{test_tenant_id}:root"}, "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}))
    with pytest.raises(ClientError) as e:
        carol.get_object(Bucket=bucket, Key="k")
    assert code(e) == "AccessDenied"
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{test_tenant_id}:user/{name}"},
        "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}))
    assert carol.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    s3.delete_bucket_policy(Bucket=bucket)


def test_aws_cli_put_bucket_policy(endpoint, credentials, s3, bucket, tmp_path, log_path):
    from tests.compat.helpers import run, venv_binary
    from tests.compat.test_awscli import _env

    exe = venv_binary("aws")
    env = _env(credentials, tmp_path)
    doc = tmp_path / "policy.json"
    text = policy({"Sid": "DenyDeletes", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                   "Resource": f"arn:aws:s3:::{bucket}/*"})
    doc.write_text(text)
    aws = [exe, "--endpoint-url", endpoint, "s3api"]
    run(aws + ["put-bucket-policy", "--bucket", bucket, "--policy", f"file://{doc}"], env=env, log_path=log_path)
    out = run(aws + ["get-bucket-policy", "--bucket", bucket], env=env, log_path=log_path).stdout
    assert json.loads(json.loads(out)["Policy"]) == json.loads(text)
    out = run(aws + ["get-bucket-policy-status", "--bucket", bucket], env=env, log_path=log_path).stdout
    assert json.loads(out)["PolicyStatus"]["IsPublic"] is False
    bad = run(aws + ["put-bucket-policy", "--bucket", bucket, "--policy", '{"Statement": []}'], env=env,
              log_path=log_path, check=False)
    assert bad.returncode != 0 and "MalformedPolicy" in bad.stderr
    run(aws + ["delete-bucket-policy", "--bucket", bucket], env=env, log_path=log_path)


@pytest.fixture
def log_path(server) -> str | None:
    return server.log_path if server is not None else None


def test_anonymous_post_upload_needs_a_public_write_policy(s3, endpoint, open_bucket):
    b = open_bucket
    boundary = "----coffre" + uuid.uuid4().hex

    def form(key: str) -> bytes:
        return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{key}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n"
                f"Content-Type: text/plain\r\n\r\nposted\r\n--{boundary}--\r\n").encode()

    def post(key: str) -> int:
        req = urllib.request.Request(f"{endpoint}/{b}", data=form(key), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code

    assert post("drop/one.txt") == 403
    s3.put_bucket_policy(Bucket=b, Policy=policy({
        "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{b}/drop/*"}))
    assert post("drop/one.txt") == 204
    assert post("elsewhere.txt") == 403
    obj = s3.get_object(Bucket=b, Key="drop/one.txt")
    assert obj["Body"].read() == b"posted"
    s3.delete_bucket_policy(Bucket=b)
    empty_bucket(s3, b)


def test_object_tag_conditions(server, endpoint, s3, bucket):
    """s3:RequestObjectTag from x-amz-tagging and from a PutObjectTagging body;
    s3:ExistingObjectTag from the stored object."""
    doc = policy(
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:PutObjectTagging"], "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"StringEquals": {"s3:RequestObjectTag/team": "blue"}}},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"StringEquals": {"s3:ExistingObjectTag/shared": "yes"}}})
    dave, _ = user_with_policy(server, endpoint, TENANT, doc)
    dave.put_object(Bucket=bucket, Key="blue", Body=b"b", Tagging="team=blue")
    with pytest.raises(ClientError) as e:
        dave.put_object(Bucket=bucket, Key="red", Body=b"r", Tagging="team=red")
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        dave.put_object(Bucket=bucket, Key="none", Body=b"n")
    assert code(e) == "AccessDenied"
    dave.put_object_tagging(Bucket=bucket, Key="blue", Tagging={"TagSet": [{"Key": "team", "Value": "blue"}]})
    with pytest.raises(ClientError) as e:
        dave.put_object_tagging(Bucket=bucket, Key="blue", Tagging={"TagSet": [{"Key": "team", "Value": "red"}]})
    assert code(e) == "AccessDenied"
    assert s3.get_object_tagging(Bucket=bucket, Key="blue")["TagSet"] == [{"Key": "team", "Value": "blue"}]
    s3.put_object(Bucket=bucket, Key="shared", Body=b"s", Tagging="shared=yes")
    s3.put_object(Bucket=bucket, Key="unshared", Body=b"u", Tagging="shared=no")
    assert dave.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"s"
    with pytest.raises(ClientError) as e:
        dave.get_object(Bucket=bucket, Key="unshared")
    assert code(e) == "AccessDenied"


def test_a_suspended_tenants_public_bucket_closes(server, endpoint):
    name = "susp-" + uuid.uuid4().hex[:10]
    akid, secret = create_tenant(server, name)
    owner = make_client(endpoint, (akid, secret))
    b = "pub-" + uuid.uuid4().hex[:16]
    owner.create_bucket(Bucket=b)
    owner.delete_public_access_block(Bucket=b)
    owner.put_object(Bucket=b, Key="k", Body=b"v")
    owner.put_bucket_policy(Bucket=b, Policy=public_read(b))
    assert anonymous("GET", f"{endpoint}/{b}/k") == (200, b"v")
    admin = admin_client(server)
    admin.call("POST", f"/tenants/{name}/suspend")
    try:
        assert anonymous("GET", f"{endpoint}/{b}/k")[0] == 403
    finally:
        admin.call("POST", f"/tenants/{name}/resume")
    assert anonymous("GET", f"{endpoint}/{b}/k") == (200, b"v")


def test_another_tenants_signed_post_form_is_refused(s3, endpoint, bucket, other):
    """PostObject is out of the matrix below (its form carries its own signature): here another
    tenant's root signs a valid form for tenant A's bucket, and the bucket refuses it."""
    import requests

    signer = make_client(endpoint, other["creds"], signature_version="s3v4")
    p = signer.generate_presigned_post(bucket, "from-b.txt")
    files = [(k, (None, v)) for k, v in p["fields"].items()] + [("file", ("f.txt", b"B's data"))]
    r = requests.post(p["url"], files=files, allow_redirects=False, timeout=30)
    assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="from-b.txt")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# -- the isolation matrix: every operation, by another tenant and by the anonymous caller --

def _matrix_request(op: str, bucket: str, key: str, upload_id: str, account: str) -> tuple[str, str, dict, bytes]:
    """(method, path?query, headers, body) of one operation against tenant A's resources, built
    from the router's own tables so that a new operation is covered without editing this."""
    from coffre.s3 import routing

    special = {
        "ListObjects": ("GET", f"/{bucket}", {}, b""),
        "ListObjectsV2": ("GET", f"/{bucket}?list-type=2", {}, b""),
        "HeadBucket": ("HEAD", f"/{bucket}", {}, b""),
        "CreateBucket": ("PUT", f"/{bucket}", {}, b""),
        "ListBuckets": ("GET", "/", {}, b""),
        "DeleteObjects": ("POST", f"/{bucket}?delete", {},
                          f"<Delete><Object><Key>{key}</Key></Object></Delete>".encode()),
        "DeleteBucket": ("DELETE", f"/{bucket}", {}, b""),
        "GetObject": ("GET", f"/{bucket}/{key}", {}, b""),
        "HeadObject": ("HEAD", f"/{bucket}/{key}", {}, b""),
        "PutObject": ("PUT", f"/{bucket}/{key}", {}, b"overwritten"),
        "CopyObject": ("PUT", f"/{bucket}/copy", {"x-amz-copy-source": f"/{bucket}/{key}"}, b""),
        "DeleteObject": ("DELETE", f"/{bucket}/{key}", {}, b""),
        "UploadPart": ("PUT", f"/{bucket}/{key}?partNumber=1&uploadId={upload_id}", {}, b"part"),
        "UploadPartCopy": ("PUT", f"/{bucket}/{key}?partNumber=1&uploadId={upload_id}",
                           {"x-amz-copy-source": f"/{bucket}/{key}"}, b""),
        "ListParts": ("GET", f"/{bucket}/{key}?uploadId={upload_id}", {}, b""),
        "AbortMultipartUpload": ("DELETE", f"/{bucket}/{key}?uploadId={upload_id}", {}, b""),
        "CompleteMultipartUpload": ("POST", f"/{bucket}/{key}?uploadId={upload_id}", {},
                                    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                                    b"<ETag>x</ETag></Part></CompleteMultipartUpload>"),
        "GetAccountPublicAccessBlock": ("GET", "/v20180820/configuration/publicAccessBlock",
                                        {"x-amz-account-id": account}, b""),
        "PutAccountPublicAccessBlock": ("PUT", "/v20180820/configuration/publicAccessBlock",
                                        {"x-amz-account-id": account},
                                        b"<PublicAccessBlockConfiguration></PublicAccessBlockConfiguration>"),
        "DeleteAccountPublicAccessBlock": ("DELETE", "/v20180820/configuration/publicAccessBlock",
                                           {"x-amz-account-id": account}, b""),
    }
    if op in special:
        return special[op]
    for table, path in ((routing._BUCKET_SUB, f"/{bucket}"), (routing._OBJECT_SUB, f"/{bucket}/{key}")):
        for method, subs in table.items():
            for sub, name in subs.items():
                if name == op:
                    body = b"<x/>" if method in ("PUT", "POST") else b""
                    return method, f"{path}?{sub}", {}, body
    for sub, name in routing._LIST_WITHOUT_ID.items():
        if name == op:
            return "GET", f"/{bucket}?{sub}", {}, b""
    raise AssertionError(f"no request for {op}")


def _send(endpoint: str, method: str, path: str, headers: dict, body: bytes,
          creds: tuple[str, str] | None) -> tuple[int, bytes]:
    import hashlib

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = dict(headers)
    if body:
        import base64
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324
    if creds is not None:
        req = AWSRequest(method=method, url=endpoint + path, data=body, headers=headers)
        S3SigV4Auth(Credentials(*creds), "s3", "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
    r = urllib.request.Request(endpoint + path, data=body if body else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_isolation_matrix(endpoint, s3, bucket, other, test_tenant_id):
    """Every S3 operation coffre serves, by a root of another tenant and by the anonymous caller,
    against tenant A's bucket, object and upload: refused, with nothing revealed or changed."""
    import coffre.s3.app  # noqa: F401
    from coffre.s3.context import HANDLERS

    s3.put_object(Bucket=bucket, Key="secret", Body=b"A's data")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="secret")["UploadId"]
    # By design: the CORS preflight is unauthenticated (it answers from CORS rules alone) and a
    # POST upload is signed by its form (tested with anonymous forms above).
    skip = {"OptionsObject", "PostObject"}
    failures = []
    for op in sorted(set(HANDLERS) - skip):
        method, path, headers, body = _matrix_request(op, bucket, "secret", upload_id, test_tenant_id)
        for who, creds in (("tenant B", other["creds"]), ("anonymous", None)):
            status, answer = _send(endpoint, method, path, headers, body, creds)
            if op == "ListBuckets":
                ok = (status == 200 and bucket.encode() not in answer) if creds else status == 403
            elif op == "CreateBucket":  # the name is taken: said to the signed, as AWS does
                ok = status == 409 if creds else status == 403
            elif op == "DeleteObjects":  # per key: an AccessDenied entry, nothing deleted
                ok = status == 200 and b"<Code>AccessDenied</Code>" in answer and b"<Deleted>" not in answer
            else:
                ok = status == 403 and (method == "HEAD" or b"<Code>AccessDenied</Code>" in answer)
            if not ok:
                failures.append(f"{op} by {who}: {status} {answer[:200]!r}")
    assert not failures, "\n".join(failures)
    # Nothing of A's changed.
    assert s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"A's data"
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload_id]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["secret"]
    with pytest.raises(ClientError):
        s3.get_bucket_policy(Bucket=bucket)
    s3.abort_multipart_upload(Bucket=bucket, Key="secret", UploadId=upload_id)


def test_secure_transport_principal_tag_and_acl_conditions(server, endpoint, s3, bucket, other):
    # A classic: refuse everything not over TLS (this endpoint is plain HTTP): the owner included.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy({
        "Sid": "TLSOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
    s3.put_object(Bucket=bucket, Key="team-red/plan", Body=b"red")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="team-red/plan")
    assert code(e) == "AccessDenied"
    # Another classic: writers from other tenants must hand objects over.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": other["id"]}, "Action": ["s3:PutObject", "s3:PutObjectAcl"],
         "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Effect": "Deny", "Principal": {"AWS": other["id"]}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"StringNotEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}}))
    with pytest.raises(ClientError) as e:
        other["client"].put_object(Bucket=bucket, Key="drop", Body=b"d")
    assert code(e) == "AccessDenied"
    other["client"].put_object(Bucket=bucket, Key="drop", Body=b"d", ACL="bucket-owner-full-control")
    s3.delete_bucket_policy(Bucket=bucket)
    # ${aws:PrincipalTag/team} in a user's policy.
    name = "tagged" + uuid.uuid4().hex[:8]
    c = admin_client(server)
    c.call("POST", f"/tenants/{TENANT}/users", {"name": name, "tags": {"team": "team-red"}})
    akid, secret = create_user_key(server, TENANT, name)
    c.call("POST", f"/tenants/{TENANT}/policies", {"name": "p-" + name, "document": json.loads(policy({
        "Effect": "Allow", "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/${{aws:PrincipalTag/team}}/*"}))})
    c.call("PUT", f"/tenants/{TENANT}/users/{name}/policies/p-{name}")
    tagged = make_client(endpoint, (akid, secret))
    tagged.put_object(Bucket=bucket, Key="team-red/notes", Body=b"n")
    with pytest.raises(ClientError) as e:
        tagged.put_object(Bucket=bucket, Key="team-blue/notes", Body=b"n")
    assert code(e) == "AccessDenied"
