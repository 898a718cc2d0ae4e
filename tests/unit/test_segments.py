"""Segmented AES-256-GCM: round trips, range reads, and every way a blob can be damaged."""

from __future__ import annotations

import os
import random

import pytest

from coffre.crypto.segments import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    IntegrityError,
    SegmentDecryptor,
    SegmentEncryptor,
    encrypted_size,
    header,
    parse_header,
    segment_count,
)

SEG = 1024  # the smallest segment size keeps multi-segment cases cheap
STRIDE = SEG + TAG_SIZE
BLOB = "0123456789abcdef0123456789abcdef"
KEY = bytes(range(32))


def encrypt(data: bytes, *, key: bytes = KEY, blob_id: str = BLOB, seg: int = SEG,
            pieces: list[int] | None = None) -> bytes:
    """Encrypt ``data`` fed in pieces of the given sizes (all at once by default)."""
    enc = SegmentEncryptor(key, blob_id, seg)
    out: list[bytes] = []
    pos = 0
    for n in pieces or [len(data)]:
        out += enc.update(data[pos:pos + n])
        pos += n
    out += enc.update(data[pos:])
    out += enc.finish()
    return b"".join(out)


def decrypt_all(blob: bytes, size: int, *, key: bytes = KEY, blob_id: str = BLOB, seg: int = SEG) -> bytes:
    """Decrypt a whole blob the way a reader does: by the size metadata records."""
    assert parse_header(blob[:HEADER_SIZE]) == seg
    dec = SegmentDecryptor(key, blob_id, size, seg)
    off, length = dec.ciphertext_span(0, dec.count - 1)
    return dec.decrypt_span(0, dec.count - 1, blob[off:off + length])


def read_range(blob: bytes, size: int, start: int, end: int, seg: int = SEG) -> tuple[bytes, int]:
    """Plaintext [start, end) and how many ciphertext bytes had to be decrypted for it."""
    dec = SegmentDecryptor(KEY, BLOB, size, seg)
    first, last = dec.segments_for(start, end - start)
    off, length = dec.ciphertext_span(first, last)
    plain = dec.decrypt_span(first, last, blob[off:off + length])
    return plain[start - first * seg:end - first * seg], length


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 17, 10 * SEG - 5])
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt(data)
    assert len(blob) == encrypted_size(size, SEG)
    assert decrypt_all(blob, size) == data
    if size >= 16:  # a few random bytes can turn up in any ciphertext by chance
        assert data not in blob


def test_round_trip_default_segment_size_and_random_sizes() -> None:
    rng = random.Random(7)
    for _ in range(5):
        size = rng.randrange(0, 4 * DEFAULT_SEGMENT_SIZE)
        data = rng.randbytes(size)
        blob = encrypt(data, seg=DEFAULT_SEGMENT_SIZE)
        assert len(blob) == encrypted_size(size)
        assert decrypt_all(blob, size, seg=DEFAULT_SEGMENT_SIZE) == data


def test_ciphertext_does_not_depend_on_how_the_plaintext_was_fed() -> None:
    data = os.urandom(5 * SEG + 300)
    whole = encrypt(data)
    rng = random.Random(1)
    pieces = [rng.randrange(0, 2 * SEG) for _ in range(8)]
    assert encrypt(data, pieces=pieces) == whole  # nonces are positional, so output is deterministic
    assert encrypt(data, pieces=[1] * 50 + [SEG] * 3) == whole


def test_every_blob_key_gives_a_different_ciphertext() -> None:
    data = b"same plaintext" * 100
    assert encrypt(data) != encrypt(data, key=os.urandom(32))
    assert encrypt(data) != encrypt(data, blob_id="f" * 32)


@pytest.mark.parametrize(("start", "end"), [
    (0, 1), (0, SEG), (SEG - 1, SEG + 1), (SEG, 2 * SEG), (2 * SEG + 5, 2 * SEG + 6),
    (3 * SEG, 5 * SEG + 100), (5 * SEG, 5 * SEG + 100), (0, 5 * SEG + 100),
])
def test_range_reads_decrypt_only_the_segments_they_overlap(start: int, end: int) -> None:
    size = 5 * SEG + 100
    data = os.urandom(size)
    blob = encrypt(data)
    plain, decrypted = read_range(blob, size, start, end)
    assert plain == data[start:end]
    needed = (end - 1) // SEG - start // SEG + 1
    # Whole segments of the span, the final one possibly short.
    assert needed * STRIDE >= decrypted > (needed - 1) * STRIDE


def test_a_range_read_ignores_damage_outside_its_segments() -> None:
    size = 4 * SEG
    data = os.urandom(size)
    blob = bytearray(encrypt(data))
    blob[HEADER_SIZE + 3 * STRIDE + 5] ^= 0xFF  # damage the last segment only
    plain, _ = read_range(bytes(blob), size, 0, 2 * SEG)
    assert plain == data[:2 * SEG]
    with pytest.raises(IntegrityError):
        read_range(bytes(blob), size, 3 * SEG, 3 * SEG + 1)


@pytest.mark.parametrize("where", [
    HEADER_SIZE,  # first ciphertext byte
    HEADER_SIZE + STRIDE + SEG // 2,  # middle of segment 1
    HEADER_SIZE + STRIDE - 1,  # tag of segment 0
    HEADER_SIZE + 3 * STRIDE + 10,  # the final (short) segment
])
def test_a_flipped_bit_anywhere_is_detected(where: int) -> None:
    size = 3 * SEG + 50
    blob = bytearray(encrypt(os.urandom(size)))
    blob[where] ^= 0x01
    with pytest.raises(IntegrityError):
        decrypt_all(bytes(blob), size)


