"""``coffre usage`` and ``coffre billing export``: metered usage and invoices, through the admin API.

Same endpoint and credentials as ``coffre admin`` (``--endpoint``, ``--profile``, the
``COFFRE_ROOT_*`` / ``COFFRE_ADMIN_TOKEN`` environment); see docs/billing.md.
Exit status: 0 done, 1 the API refused, 2 the command could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any
from urllib.parse import quote

from coffre.cli.admin import ApiError, CliError, client_from
from coffre.core.billing import invoice_csv


def _usage(args: argparse.Namespace) -> tuple[Any, str]:
    c = client_from(args)
    if args.tenant:
        doc = c.call("GET", f"/tenants/{quote(args.tenant, safe='')}/usage")
        rows = [{"bucket": "(total)", **doc["usage"], **doc["metering"]}]
        rows += [{"bucket": b["name"], **b["usage"], **b["metering"]} for b in doc["buckets"]]
        return doc, f"period {doc['period']['name']} (so far)\n" + _table(rows, ["bucket", *_COLUMNS])
    doc = c.call("GET", "/usage")
    rows = [{"tenant": t["tenant"], **t["usage"], **t["metering"]} for t in doc["tenants"]]
    return doc, f"period {doc['period']['name']} (so far)\n" + _table(rows, ["tenant", "buckets", *_COLUMNS])


_COLUMNS = ["bytes", "objects", "byte_hours", "write_requests", "read_requests", "bytes_in", "bytes_out"]


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _export(args: argparse.Namespace) -> tuple[Any, str]:
    doc = client_from(args).call("GET", "/billing", query={"period": args.period})
    text = invoice_csv(doc) if args.format == "csv" else json.dumps(doc, indent=2) + "\n"
    if args.output and args.output != "-":
        _write(args.output, text)
        return doc, ""
    return doc, text


def _write(path: str, text: str) -> None:
    """Whole or not at all: written next to the target, then renamed over it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".coffre-billing-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _run(args: argparse.Namespace) -> int:
    try:
        doc, text = args.billing_func(args)
    except ApiError as e:
        print(f"coffre: {e}", file=sys.stderr)
        return 1
    except CliError as e:
        print(f"coffre: {e}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2))
    elif text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", help="admin API URL (env COFFRE_ADMIN_ENDPOINT, default http://127.0.0.1:9001)")
    common.add_argument("--profile", help="a section of the admin profile file (see `coffre admin --help`)")
    common.add_argument("--ca-file", help="PEM CA bundle to trust for an https endpoint (env COFFRE_ADMIN_CA_FILE)")

    p = sub.add_parser("usage", parents=[common], help="current usage per tenant (or per bucket of one tenant)")
    p.add_argument("--tenant", help="one tenant's usage, per bucket")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=_run, billing_func=_usage)

    b = sub.add_parser("billing", help="invoices from metered usage and the price sheet")
    bs = b.add_subparsers(dest="billing_cmd", required=True)
    q = bs.add_parser("export", parents=[common], help="invoice lines per tenant for one month")
    q.add_argument("--period", required=True, help="the month, YYYY-MM (UTC)")
    q.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    q.add_argument("--output", help="write to this file (atomically) instead of standard output")
    q.set_defaults(func=_run, billing_func=_export)
