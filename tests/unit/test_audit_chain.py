"""The audit log on disk: every way of tampering with it is caught and located.

These drive the log writer directly with a settable clock (days of retention in a test);
tests/s3/test_audit.py checks the same log as a real server writes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from coffre.audit import records as r
from coffre.audit.event import AuditEvent
from coffre.audit.log import DAY, AuditLog
from coffre.audit.records import Signer, load_public_key
from coffre.audit.trail import AuditTrail
from coffre.audit.verify import verify
from coffre.settings import Settings

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(i: int, **kw) -> dict:
    base = dict(time=T0 + i, request_id=f"REQ{i:06d}", principal="arn:aws:iam::1:root", tenant="1",
                access_key="AK", operation="PutObject", bucket="b", key=f"k{i}", version_id=None, status=200,
                error_code=None, bytes_in=10, bytes_out=0, source_ip="127.0.0.1", user_agent="ua",
                duration_ms=1, api="s3", operator_action=False)
    base.update(kw)
    return base


def make_log(d: Path, clock: Clock | None = None, **kw) -> AuditLog:
    log = AuditLog(str(d), clock=clock or Clock(), **kw)
    log.open()
    return log


def pub(d: Path):
    return load_public_key(str(d / r.PUB_FILE))


def lines(d: Path, name: str | None = None) -> list[bytes]:
    name = name or r.list_segments(str(d))[-1]
    return (d / name).read_bytes().splitlines(keepends=True)


def write_lines(d: Path, name: str, ls: list[bytes]) -> None:
    (d / name).write_bytes(b"".join(ls))


def problem(d: Path, **kw) -> str:
    rep = verify(str(d), pub(d), **kw)
    assert rep.problem is not None, "tampering went undetected"
    return str(rep.problem)


@pytest.fixture
def one_segment(tmp_path: Path) -> Path:
    """A closed log of one segment: header, 20 requests (a checkpoint after 8 and 16), close."""
    log = make_log(tmp_path, checkpoint_records=8)
    log.append([event(i) for i in range(20)])
    log.close()
    rep = verify(str(tmp_path), pub(tmp_path))
    assert rep.ok, rep.problem
    assert (rep.requests, rep.checkpoints, rep.records) == (20, 3, 24)
    return tmp_path


def test_records_are_canonical_and_chained(one_segment: Path):
    ls = lines(one_segment)
    recs = [json.loads(x) for x in ls]
    for raw, rec in zip(ls, recs, strict=True):
        # The content in canonical form (sorted keys, no spaces), then hash, prev and seq; one line.
        content = {k: v for k, v in rec.items() if k not in ("hash", "prev", "seq")}
        link = {"hash": rec["hash"], "prev": rec["prev"], "seq": rec["seq"]}
        assert raw == r.canonical(content)[:-1] + b"," + r.canonical(link)[1:] + b"\n"
        assert rec["hash"] == r.digest(rec)
        # The content digest is the SHA-256 of the bytes the line starts with.
        assert r.content_digest(rec) == hashlib.sha256(r.canonical(content)).hexdigest()
    assert recs[0]["type"] == "segment" and recs[0]["prev"] == r.GENESIS and recs[0]["seq"] == 0
    for a, b in zip(recs, recs[1:], strict=False):
        assert b["prev"] == a["hash"] and b["seq"] == a["seq"] + 1
    assert recs[-1]["type"] == "checkpoint" and recs[-1]["reason"] == "close"
    assert [x["reason"] for x in recs if x["type"] == "checkpoint"] == ["periodic", "periodic", "close"]
    assert recs[1]["time"] == "2026-01-01T00:00:00.000Z" and recs[1]["key"] == "k0"


def test_link_spelled_out_is_the_canonical_form():
    """The writer's link bytes are written out by hand (no encoder per record): they must be
    exactly the canonical form, or every hash written would fail verification elsewhere."""
    for seq, prev in ((0, r.GENESIS), (7, "ab" * 32), (10**12, hashlib.sha256(b"x").hexdigest())):
        content = hashlib.sha256(str(seq).encode()).hexdigest()
        want = hashlib.sha256(r.canonical({"content": content, "prev": prev, "seq": seq})).hexdigest()
        assert r.link(seq, prev, content) == want
    # What a tampered record may hold goes through the encoder and still hashes its canonical form.
    for seq, prev in (("7", "ab" * 32), (True, "ab" * 32), (1, "AB" * 32), (1, None), (1.5, r.GENESIS),
                      (1, 'a"b'), (1, "é" * 64), (1, "a\\b"), (1, "")):
        want = hashlib.sha256(r.canonical({"content": "c" * 64, "prev": prev, "seq": seq})).hexdigest()
        assert r.link(seq, prev, "c" * 64) == want


def test_chained_line_after_a_strange_prev():
    """A last hash that is not a hex digest (a log tampered with before a restart) still gives a
    JSON line whose hash verifies; the tampering itself is verify's to report."""
    content = r.canonical({"type": "request", "hv": 2, "key": "k"})
    for prev in ("ab" * 32, 'x"y', "é", "a\\b"):
        h, line = r.chained_line(content, 5, prev)
        rec = json.loads(line)
        assert rec["prev"] == prev and rec["seq"] == 5 and rec["hash"] == h == r.digest(rec)
        assert line.startswith(content[:-1]) and line.endswith(b"}\n")


