"""The composition root of the domain layer: stores, keys and services, wired once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from coffre.blob.base import BlobStore
from coffre.core.access import AccessControl
from coffre.core.blobio import BlobIO
from coffre.core.buckets import BucketService
from coffre.core.erasure import ErasureWorker
from coffre.core.erasure import Listener as ErasureListener
from coffre.core.errors import AccessDenied, AccountProblem, InvalidAccessKeyId
from coffre.core.hyok import TenantKeyProviders
from coffre.core.iam import ROOT_USER, IamService
from coffre.core.iam import new_access_key_id as new_access_key_id  # moved to iam.py; still importable here
from coffre.core.iam import new_secret_key as new_secret_key
from coffre.core.identity import Operator, Principal
from coffre.core.keyring import Keyring
from coffre.core.lifecycle import LifecycleWorker, Listener
from coffre.core.metering import Meter
from coffre.core.multipart import MultipartService
from coffre.core.objects import ObjectService
from coffre.core.operators import OperatorService
from coffre.core.rotation import KeyRotation
from coffre.core.tagging import TaggingService
from coffre.core.tenancy import TenancyService
from coffre.core.versioning import VersioningService
from coffre.crypto.keys import KeyProvider
from coffre.crypto.segments import DEFAULT_SEGMENT_SIZE
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists
from coffre.meta.records import OPERATOR_TENANT, AccessKeyRecord, OperatorRecord
from coffre.settings import Settings

log = logging.getLogger("coffre.core")

ROOT_OPERATOR = "root"  # the first operator, holder of COFFRE_ROOT_ACCESS_KEY
CREDENTIALS_TTL = 30.0  # seconds a gateway may go on using a cached credential changed elsewhere
# Planes a credential is asked for: tenant identities act on the S3 endpoint (S3, IAM, POST
# uploads), operators on the admin listener; neither is ever accepted on the other's.
TENANT_PLANE = "tenant"
OPERATOR_PLANE = "operator"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who an access key authenticates, and its secret (to verify signatures).

    For a tenant key, ``principal`` is its tenant identity and ``operator`` is None. For an
    operator key, ``operator`` is set and ``principal`` is ANONYMOUS-like (no tenant), so that
    a caller that forgot to check could grant nothing through it."""

    principal: Principal
    secret: str
    operator: Operator | None = None


@dataclass(frozen=True, slots=True)
class Bootstrap:
    access_key_id: str
    secret_key: str | None  # set only when generated now (to be printed once)