def test_swapped_segments_are_detected() -> None:
    size = 3 * SEG + 50
    blob = encrypt(os.urandom(size))
    s0 = blob[HEADER_SIZE:HEADER_SIZE + STRIDE]
    s1 = blob[HEADER_SIZE + STRIDE:HEADER_SIZE + 2 * STRIDE]
    swapped = blob[:HEADER_SIZE] + s1 + s0 + blob[HEADER_SIZE + 2 * STRIDE:]
    assert len(swapped) == len(blob)
    with pytest.raises(IntegrityError):
        decrypt_all(swapped, size)


def test_a_segment_cannot_be_replayed_at_another_position() -> None:
    size = 3 * SEG
    blob = encrypt(os.urandom(size))
    s0 = blob[HEADER_SIZE:HEADER_SIZE + STRIDE]
    replayed = blob[:HEADER_SIZE + STRIDE] + s0 + blob[HEADER_SIZE + 2 * STRIDE:]
    with pytest.raises(IntegrityError):
        decrypt_all(replayed, size)


@pytest.mark.parametrize("cut", [1, TAG_SIZE, 50 + TAG_SIZE, 50 + TAG_SIZE + 1, 50 + TAG_SIZE + STRIDE])
def test_truncation_is_detected(cut: int) -> None:
    # 3 whole segments and a final one of 50 bytes; cut removes bytes from the end,
    # from part of the final tag up to the whole final segment and one more.
    size = 3 * SEG + 50
    blob = encrypt(os.urandom(size))
    with pytest.raises(IntegrityError):
        decrypt_all(blob[:-cut], size)


def test_a_blob_cut_at_a_segment_boundary_does_not_pass_as_complete() -> None:
    # Segments before the cut authenticate on their own, and a reader that trusted
    # them would return a short body: the size from metadata is what exposes it.
    size = 3 * SEG
    blob = encrypt(os.urandom(size))
    cut = blob[:HEADER_SIZE + 2 * STRIDE]
    dec = SegmentDecryptor(KEY, BLOB, size, SEG)
    with pytest.raises(IntegrityError):
        dec.decrypt_span(0, 2, cut[HEADER_SIZE:])


def test_final_segment_must_be_the_last() -> None:
    # A blob whose final segment is dropped, read as if it were one segment shorter,
    # fails: the new last segment was not sealed as the final one.
    size = 3 * SEG + 50
    data = os.urandom(size)
    blob = encrypt(data)
    shorter = blob[:HEADER_SIZE + 3 * STRIDE]
    with pytest.raises(IntegrityError):
        decrypt_all(shorter, 3 * SEG)


def test_extension_is_detected() -> None:
    size = 2 * SEG + 10
    blob = encrypt(os.urandom(size))
    dec = SegmentDecryptor(KEY, BLOB, size, SEG)
    off, length = dec.ciphertext_span(0, dec.count - 1)
    extra = blob[off:off + length] + blob[HEADER_SIZE:HEADER_SIZE + STRIDE]  # a segment appended
    with pytest.raises(IntegrityError):
        dec.decrypt(0, extra)
    with pytest.raises(IntegrityError):
        dec.decrypt_span(0, dec.count - 1, extra)
    # Nor can a reader be fooled about the size: a blob of 2 segments read as 3 fails,
    # because its real last segment was sealed as the final one.
    with pytest.raises(IntegrityError):
        decrypt_all(blob + os.urandom(STRIDE), size + SEG)


def test_wrong_blob_id_fails() -> None:
    size = 2 * SEG + 10
    blob = encrypt(os.urandom(size))
    with pytest.raises(IntegrityError):
        decrypt_all(blob, size, blob_id="f" * 32)


def test_wrong_key_fails() -> None:
    size = 100
    blob = encrypt(os.urandom(size))
    with pytest.raises(IntegrityError):
        decrypt_all(blob, size, key=os.urandom(32))


def test_empty_blob_is_authenticated() -> None:
    blob = encrypt(b"")
    assert len(blob) == HEADER_SIZE + TAG_SIZE
    assert decrypt_all(blob, 0) == b""
    with pytest.raises(IntegrityError):
        decrypt_all(blob[:HEADER_SIZE], 0)  # the empty final segment is missing
    # A non-empty blob cannot be passed off as empty.
    with pytest.raises(IntegrityError):
        decrypt_all(encrypt(b"x"), 0)


def test_header() -> None:
    assert parse_header(header(SEG)) == SEG
    assert parse_header(header()) == DEFAULT_SEGMENT_SIZE
    for bad in (b"", b"CFRB", b"XXXX\x01\x10\x00\x00", b"CFRB\x02\x10\x00\x00", b"CFRB\x01\x05\x00\x00"):
        with pytest.raises(IntegrityError):
            parse_header(bad)
    for bad_size in (1000, 512, 1 << 25):
        with pytest.raises(ValueError):
            header(bad_size)


def test_segment_arithmetic() -> None:
    assert segment_count(0, SEG) == 1  # an empty blob still has its (empty) final segment
    assert segment_count(SEG, SEG) == 1
    assert segment_count(SEG + 1, SEG) == 2
    assert encrypted_size(0, SEG) == HEADER_SIZE + TAG_SIZE
    dec = SegmentDecryptor(KEY, BLOB, 3 * SEG + 1, SEG)
    assert dec.count == 4
    assert dec.segments_for(0, 1) == (0, 0)
    assert dec.segments_for(SEG - 1, 2) == (0, 1)
    assert dec.ciphertext_span(3, 3) == (HEADER_SIZE + 3 * STRIDE, 1 + TAG_SIZE)
    assert dec.ciphertext_span(1, 2) == (HEADER_SIZE + STRIDE, 2 * STRIDE)
