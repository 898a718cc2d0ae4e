"""Hold your own key: a tenant key wrapped by the tenant's own key service (`coffre keyserver`).

A real coffre server and a real reference key service run as subprocesses; clients are boto3
and coffre's admin client. What is shown: a round trip over S3; the root key alone cannot open
the tenant key any more; a service that is down or disables its key stops that tenant's reads
and writes (503 / KMS.DisabledException) within the cache lifetime, other tenants go on, and
everything reads again once the service is back; the token is never in logs, responses or the
data directory in clear.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from coffre.cli.admin import ApiError
from coffre.crypto.keys import FileKeyProvider, KeyError_
from tests.conftest import make_client
from tests.keyservice import KeyService, coffre
from tests.server import ACCESS_KEY, OPERATOR_ACCESS_KEY, OPERATOR_SECRET_KEY, SECRET_KEY, Server, free_port
from tests.tenants import admin_client, create_tenant

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="runs its own coffre server and key service")

CACHE_SECONDS = 1.0  # external_key_cache_seconds of the server under test
LARGE = 3 * 1024 * 1024 + 17  # above the handler's small-body path: streamed, several segments


@pytest.fixture(scope="module")
def keyservice(tmp_path_factory: pytest.TempPathFactory):
    ks = KeyService(tmp_path_factory.mktemp("keyservice"))
    ks.keys("create-key", "acme")
    ks.start()
    yield ks
    ks.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    # DEBUG logging: the log is searched for the token too, so let it say as much as it can.
    server = Server(str(tmp_path_factory.mktemp("hyok") / "data"), env={
        "COFFRE_LOG_LEVEL": "DEBUG", "COFFRE_EXTERNAL_KEY_CACHE_SECONDS": str(CACHE_SECONDS),
        "COFFRE_EXTERNAL_KEY_TIMEOUT_SECONDS": "3"}).start()
    yield server
    server.stop()


def new_hyok_tenant(srv: Server, ks: KeyService, key_id: str = "acme") -> tuple[str, object]:
    """A new tenant whose key the key service wraps, made with `coffre admin` itself; its S3 client."""
    name = "hyok-" + uuid.uuid4().hex[:12]
    creds = create_tenant(srv, name)
    out = coffre("admin", "tenant", "set-key-provider", name, "--external-url", ks.url, "--key-id", key_id,
                 "--token-file", ks.token_file, "--endpoint", srv.admin_endpoint, "--json",
                 env={"COFFRE_ROOT_ACCESS_KEY": OPERATOR_ACCESS_KEY, "COFFRE_ROOT_SECRET_KEY": OPERATOR_SECRET_KEY})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["type"] == "external"
    return name, make_client(srv.endpoint, creds)


def code(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def tenant_row(srv: Server, name: str) -> tuple[str, bytes, str | None]:
    conn = sqlite3.connect(os.path.join(srv.data_dir, "meta.sqlite3"), timeout=30)
    try:
        row = conn.execute("SELECT id, wrapped_key, key_provider FROM tenants WHERE name=?", (name,)).fetchone()
    finally:
        conn.close()
    return row[0], bytes(row[1]), row[2]


def test_round_trip_over_s3(srv: Server, keyservice: KeyService) -> None:
    name, s3 = new_hyok_tenant(srv, keyservice)
    s3.create_bucket(Bucket=name)
    small, large = secrets.token_bytes(1000), secrets.token_bytes(LARGE)
    s3.put_object(Bucket=name, Key="small", Body=small)
    s3.put_object(Bucket=name, Key="large", Body=large)
    part = secrets.token_bytes(5 * 1024 * 1024)
    up = s3.create_multipart_upload(Bucket=name, Key="multi")["UploadId"]
    parts = [s3.upload_part(Bucket=name, Key="multi", UploadId=up, PartNumber=i, Body=part)["ETag"] for i in (1, 2)]
    s3.complete_multipart_upload(Bucket=name, Key="multi", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(parts)]})
    s3.copy_object(Bucket=name, Key="copy", CopySource={"Bucket": name, "Key": "small"})
    assert s3.get_object(Bucket=name, Key="small")["Body"].read() == small
    assert s3.get_object(Bucket=name, Key="large")["Body"].read() == large
    assert s3.get_object(Bucket=name, Key="multi", Range="bytes=5242870-5242889")["Body"].read() == \
        (part * 2)[5242870:5242890]
    assert s3.get_object(Bucket=name, Key="copy")["Body"].read() == small
    doc = admin_client(srv).call("GET", f"/tenants/{name}/key-provider")
    assert doc == {"type": "external", "url": keyservice.url, "key_id": "acme", "ca": "system", "token": "set"}
    assert admin_client(srv).call("GET", f"/tenants/{name}")["key_provider"] == "external"
    # The deployment's root key alone no longer opens the tenant key: only the tenant's service does.
    tid, wrapped, provider = tenant_row(srv, name)
    assert json.loads(provider)["url"] == keyservice.url and "token" not in json.loads(provider)
    root = FileKeyProvider(os.path.join(srv.data_dir, "root.key"))
    with pytest.raises(KeyError_):
        root.unwrap(wrapped, b"tenant|" + tid.encode())


def test_service_down_then_back_loses_nothing(srv: Server, keyservice: KeyService) -> None:
    name, s3 = new_hyok_tenant(srv, keyservice)
    s3.create_bucket(Bucket=name)
    body, large = secrets.token_bytes(4096), secrets.token_bytes(LARGE)
    s3.put_object(Bucket=name, Key="k", Body=body)
    s3.put_object(Bucket=name, Key="large", Body=large)
    other = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))  # the tenant "test", on the root key
    other.create_bucket(Bucket="other-" + name)
    keyservice.stop()
    try:
        time.sleep(CACHE_SECONDS + 0.2)  # let the cached key expire

        def unavailable(call) -> bool:
            try:
                call()
            except ClientError as e:
                assert code(e) == (503, "ServiceUnavailable"), e.response
                return True
            return False

        assert unavailable(lambda: s3.get_object(Bucket=name, Key="k")["Body"].read())
        assert unavailable(lambda: s3.get_object(Bucket=name, Key="large")["Body"].read())  # clean, not cut
        assert unavailable(lambda: s3.put_object(Bucket=name, Key="new", Body=b"x"))
        assert unavailable(lambda: s3.copy_object(Bucket=name, Key="c", CopySource={"Bucket": name, "Key": "k"}))
        # What needs no key goes on: listing, HEAD, deleting.
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["k", "large"]
        assert s3.head_object(Bucket=name, Key="k")["ContentLength"] == len(body)
        # Other tenants are not affected at all.
        other.put_object(Bucket="other-" + name, Key="x", Body=b"fine")
        assert other.get_object(Bucket="other-" + name, Key="x")["Body"].read() == b"fine"
    finally:
        keyservice.start()
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == body
    assert s3.get_object(Bucket=name, Key="large")["Body"].read() == large
    s3.put_object(Bucket=name, Key="new", Body=b"after")
    assert s3.get_object(Bucket=name, Key="new")["Body"].read() == b"after"
    assert "new" in [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]]


def test_key_disabled_at_the_service_stops_access_within_the_cache_lifetime(srv: Server,
                                                                             keyservice: KeyService) -> None:
    keyservice.keys("create-key", "revocable")
    name, s3 = new_hyok_tenant(srv, keyservice, "revocable")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"secret data")
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"secret data"
    keyservice.keys("disable-key", "revocable")
    refused: list[tuple[int, str]] = []

    def stopped() -> bool:
        try:
            s3.get_object(Bucket=name, Key="k")["Body"].read()
        except ClientError as e:
            refused.append(code(e))
            return True
        return False

    # Within the cache lifetime (plus this poll's own step), never later.
    assert wait_for(stopped, CACHE_SECONDS + 2)
    assert refused[-1] == (400, "KMS.DisabledException")
    with pytest.raises(ClientError) as put:
        s3.put_object(Bucket=name, Key="k2", Body=b"x")
    assert code(put.value) == (400, "KMS.DisabledException")
    keyservice.keys("enable-key", "revocable")
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"secret data"


def test_a_failed_switch_changes_nothing(srv: Server, keyservice: KeyService) -> None:
    name = "hyok-" + uuid.uuid4().hex[:12]
    s3 = make_client(srv.endpoint, create_tenant(srv, name))
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"kept")
    before = tenant_row(srv, name)
    admin = admin_client(srv)
    attempts = [
        ({"type": "external", "url": keyservice.url, "key_id": "acme", "token": "wrong-token-" + "x" * 20},
         (403, "AccessDenied")),
        ({"type": "external", "url": keyservice.url, "key_id": "no-such-key", "token": keyservice.token},
         (404, "KMSNotFound")),
        ({"type": "external", "url": f"http://127.0.0.1:{free_port()}", "key_id": "acme", "token": keyservice.token},
         (503, "KeyServiceUnavailable")),
        ({"type": "external", "url": "http://keys.example.com", "key_id": "acme", "token": keyservice.token},
         (400, "ValidationError")),  # plain HTTP only on loopback
    ]
    for body, expected in attempts:
        with pytest.raises(ApiError) as err:
            admin.call("PUT", f"/tenants/{name}/key-provider", body)
        assert (err.value.status, err.value.code) == expected, body
        assert keyservice.token not in err.value.message
    assert tenant_row(srv, name) == before
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"kept"


def test_back_to_the_root_key(srv: Server, keyservice: KeyService) -> None:
    name, s3 = new_hyok_tenant(srv, keyservice)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"moved back")
    doc = admin_client(srv).call("PUT", f"/tenants/{name}/key-provider", {"type": "root"})
    assert doc == {"type": "root"}
    keyservice.stop()
    try:
        time.sleep(CACHE_SECONDS + 0.2)
        # The service is not needed any more: the root key wraps the tenant key again.
        assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"moved back"
        tid, wrapped, provider = tenant_row(srv, name)
        assert provider is None
        FileKeyProvider(os.path.join(srv.data_dir, "root.key")).unwrap(wrapped, b"tenant|" + tid.encode())
    finally:
        keyservice.start()


def test_over_tls_with_a_ca_file(srv: Server, tmp_path: Path) -> None:
    ks = KeyService(tmp_path, tls=True)
    ks.keys("create-key", "tls-key")
    ks.start()
    try:
        name = "hyok-" + uuid.uuid4().hex[:12]
        s3 = make_client(srv.endpoint, create_tenant(srv, name))
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="k", Body=b"before")
        admin = admin_client(srv)
        # The system's CAs do not know the service's certificate: refused, nothing changed.
        with pytest.raises(ApiError) as err:
            admin.call("PUT", f"/tenants/{name}/key-provider",
                       {"type": "external", "url": ks.url, "key_id": "tls-key", "token": ks.token})
        assert (err.value.status, err.value.code) == (503, "KeyServiceUnavailable")
        assert tenant_row(srv, name)[2] is None
        doc = admin.call("PUT", f"/tenants/{name}/key-provider", {
            "type": "external", "url": ks.url, "key_id": "tls-key", "token": ks.token,
            "ca_pem": Path(str(ks.cert)).read_text()})
        assert doc["ca"] == "custom"
        assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"before"
        s3.put_object(Bucket=name, Key="k2", Body=b"after")
        assert s3.get_object(Bucket=name, Key="k2")["Body"].read() == b"after"
    finally:
        ks.stop()


def test_the_token_is_never_shown_logged_or_stored_in_clear(srv: Server, keyservice: KeyService) -> None:
    name, s3 = new_hyok_tenant(srv, keyservice)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    token = keyservice.token.encode()
    admin = admin_client(srv)
    for path in (f"/tenants/{name}", f"/tenants/{name}/key-provider", "/tenants"):
        assert token not in json.dumps(admin.call("GET", path)).encode()
    conn = sqlite3.connect(os.path.join(srv.data_dir, "meta.sqlite3"), timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    hits = []
    for root in (srv.data_dir, os.path.dirname(srv.log_path)):
        for d, _, files in os.walk(root):
            for f in files:
                p = os.path.join(d, f)
                if p.startswith(str(keyservice.dir)):
                    continue  # the service's own token file
                try:
                    if token in Path(p).read_bytes():
                        hits.append(p)
                except (FileNotFoundError, IsADirectoryError):
                    pass
    assert not hits, f"the key service token is in {hits}"
    assert token not in Path(keyservice.log).read_bytes()


def test_keyserver_refuses_without_the_token_and_never_exports_a_key(keyservice: KeyService) -> None:
    def call(path: str, body: dict[str, str] | None, token: str | None) -> tuple[int, dict[str, object]]:
        req = urllib.request.Request(keyservice.url + path, data=json.dumps(body).encode() if body else None,
                                     method="POST" if body else "GET",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback test URL
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    wrap = {"key_id": "acme", "plaintext": "AAAA", "context": "Yw=="}
    assert call("/v1/wrap", wrap, None)[0] == 401
    assert call("/v1/wrap", wrap, "x" * 32) == (401, {"error": {"code": "Unauthorized",
                                                                 "message": "a valid bearer token is required"}})
    status, doc = call("/v1/wrap", wrap, keyservice.token)
    assert status == 200 and set(doc) == {"key_id", "ciphertext"}
    assert call("/v1/health", None, None) == (200, {"status": "ok"})
    for path in ("/v1/keys", "/v1/keys/acme", "/v1/export"):
        assert call(path, None, keyservice.token)[0] in (404, 405)
    material = json.loads(Path(keyservice.key_file).read_text())["keys"]["acme"]["material"]
    assert material not in Path(keyservice.log).read_text()
    assert oct(os.stat(keyservice.key_file).st_mode & 0o777) == "0o600"


def test_key_rotations_keep_a_tenant_key_with_its_own_service(srv: Server, keyservice: KeyService) -> None:
    name, s3 = new_hyok_tenant(srv, keyservice)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="before", Body=b"v1 data")
    admin = admin_client(srv)
    # A new version of the tenant key is wrapped by the tenant's service too, not by the root key.
    admin.call("POST", f"/tenants/{name}/key-versions/rotate")
    s3.put_object(Bucket=name, Key="after", Body=b"v2 data")
    tid = tenant_row(srv, name)[0]
    root = FileKeyProvider(os.path.join(srv.data_dir, "root.key"))
    conn = sqlite3.connect(os.path.join(srv.data_dir, "meta.sqlite3"), timeout=30)
    try:
        rows = conn.execute("SELECT version, wrapped_key FROM key_versions WHERE owner=? AND wrapped_key IS NOT NULL",
                            (tid,)).fetchall()
    finally:
        conn.close()
    assert sorted(v for v, _ in rows) == [1, 2]
    for version, wrapped in rows:
        with pytest.raises(KeyError_):
            root.unwrap(bytes(wrapped), (b"tenant|" + tid.encode()) + (b"" if version == 1 else b"|v%d" % version))
    # A root key rotation re-wraps what the root wraps, and leaves this tenant's key alone.
    admin.call("POST", "/key-versions/rotate")
    assert wait_for(lambda: all(s3.get_object(Bucket=name, Key=k)["Body"].read() == b
                                for k, b in (("before", b"v1 data"), ("after", b"v2 data"))), 10)
    assert tenant_row(srv, name)[2] is not None
