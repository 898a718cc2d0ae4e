"""The admin JSON API against a real server: who may call it, what it does, and that S3 obeys it at once."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from botocore.exceptions import ClientError
from openapi_spec_validator import validate

from tests.admin.helpers import call, error, ok
from tests.conftest import make_client
from tests.s3.test_audit import audit_records
from tests.server import Server


@pytest.fixture(scope="module")
def api(admin_endpoint, operator_credentials):
    def do(method: str, path: str, body=None, **kw):
        return call(admin_endpoint, operator_credentials, method, path, body, **kw)
    return do


def new_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def s3_denied(client, code: str) -> None:
    with pytest.raises(ClientError) as exc:
        client.list_buckets()
    assert exc.value.response["Error"]["Code"] == code, exc.value.response


# -- who may call it --
def test_unsigned_and_badly_signed_calls_are_refused(admin_endpoint, operator_credentials):
    error(call(admin_endpoint, None, "GET", "/tenants"), 401, "MissingAuthentication")
    error(call(admin_endpoint, (operator_credentials[0], "wrong-secret-wrong-secret"), "GET", "/tenants"),
          401, "SignatureDoesNotMatch")
    error(call(admin_endpoint, ("CONOSUCHKEY000000000", "x" * 30), "GET", "/tenants"), 401, "InvalidAccessKeyId")
    # A signature made for S3 is not one for this API (and the reverse is refused by S3).
    error(call(admin_endpoint, operator_credentials, "GET", "/tenants", service="s3"), 400,
          "AuthorizationHeaderMalformed")
    error(call(admin_endpoint, None, "GET", "/tenants", token="cs1.forged.token"), 401, "InvalidSession")


def test_tenant_credentials_are_refused(admin_endpoint, credentials):
    msg = error(call(admin_endpoint, credentials, "GET", "/tenants"), 403, "AccessDenied")
    assert "Tenant credentials" in msg


def test_operator_credentials_are_refused_on_s3(endpoint, operator_credentials):
    s3_denied(make_client(endpoint, operator_credentials), "AccessDenied")


def test_operator_credentials_are_refused_on_the_iam_api(endpoint, operator_credentials):
    import boto3
    from botocore.config import Config

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=operator_credentials[0],
                       aws_secret_access_key=operator_credentials[1], config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as exc:
        iam.list_users()
    assert exc.value.response["Error"]["Code"] == "AccessDenied"


def test_a_signed_request_cannot_be_altered(admin_endpoint, operator_credentials):
    """The body is covered by the signature: a different body with the same headers is refused."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = admin_endpoint + "/admin/v1/tenants"
    req = AWSRequest(method="POST", url=url, data=b'{"name": "harmless"}', headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(*operator_credentials), "coffre-admin", "us-east-1").add_auth(req)
    r = requests.post(url, data=b'{"name": "evil-one"}', headers=dict(req.headers.items()), timeout=30)
    assert r.status_code in (400, 401), r.text


def test_whoami(api, operator_credentials):
    assert ok(api("GET", "/whoami")) == {"operator": "root", "access_key_id": operator_credentials[0]}


