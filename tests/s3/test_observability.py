"""Observability against a real server: Prometheus /metrics, health probes, JSON logs, redaction.

Each test module instance runs its own server (its own admin listener), so the counters it
reads move only with the requests it makes.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from tests import blobs_on_disk as on_disk
from tests.conftest import make_client
from tests.server import ACCESS_KEY, SECRET_KEY, Server

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="reads a local server's admin listener and log")

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """The text format, strictly: every line a comment (HELP/TYPE) or one sample."""
    out: dict[tuple[str, frozenset], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        assert name.startswith("coffre_"), name
        pairs = frozenset(LABEL.findall(labels or ""))
        if labels:
            assert ",".join(f'{k}="{v}"' for k, v in sorted(pairs, key=lambda p: list(LABEL.findall(labels)).index(p))) == labels
        key = (name, pairs)
        assert key not in out, f"duplicate sample {line}"
        out[key] = float(value)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"sample without TYPE: {line}"
    return out


def scrape(srv: Server) -> dict[tuple[str, frozenset], float]:
    r = requests.get(srv.admin_endpoint + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(r.text)


def value(m: dict, name: str, **labels: str) -> float:
    return m.get((name, frozenset(labels.items())), 0.0)


def buckets(m: dict, name: str, **labels: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of one histogram series, in bound order."""
    out = []
    for (n, pairs), v in m.items():
        d = dict(pairs)
        if n == name + "_bucket" and {k: d.get(k) for k in labels} == labels:
            out.append((float(d["le"]), v))
    return sorted(out)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    server = Server(str(tmp_path_factory.mktemp("observability") / "data"),
                    env={"COFFRE_LOG_LEVEL": "DEBUG", "COFFRE_LOG_FORMAT": "json"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(srv: Server):
    # Plain bodies (no aws-chunked framing with a trailing checksum): bytes in are then exactly the bodies.
    return make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY), request_checksum_calculation="when_required")


@pytest.fixture
def obs_bucket(client):
    name = "obs-" + os.urandom(6).hex()
    client.create_bucket(Bucket=name)
    yield name
    for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


def log_lines(srv: Server) -> list[dict]:
    out = []
    for line in Path(srv.log_path).read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))  # every log line is one JSON object
    return out


# -- /metrics ------------------------------------------------------------------------------

def test_request_counters_bytes_and_histograms_are_exact(srv: Server, client, obs_bucket: str):
    before = scrape(srv)
    bodies = {"a": b"x" * 10, "b": b"y" * 200, "c": b"z" * 3000}
    for key, body in bodies.items():
        client.put_object(Bucket=obs_bucket, Key=key, Body=body)
    assert client.get_object(Bucket=obs_bucket, Key="a")["Body"].read() == bodies["a"]
    assert client.get_object(Bucket=obs_bucket, Key="c")["Body"].read() == bodies["c"]
    # A 404 through a presigned URL: its error body's length is known exactly.
    url = client.generate_presigned_url("get_object", Params={"Bucket": obs_bucket, "Key": "missing"})
    missing = requests.get(url, timeout=10)
    assert missing.status_code == 404
    after = scrape(srv)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("coffre_requests_total", operation="PutObject", status="200") == 3
    assert delta("coffre_requests_total", operation="GetObject", status="200") == 2
    assert delta("coffre_requests_total", operation="GetObject", status="404") == 1
    assert delta("coffre_request_bytes_total", operation="PutObject") == 10 + 200 + 3000
    assert delta("coffre_request_bytes_total", operation="GetObject") == 0
    assert delta("coffre_response_bytes_total", operation="GetObject") == 10 + 3000 + len(missing.content)
    assert delta("coffre_response_bytes_total", operation="PutObject") == 0
    # Histograms: the count moves by the requests, buckets are cumulative, +Inf is the count.
    assert delta("coffre_request_duration_seconds_count", operation="PutObject") == 3
    assert delta("coffre_request_duration_seconds_count", operation="GetObject") == 3
    assert delta("coffre_request_duration_seconds_sum", operation="PutObject") > 0
    series = buckets(after, "coffre_request_duration_seconds", operation="PutObject")
    assert len(series) > 5 and series[-1][0] == float("inf")
    counts = [c for _, c in series]
    assert counts == sorted(counts), "histogram buckets must be cumulative"
    assert counts[-1] == value(after, "coffre_request_duration_seconds_count", operation="PutObject")
    assert value(after, "coffre_requests_in_flight") == 0
    # The stores and the key provider are timed at their interfaces.
    assert delta("coffre_metadata_store_duration_seconds_count", method="put_object") >= 3
    assert delta("coffre_blob_store_duration_seconds_count", method="put") == 3
    assert value(after, "coffre_key_provider_duration_seconds_count", method="check") >= 1
    assert value(after, "coffre_audit_queue_capacity") == 10000
    assert 0 <= value(after, "coffre_audit_queue_depth") <= 10000
    assert value(after, "coffre_audit_accepting_writes") == 1


