"""Human operators: argon2id password, mandatory TOTP, sessions, lockout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from coffre.core.operators import totp_code
from tests.admin.helpers import call, error, ok

PASSWORD = "correct horse battery staple"


def totp(secret_b32: str, at: float | None = None, offset: int = 0) -> str:
    """RFC 6238 written out again here, so the server's code is checked against another's."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // 30) + offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 15
    return f"{(struct.unpack('>I', mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def test_rfc6238_vector():
    # RFC 6238 appendix B, SHA1 seed, T = 59 s: 94287082 (8 digits); coffre uses the last 6.
    assert totp_code(b"12345678901234567890", 59 // 30) == "287082"
    assert totp(base64.b32encode(b"12345678901234567890").decode(), at=59) == "287082"


@pytest.fixture
def human(admin_endpoint, operator_credentials):
    """A new operator with a password; returns (name, base32 TOTP secret)."""
    name = "op-" + uuid.uuid4().hex[:10]
    made = ok(call(admin_endpoint, operator_credentials, "POST", "/operators", {"name": name, "password": PASSWORD}),
              201)
    uri = urlsplit(made["totp_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp" and uri.path == f"/coffre:{name}"
    q = parse_qs(uri.query)
    assert q["issuer"] == ["coffre"] and q["digits"] == ["6"] and q["period"] == ["30"] and q["algorithm"] == ["SHA1"]
    # The seed is shown once: listings never carry it.
    listed = ok(call(admin_endpoint, operator_credentials, "GET", "/operators"))
    assert q["secret"][0] not in str(listed)
    return name, q["secret"][0]


def login(admin_endpoint, name, password, code):
    return call(admin_endpoint, None, "POST", "/login", {"name": name, "password": password, "totp": code})


def test_login_gives_a_session(admin_endpoint, human):
    name, secret = human
    session = ok(login(admin_endpoint, name, PASSWORD, totp(secret)))
    assert session["operator"] == name and session["token"].startswith("cs1.")
    assert ok(call(admin_endpoint, None, "GET", "/whoami", token=session["token"]))["operator"] == name
    made = ok(call(admin_endpoint, None, "POST", "/tenants", {"name": "t-" + uuid.uuid4().hex[:12]},
                   token=session["token"]), 201)
    assert made["secret_access_key"]
    # A token altered by one character is refused.
    forged = session["token"][:-2] + ("A" if session["token"][-2] != "A" else "B") + session["token"][-1]
    error(call(admin_endpoint, None, "GET", "/whoami", token=forged), 401, "InvalidSession")
    # The same code cannot be used twice (seen on the wire, it is worthless).
    error(login(admin_endpoint, name, PASSWORD, totp(secret)), 401, "LoginFailed")


def test_every_failure_gets_the_same_answer(admin_endpoint, human):
    name, secret = human
    unknown = error(login(admin_endpoint, "nobody-" + uuid.uuid4().hex[:6], PASSWORD, "123456"), 401, "LoginFailed")
    wrong_password = error(login(admin_endpoint, name, PASSWORD + "x", totp(secret)), 401, "LoginFailed")
    wrong_code = error(login(admin_endpoint, name, PASSWORD, "000000" if totp(secret) != "000000" else "111111"),
                       401, "LoginFailed")
    assert unknown == wrong_password == wrong_code
    # A key-only operator (root) cannot log in with a password at all.
    error(login(admin_endpoint, "root", PASSWORD, "123456"), 401, "LoginFailed")
    error(call(admin_endpoint, None, "POST", "/login", {"name": name}), 400, "ValidationError")


def test_lockout_after_five_failures(admin_endpoint, operator_credentials, human):
    name, secret = human
    for _ in range(5):
        error(login(admin_endpoint, name, "wrong password!", totp(secret)), 401, "LoginFailed")
    # Locked: even the right password and code are refused, with the same answer.
    error(login(admin_endpoint, name, PASSWORD, totp(secret)), 401, "LoginFailed")
    listed = {o["name"]: o for o in ok(call(admin_endpoint, operator_credentials, "GET", "/operators"))["operators"]}
    locked_until = time.mktime(time.strptime(listed[name]["locked_until"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 14 * 60 < locked_until - time.time() <= 15 * 60 + 5


def test_weak_password_refused(admin_endpoint, operator_credentials):
    error(call(admin_endpoint, operator_credentials, "POST", "/operators",
               {"name": "op-" + uuid.uuid4().hex[:8], "password": "short"}), 400, "ValidationError")
