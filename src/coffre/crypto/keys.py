"""Key wrapping and the KeyProvider interface.

The hierarchy: a root key held by a KeyProvider wraps each tenant's key; a
tenant key wraps each blob's data key. Encryption code only ever calls
``wrap``/``unwrap``; it never knows where the root key lives.

Keys have versions so that they can be rotated without re-encrypting data:
every wrapped blob starts with a header that names the version that wrapped
it (``VERSIONED`` + a 4-byte version number), and that header is part of the
authenticated data, so a blob cannot be relabelled to another version. Blobs
written before versions existed start with ``WRAP_VERSION`` and are version 1.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import stat
import threading
import time
from abc import ABC, abstractmethod

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

WRAP_VERSION = b"\x01"  # the unversioned format of #2: implicitly version 1
VERSIONED = b"\x02"  # header byte of the versioned format, followed by a 4-byte version number
HEADER_SIZE = 5
KEY_SIZE = 32
MAX_VERSION = 2**32 - 1
# A provider re-reads the versions it holds at least this often before wrapping, so a rotation or a
# retirement made by another gateway applies here within it (docs/keys.md, "Several gateways").
REFRESH_SECONDS = 30.0


class KeyError_(Exception):
    """A key could not be unwrapped (wrong key, tampered material, or provider failure)."""


class KeyVersionError(KeyError_):
    """A key version cannot be created, used or retired now (unknown, retired, or the last one)."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_SIZE)


def version_header(version: int) -> bytes:
    if not 1 <= version <= MAX_VERSION:
        raise KeyVersionError("key version out of range")
    return VERSIONED + version.to_bytes(4, "big")


def wrapped_version(wrapped: bytes) -> int:
    """The key version a wrapped blob names (1 for the unversioned format); raises if malformed."""
    if wrapped[:1] == WRAP_VERSION:
        return 1
    if wrapped[:1] == VERSIONED and len(wrapped) >= HEADER_SIZE:
        version = int.from_bytes(wrapped[1:HEADER_SIZE], "big")
        if version >= 1:
            return version
    raise KeyError_("malformed wrapped key")


def wrap_with(kek: bytes, plaintext: bytes, context: bytes, version: int | None = None) -> bytes:
    """AES-256-GCM wrap; ``context`` is bound as associated data.

    With ``version``, the output names it in a header that is authenticated too; without, the
    unversioned format of #2 (still read as version 1)."""
    nonce = secrets.token_bytes(12)
    if version is None:
        return WRAP_VERSION + nonce + AESGCM(kek).encrypt(nonce, plaintext, context)
    header = version_header(version)
    return header + nonce + AESGCM(kek).encrypt(nonce, plaintext, header + context)


def unwrap_with(kek: bytes, wrapped: bytes, context: bytes) -> bytes:
    if wrapped[:1] == WRAP_VERSION:
        header, body, aad = b"", wrapped[1:], context
    elif wrapped[:1] == VERSIONED:
        header = wrapped[:HEADER_SIZE]
        body, aad = wrapped[HEADER_SIZE:], header + context
    else:
        raise KeyError_("malformed wrapped key")
    if len(body) < 12 + 16:
        raise KeyError_("malformed wrapped key")
    try:
        return AESGCM(kek).decrypt(body[:12], body[12:], aad)
    except Exception as e:
        raise KeyError_("key unwrap failed") from e


