"""Tenants fetch their own audit records (GET /_coffre/audit), verify them with nothing but the
export and the published public key, and have them delivered into a bucket of theirs.

A tenant's view holds its own principals' requests, the operator's acts on it, and every
request addressing one of its buckets, refused ones by others included (as CloudTrail shows a
bucket owner); never another tenant's own activity, of which only digests appear.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.server import ACCESS_KEY, OPERATOR_SECRET_KEY, SECRET_KEY, TENANT, Server
from tests.tenants import admin_client, create_tenant, create_user_key, set_quota

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="starts its own server (delivery every second)")


def signed(endpoint: str, creds: tuple[str, str] | None, method: str, path: str, body: bytes = b"",
           params: dict[str, str] | None = None) -> requests.Response:
    """A request to coffre's tenant API, signed with SigV4 like any S3 request (or anonymous)."""
    url = endpoint + path
    if params:
        url += "?" + "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in sorted(params.items()))
    headers: dict[str, str] = {}
    if creds is not None:
        req = AWSRequest(method=method, url=url, data=body, headers={})
        S3SigV4Auth(Credentials(*creds), "s3", "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
    return requests.request(method, url, data=body or None, headers=headers, timeout=30)


def lines_of(resp: requests.Response) -> list[dict]:
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.content.splitlines()]


def requests_in(export: list[dict]) -> list[dict]:
    return [e for e in export[1:] if e.get("type") == "request"]


def verify_export(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffre", "audit", "verify-export", str(path), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(str(tmp_path_factory.mktemp("tenant-audit") / "data"),
               env={"COFFRE_AUDIT_DELIVERY_SECONDS": "1"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def a(srv):
    return make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))


@pytest.fixture(scope="module")
def b_creds(srv):
    return create_tenant(srv)


@pytest.fixture(scope="module")
def b(srv, b_creds):
    return make_client(srv.endpoint, b_creds)


@pytest.fixture(scope="module")
def public_key(srv, tmp_path_factory) -> Path:
    resp = requests.get(srv.endpoint + "/_coffre/audit/public-key", timeout=10)  # to anyone
    assert resp.status_code == 200 and resp.content.startswith(b"-----BEGIN PUBLIC KEY-----")
    # The same key as the one the server's own log is checked with.
    assert resp.content == (Path(srv.data_dir) / "audit" / "signing.pub").read_bytes()
    path = tmp_path_factory.mktemp("pub") / "audit.pub"
    path.write_bytes(resp.content)
    return path


def test_a_tenant_sees_its_records_and_nobody_elses(srv, a, b, b_creds, public_key, tmp_path):
    bucket_a = "ta-" + uuid.uuid4().hex[:12]
    bucket_b = "tb-" + uuid.uuid4().hex[:12]
    rid_create = a.create_bucket(Bucket=bucket_a)["ResponseMetadata"]["RequestId"]
    rid_put = a.put_object(Bucket=bucket_a, Key="mine.txt", Body=b"A")["ResponseMetadata"]["RequestId"]
    b.create_bucket(Bucket=bucket_b)
    rid_b_put = b.put_object(Bucket=bucket_b, Key="theirs.txt", Body=b"B")["ResponseMetadata"]["RequestId"]
    # B tries A's bucket: refused, and an access to A's data, so A sees it (not B's own success).
    with pytest.raises(ClientError) as refused:
        b.get_object(Bucket=bucket_a, Key="mine.txt")
    rid_b_refused = refused.value.response["ResponseMetadata"]["RequestId"]
    # A wrong secret for A's key on A's bucket: refused before the bucket is read, still A's.
    wrong = make_client(srv.endpoint, (ACCESS_KEY, "not-the-secret-0000000000000"))
    with pytest.raises(ClientError) as bad_sig:
        wrong.put_object(Bucket=bucket_a, Key="x", Body=b"x")
    rid_bad_sig = bad_sig.value.response["ResponseMetadata"]["RequestId"]
    anon = requests.get(f"{srv.endpoint}/{bucket_a}/mine.txt", timeout=10)
    assert anon.status_code == 403
    # The operator acts on A (the admin API): in A's view as an operator action.
    set_quota(srv, TENANT, max_bytes=10**12)

    resp = signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET", "/_coffre/audit")
    export = lines_of(resp)
    header = export[0]
    mine = {r["request_id"]: r for r in requests_in(export)}
    a_tenant = mine[rid_create]["tenant"]
    assert header["tenant"] == a_tenant and header["type"] == "export"
    assert rid_put in mine and mine[rid_put]["key"] == "mine.txt"
    assert rid_b_put not in mine  # B's own activity: absent
    assert not any(r.get("bucket") == bucket_b for r in mine.values())
    rec = mine[rid_b_refused]
    assert (rec["status"], rec["error_code"], rec["bucket_owner"]) == (403, "AccessDenied", a_tenant)
    assert rec["tenant"] != a_tenant  # B's principal, shown to the bucket owner
    rec = mine[rid_bad_sig]
    assert (rec["principal"], rec["access_key"], rec["bucket_owner"]) == ("anonymous", ACCESS_KEY, a_tenant)
    assert mine[anon.headers["x-amz-request-id"]]["principal"] == "anonymous"
    ops = [r for r in mine.values() if r.get("operator_action")]
    assert any(r["api"] == "admin" and r["tenant"] == a_tenant for r in ops)
    # Everything else is a digest: no field of another tenant's record.
    for e in export[1:]:
        if "type" not in e:
            assert set(e) == {"seq", "prev", "content", "hash"}
    assert b"theirs.txt" not in resp.content and bucket_b.encode() not in resp.content
    # Secrets never: no secret key, no signature, no Authorization value.
    for secret in (SECRET_KEY, b_creds[1], OPERATOR_SECRET_KEY, "AWS4-HMAC-SHA256", "Signature="):
        assert secret.encode() not in resp.content
    assert int(resp.headers["x-coffre-audit-records"]) == len(mine)

    path = tmp_path / "a.jsonl"
    path.write_bytes(resp.content)
    ok = verify_export(path, "--public-key", str(public_key), "--tenant", a_tenant)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit export intact" in ok.stdout and f"{len(mine)} record(s) of the tenant" in ok.stdout

    # B's view: its own records and its refused attempt, none of A's activity.
    export_b = lines_of(signed(srv.endpoint, b_creds, "GET", "/_coffre/audit"))
    theirs = {r["request_id"] for r in requests_in(export_b)}
    assert rid_b_put in theirs and rid_b_refused in theirs
    assert not theirs & {rid_create, rid_put, rid_bad_sig, anon.headers["x-amz-request-id"]}


