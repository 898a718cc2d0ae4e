"""Key wrapping and the KeyProvider interface.

The hierarchy: a root key held by a KeyProvider wraps each tenant's key; a
tenant key wraps each blob's data key. Encryption code only ever calls
``wrap``/``unwrap``; it never knows where the root key lives.
"""

from __future__ import annotations

import os
import secrets
import stat
from abc import ABC, abstractmethod

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

WRAP_VERSION = b"\x01"
KEY_SIZE = 32


class KeyError_(Exception):
    """A key could not be unwrapped (wrong key, tampered material, or provider failure)."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_SIZE)


def wrap_with(kek: bytes, plaintext: bytes, context: bytes) -> bytes:
    """AES-256-GCM wrap; ``context`` is bound as associated data."""
    nonce = secrets.token_bytes(12)
    return WRAP_VERSION + nonce + AESGCM(kek).encrypt(nonce, plaintext, context)


def unwrap_with(kek: bytes, wrapped: bytes, context: bytes) -> bytes:
    if len(wrapped) < 1 + 12 + 16 or wrapped[:1] != WRAP_VERSION:
        raise KeyError_("malformed wrapped key")
    try:
        return AESGCM(kek).decrypt(wrapped[1:13], wrapped[13:], context)
    except Exception as e:
        raise KeyError_("key unwrap failed") from e


class KeyProvider(ABC):
    """Holds the deployment's root key and wraps/unwraps with it."""

    @abstractmethod
    def wrap(self, plaintext: bytes, context: bytes) -> bytes: ...

    @abstractmethod
    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...

    @abstractmethod
    def check(self) -> None:
        """Raise if the provider cannot currently wrap and unwrap."""


class FileKeyProvider(KeyProvider):
    """A 256-bit root key in a file readable by the owner only (mode 0600).

    The file is created on first use. A key file with wider permissions is
    refused, as ssh refuses a private key readable by others.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._key = self._load_or_create(path)

    @staticmethod
    def _load_or_create(path: str) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            key = new_key()
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            tmp = f"{path}.tmp{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            return key
        try:
            st = os.fstat(fd)
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise PermissionError(f"root key file {path} must not be accessible by group or others (chmod 600)")
            key = os.read(fd, KEY_SIZE + 1)
        finally:
            os.close(fd)
        if len(key) != KEY_SIZE:
            raise ValueError(f"root key file {path} must hold exactly {KEY_SIZE} bytes")
        return key

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        return wrap_with(self._key, plaintext, b"root|" + context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        return unwrap_with(self._key, wrapped, b"root|" + context)

    def check(self) -> None:
        probe = new_key()
        if self.unwrap(self.wrap(probe, b"probe"), b"probe") != probe:
            raise KeyError_("root key self-check failed")

    def __repr__(self) -> str:  # never show key material
        return f"FileKeyProvider(path={self.path!r})"
