"""The hold-your-own-key client against services that misbehave: real sockets on 127.0.0.1 that
redirect, drip, flood or hang up. It must fail with KeyServiceUnavailable, follow nothing, wait
no longer than its timeout in total, and never show its token."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from coffre.crypto.external import (
    ExternalKeyConfig,
    ExternalKeyProvider,
    KeyServiceRefused,
    KeyServiceUnavailable,
)

TOKEN = "tok-" + "s" * 40


def serve(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    seen: list[bytes] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    seen.append(conn.recv(65536))
                    answer(conn)
                except OSError:
                    pass

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()


@pytest.fixture
def redirecting() -> Iterator[str]:
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(1)
    port = target.getsockname()[1]

    def answer(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{port}/v1/unwrap\r\n"
                     "Content-Length: 0\r\n\r\n".encode())

    gen = serve(answer)
    url = next(gen)
    target.settimeout(0.5)
    yield url
    # Nobody came to the place the redirect pointed at (the token would have gone with it).
    with pytest.raises(TimeoutError):
        target.accept()
    target.close()
    gen.close()


def provider(url: str, timeout: float = 1.0) -> ExternalKeyProvider:
    return ExternalKeyProvider(ExternalKeyConfig(url, "acme", timeout=timeout), TOKEN)


def test_a_redirect_is_never_followed(redirecting: str) -> None:
    with pytest.raises(KeyServiceUnavailable) as e:
        provider(redirecting).unwrap(b"\x02\0\0\0\x01" + b"x" * 40, b"ctx")
    assert TOKEN not in str(e.value)


def test_a_dripping_answer_is_cut_at_the_timeout() -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(40):
            conn.sendall(b" ")
            time.sleep(0.1)

    gen = serve(answer)
    url = next(gen)
    try:
        started = time.monotonic()
        with pytest.raises(KeyServiceUnavailable):
            provider(url, timeout=1.0).unwrap(b"\x02\0\0\0\x01" + b"x" * 40, b"ctx")
        # The whole call, not each read, is bounded (the drip would last 4 s).
        assert time.monotonic() - started < 3.5
    finally:
        gen.close()


def test_an_oversized_or_garbled_answer_is_unavailable() -> None:
    for body in (b"{" + b" " * 70_000 + b"}", b"not json", b"[1, 2]", b'{"plaintext": "%%%"}'):
        def answer(conn: socket.socket, body: bytes = body) -> None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

        gen = serve(answer)
        try:
            with pytest.raises(KeyServiceUnavailable):
                provider(next(gen)).unwrap(b"\x02\0\0\0\x01" + b"x" * 40, b"ctx")
        finally:
            gen.close()


def test_refusals_carry_the_protocol_code_only() -> None:
    def answer(conn: socket.socket) -> None:
        body = b'{"error": {"code": "KeyDisabled", "message": "secret internals here"}}'
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    gen = serve(answer)
    try:
        with pytest.raises(KeyServiceRefused) as e:
            provider(next(gen)).unwrap(b"\x02\0\0\0\x01" + b"x" * 40, b"ctx")
        assert e.value.reason == "KeyDisabled"
        assert "secret internals" not in str(e.value) and TOKEN not in str(e.value)
    finally:
        gen.close()


def test_a_closed_port_is_unavailable_and_nothing_shows_the_token() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = provider(f"http://127.0.0.1:{port}")
    with pytest.raises(KeyServiceUnavailable) as e:
        p.check()
    assert TOKEN not in str(e.value) + repr(p) + str(p) + repr(p.config)


def test_configuration_is_checked() -> None:
    for bad in (dict(url="http://keys.example.com"), dict(url="ftp://127.0.0.1"), dict(url="https://u:p@h/"),
                dict(url="https://h/?x=1"), dict(key_id="bad id"), dict(key_id=""),
                dict(client_cert_file="c.pem"), dict(timeout=0.0), dict(timeout=600.0)):
        args = {"url": "https://keys.example.com", "key_id": "acme", **bad}
        with pytest.raises(ValueError):
            ExternalKeyConfig(**args)  # type: ignore[arg-type]
    ExternalKeyConfig("http://127.0.0.1:9", "acme")  # plain HTTP on loopback only
    ExternalKeyConfig("http://[::1]:9", "a.b:c/d-e_f")
    with pytest.raises(ValueError):
        ExternalKeyProvider(ExternalKeyConfig("https://keys.example.com", "acme"), "short")