def test_time_range_and_paging(srv, a):
    bucket = "tr-" + uuid.uuid4().hex[:12]
    a.create_bucket(Bucket=bucket)
    time.sleep(1.1)
    start = time.time()
    rids = [a.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")["ResponseMetadata"]["RequestId"] for i in range(5)]
    export = lines_of(signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET", "/_coffre/audit",
                             params={"since": f"{start:.3f}"}))
    got = [r["request_id"] for r in requests_in(export)]
    assert got[:5] == rids and all(r["time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start))
                                   for r in requests_in(export))
    # Past a range's end: nothing of it.
    past = lines_of(signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET", "/_coffre/audit",
                           params={"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"}))
    assert past[0]["own"] == 0 and len(past) == 1
    # Paging: max-records then after-seq.
    resp = signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET", "/_coffre/audit",
                  params={"since": f"{start:.3f}", "max-records": "2"})
    first = lines_of(resp)
    assert resp.headers["x-coffre-audit-truncated"] == "true"
    page = [r["request_id"] for r in requests_in(first)]
    assert len(page) >= 2 and page == rids[:len(page)]
    rest = lines_of(signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET", "/_coffre/audit",
                           params={"since": f"{start:.3f}",
                                   "after-seq": resp.headers["x-coffre-audit-next-after-seq"]}))
    assert [r["request_id"] for r in requests_in(rest)][:5 - len(page)] == rids[len(page):]
    bad = signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET", "/_coffre/audit", params={"since": "yesterday"})
    assert bad.status_code == 400 and b"InvalidArgument" in bad.content


def test_who_may_fetch(srv):
    # Anonymous: refused. A user: only with coffre:GetAuditRecords in a policy.
    assert signed(srv.endpoint, None, "GET", "/_coffre/audit").status_code == 403
    user = "auditor" + uuid.uuid4().hex[:6]
    creds = create_user_key(srv, TENANT, user)
    denied = signed(srv.endpoint, creds, "GET", "/_coffre/audit")
    assert denied.status_code == 403 and b"AccessDenied" in denied.content
    c = admin_client(srv)
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "coffre:GetAuditRecords", "Resource": "*"}]}
    c.call("POST", f"/tenants/{TENANT}/policies", {"name": "audit-" + user, "document": doc})
    c.call("PUT", f"/tenants/{TENANT}/users/{user}/policies/audit-{user}")
    allowed = signed(srv.endpoint, creds, "GET", "/_coffre/audit")
    assert allowed.status_code == 200
    # The tenant's records, whoever of it asks: the header names the tenant, not the user.
    assert json.loads(allowed.content.splitlines()[0])["tenant"]
    # Delivery configuration needs its own action.
    assert signed(srv.endpoint, creds, "PUT", "/_coffre/audit/delivery",
                  json.dumps({"bucket": "whatever"}).encode()).status_code == 403
    # A bad signature is refused like any S3 request.
    assert signed(srv.endpoint, (creds[0], "x" * 40), "GET", "/_coffre/audit").status_code == 403


