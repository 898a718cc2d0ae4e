"""Check a whole audit log: every hash, every link, every signature, both ends.

Needs only the segment files and the public key (signing.pub), so an auditor can run it on
a copy without any of the deployment's secrets. The first problem found is reported with
where it is; nothing after it is trusted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coffre.audit import records as r
from coffre.audit.records import Record


@dataclass
class Problem:
    segment: str
    line: int
    seq: int | None
    reason: str

    def __str__(self) -> str:
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"first bad record: segment {self.segment} line {self.line}{seq}: {self.reason}"


@dataclass
class Report:
    segments: int = 0
    records: int = 0
    requests: int = 0
    checkpoints: int = 0
    lost: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    unsealed: int = 0  # records after the last checkpoint (a live or crashed log)
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Bad(Exception):
    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.seq = reason, seq


def verify(directory: str, public: Ed25519PublicKey, *, live: bool = False) -> Report:
    """Verify the log in ``directory``; ``live`` accepts an unsealed tail (a running server)."""
    rep = Report()
    segments = r.list_segments(directory)
    if not segments:
        rep.problem = Problem(directory, 0, None, "no audit segment files")
        return rep
    kid = r.key_id(public)
    prev: Record | None = None
    prev_at: tuple[str, int] = ("", 0)
    first_header: Record | None = None
    allowed_starts: set[tuple[str, str]] = set()  # (segment, header hash) named by retention records
    for name in segments:
        rep.segments += 1
        with open(os.path.join(directory, name), "rb") as fh:
            data = fh.read()
        if not data:
            rep.problem = Problem(name, 1, None, "empty segment file (truncated)")
            return rep
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        last_segment = name == segments[-1]
        for lineno, raw in enumerate(lines, 1):
            seq: int | None = None
            try:
                complete = lineno < len(lines) or data.endswith(b"\n")
                if not complete and live and last_segment:
                    break  # being written right now
                if not complete:
                    raise _Bad("incomplete record at the end of the file (truncated)")
                try:
                    rec = json.loads(raw)
                except ValueError as e:
                    raise _Bad("not a JSON record (modified or truncated)") from e
                if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int):
                    raise _Bad("not an audit record")
                seq = rec["seq"]
                if rec.get("hash") != r.digest(rec):
                    raise _Bad("its hash does not match its content (the record was modified)", seq)
                kind = rec.get("type")
                if (lineno == 1) != (kind == r.SEGMENT):
                    raise _Bad("a segment must start with its header and hold only one" if lineno == 1
                               else "a segment header in the middle of a segment", seq)
                if kind == r.SEGMENT and rec.get("segment") != name:
                    raise _Bad(f"the header names segment {rec.get('segment')!r} (file renamed?)", seq)
                if prev is None:
                    first_header = rec
                else:
                    if seq != prev["seq"] + 1:
                        raise _Bad(f"sequence jumps from {prev['seq']} to {seq}: records were removed "
                                   "or reordered before this one", seq)
                    if rec.get("prev") != prev["hash"]:
                        raise _Bad(f"does not chain to the record before it ({prev_at[0]} line {prev_at[1]}): "
                                   "that record was rewritten or records were removed", seq)
                if kind in r.SIGNED:
                    if rec.get("signer") != kid:
                        raise _Bad(f"signed with key {rec.get('signer')!r}, not the given public key ({kid})", seq)
                    if not r.signature_ok(public, rec):
                        raise _Bad(f"invalid {kind} signature (forged or modified)", seq)
                if kind == r.RETENTION:
                    kept = rec.get("first_kept") or {}
                    allowed_starts.add((str(kept.get("segment")), str(kept.get("hash"))))
                rep.records += 1
                rep.requests += kind == r.REQUEST
                rep.lost += int(rec.get("count", 0)) if kind == r.LOST else 0
                if kind == r.CHECKPOINT:
                    rep.checkpoints += 1
                    rep.unsealed = 0
                elif kind != r.SEGMENT:
                    rep.unsealed += 1
                prev, prev_at = rec, (name, lineno)
            except _Bad as bad:
                rep.problem = Problem(name, lineno, bad.seq if bad.seq is not None else seq, bad.reason)
                return rep
    assert first_header is not None and prev is not None
    rep.first_seq, rep.last_seq = first_header["seq"], prev["seq"]
    # The start: the deployment's first record, or a segment a signed retention record kept.
    genesis = first_header["seq"] == 0 and first_header.get("prev") == r.GENESIS
    if not genesis:
        if (first_header["segment"], first_header["hash"]) not in allowed_starts:
            rep.problem = Problem(segments[0], 1, first_header["seq"],
                                  "earlier records are missing and no signed retention record "
                                  "removed them (segments deleted?)")
            return rep
        rep.notes.append(f"records before seq {first_header['seq']} were removed by retention")
    # The end: a closing checkpoint, unless the log is live.
    if prev.get("type") == r.CHECKPOINT and prev.get("reason") == "rotate":
        rep.problem = Problem(prev_at[0], prev_at[1], prev["seq"],
                              f"the log ends here but this checkpoint names a next segment "
                              f"{prev.get('next')!r} that is missing (segments deleted?)")
        return rep
    closed = prev.get("type") == r.CHECKPOINT and prev.get("reason") == "close"
    if not closed and not live:
        rep.problem = Problem(prev_at[0], prev_at[1], prev["seq"],
                              "the log ends after this record without a closing checkpoint: records after "
                              "it were removed (truncated), or the server is running or crashed "
                              "(verify with --live while it runs)")
        return rep
    if rep.unsealed:
        rep.notes.append(f"{rep.unsealed} record(s) after the last checkpoint are not yet sealed")
    return rep
