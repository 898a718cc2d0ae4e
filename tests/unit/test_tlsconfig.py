"""The TLS policy (coffre.tlsconfig) in handshakes with Python's ssl module, and its refusals.

Each refusal is checked against a control: the same client handshakes with a permissive server
holding the same certificate, so the refusal is the policy's, not the client's own OpenSSL's
(Debian's OpenSSL refuses TLS < 1.2 at its default security level; clients lower it with
``@SECLEVEL=0``). A refusal must come as an alert from the server.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from coffre import tlsconfig
from coffre.cli.devcert import make_pair

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3


# -- helpers, also used by tests/s3/test_tls.py --
def legacy_version(name: str) -> ssl.TLSVersion:
    """ssl.TLSVersion.TLSv1 / TLSv1_1 without their DeprecationWarning (we use them to be refused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(ssl.TLSVersion, name)


@contextmanager
def tls_listener(ctx: ssl.SSLContext) -> Iterator[int]:
    """An in-process TLS server on 127.0.0.1 (answers b"ok" after the handshake); yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as s:
                    s.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def permissive_context(cert: str, key: str) -> ssl.SSLContext:
    """The control server: anything this OpenSSL can do, TLS 1.0 and CBC included."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    return ctx


def handshake(port: int, cafile: str, *, ciphers: str | None = None, version: ssl.TLSVersion | None = None,
              curve: str | None = None, http: bool = False) -> tuple[str, str]:
    """(protocol version, cipher) of a handshake from a client offering only what is given.

    ``http``: the server is coffre's, which is then sent a request (an in-process listener says "ok").
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if version is not None:
        with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: we offer them to be refused
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
    if curve:
        ctx.set_ecdh_curve(curve)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        if http:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 403 "), "anonymous ListBuckets is denied"
        else:
            assert s.recv(16) == b"ok"
        return str(s.version()), s.cipher()[0]  # type: ignore[index]


def assert_refused_by_server(port: int, cafile: str, **offer: Any) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as info:
        handshake(port, cafile, **offer)
    # The server ended the handshake: with an alert (handshake_failure, protocol_version), or, from
    # asyncio's TLS transport (the real server), by closing the connection. Not a local refusal
    # such as NO_PROTOCOLS_AVAILABLE or NO_CIPHERS_AVAILABLE.
    e = info.value
    assert isinstance(e, (ssl.SSLEOFError, ConnectionResetError)) or "ALERT" in (e.reason or ""), e


# What a client offering only this cannot get from coffre, and the permissive control accepts.
REFUSED_OFFERS = {
    "tls1.0": {"ciphers": "ALL:@SECLEVEL=0", "version": "TLSv1"},
    "tls1.1": {"ciphers": "ALL:@SECLEVEL=0", "version": "TLSv1_1"},
    "tls1.2-cbc-sha1": {"ciphers": "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0", "version": "TLSv1_2"},
    "tls1.2-cbc-sha256": {"ciphers": "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384", "version": "TLSv1_2"},
    "tls1.2-ccm": {"ciphers": "ECDHE-ECDSA-AES128-CCM:ECDHE-ECDSA-AES256-CCM", "version": "TLSv1_2"},
}


def offer(spec: dict[str, str]) -> dict:
    out: dict = dict(spec)
    if "version" in out:
        out["version"] = legacy_version(out["version"])
    return out


# -- fixtures --
@pytest.fixture(scope="module")
def ecdsa_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("ecdsa")
    cert, key = make_pair(["s3.test"])
    (d / "c.pem").write_bytes(cert)
    (d / "k.pem").write_bytes(key)
    os.chmod(d / "k.pem", 0o600)
    return str(d / "c.pem"), str(d / "k.pem")


@pytest.fixture(scope="module")
def rsa_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An RSA certificate: the only kind with which static-RSA key exchange could be negotiated."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("rsa")
    (d / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    os.chmod(d / "k.pem", 0o600)
    return str(d / "c.pem"), str(d / "k.pem")


@pytest.fixture(scope="module")
def ecdsa_ports(ecdsa_pair) -> Iterator[tuple[int, int]]:
    """(coffre's policy, permissive control), both with the ECDSA pair."""
    with tls_listener(tlsconfig.server_context(*ecdsa_pair)) as strict, \
            tls_listener(permissive_context(*ecdsa_pair)) as control:
        yield strict, control


@pytest.fixture(scope="module")
def rsa_ports(rsa_pair) -> Iterator[tuple[int, int]]:
    with tls_listener(tlsconfig.server_context(*rsa_pair)) as strict, \
            tls_listener(permissive_context(*rsa_pair)) as control:
        yield strict, control


# -- the policy in handshakes --
@pytest.mark.parametrize("name", sorted(REFUSED_OFFERS))
def test_weak_offers_are_refused(ecdsa_pair, ecdsa_ports, name):
    strict, control = ecdsa_ports
    spec = offer(REFUSED_OFFERS[name])
    handshake(control, ecdsa_pair[0], **spec)  # the client can do it...
    assert_refused_by_server(strict, ecdsa_pair[0], **spec)  # ...coffre will not


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                                    "ECDHE-ECDSA-CHACHA20-POLY1305"])
def test_recommended_tls12_suites_are_accepted(ecdsa_pair, ecdsa_ports, cipher):
    assert handshake(ecdsa_ports[0], ecdsa_pair[0], ciphers=cipher, version=TLS12) == ("TLSv1.2", cipher)


