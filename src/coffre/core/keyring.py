"""Tenant keys and data keys.

Tenant keys are unwrapped through the root KeyProvider once and cached for the
life of the process; data keys are wrapped under their tenant's key with the
blob id as associated data, so a wrapped key cannot be moved to another blob.
"""

from __future__ import annotations

from coffre.core.errors import AccountProblem
from coffre.crypto.keys import KeyProvider, new_key, unwrap_with, wrap_with
from coffre.meta.base import MetadataStore


class Keyring:
    def __init__(self, provider: KeyProvider, meta: MetadataStore) -> None:
        self.provider = provider
        self.meta = meta
        self._tenant_keys: dict[str, bytes] = {}

    @staticmethod
    def tenant_context(tenant_id: str) -> bytes:
        return b"tenant|" + tenant_id.encode()

    def new_wrapped_tenant_key(self, tenant_id: str) -> bytes:
        return self.provider.wrap(new_key(), self.tenant_context(tenant_id))

    async def tenant_key(self, tenant_id: str) -> bytes:
        key = self._tenant_keys.get(tenant_id)
        if key is None:
            tenant = await self.meta.get_tenant(tenant_id)
            if tenant is None:
                raise AccountProblem("The tenant of this request no longer exists.")
            key = self.provider.unwrap(tenant.wrapped_key, self.tenant_context(tenant_id))
            self._tenant_keys[tenant_id] = key
        return key

    @staticmethod
    def new_data_key(tenant_key: bytes, blob_id: str) -> tuple[bytes, bytes]:
        """A fresh data key for one blob, and its wrapped form to store in metadata."""
        dek = new_key()
        return dek, wrap_with(tenant_key, dek, b"dek|" + blob_id.encode())

    @staticmethod
    def open_data_key(tenant_key: bytes, wrapped: bytes, blob_id: str) -> bytes:
        return unwrap_with(tenant_key, wrapped, b"dek|" + blob_id.encode())

    def wrap_secret(self, access_key_id: str, secret: str) -> bytes:
        return self.provider.wrap(secret.encode(), b"secret|" + access_key_id.encode())

    def unwrap_secret(self, access_key_id: str, wrapped: bytes) -> str:
        return self.provider.unwrap(wrapped, b"secret|" + access_key_id.encode()).decode()
