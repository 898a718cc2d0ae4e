"""Rotation and retirement of the root key and of tenant keys, without re-encrypting data.

Rotating the root key makes a new version in the key provider, then re-wraps everything the
root wraps (tenant keys, access-key secrets, TOTP seeds, deployment secrets). Rotating a tenant
key makes a new tenant key version (wrapped by the root) and re-wraps every data key of the
tenant (objects, completed parts, pending upload parts). Object bytes are never touched: only
the 60-odd bytes of each wrapped key change.

A re-wrap is a background job per owner; it is idempotent (it re-wraps only what the active
version did not wrap) and every change is a compare-and-set, so it is safe to run again, alongside
writes, or after a restart: ``resume`` starts one for every owner that still has a "retiring"
version. A version can be retired only once nothing names it any more; for the root key, retiring
destroys the version in the provider.

States of a version: "active" (wraps new material), "retiring" (superseded, still opens what
it wrapped), "retired" (no longer usable), "destroyed" (erased with its tenant: crypto-erasure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coffre.core.errors import DeleteConflict, NoSuchEntity, ValidationError
from coffre.core.keyring import Keyring, TenantKey
from coffre.crypto.keys import KeyError_, KeyVersionError, new_key, unwrap_with, wrap_with, wrapped_version
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists
from coffre.meta.records import ROOT_KEY_OWNER, DekRef, KeyVersionRecord, RootWrapped

log = logging.getLogger("coffre.keys")

BATCH = 500
DEK_TABLES = ("objects", "object_parts", "parts")
ROOT = "root"  # how the API and the CLI name the root key's owner


@dataclass
class Job:
    """Progress of one owner's re-wrap (in this process)."""

    owner: str
    state: str = "running"  # running | done | failed
    rewrapped: int = 0
    skipped: int = 0  # material no live version of this owner opens (e.g. foreign or corrupt)
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def doc(self) -> dict[str, Any]:
        return {"state": self.state, "rewrapped": self.rewrapped, "skipped": self.skipped, "error": self.error,
                "started_at": self.started_at, "finished_at": self.finished_at}


def root_context(item: RootWrapped) -> bytes:
    """The context each kind of root-wrapped material was wrapped with (see its writer)."""
    if item.kind == "tenant":
        return Keyring.tenant_context(item.id)
    if item.kind == "tenant_key":
        owner, version = item.id.rsplit("/", 1)
        return Keyring.tenant_context(owner, int(version))
    if item.kind == "access_key":
        return b"secret|" + item.id.encode()
    if item.kind == "totp":
        return b"totp|" + item.id.encode()
    if item.kind == "kms_key":  # coffre.core.sse.SseService: "kms|<tenant id>|<key id>"
        tenant_id, key_id = item.id.split("/", 1)
        return f"kms|{tenant_id}|{key_id}".encode()
    if item.kind == "setting":
        if item.id == "admin_session_key":
            return b"admin-session"
        return b"deployment|" + item.id.removeprefix("secret:").encode()
    raise ValueError(item.kind)