class Coffre:
    def __init__(self, settings: Settings, meta: MetadataStore, blobs: BlobStore, keys: KeyProvider) -> None:
        self.settings = settings
        self.meta = meta
        # Request counters in memory, flushed to the store (core/metering.py); on the store's clock.
        self.meter = Meter(settings, meta, meta.clock)
        self.blobs = blobs
        self.keyring = Keyring(keys, meta, external_cache_seconds=settings.external_key_cache_seconds,
                               external_timeout=settings.external_key_timeout_seconds)
        self.keys = KeyRotation(self.keyring, meta,  # root and tenant key versions (docs/keys.md)
                                grace_seconds=settings.key_retire_grace_seconds)
        self.blobio = BlobIO(blobs, self.keyring, DEFAULT_SEGMENT_SIZE)
        self.buckets = BucketService(settings, meta)
        self.objects = ObjectService(settings, meta, self.blobio, self.buckets)
        self.multipart = MultipartService(settings, meta, self.objects, self.buckets)
        self.objectlock = self.objects.locks  # Object Lock: shared with the write and delete paths
        self.tagging = TaggingService(meta, self.objects, self.buckets)
        self.versioning = VersioningService(meta, self.buckets)
        self.access = AccessControl(meta)
        self.iam = IamService(meta, self.keyring, self.forget_tenant)
        self.tenancy = TenancyService(settings, meta, self.keyring, self.forget_tenant)
        self.key_providers = TenantKeyProviders(meta, self.keyring, self.forget_tenant)  # hold your own key
        self.erasure = ErasureWorker(settings, meta, self.keyring, self.forget_tenant)  # crypto-erasure
        self._erasure_task: asyncio.Task[None] | None = None
        self.operators = OperatorService(meta, self.keyring, settings.admin_session_seconds, self.forget_key)
        self._creds: dict[str, tuple[float, Credentials]] = {}
        self._gc_task: asyncio.Task[None] | None = None
        self.lifecycle = LifecycleWorker(settings, meta, self.objects)
        self._lifecycle_task: asyncio.Task[None] | None = None

    async def open(self, resume: bool = True) -> None:
        """Open the stores; ``resume`` goes on with key re-wraps cut short by a stop (the one
        process that runs background work does; a secondary worker does not)."""
        await self.meta.open()
        await self.blobs.open()
        self.keyring.provider.check()
        if resume:
            await self.keys.resume()  # re-wraps cut short by a stop go on

    async def close(self) -> None:
        if self._erasure_task is not None:
            self._erasure_task.cancel()
            # A destruction is one transaction: a pass cut short leaves each tenant erased or untouched.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._erasure_task
        await self.keys.close()
        await self.meter.close()  # after the last request, before the store closes: no counter lost
        if self._lifecycle_task is not None:
            self._lifecycle_task.cancel()
            # A bucket's pass cut short keeps its cursor (and frees its lease) on the way out.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._lifecycle_task
        if self._gc_task is not None:
            self._gc_task.cancel()
            # Its failures were logged by the loop itself; a pass cut short resumes at next start.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._gc_task
        await self.blobs.close()
        await self.meta.close()
        self.blobio.pool.shutdown(wait=False)

    # -- bootstrap --
    async def bootstrap(self) -> Bootstrap:
        """Create the first operator ("root") and its access key on first start.

        COFFRE_ROOT_ACCESS_KEY / COFFRE_ROOT_SECRET_KEY, when set, are (re)installed as the root
        operator's key; otherwise a key is generated once and returned to be printed. Tenants are
        created by operators (admin API), never here.

        A data directory made before the operator plane existed had a tenant named "root" whose
        root key was this key: the key moves to the operator (operators never act on S3), and the
        tenant keeps its buckets; an operator gives it S3 keys again with ``coffre admin key
        create --tenant root``.
        """
        if await self.meta.get_operator(ROOT_OPERATOR) is None:
            try:
                await self.meta.create_operator(OperatorRecord(name=ROOT_OPERATOR, created_at=time.time()))
            except AlreadyExists:
                pass  # another gateway created it meanwhile
        s = self.settings
        if s.root_access_key and s.root_secret_key:
            existing = await self.meta.get_access_key(s.root_access_key)
            if existing is not None:
                await self._claim_legacy_key(existing)
                existing = await self.meta.get_access_key(s.root_access_key)
            if existing is None or self.keyring.unwrap_secret(existing.access_key_id,
                                                              existing.wrapped_secret) != s.root_secret_key:
                await self._put_operator_key(s.root_access_key, s.root_secret_key)
            await self.meta.set_setting("root_access_key", s.root_access_key)
            return Bootstrap(s.root_access_key, None)
        current = await self.meta.get_setting("root_access_key")
        rec = await self.meta.get_access_key(current) if current is not None else None
        if current is not None and rec is not None:
            await self._claim_legacy_key(rec)
            return Bootstrap(current, None)
        akid, secret = new_access_key_id(), new_secret_key()
        await self._put_operator_key(akid, secret)
        await self.meta.set_setting("root_access_key", akid)
        return Bootstrap(akid, secret)

    async def _claim_legacy_key(self, rec: AccessKeyRecord) -> None:
        """Make ``rec`` (named by COFFRE_ROOT_ACCESS_KEY) the root operator's key, if it is not.

        Only the legacy root tenant's key is moved; a key of any other tenant is refused, so a
        mistyped setting cannot turn a customer's key into an operator's."""
        if rec.tenant_id == OPERATOR_TENANT:
            if rec.principal != ROOT_OPERATOR:
                raise ValueError(f"root_access_key {rec.access_key_id} belongs to operator {rec.principal}")
            return
        legacy = await self.meta.get_setting("root_tenant_id")
        if rec.tenant_id != legacy:
            raise ValueError(f"root_access_key {rec.access_key_id} is an access key of a tenant; "
                             "choose another key id for the root operator")
        await self.meta.put_access_key(replace(rec, tenant_id=OPERATOR_TENANT, principal=ROOT_OPERATOR))
        self.forget_key(rec.access_key_id)
        log.warning("the root access key %s moved from the legacy tenant %r to the root operator; give that "
                    "tenant S3 keys with `coffre admin key create --tenant root`", rec.access_key_id, "root")

    async def _put_operator_key(self, akid: str, secret: str) -> None:
        await self.meta.put_access_key(AccessKeyRecord(
            access_key_id=akid, tenant_id=OPERATOR_TENANT, principal=ROOT_OPERATOR,
            wrapped_secret=self.keyring.wrap_secret(akid, secret), status="active", created_at=time.time()))
        self.forget_key(akid)

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop every cached credential of a tenant (after a key, user or status change)."""
        for akid in [k for k, (_, c) in self._creds.items()
                     if c.operator is None and c.principal.tenant_id == tenant_id]:
            self._creds.pop(akid, None)
        self.access.forget(tenant_id)

    def forget_key(self, access_key_id: str) -> None:
        """Drop one cached credential (an operator key changed)."""
        self._creds.pop(access_key_id, None)

    # -- authentication support --
    async def credentials(self, access_key_id: str, plane: str = TENANT_PLANE) -> Credentials:
        """The identity and secret of an access key, for the plane asking (cached briefly; secrets
        stay in memory only).

        Operator keys are refused on the tenant plane and tenant keys on the operator plane here,
        once, rather than by each caller (the S3 API, the IAM API, POST uploads, the admin API)."""
        now = time.monotonic()
        hit = self._creds.get(access_key_id)
        if hit is not None and now - hit[0] < CREDENTIALS_TTL:
            creds = hit[1]
        else:
            creds = await self._load_credentials(access_key_id)
            self._creds[access_key_id] = (now, creds)
        if plane == TENANT_PLANE and creds.operator is not None:
            raise AccessDenied("Operator credentials cannot be used on the S3 API")
        if plane == OPERATOR_PLANE and creds.operator is None:
            raise AccessDenied("Tenant credentials cannot be used on the admin API")
        return creds

    async def _load_credentials(self, access_key_id: str) -> Credentials:
        rec = await self.meta.get_access_key(access_key_id)
        if rec is None or rec.status != "active":
            raise InvalidAccessKeyId(access_key_id=access_key_id)
        secret = self.keyring.unwrap_secret(access_key_id, rec.wrapped_secret)
        if rec.tenant_id == OPERATOR_TENANT:
            op = await self.meta.get_operator(rec.principal)
            if op is None or op.status != "active":
                raise InvalidAccessKeyId(access_key_id=access_key_id)
            return Credentials(Principal(tenant_id="", canonical_id="", name="anonymous", access_key_id=""),
                               secret, Operator(name=op.name, access_key_id=access_key_id))
        tenant = await self.meta.get_tenant(rec.tenant_id)
        if tenant is None or tenant.status != "active":
            raise AccountProblem()
        user_id = tenant.id  # a tenant root's user id is its account id, as on AWS
        tags: tuple[tuple[str, str], ...] = ()
        if rec.principal != ROOT_USER:
            user = await self.meta.get_user(tenant.id, rec.principal)
            if user is None:  # deleted with its keys, or a key that outlived it: no identity left
                raise InvalidAccessKeyId(access_key_id=access_key_id)
            user_id, tags = user.user_id, tuple(sorted(user.tags.items()))
        return Credentials(
            Principal(tenant_id=tenant.id, canonical_id=tenant.canonical_id, name=rec.principal,
                      access_key_id=access_key_id, display_name=tenant.name, user_id=user_id, tags=tags),
            secret)

    # -- lifecycle rules (core/lifecycle.py) --
    def start_lifecycle(self, listener: Listener | None = None, may_act: Callable[[], bool] | None = None) -> None:
        """Run the lifecycle worker in the background; ``listener`` hears of every action
        (audit, metrics, notifications), ``may_act`` can pause it (audit log unavailable)."""
        self.lifecycle.listener = listener
        if may_act is not None:
            self.lifecycle.may_act = may_act
        self._lifecycle_task = asyncio.get_running_loop().create_task(self.lifecycle.run())

    # -- crypto-erasure of deleted tenants (core/erasure.py) --
    def start_erasure(self, listener: ErasureListener | None = None,
                      may_act: Callable[[], bool] | None = None) -> None:
        """Run the erasure worker in the background; ``listener`` hears of every step (audit),
        ``may_act`` can pause it (audit log unavailable: no unrecorded destruction)."""
        self.erasure.listener = listener
        self.tenancy.erasure_listener = listener
        if may_act is not None:
            self.erasure.may_act = may_act
        self._erasure_task = asyncio.get_running_loop().create_task(self.erasure.run())

    # -- garbage collection --
    def start_gc(self) -> None:
        self._gc_task = asyncio.get_running_loop().create_task(self._gc_loop())

    async def _gc_loop(self) -> None:
        while True:
            try:
                await self.collect_garbage()
            except Exception:
                log.exception("garbage collection failed")
            await asyncio.sleep(self.settings.gc_interval_seconds)

    async def collect_garbage(self, grace_seconds: float | None = None) -> int:
        """Delete released blobs, then blobs no metadata points at and older than the grace period.

        The grace period protects blobs being written now: they become durable before
        their metadata commits, so a young unreferenced blob may be about to be used.
        """
        removed = 0
        released_before = time.time() - self.settings.gc_release_delay_seconds
        while batch := await self.meta.garbage_batch(1000, released_before):
            referenced = await self.meta.blob_referenced(batch)
            for b in batch:
                if b not in referenced:
                    await self.blobs.delete(b)
                    removed += 1
            await self.meta.garbage_done(batch)
            if len(batch) < 1000:
                break
        grace = self.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
        cutoff = time.time() - grace
        pending: list[str] = []
        async for blob_id in self.blobs.list_ids(cutoff):
            pending.append(blob_id)
            if len(pending) >= 500:
                removed += await self._drop_orphans(pending)
                pending = []
        if pending:
            removed += await self._drop_orphans(pending)
        return removed

    async def _drop_orphans(self, ids: list[str]) -> int:
        referenced = await self.meta.blob_referenced(ids)
        n = 0
        for b in ids:
            if b not in referenced:
                await self.blobs.delete(b)
                n += 1
        return n
