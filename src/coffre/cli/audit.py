"""``coffre audit verify``: check the audit log's chain and signatures (docs/audit.md)."""

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