def test_time_and_nonces():
    assert r.utc(1767225600.0) == "2026-01-01T00:00:00.000Z"
    assert r.utc(1767225600.9996) == "2026-01-01T00:00:00.999Z"  # truncated to the millisecond
    assert r.utc(1767225659.9999996) == "2026-01-01T00:01:00.000Z"  # rounded to the microsecond first
    assert r.utc(1796043723.042) == "2026-11-30T13:02:03.042Z"
    batch = r.nonces(50)
    assert len(batch) == 50 and len(set(batch)) == 50
    assert all(len(n) == 32 and int(n, 16) >= 0 for n in batch)
    assert r.nonces(0) == []


def test_key_files(one_segment: Path):
    assert (one_segment / r.KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert b"PUBLIC KEY" in (one_segment / r.PUB_FILE).read_bytes()
    assert b"PRIVATE" not in (one_segment / r.PUB_FILE).read_bytes()
    # The same key on the next start: old checkpoints stay verifiable.
    log = make_log(one_segment)
    log.append([event(99)])
    log.close()
    assert verify(str(one_segment), pub(one_segment)).ok


def test_modified_field_is_named(one_segment: Path):
    name = r.list_segments(str(one_segment))[0]
    ls = lines(one_segment)
    ls[5] = ls[5].replace(b'"status":200', b'"status":404')
    write_lines(one_segment, name, ls)
    msg = problem(one_segment)
    assert f"segment {name} line 6 (seq 5)" in msg and "modified" in msg, msg


def test_rewritten_chain_fails_at_the_next_checkpoint(one_segment: Path):
    """An attacker who rehashes every record after a change still cannot sign a checkpoint."""
    name = r.list_segments(str(one_segment))[0]
    recs = [json.loads(x) for x in lines(one_segment)]
    recs[3]["key"] = "someone-else"
    for i in range(3, len(recs)):
        recs[i]["prev"] = recs[i - 1]["hash"]
        recs[i]["hash"] = r.digest(recs[i])
    write_lines(one_segment, name, [r.canonical(x) + b"\n" for x in recs])
    msg = problem(one_segment)
    assert "line 10 (seq 9)" in msg and "invalid checkpoint signature" in msg, msg


def test_deleted_record_is_named(one_segment: Path):
    name = r.list_segments(str(one_segment))[0]
    ls = lines(one_segment)
    del ls[4]
    write_lines(one_segment, name, ls)
    msg = problem(one_segment)
    assert "line 5 (seq 5)" in msg and "jumps from 3 to 5" in msg, msg


def test_reordered_records_are_named(one_segment: Path):
    name = r.list_segments(str(one_segment))[0]
    ls = lines(one_segment)
    ls[6], ls[7] = ls[7], ls[6]
    write_lines(one_segment, name, ls)
    msg = problem(one_segment)
    assert "line 7 (seq 7)" in msg and "reordered" in msg, msg


def test_truncated_end_is_detected(one_segment: Path):
    name = r.list_segments(str(one_segment))[0]
    ls = lines(one_segment)
    write_lines(one_segment, name, ls[:-3])  # the closing checkpoint and two records gone
    msg = problem(one_segment)
    assert "line 21 (seq 20)" in msg and "truncated" in msg, msg
    # Cut in the middle of a line.
    write_lines(one_segment, name, ls[:-1] + [ls[-1][:40]])
    msg = problem(one_segment)
    assert "line 24" in msg and "incomplete" in msg, msg
    # The whole file emptied.
    write_lines(one_segment, name, [])
    assert "empty segment" in problem(one_segment)


def test_forged_checkpoint_signature(one_segment: Path):
    name = r.list_segments(str(one_segment))[0]
    recs = [json.loads(x) for x in lines(one_segment)]
    cp = next(i for i, x in enumerate(recs) if x["type"] == "checkpoint")
    recs[cp]["sig"] = "00" * 64
    recs[cp]["hash"] = r.digest(recs[cp])
    for i in range(cp + 1, len(recs)):  # even with the rest of the chain rebuilt
        recs[i]["prev"] = recs[i - 1]["hash"]
        recs[i]["hash"] = r.digest(recs[i])
    write_lines(one_segment, name, [r.canonical(x) + b"\n" for x in recs])
    msg = problem(one_segment)
    assert f"line {cp + 1} (seq {cp})" in msg and "invalid checkpoint signature" in msg, msg


def test_checkpoint_signed_by_another_key(one_segment: Path, tmp_path_factory):
    """A checkpoint re-signed with an attacker's own key does not pass against the deployment's key."""
    other_dir = tmp_path_factory.mktemp("other")
    other = Signer.load_or_create(str(other_dir))
    name = r.list_segments(str(one_segment))[0]
    recs = [json.loads(x) for x in lines(one_segment)]
    last = recs[-1]
    last["signer"] = other.key_id
    last["sig"] = other.sign(last)
    last["hash"] = r.digest(last)
    write_lines(one_segment, name, [r.canonical(x) + b"\n" for x in recs])
    assert "not the given public key" in problem(one_segment)
    # ... and it would pass only against the attacker's key: the public key must come from the deployment.
    assert verify(str(one_segment), load_public_key(str(other_dir / r.PUB_FILE))).problem is not None


def _segmented(d: Path, segments: int = 4) -> list[str]:
    """A log rotated by size into several segments."""
    log = make_log(d, segment_max_bytes=2000, checkpoint_records=1000)
    i = 0
    while len(r.list_segments(str(d))) < segments:
        log.append([event(i)])
        i += 1
    log.append([event(i)])
    log.close()
    assert verify(str(d), pub(d)).ok
    return r.list_segments(str(d))


def test_rotation_keeps_the_chain(tmp_path: Path):
    names = _segmented(tmp_path)
    assert [r.segment_index(n) for n in names] == [1, 2, 3, 4]
    for prev_name, name in zip(names, names[1:], strict=False):
        prev_last = json.loads(lines(tmp_path, prev_name)[-1])
        head = json.loads(lines(tmp_path, name)[0])
        assert prev_last["type"] == "checkpoint" and prev_last["reason"] == "rotate" and prev_last["next"] == name
        assert head["type"] == "segment" and head["prev"] == prev_last["hash"]


def test_deleted_middle_segment_is_named(tmp_path: Path):
    names = _segmented(tmp_path)
    os.unlink(tmp_path / names[1])
    msg = problem(tmp_path)
    assert f"segment {names[2]} line 1" in msg and "removed" in msg, msg


def test_deleted_last_segment_is_detected(tmp_path: Path):
    names = _segmented(tmp_path)
    os.unlink(tmp_path / names[-1])
    msg = problem(tmp_path)
    assert f"segment {names[-2]}" in msg and names[-1] in msg and "missing" in msg, msg


def test_deleted_first_segment_without_retention(tmp_path: Path):
    names = _segmented(tmp_path)
    os.unlink(tmp_path / names[0])
    msg = problem(tmp_path)
    assert f"segment {names[1]} line 1" in msg and "no signed retention record" in msg, msg


def test_retention_prunes_old_segments_and_still_verifies(tmp_path: Path):
    clock = Clock()
    log = make_log(tmp_path, clock, retention_days=10)
    for day in range(15):  # one segment per day (daily rotation)
        clock.now = T0 + day * DAY
        log.append([event(day * 10 + j, time=clock.now + j) for j in range(3)])
    log.tick()
    names = r.list_segments(str(tmp_path))
    # The cut-off is day 4 (14 - 10): a segment goes when the next one began before it, so days
    # 0-2 go; day 3 stays, as its records may run up to the day-4 boundary.
    assert names[0] == "audit-20260104-0004.jsonl" and len(names) == 12
    log.close()
    rep = verify(str(tmp_path), pub(tmp_path))
    assert rep.ok, rep.problem
    assert any("retention" in n for n in rep.notes)
    retention = [json.loads(x) for n in names for x in lines(tmp_path, n) if b'"type":"retention"' in x]
    assert len(retention) == 1 and retention[0]["first_kept"]["segment"] == names[0]
    # Deleting one more segment than retention did is caught.
    os.unlink(tmp_path / names[0])
    msg = problem(tmp_path)
    assert f"segment {names[1]} line 1" in msg and "no signed retention record" in msg, msg


def test_retention_record_cannot_be_forged(tmp_path: Path):
    clock = Clock()
    log = make_log(tmp_path, clock, retention_days=0)  # 0: keep everything
    for day in range(4):
        clock.now = T0 + day * DAY
        log.append([event(day)])
    log.tick()
    log.close()
    names = r.list_segments(str(tmp_path))
    assert len(names) == 4
    # An attacker deletes the first segment and appends a retention record signed by nobody.
    os.unlink(tmp_path / names[0])
    recs = [json.loads(x) for x in lines(tmp_path)]
    head = json.loads(lines(tmp_path, names[1])[0])
    fake = {"type": "retention", "time": recs[-1]["time"], "seq": recs[-1]["seq"] + 1, "prev": recs[-1]["hash"],
            "removed": [names[0]], "first_kept": {"segment": names[1], "seq": head["seq"], "hash": head["hash"]},
            "signer": recs[-1]["signer"], "sig": "11" * 64}
    fake["hash"] = r.digest(fake)
    with open(tmp_path / names[-1], "ab") as fh:
        fh.write(r.canonical(fake) + b"\n")
    msg = problem(tmp_path)
    assert "invalid retention signature" in msg, msg


def test_crash_leaves_a_verifiable_log(tmp_path: Path):
    """A process killed mid-write: the half line is cut on restart and the tail sealed."""
    log = make_log(tmp_path)
    log.append([event(i) for i in range(5)])
    name = r.list_segments(str(tmp_path))[-1]
    log.abandon()  # no closing checkpoint, as after a kill
    with open(tmp_path / name, "ab") as fh:
        fh.write(b'{"type":"request","seq":')
    assert "incomplete" in problem(tmp_path)
    assert verify(str(tmp_path), pub(tmp_path), live=True).ok  # a live log may end mid-write
    log = make_log(tmp_path)
    log.append([event(9)])
    log.close()
    rep = verify(str(tmp_path), pub(tmp_path))
    assert rep.ok, rep.problem
    reasons = [json.loads(x).get("reason") for x in lines(tmp_path)]
    assert "recover" in reasons


def test_live_log_without_closing_checkpoint(tmp_path: Path):
    log = make_log(tmp_path)
    log.append([event(1)])
    assert "without a closing checkpoint" in problem(tmp_path)
    rep = verify(str(tmp_path), pub(tmp_path), live=True)
    assert rep.ok and rep.unsealed == 1
    log.close()


def test_keys_that_are_not_utf8_are_escaped():
    ev = AuditEvent(**{**event(1), "key": "caf\udce9"})
    assert ev.fields()["key"] == "caf\\xe9"
    r.canonical(ev.fields())  # encodable


# -- the queue in front of the log --

def _trail(tmp_path: Path, **kw) -> AuditTrail:
    settings = replace(Settings(), data_dir=str(tmp_path), **kw)
    return AuditTrail(settings)


def test_full_queue_refuses_writes_when_required(tmp_path: Path):
    async def go() -> None:
        trail = _trail(tmp_path, audit_queue_size=2)
        assert trail.accepting_writes()
        ev = AuditEvent(**event(1))
        for _ in range(3):  # the writer is not started: the queue fills
            trail.record(ev)
        assert not trail.accepting_writes()
        await trail.start()  # the writer drains it, then writes the count of what was lost
        for _ in range(100):
            if trail.accepting_writes() and trail._queue.empty():
                break
            await asyncio.sleep(0.02)
        assert trail.accepting_writes()
        await trail.close()

    asyncio.run(go())
    d = tmp_path / "audit"
    rep = verify(str(d), pub(d))
    assert rep.ok, rep.problem
    assert rep.requests == 2 and rep.lost == 1


def test_group_commit_bounds_the_writes_and_keeps_every_record(tmp_path: Path):
    """Under a steady stream of requests, at most one write + fsync per audit_group_commit_seconds;
    every record is written, in order, and a lone record after a pause is written at once."""
    interval = 0.05

    async def go() -> tuple[int, float, float]:
        trail = _trail(tmp_path, audit_group_commit_seconds=interval)
        await trail.start()
        await asyncio.sleep(0.1)  # past the first interval: the log is idle
        calls: list[int] = []
        append = trail.log.append_prepared

        def counted(prepared, lost=0):
            calls.append(len(prepared))
            return append(prepared, lost)

        trail.log.append_prepared = counted  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(200):  # ~0.4 s of one request every 2 ms
            trail.record(AuditEvent(**event(i)))
            await asyncio.sleep(0.002)
        elapsed = loop.time() - start
        while not trail._queue.empty():
            await asyncio.sleep(0.01)
        await asyncio.sleep(2 * interval)
        assert sum(calls) == 200
        writes = len(calls)
        await asyncio.sleep(2 * interval)  # idle again: the next record does not wait
        before = loop.time()
        trail.record(AuditEvent(**event(200)))
        while sum(calls) < 201:
            await asyncio.sleep(0.001)
        lone = loop.time() - before
        await trail.close()
        return writes, lone, elapsed

    writes, lone, elapsed = asyncio.run(go())
    assert writes <= elapsed / interval + 3, writes  # not one per record (200)
    assert writes >= 2
    assert lone < interval
    d = tmp_path / "audit"
    rep = verify(str(d), pub(d))
    assert rep.ok and rep.requests == 201, rep.problem
    keys = [json.loads(x)["key"] for x in lines(d) if b'"type":"request"' in x]
    assert keys == [event(i)["key"] for i in range(201)]


def test_not_required_never_refuses(tmp_path: Path):
    trail = _trail(tmp_path, audit_queue_size=1, audit_required=False)
    ev = AuditEvent(**event(1))
    trail.record(ev)
    trail.record(ev)
    assert trail.accepting_writes()


def test_log_unwritable_at_start_then_back(tmp_path: Path):
    """The audit directory cannot be created: writes refused from the first request on, until it can."""
    (tmp_path / "audit").write_bytes(b"")  # a file where the directory should be

    async def go() -> None:
        trail = _trail(tmp_path)
        await trail.start()
        assert not trail.accepting_writes()
        trail.record(AuditEvent(**event(1)))  # kept in the queue meanwhile
        await asyncio.sleep(0.1)
        assert not trail.accepting_writes()
        (tmp_path / "audit").unlink()
        for _ in range(100):  # the writer retries every second
            if trail.accepting_writes():
                break
            await asyncio.sleep(0.05)
        assert trail.accepting_writes()
        await trail.close()

    asyncio.run(go())
    d = tmp_path / "audit"
    rep = verify(str(d), pub(d))
    assert rep.ok and rep.requests == 1, rep.problem


def test_cli_exit_status(one_segment: Path, tmp_path_factory, capsys):
    from coffre.cli.main import main

    assert main(["audit", "verify", "--log-dir", str(one_segment)]) == 0
    assert "audit log intact: 1 segment(s), 24 records" in capsys.readouterr().out
    name = r.list_segments(str(one_segment))[0]
    ls = lines(one_segment)
    write_lines(one_segment, name, ls[:3] + ls[4:])
    assert main(["audit", "verify", "--log-dir", str(one_segment)]) == 1
    assert f"first bad record: segment {name} line 4 (seq 4)" in capsys.readouterr().out
    empty = tmp_path_factory.mktemp("nolog")
    assert main(["audit", "verify", "--data-dir", str(empty)]) == 2  # no log at all
    assert main(["audit", "verify", "--log-dir", str(one_segment), "--public-key", str(empty / "x.pub")]) == 2


def test_a_log_written_before_hash_version_2_still_verifies(one_segment: Path):
    """An upgrade must not make the trail of an earlier coffre unverifiable: records without
    ``hv`` use the earlier hash (SHA-256 of the record without ``hash``), and the chain runs on
    through the records written after the upgrade."""
    name = r.list_segments(str(one_segment))[-1]
    signer = Signer.load_or_create(str(one_segment))
    old: list[bytes] = []
    prev = r.GENESIS
    for raw in lines(one_segment, name):
        rec = json.loads(raw)
        rec.pop("hv")
        rec.pop("hash")
        rec["prev"] = prev
        if rec["type"] in r.SIGNED:
            rec.pop("sig")
            rec["sig"] = signer.sign(rec)
        rec["hash"] = r.digest(rec)  # without hv: the earlier formula
        prev = rec["hash"]
        old.append(r.canonical(rec) + b"\n")
    write_lines(one_segment, name, old)
    assert verify(str(one_segment), pub(one_segment)).ok
    # The upgraded server appends to it with hash version 2; the whole chain verifies.
    log = make_log(one_segment, clock=Clock(T0 + 100), checkpoint_records=8)
    log.append([event(100 + i) for i in range(5)])
    log.close()
    rep = verify(str(one_segment), pub(one_segment))
    assert rep.ok, rep.problem
    recs = [json.loads(x) for n in r.list_segments(str(one_segment)) for x in lines(one_segment, n)]
    assert {"hv" in x for x in recs} == {True, False}
    # Tampering with an old record is still named.
    tampered = lines(one_segment, name)
    tampered[3] = tampered[3].replace(b'"key":"k2"', b'"key":"kX"')
    write_lines(one_segment, name, tampered)
    assert "seq 3" in problem(one_segment)
