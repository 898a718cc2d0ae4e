"""Billing arithmetic: periods, request classes, the price sheet, invoice lines and their totals."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from coffre.core.billing import PriceSheet, invoice, invoice_csv
from coffre.core.metering import FREE, READ, WRITE, Period, billable, request_class
from coffre.meta.records import MeteredUsage
from coffre.settings import Settings, load_settings


def test_periods_are_utc_calendar_months():
    nov = Period.parse("2026-11")
    assert (nov.name, nov.hours) == ("2026-11", 720)
    assert nov.start == 1793491200 and nov.end - nov.start == 720 * 3600
    assert Period.parse("2026-12").end == Period.parse("2027-01").start
    assert Period.parse("2028-02").hours == 29 * 24  # leap year
    assert Period.containing(nov.start) == nov and Period.containing(nov.end - 1) == nov
    assert Period.containing(nov.end) == Period.parse("2026-12")
    for bad in ("2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", "", "november"):
        with pytest.raises(ValueError):
            Period.parse(bad)


@pytest.mark.parametrize("operation, cls", [
    ("PutObject", WRITE), ("CopyObject", WRITE), ("PostObject", WRITE), ("CreateBucket", WRITE),
    ("CreateMultipartUpload", WRITE), ("UploadPart", WRITE), ("UploadPartCopy", WRITE),
    ("CompleteMultipartUpload", WRITE), ("ListObjects", WRITE), ("ListObjectsV2", WRITE),
    ("ListObjectVersions", WRITE), ("ListBuckets", WRITE), ("ListParts", WRITE), ("ListMultipartUploads", WRITE),
    ("PutBucketPolicy", WRITE), ("RestoreObject", WRITE),
    ("GetObject", READ), ("HeadObject", READ), ("HeadBucket", READ), ("GetBucketAcl", READ),
    ("GetObjectTagging", READ), ("OptionsObject", READ), ("SelectObjectContent", READ), ("Unknown", READ),
    ("DeleteObject", FREE), ("DeleteObjects", FREE), ("DeleteBucket", FREE), ("AbortMultipartUpload", FREE),
    ("DeleteObjectTagging", FREE), ("IAM", FREE),
])
def test_request_classes(operation, cls):
    assert request_class(operation) == cls


def test_refused_and_failed_requests_are_not_billed():
    assert billable(200) and billable(204) and billable(304) and billable(404) and billable(400)
    assert not billable(403) and not billable(500) and not billable(503)


def _sheet(**prices: str) -> PriceSheet:
    return PriceSheet.from_settings(Settings(**{f"billing_{k}": v for k, v in prices.items()}))


def test_price_sheet_from_toml_table(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[billing]\ncurrency = "CHF"\nstorage_gb_month = "0.021"\negress_gb = 0.05\n'
                   '[metering]\nflush_seconds = 2.5\n')
    s = load_settings(str(cfg), env={})
    assert (s.billing_currency, s.billing_storage_gb_month, s.billing_egress_gb) == ("CHF", "0.021", "0.05")
    assert s.metering_flush_seconds == 2.5
    sheet = PriceSheet.from_settings(s)
    assert sheet.storage_gb_month == Decimal("0.021") and sheet.egress_gb == Decimal("0.05")
    assert sheet.write_requests == 0
    for bad in ({"storage_gb_month": "-1"}, {"egress_gb": "cheap"}, {"read_requests_per_1000": "NaN"},
                {"currency": ""}):
        with pytest.raises(ValueError):
            _sheet(**bad)


def test_invoice_lines_and_totals_add_up():
    nov = Period.parse("2026-11")
    sheet = _sheet(storage_gb_month="0.02", write_requests_per_1000="0.005", read_requests_per_1000="0.0004",
                   egress_gb="0.09")
    gb_month = 3600 * 720 * 10**9  # byte-seconds of one GB held all month
    usage = [
        # Tenant A: 1.5 GB-month over two buckets, one deleted since; 12,345 writes, 1,000,001 reads.
        MeteredUsage("A", "a1", byte_seconds=gb_month, write_requests=12000, read_requests=1_000_001,
                     bytes_out=2 * 10**9),
        MeteredUsage("A", "gone", byte_seconds=gb_month // 2, write_requests=345, free_requests=7,
                     bytes_in=5, bytes_out=123_456_789),
        # A tenant deleted since: still billed, its name unknown.
        MeteredUsage("Z", "z", byte_seconds=1, read_requests=1),
    ]
    doc = invoice(nov, usage, {"A": "alpha", "B": "bravo"}, sheet, now=nov.end + 1)
    assert doc["complete"] and doc["currency"] == "EUR" and doc["hours"] == 720
    tenants = {t["tenant_id"]: t for t in doc["tenants"]}
    assert [t["tenant"] for t in doc["tenants"]] == ["alpha", "bravo", None]
    a = {line["item"]: line for line in tenants["A"]["lines"]}
    assert (a["storage"]["quantity"], a["storage"]["amount"]) == ("1.5", "0.03")
    assert (a["write_requests"]["usage"], a["write_requests"]["amount"]) == (12345, "0.06")  # 0.061725
    assert (a["read_requests"]["quantity"], a["read_requests"]["amount"]) == ("1000.001", "0.40")
    assert (a["egress"]["quantity"], a["egress"]["amount"]) == ("2.123456789", "0.19")  # 0.19111...
    assert tenants["A"]["total"] == "0.68"
    assert tenants["A"]["usage"]["free_requests"] == 7 and tenants["A"]["usage"]["bytes_in"] == 5
    assert tenants["B"]["total"] == "0.00"
    assert tenants["Z"]["total"] == "0.00"
    assert doc["total"] == "0.68"
    for t in doc["tenants"]:
        assert Decimal(t["total"]) == sum(Decimal(line["amount"]) for line in t["lines"])


def test_rounding_is_per_line_half_up():
    nov = Period.parse("2026-11")
    sheet = _sheet(write_requests_per_1000="0.005", read_requests_per_1000="0.005")
    # 1,000 requests of each class: 0.005 each, rounded half up to 0.01 each; total 0.02 (not 0.01).
    doc = invoice(nov, [MeteredUsage("A", "b", write_requests=1000, read_requests=1000)], {"A": "a"}, sheet,
                  now=nov.start)
    t = doc["tenants"][0]
    assert [line["amount"] for line in t["lines"]] == ["0.00", "0.01", "0.01", "0.00"]
    assert t["total"] == doc["total"] == "0.02" and doc["complete"] is False


def test_csv_shape():
    nov = Period.parse("2026-11")
    doc = invoice(nov, [MeteredUsage("A", "b", write_requests=2000)], {"A": "alpha", "B": "bravo"},
                  _sheet(write_requests_per_1000="1"), now=nov.end)
    rows = list(csv.reader(io.StringIO(invoice_csv(doc))))
    assert rows[0] == ["period", "tenant_id", "tenant", "item", "usage", "unit", "quantity", "unit_price", "amount",
                       "currency"]
    assert rows[2] == ["2026-11", "A", "alpha", "write_requests", "2000", "1,000 requests", "2", "1", "2.00", "EUR"]
    assert rows[5] == ["2026-11", "A", "alpha", "total", "", "", "", "", "2.00", "EUR"]
    assert rows[-1] == ["2026-11", "", "", "total", "", "", "", "", "2.00", "EUR"]
    assert len(rows) == 1 + 5 + 5 + 1
