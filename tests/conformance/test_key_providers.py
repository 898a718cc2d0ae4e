"""Every KeyProvider passes the same suite: a local key file, a PKCS#11 HSM (SoftHSM2, a token
initialised here), a KMIP server (PyKMIP's, started here over mutual TLS) and a tenant's own key
service (the reference `coffre keyserver`, started here over TLS).

To add a provider: write a factory returning a ``Case`` (how to open the provider again on the
same backing store, and how to make its backing service unavailable) and add it to ``CASES``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coffre.crypto.keys import HEADER_SIZE, FileKeyProvider, KeyError_, KeyProvider, KeyVersionError, new_key
from tests.keys.services import KmipServer, kmip_server, softhsm_token, softhsm_token_dir
from tests.keyservice import KeyService


@dataclass
class Case:
    open: Callable[[], KeyProvider]  # a provider on the backing store of this case (a new instance each call)
    kill: Callable[[], None] | None  # make the backing service unavailable; None: nothing remote to lose
    secrets: tuple[str, ...] = ()  # strings that must never appear in repr, str or logs (PINs...)
    key_files: tuple[Path, ...] = ()  # where key bytes lie, if readable by the test
    # Whether coffre creates and retires the provider's key versions. A tenant's own key service
    # (hold your own key) rotates its keys itself: coffre refuses to (KeyVersionError).
    rotates: bool = True


def file_case(tmp: Path) -> Case:
    path = tmp / "root.key"
    FileKeyProvider(str(path))
    return Case(open=lambda: FileKeyProvider(str(path)), kill=None, key_files=(path,))


def pkcs11_case(tmp: Path) -> Case:
    from coffre.crypto.pkcs11 import Pkcs11KeyProvider

    hsm = softhsm_token(tmp / "hsm")

    def kill() -> None:
        # The token's files disappear: the HSM lost it.
        d = softhsm_token_dir(hsm)
        for p in sorted(d.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        d.rmdir()

    return Case(open=lambda: Pkcs11KeyProvider(hsm.module, hsm.token_label, hsm.pin, "conformance"),
                kill=kill, secrets=(hsm.pin,))


def kmip_case(tmp: Path) -> Case:
    from coffre.crypto.kmip import KmipKeyProvider

    server: KmipServer = kmip_server(tmp / "kmip")
    _servers.append(server)
    return Case(open=lambda: KmipKeyProvider(server.host, server.port, server.cert, server.key, server.ca,
                                             "conformance"), kill=server.stop)


def external_case(tmp: Path) -> Case:
    """A tenant's own key service: the reference one, `coffre keyserver`, over TLS with a CA file."""
    from coffre.crypto.external import ExternalKeyConfig, ExternalKeyProvider

    (tmp / "keyservice").mkdir()
    ks = KeyService(tmp / "keyservice", tls=True)
    ks.keys("create-key", "conformance")
    ks.start()
    _servers.append(ks)
    config = ExternalKeyConfig(ks.url, "conformance", ca_pem=Path(str(ks.cert)).read_text())
    return Case(open=lambda: ExternalKeyProvider(config, ks.token), kill=ks.stop, secrets=(ks.token,),
                rotates=False)


_servers: list[KmipServer | KeyService] = []
CASES: dict[str, Callable[[Path], Case]] = {"file": file_case, "pkcs11": pkcs11_case, "kmip": kmip_case,
                                            "external": external_case}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    c = CASES[request.param](tmp_path)
    try:
        yield c
    finally:
        while _servers:
            _servers.pop().stop()


@pytest.fixture
def provider(case: Case) -> Iterator[KeyProvider]:
    p = case.open()
    yield p
    p.close()


def test_round_trip(provider: KeyProvider) -> None:
    for plaintext in (new_key(), b"", b"s" * 40, os.urandom(1000)):
        wrapped = provider.wrap(plaintext, b"tenant|abc")
        assert plaintext not in wrapped or not plaintext
        assert provider.unwrap(wrapped, b"tenant|abc") == plaintext
    # Two wraps of the same key differ (fresh nonces), and both open.
    k = new_key()
    a, b = provider.wrap(k, b"c"), provider.wrap(k, b"c")
    assert a != b and provider.unwrap(a, b"c") == provider.unwrap(b, b"c") == k


def test_another_instance_on_the_same_store_opens_it(case: Case, provider: KeyProvider) -> None:
    k = new_key()
    wrapped = provider.wrap(k, b"ctx")
    again = case.open()
    try:
        assert again.unwrap(wrapped, b"ctx") == k
    finally:
        again.close()