def test_tls13_is_accepted_with_the_recommended_suites(ecdsa_pair, ecdsa_ports):
    version, cipher = handshake(ecdsa_ports[0], ecdsa_pair[0], version=TLS13)
    assert version == "TLSv1.3"
    assert cipher in ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256")
    # A client that does not say: the highest version is chosen.
    assert handshake(ecdsa_ports[0], ecdsa_pair[0])[0] == "TLSv1.3"


def test_the_servers_suite_order_wins(ecdsa_pair, ecdsa_ports):
    ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
    assert handshake(ecdsa_ports[0], ecdsa_pair[0], ciphers=ciphers, version=TLS12)[1] == \
        "ECDHE-ECDSA-AES256-GCM-SHA384"


@pytest.mark.parametrize("cipher", ["AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA",
                                    "ECDHE-RSA-AES128-SHA",
                                    "ECDHE-RSA-AES256-SHA384"])
def test_rsa_key_exchange_and_cbc_are_refused_with_an_rsa_certificate(rsa_pair, rsa_ports, cipher):
    strict, control = rsa_ports
    ciphers = f"{cipher}:@SECLEVEL=0"
    assert handshake(control, rsa_pair[0], ciphers=ciphers, version=TLS12)[1] == cipher
    assert_refused_by_server(strict, rsa_pair[0], ciphers=ciphers, version=TLS12)


@pytest.mark.parametrize("cipher", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                                    "ECDHE-RSA-CHACHA20-POLY1305"])
def test_ecdhe_rsa_aead_suites_are_accepted(rsa_pair, rsa_ports, cipher):
    assert handshake(rsa_ports[0], rsa_pair[0], ciphers=cipher, version=TLS12) == ("TLSv1.2", cipher)


@pytest.mark.parametrize("curve", ["X25519", "prime256v1", "secp384r1"])
def test_recommended_groups_are_accepted(ecdsa_pair, ecdsa_ports, curve):
    assert handshake(ecdsa_ports[0], ecdsa_pair[0], curve=curve, version=TLS13)[0] == "TLSv1.3"


@pytest.mark.parametrize("curve", ["secp521r1", "X448"])
def test_other_groups_are_refused(ecdsa_pair, ecdsa_ports, curve):
    """The group list really is restricted (Python alone could only set one group)."""
    strict, control = ecdsa_ports
    handshake(control, ecdsa_pair[0], curve=curve, version=TLS13)
    assert_refused_by_server(strict, ecdsa_pair[0], curve=curve, version=TLS13)


def test_groups_are_set_through_openssl(ecdsa_pair):
    """The ctypes path is taken on this CPython (else only P-256 would be allowed)."""
    assert tlsconfig._set_groups_list(tlsconfig.hardened_context(), tlsconfig.GROUPS)


def test_context_settings():
    ctx = tlsconfig.hardened_context()
    assert ctx.minimum_version == TLS12
    for flag in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION, ssl.OP_CIPHER_SERVER_PREFERENCE,
                 ssl.OP_NO_TICKET):
        assert ctx.options & flag, flag
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12, "no TLS 1.2 suite"
    for c in tls12:
        assert c["kea"] == "kx-ecdhe" and c["aead"], c
    tls13 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"}
    assert tls13 <= {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}


