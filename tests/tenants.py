"""Tenants, users and keys for tests, made through the admin API as an operator would.

    from tests.tenants import create_tenant, create_user_key, set_quota
    akid, secret = create_tenant(server)                 # a new tenant's root credentials
    akid, secret = create_user_key(server, "test", "alice")  # a user (created if missing) and a key
    set_quota(server, "test", max_bytes=10_000)

``server`` is a tests.server.Server (the ``server`` fixture). Requests are signed with
coffre's own admin client (coffre.cli.admin), the one ``coffre admin`` uses.
"""

from __future__ import annotations

import uuid
from typing import Any

from coffre.cli.admin import AdminClient, ApiError
from tests.server import (
    ACCESS_KEY,
    OPERATOR_ACCESS_KEY,
    OPERATOR_SECRET_KEY,
    SECRET_KEY,
    TENANT,
    Server,
)


def admin_client(server: Server) -> AdminClient:
    """A client of the server's admin API with the root operator's credentials."""
    tls_cert = server.env.get("COFFRE_ADMIN_TLS_CERT")
    scheme = "https" if tls_cert else "http"
    return AdminClient(f"{scheme}://127.0.0.1:{server.admin_port}", OPERATOR_ACCESS_KEY, OPERATOR_SECRET_KEY,
                       ca_file=tls_cert)


def ensure_test_tenant(server: Server) -> None:
    """The tenant "test" with ACCESS_KEY / SECRET_KEY as its root key (kept across restarts)."""
    c = admin_client(server)
    try:
        generated = c.call("POST", "/tenants", {"name": TENANT})["access_key_id"]
    except ApiError as e:
        if e.code != "EntityAlreadyExists":
            raise
        return  # made by an earlier start on this data directory
    c.call("POST", f"/tenants/{TENANT}/keys", {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY})
    # One root key, as a new tenant has: tests that create root keys meet IAM's two-key limit as on AWS.
    c.call("DELETE", f"/tenants/{TENANT}/keys/{generated}")


def create_tenant(server: Server, name: str | None = None) -> tuple[str, str]:
    """A new tenant (a random name unless given); returns its root's (access key id, secret)."""
    doc = admin_client(server).call("POST", "/tenants", {"name": name or "t-" + uuid.uuid4().hex[:16]})
    return doc["access_key_id"], doc["secret_access_key"]


def create_user_key(server: Server, tenant: str, user: str) -> tuple[str, str]:
    """An access key of ``user`` in ``tenant``, creating the user first when it does not exist."""
    c = admin_client(server)
    try:
        c.call("POST", f"/tenants/{tenant}/users", {"name": user})
    except ApiError as e:
        if e.code != "EntityAlreadyExists":
            raise
    doc = c.call("POST", f"/tenants/{tenant}/keys", {"user": user})
    return doc["access_key_id"], doc["secret_access_key"]


def set_quota(server: Server, tenant: str, max_bytes: int | None = None, max_objects: int | None = None,
              max_buckets: int | None = None) -> dict[str, Any]:
    """Replace a tenant's quota (None: no limit)."""
    return admin_client(server).call("PUT", f"/tenants/{tenant}/quota", {
        "max_bytes": max_bytes, "max_objects": max_objects, "max_buckets": max_buckets})


def set_bucket_quota(server: Server, tenant: str, bucket: str, max_bytes: int | None = None,
                     max_objects: int | None = None) -> dict[str, Any]:
    """Replace a bucket's quota (None: no limit); the bucket must belong to ``tenant``."""
    return admin_client(server).call("PUT", f"/tenants/{tenant}/buckets/{bucket}/quota", {
        "max_bytes": max_bytes, "max_objects": max_objects})


def tenant_status(server: Server, tenant: str, action: str) -> dict[str, Any]:
    """``action`` "suspend" or "resume"; returns the tenant."""
    return admin_client(server).call("POST", f"/tenants/{tenant}/{action}")