class KeyRotation:
    def __init__(self, keyring: Keyring, meta: MetadataStore,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None, grace_seconds: float = 3600.0) -> None:
        self.keyring = keyring
        self.meta = meta
        # A superseded version is retired only this long after it stopped being active: a write that
        # began before (an upload in flight, a gateway that has not noticed the rotation yet) may
        # still commit a key it wrapped (setting key_retire_grace_seconds).
        self.grace_seconds = grace_seconds
        self.jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Called for each step (rotated, rewrapped, retired), to be audited by the layer above;
        # steps taken before it is set (a re-wrap resumed at start) wait for it.
        self._listener = on_event
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def set_listener(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        self._listener = listener
        pending, self._pending = self._pending, []
        for name, fields in pending:
            self.on_event(name, fields)

    def on_event(self, name: str, fields: dict[str, Any]) -> None:
        if self._listener is None:
            self._pending.append((name, fields))
            return
        try:
            self._listener(name, fields)
        except Exception:  # the record is best effort; the log says why
            log.exception("could not record %s", name)

    @property
    def provider(self) -> Any:
        return self.keyring.provider

    # -- listing --
    async def versions(self, owner: str) -> list[dict[str, Any]]:
        """Versions of the root key (owner ROOT_KEY_OWNER) or of a tenant key, with their states."""
        rows = {r.version: r for r in await self.meta.list_key_versions(owner)}
        out: list[dict[str, Any]] = []
        if owner == ROOT_KEY_OWNER:
            await asyncio.to_thread(self.provider.refresh)
            held = self.provider.versions()
            active = held[-1] if held else None
            for v in sorted(set(held) | set(rows)):
                r = rows.get(v)
                if v == active:
                    state = "active"
                elif v in held:
                    state = "retiring"
                else:
                    state = r.state if r is not None else "retired"
                out.append({"version": v, "state": state, "created_at": r.created_at if r else None,
                            "updated_at": r.updated_at if r else None})
            return out
        if await self.meta.get_tenant(owner) is None:
            raise NoSuchEntity(f"The tenant {owner} does not exist.")
        for r in rows.values():
            out.append({"version": r.version, "state": r.state, "created_at": r.created_at,
                        "updated_at": r.updated_at})
        return out

    # -- rotation --
    async def rotate_root(self) -> int:
        try:
            version: int = await asyncio.to_thread(self.provider.rotate)
        except KeyVersionError as e:  # e.g. a key service that rotates its keys itself
            raise ValidationError(f"The root key provider cannot rotate here: {e}") from None
        now = time.time()
        for v in self.provider.versions()[:-1]:
            await self.meta.set_key_version_state(ROOT_KEY_OWNER, v, "retiring", now)
        await self.meta.set_key_version_state(ROOT_KEY_OWNER, version, "active", now)
        log.info("root key rotated to version %d", version)
        self.on_event("KeyRotated", {"owner": ROOT, "version": version})
        self.start(ROOT_KEY_OWNER)
        return version

    async def rotate_tenant(self, tenant_id: str) -> int:
        tenant = await self.meta.get_tenant(tenant_id)
        if tenant is None:
            raise NoSuchEntity(f"The tenant {tenant_id} does not exist.")
        await self.keyring.tenant_key(tenant_id)  # the current versions must open before adding one
        rows = await self.meta.list_key_versions(tenant_id)
        version = max((r.version for r in rows), default=1) + 1
        # The new version is wrapped like the others: by the root key, or by the tenant's own key
        # service when it holds its own key (core/hyok.py).
        provider = await self.keyring.tenant_provider(tenant)
        context = Keyring.tenant_context(tenant_id, version)
        if provider is self.provider:
            wrapped = await asyncio.to_thread(provider.wrap, new_key(), context)
        else:
            wrapped = await Keyring.call_external(provider.wrap, new_key(), context)
        now = time.time()
        try:
            await self.meta.add_key_version(KeyVersionRecord(
                owner=tenant_id, version=version, state="active", wrapped_key=wrapped, created_at=now,
                updated_at=now))
        except AlreadyExists as e:
            raise DeleteConflict("Another rotation of this key is in progress; try again.") from e
        self.keyring.forget_tenant_key(tenant_id)
        log.info("tenant %s key rotated to version %d", tenant_id, version)
        self.on_event("KeyRotated", {"owner": tenant_id, "version": version})
        self.start(tenant_id)
        return version

    # -- re-wrap jobs --
    def start(self, owner: str) -> Job:
        """Start (or restart) the re-wrap job of ``owner``; returns its progress record."""
        task = self._tasks.get(owner)
        if task is not None and not task.done():
            return self.jobs[owner]
        job = Job(owner)
        self.jobs[owner] = job
        self._tasks[owner] = asyncio.get_running_loop().create_task(self._run(job), name=f"rewrap {owner or ROOT}")
        return job

    async def wait(self, owner: str) -> Job | None:
        task = self._tasks.get(owner)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
        return self.jobs.get(owner)

    async def _run(self, job: Job) -> None:
        try:
            if job.owner == ROOT_KEY_OWNER:
                await self.rewrap_root(job)
            else:
                await self.rewrap_tenant(job.owner, job)
            job.state = "done"
            self.on_event("KeysRewrapped", {"owner": job.owner or ROOT, "rewrapped": job.rewrapped,
                                            "skipped": job.skipped})
        except asyncio.CancelledError:
            job.state = "failed"
            job.error = "interrupted (resumes at the next start)"
            raise
        except Exception as e:  # the job is retried by the next rotate, retire or start
            job.state = "failed"
            job.error = type(e).__name__
            log.warning("re-wrap of %s keys failed: %s", job.owner or ROOT, type(e).__name__)
        finally:
            job.finished_at = time.time()

    async def resume(self) -> None:
        """At start: re-wrap for every owner that still has a retiring version (a job cut short)."""
        owners = {r.owner for r in await self.meta.list_key_versions() if r.state == "retiring"}
        for owner in sorted(owners):
            self.start(owner)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def rewrap_root(self, job: Job | None = None) -> Job:
        job = job or Job(ROOT_KEY_OWNER)
        provider = self.provider
        await asyncio.to_thread(provider.refresh)
        active = provider.active_version()

        def rewrap(items: list[RootWrapped]) -> list[tuple[RootWrapped, bytes]]:
            out = []
            for item in items:
                try:
                    if wrapped_version(item.wrapped) == active and item.wrapped[:1] != b"\x01":
                        continue
                    ctx = root_context(item)
                    out.append((item, provider.wrap(provider.unwrap(item.wrapped, ctx), ctx)))
                except KeyError_:
                    job.skipped += 1  # e.g. wrapped by a tenant's own provider, not by the root
            return out

        items = await self._root_items()
        for i in range(0, len(items), BATCH):
            for item, new in await asyncio.to_thread(rewrap, items[i:i + BATCH]):
                if await self.meta.replace_root_wrapped(item, new):
                    job.rewrapped += 1
        return job

    async def _root_items(self) -> list[RootWrapped]:
        """What the root wraps; a tenant that holds its own key (its key service wraps its key) is left out."""
        own = {t.id for t in await self.meta.list_tenants() if getattr(t, "key_provider", None)}
        return [i for i in await self.meta.root_wrapped()
                if not (i.kind == "tenant" and i.id in own or i.kind == "tenant_key" and i.id.rsplit("/", 1)[0] in own)]

    async def rewrap_tenant(self, tenant_id: str, job: Job | None = None) -> Job:
        job = job or Job(tenant_id)
        self.keyring.forget_tenant_key(tenant_id)
        tk = await self.keyring.tenant_key(tenant_id)
        for table in DEK_TABLES:
            after: tuple[int | str, ...] | None = None
            while True:
                batch = await self.meta.dek_batch(tenant_id, table, after, BATCH)
                if not batch:
                    break
                after = batch[-1].row
                changes = await asyncio.to_thread(self._rewrap_deks, tk, batch, job)
                if changes:
                    job.rewrapped += await self.meta.replace_deks(changes)
        return job

    @staticmethod
    def _rewrap_deks(tk: TenantKey, batch: list[DekRef], job: Job) -> list[tuple[DekRef, bytes]]:
        active = tk.keys[tk.active]
        out = []
        for ref in batch:
            try:
                v = wrapped_version(ref.dek)
                if v == tk.active and ref.dek[:1] != b"\x01":
                    continue
                kek = tk.keys.get(v)
                if kek is None:
                    raise KeyError_("no such version")
                ctx = b"dek|" + ref.blob_id.encode()
                out.append((ref, wrap_with(active, unwrap_with(kek, ref.dek, ctx), ctx, version=tk.active)))
            except KeyError_:
                job.skipped += 1
        return out

    # -- references and retirement --
    async def references(self, owner: str, version: int) -> int:
        """How many stored wrapped keys still name ``version`` of ``owner``'s key."""
        n = 0
        if owner == ROOT_KEY_OWNER:
            for item in await self._root_items():
                with contextlib.suppress(KeyError_):
                    n += wrapped_version(item.wrapped) == version
            return n
        for table in DEK_TABLES:
            after: tuple[int | str, ...] | None = None
            while True:
                batch = await self.meta.dek_batch(owner, table, after, BATCH * 4)
                if not batch:
                    break
                after = batch[-1].row
                for ref in batch:
                    with contextlib.suppress(KeyError_):
                        n += wrapped_version(ref.dek) == version
        return n

    async def retire(self, owner: str, version: int) -> None:
        """Make a superseded version unusable; refused while anything still names it."""
        listed = {d["version"]: d for d in await self.versions(owner)}
        if version not in listed:
            raise NoSuchEntity(f"Key version {version} does not exist.")
        state = listed[version]["state"]
        if state == "active":
            raise ValidationError("The active key version cannot be retired; rotate the key first.")
        if state in ("retired", "destroyed"):
            return
        task = self._tasks.get(owner)
        if task is not None and not task.done():
            raise DeleteConflict("The keys of this owner are being re-wrapped; retire once the job is done.")
        newer = [d["created_at"] or 0.0 for v, d in listed.items() if v > version]
        superseded = min(newer, default=0.0)  # when the next version appeared (and this one stopped wrapping)
        wait = superseded + self.grace_seconds - time.time()
        if wait > 0:
            raise DeleteConflict(f"Key version {version} was superseded less than {self.grace_seconds:g} s ago "
                                 f"(key_retire_grace_seconds): writes begun before may still name it. "
                                 f"Retry in {int(wait) + 1} s.")
        refs = await self.references(owner, version)
        if refs:
            raise DeleteConflict(f"Key version {version} still wraps {refs} stored key(s); re-wrap them first "
                                 "(rotate again resumes the job).")
        now = time.time()
        if owner == ROOT_KEY_OWNER:
            try:
                await asyncio.to_thread(self.provider.retire, version)
            except KeyVersionError as e:
                raise ValidationError(f"The root key provider cannot retire this version: {e}") from None
        await self.meta.set_key_version_state(owner, version, "retired", now)
        if owner != ROOT_KEY_OWNER:
            self.keyring.forget_tenant_key(owner)
        log.info("key version %d of %s retired", version, owner or ROOT)
        self.on_event("KeyRetired", {"owner": owner or ROOT, "version": version})