def test_wrong_context_fails(provider: KeyProvider) -> None:
    wrapped = provider.wrap(new_key(), b"tenant|111")
    for ctx in (b"tenant|222", b"tenant|11", b"", b"tenant|111 "):
        with pytest.raises(KeyError_):
            provider.unwrap(wrapped, ctx)


def test_tampered_material_fails(provider: KeyProvider) -> None:
    wrapped = provider.wrap(new_key(), b"ctx")
    for i in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[i] ^= 0x01
        with pytest.raises(KeyError_):
            provider.unwrap(bytes(tampered), b"ctx")
    for malformed in (b"", wrapped[:HEADER_SIZE], wrapped[:-1], wrapped + b"\0", b"\x03" + wrapped[1:]):
        with pytest.raises(KeyError_):
            provider.unwrap(malformed, b"ctx")


def test_check_healthy(provider: KeyProvider) -> None:
    provider.check()


def test_check_unhealthy(case: Case, provider: KeyProvider) -> None:
    if case.kill is None:  # the key file is read once, at start: nothing can take it away afterwards
        return
    provider.check()
    wrapped = provider.wrap(new_key(), b"ctx")
    case.kill()
    with pytest.raises(KeyError_):
        provider.check()
    with pytest.raises(KeyError_):
        provider.unwrap(wrapped, b"ctx")


def test_rotation_keeps_old_material_readable_and_retire_ends_it(case: Case, provider: KeyProvider) -> None:
    assert provider.versions() == (1,)
    if not case.rotates:
        with pytest.raises(KeyVersionError):
            provider.rotate()
        with pytest.raises(KeyVersionError):
            provider.retire(1)
        assert provider.versions() == (1,)
        return
    old_key = new_key()
    old = provider.wrap(old_key, b"ctx")
    assert old[:HEADER_SIZE] == b"\x02\0\0\0\x01"
    assert provider.rotate() == 2
    assert provider.versions() == (1, 2) and provider.active_version() == 2
    new = provider.wrap(old_key, b"ctx")
    assert new[:HEADER_SIZE] == b"\x02\0\0\0\x02"
    assert provider.unwrap(old, b"ctx") == old_key  # the old version still opens what it wrapped
    assert provider.unwrap(new, b"ctx") == old_key
    # Relabelling a blob to another version fails: the header is authenticated.
    with pytest.raises(KeyError_):
        provider.unwrap(b"\x02\0\0\0\x02" + old[HEADER_SIZE:], b"ctx")
    # Another instance (another gateway) sees the new version.
    other = case.open()
    try:
        assert other.versions() == (1, 2)
        assert other.unwrap(new, b"ctx") == old_key
    finally:
        other.close()
    with pytest.raises(KeyVersionError):
        provider.retire(2)  # the active version
    with pytest.raises(KeyVersionError):
        provider.retire(7)  # no such version
    provider.retire(1)
    assert provider.versions() == (2,)
    with pytest.raises(KeyError_):
        provider.unwrap(old, b"ctx")
    assert provider.unwrap(new, b"ctx") == old_key
    # Retired for good: a new instance neither holds nor recreates it.
    again = case.open()
    try:
        assert again.versions() == (2,)
        with pytest.raises(KeyError_):
            again.unwrap(old, b"ctx")
        again.check()
    finally:
        again.close()


def test_thread_safety(provider: KeyProvider) -> None:
    errors: list[BaseException] = []
    done = [0]
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(25):
                k = new_key()
                ctx = b"t%d|%d" % (n, i)
                assert provider.unwrap(provider.wrap(k, ctx), ctx) == k
                with lock:
                    done[0] += 1
        except BaseException as e:  # noqa: BLE001 - collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert done[0] == 200


def test_no_key_material_in_repr_str_or_logs(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = case.open()
    try:
        probe = new_key()
        wrapped = p.wrap(probe, b"ctx")
        p.unwrap(wrapped, b"ctx")
        if case.rotates:
            p.rotate()
        with pytest.raises(KeyError_):
            p.unwrap(wrapped, b"other")
        shown = repr(p) + str(p) + caplog.text
        forbidden = [probe.hex(), probe.hex().upper(), repr(probe), *case.secrets]
        for f in case.key_files:
            key = f.read_bytes()
            forbidden += [key.hex(), repr(key)]
        for s in forbidden:
            assert s not in shown
    finally:
        p.close()
