"""The composition root of the domain layer: stores, keys and services, wired once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import string
import time
from dataclasses import dataclass

from coffre.blob.base import BlobStore
from coffre.core.access import AccessControl
from coffre.core.blobio import BlobIO
from coffre.core.buckets import BucketService
from coffre.core.errors import AccountProblem, InvalidAccessKeyId
from coffre.core.iam import IamService
from coffre.core.iam import new_access_key_id as new_access_key_id  # moved to iam.py; still importable here
from coffre.core.iam import new_secret_key as new_secret_key
from coffre.core.identity import Principal
from coffre.core.keyring import Keyring
from coffre.core.multipart import MultipartService
from coffre.core.objects import ObjectService
from coffre.core.tagging import TaggingService
from coffre.core.versioning import VersioningService
from coffre.crypto.keys import KeyProvider
from coffre.crypto.segments import DEFAULT_SEGMENT_SIZE
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists
from coffre.meta.records import AccessKeyRecord, TenantRecord
from coffre.settings import Settings

log = logging.getLogger("coffre.core")

ROOT_TENANT_NAME = "root"


def new_tenant_id() -> str:
    # Twelve digits, like an AWS account id, so ARNs look as clients expect.
    return "".join(secrets.choice(string.digits) for _ in range(12))


@dataclass(frozen=True, slots=True)
class Credentials:
    principal: Principal
    secret: str


@dataclass(frozen=True, slots=True)
class Bootstrap:
    access_key_id: str
    secret_key: str | None  # set only when generated now (to be printed once)


class Coffre:
    def __init__(self, settings: Settings, meta: MetadataStore, blobs: BlobStore, keys: KeyProvider) -> None:
        self.settings = settings
        self.meta = meta
        self.blobs = blobs
        self.keyring = Keyring(keys, meta)
        self.blobio = BlobIO(blobs, self.keyring, DEFAULT_SEGMENT_SIZE)
        self.buckets = BucketService(settings, meta)
        self.objects = ObjectService(settings, meta, self.blobio, self.buckets)
        self.multipart = MultipartService(settings, meta, self.objects, self.buckets)
        self.tagging = TaggingService(meta, self.objects, self.buckets)
        self.versioning = VersioningService(meta, self.buckets)
        self.access = AccessControl(meta)
        self.iam = IamService(meta, self.keyring, self.forget_tenant)
        self._creds: dict[str, tuple[float, Credentials]] = {}
        self._gc_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.meta.open()
        await self.blobs.open()
        self.keyring.provider.check()

    async def close(self) -> None:
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
        """Create the root tenant and its access key on first start.

        COFFRE_ROOT_ACCESS_KEY / COFFRE_ROOT_SECRET_KEY, when set, are (re)installed as
        the root key; otherwise a key is generated once and returned to be printed.
        """
        root_id = await self.meta.get_setting("root_tenant_id")
        if root_id is None:
            tid = new_tenant_id()
            tenant = TenantRecord(id=tid, name=ROOT_TENANT_NAME, status="active", created_at=time.time(),
                                  wrapped_key=self.keyring.new_wrapped_tenant_key(tid),
                                  canonical_id=secrets.token_hex(32))
            try:
                await self.meta.create_tenant(tenant)
            except AlreadyExists:
                pass
            await self.meta.set_setting("root_tenant_id", tid)
            root_id = tid
        s = self.settings
        if s.root_access_key and s.root_secret_key:
            existing = await self.meta.get_access_key(s.root_access_key)
            if existing is None or self.keyring.unwrap_secret(existing.access_key_id,
                                                              existing.wrapped_secret) != s.root_secret_key:
                await self._put_key(root_id, s.root_access_key, s.root_secret_key)
            await self.meta.set_setting("root_access_key", s.root_access_key)
            return Bootstrap(s.root_access_key, None)
        current = await self.meta.get_setting("root_access_key")
        if current is not None and await self.meta.get_access_key(current) is not None:
            return Bootstrap(current, None)
        akid, secret = new_access_key_id(), new_secret_key()
        await self._put_key(root_id, akid, secret)
        await self.meta.set_setting("root_access_key", akid)
        return Bootstrap(akid, secret)

    async def _put_key(self, tenant_id: str, akid: str, secret: str, principal: str = "root") -> None:
        await self.meta.put_access_key(AccessKeyRecord(
            access_key_id=akid, tenant_id=tenant_id, principal=principal,
            wrapped_secret=self.keyring.wrap_secret(akid, secret), status="active", created_at=time.time()))
        self._creds.pop(akid, None)

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop every cached credential of a tenant (after a key, user or status change)."""
        for akid in [k for k, (_, c) in self._creds.items() if c.principal.tenant_id == tenant_id]:
            self._creds.pop(akid, None)
        self.access.forget(tenant_id)

    # -- authentication support --
    async def credentials(self, access_key_id: str) -> Credentials:
        """The principal and secret of an access key (cached briefly; secrets stay in memory only)."""
        now = time.monotonic()
        hit = self._creds.get(access_key_id)
        if hit is not None and now - hit[0] < 30:
            return hit[1]
        rec = await self.meta.get_access_key(access_key_id)
        if rec is None or rec.status != "active":
            raise InvalidAccessKeyId(access_key_id=access_key_id)
        tenant = await self.meta.get_tenant(rec.tenant_id)
        if tenant is None or tenant.status != "active":
            raise AccountProblem()
        creds = Credentials(
            Principal(tenant_id=tenant.id, canonical_id=tenant.canonical_id, name=rec.principal,
                      access_key_id=access_key_id, display_name=tenant.name),
            self.keyring.unwrap_secret(access_key_id, rec.wrapped_secret))
        self._creds[access_key_id] = (now, creds)
        return creds

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
