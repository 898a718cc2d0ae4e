"""Crypto-erasure of deleted tenants: after the grace period, their key is destroyed.

A tenant deleted by an operator is "deleting": every request of it is refused, and resuming it
before ``delete_after`` cancels the deletion (core/tenancy.py). Once that date is past, this
worker destroys every copy of the tenant's key material the deployment holds (its key
versions, its KMS keys' material, its key service token, its access keys' secrets) and marks
the tenant "erased". Every data key of every object of the tenant is wrapped by the tenant key
(the outer layer, whatever the server-side encryption), so from then on no object of the tenant
can be decrypted by anyone: not the operator with the root key, not another tenant, not someone
holding the metadata and the blobs.

Then the same worker reclaims the erased tenant's space: its object versions and delete
markers, multipart uploads in progress, bucket configurations and finally its buckets (their
names become free for others) are removed, in transactions of at most
``erasure_reclaim_batch`` rows, each of which queues the blobs its rows referenced for the
garbage collector (core/coffre.py: collect_garbage), which deletes them. A crash at any point
loses and leaks nothing: the next pass, here or on another gateway, goes on from what is left.
The tenant is marked reclaimed (``reclaimed_at``) by the transaction that finds nothing left,
and the pass does nothing more for it.

The worker is safe to run on every gateway and across restarts: the destruction is one
conditional transaction in the metadata store ("deleting" and past its date -> "erased"), so
exactly one gateway performs it, and one that stopped halfway left either the tenant untouched
(the next pass does it) or erased (nothing left to do). It never erases a tenant with object
versions under Object Lock (COMPLIANCE or GOVERNANCE retention not yet expired, or a legal
hold): destroying the key would destroy data the tenant's own rules require to be kept, so the
erasure waits for the last retain-until date (a legal hold waits until it is lifted).

Each step is reported to ``listener`` (the audit trail): scheduled, cancelled, postponed,
destroyed, and reclaimed (once, with what the reclaim removed).
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
from coffre.meta.records import Reclaimed, TenantRecord
from coffre.settings import Settings

log = logging.getLogger("coffre.erasure")

SCHEDULED = "TenantErasureScheduled"
CANCELLED = "TenantErasureCancelled"
POSTPONED = "TenantErasurePostponed"
DESTROYED = "TenantKeyDestroyed"
RECLAIMED = "TenantDataReclaimed"

# A pass spends at most this long reclaiming (batch after batch), so that a tenant with millions
# of objects never holds the next pass's key destructions back for long; what is left goes on
# after a short pause rather than a whole erasure_interval_seconds.
RECLAIM_PASS_SECONDS = 10.0
RECLAIM_PAUSE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ErasureEvent:
    """One step of a tenant's crypto-erasure, for the audit trail."""

    operation: str  # SCHEDULED | CANCELLED | POSTPONED | DESTROYED | RECLAIMED
    tenant_id: str
    at: float
    operator: str | None = None  # who asked (scheduled, cancelled); None: the worker
    reclaimed: Reclaimed | None = None  # RECLAIMED: everything the reclaim removed


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
        # Whether the last pass stopped with space still to reclaim (the next one comes sooner).
        self.reclaim_pending = False

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
            interval = self.settings.erasure_interval_seconds
            await asyncio.sleep(min(interval, RECLAIM_PAUSE_SECONDS) if self.reclaim_pending else interval)

    async def run_once(self, now: float | None = None, reclaim_seconds: float = RECLAIM_PASS_SECONDS) -> list[str]:
        """Erase every tenant past its date (and not held by Object Lock), then reclaim the space
        of erased tenants for up to ``reclaim_seconds``; returns the ids of the tenants erased."""
        if not self.may_act():
            return []
        now = time.time() if now is None else now
        done = []
        unreclaimed = []
        for tenant in await self.meta.list_tenants():
            if tenant.status == "deleting" and tenant.delete_after is not None and tenant.delete_after <= now:
                if await self.erase(tenant, now):
                    done.append(tenant.id)
                    unreclaimed.append(tenant.id)
            elif tenant.status == "erased" and tenant.reclaimed_at is None:
                unreclaimed.append(tenant.id)
        # Key destruction first (what erasure promises); space after, within the pass's time.
        deadline = time.monotonic() + reclaim_seconds
        pending = False
        for tenant_id in unreclaimed:
            if pending or not await self.reclaim(tenant_id, deadline):
                pending = True
        self.reclaim_pending = pending
        return done

    async def reclaim(self, tenant_id: str, deadline: float) -> bool:
        """Remove an erased tenant's stored data, batch after batch, until none is left (True)
        or ``deadline`` (time.monotonic) passes or the audit log stops accepting (False: a
        later pass goes on). Each batch is one transaction of the store, which queues the blobs
        of what it removed for the garbage collector in that same transaction."""
        batch = max(1, self.settings.erasure_reclaim_batch)
        while True:
            if not self.may_act():
                return False  # no reclaim finished unrecorded: wait for the audit log
            step = await self.meta.reclaim_tenant(tenant_id, time.time(), batch)
            if step.done:
                log.warning("tenant %s: space reclaimed (%d versions, %d uploads, %d buckets, %d bytes; "
                            "%d blobs queued for the collector)", tenant_id, step.versions, step.uploads,
                            step.buckets, step.bytes, step.blobs)
                self.emit(ErasureEvent(RECLAIMED, tenant_id, time.time(), reclaimed=step))
                return True
            if step.empty:
                return True  # reclaimed meanwhile by another gateway (or not erased)
            if time.monotonic() >= deadline:
                return False

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
