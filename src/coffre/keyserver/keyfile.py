"""The reference key service's keys: one JSON file, mode 0600, that only this service reads.

Each key has an id, 32 random bytes of material, and a state:

- ``enabled``: it wraps and unwraps;
- ``disabled``: it refuses both (KeyDisabled), material kept: enabling it again restores access.
  This is the revocation switch: a tenant disables its key and its data at the storage
  provider becomes unreadable within the provider's cache lifetime;
- ``destroyed``: the material is gone from the file for good (KeyDestroyed). Whatever it wrapped
  can never be opened again, by anyone: crypto-erasure under the tenant's own control.

The file is rewritten whole (temporary file, fsync, rename, fsync of the directory) under an
exclusive lock, so the command-line tools and a running service never see half a file; the
service notices a new file by its inode, size and modification time and reloads it before the
next request, so ``disable-key`` takes effect without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from coffre.crypto.keys import KEY_SIZE, new_key

KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
STATES = ("enabled", "disabled", "destroyed")
FORMAT = 1


class KeyFileError(ValueError):
    """The key file cannot be used (permissions, format) or the change asked is not possible."""


@dataclass(frozen=True, slots=True)
class Key:
    key_id: str
    state: str
    created_at: float
    material: bytes | None  # None once destroyed

    def __repr__(self) -> str:  # never the material
        return f"Key({self.key_id!r}, {self.state})"


def _parse(raw: bytes, path: str) -> dict[str, Key]:
    try:
        doc = json.loads(raw) if raw.strip() else {"format": FORMAT, "keys": {}}
    except ValueError:
        raise KeyFileError(f"{path} is not a key file (JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("keys"), dict):
        raise KeyFileError(f"{path} is not a key file of format {FORMAT}")
    keys: dict[str, Key] = {}
    for kid, entry in doc["keys"].items():
        if not KEY_ID.match(kid) or not isinstance(entry, dict) or entry.get("state") not in STATES:
            raise KeyFileError(f"{path}: key {kid!r} is malformed")
        material = None
        if entry["state"] != "destroyed":
            try:
                material = base64.b64decode(entry.get("material", ""), validate=True)
            except ValueError:
                material = b""
            if len(material) != KEY_SIZE:
                raise KeyFileError(f"{path}: key {kid!r} does not hold {KEY_SIZE} bytes")
        keys[kid] = Key(kid, entry["state"], float(entry.get("created_at", 0)), material)
    return keys


def _dump(keys: dict[str, Key]) -> bytes:
    out: dict[str, object] = {}
    for kid, k in sorted(keys.items()):
        entry: dict[str, object] = {"state": k.state, "created_at": k.created_at}
        if k.material is not None:
            entry["material"] = base64.b64encode(k.material).decode()
        out[kid] = entry
    return json.dumps({"format": FORMAT, "keys": out}, indent=1).encode() + b"\n"


def _read_private(path: str) -> tuple[bytes, tuple[int, int, int]]:
    """The file's bytes and identity; refused when group or others may access it."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"key file {path} must not be accessible by group or others (chmod 600)")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks), (st.st_ino, st.st_size, st.st_mtime_ns)
    finally:
        os.close(fd)


class KeyFile:
    """The keys of one file, reloaded when the file changes (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._identity: tuple[int, int, int] | None = None
        self._keys: dict[str, Key] = {}
        self.reload()

    def reload(self) -> None:
        raw, identity = _read_private(self.path)
        self._keys = _parse(raw, self.path)
        self._identity = identity

    def refresh(self) -> None:
        """Reload when the file on disk is not the one last read (one stat when it is)."""
        st = os.stat(self.path)
        if (st.st_ino, st.st_size, st.st_mtime_ns) != self._identity:
            self.reload()

    def get(self, key_id: str) -> Key | None:
        return self._keys.get(key_id)

    def keys(self) -> list[Key]:
        return [self._keys[k] for k in sorted(self._keys)]


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    fd = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def update(path: str, change: Callable[[dict[str, Key]], None]) -> dict[str, Key]:
    """Apply ``change`` to the file's keys under the lock, creating the file when missing."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with _locked(path):
        try:
            raw, _ = _read_private(path)
        except FileNotFoundError:
            raw = b""
        keys = _parse(raw, path)
        change(keys)
        _write(path, _dump(keys))
        return keys


def create_key(path: str, key_id: str) -> Key:
    if not KEY_ID.match(key_id):
        raise KeyFileError("a key id is 1 to 128 letters, digits and . _ : / -, starting with a letter or digit")

    def change(keys: dict[str, Key]) -> None:
        if key_id in keys:
            raise KeyFileError(f"key {key_id} already exists")
        keys[key_id] = Key(key_id, "enabled", time.time(), new_key())

    return update(path, change)[key_id]


def set_state(path: str, key_id: str, state: str) -> Key:
    """Enable, disable or destroy a key. Destroying is final: the material is overwritten."""
    if state not in STATES:
        raise KeyFileError(f"unknown key state {state!r}")

    def change(keys: dict[str, Key]) -> None:
        k = keys.get(key_id)
        if k is None:
            raise KeyFileError(f"no key {key_id}")
        if k.state == "destroyed" and state != "destroyed":
            raise KeyFileError(f"key {key_id} was destroyed; it cannot be brought back")
        keys[key_id] = Key(key_id, state, k.created_at, None if state == "destroyed" else k.material)

    return update(path, change)[key_id]
