"""The root key in a KMIP server (tested against PyKMIP's server), over mutual TLS.

Each root key version is an AES-256 symmetric key created on the server, named
``<key_name>-v<N>``; its bytes never leave the server (we never Get it).

The server encrypts, but KMIP clients such as PyKMIP's do not expose AES-GCM's associated data
and tag, so a wrap is two layers: the server encrypts a fresh random 256-bit key ``k`` with the
version's key (AES-CBC, random IV chosen by the server), and ``k`` seals the material here with
AES-256-GCM, the version header and context as associated data. Unwrapping asks the server to
decrypt ``k``; tampering with any byte changes ``k`` or the sealed part, and GCM refuses it. The
wrapped form is ``iv(16) | len(1) | encrypted k | nonce(12) | ciphertext+tag``.

One TLS connection serves every call, behind a lock (the client is not thread-safe); a broken
connection is reopened once per call. Retiring a version revokes then destroys it on the server.
"""

from __future__ import annotations

import re
import secrets
import threading
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coffre.crypto.keys import KEY_SIZE, KeyError_, KeyProvider, KeyVersionError

IV = 16
NONCE = 12


def _kmip() -> Any:
    from kmip import enums  # noqa: PLC0415 - optional dependency, loaded when this provider is chosen
    from kmip.pie import client as pie

    return enums, pie


class KmipKeyProvider(KeyProvider):
    kind = "kmip"

    def __init__(self, host: str, port: int, cert: str, key: str, ca: str, key_name: str = "coffre-root",
                 timeout: float = 10.0) -> None:
        super().__init__()
        if not (host and cert and key and ca):
            raise ValueError("the kmip key provider needs kmip_host, kmip_cert, kmip_key and kmip_ca")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key_name):
            raise ValueError("kmip_key_name: 1 to 64 letters, digits, '.', '_' or '-'")
        self.host, self.port, self.key_name = host, port, key_name
        self._tls = (cert, key, ca)
        self._timeout = timeout
        self._lock = threading.RLock()
        self._client: Any = None
        self._uids: dict[int, str] = {}
        self._enums, self._pie = _kmip()
        if not self._list_versions():
            self._create_version(1)
        self._load_versions()

    # -- connection --
    def _connect(self) -> Any:
        if self._client is None:
            cert, key, ca = self._tls
            client = self._pie.ProxyKmipClient(hostname=self.host, port=self.port, cert=cert, key=key, ca=ca,
                                               config_file="/dev/null")
            client.open()
            self._client = client
        return self._client

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: S110 - it is replaced anyway
                pass
            self._client = None

    def _call(self, fn: Any) -> Any:
        """``fn(client)`` under the lock; a connection error reconnects and tries once more."""
        with self._lock:
            try:
                return fn(self._connect())
            except (OSError, self._pie.exceptions.ClientConnectionFailure,
                    self._pie.exceptions.ClientConnectionNotOpen):
                self._drop()
                return fn(self._connect())

    def _name(self, version: int) -> str:
        return f"{self.key_name}-v{version}"

    def _params(self, random_iv: bool) -> dict[str, Any]:
        e = self._enums
        p: dict[str, Any] = {"cryptographic_algorithm": e.CryptographicAlgorithm.AES,
                             "block_cipher_mode": e.BlockCipherMode.CBC, "padding_method": e.PaddingMethod.PKCS5}
        if random_iv:
            p["random_iv"] = True
        return p

    # -- versions --
    def _list_versions(self) -> list[int]:
        e = self._enums
        pattern = re.compile(re.escape(self.key_name) + r"-v([0-9]+)$")

        def find(c: Any) -> dict[int, str]:
            found: dict[int, str] = {}
            attr = c.attribute_factory.create_attribute(e.AttributeType.OBJECT_TYPE, e.ObjectType.SYMMETRIC_KEY)
            for uid in c.locate(attributes=[attr]):
                _, attrs = c.get_attributes(uid, ["Name", "State"])
                names = [a.attribute_value.name_value.value for a in attrs if a.attribute_name.value == "Name"]
                states = [a.attribute_value.value for a in attrs if a.attribute_name.value == "State"]
                for n in names:
                    m = pattern.match(n)
                    if m and states and states[0] == e.State.ACTIVE:
                        found[int(m.group(1))] = uid
            return found

        found = self._call(find)
        with self._vlock:
            self._uids = found
        return list(found)

    def _create_version(self, version: int) -> None:
        e = self._enums
        if version in self._uids:
            raise KeyVersionError(f"key version {version} exists already")

        def create(c: Any) -> str:
            uid = c.create(e.CryptographicAlgorithm.AES, 256, name=self._name(version),
                           cryptographic_usage_mask=[e.CryptographicUsageMask.ENCRYPT,
                                                     e.CryptographicUsageMask.DECRYPT])
            c.activate(uid)
            return str(uid)

        uid = self._call(create)
        with self._vlock:
            self._uids[version] = uid

    def _destroy_version(self, version: int) -> None:
        e = self._enums
        uid = self._uid(version)

        def destroy(c: Any) -> None:
            c.revoke(e.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
            c.destroy(uid)

        self._call(destroy)
        with self._vlock:
            self._uids.pop(version, None)

    def _uid(self, version: int) -> str:
        uid = self._uids.get(version)
        if uid is None:
            raise KeyError_("the key version that wrapped this material is not available")
        return uid

    # -- wrap / unwrap --
    def _seal(self, version: int, plaintext: bytes, aad: bytes) -> bytes:
        uid = self._uid(version)
        k = secrets.token_bytes(KEY_SIZE)
        try:
            enc, iv = self._call(lambda c: c.encrypt(k, uid=uid, cryptographic_parameters=self._params(True)))
        except KeyError_:
            raise
        except Exception as e:
            raise KeyError_(f"KMIP wrap failed ({type(e).__name__})") from None
        if len(iv) != IV or not 0 < len(enc) < 256:
            raise KeyError_("KMIP wrap failed (unexpected answer)")
        nonce = secrets.token_bytes(NONCE)
        return bytes(iv) + bytes([len(enc)]) + bytes(enc) + nonce + AESGCM(k).encrypt(nonce, plaintext, aad)

    def _open(self, version: int, body: bytes, aad: bytes) -> bytes:
        if len(body) < IV + 1:
            raise KeyError_("malformed wrapped key")
        iv, n = body[:IV], body[IV]
        enc, rest = body[IV + 1:IV + 1 + n], body[IV + 1 + n:]
        if len(enc) != n or len(rest) < NONCE + 16:
            raise KeyError_("malformed wrapped key")
        uid = self._uid(version)
        try:
            k = self._call(lambda c: c.decrypt(enc, uid=uid, cryptographic_parameters=self._params(False),
                                               iv_counter_nonce=iv))
        except Exception as e:  # bad padding of a tampered IV or key: the server refuses
            raise KeyError_("key unwrap failed") from e
        if len(k) != KEY_SIZE:
            raise KeyError_("key unwrap failed")
        try:
            return AESGCM(bytes(k)).decrypt(rest[:NONCE], rest[NONCE:], aad)
        except Exception as e:
            raise KeyError_("key unwrap failed") from e

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __repr__(self) -> str:
        return f"KmipKeyProvider(server={self.host}:{self.port}, key_name={self.key_name!r}, " \
               f"versions={list(self._versions)})"

    __str__ = __repr__
