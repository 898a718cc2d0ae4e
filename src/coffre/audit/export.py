"""A tenant's own audit records, cut from the chained log so that the tenant can verify them alone.

An export is JSON lines. The first line is a header signed with the deployment's audit key;
then comes one contiguous stretch of the chain, from the first of the tenant's records to the
first signed checkpoint after its last one. Each entry of the stretch is either a whole record
(the tenant's own requests, and the log's own records: segment headers, checkpoints,
retention, lost counts) or, for a record of anyone else, only ``seq``, ``prev``, ``content``
(the SHA-256 of the record's content) and ``hash``. The chain verifies through both kinds
(records.py: ``hash`` covers ``seq``, ``prev`` and the content digest), the checkpoint at the
end is signed, and the header (also signed) says which of the entries are the tenant's, so
turning one of them into a bare digest is caught too. Nothing of another tenant's record is
revealed but its digest, and that digest covers a 128-bit random ``nonce``: no guess of its
fields can be confirmed from it. Verification procedure: docs/audit.md, "Tenants".
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coffre.audit import records as r
from coffre.audit.records import Record, Signer

EXPORT = "export"
FORMAT = 1
_REDACTED_FIELDS = frozenset({"seq", "prev", "content", "hash"})
# A request record is written after the request arrived (its ``time``): by how much at most,
# when deciding that the log has gone past a range's end.
_WRITE_DELAY = 600.0
DELIVERY_API = "delivery"  # the api of the records of deliveries into tenants' buckets (delivery.py)


def owns(rec: Record, tenant: str) -> bool:
    """Whether a request record belongs in ``tenant``'s view: its own principals' requests, the
    operator's acts on it (admin events name it as ``tenant``), and any request addressing one of
    its buckets (``bucket_owner``), refused ones included: those are accesses to its data."""
    return rec.get("type") == r.REQUEST and tenant != "" and (
        rec.get("tenant") == tenant or rec.get("bucket_owner") == tenant)


def redacted(rec: Record) -> Record:
    return {"seq": rec["seq"], "prev": rec["prev"], "content": r.content_digest(rec), "hash": rec["hash"]}


def own_digest(seqs: Iterable[int]) -> str:
    """The SHA-256 of the tenant's records' positions, each in decimal followed by a newline."""
    h = hashlib.sha256()
    for s in seqs:
        h.update(b"%d\n" % s)
    return h.hexdigest()


def parse_time(value: str) -> float:
    """A time bound of the API: ISO 8601 in UTC (``2026-11-24T02:00:00Z``, date alone too) or epoch seconds."""
    v = value.strip()
    if not v:
        raise ValueError("empty time")
    try:
        return float(v)
    except ValueError:
        pass
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


@dataclass
class ExportInfo:
    """What an export holds (its header, less the signature)."""

    header: dict[str, Any]
    own: int = 0
    own_active: int = 0  # own records other than deliveries' own writes (delivery.py)
    entries: int = 0
    truncated: bool = False
    next_after_seq: int | None = None
    # The last signed checkpoint before the first of the tenant's records (or the last one read,
    # when there were none): nothing up to it is the tenant's, so a later scan may start there.
    idle_through: int = -1


def _records(directory: str, after_seq: int, since_day: str | None) -> Iterator[Record]:
    """The log's complete records in chain order, from the first segment that may hold
    ``seq > after_seq`` and a record of ``since_day`` or later (YYYYMMDD)."""
    segments = r.list_segments(directory)
    start = 0
    for i in range(len(segments) - 1):
        following = _first(os.path.join(directory, segments[i + 1]))
        if following is None:
            break
        # Every record of segment i was written before the next one began.
        if following.get("seq", 0) <= after_seq + 1 or (
                since_day is not None and segments[i + 1][len(r.SEGMENT_PREFIX):len(r.SEGMENT_PREFIX) + 8] < since_day):
            start = i + 1
            continue
        break
    for name in segments[start:]:
        try:
            with open(os.path.join(directory, name), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:  # removed by retention meanwhile
            continue
        end = data.rfind(b"\n") + 1  # a line being written is not complete yet
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("seq"), int):
                yield rec


def _first(path: str) -> Record | None:
    try:
        with open(path, "rb") as fh:
            rec = json.loads(fh.readline())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def write_export(directory: str, signer: Signer, tenant: str, out: IO[bytes], *, since: float | None = None,
                 until: float | None = None, after_seq: int = -1, max_own: int = 10000,
                 scan_after: int | None = None) -> ExportInfo:
    """Write ``tenant``'s export to ``out``: its records that arrived in [since, until) and come
    after ``after_seq`` in the chain, up to the last signed checkpoint (records not yet sealed by
    one wait for the next export). At most ``max_own`` records of the tenant: beyond,
    ``truncated`` is set and ``next_after_seq`` says where to resume. ``scan_after`` (at least
    ``after_seq``) skips reading a stretch already known to hold none of the tenant's records
    (``idle_through`` of an earlier call); the header still says ``after_seq``."""
    skip = max(after_seq, scan_after if scan_after is not None else after_seq)
    since_s = r.utc(since) if since is not None else None
    until_s = r.utc(until) if until is not None else None
    stop_s = r.utc(until + _WRITE_DELAY) if until is not None else None
    since_day = since_s[:10].replace("-", "") if since_s is not None else None
    body: list[bytes] = []  # entries up to the last checkpoint reached
    pending: list[bytes] = []  # entries after it
    own_seqs: list[int] = []
    pending_own: list[int] = []
    pending_active = 0
    info = ExportInfo(header={}, idle_through=skip)
    first: Record | None = None
    last_hash: str | None = None
    last_seq = -1
    prev_seq: int | None = None

    def wanted(rec: Record) -> bool:
        if not owns(rec, tenant) or rec["seq"] <= after_seq:
            return False
        t = str(rec.get("time", ""))
        return (since_s is None or t >= since_s) and (until_s is None or t < until_s)

    for rec in _records(directory, skip, since_day):
        seq = rec["seq"]
        if seq <= skip:
            continue
        if prev_seq is not None and seq != prev_seq + 1:
            # A segment vanished while being read (retention): end before the gap, or start after it.
            if body:
                break
            pending, pending_own, pending_active, first = [], [], 0, None
        prev_seq = seq
        if not r.linked(rec):
            # Written by a coffre before exports existed: it cannot be shown as a digest, so an
            # export starts after the last such record.
            if body:
                break
            pending, pending_own, pending_active, first = [], [], 0, None
            continue
        mine = wanted(rec)
        if first is None:
            if rec.get("type") == r.CHECKPOINT and not pending:
                info.idle_through = seq
            if not mine:
                if stop_s is not None and rec.get("type") == r.REQUEST and str(rec.get("time")) > stop_s:
                    break
                continue
            first = rec
        # The tenant's records outside the range asked for are shown as digests, like any other.
        if mine or rec.get("type") != r.REQUEST:
            pending.append(r.canonical(rec))
        else:
            pending.append(r.canonical(redacted(rec)))
        if mine:
            pending_own.append(seq)
            pending_active += rec.get("api") != DELIVERY_API
        if rec.get("type") == r.CHECKPOINT:
            body += pending
            own_seqs += pending_own
            info.own_active += pending_active
            pending, pending_own, pending_active = [], [], 0
            last_hash, last_seq = rec["hash"], seq
            if len(own_seqs) >= max_own:
                info.truncated = True
                break
            if stop_s is not None and str(rec.get("time")) > stop_s:
                break
    info.own = len(own_seqs)
    info.entries = len(body)
    if info.truncated:
        info.next_after_seq = last_seq
    header: dict[str, Any] = {
        "type": EXPORT, "format": FORMAT, "tenant": tenant, "since": since_s, "until": until_s,
        "after_seq": after_seq, "generated": r.utc(time.time()),
        "first_seq": first["seq"] if body and first is not None else None,
        "first_prev": first["prev"] if body and first is not None else None,
        "last_seq": last_seq if body else None, "last_hash": last_hash if body else None,
        "entries": len(body), "own": len(own_seqs), "own_digest": own_digest(own_seqs),
        "truncated": info.truncated, "next_after_seq": info.next_after_seq,
        "public_key": public_pem(signer.public), "signer": signer.key_id,
    }
    header["sig"] = signer.sign(header)
    info.header = header
    out.write(r.canonical(header) + b"\n")
    for line in body:
        out.write(line + b"\n")
    return info


# -- verification (needs the export and the deployment's public key only) --
@dataclass
class ExportReport:
    tenant: str | None = None
    entries: int = 0
    own: int = 0
    redacted: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    truncated: bool = False
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Bad(Exception):
    pass


def verify_export(lines: Iterable[bytes], public: Ed25519PublicKey | None = None) -> ExportReport:
    """Check an export: the header's signature, every entry's hash and link, the checkpoints'
    signatures, both ends, and that the tenant's records are exactly those the header names.

    Without ``public`` the key in the export itself is used, which proves only that the export
    is consistent: a note says so (compare it with the key the operator publishes)."""
    rep = ExportReport()
    it = iter(lines)
    lineno = 1
    try:
        try:
            header = json.loads(next(it))
        except StopIteration:
            raise _Bad("empty file") from None
        except ValueError:
            raise _Bad("line 1: the header is not JSON") from None
        if not isinstance(header, dict) or header.get("type") != EXPORT or header.get("format") != FORMAT:
            raise _Bad("line 1: not a coffre audit export header (format 1)")
        if public is None:
            try:
                key = serialization.load_pem_public_key(str(header.get("public_key", "")).encode())
            except ValueError:
                raise _Bad("line 1: the header's public key is unreadable") from None
            if not isinstance(key, Ed25519PublicKey):
                raise _Bad("line 1: the header's public key is not Ed25519")
            public = key
            rep.notes.append("verified with the public key inside the export: compare it with the key the "
                             "operator publishes (GET /_coffre/audit/public-key), or pass --public-key")
        kid = r.key_id(public)
        if header.get("signer") != kid or not r.signature_ok(public, header):
            raise _Bad(f"line 1: the header's signature is not valid for key {kid} (modified, or another key)")
        tenant = header.get("tenant")
        rep.tenant = tenant if isinstance(tenant, str) else None
        rep.truncated = bool(header.get("truncated"))
        prev_hash = header.get("first_prev")
        expected_seq = header.get("first_seq")
        own: list[int] = []
        last: Record | None = None
        for raw in it:
            lineno += 1
            if not raw.strip():
                raise _Bad(f"line {lineno}: empty line")
            try:
                rec = json.loads(raw)
            except ValueError:
                raise _Bad(f"line {lineno}: not JSON (modified or truncated)") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int):
                raise _Bad(f"line {lineno}: not an audit record")
            seq = rec["seq"]
            where = f"line {lineno} (seq {seq})"
            if seq != expected_seq:
                raise _Bad(f"{where}: expected seq {expected_seq}: records were removed, added or reordered")
            if rec.get("prev") != prev_hash:
                raise _Bad(f"{where}: does not chain to the entry before it (removed or reordered entries)")
            if "type" in rec:
                if rec.get("hash") != r.digest(rec):
                    raise _Bad(f"{where}: its hash does not match its content (the record was modified)")
                kind = rec["type"]
                if kind in r.SIGNED:
                    if rec.get("signer") != kid or not r.signature_ok(public, rec):
                        raise _Bad(f"{where}: invalid {kind} signature (forged or modified)")
                    rep.checkpoints += kind == r.CHECKPOINT
                if kind == r.REQUEST:
                    if not owns(rec, str(tenant)):
                        raise _Bad(f"{where}: a request record of another tenant shown in full")
                    own.append(seq)
            else:
                if set(rec) != _REDACTED_FIELDS or not isinstance(rec.get("content"), str):
                    raise _Bad(f"{where}: neither a record nor a digest entry")
                if rec["hash"] != r.link(seq, rec["prev"], rec["content"]):
                    raise _Bad(f"{where}: its hash does not match its digest (modified)")
                rep.redacted += 1
            rep.entries += 1
            prev_hash, expected_seq, last = rec["hash"], seq + 1, rec
        if rep.entries != header.get("entries"):
            raise _Bad(f"the export holds {rep.entries} entries, its header says {header.get('entries')}: "
                       "entries were removed at the end (truncated) or added")
        if last is not None:
            if last.get("type") != r.CHECKPOINT or last.get("hash") != header.get("last_hash") \
                    or last.get("seq") != header.get("last_seq"):
                raise _Bad(f"line {lineno}: the export must end with the signed checkpoint its header names "
                           "(truncated?)")
        if len(own) != header.get("own") or own_digest(own) != header.get("own_digest"):
            raise _Bad(f"the tenant's records are not those the header names ({len(own)} shown in full, header "
                       f"says {header.get('own')}): a record was removed or hidden as a digest")
        rep.own = len(own)
        rep.first_seq = header.get("first_seq")
        rep.last_seq = header.get("last_seq")
    except _Bad as bad:
        rep.problem = str(bad)
    return rep
