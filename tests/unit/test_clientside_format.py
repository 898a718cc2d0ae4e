"""The client-side encryption format (coffre.crypto.clientside, docs/client-side-encryption.md):
layout arithmetic, and every kind of damage detected."""

from __future__ import annotations

import hashlib
import os
import stat
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coffre.crypto import clientside as cse

S = 4096  # small segments keep the cases small; the format allows 4 KiB .. 16 MiB


def encrypt(key: cse.UserKey, data: bytes, seg: int = S) -> bytes:
    enc = cse.new_object(key, len(data), seg)
    out = [enc.header.to_bytes()]
    for i in range(enc.header.segments):
        out.append(enc.encrypt_segment(i, data[i * seg:(i + 1) * seg]))
    return b"".join(out)


def decrypt(key: cse.UserKey, blob: bytes) -> bytes:
    dec = cse.open_object(key, blob[:cse.HEADER_SIZE])
    h = dec.header
    out, pos = [], cse.HEADER_SIZE
    for i in range(h.segments):
        n = h.segment_plaintext_size(i) + cse.TAG_SIZE
        out.append(dec.decrypt_segment(i, blob[pos:pos + n]))
        pos += n
    if pos != len(blob):
        raise cse.AuthenticationFailed("the end of the object")
    return b"".join(out)


@pytest.fixture
def key() -> cse.UserKey:
    return cse.UserKey(os.urandom(32))


