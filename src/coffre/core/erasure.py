"""Crypto-erasure of deleted tenants: after the grace period, their key is destroyed.

A tenant deleted by an operator is "deleting": every request of it is refused, and resuming it
before ``delete_after`` cancels the deletion (core/tenancy.py). Once that date is past, this
worker destroys every copy of the tenant's key material the deployment holds (its key
versions, its KMS keys' material, its key service token, its access keys' secrets) and marks
the tenant "erased". Every data key of every object of the tenant is wrapped by the tenant key
(the outer layer, whatever the server-side encryption), so from then on no object of the tenant
can be decrypted by anyone: not the operator with the root key, not another tenant, not someone
holding the metadata and the blobs. The object rows and blobs stay (ciphertext nobody can open);
reclaiming their space is a later step, not done here.

The worker is safe to run on every gateway and across restarts: the destruction is one
conditional transaction in the metadata store ("deleting" and past its date -> "erased"), so
exactly one gateway performs it, and one that stopped halfway left either the tenant untouched
(the next pass does it) or erased (nothing left to do). It never erases a tenant with object
versions under Object Lock (COMPLIANCE or GOVERNANCE retention not yet expired, or a legal
hold): destroying the key would destroy data the tenant's own rules require to be kept, so the
erasure waits for the last retain-until date (a legal hold waits until it is lifted).

Each step is reported to ``listener`` (the audit trail): scheduled, cancelled, postponed,
destroyed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from coffre.core.keyring import Keyring
from coffre.meta.base import MetadataStore
from coffre.meta.records import TenantRecord
from coffre.settings import Settings

log = logging.getLogger("coffre.erasure")

SCHEDULED = "TenantErasureScheduled"
CANCELLED = "TenantErasureCancelled"
POSTPONED = "TenantErasurePostponed"
DESTROYED = "TenantKeyDestroyed"


@dataclass(frozen=True, slots=True)
class ErasureEvent:
    """One step of a tenant's crypto-erasure, for the audit trail."""

    operation: str  # SCHEDULED | CANCELLED | POSTPONED | DESTROYED
    tenant_id: str
    at: float
    operator: str | None = None  # who asked (scheduled, cancelled); None: the worker


Listener = Callable[[ErasureEvent], None]


def grace_seconds(settings: Settings) -> float:
    """The delay between a tenant's deletion and the destruction of its key."""
    if settings.tenant_delete_grace_seconds > 0:
        return settings.tenant_delete_grace_seconds
    return settings.tenant_delete_grace_days * 86400.0


class ErasureWorker:
    def __init__(self, settings: Settings, meta: MetadataStore, keyring: Keyring,
                 forget_tenant: Callable[[str], None]) -> None:
        self.settings = settings
        self.meta = meta
        self.keyring = keyring
        self.forget_tenant = forget_tenant
        self.listener: Listener | None = None
        # May the worker act now (False while the audit log cannot record: no unrecorded erasure).
        self.may_act: Callable[[], bool] = lambda: True
        # Tenants whose postponement was reported, and until when: reported again only when it changes.
        self._postponed: dict[str, float] = {}

    def emit(self, event: ErasureEvent) -> None:
        if self.listener is not None:
            try:
                self.listener(event)
            except Exception:  # noqa: BLE001 - the record is best effort; the log says why
                log.exception("could not record %s for tenant %s", event.operation, event.tenant_id)

    async def run(self) -> None:
        """Pass after pass, every ``erasure_interval_seconds``, until cancelled."""
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("crypto-erasure pass failed")
            await asyncio.sleep(self.settings.erasure_interval_seconds)

    async def run_once(self, now: float | None = None) -> list[str]:
        """Erase every tenant past its date (and not held by Object Lock); returns their ids."""
        if not self.may_act():
            return []
        now = time.time() if now is None else now
        done = []
        for tenant in await self.meta.list_tenants():
            if tenant.status == "deleting" and tenant.delete_after is not None and tenant.delete_after <= now:
                if await self.erase(tenant, now):
                    done.append(tenant.id)
        return done

    async def erase(self, tenant: TenantRecord, now: float) -> bool:
        locked_until = await self.meta.has_locked_versions(tenant.id, now)
        if locked_until is not None:
            if self._postponed.get(tenant.id) != locked_until:
                self._postponed[tenant.id] = locked_until
                when = "while a legal hold is on" if math.isinf(locked_until) else \
                    "until " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(locked_until))
                log.warning("tenant %s: crypto-erasure postponed %s (Object Lock)", tenant.id, when)
                self.emit(ErasureEvent(POSTPONED, tenant.id, now))
            return False
        if not await self.meta.erase_tenant(tenant.id, now):
            return False  # resumed meanwhile, or another gateway erased it first
        self._postponed.pop(tenant.id, None)
        # This gateway's copies go at once; other gateways refuse the tenant already (it is not
        # active) and drop theirs within their caches' lifetime.
        self.keyring.forget_tenant_key(tenant.id)
        self.forget_tenant(tenant.id)
        log.warning("tenant %s (%s): key destroyed; its data can no longer be decrypted", tenant.id, tenant.name)
        self.emit(ErasureEvent(DESTROYED, tenant.id, now))
        return True