# -- tenants --
def test_tenant_life_cycle(api, endpoint):
    name = new_name()
    created = ok(api("POST", "/tenants", {"name": name}), 201)
    assert created["name"] == name and created["status"] == "active" and len(created["id"]) == 12
    creds = (created["access_key_id"], created["secret_access_key"])
    s3 = make_client(endpoint, creds)
    bucket = new_name("b")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345")

    assert name in [t["name"] for t in ok(api("GET", "/tenants"))["tenants"]]
    shown = ok(api("GET", f"/tenants/{name}"))
    assert shown["usage"] == {"bytes": 5, "objects": 1, "buckets": 1}
    assert shown["buckets"][0]["name"] == bucket and shown["buckets"][0]["usage"]["bytes"] == 5
    assert "secret_access_key" not in json.dumps(shown)
    usage = ok(api("GET", f"/tenants/{name}/usage"))
    assert usage["usage"]["objects"] == 1 and usage["buckets"][0]["name"] == bucket

    # Suspension stops S3 access at once (no cached credential keeps it working), resume restores it.
    assert ok(api("POST", f"/tenants/{name}/suspend"))["status"] == "suspended"
    s3_denied(s3, "AccountProblem")
    assert ok(api("POST", f"/tenants/{name}/resume"))["status"] == "active"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"12345"

    # Deletion is scheduled after the grace period (21 days by default); resume cancels it.
    before = time.time()
    deleting = ok(api("DELETE", f"/tenants/{name}"), 202)
    assert deleting["status"] == "deleting"
    after = time.mktime(time.strptime(deleting["delete_after"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(after - (before + 21 * 86400)) < 120
    s3_denied(s3, "AccountProblem")
    assert ok(api("DELETE", f"/tenants/{name}"), 202)["delete_after"] == deleting["delete_after"]  # idempotent
    error(api("POST", f"/tenants/{name}/suspend"), 400, "ValidationError")
    resumed = ok(api("POST", f"/tenants/{name}/resume"))
    assert resumed["status"] == "active" and resumed["delete_after"] is None
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [bucket]


def test_tenant_validation_and_conflicts(api):
    for bad in ("ab", "Upper", "-lead", "trail-", "under_score", "x" * 64):
        error(api("POST", "/tenants", {"name": bad}), 400, "ValidationError")
    error(api("POST", "/tenants", {}), 400, "ValidationError")
    error(api("POST", "/tenants", {"name": "ok-name", "extra": 1}), 400, "ValidationError")
    error(api("POST", "/tenants", raw=b"[1, 2]"), 400, "MalformedJSON")
    error(api("POST", "/tenants", raw=b"{not json"), 400, "MalformedJSON")
    error(api("POST", "/tenants", raw=b'{"name": "' + b"a" * 70000 + b'"}'), 413, "RequestTooLarge")
    name = new_name()
    ok(api("POST", "/tenants", {"name": name}), 201)
    error(api("POST", "/tenants", {"name": name}), 409, "EntityAlreadyExists")
    error(api("GET", "/tenants/no-such-tenant-here"), 404, "NoSuchEntity")
    error(api("GET", "/no/such/path"), 404, "NotFound")
    error(api("PATCH", "/tenants"), 405, "MethodNotAllowed")


# -- identities and keys --
def test_users_groups_keys_and_policies(api, endpoint):
    tenant = new_name()
    root = ok(api("POST", "/tenants", {"name": tenant}), 201)
    root_s3 = make_client(endpoint, (root["access_key_id"], root["secret_access_key"]))
    bucket = new_name("b")
    root_s3.create_bucket(Bucket=bucket)
    root_s3.put_object(Bucket=bucket, Key="doc", Body=b"hello")

    user = ok(api("POST", f"/tenants/{tenant}/users", {"name": "alice"}), 201)
    assert user["arn"] == f"arn:aws:iam::{root['id']}:user/alice" and user["user_id"].startswith("AIDA")
    error(api("POST", f"/tenants/{tenant}/users", {"name": "alice"}), 409, "EntityAlreadyExists")
    assert [u["name"] for u in ok(api("GET", f"/tenants/{tenant}/users"))["users"]] == ["alice"]

    key = ok(api("POST", f"/tenants/{tenant}/keys", {"user": "alice"}), 201)
    assert key["user"] == "alice" and key["status"] == "active" and len(key["secret_access_key"]) >= 30
    listed = ok(api("GET", f"/tenants/{tenant}/keys"))
    assert key["access_key_id"] in [k["access_key_id"] for k in listed["access_keys"]]
    assert "secret" not in json.dumps(listed) and key["secret_access_key"] not in json.dumps(listed)
    one = ok(api("GET", f"/tenants/{tenant}/keys/{key['access_key_id']}"))
    assert one["user"] == "alice" and "secret_access_key" not in one

    alice = make_client(endpoint, (key["access_key_id"], key["secret_access_key"]))
    with pytest.raises(ClientError) as exc:  # a user without policies may do nothing
        alice.get_object(Bucket=bucket, Key="doc")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"

    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    pol = ok(api("POST", f"/tenants/{tenant}/policies", {"name": "read-docs", "document": doc}), 201)
    assert pol["arn"] == f"arn:aws:iam::{root['id']}:policy/read-docs"
    error(api("POST", f"/tenants/{tenant}/policies", {"name": "bad", "document": {"Statement": "x"}}), 400,
          "MalformedPolicyDocument")
    # Through a group: the policy applies to its members.
    ok(api("POST", f"/tenants/{tenant}/groups", {"name": "readers"}), 201)
    assert ok(api("PUT", f"/tenants/{tenant}/groups/readers/members/alice"))["members"] == ["alice"]
    assert api("PUT", f"/tenants/{tenant}/groups/readers/policies/read-docs").status_code == 204
    assert alice.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"hello"
    assert api("DELETE", f"/tenants/{tenant}/groups/readers/policies/read-docs").status_code == 204
    # Directly on the user.
    assert api("PUT", f"/tenants/{tenant}/users/alice/policies/read-docs").status_code == 204
    shown = ok(api("GET", f"/tenants/{tenant}/users/alice"))
    assert shown["groups"] == ["readers"] and shown["policies"] == ["read-docs"]
    assert ok(api("GET", f"/tenants/{tenant}/policies/read-docs"))["attachments"] == 1
    error(api("DELETE", f"/tenants/{tenant}/policies/read-docs"), 409, "DeleteConflict")
    assert alice.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"hello"
    assert api("DELETE", f"/tenants/{tenant}/users/alice/policies/read-docs").status_code == 204
    with pytest.raises(ClientError):
        alice.get_object(Bucket=bucket, Key="doc")
    assert api("DELETE", f"/tenants/{tenant}/policies/read-docs").status_code == 204
    assert ok(api("GET", f"/tenants/{tenant}/policies"))["policies"] == []

    # Disable stops the key at once; rotate gives a new key and disables the old.
    assert api("PUT", f"/tenants/{tenant}/users/alice/policies/nope").status_code == 404
    ok(api("POST", f"/tenants/{tenant}/keys/{key['access_key_id']}/disable"))
    with pytest.raises(ClientError) as exc:
        alice.list_buckets()
    assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    ok(api("POST", f"/tenants/{tenant}/keys/{key['access_key_id']}/enable"))
    rotated = ok(api("POST", f"/tenants/{tenant}/keys/{key['access_key_id']}/rotate"), 201)
    assert rotated["replaces"] == key["access_key_id"] and rotated["user"] == "alice"
    states = {k["access_key_id"]: k["status"] for k in
              ok(api("GET", f"/tenants/{tenant}/keys?user=alice"))["access_keys"]}
    assert states == {key["access_key_id"]: "inactive", rotated["access_key_id"]: "active"}

    # A user with keys or groups cannot be deleted; once they are gone it can.
    error(api("DELETE", f"/tenants/{tenant}/users/alice"), 409, "DeleteConflict")
    for k in states:
        assert api("DELETE", f"/tenants/{tenant}/keys/{k}").status_code == 204
    error(api("DELETE", f"/tenants/{tenant}/keys/{key['access_key_id']}"), 404, "NoSuchEntity")
    assert api("DELETE", f"/tenants/{tenant}/groups/readers/members/alice").status_code == 204
    assert api("DELETE", f"/tenants/{tenant}/groups/readers").status_code == 204
    assert api("DELETE", f"/tenants/{tenant}/users/alice").status_code == 204
    assert ok(api("GET", f"/tenants/{tenant}/users"))["users"] == []


def test_keys_are_scoped_to_their_tenant(api):
    a, b = new_name(), new_name()
    key_a = ok(api("POST", "/tenants", {"name": a}), 201)
    ok(api("POST", "/tenants", {"name": b}), 201)
    # Tenant b cannot see, disable or delete tenant a's key through its own path.
    error(api("GET", f"/tenants/{b}/keys/{key_a['access_key_id']}"), 404, "NoSuchEntity")
    error(api("POST", f"/tenants/{b}/keys/{key_a['access_key_id']}/disable"), 404, "NoSuchEntity")
    error(api("DELETE", f"/tenants/{b}/keys/{key_a['access_key_id']}"), 404, "NoSuchEntity")
    error(api("POST", f"/tenants/{b}/keys", {"user": "nobody"}), 404, "NoSuchEntity")


def test_imported_key(api, endpoint):
    """An operator may bring a tenant's existing key (a migration keeps its clients' credentials)."""
    tenant = new_name()
    ok(api("POST", "/tenants", {"name": tenant}), 201)
    akid, secret = "COIMPORTED" + uuid.uuid4().hex[:10].upper(), "imported-secret-" + uuid.uuid4().hex
    made = ok(api("POST", f"/tenants/{tenant}/keys", {"access_key_id": akid, "secret_access_key": secret}), 201)
    assert made["access_key_id"] == akid and made["user"] == "root"
    make_client(endpoint, (akid, secret)).list_buckets()
    error(api("POST", f"/tenants/{tenant}/keys", {"access_key_id": akid, "secret_access_key": secret}), 409,
          "EntityAlreadyExists")
    error(api("POST", f"/tenants/{tenant}/keys", {"access_key_id": "short", "secret_access_key": secret}), 400,
          "ValidationError")


# -- quotas --
def test_quotas(api, endpoint):
    tenant = new_name()
    root = ok(api("POST", "/tenants", {"name": tenant}), 201)
    s3 = make_client(endpoint, (root["access_key_id"], root["secret_access_key"]))
    bucket = new_name("b")
    s3.create_bucket(Bucket=bucket)
    assert ok(api("GET", f"/tenants/{tenant}/quota")) == {"max_bytes": None, "max_objects": None, "max_buckets": None}
    assert ok(api("PUT", f"/tenants/{tenant}/quota", {"max_buckets": 1, "max_bytes": 10})) == \
        {"max_bytes": 10, "max_objects": None, "max_buckets": 1}
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=new_name("b"))
    assert exc.value.response["Error"]["Code"] == "TooManyBuckets"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="big", Body=b"x" * 11)
    assert exc.value.response["Error"]["Code"] == "QuotaExceeded"
    ok(api("PUT", f"/tenants/{tenant}/quota", {}))
    assert ok(api("PUT", f"/tenants/{tenant}/buckets/{bucket}/quota", {"max_objects": 1})) == \
        {"max_bytes": None, "max_objects": 1}
    assert ok(api("GET", f"/tenants/{tenant}/buckets/{bucket}/quota"))["max_objects"] == 1
    s3.put_object(Bucket=bucket, Key="one", Body=b"1")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="two", Body=b"2")
    assert exc.value.response["Error"]["Code"] == "QuotaExceeded"
    assert ok(api("GET", f"/tenants/{tenant}"))["buckets"][0]["quota"]["max_objects"] == 1
    error(api("PUT", f"/tenants/{tenant}/quota", {"max_bytes": -1}), 400, "ValidationError")
    error(api("PUT", f"/tenants/{tenant}/quota", {"max_bytes": "10"}), 400, "ValidationError")
    error(api("PUT", f"/tenants/{tenant}/buckets/{bucket}/quota", {"max_buckets": 3}), 400, "ValidationError")
    # Another tenant's bucket is not reachable through this tenant's path.
    other = new_name()
    ok(api("POST", "/tenants", {"name": other}), 201)
    error(api("GET", f"/tenants/{other}/buckets/{bucket}/quota"), 404, "NoSuchEntity")


