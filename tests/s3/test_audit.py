"""The audit trail of a real server: one record per request (refused ones too), nothing
secret in it, `coffre audit verify` on what the server wrote, and writes refused while
the log cannot be written. Tampering in every way is covered in tests/unit/test_audit_chain.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.server import ACCESS_KEY, SECRET_KEY, Server

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="reads the audit log of a local server")


def audit_records(data_dir: str) -> list[dict]:
    d = Path(data_dir) / "audit"
    out = []
    for name in sorted(p for p in os.listdir(d) if p.endswith(".jsonl")):
        for line in (d / name).read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # the line being written right now
                pass
    return out


def record_of(data_dir: str, rid: str, timeout: float = 10.0) -> dict:
    """The record of one request, once the writer has put it on disk."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in audit_records(data_dir) if r.get("request_id") == rid]
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no audit record for request {rid}")
        time.sleep(0.05)


def rid_of(resp: dict) -> str:
    return resp["ResponseMetadata"]["RequestId"]


def verify_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffre", "audit", "verify", *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    srv = Server(str(tmp_path_factory.mktemp("audit") / "data")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(audited):
    return make_client(audited.endpoint, (ACCESS_KEY, SECRET_KEY))


def test_every_request_is_recorded(audited, client):
    bucket = "audit-" + uuid.uuid4().hex[:12]
    body = os.urandom(1234)
    r_create = client.create_bucket(Bucket=bucket)
    r_put = client.put_object(Bucket=bucket, Key="dir/obj é.bin", Body=body)
    r_get = client.get_object(Bucket=bucket, Key="dir/obj é.bin")
    assert r_get["Body"].read() == body
    r_head = client.head_object(Bucket=bucket, Key="dir/obj é.bin")
    with pytest.raises(ClientError) as missing:
        client.get_object(Bucket=bucket, Key="nope")
    anon = requests.get(f"{audited.endpoint}/{bucket}/dir/obj%20%C3%A9.bin",
                        headers={"User-Agent": "audit-test-anonymous"})
    wrong = make_client(audited.endpoint, (ACCESS_KEY, "not-the-secret-0000000000"))
    with pytest.raises(ClientError) as refused:
        wrong.put_object(Bucket=bucket, Key="x", Body=b"abc")
    r_del = client.delete_object(Bucket=bucket, Key="dir/obj é.bin")

    rec = record_of(audited.data_dir, rid_of(r_create))
    assert (rec["type"], rec["operation"], rec["bucket"], rec["key"], rec["status"], rec["error_code"]) == \
        ("request", "CreateBucket", bucket, None, 200, None)
    assert rec["principal"].startswith("arn:aws:iam::") and rec["principal"].endswith(":root")
    assert rec["tenant"] and rec["principal"] == f"arn:aws:iam::{rec['tenant']}:root"
    assert rec["access_key"] == ACCESS_KEY and rec["source_ip"] == "127.0.0.1"
    assert rec["user_agent"].startswith("Boto3/") and rec["operator_action"] is False
    assert rec["time"].endswith("Z") and len(rec["request_id"]) == 16

    rec = record_of(audited.data_dir, rid_of(r_put))
    assert (rec["operation"], rec["key"], rec["status"]) == ("PutObject", "dir/obj é.bin", 200)
    assert rec["bytes_in"] >= 1234 and rec["bytes_out"] == 0

    rec = record_of(audited.data_dir, rid_of(r_get))
    assert (rec["operation"], rec["status"], rec["bytes_out"], rec["bytes_in"]) == ("GetObject", 200, 1234, 0)

    rec = record_of(audited.data_dir, rid_of(r_head))
    assert (rec["operation"], rec["status"], rec["bytes_out"]) == ("HeadObject", 200, 0)

    rec = record_of(audited.data_dir, missing.value.response["ResponseMetadata"]["RequestId"])
    assert (rec["operation"], rec["key"], rec["status"], rec["error_code"]) == ("GetObject", "nope", 404, "NoSuchKey")

    assert anon.status_code == 403
    rec = record_of(audited.data_dir, anon.headers["x-amz-request-id"])
    assert (rec["principal"], rec["tenant"], rec["access_key"]) == ("anonymous", None, None)
    assert (rec["status"], rec["error_code"], rec["key"]) == (403, "AccessDenied", "dir/obj é.bin")
    assert rec["user_agent"] == "audit-test-anonymous"

    # A refused signature: not authenticated, but the key it claimed is on record.
    rec = record_of(audited.data_dir, refused.value.response["ResponseMetadata"]["RequestId"])
    assert (rec["principal"], rec["access_key"], rec["status"], rec["error_code"]) == \
        ("anonymous", ACCESS_KEY, 403, "SignatureDoesNotMatch")
    assert rec["operation"] == "PutObject"

    rec = record_of(audited.data_dir, rid_of(r_del))
    assert (rec["operation"], rec["status"]) == ("DeleteObject", 204)
    client.delete_bucket(Bucket=bucket)


