"""``coffre audit verify``: check the audit log's chain and signatures; ``coffre audit
verify-export``: check a tenant's export (GET /_coffre/audit, or an object delivered into its
bucket) with nothing but the export and the public key (docs/audit.md)."""

from __future__ import annotations

import argparse
import os
import sys

# Exit status: 0 the log is intact, 1 it is not (the first bad record is named), 2 cannot run.


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="audit trail tools")
    asub = p.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="check the whole audit log: hash chain, signatures, both ends")
    where = v.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="the server's state directory (the log is in DIR/audit)")
    where.add_argument("--log-dir", help="a directory holding the segment files (a copy, for an auditor)")
    v.add_argument("--public-key", help="the signing public key (PEM); default: signing.pub in the log directory")
    v.add_argument("--live", action="store_true",
                   help="the server is running: records after the last checkpoint are reported, not an error")
    v.set_defaults(func=_verify)
    e = asub.add_parser("verify-export", help="check a tenant's audit export: chain segment, signatures, completeness")
    e.add_argument("file", help="the export (JSON lines), '-' for standard input")
    e.add_argument("--public-key", help="the deployment's audit public key (PEM; GET /_coffre/audit/public-key); "
                   "default: the key inside the export, which proves only that the export is consistent")
    e.add_argument("--tenant", help="fail unless the export is this tenant's (its account id)")
    e.set_defaults(func=_verify_export)


def _verify(args: argparse.Namespace) -> int:
    from coffre.audit.records import PUB_FILE, load_public_key
    from coffre.audit.verify import verify

    directory = args.log_dir or os.path.join(args.data_dir, "audit")
    if not os.path.isdir(directory):
        print(f"coffre audit verify: no audit log in {directory}", file=sys.stderr)
        return 2
    public = load_public_key(args.public_key or os.path.join(directory, PUB_FILE))
    rep = verify(directory, public, live=args.live)
    if rep.problem is not None:
        print(f"audit log NOT intact ({directory})")
        print(rep.problem)
        return 1
    print(f"audit log intact: {rep.segments} segment(s), {rep.records} records (seq {rep.first_seq}.."
          f"{rep.last_seq}), {rep.requests} requests, {rep.checkpoints} signed checkpoints")
    if rep.lost:
        print(f"note: {rep.lost} request record(s) could not be written at the time (recorded as 'lost')")
    for note in rep.notes:
        print(f"note: {note}")
    return 0


def _verify_export(args: argparse.Namespace) -> int:
    from coffre.audit.export import verify_export
    from coffre.audit.records import load_public_key

    try:
        public = load_public_key(args.public_key) if args.public_key else None
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as fh:
                data = fh.read()
    except (OSError, ValueError) as e:
        print(f"coffre audit verify-export: {e}", file=sys.stderr)
        return 2
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        print("audit export NOT intact: the last line is incomplete (truncated)")
        return 1
    rep = verify_export(lines, public)
    if rep.ok and args.tenant is not None and rep.tenant != args.tenant:
        rep.problem = f"the export is tenant {rep.tenant!r}'s, not {args.tenant!r}'s"
    if not rep.ok:
        print(f"audit export NOT intact ({args.file})")
        print(rep.problem)
        return 1
    span = f"seq {rep.first_seq}..{rep.last_seq}" if rep.first_seq is not None else "no records"
    print(f"audit export intact: tenant {rep.tenant}, {rep.own} record(s) of the tenant, {rep.redacted} of others "
          f"as digests, {rep.checkpoints} signed checkpoint(s), {span}")
    if rep.truncated:
        print("note: the export was cut at its record limit; fetch the rest with after-seq")
    for note in rep.notes:
        print(f"note: {note}")
    return 0