# -- operators --
def test_operators_and_their_keys(api, admin_endpoint, endpoint):
    name = new_name("op")
    made = ok(api("POST", "/operators", {"name": name}), 201)
    assert made["name"] == name and made["totp_uri"] is None and made["password"] is False
    error(api("POST", "/operators", {"name": name}), 409, "EntityAlreadyExists")
    key = ok(api("POST", f"/operators/{name}/keys", {}), 201)
    creds = (key["access_key_id"], key["secret_access_key"])
    assert ok(call(admin_endpoint, creds, "GET", "/whoami"))["operator"] == name
    s3_denied(make_client(endpoint, creds), "AccessDenied")
    assert [o["name"] for o in ok(api("GET", "/operators"))["operators"]].count(name) == 1
    listed = ok(api("GET", f"/operators/{name}/keys"))["access_keys"]
    assert [k["access_key_id"] for k in listed] == [key["access_key_id"]] and "secret" not in json.dumps(listed)
    error(call(admin_endpoint, creds, "DELETE", f"/operators/{name}/keys/{key['access_key_id']}"), 400,
          "ValidationError")  # not the key the request is signed with
    assert api("DELETE", f"/operators/{name}/keys/{key['access_key_id']}").status_code == 204
    error(call(admin_endpoint, creds, "GET", "/whoami"), 401, "InvalidAccessKeyId")


