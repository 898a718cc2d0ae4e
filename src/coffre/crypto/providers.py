"""The root key provider chosen in the settings (``key_provider``), built once at start.

Secrets (the HSM PIN) come from the settings, which read them from the TOML file or the
environment only and keep them out of their repr.
"""

from __future__ import annotations

import os
from typing import Protocol

from coffre.crypto.keys import FileKeyProvider, KeyProvider

PROVIDERS = ("file", "pkcs11", "kmip")


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
    raise ValueError(f"key_provider must be one of {', '.join(PROVIDERS)} (not {kind!r})")
