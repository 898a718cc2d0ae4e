"""The append-only segment files: chaining, group commit, checkpoints, rotation, retention.

Synchronous and single-threaded by design: the async trail (trail.py) calls it from one
worker thread, one batch at a time, so the event loop never waits on a fsync.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, BinaryIO

from coffre.audit import records as r
from coffre.audit.records import Record, Signer
from coffre.blob.local import fsync_dir

log = logging.getLogger("coffre.audit")

DAY = 86400.0
# A request record ready to be chained: its fields, canonical content and content digest (hex).
Prepared = tuple[Record, bytes, bytes]


class AuditLog:
    def __init__(self, directory: str, signer: Signer | None = None, *, segment_max_bytes: int = 64 << 20,
                 checkpoint_records: int = 1000, retention_days: float = 190,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._signer = signer
        self.segment_max_bytes = segment_max_bytes
        self.checkpoint_records = checkpoint_records
        self.retention_days = retention_days
        self.clock = clock
        self._f: BinaryIO | None = None
        self._segment = ""  # current segment file name
        self._index = 0
        self._day = ""
        self._size = 0
        self.seq = -1  # seq of the last record written
        self.last_hash = r.GENESIS
        self._since_checkpoint = 0  # records since the last checkpoint

    @property
    def signer(self) -> Signer:
        assert self._signer is not None
        return self._signer

    @property
    def ready(self) -> bool:
        """Whether the signing key is loaded (the log was opened once)."""
        return self._signer is not None

    # -- opening --
    def open(self) -> None:
        """Create the directory and key, or resume after the last complete record."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if self._signer is None:
            self._signer = Signer.load_or_create(self.directory)
        segments = r.list_segments(self.directory)
        if not segments:
            self._start_segment(self.clock())
            self._sync()
            return
        name = segments[-1]
        path = os.path.join(self.directory, name)
        last = self._repair_tail(path)
        if last is None:  # an empty file: a crash right after creating it
            os.unlink(path)
            self.open()
            return
        self._segment, self._index = name, r.segment_index(name) or 0
        self._day = name[len(r.SEGMENT_PREFIX):len(r.SEGMENT_PREFIX) + 8]
        self.seq, self.last_hash = int(last["seq"]), str(last["hash"])
        self._f = open(path, "ab")  # noqa: SIM115 - held open for the life of the segment
        self._size = self._f.tell()
        if not (last["type"] == r.CHECKPOINT and last.get("reason") == "close"):
            # The process ended without closing the log (crash, kill): seal what is there.
            self._since_checkpoint = 1
            self._checkpoint("recover")
        self._sync()

    def _repair_tail(self, path: str) -> Record | None:
        """The last complete record of a segment, cutting off a line a crash left half-written."""
        with open(path, "rb+") as fh:
            data = fh.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                log.warning("audit: %s ends with an incomplete record (crash while writing): removed",
                            os.path.basename(path))
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
        lines = data[:end].splitlines()
        if not lines:
            return None
        rec: Record = json.loads(lines[-1])
        return rec

    # -- writing --
    @staticmethod
    def prepare(events: Iterable[dict[str, Any]], now: float) -> list[Prepared]:
        """The half of writing request records that needs neither the files nor the chain: each
        record's fields, nonce, canonical content and content digest. Pure computation, safe on
        any thread: the trail runs it on the event loop's thread, which costs a GET less CPU
        than handing that work to the writer thread (measured: docs/benchmarks.md, "what audit
        and metering cost"). The events themselves are left as they are."""
        batch = events if isinstance(events, list) else list(events)
        nonces = r.nonces(len(batch))  # one read of the random source per batch, not per record
        out: list[Prepared] = []
        for ev, nonce in zip(batch, nonces, strict=True):
            rec: Record = dict(ev)
            rec["type"] = r.REQUEST
            rec["time"] = r.utc(ev.get("time", now))
            rec["nonce"] = nonce
            rec["hv"] = r.HASH_VERSION
            content = r.canonical(rec)
            out.append((rec, content, hashlib.sha256(content).hexdigest().encode("ascii")))
        return out

    def append(self, events: Iterable[dict[str, Any]], lost: int = 0) -> list[Record]:
        """Write one batch of request records and make it durable (one fsync: group commit).

        Returns the request records as written (with ``seq`` and ``hash``), for the exports
        that follow the log (syslog, the SIEM file)."""
        return self.append_prepared(self.prepare(events, self.clock()), lost)

    def append_prepared(self, prepared: list[Prepared], lost: int = 0) -> list[Record]:
        """``append`` for records ``prepare`` made: places them in the chain, writes, fsyncs.
        The same prepared batch may be written again after a failure."""
        if self._f is None:  # after a failure (abandon): resume from what is on disk
            self.open()
        now = self.clock()
        self._maybe_rotate(now)
        if lost:
            self._write({"type": r.LOST, "time": r.utc(now), "count": lost})
        written: list[Record] = []
        for rec, content, digest in prepared:
            self._place(rec, content, digest)
            written.append(rec)
            if self._since_checkpoint >= self.checkpoint_records:
                self._checkpoint("periodic")
            if self._size >= self.segment_max_bytes:
                self._maybe_rotate(now)
        self._sync()
        return written

    def tick(self) -> None:
        """Periodic work: seal the records written since the last checkpoint, rotate, prune."""
        if self._f is None:  # after a failure (abandon): resume from what is on disk
            self.open()
        now = self.clock()
        self._maybe_rotate(now)
        if self._since_checkpoint:
            self._checkpoint("periodic")
        self.prune(now)
        self._sync()

    def close(self) -> None:
        if self._f is None:
            return
        self._since_checkpoint = max(self._since_checkpoint, 1)
        self._checkpoint("close")
        self._sync()
        self._f.close()
        self._f = None

    def abandon(self) -> None:
        """Drop the open file after a failure: the next append re-opens from what is on disk."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
        self._f = None
        self._segment = "?"  # re-open on next use

    def _write(self, rec: Record) -> None:
        assert self._f is not None
        seq, prev = self.seq + 1, self.last_hash
        rec["hv"] = r.HASH_VERSION
        if rec["type"] in r.SIGNED:  # the signature covers the position: seq and prev first
            rec["seq"], rec["prev"] = seq, prev
            rec["signer"] = self.signer.key_id
            rec["sig"] = self.signer.sign(rec)
            del rec["seq"], rec["prev"]
        self._place(rec, r.canonical(rec))

    def _place(self, rec: Record, content: bytes, digest: bytes | None = None) -> None:
        """Chain a record whose canonical content is ``content`` after the last one and write its
        line (one encoding of the content per record; hash and line from it: records.py)."""
        assert self._f is not None
        seq, prev = self.seq + 1, self.last_hash
        rec["hash"], line = r.chained_line(content, seq, prev, digest)
        rec["seq"], rec["prev"] = seq, prev
        self._f.write(line)
        self._size += len(line)
        self.seq, self.last_hash = seq, rec["hash"]
        self._since_checkpoint += rec["type"] != r.CHECKPOINT

    def _sync(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())

    def _checkpoint(self, reason: str, **extra: Any) -> None:
        if not self._since_checkpoint:
            return
        self._write({"type": r.CHECKPOINT, "time": r.utc(self.clock()), "reason": reason, **extra})
        self._since_checkpoint = 0

    # -- rotation --
    def _maybe_rotate(self, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        if self._f is not None and day == self._day and self._size < self.segment_max_bytes:
            return
        self._start_segment(now)

    def _start_segment(self, now: float) -> None:
        index = self._index + 1
        name = r.segment_name(now, index)
        path = os.path.join(self.directory, name)
        # Open the new file first: if that fails nothing was written and the old segment stays
        # current, so a retry finds the log as it was.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        new = os.fdopen(fd, "ab")
        old = self._f
        if old is not None:
            # The old segment ends with a checkpoint naming its successor: a verifier that finds
            # the successor missing knows the log was cut there.
            self._since_checkpoint = max(self._since_checkpoint, 1)
            self._checkpoint("rotate", next=name)
            old.flush()
            os.fsync(old.fileno())
            old.close()
        self._f, self._segment, self._index, self._size = new, name, index, 0
        self._day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        self._write({"type": r.SEGMENT, "time": r.utc(now), "segment": name})
        self._since_checkpoint -= 1  # a header alone needs no seal
        fsync_dir(self.directory)

    # -- retention --
    def prune(self, now: float) -> list[str]:
        """Delete whole segments older than the retention, leaving a signed record of it.

        A segment may go once the next one started before the cut-off (all its records are
        older). The retention record names the first kept segment's header, so a verifier
        accepts a log that starts there and refuses one that starts anywhere later.
        """
        if self._f is None or self.retention_days <= 0:
            return []
        cutoff = now - self.retention_days * DAY
        segments = r.list_segments(self.directory)
        removable: list[str] = []
        for name, following in zip(segments, segments[1:], strict=False):
            if name == self._segment:  # never the segment being written
                break
            header = _first_record(os.path.join(self.directory, following))
            if header is None or _parse_utc(str(header.get("time", ""))) >= cutoff:
                break
            removable.append(name)
        if not removable:
            return []
        first_kept = segments[len(removable)]
        header = _first_record(os.path.join(self.directory, first_kept))
        assert header is not None
        # The record goes first: a crash between it and the deletions leaves extra segments,
        # which verify accepts; the other order would leave a gap nothing vouches for.
        self._write({"type": r.RETENTION, "time": r.utc(now), "removed": removable,
                     "first_kept": {"segment": first_kept, "seq": header["seq"], "hash": header["hash"]},
                     "retention_days": self.retention_days})
        self._sync()
        for name in removable:
            os.unlink(os.path.join(self.directory, name))
        fsync_dir(self.directory)
        log.info("audit: retention removed %d segment(s) up to %s", len(removable), removable[-1])
        return removable


def _first_record(path: str) -> Record | None:
    try:
        with open(path, "rb") as fh:
            line = fh.readline()
        rec: Record = json.loads(line)
        return rec
    except (OSError, ValueError):
        return None


def _parse_utc(value: str) -> float:
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return float("inf")  # unreadable: never treated as old
