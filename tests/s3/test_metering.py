"""Metering and billing against a real server: a scripted workload, every counter checked exactly.

The server runs with metering's test clock (``metering_clock_file``): the test writes the
instant each step happens at, so stored byte-seconds have one right answer. Request counters
are flushed only when asked (a flush interval of an hour): by the usage/billing API, or at
clean shutdown; a crash (SIGKILL) loses those not flushed, and nothing else.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.server import OPERATOR_ACCESS_KEY, OPERATOR_SECRET_KEY, Server
from tests.tenants import admin_client, create_tenant

T0 = calendar.timegm((2026, 11, 1, 0, 0, 0))  # 2026-11-01T00:00:00Z
DEC_1 = calendar.timegm((2026, 12, 1, 0, 0, 0))
H = 3600
KEY_A = "private-name-of-object-alpha.bin"  # names that must never appear in an export
KEY_B = "private-name-of-object-beta.bin"
PRICES = {"COFFRE_BILLING_CURRENCY": "EUR", "COFFRE_BILLING_STORAGE_GB_MONTH": "2500",
          "COFFRE_BILLING_WRITE_REQUESTS_PER_1000": "5.5", "COFFRE_BILLING_READ_REQUESTS_PER_1000": "0.44",
          "COFFRE_BILLING_EGRESS_GB": "90000"}


class Clock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, t: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(t))
        os.replace(tmp, self.path)


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    base = tmp_path_factory.mktemp("metering")
    clock = Clock(base / "clock")
    clock.set(T0)
    env = {"COFFRE_METERING_CLOCK_FILE": str(clock.path), "COFFRE_METERING_FLUSH_SECONDS": "3600", **PRICES}
    srv = Server(str(base / "data"), env=env).start()
    yield srv, clock
    srv.stop()


def _s3(srv: Server, creds: tuple[str, str]):
    # Checksums only when required: the request bodies are the objects' bytes, no aws-chunked framing.
    return make_client(srv.endpoint, creds, request_checksum_calculation="when_required")


def _length(resp: dict) -> int:
    return int(resp["ResponseMetadata"]["HTTPHeaders"].get("content-length", 0))


def _usage(srv: Server, tenant: str) -> dict:
    return admin_client(srv).call("GET", f"/tenants/{tenant}/usage")


def test_scripted_workload_is_metered_exactly(metered):
    srv, clock = metered
    tenant = "meter-" + uuid.uuid4().hex[:8]
    creds = create_tenant(srv, tenant)
    other = _s3(srv, create_tenant(srv))
    s3 = _s3(srv, creds)
    bucket = "metered-" + uuid.uuid4().hex[:8]
    out = 0  # bytes the server sent in response bodies, as the client saw them

    clock.set(T0)
    out += _length(s3.create_bucket(Bucket=bucket))  # write class
    clock.set(T0 + 600)  # 00:10
    out += _length(s3.put_object(Bucket=bucket, Key=KEY_A, Body=b"a" * 1000))
    clock.set(T0 + 1800)  # 00:30
    out += _length(s3.put_object(Bucket=bucket, Key=KEY_B, Body=b"b" * 500))
    clock.set(T0 + H + 1200)  # 01:20: overwrite, 1000 -> 2000 bytes
    out += _length(s3.put_object(Bucket=bucket, Key=KEY_A, Body=b"A" * 2000))
    clock.set(T0 + 2 * H)  # 02:00: reads and a listing
    got = s3.get_object(Bucket=bucket, Key=KEY_A)
    assert len(got["Body"].read()) == 2000 and _length(got) == 2000
    out += 2000
    s3.head_object(Bucket=bucket, Key=KEY_B)  # a HEAD sends no body
    got = s3.get_object(Bucket=bucket, Key=KEY_A, Range="bytes=0-99")
    assert len(got["Body"].read()) == 100
    out += 100
    listing = s3.list_objects_v2(Bucket=bucket)
    assert listing["KeyCount"] == 2
    out += _length(listing)
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="no-such-key")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    out += _length(missing.value.response)  # a 404 is a read, billed as on AWS
    with pytest.raises(ClientError) as refused:  # another tenant, refused: billed to nobody
        other.get_object(Bucket=bucket, Key=KEY_A)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    clock.set(T0 + 3 * H)  # 03:00: delete (free)
    s3.delete_object(Bucket=bucket, Key=KEY_B)
    clock.set(T0 + 5 * H)  # 05:00: look

    byte_seconds = 1000 * 1200 + 1500 * 3000 + 2500 * 6000 + 2000 * 7200
    expected = {"byte_seconds": byte_seconds, "write_requests": 5, "read_requests": 4, "free_requests": 1,
                "bytes_in": 3500, "bytes_out": out}
    doc = _usage(srv, tenant)
    assert doc["period"] == {"name": "2026-11", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z",
                             "hours": 720}
    assert doc["usage"] == {"bytes": 2000, "objects": 1, "buckets": 1}
    metering = doc["metering"]
    assert {k: metering[k] for k in expected} == expected
    assert Decimal(metering["byte_hours"]) == Decimal(byte_seconds) / 3600
    [b] = doc["buckets"]
    assert b["name"] == bucket and {k: b["metering"][k] for k in expected} == expected

    # The overview has the same figures; a tenant that did nothing has zeros.
    listed = {t["tenant"]: t for t in admin_client(srv).call("GET", "/usage")["tenants"]}
    assert {k: listed[tenant]["metering"][k] for k in expected} == expected
    assert listed[tenant]["usage"]["bytes"] == 2000

    # Hourly rows (tenant, bucket, hour): what the store holds so far; the open interval since
    # 03:00 is not in a row yet (it is added at read time, and by the hourly roll).
    rows = _hour_rows(srv, tenant)
    assert rows[(bucket, T0)][0] == 1000 * 1200 + 1500 * 1800
    assert rows[(bucket, T0 + H)][0] == 1500 * 1200 + 2500 * 2400
    assert rows[(bucket, T0 + 2 * H)][0] == 2500 * 3600
    assert (rows[(bucket, T0)][1], rows[(bucket, T0 + 2 * H)][1:3]) == (3, (1, 4))  # writes; list + reads

    # A clean restart keeps every number (the counters were flushed, and are flushed at shutdown).
    s3.get_object(Bucket=bucket, Key=KEY_A)["Body"].read()  # counted in memory only, then shut down cleanly
    srv.stop()
    srv.start()
    doc = _usage(srv, tenant)
    expected.update(read_requests=5, bytes_out=out + 2000)
    assert {k: doc["metering"][k] for k in expected} == expected

    # A crash loses at most the counters not flushed yet, never stored bytes or their byte-seconds.
    s3 = _s3(srv, creds)
    clock.set(T0 + 6 * H)
    s3.get_object(Bucket=bucket, Key=KEY_A)["Body"].read()
    srv.kill()
    srv.start()
    doc = _usage(srv, tenant)
    expected.update(byte_seconds=byte_seconds + 2000 * 3600)
    assert {k: doc["metering"][k] for k in expected} == expected

    # Deleting the bucket keeps its history for billing.
    s3 = _s3(srv, creds)
    clock.set(T0 + 7 * H)
    s3.delete_object(Bucket=bucket, Key=KEY_A)
    s3.delete_bucket(Bucket=bucket)
    expected.update(byte_seconds=byte_seconds + 2000 * 3600 * 2, free_requests=3)
    doc = _usage(srv, tenant)
    assert doc["buckets"] == [] and {k: doc["metering"][k] for k in expected} == expected

    # Billing for November, once it is over: the lines and totals, exactly, in JSON and CSV.
    clock.set(DEC_1 + 3 * H)
    bill = admin_client(srv).call("GET", "/billing", query={"period": "2026-11"})
    assert (bill["period"], bill["hours"], bill["complete"], bill["currency"]) == ("2026-11", 720, True, "EUR")
    mine = next(t for t in bill["tenants"] if t["tenant"] == tenant)
    assert mine["usage"]["byte_seconds"] == expected["byte_seconds"]
    lines = {line["item"]: line for line in mine["lines"]}
    cent = Decimal("0.01")
    want = {
        "storage": Decimal(expected["byte_seconds"]) * 2500 / (3600 * 720 * 10**9),
        "write_requests": Decimal(5) * Decimal("5.5") / 1000,
        "read_requests": Decimal(5) * Decimal("0.44") / 1000,
        "egress": Decimal(expected["bytes_out"]) * 90000 / 10**9,
    }
    for item, value in want.items():
        assert Decimal(lines[item]["amount"]) == value.quantize(cent, rounding=ROUND_HALF_UP), item
    assert lines["write_requests"]["usage"] == 5 and lines["egress"]["usage"] == expected["bytes_out"]
    assert Decimal(mine["total"]) == sum(Decimal(line["amount"]) for line in mine["lines"])
    assert Decimal(bill["total"]) == sum(Decimal(t["total"]) for t in bill["tenants"])
    assert Decimal(mine["total"]) > 0
    _no_names(json.dumps(bill))

    # December has nothing of it (the bucket is gone): zero lines for the tenant.
    dec = admin_client(srv).call("GET", "/billing", query={"period": "2026-12"})
    assert next(t for t in dec["tenants"] if t["tenant"] == tenant)["total"] == "0.00"

    # The command line: `coffre billing export` (CSV and JSON files) and `coffre usage`.
    env = _cli_env(srv)
    out_csv = Path(srv.data_dir).parent / "bill.csv"
    _coffre(env, "billing", "export", "--period", "2026-11", "--format", "csv", "--output", str(out_csv))
    text = out_csv.read_text()
    _no_names(text)
    rows_csv = list(csv.DictReader(io.StringIO(text)))
    assert list(rows_csv[0]) == ["period", "tenant_id", "tenant", "item", "usage", "unit", "quantity",
                                 "unit_price", "amount", "currency"]
    ours = [r for r in rows_csv if r["tenant"] == tenant]
    assert [r["item"] for r in ours] == ["storage", "write_requests", "read_requests", "egress", "total"]
    assert {r["item"]: r["amount"] for r in ours[:-1]} == {k: v["amount"] for k, v in lines.items()}
    assert ours[-1]["amount"] == mine["total"]
    assert rows_csv[-1]["tenant_id"] == "" and rows_csv[-1]["amount"] == bill["total"]
    assert sum(Decimal(r["amount"]) for r in rows_csv if r["item"] == "total" and r["tenant_id"]) == \
        Decimal(rows_csv[-1]["amount"])
    as_json = json.loads(_coffre(env, "billing", "export", "--period", "2026-11", "--format", "json"))
    assert as_json["tenants"] == bill["tenants"] and as_json["total"] == bill["total"]
    usage_json = json.loads(_coffre(env, "usage", "--tenant", tenant, "--json"))
    assert usage_json["metering"]["byte_seconds"] == 0  # December so far: nothing stored
    table = _coffre(env, "usage")
    assert tenant in table and "BYTE_HOURS" in table
    _no_names(table + json.dumps(usage_json))

    # Nor do the metrics carry object names.
    _no_names(requests.get(srv.admin_endpoint + "/metrics", timeout=10).text)


def test_bad_period_is_refused(metered):
    srv, _ = metered
    from coffre.cli.admin import ApiError

    for bad in ("2026-13", "2026-1", "november", "2026-11-01"):
        with pytest.raises(ApiError) as e:
            admin_client(srv).call("GET", "/billing", query={"period": bad})
        assert (e.value.status, e.value.code) == (400, "ValidationError")
    env = _cli_env(srv)
    proc = subprocess.run([sys.executable, "-m", "coffre", "billing", "export", "--period", "2026-13"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ValidationError" in proc.stderr


def _hour_rows(srv: Server, tenant: str) -> dict[tuple[str, int], tuple[int, ...]]:
    tenant_id = admin_client(srv).call("GET", f"/tenants/{tenant}")["id"]
    db = sqlite3.connect(f"file:{os.path.join(srv.data_dir, 'meta.sqlite3')}?mode=ro", uri=True)
    try:
        return {(r[0], r[1]): tuple(r[2:]) for r in db.execute(
            "SELECT bucket, hour, byte_seconds, write_requests, read_requests FROM usage_hours WHERE tenant_id=?",
            (tenant_id,))}
    finally:
        db.close()


def _no_names(text: str) -> None:
    for name in (KEY_A, KEY_B, "private-name-of-object"):
        assert name not in text


def _cli_env(srv: Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")}
    env.update({"COFFRE_ADMIN_ENDPOINT": srv.admin_endpoint, "COFFRE_ROOT_ACCESS_KEY": OPERATOR_ACCESS_KEY,
                "COFFRE_ROOT_SECRET_KEY": OPERATOR_SECRET_KEY, "COFFRE_ADMIN_CONFIG": "/nonexistent"})
    return env


def _coffre(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "coffre", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
