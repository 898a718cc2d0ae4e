"""Root and tenant key rotation on a real server (the root key in a file, in SoftHSM2 or in a KMIP
server, chosen by the settings): objects written before read back byte-identical with boto3, the raw metadata
shows every wrapped key re-wrapped under the new versions, and the old versions retire."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coffre.cli.admin import ApiError
from tests.conftest import make_client
from tests.keys.services import kmip_server, softhsm_token
from tests.server import ACCESS_KEY, OPERATOR_ACCESS_KEY, OPERATOR_SECRET_KEY, SECRET_KEY, TENANT, Server
from tests.tenants import admin_client

V = {n: b"\x02" + n.to_bytes(4, "big") for n in (1, 2)}


def version(wrapped: bytes) -> int:
    return 1 if wrapped[:1] == b"\x01" else int.from_bytes(wrapped[1:5], "big")


def raw(data_dir: str, sql: str, *args: Any) -> list[Any]:
    conn = sqlite3.connect(os.path.join(data_dir, "meta.sqlite3"))
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def deks(data_dir: str, tenant_id: str) -> list[bytes]:
    return [bytes(r[0]) for r in raw(data_dir, "SELECT dek FROM objects WHERE tenant_id=? AND dek IS NOT NULL "
                                               "UNION ALL SELECT p.dek FROM object_parts p JOIN objects o ON "
                                               "o.id=p.object_id WHERE o.tenant_id=? UNION ALL SELECT p.dek FROM "
                                               "parts p JOIN uploads u ON u.upload_id=p.upload_id WHERE "
                                               "u.tenant_id=?", tenant_id, tenant_id, tenant_id)]


def root_wrapped(data_dir: str) -> list[bytes]:
    rows = raw(data_dir, "SELECT wrapped_key FROM key_versions WHERE owner != '' AND wrapped_key IS NOT NULL")
    rows += raw(data_dir, "SELECT wrapped_secret FROM access_keys")
    return [bytes(r[0]) for r in rows]


def states(doc: dict[str, Any]) -> dict[int, str]:
    return {v["version"]: v["state"] for v in doc["versions"]}


@pytest.fixture(params=["file", "pkcs11", "kmip"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    e = {"COFFRE_MIN_PART_SIZE": "1024", "COFFRE_KEY_RETIRE_GRACE_SECONDS": "0"}
    if request.param == "pkcs11":
        hsm = softhsm_token(tmp_path / "hsm")
        e.update({"COFFRE_KEY_PROVIDER": "pkcs11", "COFFRE_PKCS11_MODULE": hsm.module,
                  "COFFRE_PKCS11_TOKEN_LABEL": hsm.token_label, "COFFRE_PKCS11_PIN": hsm.pin,
                  "SOFTHSM2_CONF": hsm.conf})
    kmip = None
    if request.param == "kmip":
        kmip = kmip_server(tmp_path / "kmip")
        e.update({"COFFRE_KEY_PROVIDER": "kmip", "COFFRE_KMIP_HOST": kmip.host, "COFFRE_KMIP_PORT": str(kmip.port),
                  "COFFRE_KMIP_CERT": kmip.cert, "COFFRE_KMIP_KEY": kmip.key, "COFFRE_KMIP_CA": kmip.ca})
    yield e
    if kmip is not None:
        kmip.stop()


def test_root_and_tenant_rotation_keep_every_object_readable(tmp_path: Path, env: dict[str, str]) -> None:
    data = str(tmp_path / "data")
    srv = Server(data, env=env).start()
    try:
        s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        s3.create_bucket(Bucket="rot")
        bodies = {f"k{i}": os.urandom(1000 + i * 7919) for i in range(5)}
        for k, b in bodies.items():
            s3.put_object(Bucket="rot", Key=k, Body=b)
        # A completed multipart object (object_parts) and one still in progress (parts).
        parts = [os.urandom(2048), os.urandom(700)]
        up = s3.create_multipart_upload(Bucket="rot", Key="mp")["UploadId"]
        etags = [s3.upload_part(Bucket="rot", Key="mp", UploadId=up, PartNumber=i + 1, Body=p)["ETag"]
                 for i, p in enumerate(parts)]
        s3.complete_multipart_upload(Bucket="rot", Key="mp", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        bodies["mp"] = b"".join(parts)
        pending = s3.create_multipart_upload(Bucket="rot", Key="pending")["UploadId"]
        pending_part = os.urandom(1500)
        pe = s3.upload_part(Bucket="rot", Key="pending", UploadId=pending, PartNumber=1, Body=pending_part)["ETag"]

        c = admin_client(srv)
        tid = c.call("GET", f"/tenants/{TENANT}")["id"]
        assert states(c.call("GET", "/key-versions")) == {1: "active"}
        assert states(c.call("GET", f"/tenants/{TENANT}/key-versions")) == {1: "active"}
        before = deks(data, tid)
        assert len(before) >= 8 and {version(d) for d in before} == {1}

        # Root rotation: every tenant key and secret re-wrapped under root version 2, no data key touched.
        doc = c.call("POST", "/key-versions/rotate", {}, query={"wait": "true"})
        assert states(doc) == {1: "retiring", 2: "active"}
        assert doc["rewrap"]["state"] == "done" and doc["rewrap"]["rewrapped"] >= 2
        assert {w[:5] for w in root_wrapped(data)} == {V[2]}
        assert sorted(deks(data, tid)) == sorted(before)
        with pytest.raises(ApiError) as exc:
            c.call("POST", "/key-versions/2/retire", {})
        assert exc.value.status == 400
        doc = c.call("POST", "/key-versions/1/retire", {})
        assert states(doc) == {1: "retired", 2: "active"}
        for k, b in bodies.items():
            assert s3.get_object(Bucket="rot", Key=k)["Body"].read() == b

        # A restart opens everything with root version 2 alone (version 1 is gone for good).
        srv.stop()
        srv = Server(data, port=srv.port, admin_port=srv.admin_port, env=env).start()
        s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        c = admin_client(srv)
        assert states(c.call("GET", "/key-versions")) == {1: "retired", 2: "active"}
        for k, b in bodies.items():
            assert s3.get_object(Bucket="rot", Key=k)["Body"].read() == b

        # Tenant rotation: every data key re-wrapped under tenant key version 2, in the three tables.
        doc = c.call("POST", f"/tenants/{TENANT}/key-versions/rotate", {}, query={"wait": "true"})
        assert states(doc) == {1: "retiring", 2: "active"}
        assert doc["rewrap"]["state"] == "done" and doc["rewrap"]["rewrapped"] == len(before)
        after = deks(data, tid)
        assert len(after) == len(before) and {d[:5] for d in after} == {V[2]}
        # New writes use version 2 at once.
        s3.put_object(Bucket="rot", Key="new", Body=b"fresh")
        bodies["new"] = b"fresh"
        doc = c.call("POST", f"/tenants/{TENANT}/key-versions/1/retire", {})
        assert states(doc) == {1: "retired", 2: "active"}
        assert raw(data, "SELECT wrapped_key FROM key_versions WHERE owner=? AND version=1", tid) == [(None,)]
        for k, b in bodies.items():
            assert s3.get_object(Bucket="rot", Key=k)["Body"].read() == b
        assert s3.get_object(Bucket="rot", Key="k3", Range="bytes=100-199")["Body"].read() == bodies["k3"][100:200]
        s3.complete_multipart_upload(Bucket="rot", Key="pending", UploadId=pending, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": pe}]})
        assert s3.get_object(Bucket="rot", Key="pending")["Body"].read() == pending_part

        # The CLI shows the versions and their states.
        out = subprocess.run([sys.executable, "-m", "coffre", "admin", "keys", "list", "--tenant", TENANT,
                              "--endpoint", srv.admin_endpoint], capture_output=True, text=True, check=True,
                             env={**{k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")},
                                  "COFFRE_ROOT_ACCESS_KEY": OPERATOR_ACCESS_KEY,
                                  "COFFRE_ROOT_SECRET_KEY": OPERATOR_SECRET_KEY, "HOME": "/nonexistent"})
        assert "retired" in out.stdout and "active" in out.stdout
        # Every step is in the audit trail: the operator's requests and the rotation's own steps.
        srv.stop()
        trail = "".join(p.read_text(errors="replace") for p in Path(data, "audit").rglob("*") if p.is_file())
        for operation in ("RotateRootKey", "RetireRootKeyVersion", "RotateTenantKey", "RetireTenantKeyVersion",
                          "KeyRotated", "KeysRewrapped", "KeyRetired"):
            assert operation in trail, operation
        # Nothing of the keys in the server log or the audit trail.
        log = Path(srv.log_path).read_text()
        if "COFFRE_PKCS11_PIN" in env:
            assert env["COFFRE_PKCS11_PIN"] not in log and env["COFFRE_PKCS11_PIN"] not in trail
    finally:
        srv.stop()
