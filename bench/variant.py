#!/usr/bin/env python3
"""``coffre serve`` with parts of the request path switched off: a measuring instrument.

Issue #5 bounds what the audit trail and usage metering may cost ("at most 10% of small-object
throughput"). coffre has no setting that turns either off, on purpose: the trail is mandatory
and a tenant is billed from metering. To measure their cost anyway, ``bench/run.py --variant
NAME=PARTS`` runs the same build through this launcher, which replaces the named parts with
no-ops before the server starts, side by side with the real thing:

    .venv/bin/python bench/variant.py audit,metering serve     # what run.py --variant runs

Parts:

* ``audit`` — ``AuditTrail.record`` does nothing: no record is built from the request's event,
  queued, hashed, chained, written or fsync'd. (The event itself is still built: the metrics
  read it too.)
* ``metering`` — no request counting (``s3.app._meter``) and no byte-seconds integration in the
  write transaction (``SQLiteMetadataStore._integrate``). Quota and usage totals stay: they
  are tenancy, not metering.

It patches coffre's internals by name and fails loudly when one is missing, so a rename in
coffre cannot make it silently measure nothing. It patches this process only: with
``workers`` > 1 the secondary processes run unpatched, so measure with one worker. Benchmarks
only: never run a server that serves anyone this way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _no_audit() -> None:
    from coffre.audit.trail import AuditTrail

    def record(self: AuditTrail, event: object) -> None:
        return None

    _replace(AuditTrail, "record", record)


def _no_metering() -> None:
    import coffre.s3.app as app
    from coffre.meta.sqlite import SQLiteMetadataStore

    _replace(app, "_meter", lambda *args, **kwargs: None)

    def integrate(c: object, tenant_id: str, bucket: str, held: int, since: int, now: int) -> int:
        return since  # nothing added to usage_hours; the interval start never moves

    _replace(SQLiteMetadataStore, "_integrate", staticmethod(integrate))


def _replace(owner: Any, name: str, value: object) -> None:
    if not hasattr(owner, name):
        raise SystemExit(f"bench/variant.py: {owner.__name__}.{name} is gone: update this launcher")
    setattr(owner, name, value)


PARTS: dict[str, Callable[[], None]] = {"audit": _no_audit, "metering": _no_metering}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    parts = [p for p in argv[0].split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"bench/variant.py: unknown part(s) {', '.join(unknown)} (known: {', '.join(PARTS)})",
              file=sys.stderr)
        return 2
    for part in parts:
        PARTS[part]()
    print(f"bench/variant.py: coffre without {', '.join(parts)} (measurement only)", file=sys.stderr, flush=True)
    from coffre.cli.main import main as coffre_main

    return coffre_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
