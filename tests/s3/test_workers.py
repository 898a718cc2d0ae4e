"""`coffre serve` with workers = 2 (docs/workers.md): a primary and a secondary process share the
S3 port; both serve, the secondary's requests are in the primary's one audit chain, a secondary
that dies is restarted, stopping the primary stops everything, and a secondary refuses writes
when the primary cannot write the audit log.

Which process answered a request is told by ``x-amz-id-2``: each process draws its own host id
at start (as S3's differs per host), so two values over many fresh connections are two
processes serving. The listening processes themselves are found through /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.s3.test_audit import audit_records
from tests.s3.test_tenant_audit import lines_of, requests_in, signed
from tests.server import ACCESS_KEY, SECRET_KEY, Server

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")) or not os.path.isdir("/proc"),
                                reason="starts its own servers and looks at their processes in /proc")

CREDS = (ACCESS_KEY, SECRET_KEY)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the primary's secondaries)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent's pid; the command name (field 2) may hold spaces: split after it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def host_ids(srv: Server, until: int = 2, attempts: int = 400) -> dict[str, int]:
    """x-amz-id-2 -> answers, over fresh connections (one per request), until ``until`` distinct
    processes answered."""
    seen: dict[str, int] = {}
    for _ in range(attempts):
        resp = requests.get(srv.endpoint + "/", headers={"Connection": "close"}, timeout=10)
        seen[resp.headers["x-amz-id-2"]] = seen.get(resp.headers["x-amz-id-2"], 0) + 1
        if len(seen) >= until and sum(seen.values()) >= 20:
            break
        if len(seen) < until:
            time.sleep(0.02)  # a secondary still starting
    return seen


def on_each(srv: Server, request: Callable[[], requests.Response], ids: set[str],
            attempts: int = 400) -> dict[str, requests.Response]:
    """Send ``request`` over fresh connections until each process in ``ids`` answered it once."""
    got: dict[str, requests.Response] = {}
    for _ in range(attempts):
        resp = request()
        got.setdefault(resp.headers.get("x-amz-id-2", ""), resp)
        if ids <= set(got):
            return got
    raise AssertionError(f"not every process answered: {sorted(got)} of {sorted(ids)}")


def verify(data_dir: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coffre", "audit", "verify", "--data-dir", data_dir],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(str(tmp_path_factory.mktemp("workers") / "data"), env={"COFFRE_WORKERS": "2"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(srv):
    c = make_client(srv.endpoint, CREDS)
    c.create_bucket(Bucket="shared")
    return c


def test_both_processes_serve_the_same_objects(srv, client):
    assert srv.proc is not None
    assert len(children(srv.proc.pid)) == 1  # one secondary
    ids = host_ids(srv)
    assert len(ids) == 2, ids  # the kernel spread fresh connections over both processes
    body = os.urandom(70_000)
    client.put_object(Bucket="shared", Key="obj", Body=body)  # one connection
    url = client.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "obj"}, ExpiresIn=600)
    answers = on_each(srv, lambda: requests.get(url, headers={"Connection": "close"}, timeout=10), set(ids))
    for resp in answers.values():  # a GET served by each process returns the same bytes
        assert resp.status_code == 200 and resp.content == body
    # A write through each process, read back through the other.
    for i, h in enumerate(sorted(ids)):
        put = client.generate_presigned_url("put_object", Params={"Bucket": "shared", "Key": f"by-{i}"},
                                            ExpiresIn=600)
        resp = on_each(srv, lambda put=put: requests.put(put, data=f"from {h}".encode(),
                                                         headers={"Connection": "close"}, timeout=10), {h})[h]
        assert resp.status_code == 200, resp.text
        assert client.get_object(Bucket="shared", Key=f"by-{i}")["Body"].read() == f"from {h}".encode()


def test_every_process_records_into_the_one_chain(srv, client):
    ids = set(host_ids(srv))
    assert len(ids) == 2
    url = client.generate_presigned_url("head_bucket", Params={"Bucket": "shared"}, ExpiresIn=600)
    rids = {h: r.headers["x-amz-request-id"]
            for h, r in on_each(srv, lambda: requests.head(url, headers={"Connection": "close"}, timeout=10),
                                ids).items()}
    # The tenant's export includes the requests just made on both processes, whichever answers it
    # (the secondary has the primary seal the log first). A streamed export carries no host id:
    # over 12 fresh connections both processes answer some (all on one: 1 chance in 2048).
    for _ in range(12):
        resp = signed(srv.endpoint, CREDS, "GET", "/_coffre/audit")
        mine = {r["request_id"] for r in requests_in(lines_of(resp))}
        assert set(rids.values()) <= mine
    chain = [r for r in audit_records(srv.data_dir) if r.get("type") == "request"]
    assert set(rids.values()) <= {r["request_id"] for r in chain}
    seqs = [r["seq"] for r in audit_records(srv.data_dir)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one writer: one unbroken sequence


def test_a_killed_secondary_is_restarted(srv, client):
    assert srv.proc is not None
    (old,) = children(srv.proc.pid)
    before = set(host_ids(srv))
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: [p for p in children(srv.proc.pid) if p != old and alive(p)], 15, "secondary not restarted")
    deadline = time.monotonic() + 20
    while True:  # the new process draws a new host id once it serves
        now = set(host_ids(srv, attempts=40))
        if len(now) == 2 and now - before:
            break
        assert time.monotonic() < deadline, f"the restarted secondary does not serve: {now}"
        time.sleep(0.2)
    client.put_object(Bucket="shared", Key="after-restart", Body=b"x")
    assert b"restarting it" in Path(srv.log_path).read_bytes()


def test_a_secondary_refuses_writes_while_the_primary_cannot_audit(tmp_path: Path):
    data = tmp_path / "data"
    srv = Server(str(data), env={"COFFRE_WORKERS": "2", "COFFRE_AUDIT_SEGMENT_MAX_BYTES": "2000"}).start()
    audit_dir, moved = data / "audit", data / "audit.moved"
    try:
        c = make_client(srv.endpoint, CREDS)
        c.create_bucket(Bucket="fragile")
        ids = set(host_ids(srv))
        assert len(ids) == 2
        url = c.generate_presigned_url("put_object", Params={"Bucket": "fragile", "Key": "w"}, ExpiresIn=600)

        def put() -> requests.Response:
            return requests.put(url, data=b"w", headers={"Connection": "close"}, timeout=10)

        # The log's directory disappears: the primary's next segment cannot be created.
        audit_dir.rename(moved)
        audit_dir.write_bytes(b"")
        refused: set[str] = set()
        deadline = time.monotonic() + 20
        while refused != ids:
            resp = put()
            if resp.status_code == 503:
                assert b"audit log unavailable" in resp.content
                refused.add(resp.headers["x-amz-id-2"])
            assert time.monotonic() < deadline, f"writes still accepted by {ids - refused}"
            time.sleep(0.02)
        get = c.generate_presigned_url("get_object", Params={"Bucket": "fragile", "Key": "w"}, ExpiresIn=600)
        for resp in on_each(srv, lambda: requests.get(get, headers={"Connection": "close"}, timeout=10),
                            ids).values():
            assert resp.status_code == 200  # reads go on everywhere
        # The log comes back: both accept writes again.
        audit_dir.unlink()
        moved.rename(audit_dir)
        wait_for(lambda: all(r.status_code == 200 for r in on_each(srv, put, ids).values()), 20,
                 "writes still refused after the log came back")
    finally:
        if audit_dir.is_file():
            audit_dir.unlink()
        if moved.exists():
            moved.rename(audit_dir)
        srv.stop()


def test_stopping_the_primary_stops_every_worker(tmp_path: Path):
    data = str(tmp_path / "data")
    srv = Server(data, env={"COFFRE_WORKERS": "2"}).start()
    try:
        assert srv.proc is not None
        c = make_client(srv.endpoint, CREDS)
        c.create_bucket(Bucket="stopping")
        ids = set(host_ids(srv))
        url = c.generate_presigned_url("put_object", Params={"Bucket": "stopping", "Key": "k"}, ExpiresIn=600)
        rids = [r.headers["x-amz-request-id"] for r in on_each(
            srv, lambda: requests.put(url, data=b"v", headers={"Connection": "close"}, timeout=10), ids).values()]
        secondaries = children(srv.proc.pid)
        assert len(secondaries) == 1
        # SIGTERM: the secondary stops (its last records sent), then the primary closes the log.
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0
        assert not [p for p in secondaries if alive(p)], "a secondary outlived its primary"
        result = verify(data)
        assert result.returncode == 0, result.stdout + result.stderr
        assert set(rids) <= {r.get("request_id") for r in audit_records(data)}

        # SIGKILL of the primary: the secondary sees its channel end and exits (no orphan serving).
        srv.start()
        wait_for(lambda: len(children(srv.proc.pid)) == 1, 15, "no secondary")
        secondaries = children(srv.proc.pid)
        wait_for(lambda: len(host_ids(srv, attempts=40)) == 2, 15, "the secondary does not serve")
        srv.kill()
        wait_for(lambda: not [p for p in secondaries if alive(p)], 20, "a secondary outlived a killed primary")
        with pytest.raises(requests.ConnectionError):
            requests.get(srv.endpoint + "/", timeout=5)
    finally:
        srv.stop()


def test_workers_one_is_a_single_process(server):
    """The default (workers = 1): no secondary process at all."""
    if server is None:
        pytest.skip("needs a local server")
    assert server.proc is not None and children(server.proc.pid) == []


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


def test_client_errors_are_the_same_on_every_process(srv, client, unique):
    url = client.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": f"none-{unique}"},
                                        ExpiresIn=600)
    ids = set(host_ids(srv))
    for resp in on_each(srv, lambda: requests.get(url, headers={"Connection": "close"}, timeout=10),
                        ids).values():
        assert resp.status_code == 404 and b"NoSuchKey" in resp.content
    with pytest.raises(ClientError):
        client.head_object(Bucket="shared", Key=f"none-{unique}")


def test_each_process_queues_and_delivers_its_own_events(tmp_path: Path):
    from tests.s3.test_notifications import Loop, Webhook, of_bucket, queue_config

    loop = Loop()
    hook = Webhook(loop)  # not started yet: the first events wait on disk
    data = str(tmp_path / "data")
    env = {"COFFRE_WORKERS": "2", "COFFRE_NOTIFY_RETRY_MAX_SECONDS": "0.5",
           "COFFRE_NOTIFY_TARGETS": json.dumps([{"id": "hook", "type": "webhook", "url": hook.url}])}
    srv = Server(data, env=env).start()
    try:
        c = make_client(srv.endpoint, CREDS)
        c.create_bucket(Bucket="events")
        c.put_bucket_notification_configuration(Bucket="events", NotificationConfiguration={
            "QueueConfigurations": [queue_config("hook", "webhook", ["s3:ObjectCreated:*"])]})
        ids = set(host_ids(srv))
        url = c.generate_presigned_url("put_object", Params={"Bucket": "events", "Key": "k"}, ExpiresIn=600)
        answered = on_each(srv, lambda: requests.put(url, data=b"v", headers={"Connection": "close"},
                                                     timeout=10), ids)
        assert all(r.status_code == 200 for r in answered.values())
        # notify_wait_durable: each acknowledged event is on disk, in its own process's queue.
        assert os.listdir(Path(data) / "notify-workers" / "1" / "hook")
        assert os.listdir(Path(data) / "notify" / "hook")
        srv.stop()
        # Started again with one process: the primary adopts what the secondary left, and delivers.
        srv.env["COFFRE_WORKERS"] = "1"
        hook.start()
        srv.start()
        got = of_bucket(hook.records(), "events")
        deadline = time.monotonic() + 20
        while len({r["responseElements"]["x-amz-id-2"] for r in got}) < 2:
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
            got = of_bucket(hook.records(), "events")
        assert {r["responseElements"]["x-amz-id-2"] for r in got} == ids
        assert not (Path(data) / "notify-workers" / "1").exists()  # adopted, then removed
    finally:
        srv.stop()
        hook.stop()
        loop.close()