class KeyProvider(ABC):
    """Holds the deployment's root key (all its versions) and wraps/unwraps with it.

    ``wrap`` always uses the newest version; ``unwrap`` uses the version the blob names, so
    material wrapped before a rotation stays readable until its version is retired. What the
    provider does with a version's key (a file, an HSM object, a KMIP managed object) is its
    own business: subclasses implement ``_seal``/``_open`` (authenticated encryption with the
    given associated data, which already holds the version header and the caller's context),
    and ``_list_versions``/``_create_version``/``_destroy_version``.

    Calls may come from several threads at once; a provider must be safe for that.
    """

    kind = "abstract"

    def __init__(self) -> None:
        self._vlock = threading.Lock()
        self._versions: tuple[int, ...] = ()
        self._refreshed = time.monotonic()

    def _load_versions(self) -> None:
        versions = tuple(sorted(self._list_versions()))
        with self._vlock:
            self._versions = versions

    # -- the interface --
    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        if time.monotonic() - self._refreshed > REFRESH_SECONDS:
            self.refresh()
        version = self.active_version()
        header = version_header(version)
        return header + self._seal(version, plaintext, header + b"root|" + context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        if wrapped[:1] == WRAP_VERSION:
            return self._open_legacy(wrapped, b"root|" + context)
        version = wrapped_version(wrapped)
        if version not in self._versions:
            self.refresh()  # another gateway may have rotated since
            if version not in self._versions:
                raise KeyError_("the key version that wrapped this material is not available")
        return self._open(version, wrapped[HEADER_SIZE:], wrapped[:HEADER_SIZE] + b"root|" + context)

    def check(self) -> None:
        """Raise if the provider cannot currently wrap and unwrap (one round trip of a probe)."""
        probe = new_key()
        if self.unwrap(self.wrap(probe, b"probe"), b"probe") != probe:
            raise KeyError_("root key self-check failed")

    def versions(self) -> tuple[int, ...]:
        """The versions whose keys the provider holds, oldest first; the last is active."""
        return self._versions

    def active_version(self) -> int:
        versions = self._versions
        if not versions:
            raise KeyError_("the key provider holds no key")
        return versions[-1]

    def refresh(self) -> None:
        """Re-read the versions the provider holds (another gateway may have rotated or retired)."""
        self._load_versions()
        self._refreshed = time.monotonic()

    def rotate(self) -> int:
        """Create a new key version, which wraps from now on; older versions still unwrap."""
        self.refresh()
        version = (self._versions[-1] + 1) if self._versions else 1
        self._create_version(version)
        self._load_versions()
        return version

    def retire(self, version: int) -> None:
        """Destroy a version's key in the provider: material it wrapped is unreadable after this.

        Refused for the active version. The caller (the keyring) checks first that nothing
        still references it."""
        self.refresh()
        if version not in self._versions:
            raise KeyVersionError(f"key version {version} does not exist")
        if version == self._versions[-1]:
            raise KeyVersionError("the active key version cannot be retired; rotate first")
        self._destroy_version(version)
        self._load_versions()

    def close(self) -> None:  # noqa: B027 - most providers hold nothing to release
        """Release sessions and connections."""

    def __repr__(self) -> str:  # never show key material
        return f"{type(self).__name__}(versions={list(self._versions)})"

    __str__ = __repr__

    # -- what a provider implements --
    @abstractmethod
    def _seal(self, version: int, plaintext: bytes, aad: bytes) -> bytes: ...

    @abstractmethod
    def _open(self, version: int, body: bytes, aad: bytes) -> bytes: ...

    def _open_legacy(self, wrapped: bytes, context: bytes) -> bytes:
        """Material in the unversioned format of #2; only the file provider ever wrote it."""
        raise KeyError_("malformed wrapped key")

    @abstractmethod
    def _list_versions(self) -> list[int]: ...

    @abstractmethod
    def _create_version(self, version: int) -> None: ...

    @abstractmethod
    def _destroy_version(self, version: int) -> None: ...


class FileKeyProvider(KeyProvider):
    """A 256-bit root key in a file readable by the owner only (mode 0600).

    Version 1 is the file at ``path`` (created on first use, when no version exists at all);
    version N > 1 is ``path.vN``. A key file with wider permissions is refused, as ssh refuses
    a private key readable by others. Retiring a version overwrites then removes its file.
    """

    kind = "file"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._keys: dict[int, bytes] = {}
        if not self._list_versions():
            self._write_new(path)
        self._load_versions()
        self.active_version()

    def _file(self, version: int) -> str:
        return self.path if version == 1 else f"{self.path}.v{version}"

    def _list_versions(self) -> list[int]:
        found = [1] if os.path.exists(self.path) else []
        pattern = re.compile(re.escape(os.path.basename(self.path)) + r"\.v([0-9]+)$")
        for name in glob.glob(glob.escape(self.path) + ".v*"):
            m = pattern.search(name)
            if m and int(m.group(1)) > 1:
                found.append(int(m.group(1)))
        return found

    @staticmethod
    def _write_new(path: str) -> None:
        key = new_key()
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        # link, not replace: a version that exists already is never overwritten.
        try:
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def _read(path: str) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
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

    def _load_versions(self) -> None:
        versions = sorted(self._list_versions())
        keys = {v: self._keys.get(v) or self._read(self._file(v)) for v in versions}
        with self._vlock:
            self._keys = keys
            self._versions = tuple(versions)

    def _key(self, version: int) -> bytes:
        key = self._keys.get(version)
        if key is None:
            raise KeyError_("the key version that wrapped this material is not available")
        return key

    def _seal(self, version: int, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._key(version)).encrypt(nonce, plaintext, aad)

    def _open(self, version: int, body: bytes, aad: bytes) -> bytes:
        if len(body) < 12 + 16:
            raise KeyError_("malformed wrapped key")
        try:
            return AESGCM(self._key(version)).decrypt(body[:12], body[12:], aad)
        except Exception as e:
            raise KeyError_("key unwrap failed") from e

    def _open_legacy(self, wrapped: bytes, context: bytes) -> bytes:
        return unwrap_with(self._key(1), wrapped, context)

    def _create_version(self, version: int) -> None:
        if os.path.exists(self._file(version)):
            raise KeyVersionError(f"key version {version} exists already")
        self._write_new(self._file(version))

    def _destroy_version(self, version: int) -> None:
        path = self._file(version)
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.write(fd, b"\0" * KEY_SIZE)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
        with self._vlock:
            self._keys.pop(version, None)

    def __repr__(self) -> str:  # never show key material
        return f"FileKeyProvider(path={self.path!r}, versions={list(self._versions)})"

    __str__ = __repr__