def test_requests_leave_no_reference_cycles_behind(srv: Server, client, obs_bucket: str):
    """Everything a request builds goes when it ends, by reference counting. A cycle (the
    request's context and an object pointing back at it) would keep each request's whole state
    alive until the cyclic collector runs: more collections, each pausing the event loop."""
    # The SDK's defaults: aws-chunked bodies with a trailing checksum, Expect: 100-continue for a file.
    sdk = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))

    def mixed_round(i: int) -> int:
        key = f"k{i % 7}"
        client.put_object(Bucket=obs_bucket, Key=key, Body=os.urandom(100 + i))
        sdk.put_object(Bucket=obs_bucket, Key=key + "-sdk", Body=io.BytesIO(os.urandom(100 + i)))
        up = sdk.create_multipart_upload(Bucket=obs_bucket, Key=key + "-mp")["UploadId"]
        etag = sdk.upload_part(Bucket=obs_bucket, Key=key + "-mp", UploadId=up, PartNumber=1,
                               Body=io.BytesIO(b"p" * (50 + i)))["ETag"]
        sdk.complete_multipart_upload(Bucket=obs_bucket, Key=key + "-mp", UploadId=up,
                                      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        sdk.delete_objects(Bucket=obs_bucket, Delete={"Objects": [{"Key": key + "-sdk"}, {"Key": key + "-mp"}]})
        assert len(client.get_object(Bucket=obs_bucket, Key=key)["Body"].read()) == 100 + i
        client.head_object(Bucket=obs_bucket, Key=key)
        client.list_objects_v2(Bucket=obs_bucket, MaxKeys=3)
        client.put_object_tagging(Bucket=obs_bucket, Key=key, Tagging={"TagSet": [{"Key": "t", "Value": str(i)}]})
        client.copy_object(Bucket=obs_bucket, Key=key + "-copy", CopySource={"Bucket": obs_bucket, "Key": key})
        for call in (lambda: client.get_object(Bucket=obs_bucket, Key="missing"),
                     lambda: client.get_object(Bucket=obs_bucket, Key=key, Range="bytes=999999-")):
            with pytest.raises(ClientError):
                call()
        client.delete_object(Bucket=obs_bucket, Key=key + "-copy")
        return 14

    for i in range(5):  # connections, caches and lazy imports settle first
        mixed_round(i)
    before = scrape(srv)
    requests_made = sum(mixed_round(i) for i in range(60))
    after = scrape(srv)
    collected = sum(value(after, "coffre_python_gc_collected_objects_total", generation=g)
                    - value(before, "coffre_python_gc_collected_objects_total", generation=g) for g in "012")
    # A cycle per request freed ~13 objects per request here; none left is well under one.
    assert collected < requests_made / 4, f"{collected:.0f} objects in reference cycles after {requests_made} requests"
    assert value(after, "coffre_python_gc_collections_total", generation="0") >= 1  # the collector runs, and is seen
    # What the process built to start is frozen: a full collection does not walk it again.
    assert value(after, "coffre_python_gc_frozen_objects") > 10_000


def test_in_flight_counts_a_request_being_served(srv: Server, client, obs_bucket: str):
    url = urllib.parse.urlsplit(client.generate_presigned_url(
        "put_object", Params={"Bucket": obs_bucket, "Key": "slow"}))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("PUT", url.path + "?" + url.query)
        conn.putheader("Content-Length", "10")
        conn.endheaders(b"01234")  # half the body: the handler waits for the rest
        deadline = time.monotonic() + 10
        while value(scrape(srv), "coffre_requests_in_flight") != 1:
            assert time.monotonic() < deadline, "the stalled upload is not counted in flight"
            time.sleep(0.05)
        conn.send(b"56789")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    deadline = time.monotonic() + 10
    while value(scrape(srv), "coffre_requests_in_flight") != 0:
        assert time.monotonic() < deadline, "in-flight did not return to 0"
        time.sleep(0.05)
    assert client.get_object(Bucket=obs_bucket, Key="slow")["Body"].read() == b"0123456789"


def test_admin_listener_serves_only_its_paths(srv: Server):
    assert requests.get(srv.admin_endpoint + "/", timeout=10).status_code == 404
    r = requests.get(srv.admin_endpoint + "/metrics", timeout=10)
    assert r.headers["Server"] == "coffre"
    # The S3 listener does not serve the admin paths: there "metrics" is a bucket name, and
    # an unknown bucket is NoSuchBucket for anyone, as on AWS.
    s3 = requests.get(srv.endpoint + "/metrics", timeout=10)
    assert s3.status_code == 404 and b"<Code>NoSuchBucket</Code>" in s3.content
    assert b"coffre_requests_total" not in s3.content


# -- health --------------------------------------------------------------------------------

def test_live_and_ready(srv: Server):
    live = requests.get(srv.admin_endpoint + "/health/live", timeout=10)
    assert live.status_code == 200 and live.json()["status"] == "live"
    before = value(scrape(srv), "coffre_key_provider_duration_seconds_count", method="check")
    ready = requests.get(srv.admin_endpoint + "/health/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    doc = ready.json()
    assert doc["status"] == "ready"
    assert {k: v["status"] for k, v in doc["components"].items()} == \
        {"metadata": "ok", "blob": "ok", "key_provider": "ok"}
    # The probe really asked the key provider.
    assert value(scrape(srv), "coffre_key_provider_duration_seconds_count", method="check") == before + 1


def test_not_ready_while_the_blob_store_cannot_write(srv: Server, client, obs_bucket: str):
    tmp = Path(srv.data_dir) / "blobs" / "tmp"
    moved = tmp.with_name("tmp.moved")
    # Permissions do not stop root: the directory is replaced by a file instead.
    tmp.rename(moved)
    try:
        tmp.write_bytes(b"not a directory")
        r = requests.get(srv.admin_endpoint + "/health/ready", timeout=10)
        assert r.status_code == 503, r.text
        doc = r.json()
        assert doc["status"] == "not ready" and doc["failed"] == ["blob"]
        assert doc["components"]["blob"]["status"] == "failed" and doc["components"]["blob"]["error"]
        assert doc["components"]["metadata"]["status"] == "ok"
        # Liveness is not readiness: the process still answers.
        assert requests.get(srv.admin_endpoint + "/health/live", timeout=10).status_code == 200
    finally:
        if tmp.is_file():
            tmp.unlink()
        moved.rename(tmp)
    r = requests.get(srv.admin_endpoint + "/health/ready", timeout=10)
    assert r.status_code == 200, r.text
    client.put_object(Bucket=obs_bucket, Key="after", Body=b"ok")


# -- logs ----------------------------------------------------------------------------------

def test_internal_error_is_logged_as_json_with_its_request_id(srv: Server, client, obs_bucket: str):
    old = on_disk.all_blobs(srv.data_dir)
    client.put_object(Bucket=obs_bucket, Key="damaged", Body=os.urandom(10_000))
    new = on_disk.all_blobs(srv.data_dir) - old
    assert len(new) == 1
    blob_id = new.pop()  # a small blob: a row of small.db
    raw = bytearray(on_disk.read_blob(srv.data_dir, blob_id))
    raw[11] ^= 1  # one flipped bit in the only segment: it fails authentication
    on_disk.write_blob(srv.data_dir, blob_id, bytes(raw))
    url = urllib.parse.urlsplit(client.generate_presigned_url(
        "get_object", Params={"Bucket": obs_bucket, "Key": "damaged"}))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", url.path + "?" + url.query)
        resp = conn.getresponse()
        rid = resp.getheader("x-amz-request-id")
        try:
            resp.read()
        except http.client.IncompleteRead:
            pass
    finally:
        conn.close()
    assert resp.status == 500 and rid
    deadline = time.monotonic() + 5
    while True:
        lines = [rec for rec in log_lines(srv) if rec.get("request_id") == rid]
        errors = [rec for rec in lines if rec["level"] == "ERROR"]
        if errors or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert errors, f"no ERROR line with request id {rid}"
    rec = errors[0]
    assert set(rec) >= {"time", "level", "logger", "message", "request_id", "exception"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])
    assert rec["logger"].startswith("coffre")
    assert "Traceback" in rec["exception"]
    client.delete_object(Bucket=obs_bucket, Key="damaged")


def test_secrets_signatures_and_authorization_never_reach_the_log(srv: Server, client, obs_bucket: str):
    sent_auth: list[str] = []

    def capture(request, **_kwargs):
        if "Authorization" in request.headers:
            sent_auth.append(request.headers["Authorization"].decode()
                             if isinstance(request.headers["Authorization"], bytes)
                             else request.headers["Authorization"])

    client.meta.events.register("before-send.s3.*", capture)
    try:
        client.put_object(Bucket=obs_bucket, Key="secret-test", Body=b"data")
        client.list_objects_v2(Bucket=obs_bucket)
    finally:
        client.meta.events.unregister("before-send.s3.*", capture)
    # A wrong secret: refused, and the server's expected signature must not leak either.
    bad = make_client(srv.endpoint, (ACCESS_KEY, "wrong-secret-wrong-secret-wrong-0000"))
    bad.meta.events.register("before-send.s3.*", capture)
    with pytest.raises(ClientError):
        bad.list_objects_v2(Bucket=obs_bucket)
    # Presigned URLs, good and tampered (SigV4) and SigV2-style.
    v4 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY), signature_version="s3v4")
    presigned = v4.generate_presigned_url("get_object", Params={"Bucket": obs_bucket, "Key": "secret-test"})
    assert requests.get(presigned, timeout=10).status_code == 200
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(presigned).query))
    signature = query["X-Amz-Signature"]
    tampered = presigned.replace(signature, "0" * 64)
    assert requests.get(tampered, timeout=10).status_code == 403
    v2 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY), signature_version="s3")
    v2_url = v2.generate_presigned_url("get_object", Params={"Bucket": obs_bucket, "Key": "secret-test"})
    requests.get(v2_url, timeout=10)
    v2_signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(v2_url).query))["Signature"]
    client.delete_object(Bucket=obs_bucket, Key="secret-test")

    time.sleep(0.2)
    text = Path(srv.log_path).read_text(errors="replace")
    # The requests were logged (DEBUG request lines), with their signatures scrubbed.
    assert "X-Amz-Signature=[REDACTED]" in text
    assert "X-Amz-Credential=[REDACTED]" in text
    assert sent_auth and len(sent_auth) >= 3
    forbidden = {"root secret": SECRET_KEY, "presigned signature": signature,
                 "sigv2 signature": v2_signature, "sigv2 signature (quoted)": urllib.parse.quote(v2_signature, safe="")}
    for i, auth in enumerate(sent_auth):
        forbidden[f"authorization header {i}"] = auth
        forbidden[f"signature in authorization header {i}"] = auth.rsplit("Signature=", 1)[-1]
    for what, needle in forbidden.items():
        assert needle not in text, f"{what} found in the server log"


