"""The operator plane's identities: operators, their passwords, TOTP second factor, keys, sessions.

Operators administer tenants from the admin API; they are never tenant identities (their access
keys carry ``OPERATOR_TENANT``), so nothing here grants anything on the S3 API.

- Passwords are hashed with argon2id (RFC 9106's second recommended parameters: 64 MiB, 3 passes,
  4 lanes); hashing runs in a thread, it takes tens of milliseconds on purpose.
- TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits, one step of drift either way) is mandatory for
  password logins. The seed is stored wrapped by the root key, like access-key secrets, and shown
  once at creation as an ``otpauth://`` URI. A code is accepted once: the last step used is kept
  in the metadata store, so a code seen on the wire cannot be replayed on another gateway.
- A login that fails for any reason (unknown operator, wrong password, wrong code, locked out)
  gets the same error, after the same argon2 work, so the answer reveals nothing. After
  ``MAX_FAILURES`` failures in a row the operator is locked out for ``LOCKOUT_SECONDS``.
- A successful login returns a session token: stateless, HMAC-SHA256-signed with a key stored
  wrapped in the metadata store (so every gateway verifies every other's tokens), bound to the
  operator's current password hash (changing it revokes the sessions) and expiring.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from coffre.core.errors import CoffreError, EntityAlreadyExists, NoSuchEntity, ValidationError
from coffre.core.keyring import Keyring
from coffre.crypto.keys import new_key
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, NotFound
from coffre.meta.records import OPERATOR_TENANT, AccessKeyRecord, OperatorRecord

MAX_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
TOTP_STEP = 30
TOTP_DIGITS = 6
TOTP_DRIFT = 1  # steps accepted either side of now
ISSUER = "coffre"
_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,62}$")
_SESSION_KEY_SETTING = "admin_session_key"
_TOKEN_PREFIX = "cs1."  # noqa: S105 - a format marker, not a secret

_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, hash_len=32, salt_len=16)


class LoginFailed(CoffreError):
    """One answer for every failed login, whatever failed."""

    message = "The operator name, password or one-time code is not valid, or the account is locked."


class InvalidSession(CoffreError):
    message = "The session token is not valid or has expired; log in again."


def check_operator_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValidationError("An operator name is 2 to 63 characters: lower-case letters, digits, '.', '_' "
                              "and '-', starting with a letter.")


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationError(f"A password is {MIN_PASSWORD} to {MAX_PASSWORD} characters long.")


def totp_code(seed: bytes, step: int) -> str:
    """RFC 4226 HOTP of counter ``step`` (RFC 6238 TOTP when step = time // 30)."""
    mac = hmac.new(seed, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** TOTP_DIGITS).zfill(TOTP_DIGITS)


def provisioning_uri(name: str, seed: bytes) -> str:
    secret = base64.b32encode(seed).decode().rstrip("=")
    label = quote(f"{ISSUER}:{name}", safe=":")
    return (f"otpauth://totp/{label}?secret={secret}&issuer={ISSUER}&algorithm=SHA1"
            f"&digits={TOTP_DIGITS}&period={TOTP_STEP}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _password_mark(op: OperatorRecord) -> str:
    """What a session is bound to: changing the password (or removing it) ends every session."""
    return hashlib.sha256((op.password_hash or "").encode()).hexdigest()[:16]


class OperatorService:
    def __init__(self, meta: MetadataStore, keyring: Keyring, session_seconds: int,
                 on_key_change: Callable[[str], None]) -> None:
        self.meta = meta
        self.keyring = keyring
        self.session_seconds = session_seconds
        self.on_key_change = on_key_change  # drops a cached credential (access key id)
        self._session_key: bytes | None = None
        self._dummy_hash: str | None = None

    # -- operators --
    async def create(self, name: str, password: str | None) -> tuple[OperatorRecord, str | None]:
        """A new operator; with a password it gets a TOTP seed too, returned once as an otpauth URI."""
        check_operator_name(name)
        uri: str | None = None
        pw_hash: str | None = None
        wrapped: bytes | None = None
        if password is not None:
            check_password(password)
            pw_hash = await asyncio.to_thread(_hasher.hash, password)
            seed = secrets.token_bytes(20)
            wrapped = self.keyring.provider.wrap(seed, self._totp_context(name))
            uri = provisioning_uri(name, seed)
        op = OperatorRecord(name=name, created_at=time.time(), password_hash=pw_hash, wrapped_totp=wrapped)
        try:
            await self.meta.create_operator(op)
        except AlreadyExists as e:
            raise EntityAlreadyExists(f"Operator {name} already exists.") from e
        return op, uri

    async def get(self, name: str) -> OperatorRecord:
        op = await self.meta.get_operator(name)
        if op is None:
            raise NoSuchEntity(f"The operator {name} does not exist.")
        return op

    async def list_operators(self) -> list[OperatorRecord]:
        return await self.meta.list_operators()

    @staticmethod
    def _totp_context(name: str) -> bytes:
        return b"totp|" + name.encode()

    # -- login --
    async def login(self, name: str, password: str, code: str, now: float | None = None) -> tuple[str, float]:
        """Check password and TOTP code; return a session token and its expiry (POSIX seconds)."""
        now = time.time() if now is None else now
        op = await self.meta.get_operator(name) if _NAME.match(name) else None
        if op is None or op.password_hash is None or op.wrapped_totp is None:
            # Same work as a real check: the time taken does not tell which operators exist.
            await asyncio.to_thread(self._verify_password, self._dummy(), password)
            raise LoginFailed()
        locked = op.locked_until > now
        ok = await asyncio.to_thread(self._verify_password, op.password_hash, password)
        step = None
        if ok and not locked:
            step = await self._check_code(op, code, now)
        if locked or step is None or op.status != "active":
            if not locked:
                failures = op.failed_logins + 1
                if failures >= MAX_FAILURES:
                    op = replace(op, failed_logins=0, locked_until=now + LOCKOUT_SECONDS)
                else:
                    op = replace(op, failed_logins=failures)
                await self.meta.update_operator(op)
            raise LoginFailed()
        await self.meta.set_setting(self._step_setting(name), str(step))
        if op.failed_logins or op.locked_until:
            await self.meta.update_operator(replace(op, failed_logins=0, locked_until=0.0))
        expires = now + self.session_seconds
        return await self._token(op, expires), expires

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    @staticmethod
    def _verify_password(stored: str, password: str) -> bool:
        try:
            return _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _step_setting(name: str) -> str:
        return f"operator_totp_step:{name}"

    async def _check_code(self, op: OperatorRecord, code: str, now: float) -> int | None:
        """The step the code matches (not used before), or None. Every candidate is compared."""
        assert op.wrapped_totp is not None
        seed = self.keyring.provider.unwrap(op.wrapped_totp, self._totp_context(op.name))
        last = int(await self.meta.get_setting(self._step_setting(op.name)) or "-1")
        current = int(now // TOTP_STEP)
        given = code.strip().encode()
        found = None
        for step in range(current - TOTP_DRIFT, current + TOTP_DRIFT + 1):
            if hmac.compare_digest(totp_code(seed, step).encode(), given) and step > last:
                found = step
        return found

    # -- sessions --
    async def _key(self, reload: bool = False) -> bytes:
        if self._session_key is None or reload:
            stored = await self.meta.get_setting(_SESSION_KEY_SETTING)
            if stored is None:
                wrapped = self.keyring.provider.wrap(new_key(), b"admin-session")
                # Insert-if-absent: gateways starting at once all keep the first one stored.
                stored = await self.meta.add_setting(_SESSION_KEY_SETTING, base64.b64encode(wrapped).decode())
            self._session_key = self.keyring.provider.unwrap(base64.b64decode(stored), b"admin-session")
        return self._session_key

    async def _token(self, op: OperatorRecord, expires: float) -> str:
        body = _b64(json.dumps({"sub": op.name, "exp": int(expires), "pw": _password_mark(op)},
                               separators=(",", ":")).encode())
        mac = hmac.new(await self._key(), body.encode(), hashlib.sha256).digest()
        return f"{_TOKEN_PREFIX}{body}.{_b64(mac)}"

    async def verify_session(self, token: str, now: float | None = None) -> OperatorRecord:
        """The operator a session token was issued to, if it is still valid; else InvalidSession."""
        now = time.time() if now is None else now
        if not token.startswith(_TOKEN_PREFIX) or token.count(".") != 2 or len(token) > 2048:
            raise InvalidSession()
        body, _, mac = token[len(_TOKEN_PREFIX):].partition(".")
        try:
            given = _unb64(mac)
            claims = json.loads(_unb64(body))
        except (ValueError, TypeError) as e:
            raise InvalidSession() from e
        expected = hmac.new(await self._key(), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            # Another gateway may have won the race to create the key: look once more.
            expected = hmac.new(await self._key(reload=True), body.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, given):
                raise InvalidSession()
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            raise InvalidSession()
        op = await self.meta.get_operator(str(claims.get("sub", "")))
        if op is None or op.status != "active" or not hmac.compare_digest(
                _password_mark(op), str(claims.get("pw", ""))):
            raise InvalidSession()
        return op

    # -- access keys --
    async def create_access_key(self, name: str, access_key_id: str, secret: str) -> AccessKeyRecord:
        """Store a key for operator ``name`` (the caller generates or imports it)."""
        await self.get(name)
        if await self.meta.get_access_key(access_key_id) is not None:
            raise EntityAlreadyExists("An access key with this id already exists.")
        rec = AccessKeyRecord(access_key_id=access_key_id, tenant_id=OPERATOR_TENANT, principal=name,
                              wrapped_secret=self.keyring.wrap_secret(access_key_id, secret), status="active",
                              created_at=time.time())
        await self.meta.put_access_key(rec)
        self.on_key_change(access_key_id)
        return rec

    async def list_access_keys(self, name: str) -> list[AccessKeyRecord]:
        await self.get(name)
        return await self.meta.list_access_keys(OPERATOR_TENANT, name)

    async def delete_access_key(self, name: str, access_key_id: str) -> None:
        rec = await self.meta.get_access_key(access_key_id)
        if rec is None or rec.tenant_id != OPERATOR_TENANT or rec.principal != name:
            raise NoSuchEntity(f"The operator {name} has no access key {access_key_id}.")
        try:
            await self.meta.delete_access_key(access_key_id)
        except NotFound as e:
            raise NoSuchEntity(f"The operator {name} has no access key {access_key_id}.") from e
        self.on_key_change(access_key_id)
