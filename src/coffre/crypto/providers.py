"""The root key provider chosen in the settings (``key_provider``), built once at start.

``external`` is a key service speaking the hold-your-own-key protocol (docs/hyok-protocol.md), the
one a tenant may bring for its own key, here holding the deployment's root key: the service
rotates its key itself, so coffre's root rotation is refused with it.

Secrets (the HSM PIN, the key service token) come from the settings, which read them from the
TOML file or the environment only and keep them out of their repr.
"""

from __future__ import annotations

import os
from typing import Protocol

from coffre.crypto.keys import FileKeyProvider, KeyProvider

PROVIDERS = ("file", "pkcs11", "kmip", "external")


class KeySettings(Protocol):
    """The settings a provider is built from (coffre.settings.Settings has them)."""

    @property
    def key_provider(self) -> str: ...

    @property
    def data_dir(self) -> str: ...

    @property
    def pkcs11_module(self) -> str: ...

    @property
    def pkcs11_token_label(self) -> str: ...

    @property
    def pkcs11_pin(self) -> str | None: ...

    @property
    def pkcs11_key_label(self) -> str: ...

    @property
    def kmip_host(self) -> str: ...

    @property
    def kmip_port(self) -> int: ...

    @property
    def kmip_cert(self) -> str: ...

    @property
    def kmip_key(self) -> str: ...

    @property
    def kmip_ca(self) -> str: ...

    @property
    def kmip_key_name(self) -> str: ...

    @property
    def root_key_service_url(self) -> str: ...

    @property
    def root_key_service_key_id(self) -> str: ...

    @property
    def root_key_service_token(self) -> str | None: ...

    @property
    def root_key_service_ca_file(self) -> str: ...


def build_provider(s: KeySettings) -> KeyProvider:
    kind = s.key_provider
    if kind == "file":
        return FileKeyProvider(os.path.join(s.data_dir, "root.key"))
    if kind == "pkcs11":
        from coffre.crypto.pkcs11 import Pkcs11KeyProvider  # noqa: PLC0415 - needs python-pkcs11

        return Pkcs11KeyProvider(s.pkcs11_module, s.pkcs11_token_label, s.pkcs11_pin or "", s.pkcs11_key_label)
    if kind == "kmip":
        from coffre.crypto.kmip import KmipKeyProvider  # noqa: PLC0415 - needs PyKMIP

        return KmipKeyProvider(s.kmip_host, s.kmip_port, s.kmip_cert, s.kmip_key, s.kmip_ca, s.kmip_key_name)
    if kind == "external":
        from coffre.crypto.external import ExternalKeyConfig, ExternalKeyProvider  # noqa: PLC0415

        if not s.root_key_service_url or not s.root_key_service_key_id or not s.root_key_service_token:
            raise ValueError("the external key provider needs root_key_service_url, root_key_service_key_id and "
                             "root_key_service_token")
        ca_pem = None
        if s.root_key_service_ca_file:
            with open(s.root_key_service_ca_file, encoding="ascii") as fh:
                ca_pem = fh.read()
        config = ExternalKeyConfig(url=s.root_key_service_url, key_id=s.root_key_service_key_id, ca_pem=ca_pem)
        return ExternalKeyProvider(config, s.root_key_service_token)
    raise ValueError(f"key_provider must be one of {', '.join(PROVIDERS)} (not {kind!r})")
