"""The first operator: its key from the environment or generated, and data directories made before it."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.admin.helpers import call, ok
from tests.conftest import make_client
from tests.server import Server

LEGACY_KEY, LEGACY_SECRET = "COLEGACYROOT00000001", "legacy-root-secret-long-enough-0000000"


def test_generated_root_operator_key(tmp_path: Path):
    srv = Server(str(tmp_path / "data"), env={"COFFRE_ROOT_ACCESS_KEY": "", "COFFRE_ROOT_SECRET_KEY": ""},
                 with_tenant=False).start()
    try:
        deadline = time.monotonic() + 10
        while "COFFRE_ROOT_SECRET_KEY=" not in Path(srv.log_path).read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = Path(srv.log_path).read_text()
        akid = re.search(r"COFFRE_ROOT_ACCESS_KEY=(\S+)", out).group(1)
        secret = re.search(r"COFFRE_ROOT_SECRET_KEY=(\S+)", out).group(1)
        assert ok(call(srv.admin_endpoint, (akid, secret), "GET", "/whoami"))["operator"] == "root"
        with pytest.raises(ClientError) as exc:
            make_client(srv.endpoint, (akid, secret)).list_buckets()
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        srv.stop()
    # A restart keeps the key and never prints the secret again.
    srv = Server(str(tmp_path / "data"), port=srv.port, admin_port=srv.admin_port,
                 env={"COFFRE_ROOT_ACCESS_KEY": "", "COFFRE_ROOT_SECRET_KEY": ""}, with_tenant=False).start()
    try:
        assert ok(call(srv.admin_endpoint, (akid, secret), "GET", "/whoami"))["operator"] == "root"
    finally:
        srv.stop()
    assert Path(srv.log_path).read_text().count(secret) == 1


def _legacy_data_dir(data_dir: str) -> str:
    """What the first start made before operators existed: a tenant "root" owning the root key."""
    from coffre.core.keyring import Keyring
    from coffre.core.tenancy import new_tenant_id
    from coffre.crypto.keys import FileKeyProvider
    from coffre.meta.records import AccessKeyRecord, TenantRecord
    from coffre.meta.sqlite import SQLiteMetadataStore
    from coffre.settings import load_settings

    settings = load_settings(env={"COFFRE_DATA_DIR": data_dir})
    Path(data_dir).mkdir(mode=0o700, parents=True)

    async def go() -> str:
        meta = SQLiteMetadataStore(settings.meta_path)
        await meta.open()
        try:
            keyring = Keyring(FileKeyProvider(settings.root_key_path), meta)
            tid = new_tenant_id()
            await meta.create_tenant(TenantRecord(
                id=tid, name="root", status="active", created_at=time.time(),
                wrapped_key=keyring.new_wrapped_tenant_key(tid), canonical_id=secrets.token_hex(32)))
            await meta.put_access_key(AccessKeyRecord(
                access_key_id=LEGACY_KEY, tenant_id=tid, principal="root",
                wrapped_secret=keyring.wrap_secret(LEGACY_KEY, LEGACY_SECRET), status="active",
                created_at=time.time()))
            await meta.set_setting("root_tenant_id", tid)
            await meta.set_setting("root_access_key", LEGACY_KEY)
            return tid
        finally:
            await meta.close()

    return asyncio.run(go())


def test_legacy_root_key_moves_to_the_root_operator(tmp_path: Path):
    data = str(tmp_path / "data")
    tid = _legacy_data_dir(data)
    srv = Server(data, env={"COFFRE_ROOT_ACCESS_KEY": LEGACY_KEY, "COFFRE_ROOT_SECRET_KEY": LEGACY_SECRET},
                 with_tenant=False).start()
    try:
        creds = (LEGACY_KEY, LEGACY_SECRET)
        assert ok(call(srv.admin_endpoint, creds, "GET", "/whoami"))["operator"] == "root"
        with pytest.raises(ClientError) as exc:
            make_client(srv.endpoint, creds).list_buckets()
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
        # The legacy tenant is still there, without keys; an operator gives it new ones.
        tenant = ok(call(srv.admin_endpoint, creds, "GET", "/tenants/root"))
        assert tenant["id"] == tid and tenant["status"] == "active"
        assert ok(call(srv.admin_endpoint, creds, "GET", "/tenants/root/keys"))["access_keys"] == []
        key = ok(call(srv.admin_endpoint, creds, "POST", "/tenants/root/keys", {}), 201)
        s3 = make_client(srv.endpoint, (key["access_key_id"], key["secret_access_key"]))
        s3.create_bucket(Bucket="legacy-root-bucket")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["legacy-root-bucket"]
    finally:
        srv.stop()


def test_a_tenant_key_is_never_taken_for_the_operator(tmp_path: Path):
    """COFFRE_ROOT_ACCESS_KEY naming another tenant's key stops the start rather than steal it."""
    data = str(tmp_path / "data")
    srv = Server(data).start()  # makes tenant "test" with tests.server.ACCESS_KEY
    srv.stop()
    from tests.server import ACCESS_KEY

    bad = Server(data, env={"COFFRE_ROOT_ACCESS_KEY": ACCESS_KEY, "COFFRE_ROOT_SECRET_KEY": "x" * 30},
                 with_tenant=False)
    with pytest.raises(RuntimeError, match="exited"):
        bad.start(timeout=20)
    assert "is an access key of a tenant" in Path(bad.log_path).read_text()
