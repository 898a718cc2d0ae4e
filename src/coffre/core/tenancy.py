"""Tenants as the operator sees them: creation, status, scheduled deletion, quotas, usage.

A tenant is a business customer: it owns buckets (names unique in the deployment), identities
and keys, and one encryption key that wraps every data key of its objects. Its root identity is
like an AWS account root: everything inside the tenant, nothing outside it.

Status changes take effect at once on every request this gateway serves: the credentials cache
is told (``forget_tenant``); other gateways see the change within the cache's lifetime (30 s).
Deletion is scheduled, not immediate: the tenant becomes "deleting" (every access refused, as
when suspended) until ``delete_after``; resuming before then cancels it. What happens at that
date is core/erasure.py's: the tenant key is destroyed, hence every object of the tenant becomes
undecryptable ("erased"); an erased tenant cannot be resumed, suspended or deleted again.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import replace

from coffre.core.erasure import CANCELLED, SCHEDULED, ErasureEvent, Listener, grace_seconds
from coffre.core.errors import EntityAlreadyExists, NoSuchEntity, ValidationError
from coffre.core.iam import ROOT_USER, new_access_key_id, new_secret_key
from coffre.core.keyring import Keyring
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, Conflict
from coffre.meta.records import AccessKeyRecord, QuotaRecord, TenantRecord, Usage
from coffre.settings import Settings

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$")
_IMPORTED_AKID = re.compile(r"^[A-Z0-9]{16,128}$")
_IMPORTED_SECRET = re.compile(r"^[\x21-\x7e]{16,128}$")
DAY = 86400


def new_tenant_id() -> str:
    # Twelve digits, like an AWS account id, so ARNs look as clients expect.
    return "".join(secrets.choice(string.digits) for _ in range(12))


def check_tenant_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValidationError("A tenant name is 3 to 63 characters: lower-case letters, digits and hyphens, "
                              "starting and ending with a letter or digit.")


def check_imported_key(access_key_id: str, secret: str) -> None:
    """Keys brought from another system (a migration keeps its clients' credentials)."""
    if not _IMPORTED_AKID.match(access_key_id):
        raise ValidationError("An access key id is 16 to 128 upper-case letters and digits.")
    if not _IMPORTED_SECRET.match(secret):
        raise ValidationError("A secret access key is 16 to 128 printable ASCII characters, without spaces.")


def _limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{name} is a non-negative integer, or null for no limit.")
    return value


class TenancyService:
    def __init__(self, settings: Settings, meta: MetadataStore, keyring: Keyring,
                 forget_tenant: Callable[[str], None]) -> None:
        self.settings = settings
        self.meta = meta
        self.erasure_listener: Listener | None = None  # hears of deletions scheduled and cancelled (audit)
        self.keyring = keyring
        self.forget_tenant = forget_tenant

    # -- life cycle --
    async def create(self, name: str) -> tuple[TenantRecord, AccessKeyRecord, str]:
        """A new active tenant with its own key and one root access key (secret returned once)."""
        check_tenant_name(name)
        tid = new_tenant_id()
        tenant = TenantRecord(id=tid, name=name, status="active", created_at=time.time(),
                              wrapped_key=self.keyring.new_wrapped_tenant_key(tid),
                              canonical_id=secrets.token_hex(32))
        try:
            await self.meta.create_tenant(tenant)
        except AlreadyExists as e:
            raise EntityAlreadyExists(f"A tenant named {name} already exists.") from e
        akid, secret = new_access_key_id(), new_secret_key()
        key = await self.put_access_key(tenant, ROOT_USER, akid, secret)
        return tenant, key, secret

    async def get(self, name: str) -> TenantRecord:
        tenant = await self.meta.get_tenant_by_name(name)
        if tenant is None:
            raise NoSuchEntity(f"The tenant {name} does not exist.")
        return tenant

    async def list_tenants(self) -> list[TenantRecord]:
        return await self.meta.list_tenants()

    async def suspend(self, name: str) -> TenantRecord:
        """Every request of the tenant's identities is refused from now on (AccountProblem)."""
        tenant = await self.get(name)
        if tenant.status == "deleting":
            raise ValidationError(f"The tenant {name} is scheduled for deletion; resume it to cancel that.")
        self._not_erased(tenant)
        return await self._set(tenant, "suspended", None)

    async def resume(self, name: str, now: float | None = None, operator: str | None = None) -> TenantRecord:
        """Back to active: ends a suspension, or cancels a scheduled deletion before its date.

        Past the date, only while Object Lock holds the erasure back (a legal hold has no end:
        resuming is how its tenant lifts it). The erasure and this change exclude each other in
        the store (whichever commits first wins), so a resume never undoes an erasure."""
        tenant = await self.get(name)
        now = time.time() if now is None else now
        if tenant.status == "deleting" and tenant.delete_after is not None and tenant.delete_after <= now \
                and await self.meta.has_locked_versions(tenant.id, now) is None:
            raise ValidationError(f"The tenant {name} is past its deletion date; it cannot be resumed.")
        self._not_erased(tenant)
        updated = await self._set(tenant, "active", None)
        if tenant.status == "deleting":
            self._emit(ErasureEvent(CANCELLED, tenant.id, now, operator))
        return updated

    async def delete(self, name: str, now: float | None = None, operator: str | None = None) -> TenantRecord:
        """Schedule the deletion: refused at once, erasable after the grace period. Idempotent."""
        tenant = await self.get(name)
        if tenant.status == "deleting":
            return tenant
        now = time.time() if now is None else now
        self._not_erased(tenant)
        updated = await self._set(tenant, "deleting", now + grace_seconds(self.settings))
        self._emit(ErasureEvent(SCHEDULED, tenant.id, now, operator))
        return updated

    @staticmethod
    def _not_erased(tenant: TenantRecord) -> None:
        if tenant.status == "erased":
            raise ValidationError(f"The tenant {tenant.name} was erased: its key is destroyed, nothing brings it back.")

    def _emit(self, event: ErasureEvent) -> None:
        if self.erasure_listener is not None:
            self.erasure_listener(event)

    async def _set(self, tenant: TenantRecord, status: str, delete_after: float | None) -> TenantRecord:
        updated = replace(tenant, status=status, delete_after=delete_after)
        try:
            await self.meta.update_tenant(updated)
        except Conflict:  # erased meanwhile by the erasure worker
            raise ValidationError(f"The tenant {tenant.name} was erased: its key is destroyed.") from None
        self.forget_tenant(tenant.id)
        self.keyring.forget_tenant_key(tenant.id)  # not kept in memory while the tenant cannot use it
        return updated

    # -- access keys the operator places --
    async def put_access_key(self, tenant: TenantRecord, principal: str, access_key_id: str,
                             secret: str) -> AccessKeyRecord:
        """Store an active key of the tenant's root or of one of its users (checked by the caller)."""
        if await self.meta.get_access_key(access_key_id) is not None:
            raise EntityAlreadyExists("An access key with this id already exists.")
        rec = AccessKeyRecord(access_key_id=access_key_id, tenant_id=tenant.id, principal=principal,
                              wrapped_secret=self.keyring.wrap_secret(access_key_id, secret), status="active",
                              created_at=time.time())
        await self.meta.put_access_key(rec)
        self.forget_tenant(tenant.id)
        return rec

    # -- quotas and usage --
    async def usage(self, tenant: TenantRecord) -> Usage:
        return await self.meta.tenant_usage(tenant.id)

    async def bucket_usage(self, tenant: TenantRecord, bucket: str) -> Usage:
        await self._bucket_of(tenant, bucket)
        return await self.meta.bucket_usage(bucket)

    async def buckets(self, tenant: TenantRecord) -> list[tuple[str, Usage]]:
        return [(b.name, await self.meta.bucket_usage(b.name)) for b in await self.meta.list_buckets(tenant.id)]

    async def get_quota(self, tenant: TenantRecord) -> QuotaRecord:
        return await self.meta.get_quota("tenant", tenant.id) or QuotaRecord("tenant", tenant.id)

    async def set_quota(self, tenant: TenantRecord, max_bytes: object, max_objects: object,
                        max_buckets: object) -> QuotaRecord:
        q = QuotaRecord("tenant", tenant.id, _limit("max_bytes", max_bytes), _limit("max_objects", max_objects),
                        _limit("max_buckets", max_buckets))
        await self.meta.set_quota(q)
        return q

    async def get_bucket_quota(self, tenant: TenantRecord, bucket: str) -> QuotaRecord:
        await self._bucket_of(tenant, bucket)
        return await self.meta.get_quota("bucket", bucket) or QuotaRecord("bucket", bucket)

    async def set_bucket_quota(self, tenant: TenantRecord, bucket: str, max_bytes: object,
                               max_objects: object) -> QuotaRecord:
        await self._bucket_of(tenant, bucket)
        q = QuotaRecord("bucket", bucket, _limit("max_bytes", max_bytes), _limit("max_objects", max_objects))
        await self.meta.set_quota(q)
        return q

    async def _bucket_of(self, tenant: TenantRecord, bucket: str) -> None:
        rec = await self.meta.get_bucket(bucket)
        if rec is None or rec.tenant_id != tenant.id:
            raise NoSuchEntity(f"The tenant {tenant.name} has no bucket {bucket}.")