def test_no_secret_in_the_log(audited, client):
    bucket = "audit-" + uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="k", Body=b"data")
    v4 = make_client(audited.endpoint, (ACCESS_KEY, SECRET_KEY), signature_version="s3v4")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    url2 = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    signature2 = url2.split("Signature=")[1].split("&")[0]
    for u in (url, url2):
        resp = requests.get(u)
        assert resp.status_code == 200
        rec = record_of(audited.data_dir, resp.headers["x-amz-request-id"])
        assert (rec["operation"], rec["access_key"], rec["bytes_out"]) == ("GetObject", ACCESS_KEY, 4)
    # A signed header request too, whose Authorization header carries a signature.
    sent: dict[str, str] = {}
    client.meta.events.register("before-send.s3.ListObjectsV2",
                                lambda request, **kw: sent.update(request.headers))
    rid = rid_of(client.list_objects_v2(Bucket=bucket))
    record_of(audited.data_dir, rid)
    auth = sent["Authorization"]
    auth = auth.decode() if isinstance(auth, bytes) else auth
    header_sig = auth.split("Signature=")[1]
    raw = b"".join(p.read_bytes() for p in (Path(audited.data_dir) / "audit").iterdir() if p.is_file())
    for secret in (SECRET_KEY, signature, signature2, header_sig, "Signature=", "X-Amz-Signature", "AWS4-HMAC-SHA256"):
        assert secret.encode() not in raw, f"{secret!r} found in the audit directory"
    client.delete_object(Bucket=bucket, Key="k")
    client.delete_bucket(Bucket=bucket)


def test_verify_rotated_log_and_a_deleted_segment(tmp_path: Path):
    """The server rotates by size; verify passes on what it wrote, from the data dir or from a
    copy with only the public key, and names the segment after a deleted one."""
    data = tmp_path / "data"
    export = tmp_path / "siem.jsonl"
    srv = Server(str(data), env={"COFFRE_AUDIT_SEGMENT_MAX_BYTES": "3000",
                                 "COFFRE_AUDIT_EXPORT_FILE": str(export)}).start()
    try:
        c = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        c.create_bucket(Bucket="rotated")
        for i in range(20):
            c.put_object(Bucket="rotated", Key=f"k{i}", Body=b"x" * i)
        deadline = time.monotonic() + 10
        while len(audit_records(str(data))) < 21 and time.monotonic() < deadline:
            time.sleep(0.05)
        live = verify_cli("--data-dir", str(data), "--live")
        assert live.returncode == 0, live.stdout + live.stderr
    finally:
        srv.stop()
    ok = verify_cli("--data-dir", str(data))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # 21 S3 requests, and the admin API requests that made the test tenant at start.
    admin = sum(1 for r in audit_records(str(data)) if r.get("api") == "admin")
    assert "intact" in ok.stdout and f"{21 + admin} requests" in ok.stdout
    segments = sorted(p.name for p in (data / "audit").glob("audit-*.jsonl"))
    assert len(segments) >= 4
    # The SIEM copy: the same request records, one JSON line each.
    exported = [json.loads(x) for x in export.read_text().splitlines()]
    assert [e["key"] for e in exported if e["operation"] == "PutObject"] == [f"k{i}" for i in range(20)]
    # Each with its place in the chain (seq, hash): a SIEM can reconcile its copy with the log.
    assert all(e["time"].endswith("Z") and isinstance(e["seq"], int) and len(e["hash"]) == 64 for e in exported)
    assert export.stat().st_mode & 0o777 == 0o600
    # An auditor's copy: the segments and the public key, nothing secret.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in segments:
        shutil.copy(data / "audit" / name, copy / name)
    pub = tmp_path / "deployment.pub"
    shutil.copy(data / "audit" / "signing.pub", pub)
    ok = verify_cli("--log-dir", str(copy), "--public-key", str(pub))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    os.unlink(copy / segments[1])
    bad = verify_cli("--log-dir", str(copy), "--public-key", str(pub))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"first bad record: segment {segments[2]} line 1" in bad.stdout, bad.stdout


def test_writes_refused_while_the_log_cannot_be_written(tmp_path: Path):
    data = tmp_path / "data"
    srv = Server(str(data), env={"COFFRE_AUDIT_SEGMENT_MAX_BYTES": "2000"}).start()
    audit_dir, moved = data / "audit", data / "audit.moved"
    try:
        c = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        c.create_bucket(Bucket="fragile")
        c.put_object(Bucket="fragile", Key="k", Body=b"kept")
        # The log's directory disappears (a file in its place): the next segment cannot be created.
        audit_dir.rename(moved)
        audit_dir.write_bytes(b"")
        refused = None
        for i in range(200):
            try:
                c.put_object(Bucket="fragile", Key=f"w{i}", Body=b"w")
            except ClientError as e:
                refused = e
                break
            time.sleep(0.02)
        assert refused is not None, "writes still accepted with no audit log"
        assert refused.response["Error"]["Code"] == "ServiceUnavailable"
        assert refused.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "audit log unavailable" in refused.response["Error"]["Message"]
        # Reads go on.
        assert c.get_object(Bucket="fragile", Key="k")["Body"].read() == b"kept"
        with pytest.raises(ClientError) as again:
            c.delete_object(Bucket="fragile", Key="k")
        assert again.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        # The log comes back: writes are accepted again, and everything is on record.
        audit_dir.unlink()
        moved.rename(audit_dir)
        deadline = time.monotonic() + 15
        while True:
            try:
                c.put_object(Bucket="fragile", Key="after", Body=b"a")
                break
            except ClientError:
                assert time.monotonic() < deadline, "writes still refused after the log came back"
                time.sleep(0.1)
        time.sleep(0.3)
    finally:
        if audit_dir.is_file():
            audit_dir.unlink()
        if moved.exists():
            moved.rename(audit_dir)
        srv.stop()
    log = Path(srv.log_path).read_text()
    assert "audit log unavailable: refusing writes" in log
    ok = verify_cli("--data-dir", str(data))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    recs = [r for r in audit_records(str(data)) if r["type"] == "request"]
    codes = [r["error_code"] for r in recs]
    assert "ServiceUnavailable" in codes  # the refusals themselves are on record
    assert recs[-1]["key"] == "after" and recs[-1]["status"] == 200
    assert any(r["operation"] == "GetObject" and r["key"] == "k" and r["status"] == 200 for r in recs)
