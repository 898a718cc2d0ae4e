"""The SIEM JSON-lines file: rotated by size, a record at a time, never past its limit."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from coffre.audit.forward import JsonLinesFile


def _records(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"type": "request", "seq": start + i, "request_id": f"req-{start + i:04d}", "pad": "x" * 200}
            for i in range(n)]


def test_a_batch_larger_than_the_limit_is_split_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesFile(str(path), max_bytes=2000, keep=20)
    asyncio.run(sink.send(_records(3)))
    asyncio.run(sink.send(_records(40, start=3)))  # about 10 KiB in one batch
    # Oldest first (the highest PATH.N), the current PATH last.
    files = [*sorted((p for p in tmp_path.iterdir() if p != path), key=lambda p: -int(p.suffix[1:])), path]
    assert len(files) > 4
    for f in files:
        assert 0 < f.stat().st_size <= 2000
        assert f.read_bytes().endswith(b"\n")  # whole lines only
        assert os.stat(f).st_mode & 0o777 == 0o600
    # Every record, once, in order.
    seqs = [json.loads(x)["seq"] for f in files for x in f.read_bytes().splitlines()]
    assert seqs == list(range(43))


def test_a_record_larger_than_the_limit_still_goes_out(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesFile(str(path), max_bytes=100, keep=1)
    asyncio.run(sink.send(_records(1)))
    asyncio.run(sink.send(_records(1, start=1)))
    assert json.loads(path.read_bytes())["seq"] == 1
    assert json.loads((tmp_path / "audit.jsonl.1").read_bytes())["seq"] == 0
