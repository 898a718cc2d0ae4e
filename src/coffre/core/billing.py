"""Invoices from metered usage and the configured price sheet (docs/billing.md).

Money is decimal, never binary floating point. Each line's amount is computed exactly from the
integer usage (byte-seconds, request counts, bytes) and the unit price, then rounded once to the
cent (half up); a tenant's total is the sum of its rounded lines and the grand total the sum of
the tenants' totals, so every total is the sum of the figures printed above it.

GB means 10^9 bytes (as disks and networks count), and a GB-month is a GB stored for every hour
of the month: byte-seconds / 3600 / hours in the month / 10^9.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

from coffre.core.metering import Period
from coffre.meta.records import HOUR, MeteredUsage
from coffre.settings import Settings

GB = 10**9
CENT = Decimal("0.01")
QUANTITY = Decimal("0.000000001")  # quantities are shown to 9 decimals; amounts use the exact value
CSV_COLUMNS = ("period", "tenant_id", "tenant", "item", "usage", "unit", "quantity", "unit_price", "amount",
               "currency")


def _price(name: str, value: str) -> Decimal:
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal number, not {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{name} must be a non-negative decimal number, not {value!r}")
    return d


@dataclass(frozen=True, slots=True)
class PriceSheet:
    currency: str
    storage_gb_month: Decimal  # per GB stored for a month
    write_requests: Decimal  # per 1,000 requests of the write/list class
    read_requests: Decimal  # per 1,000 requests of the read class
    egress_gb: Decimal  # per GB sent

    @staticmethod
    def from_settings(s: Settings) -> PriceSheet:
        currency = s.billing_currency.strip()
        if not currency or len(currency) > 16:
            raise ValueError(f"billing_currency must be a short code such as EUR, not {s.billing_currency!r}")
        return PriceSheet(currency=currency,
                          storage_gb_month=_price("billing_storage_gb_month", s.billing_storage_gb_month),
                          write_requests=_price("billing_write_requests_per_1000",
                                                s.billing_write_requests_per_1000),
                          read_requests=_price("billing_read_requests_per_1000", s.billing_read_requests_per_1000),
                          egress_gb=_price("billing_egress_gb", s.billing_egress_gb))

    def json(self) -> dict[str, str]:
        return {"currency": self.currency, "storage_gb_month": str(self.storage_gb_month),
                "write_requests_per_1000": str(self.write_requests),
                "read_requests_per_1000": str(self.read_requests), "egress_gb": str(self.egress_gb)}


@dataclass(frozen=True, slots=True)
class Totals:
    """One tenant's metered usage over a period (summed over its buckets, deleted ones included)."""

    byte_seconds: int = 0
    write_requests: int = 0
    read_requests: int = 0
    free_requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    @staticmethod
    def of(rows: Iterable[MeteredUsage]) -> Totals:
        t = [0] * 6
        for r in rows:
            for i, v in enumerate((r.byte_seconds, r.write_requests, r.read_requests, r.free_requests,
                                   r.bytes_in, r.bytes_out)):
                t[i] += v
        return Totals(*t)

    def json(self, period: Period) -> dict[str, Any]:
        return {"byte_seconds": self.byte_seconds, "byte_hours": _fmt(Decimal(self.byte_seconds) / HOUR),
                "gb_months": _fmt(_exact(Decimal(self.byte_seconds), HOUR * period.hours * GB)),
                "write_requests": self.write_requests, "read_requests": self.read_requests,
                "free_requests": self.free_requests, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}


def _exact(numerator: Decimal, denominator: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60  # far beyond any usage: byte-seconds of exabytes over a month fit
        return numerator / denominator


def _amount(usage: int, unit_divisor: int, price: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return (Decimal(usage) * price / unit_divisor).quantize(CENT, rounding=ROUND_HALF_UP)


def _fmt(d: Decimal) -> str:
    """A quantity to 9 decimals, without trailing zeros (never in exponent notation)."""
    q = d.quantize(QUANTITY, rounding=ROUND_HALF_UP)
    text = f"{q:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def lines(totals: Totals, period: Period, sheet: PriceSheet) -> list[dict[str, Any]]:
    """The invoice lines of one tenant: storage, write/list requests, read requests, egress."""
    storage_div = HOUR * period.hours * GB
    items = (
        ("storage", totals.byte_seconds, "byte-seconds", "GB-month", storage_div, sheet.storage_gb_month),
        ("write_requests", totals.write_requests, "requests", "1,000 requests", 1000, sheet.write_requests),
        ("read_requests", totals.read_requests, "requests", "1,000 requests", 1000, sheet.read_requests),
        ("egress", totals.bytes_out, "bytes", "GB", GB, sheet.egress_gb),
    )
    out = []
    for item, usage, usage_unit, unit, divisor, price in items:
        out.append({"item": item, "usage": usage, "usage_unit": usage_unit, "unit": unit,
                    "quantity": _fmt(_exact(Decimal(usage), divisor)), "unit_price": str(price),
                    "amount": str(_amount(usage, divisor, price))})
    return out


def invoice(period: Period, usage: Iterable[MeteredUsage], tenant_names: Mapping[str, str], sheet: PriceSheet,
            now: float | None = None) -> dict[str, Any]:
    """The billing export of a period: per tenant, its usage, invoice lines and total.

    Every tenant in ``tenant_names`` appears (with zero lines when it used nothing), and so does
    any tenant with usage that is gone since (its name then unknown): what it used is billed."""
    now = time.time() if now is None else now
    by_tenant: dict[str, list[MeteredUsage]] = {t: [] for t in tenant_names}
    for row in usage:
        by_tenant.setdefault(row.tenant_id, []).append(row)
    tenants = []
    grand = Decimal(0)
    for tenant_id in sorted(by_tenant, key=lambda t: (tenant_names.get(t, "\uffff"), t)):
        totals = Totals.of(by_tenant[tenant_id])
        tenant_lines = lines(totals, period, sheet)
        total = sum((Decimal(line["amount"]) for line in tenant_lines), Decimal(0))
        grand += total
        tenants.append({"tenant_id": tenant_id, "tenant": tenant_names.get(tenant_id), "usage": totals.json(period),
                        "lines": tenant_lines, "total": str(total)})
    return {"period": period.name, "start": _iso(period.start), "end": _iso(period.end), "hours": period.hours,
            "complete": now >= period.end, "generated_at": _iso(now), "currency": sheet.currency,
            "prices": sheet.json(), "tenants": tenants, "total": str(grand)}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def invoice_csv(doc: Mapping[str, Any]) -> str:
    """The export as CSV: one row per invoice line, a "total" row per tenant, and a last row with
    the grand total (tenant_id empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    period, currency = doc["period"], doc["currency"]
    for t in doc["tenants"]:
        name = t["tenant"] if t["tenant"] is not None else ""
        for line in t["lines"]:
            w.writerow((period, t["tenant_id"], name, line["item"], line["usage"], line["unit"], line["quantity"],
                        line["unit_price"], line["amount"], currency))
        w.writerow((period, t["tenant_id"], name, "total", "", "", "", "", t["total"], currency))
    w.writerow((period, "", "", "total", "", "", "", "", doc["total"], currency))
    return buf.getvalue()