def test_delivery_into_a_bucket(srv, a, b, b_creds, public_key, tmp_path):
    bucket = "td-" + uuid.uuid4().hex[:12]
    a.create_bucket(Bucket=bucket)
    # Only into a bucket of one's own.
    other = "to-" + uuid.uuid4().hex[:12]
    b.create_bucket(Bucket=other)
    refused = signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "PUT", "/_coffre/audit/delivery",
                     json.dumps({"bucket": other}).encode())
    assert refused.status_code == 403
    resp = signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "PUT", "/_coffre/audit/delivery",
                  json.dumps({"bucket": bucket, "prefix": "trail/"}).encode())
    assert resp.status_code == 200, resp.text
    assert resp.json()["delivery"]["bucket"] == bucket
    got = signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET", "/_coffre/audit/delivery").json()
    assert got["delivery"]["prefix"] == "trail/"
    rid = a.put_object(Bucket=bucket, Key="activity", Body=b"x")["ResponseMetadata"]["RequestId"]
    b.put_object(Bucket=other, Key="b-activity", Body=b"y")

    def delivered() -> list[str]:
        out = a.list_objects_v2(Bucket=bucket, Prefix="trail/").get("Contents", [])
        return sorted(o["Key"] for o in out)

    deadline = time.monotonic() + 30
    found: dict[str, bytes] = {}
    while time.monotonic() < deadline:
        for key in delivered():
            if key not in found:
                found[key] = a.get_object(Bucket=bucket, Key=key)["Body"].read()
        if any(rid.encode() in body for body in found.values()):
            break
        time.sleep(0.3)
    assert any(rid.encode() in body for body in found.values()), found.keys()
    for i, (key, body) in enumerate(sorted(found.items())):
        assert key.startswith("trail/") and key.endswith(".jsonl")
        assert b"b-activity" not in body
        for secret in (SECRET_KEY, b_creds[1], OPERATOR_SECRET_KEY, "Signature="):
            assert secret.encode() not in body
        path = tmp_path / f"d{i}.jsonl"
        path.write_bytes(body)
        ok = verify_export(path, "--public-key", str(public_key))
        assert ok.returncode == 0, ok.stdout + ok.stderr
    # The delivery's own writes are recorded (principal coffre:audit-delivery) in A's view, but
    # do not cause deliveries by themselves. Looking (one listing) is activity and causes one
    # object, which records that listing and the previous delivery's write; then nothing more,
    # where a loop would write one object every second.
    time.sleep(3)
    first = delivered()
    time.sleep(4)
    second = delivered()
    time.sleep(4)
    third = delivered()
    assert len(second) - len(first) <= 1 and len(third) - len(second) == 1, (first, second, third)
    export = lines_of(signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET", "/_coffre/audit"))
    writes = [r for r in requests_in(export) if r.get("principal") == "coffre:audit-delivery"]
    assert writes and all(r["api"] == "delivery" and r["bucket"] == bucket for r in writes)
    # Consecutive objects continue one another (nothing delivered twice, nothing skipped).
    heads = [json.loads(found[k].split(b"\n", 1)[0]) for k in sorted(found)]
    for before, after in zip(heads, heads[1:], strict=False):
        assert after["after_seq"] == before["last_seq"]
    assert signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "DELETE", "/_coffre/audit/delivery").status_code == 204
    assert signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "GET",
                  "/_coffre/audit/delivery").json() == {"delivery": None}


def test_delivery_resumes_after_restart(tmp_path):
    srv = Server(str(tmp_path / "data"), env={"COFFRE_AUDIT_DELIVERY_SECONDS": "1"}).start()
    try:
        a = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        bucket = "tr-" + uuid.uuid4().hex[:12]
        a.create_bucket(Bucket=bucket)
        assert signed(srv.endpoint, (ACCESS_KEY, SECRET_KEY), "PUT", "/_coffre/audit/delivery",
                      json.dumps({"bucket": bucket}).encode()).status_code == 200
        a.put_object(Bucket=bucket, Key="before", Body=b"x")
        srv.stop()
        srv.start()
        rid = a.put_object(Bucket=bucket, Key="after", Body=b"x")["ResponseMetadata"]["RequestId"]
        deadline = time.monotonic() + 30
        bodies: dict[str, bytes] = {}
        while time.monotonic() < deadline:
            for o in a.list_objects_v2(Bucket=bucket, Prefix="coffre-audit/").get("Contents", []):
                bodies.setdefault(o["Key"], a.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            if any(rid.encode() in v for v in bodies.values()):
                break
            time.sleep(0.3)
        assert any(rid.encode() in v for v in bodies.values())
        heads = [json.loads(bodies[k].split(b"\n", 1)[0]) for k in sorted(bodies)]
        for before, after in zip(heads, heads[1:], strict=False):
            assert after["after_seq"] == before["last_seq"]
        seqs = [json.loads(line)["seq"] for k in sorted(bodies) for line in bodies[k].splitlines()[1:]]
        assert len(seqs) == len(set(seqs))  # nothing delivered twice
    finally:
        srv.stop()
