"""A tenant's choice of key provider: the root key (default) or its own key service.

Choosing its own service ("hold your own key") moves the tenant key from a root-wrapped form
to a form only the tenant's service can open; choosing the root again moves it back. The tenant
key itself does not change, so no object is re-encrypted: only its few wrapped copies (one per
key version) are.

The move is ordered so that nothing is lost if it stops anywhere:

1. the new service is tried (a wrap and unwrap round trip with the tenant's key id);
2. each live version of the tenant key is opened with the current wrapper, wrapped with the new
   one, and the new form opened again and compared;
3. the new token is stored under a new name (the old one stays);
4. one compare-and-set transaction switches every wrapped copy and the provider together
   (refused, changing nothing, if a rotation ran meanwhile) and drops the old token.

Until step 4 commits, the tenant runs on its old wrapper, untouched; after it, on the new one.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

from coffre.core.errors import ValidationError
from coffre.core.keyring import Keyring
from coffre.crypto.external import ExternalKeyConfig, check_token
from coffre.crypto.keys import KeyProvider
from coffre.meta.base import MetadataStore
from coffre.meta.errors import ConditionFailed
from coffre.meta.records import TenantRecord


def describe(tenant: TenantRecord) -> dict[str, Any]:
    """The tenant's key provider as the admin API shows it (nothing secret: no token)."""
    if tenant.key_provider is None:
        return {"type": "root"}
    doc = json.loads(tenant.key_provider)
    out: dict[str, Any] = {"type": "external", "url": doc["url"], "key_id": doc["key_id"],
                           "ca": "custom" if doc.get("ca_pem") else "system", "token": "set"}
    if doc.get("client_cert_file"):
        out["client_cert_file"] = doc["client_cert_file"]
    return out


class TenantKeyProviders:
    def __init__(self, meta: MetadataStore, keyring: Keyring, forget_tenant: Callable[[str], None]) -> None:
        self.meta = meta
        self.keyring = keyring
        self.forget_tenant = forget_tenant

    async def set_external(self, tenant: TenantRecord, config: ExternalKeyConfig, token: str) -> TenantRecord:
        """Wrap the tenant key with the tenant's own key service from now on."""
        try:
            check_token(token)
        except ValueError as e:
            raise ValidationError(str(e)) from None
        ref = secrets.token_hex(8)
        doc = dict(config.to_json(), token_ref=ref)
        try:
            target = self.keyring.external_provider(doc, token)
        except ValueError as e:  # an unusable CA or client certificate
            raise ValidationError(str(e)) from None
        def probe(_data: bytes, _context: bytes) -> bytes:
            target.check()
            return b""

        await Keyring.call_external(probe, b"", b"")
        setting = self.keyring.token_setting(tenant.id, ref)
        return await self._move(tenant, target, json.dumps(doc, sort_keys=True),
                                (setting, self.keyring.wrap_token(setting, token)))

    async def set_root(self, tenant: TenantRecord) -> TenantRecord:
        """Wrap the tenant key with the deployment's root key again."""
        if tenant.key_provider is None:
            return tenant
        return await self._move(tenant, self.keyring.provider, None, None)

    async def _move(self, tenant: TenantRecord, target: KeyProvider, key_provider: str | None,
                    token: tuple[str, str] | None) -> TenantRecord:
        if tenant.status not in ("active", "suspended"):
            raise ValidationError(f"The tenant {tenant.name} is {tenant.status}; its key provider cannot change.")
        current = await self.keyring.tenant_provider(tenant)
        changes: list[tuple[int, bytes, bytes]] = []
        for row in await self.meta.list_key_versions(tenant.id):
            if row.wrapped_key is None:
                continue
            context = Keyring.tenant_context(tenant.id, row.version)
            plain = await self._call(current, "unwrap", row.wrapped_key, context)
            new = await self._call(target, "wrap", plain, context)
            if await self._call(target, "unwrap", new, context) != plain:
                raise ValidationError("The new key provider did not give the key back unchanged; nothing was changed.")
            changes.append((row.version, row.wrapped_key, new))
        if not changes:
            raise ValidationError(f"The tenant {tenant.name} has no key left to move.")
        if token is not None:
            await self.meta.set_setting(*token)
        try:
            await self.meta.set_tenant_key_wrapping(tenant.id, key_provider, changes,
                                                    token[0] if token is not None else None)
        except ConditionFailed:
            raise ValidationError("The tenant key changed meanwhile (a rotation?); nothing was changed: "
                                  "try again.") from None
        self.keyring.forget_tenant_key(tenant.id)
        self.forget_tenant(tenant.id)
        updated = await self.meta.get_tenant(tenant.id)
        assert updated is not None
        return updated

    async def _call(self, provider: KeyProvider, op: str, data: bytes, context: bytes) -> bytes:
        fn = provider.wrap if op == "wrap" else provider.unwrap
        if provider is self.keyring.provider:
            return await asyncio.to_thread(fn, data, context)
        return await Keyring.call_external(fn, data, context)
