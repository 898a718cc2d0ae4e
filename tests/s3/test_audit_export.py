"""Tenant exports are verifiable alone and catch tampering; syslog (UDP and TCP) and the SIEM file
receive every request record, from a real server, and never anything secret.

The tamper tests cut an export from a real audit log (two tenants' records interleaved) and
change it the ways an attacker could: modify, delete, reorder, truncate, hide one of the
tenant's records as a digest, or re-sign with another key.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coffre.audit import records as r
from coffre.audit.export import redacted, verify_export, write_export
from coffre.audit.log import AuditLog
from coffre.audit.records import Signer
from tests.conftest import make_client
from tests.server import ACCESS_KEY, OPERATOR_SECRET_KEY, SECRET_KEY, Server


def _log(tmp_path: Path) -> AuditLog:
    log = AuditLog(str(tmp_path / "audit"), checkpoint_records=4)
    log.open()
    for i in range(20):
        tenant = "111111111111" if i % 3 == 0 else "222222222222"
        log.append([{"time": time.time(), "request_id": f"R{i:04d}", "principal": f"arn:aws:iam::{tenant}:root",
                     "tenant": tenant, "operation": "PutObject", "bucket": f"b{tenant}", "key": f"k{i}",
                     "status": 200, "api": "s3"}])
    log.close()
    return log


def _export(tmp_path: Path) -> tuple[list[bytes], Path]:
    log = _log(tmp_path)
    buf = io.BytesIO()
    info = write_export(log.directory, log.signer, "111111111111", buf)
    assert info.own == 7
    pub = tmp_path / "audit" / r.PUB_FILE
    return buf.getvalue().splitlines(), pub


def _cli(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffre", "audit", "verify-export", str(path), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _write(tmp_path: Path, lines: list[bytes], name: str = "export.jsonl") -> Path:
    p = tmp_path / name
    p.write_bytes(b"".join(line + b"\n" for line in lines))
    return p


def test_export_verifies_and_shows_only_digests_of_others(tmp_path):
    lines, pub = _export(tmp_path)
    public = r.load_public_key(str(pub))
    rep = verify_export(lines, public)
    assert rep.ok, rep.problem
    assert (rep.own, rep.tenant) == (7, "111111111111") and rep.redacted > 0 and rep.checkpoints >= 2
    for line in lines[1:]:
        e = json.loads(line)
        if e.get("type") == "request":
            assert e["tenant"] == "111111111111"
        elif "type" not in e:
            assert set(e) == {"seq", "prev", "content", "hash"}
    assert b"222222222222" not in b"".join(lines)
    ok = _cli(_write(tmp_path, lines), "--public-key", str(pub), "--tenant", "111111111111")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "7 record(s) of the tenant" in ok.stdout
    # Without --public-key the key in the export is used, and the output says what that proves.
    own_key = _cli(_write(tmp_path, lines))
    assert own_key.returncode == 0 and "public key inside the export" in own_key.stdout
    wrong_tenant = _cli(_write(tmp_path, lines), "--public-key", str(pub), "--tenant", "222222222222")
    assert wrong_tenant.returncode == 1


def test_digest_reveals_nothing_guessable(tmp_path):
    """Two records with the same fields have different digests (the per-record nonce)."""
    log = AuditLog(str(tmp_path / "audit"))
    log.open()
    same = {"time": 0.0, "request_id": "X", "principal": "p", "tenant": "222222222222", "status": 200}
    log.append([dict(same), dict(same)])
    log.close()
    recs = [json.loads(line) for name in r.list_segments(log.directory)
            for line in (Path(log.directory) / name).read_bytes().splitlines()]
    reqs = [x for x in recs if x["type"] == "request"]
    assert len(reqs) == 2 and len({x["nonce"] for x in reqs}) == 2
    assert redacted(reqs[0])["content"] != redacted(reqs[1])["content"]
    # Guessing every field but the nonce does not reproduce the digest.
    guess = {k: v for k, v in reqs[0].items() if k not in ("hash", "seq", "prev", "nonce")}
    assert r.content_digest(guess) != redacted(reqs[0])["content"]


def _tampered(lines: list[bytes], how: str, tmp_path: Path) -> list[bytes]:
    out = list(lines)
    own = [i for i, line in enumerate(out) if b'"type":"request"' in line]
    others = [i for i, line in enumerate(out) if i > 0 and b'"type"' not in line]
    if how == "modify":
        rec = json.loads(out[own[1]])
        rec["key"] = "something-else"
        out[own[1]] = r.canonical(rec)
    elif how == "modify-rehash":  # the record's hash recomputed too: the chain breaks after it
        rec = json.loads(out[own[1]])
        rec["status"] = 500
        rec["hash"] = r.digest(rec)
        out[own[1]] = r.canonical(rec)
    elif how == "modify-rechain":  # every hash after it recomputed: the checkpoint signature fails
        i = own[1]
        rec = json.loads(out[i])
        rec["status"] = 500
        rec["hash"] = r.digest(rec)
        out[i] = r.canonical(rec)
        prev = rec["hash"]
        for j in range(i + 1, len(out)):
            e = json.loads(out[j])
            e["prev"] = prev
            e["hash"] = r.link(e["seq"], prev, e["content"]) if "type" not in e else r.digest(e)
            out[j] = r.canonical(e)
            prev = e["hash"]
    elif how == "delete-own":
        del out[own[2]]
    elif how == "delete-other":
        del out[others[0]]
    elif how == "reorder":
        out[own[1]], out[own[1] + 1] = out[own[1] + 1], out[own[1]]
    elif how == "truncate":
        out = out[:-2]
    elif how == "truncate-line":
        out[-1] = out[-1][:-10]
    elif how == "hide-own":  # one of the tenant's records turned into a digest entry
        out[own[0]] = r.canonical(redacted(json.loads(out[own[0]])))
    elif how == "header":
        h = json.loads(out[0])
        h["own"] -= 1
        out[0] = r.canonical(h)
    elif how == "resigned":  # a whole export forged with another key
        other = Signer(Ed25519PrivateKey.generate())
        h = json.loads(out[0])
        h.pop("sig")
        h["signer"] = other.key_id
        h["sig"] = other.sign(h)
        out[0] = r.canonical(h)
    return out


@pytest.mark.parametrize("how", ["modify", "modify-rehash", "modify-rechain", "delete-own", "delete-other",
                                 "reorder", "truncate", "truncate-line", "hide-own", "header", "resigned"])
def test_tampering_is_caught(tmp_path, how):
    lines, pub = _export(tmp_path)
    bad = _tampered(lines, how, tmp_path)
    rep = verify_export(bad, r.load_public_key(str(pub)))
    assert not rep.ok, how
    res = _cli(_write(tmp_path, bad), "--public-key", str(pub))
    assert res.returncode == 1 and "NOT intact" in res.stdout, (how, res.stdout)


# -- syslog and the SIEM file, from a real server --
class _Udp:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.messages.append(self.sock.recv(65535))
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


class _Tcp:
    """A syslog receiver reading RFC 6587 octet-counted frames."""

    def __init__(self) -> None:
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.messages: list[bytes] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            buf = b""
            with conn:
                while not self._stop:
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    buf += data
                    while b" " in buf:
                        length, _, rest = buf.partition(b" ")
                        assert length.isdigit(), buf[:40]
                        n = int(length)
                        if len(rest) < n:
                            break
                        self.messages.append(rest[:n])
                        buf = rest[n:]

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.srv.close()


def _parse_5424(msg: bytes) -> tuple[int, list[str], dict]:
    """(PRI, header fields, the JSON record) of an RFC 5424 message."""
    assert msg.startswith(b"<")
    pri_end = msg.index(b">")
    pri = int(msg[1:pri_end])
    fields = msg[pri_end + 1:].split(b" ", 6)
    version, ts, host, app, procid, msgid, rest = fields
    assert version == b"1" and rest.startswith(b"- \xef\xbb\xbf")
    return pri, [ts.decode(), host.decode(), app.decode(), procid.decode(), msgid.decode()], \
        json.loads(rest[len(b"- \xef\xbb\xbf"):])


def _wait(pred, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


@pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")), reason="starts its own servers")
@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_syslog_and_siem_file(tmp_path, protocol):
    receiver = _Udp() if protocol == "udp" else _Tcp()
    siem = tmp_path / "siem" / "audit.jsonl"
    siem.parent.mkdir()
    srv = Server(str(tmp_path / "data"), env={
        "COFFRE_AUDIT_SYSLOG_ADDRESS": f"127.0.0.1:{receiver.port}", "COFFRE_AUDIT_SYSLOG_PROTOCOL": protocol,
        "COFFRE_AUDIT_SYSLOG_FACILITY": "local3", "COFFRE_AUDIT_SYSLOG_APP_NAME": "coffre-test",
        "COFFRE_AUDIT_EXPORT_FILE": str(siem), "COFFRE_AUDIT_EXPORT_FILE_MAX_BYTES": "20000",
        "COFFRE_AUDIT_EXPORT_FILE_KEEP": "2", "COFFRE_AUDIT_CHECKPOINT_SECONDS": "0.5"})
    try:
        srv.start()
        s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        bucket = "sl-" + uuid.uuid4().hex[:12]
        rid_ok = s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["RequestId"]
        rids = [s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")["ResponseMetadata"]["RequestId"]
                for i in range(60)]
        wrong = make_client(srv.endpoint, (ACCESS_KEY, "not-the-secret-000000000000"))
        try:
            wrong.get_object(Bucket=bucket, Key="k1")
        except Exception as e:  # noqa: BLE001 - refused, as expected
            rid_refused = e.response["ResponseMetadata"]["RequestId"]  # type: ignore[attr-defined]
        wanted = {rid_ok, rid_refused, *rids}

        def syslog_ids() -> set[str]:
            return {_parse_5424(m)[2].get("request_id") for m in list(receiver.messages)}

        assert _wait(lambda: wanted <= syslog_ids()), wanted - syslog_ids()
        by_id = {}
        for m in receiver.messages:
            pri, header, rec = _parse_5424(m)
            by_id[rec["request_id"]] = (pri, header, rec)
        pri, header, rec = by_id[rid_ok]
        assert pri == 19 * 8 + 6 and header[2] == "coffre-test" and header[4] == "CreateBucket"
        assert header[0] == rec["time"] and rec["bucket"] == bucket
        assert isinstance(rec["seq"], int) and len(rec["hash"]) == 64  # reconcilable with the chain
        pri, header, rec = by_id[rid_refused]
        assert pri == 19 * 8 + 5 and rec["status"] == 403  # a refusal: notice

        # The SIEM file: every record too, rotated by size, private.
        files = [siem, siem.with_name("audit.jsonl.1"), siem.with_name("audit.jsonl.2")]

        def siem_ids() -> set[str]:
            out = set()
            for f in files:
                if f.exists():
                    out |= {json.loads(line)["request_id"] for line in f.read_bytes().splitlines()}
            return out

        # Rotation keeps 2 old files: the earliest records may be gone, the latest are there.
        assert _wait(lambda: set(rids[-20:]) <= siem_ids())
        assert siem.with_name("audit.jsonl.1").exists() and not siem.with_name("audit.jsonl.3").exists()
        assert os.stat(siem).st_mode & 0o777 == 0o600
        assert all(f.stat().st_size <= 20000 for f in files if f.exists())
        everything = b"".join(receiver.messages) + b"".join(f.read_bytes() for f in files if f.exists())
        for secret in (SECRET_KEY, OPERATOR_SECRET_KEY, "not-the-secret", "Signature=", "AWS4-HMAC-SHA256"):
            assert secret.encode() not in everything
        import requests
        metrics = requests.get(srv.admin_endpoint + "/metrics", timeout=10).text
        assert 'coffre_audit_forwarded_total{sink="syslog"}' in metrics
        assert 'coffre_audit_forward_dropped_total{sink="file"} 0' in metrics
    finally:
        srv.stop()
        receiver.close()


@pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")), reason="starts its own server")
def test_syslog_receiver_down_drops_and_counts(tmp_path):
    """Nobody listens on the TCP port: requests are served as usual, the drops are counted."""
    # Bound but never listening, and held for the whole test: connections are refused, and no
    # other test's server can take the port meanwhile.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    srv = Server(str(tmp_path / "data"), env={
        "COFFRE_AUDIT_SYSLOG_ADDRESS": f"127.0.0.1:{port}", "COFFRE_AUDIT_SYSLOG_PROTOCOL": "tcp",
        "COFFRE_AUDIT_FORWARD_QUEUE_SIZE": "5"})
    try:
        srv.start()
        s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        bucket = "dn-" + uuid.uuid4().hex[:12]
        s3.create_bucket(Bucket=bucket)
        for i in range(30):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        import requests

        def dropped() -> float:
            for line in requests.get(srv.admin_endpoint + "/metrics", timeout=10).text.splitlines():
                if line.startswith('coffre_audit_forward_dropped_total{sink="syslog"}'):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        assert _wait(lambda: dropped() >= 20)
        # The chained log has every request regardless.
        log = Path(srv.data_dir) / "audit"

        def logged() -> int:
            return b"".join((log / n).read_bytes() for n in r.list_segments(str(log))).count(
                b'"operation":"PutObject"')

        assert _wait(lambda: logged() >= 30)
    finally:
        srv.stop()
        holder.close()


def test_bad_syslog_settings_stop_the_start(tmp_path):
    for env in ({"COFFRE_AUDIT_SYSLOG_ADDRESS": "127.0.0.1:514", "COFFRE_AUDIT_SYSLOG_PROTOCOL": "carrier-pigeon"},
                {"COFFRE_AUDIT_SYSLOG_ADDRESS": "127.0.0.1:514", "COFFRE_AUDIT_SYSLOG_FACILITY": "local9"},
                {"COFFRE_AUDIT_SYSLOG_ADDRESS": "no-port"}):
        srv = Server(str(tmp_path / ("d" + uuid.uuid4().hex[:6])), env=env, with_tenant=False)
        with pytest.raises(RuntimeError):
            srv.start(timeout=20)
        srv.stop()
        assert "audit_syslog" in Path(srv.log_path).read_text()


def test_public_key_pem_matches_signing_key(tmp_path):
    log = AuditLog(str(tmp_path / "audit"))
    log.open()
    pem = (tmp_path / "audit" / r.PUB_FILE).read_bytes()
    assert pem == log.signer.public.public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    log.close()
