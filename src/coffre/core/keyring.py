"""Tenant keys and data keys.

Tenant keys are unwrapped through the root KeyProvider once and cached for the
life of the process (a tenant that holds its own key: through its key service,
cached for ``external_cache_seconds`` at most); data keys are wrapped under their tenant's key with the
blob id as associated data, so a wrapped key cannot be moved to another blob.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from coffre.core.errors import (
    AccessDenied,
    AccountProblem,
    KeyServiceUnavailable,
    KMSDisabled,
    KMSInvalidCiphertext,
    KMSInvalidState,
    KMSNotFound,
)
from coffre.crypto.external import ExternalKeyConfig, ExternalKeyProvider, KeyServiceRefused
from coffre.crypto.external import KeyServiceUnavailable as ServiceDown
from coffre.crypto.keys import KeyError_, KeyProvider, new_key, unwrap_with, wrap_with, wrapped_version
from coffre.meta.base import MetadataStore
from coffre.meta.records import TenantRecord

log = logging.getLogger("coffre.keys")
# A gateway compares its cached tenant key versions with the metadata this often, so a rotation
# or a retirement made through another gateway applies here within it (docs/keys.md).
KEY_RECHECK_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class TenantKey:
    """A tenant's key versions, unwrapped: ``active`` wraps new data keys, every version in
    ``keys`` (active and retiring) still opens the data keys it wrapped. Key rotation
    (coffre.core.rotation) adds versions; retiring one removes it."""

    tenant_id: str
    active: int
    keys: dict[int, bytes] = field(repr=False)

    def __repr__(self) -> str:  # never show key material
        return f"TenantKey({self.tenant_id!r}, active={self.active}, versions={sorted(self.keys)})"


class Keyring:
    def __init__(self, provider: KeyProvider, meta: MetadataStore, *, external_cache_seconds: float = 60.0,
                 external_timeout: float = 5.0) -> None:
        self.provider = provider
        self.meta = meta
        self._tenant_keys: dict[str, TenantKey] = {}
        # Hold your own key: a tenant key opened by the tenant's own service is kept this long at
        # most (monotonic deadline), so a key disabled there stops access within it.
        self.external_cache_seconds = external_cache_seconds
        self.external_timeout = external_timeout
        self._expires: dict[str, float] = {}
        # When each cached tenant key's versions are next compared with the metadata (rotation).
        self._checked: dict[str, float] = {}
        self._providers: dict[str, tuple[str, ExternalKeyProvider]] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        self._secrets: dict[str, bytes] = {}

    @staticmethod
    def tenant_context(tenant_id: str, version: int = 1) -> bytes:
        # Version 1 keeps the context of #2; later versions name themselves, so rows cannot be swapped.
        return b"tenant|" + tenant_id.encode() + (b"" if version == 1 else b"|v%d" % version)

    def new_wrapped_tenant_key(self, tenant_id: str) -> bytes:
        return self.provider.wrap(new_key(), self.tenant_context(tenant_id))

    async def tenant_key(self, tenant_id: str, need: bytes | None = None) -> TenantKey:
        """The tenant's unwrapped key versions, cached for the life of the process.

        ``need``: a wrapped data key about to be opened; when it names a version the cache does
        not hold (another gateway rotated the tenant key), the versions are read again."""
        key = self._cached(tenant_id, need)
        if key is not None:
            if time.monotonic() < self._checked.get(tenant_id, 0.0):
                return key
            key = await self._recheck(key)
            if key is not None:
                return key
        # One load per tenant at a time: requests arriving meanwhile wait for it rather than each
        # calling a tenant's key service (which may be slow, or down).
        lock = self._loading.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            key = self._cached(tenant_id, need)
            if key is not None:
                return key
            tenant = await self.meta.get_tenant(tenant_id)
            if tenant is None:
                raise AccountProblem("The tenant of this request no longer exists.")
            provider = await self.tenant_provider(tenant)
            rows = [r for r in await self.meta.list_key_versions(tenant_id)
                    if r.wrapped_key is not None and r.state in ("active", "retiring")]
            if rows:
                keys = {r.version: await self._open(provider, r.wrapped_key, self.tenant_context(tenant_id, r.version))
                        for r in rows if r.wrapped_key is not None}
                active = max((r.version for r in rows if r.state == "active"), default=max(keys))
            elif tenant.wrapped_key:  # a store without key version rows: the key of #2 is version 1
                keys, active = {1: await self._open(provider, tenant.wrapped_key, self.tenant_context(tenant_id))}, 1
            else:
                raise AccountProblem("The key of this tenant has been destroyed.")
            key = TenantKey(tenant_id, active, keys)
            self._tenant_keys[tenant_id] = key
            self._checked[tenant_id] = time.monotonic() + KEY_RECHECK_SECONDS
            if provider is not self.provider:
                self._expires[tenant_id] = time.monotonic() + self.external_cache_seconds
            return key

    def _cached(self, tenant_id: str, need: bytes | None) -> TenantKey | None:
        key = self._tenant_keys.get(tenant_id)
        if key is None or (need is not None and _named_version(need) not in key.keys):
            return None
        expires = self._expires.get(tenant_id)
        if expires is not None and time.monotonic() >= expires:
            self.forget_tenant_key(tenant_id)  # asked of the tenant's key service again
            return None
        return key

    async def _recheck(self, key: TenantKey) -> TenantKey | None:
        """A cached tenant key still current? Another gateway may have rotated or retired a version:
        a new active version must wrap from now on here too, a retired one must stop wrapping.
        One metadata read every KEY_RECHECK_SECONDS per tenant; None: load it again."""
        rows = [r for r in await self.meta.list_key_versions(key.tenant_id)
                if r.wrapped_key is not None and r.state in ("active", "retiring")]
        active = max((r.version for r in rows if r.state == "active"), default=0)
        if not rows or {r.version for r in rows} != set(key.keys) or active != key.active:
            self.forget_tenant_key(key.tenant_id)
            return None
        self._checked[key.tenant_id] = time.monotonic() + KEY_RECHECK_SECONDS
        return key

    def forget_tenant_key(self, tenant_id: str) -> None:
        """Drop a cached tenant key (after a rotation, a retirement, a destruction, a suspension,
        a deletion, a change of key provider)."""
        self._tenant_keys.pop(tenant_id, None)
        self._expires.pop(tenant_id, None)
        self._checked.pop(tenant_id, None)

    # -- hold your own key: a tenant key wrapped by the tenant's own key service --
    @staticmethod
    def token_setting(tenant_id: str, ref: str) -> str:
        """Where a tenant's key service token is kept, wrapped by the root key like every
        deployment secret "secret:<name>" (so a root key rotation re-wraps it too). ``ref``
        (the provider's token_ref) differs at each change, so a new token is written before the
        switch to it and the old one stays valid until then."""
        return f"secret:hyok-token/{tenant_id}/{ref}"

    def wrap_token(self, setting: str, token: str) -> str:
        context = b"deployment|" + setting.removeprefix("secret:").encode()
        return base64.b64encode(self.provider.wrap(token.encode(), context)).decode()

    async def tenant_provider(self, tenant: TenantRecord) -> KeyProvider:
        """What wraps this tenant's key: the root provider, or the tenant's own key service."""
        if tenant.key_provider is None:
            return self.provider
        doc = json.loads(tenant.key_provider)
        name = self.token_setting(tenant.id, str(doc.get("token_ref", "")))
        stored = await self.meta.get_setting(name)
        if stored is None:
            raise KeyServiceUnavailable("The key service of this account has no credentials configured.")
        identity = tenant.key_provider + "|" + stored
        hit = self._providers.get(tenant.id)
        if hit is not None and hit[0] == identity:
            return hit[1]
        token = self.provider.unwrap(base64.b64decode(stored), b"deployment|" + name.removeprefix("secret:").encode())
        provider = self.external_provider(doc, token.decode())
        self._providers[tenant.id] = (identity, provider)
        return provider

    def external_provider(self, doc: dict[str, object], token: str) -> ExternalKeyProvider:
        return ExternalKeyProvider(ExternalKeyConfig.from_json(doc, self.external_timeout), token)

    async def _open(self, provider: KeyProvider, wrapped: bytes, context: bytes) -> bytes:
        if provider is self.provider:
            return provider.unwrap(wrapped, context)
        return await self.call_external(provider.unwrap, wrapped, context)

    @staticmethod
    async def call_external(fn: Callable[[bytes, bytes], bytes], data: bytes, context: bytes) -> bytes:
        """Call a tenant's key service from a worker thread; its refusals become the errors S3
        clients get (the details, which name the service, go to the server log only)."""
        try:
            return await asyncio.to_thread(fn, data, context)
        except ServiceDown as e:
            log.warning("tenant key service unavailable: %s", e)
            raise KeyServiceUnavailable() from None
        except KeyServiceRefused as e:
            log.warning("tenant key service refused: %s", e)
            if e.reason == "KeyDisabled":
                raise KMSDisabled("The key of this account is disabled at its key service.") from None
            if e.reason == "KeyDestroyed":
                raise KMSInvalidState("The key of this account was destroyed at its key service.") from None
            if e.reason == "KeyNotFound":
                raise KMSNotFound("The key service of this account does not know its key.") from None
            if e.reason == "Unauthorized":
                raise AccessDenied("The key service of this account refused coffre's credentials.") from None
            raise KMSInvalidCiphertext() from None

    @staticmethod
    def new_data_key(tenant_key: TenantKey | bytes, blob_id: str) -> tuple[bytes, bytes]:
        """A fresh data key for one blob, and its wrapped form to store in metadata."""
        dek = new_key()
        return dek, Keyring.wrap_data_key(tenant_key, dek, blob_id)

    @staticmethod
    def wrap_data_key(tenant_key: TenantKey | bytes, material: bytes, blob_id: str) -> bytes:
        """The tenant-key wrap of one blob's key material: the data key itself (SSE-S3), or the
        data key already wrapped by an inner SSE-C / SSE-KMS layer (coffre.core.sse). The tenant
        key is always the outer layer, so destroying it erases every object of the tenant."""
        if isinstance(tenant_key, TenantKey):  # the active version, named in the wrapped key
            return wrap_with(tenant_key.keys[tenant_key.active], material, b"dek|" + blob_id.encode(),
                             version=tenant_key.active)
        return wrap_with(tenant_key, material, b"dek|" + blob_id.encode())

    @staticmethod
    def open_data_key(tenant_key: TenantKey | bytes, wrapped: bytes, blob_id: str) -> bytes:
        if isinstance(tenant_key, TenantKey):  # the version that wrapped it
            kek = tenant_key.keys.get(_named_version(wrapped))
            if kek is None:
                raise KeyError_("the tenant key version that wrapped this data key is not available")
            return unwrap_with(kek, wrapped, b"dek|" + blob_id.encode())
        return unwrap_with(tenant_key, wrapped, b"dek|" + blob_id.encode())

    async def deployment_secret(self, name: str) -> bytes:
        """A 256-bit secret of the deployment for ``name`` (e.g. the SSE-C fingerprint key),
        created on first use and stored only wrapped by the root key (setting "secret:<name>").
        Cached for the life of the process, as tenant keys are."""
        cached = self._secrets.get(name)
        if cached is not None:
            return cached
        setting = "secret:" + name
        context = b"deployment|" + name.encode()
        stored = await self.meta.get_setting(setting)
        if stored is None:
            # Insert-if-absent: processes (workers, gateways) racing here all keep the first one.
            stored = await self.meta.add_setting(
                setting, base64.b64encode(self.provider.wrap(new_key(), context)).decode())
        secret = self.provider.unwrap(base64.b64decode(stored), context)
        self._secrets[name] = secret
        return secret

    def wrap_secret(self, access_key_id: str, secret: str) -> bytes:
        return self.provider.wrap(secret.encode(), b"secret|" + access_key_id.encode())

    def unwrap_secret(self, access_key_id: str, wrapped: bytes) -> str:
        return self.provider.unwrap(wrapped, b"secret|" + access_key_id.encode()).decode()


def _named_version(wrapped: bytes) -> int:
    try:
        return wrapped_version(wrapped)
    except KeyError_:
        return 0  # malformed: no version holds it, and opening it fails
