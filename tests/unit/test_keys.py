"""The root key file and key wrapping."""

from __future__ import annotations

import os
import stat

import pytest

from coffre.crypto.keys import KEY_SIZE, FileKeyProvider, KeyError_, new_key, unwrap_with, wrap_with


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_creates_a_key_file_readable_by_the_owner_only(tmp_path) -> None:
    path = str(tmp_path / "sub" / "root.key")
    old = os.umask(0)  # even a permissive umask must not widen the file
    try:
        FileKeyProvider(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert os.path.getsize(path) == KEY_SIZE
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["root.key"]  # no temporary file left


def test_the_same_file_gives_the_same_key(tmp_path) -> None:
    path = str(tmp_path / "root.key")
    a = FileKeyProvider(path)
    wrapped = a.wrap(b"data key", b"ctx")
    b = FileKeyProvider(path)
    assert b.unwrap(wrapped, b"ctx") == b"data key"
    # A different key file cannot unwrap it.
    other = FileKeyProvider(str(tmp_path / "other.key"))
    with pytest.raises(KeyError_):
        other.unwrap(wrapped, b"ctx")


@pytest.mark.parametrize("perm", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o004])
def test_refuses_a_key_file_others_can_read(tmp_path, perm: int) -> None:
    path = str(tmp_path / "root.key")
    FileKeyProvider(path)
    os.chmod(path, perm)
    with pytest.raises(PermissionError):
        FileKeyProvider(path)


@pytest.mark.parametrize("length", [0, 16, KEY_SIZE - 1, KEY_SIZE + 1, 64])
def test_refuses_a_key_of_the_wrong_length(tmp_path, length: int) -> None:
    path = tmp_path / "root.key"
    path.write_bytes(os.urandom(length))
    os.chmod(path, 0o600)
    with pytest.raises(ValueError):
        FileKeyProvider(str(path))


def test_refuses_a_symlinked_key_file(tmp_path) -> None:
    real = tmp_path / "real.key"
    FileKeyProvider(str(real))
    link = tmp_path / "root.key"
    link.symlink_to(real)
    with pytest.raises(OSError):
        FileKeyProvider(str(link))


def test_wrap_unwrap_and_context_binding(tmp_path) -> None:
    kp = FileKeyProvider(str(tmp_path / "root.key"))
    kp.check()
    secret = new_key()
    wrapped = kp.wrap(secret, b"tenant|111")
    assert secret not in wrapped
    assert kp.unwrap(wrapped, b"tenant|111") == secret
    assert kp.wrap(secret, b"tenant|111") != wrapped  # a fresh nonce every time
    with pytest.raises(KeyError_):
        kp.unwrap(wrapped, b"tenant|222")
    tampered = bytearray(wrapped)
    tampered[-1] ^= 1
    with pytest.raises(KeyError_):
        kp.unwrap(bytes(tampered), b"tenant|111")
    for malformed in (b"", wrapped[:20], b"\x03" + wrapped[1:], b"\x02\0\0\0\0" + wrapped[5:]):
        with pytest.raises(KeyError_):
            kp.unwrap(malformed, b"tenant|111")


def test_root_wrapping_is_separate_from_plain_wrapping(tmp_path) -> None:
    # The provider prefixes its contexts, so a blob or tenant context can never be
    # confused with one the root key uses directly.
    path = tmp_path / "root.key"
    kp = FileKeyProvider(str(path))
    root = path.read_bytes()
    wrapped = wrap_with(root, b"x", b"ctx")
    with pytest.raises(KeyError_):
        kp.unwrap(wrapped, b"ctx")
    assert unwrap_with(root, kp.wrap(b"x", b"ctx"), b"root|ctx") == b"x"


def test_wrap_with_wrong_kek_fails() -> None:
    wrapped = wrap_with(new_key(), b"secret", b"c")
    with pytest.raises(KeyError_):
        unwrap_with(new_key(), wrapped, b"c")


def test_repr_hides_the_key(tmp_path) -> None:
    path = tmp_path / "root.key"
    kp = FileKeyProvider(str(path))
    key = path.read_bytes()
    text = repr(kp) + str(kp)
    assert str(path) in text
    for form in (key.hex(), repr(key), key.hex().upper()):
        assert form not in text
