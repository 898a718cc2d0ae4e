"""A target's persistent queue: one directory, one file per committed batch of events.

``<data_dir>/notify/<target-id>/<seq>.jsonl`` holds the messages of one group commit, one JSON
line each, in order; the file is written under a temporary name, fsynced, renamed into place
and the directory fsynced, so a file with a final name is complete (a crash leaves at most a
``.tmp`` file, removed at the next start: its requests had not been answered yet). A file is
deleted only once every message in it was acknowledged by the broker. When delivery stops
part-way through a file at shutdown, the rest is rewritten in place (atomically), so a clean
restart sends nothing twice; after a crash the file in progress is sent again from its start
(at least once).

Synchronous by design: the notifier calls it from worker threads, never on the event loop.
"""

from __future__ import annotations

import os

from coffre.blob.local import fsync_dir

SUFFIX = ".jsonl"
_TMP = ".tmp"


def name(seq: int) -> str:
    return f"{seq:020d}{SUFFIX}"


class DiskQueue:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def scan(self) -> list[tuple[int, int]]:
        """(seq, message count) of every complete file, oldest first; leftovers of a crash removed."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        out: list[tuple[int, int]] = []
        for entry in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, entry)
            if entry.endswith(_TMP):
                os.unlink(path)  # a batch whose fsync never finished: its requests were not answered
                continue
            if not entry.endswith(SUFFIX) or not entry[: -len(SUFFIX)].isdigit():
                continue
            count = len(self.read(int(entry[: -len(SUFFIX)])))
            if count == 0:
                os.unlink(path)
                continue
            out.append((int(entry[: -len(SUFFIX)]), count))
        return out

    def write(self, seq: int, messages: list[bytes]) -> None:
        """Make one batch durable (one fsync for the file, one for the directory)."""
        self._replace(seq, messages)

    def _replace(self, seq: int, messages: list[bytes]) -> None:
        final = os.path.join(self.directory, name(seq))
        tmp = final + _TMP
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(b"".join(m + b"\n" for m in messages))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_dir(self.directory)

    def read(self, seq: int) -> list[bytes]:
        try:
            with open(os.path.join(self.directory, name(seq)), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return []
        # A message never contains a raw newline (JSON escapes it); a line without its newline
        # cannot exist under a final name, but is ignored rather than sent half.
        lines = data.split(b"\n")
        return [line for line in lines[:-1] if line]

    def rewrite(self, seq: int, remaining: list[bytes]) -> None:
        """Keep only the messages not yet acknowledged (shutdown part-way through a file)."""
        if remaining:
            self._replace(seq, remaining)
        else:
            self.remove(seq)

    def remove(self, seq: int) -> None:
        try:
            os.unlink(os.path.join(self.directory, name(seq)))
        except FileNotFoundError:
            return
        fsync_dir(self.directory)