def test_no_session_ticket_in_tls12(ecdsa_pair, ecdsa_ports):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ecdsa_pair[0])
    ctx.maximum_version = TLS12
    with socket.create_connection(("127.0.0.1", ecdsa_ports[0]), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.recv(2) == b"ok"
        assert s.compression() is None
        assert s.session is not None and not s.session.has_ticket


# -- refusing bad files --
def test_key_readable_by_others_is_refused(ecdsa_pair, tmp_path: Path):
    key = tmp_path / "k.pem"
    key.write_bytes(Path(ecdsa_pair[1]).read_bytes())
    for mode in (0o640, 0o604, 0o644, 0o610):
        os.chmod(key, mode)
        with pytest.raises(tlsconfig.TLSConfigError, match=r"must not be accessible by group or others \(chmod 600\)"):
            tlsconfig.server_context(ecdsa_pair[0], str(key))
    os.chmod(key, 0o400)
    tlsconfig.server_context(ecdsa_pair[0], str(key))


def test_symlinked_key_is_judged_by_its_target(ecdsa_pair, tmp_path: Path):
    link = tmp_path / "live.pem"
    link.symlink_to(ecdsa_pair[1])  # a symlink's own mode is 0777: it does not count
    tlsconfig.server_context(ecdsa_pair[0], str(link))


def test_mismatched_missing_and_half_configured(ecdsa_pair, rsa_pair, tmp_path: Path):
    with pytest.raises(tlsconfig.TLSConfigError, match="cannot use TLS certificate"):
        tlsconfig.server_context(ecdsa_pair[0], rsa_pair[1])
    with pytest.raises(tlsconfig.TLSConfigError, match="does not exist"):
        tlsconfig.server_context(str(tmp_path / "nope.crt"), ecdsa_pair[1])
    with pytest.raises(tlsconfig.TLSConfigError, match="does not exist"):
        tlsconfig.server_context(ecdsa_pair[0], str(tmp_path / "nope.key"))
    with pytest.raises(tlsconfig.TLSConfigError, match="both a certificate and a key"):
        tlsconfig.optional_server_context(ecdsa_pair[0], None)
    with pytest.raises(tlsconfig.TLSConfigError, match="both a certificate and a key"):
        tlsconfig.optional_server_context(None, ecdsa_pair[1])
    assert tlsconfig.optional_server_context(None, None) is None
    assert isinstance(tlsconfig.optional_server_context(*ecdsa_pair), ssl.SSLContext)


def test_encrypted_key_is_refused_without_prompting(ecdsa_pair, tmp_path: Path):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(ecdsa_pair[1]).read_bytes(), None)
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"secret")))
    os.chmod(encrypted, 0o600)
    with pytest.raises(tlsconfig.TLSConfigError, match="is encrypted; coffre needs it unencrypted"):
        tlsconfig.server_context(ecdsa_pair[0], str(encrypted))


def test_serve_refuses_to_start_with_an_exposed_key(ecdsa_pair, tmp_path: Path):
    """The real command: exit 2, a clear message, and nothing created."""
    key = tmp_path / "k.pem"
    key.write_bytes(Path(ecdsa_pair[1]).read_bytes())
    os.chmod(key, 0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")}
    proc = subprocess.run([sys.executable, "-m", "coffre", "serve", "--data-dir", str(tmp_path / "data"),
                           "--address", "127.0.0.1:0", "--tls-cert", ecdsa_pair[0], "--tls-key", str(key)],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 2, proc
    assert f"TLS key file {key} must not be accessible by group or others (chmod 600)" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_group_fallback_is_p256_only(ecdsa_pair, monkeypatch):
    """Where the group list cannot be set through OpenSSL, P-256 alone is allowed, not everything."""
    monkeypatch.setattr(tlsconfig, "_set_groups_list", lambda ctx, groups: False)
    with tls_listener(tlsconfig.server_context(*ecdsa_pair)) as port:
        assert handshake(port, ecdsa_pair[0], curve="prime256v1")[0] == "TLSv1.3"
        assert_refused_by_server(port, ecdsa_pair[0], curve="X25519", version=TLS13)