# -- the admin listener over TLS -----------------------------------------------------------

def test_admin_listener_over_tls(tmp_path: Path):
    certs = tmp_path / "certs"
    made = subprocess.run([sys.executable, "-m", "coffre", "dev-cert", "--out", str(certs)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert made.returncode == 0, made
    cert, key = str(certs / "coffre-dev.crt"), str(certs / "coffre-dev.key")
    server = Server(str(tmp_path / "data"), env={"COFFRE_ADMIN_TLS_CERT": cert, "COFFRE_ADMIN_TLS_KEY": key}).start()
    try:
        r = requests.get(f"https://127.0.0.1:{server.admin_port}/health/ready", verify=cert, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ready"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.admin_port}/health/live", timeout=10)
        # The S3 listener keeps its own setting: plain HTTP here.
        assert requests.get(server.endpoint + "/", timeout=10).status_code == 403
        assert f"admin listener (metrics, health) on https://127.0.0.1:{server.admin_port}" \
            in Path(server.log_path).read_text()
    finally:
        server.stop()


def test_admin_tls_needs_both_files(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")}
    env["COFFRE_ADMIN_TLS_CERT"] = str(tmp_path / "missing.crt")
    proc = subprocess.run([sys.executable, "-m", "coffre", "serve", "--data-dir", str(tmp_path / "data"),
                           "--address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 2, proc
    assert "admin_tls_cert and admin_tls_key" in proc.stderr
    assert not (tmp_path / "data").exists()