# -- the document and the audit trail --
def test_openapi_document_is_valid_and_covers_every_route(admin_endpoint, server):
    doc = ok(requests.get(admin_endpoint + "/admin/v1/openapi.json", timeout=30))
    validate(doc)
    from coffre.admin.api import PREFIX, AdminApi

    routes = AdminApi.__new__(AdminApi)._routes()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(r.method, PREFIX + r.path) for r in routes}
    assert served == documented
    assert len({op["operationId"] for ops in doc["paths"].values() for op in ops.values()}) == len(served)
    # The document tells the truth about one route, checked against the live server.
    tenants = doc["paths"]["/admin/v1/tenants"]
    assert set(tenants) == {"get", "post"} and "201" in tenants["post"]["responses"]


def test_admin_requests_are_audited(api, server):
    name = new_name()
    r = api("POST", "/tenants", {"name": name})
    rid = r.headers["X-Request-Id"]
    bad = call(server.admin_endpoint, None, "GET", "/tenants")
    deadline = time.monotonic() + 10
    recs: dict[str, dict] = {}
    while time.monotonic() < deadline and not {rid, bad.headers["X-Request-Id"]} <= set(recs):
        recs = {x.get("request_id"): x for x in audit_records(server.data_dir)}
        time.sleep(0.1)
    rec = recs[rid]
    assert (rec["api"], rec["operator_action"], rec["principal"], rec["operation"], rec["status"]) == \
        ("admin", True, "root", "CreateTenant", 201)
    assert rec["tenant"] == r.json()["id"]
    refused = recs[bad.headers["X-Request-Id"]]
    assert (refused["principal"], refused["status"], refused["error_code"]) == ("anonymous", 401,
                                                                                "MissingAuthentication")
    text = json.dumps(rec)
    assert r.json()["secret_access_key"] not in text


def test_no_change_while_the_audit_log_cannot_be_written(tmp_path, operator_credentials):
    data = tmp_path / "data"
    srv = Server(str(data), env={"COFFRE_AUDIT_SEGMENT_MAX_BYTES": "2000"}).start()
    audit_dir, moved = data / "audit", data / "audit.moved"
    try:
        audit_dir.rename(moved)  # a file in its place: the next segment cannot be created
        audit_dir.write_bytes(b"")
        refused = None
        for i in range(200):
            r = call(srv.admin_endpoint, operator_credentials, "POST", "/tenants", {"name": f"during-{i}"})
            if r.status_code == 503:
                refused = r
                break
            time.sleep(0.02)
        assert refused is not None, "changes still accepted with no audit log"
        assert refused.json()["error"]["code"] == "ServiceUnavailable"
        ok(call(srv.admin_endpoint, operator_credentials, "GET", "/tenants"))  # reads go on
    finally:
        if audit_dir.is_file():
            audit_dir.unlink()
        if moved.exists():
            moved.rename(audit_dir)
        srv.stop()