@pytest.mark.parametrize("size", [0, 1, S - 1, S, S + 1, 3 * S, 3 * S + 17])
def test_round_trip_and_size(key, size):
    data = os.urandom(size)
    blob = encrypt(key, data)
    assert len(blob) == cse.ciphertext_size(size, S) == cse.HEADER_SIZE + size + 16 * max(1, -(-size // S))
    assert decrypt(key, blob) == data


def test_header_layout_is_the_documented_one(key):
    enc = cse.new_object(key, 123456, 1 << 16)
    raw = enc.header.to_bytes()
    assert len(raw) == cse.HEADER_SIZE == 108
    magic, version, alg, log2, reserved, size = struct.unpack(">8sBBBBQ", raw[:20])
    assert (magic, version, alg, log2, reserved, size) == (b"\x89CFRCSE\n", 1, 1, 16, 0, 123456)
    assert raw[32:48] == key.key_id
    # the wrapped key opens with the documented derivation and associated data
    assert len(raw[60:]) == 48


def test_segment_nonce_and_aad_are_the_documented_ones(key):
    enc = cse.new_object(key, S + 10, S)
    h = enc.header
    seg1 = enc.encrypt_segment(1, b"x" * 10)
    dec = cse.open_object(key, h.to_bytes())
    data_key = dec._aead  # the same AEAD object the spec describes; check nonce/AAD independently:
    nonce = (int.from_bytes(h.file_nonce, "big") ^ 1).to_bytes(12, "big")
    aad = hashlib.sha256(h.to_bytes()).digest() + struct.pack(">QB", 1, 1)
    assert data_key.decrypt(nonce, seg1, aad) == b"x" * 10
    with pytest.raises(Exception):
        data_key.decrypt(nonce, seg1, hashlib.sha256(h.to_bytes()).digest() + struct.pack(">QB", 1, 0))


def test_plaintext_range_maps_to_whole_segments(key):
    h = cse.new_object(key, 10 * S + 5, S).header
    assert h.ciphertext_range(0, 0) == (108, 108 + S + 16 - 1)
    assert h.ciphertext_range(S - 1, S) == (108, 108 + 2 * (S + 16) - 1)
    assert h.ciphertext_range(S, 2 * S - 1) == (108 + S + 16, 108 + 2 * (S + 16) - 1)
    last = h.ciphertext_range(10 * S, 10 * S + 4)
    assert last == (108 + 10 * (S + 16), h.object_size - 1)
    with pytest.raises(ValueError):
        h.ciphertext_range(0, 10 * S + 5)


def test_wrong_key(key):
    blob = encrypt(key, b"secret")
    with pytest.raises(cse.WrongKey, match="the key does not open this object"):
        cse.open_object(cse.UserKey(os.urandom(32)), blob)


@pytest.mark.parametrize("offset", [8, 9, 10, 12, 19, 20, 40, 50, 70, 107])
def test_any_header_byte_changed_is_detected(key, offset):
    blob = bytearray(encrypt(key, os.urandom(3 * S)))
    blob[offset] ^= 0x01
    with pytest.raises(cse.CseError):
        decrypt(key, bytes(blob))


def test_tampered_byte_names_its_segment(key):
    blob = bytearray(encrypt(key, os.urandom(3 * S)))
    blob[cse.HEADER_SIZE + 2 * (S + 16) + 5] ^= 0x80
    with pytest.raises(cse.AuthenticationFailed, match="authentication failed at segment 2"):
        decrypt(key, bytes(blob))


def test_truncation_at_a_segment_boundary_is_detected(key):
    data = os.urandom(3 * S)
    blob = encrypt(key, data)
    dec = cse.open_object(key, blob[:cse.HEADER_SIZE])
    # dropping the last segment: segment 1 was not written as final, so even a reader that
    # ignored the size in the header could not accept it as the end
    with pytest.raises(cse.AuthenticationFailed):
        decrypt(key, blob[:cse.HEADER_SIZE + 2 * (S + 16)])
    assert dec.header.segments == 3


def test_segment_swap_is_detected(key):
    blob = encrypt(key, os.urandom(3 * S))
    a = cse.HEADER_SIZE
    seg0, seg1 = blob[a:a + S + 16], blob[a + S + 16:a + 2 * (S + 16)]
    swapped = blob[:a] + seg1 + seg0 + blob[a + 2 * (S + 16):]
    with pytest.raises(cse.AuthenticationFailed, match="segment 0"):
        decrypt(key, swapped)


def test_splicing_between_objects_with_the_same_key_is_detected(key):
    one, two = encrypt(key, os.urandom(2 * S)), encrypt(key, os.urandom(2 * S))
    a = cse.HEADER_SIZE
    spliced = one[:a + S + 16] + two[a + S + 16:]
    with pytest.raises(cse.AuthenticationFailed, match="segment 1"):
        decrypt(key, spliced)


def test_a_header_of_another_object_does_not_open_this_one(key):
    one, two = encrypt(key, os.urandom(S)), encrypt(key, os.urandom(S))
    with pytest.raises(cse.AuthenticationFailed, match="segment 0"):
        decrypt(key, two[:cse.HEADER_SIZE] + one[cse.HEADER_SIZE:])


def test_final_flag_is_needed_even_with_a_forged_size(key):
    # An attacker without the key cannot make a header claim fewer segments (the wrap fails);
    # check the wrap authenticates the size field specifically.
    blob = bytearray(encrypt(key, os.urandom(3 * S)))
    blob[12:20] = struct.pack(">Q", 2 * S)
    with pytest.raises(cse.AuthenticationFailed, match="the header"):
        cse.open_object(key, bytes(blob[:cse.HEADER_SIZE]))


def test_not_encrypted_and_unsupported():
    key = cse.UserKey(os.urandom(32))
    with pytest.raises(cse.NotEncrypted):
        cse.open_object(key, b"hello world")
    with pytest.raises(cse.NotEncrypted):
        cse.open_object(key, b"")
    blob = bytearray(encrypt(key, b"x"))
    blob[8] = 2
    with pytest.raises(cse.UnsupportedFormat):
        cse.open_object(key, bytes(blob))
    with pytest.raises(cse.AuthenticationFailed):
        cse.open_object(key, bytes(blob[:50]).replace(b"\x02", b"\x01", 1))


def test_data_keys_and_nonces_are_fresh_per_object(key):
    a, b = cse.new_object(key, 10).header, cse.new_object(key, 10).header
    assert a.file_nonce != b.file_nonce and a.wrapped_key != b.wrapped_key
    assert a.key_id == b.key_id == key.key_id


def test_key_file(tmp_path):
    path = str(tmp_path / "k")
    cse.write_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.path.getsize(path) == 32
    k1 = cse.UserKey.from_file(path)
    assert cse.open_object(k1, encrypt(k1, b"z")[:cse.HEADER_SIZE])
    with pytest.raises(FileExistsError):
        cse.write_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        cse.UserKey.from_file(path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"short")
    os.chmod(bad, 0o600)
    with pytest.raises(ValueError, match="not a client-side encryption key file"):
        cse.UserKey.from_file(str(bad))
    # the key never shows in a repr
    assert open(path, "rb").read().hex() not in repr(k1)


def test_subkeys_are_not_the_key():
    material = os.urandom(32)
    k = cse.UserKey(material)
    assert material[:16] != k.key_id
    # The wrap key is not the raw key: a wrap made with the raw key does not open.
    enc = cse.new_object(k, 1)
    h = enc.header
    with pytest.raises(Exception):
        AESGCM(material).decrypt(h.wrap_nonce, h.wrapped_key, h.prefix())


def test_passphrase_objects():
    pp = cse.PassphraseKey("correct horse battery staple")
    blob = encrypt(pp, b"by passphrase" * 1000)
    h = cse.parse_header(blob)
    assert h.algorithm == 2 and h.key_id == pp.writing_key().key_field  # the field holds the salt
    # the documented derivation: scrypt(passphrase, salt, N=2^15, r=8, p=1) then the same subkeys
    material = hashlib.scrypt(b"correct horse battery staple", salt=h.key_id, n=1 << 15, r=8, p=1,
                              maxmem=64 * 1024 * 1024, dklen=32)
    data_key = cse.UserKey(material)._wrap.decrypt(h.wrap_nonce, h.wrapped_key, h.prefix())
    first = cse.Decryptor(h, data_key).decrypt_segment(0, blob[cse.HEADER_SIZE:cse.HEADER_SIZE + S + 16])
    assert first == (b"by passphrase" * 1000)[:S]
    # another instance (another salt for what it writes) reads it; a wrong passphrase does not
    assert decrypt(cse.PassphraseKey("correct horse battery staple"), blob) == b"by passphrase" * 1000
    with pytest.raises(cse.WrongKey, match="does not open this object"):
        decrypt(cse.PassphraseKey("wrong horse battery staple"), blob)
    # a key file does not open a passphrase object, nor the reverse, and says why
    with pytest.raises(cse.WrongKey, match="encrypted with a passphrase"):
        decrypt(cse.UserKey(os.urandom(32)), blob)
    with pytest.raises(cse.WrongKey, match="encrypted with a key file"):
        decrypt(pp, encrypt(cse.UserKey(os.urandom(32)), b"x"))
    # objects one source writes share its salt (one derivation), not their data keys
    other = encrypt(pp, b"y")
    assert cse.parse_header(other).key_id == h.key_id and cse.parse_header(other).wrapped_key != h.wrapped_key
    with pytest.raises(ValueError, match="at least 8"):
        cse.PassphraseKey("short")
    assert "horse" not in repr(pp)
