"""The root key in a PKCS#11 HSM (tested against SoftHSM2).

Each root key version is an AES-256 secret key object on the token, labelled
``<key_label>-v<N>``, generated inside the token as sensitive and non-extractable: its bytes
never leave the HSM. Wrapping is AES-GCM computed by the HSM (CKM_AES_GCM), with a random
96-bit nonce chosen here and the version header plus context as associated data. Retiring a
version destroys its object on the token.

One logged-in session serves every call, behind a lock: python-pkcs11 sessions must not run
two operations at once, and wrap/unwrap are called from several threads. A session that breaks
(an HSM restart) is reopened once per call. The PIN is held only to log in again; it is never
shown in repr, logs or errors.
"""

from __future__ import annotations

import re
import secrets
import threading
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams

from coffre.crypto.keys import KeyError_, KeyProvider, KeyVersionError

NONCE = 12
TAG = 16


class Pkcs11KeyProvider(KeyProvider):
    kind = "pkcs11"

    def __init__(self, module: str, token_label: str, pin: str, key_label: str = "coffre-root") -> None:
        super().__init__()
        if not module or not token_label or not pin:
            raise ValueError("the pkcs11 key provider needs pkcs11_module, pkcs11_token_label and pkcs11_pin")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key_label):
            raise ValueError("pkcs11_key_label: 1 to 64 letters, digits, '.', '_' or '-'")
        self.module = module
        self.token_label = token_label
        self.key_label = key_label
        self._pin = pin
        self._lock = threading.RLock()
        self._session: Any = None
        self._keys: dict[int, Any] = {}
        self._lib = pkcs11.lib(module)
        with self._lock:
            self._open_session()
        if not self._list_versions():
            self._create_version(1)
        self._load_versions()

    def _open_session(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            except Exception:  # noqa: S110 - a broken session is replaced anyway
                pass
        try:
            token = self._lib.get_token(token_label=self.token_label)
        except (pkcs11.exceptions.NoSuchToken, pkcs11.exceptions.GeneralError):
            # A token initialised (or one removed) after the library was loaded: list the slots afresh.
            self._lib.reinitialize()
            token = self._lib.get_token(token_label=self.token_label)
        try:
            self._session = token.open(user_pin=self._pin, rw=True)
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            # Login is per application and token: another session of this process logged in.
            self._session = token.open(rw=True)
        self._keys = {}

    def _call(self, fn: Any) -> Any:
        """Run ``fn(session)`` under the lock; reopen the session once if the HSM dropped it."""
        with self._lock:
            try:
                return fn(self._session)
            except (pkcs11.exceptions.SessionClosed, pkcs11.exceptions.SessionHandleInvalid,
                    pkcs11.exceptions.DeviceRemoved, pkcs11.exceptions.TokenNotPresent):
                self._open_session()
                return fn(self._session)

    def _label(self, version: int) -> str:
        return f"{self.key_label}-v{version}"

    def _key(self, session: Any, version: int) -> Any:
        key = self._keys.get(version)
        if key is None:
            try:
                key = session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES,
                                      label=self._label(version))
            except (pkcs11.exceptions.NoSuchKey, pkcs11.exceptions.MultipleObjectsReturned) as e:
                raise KeyError_("the key version that wrapped this material is not available") from e
            self._keys[version] = key
        return key

    def _list_versions(self) -> list[int]:
        pattern = re.compile(re.escape(self.key_label) + r"-v([0-9]+)$")

        def find(session: Any) -> list[int]:
            found = []
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                            Attribute.KEY_TYPE: KeyType.AES}):
                m = pattern.match(obj.label or "")
                if m:
                    found.append(int(m.group(1)))
            return found

        return list(self._call(find))

    def _create_version(self, version: int) -> None:
        def gen(session: Any) -> None:
            try:
                session.get_key(object_class=ObjectClass.SECRET_KEY, label=self._label(version))
            except pkcs11.exceptions.NoSuchKey:
                pass
            else:
                raise KeyVersionError(f"key version {version} exists already")
            session.generate_key(KeyType.AES, 256, label=self._label(version), store=True, template={
                Attribute.TOKEN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.PRIVATE: True,
                Attribute.WRAP: False, Attribute.UNWRAP: False})

        self._call(gen)

    def _destroy_version(self, version: int) -> None:
        def destroy(session: Any) -> None:
            self._key(session, version).destroy()
            self._keys.pop(version, None)

        self._call(destroy)

    def _seal(self, version: int, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE)

        def enc(session: Any) -> bytes:
            return bytes(self._key(session, version).encrypt(
                plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, TAG * 8)))

        try:
            return nonce + bytes(self._call(enc))
        except KeyError_:
            raise
        except pkcs11.exceptions.PKCS11Error as e:
            raise KeyError_(f"HSM wrap failed ({type(e).__name__})") from None

    def _open(self, version: int, body: bytes, aad: bytes) -> bytes:
        if len(body) < NONCE + TAG:
            raise KeyError_("malformed wrapped key")

        def dec(session: Any) -> bytes:
            return bytes(self._key(session, version).decrypt(
                body[NONCE:], mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(body[:NONCE], aad, TAG * 8)))

        try:
            return bytes(self._call(dec))
        except KeyError_:
            raise
        except pkcs11.exceptions.PKCS11Error as e:
            raise KeyError_("key unwrap failed") from e

    def check(self) -> None:
        try:
            super().check()
        except pkcs11.exceptions.PKCS11Error as e:
            raise KeyError_(f"HSM unavailable ({type(e).__name__})") from None

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                try:
                    self._session.close()
                finally:
                    self._session = None

    def __repr__(self) -> str:  # never the PIN
        return (f"Pkcs11KeyProvider(token={self.token_label!r}, key_label={self.key_label!r}, "
                f"versions={list(self._versions)})")

    __str__ = __repr__
