"""Segmented AES-256-GCM for blobs.

Layout of an encrypted blob::

    header (8 bytes): b"CFRB" | version (1) | log2(segment size) (1) | 2 zero bytes
    segment 0: ciphertext || 16-byte tag
    ...
    segment n-1 (the final one, 0..S bytes of plaintext): ciphertext || tag

Every blob has its own random 256-bit data key, so nonces never repeat: the
nonce of segment i is i as a 96-bit big-endian integer, which binds each
segment to its position. The associated data binds the blob id (a segment
cannot be moved to another blob) and whether the segment is the final one (a
truncated blob fails to authenticate instead of reading short). A range read
decrypts only the segments it overlaps.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"CFRB"
VERSION = 1
HEADER_SIZE = 8
TAG_SIZE = 16
DEFAULT_SEGMENT_SIZE = 64 * 1024


class IntegrityError(Exception):
    """A blob failed authentication: tampered, truncated, or the wrong key."""


def header(segment_size: int = DEFAULT_SEGMENT_SIZE) -> bytes:
    log2 = segment_size.bit_length() - 1
    if 1 << log2 != segment_size or not 10 <= log2 <= 24:
        raise ValueError("segment size must be a power of two between 1 KiB and 16 MiB")
    return MAGIC + struct.pack(">BBH", VERSION, log2, 0)


def parse_header(data: bytes) -> int:
    """Return the segment size declared by a blob header."""
    if len(data) < HEADER_SIZE or data[:4] != MAGIC:
        raise IntegrityError("not a coffre blob")
    version, log2, _ = struct.unpack(">BBH", data[4:8])
    log2 = int(log2)
    if version != VERSION or not 10 <= log2 <= 24:
        raise IntegrityError("unsupported blob format")
    return 1 << log2


def segment_count(size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    return max(1, -(-size // segment_size))


def encrypted_size(size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    return HEADER_SIZE + size + TAG_SIZE * segment_count(size, segment_size)


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _aad(blob_id: bytes, final: bool) -> bytes:
    return blob_id + (b"\x01" if final else b"\x00")


class SegmentEncryptor:
    """Feed plaintext in any pieces; get ciphertext for whole segments as they complete.

    The last segment is held back until ``finish`` because only then is it known
    to be the final one.
    """

    __slots__ = ("_aead", "_blob_id", "_seg", "_buf", "_index", "_started", "_in", "_out")

    def __init__(self, key: bytes, blob_id: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self._aead = AESGCM(key)
        self._blob_id = blob_id.encode()
        self._seg = segment_size
        self._buf = bytearray()
        self._index = 0
        self._started = False
        self._in = bytearray()  # seal(): the batch gathered, reused
        self._out = bytearray()  # seal(): its ciphertext, reused

    def _head(self, out: list[bytes]) -> None:
        if not self._started:
            out.append(header(self._seg))
            self._started = True

    def update(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        out: list[bytes] = []
        self._head(out)
        seg = self._seg
        buf = self._buf
        if not buf and len(data) > seg:
            # Fast path: encrypt straight from the caller's buffer.
            mv = memoryview(data)
            n = (len(mv) - 1) // seg  # keep at least one byte back
            aad = _aad(self._blob_id, False)
            enc = self._aead.encrypt
            for i in range(n):
                out.append(enc(_nonce(self._index), mv[i * seg:(i + 1) * seg], aad))
                self._index += 1
            buf += mv[n * seg:]
            return out
        buf += data
        if len(buf) > seg:
            aad = _aad(self._blob_id, False)
            n = (len(buf) - 1) // seg
            mv = memoryview(buf)
            for i in range(n):
                out.append(self._aead.encrypt(_nonce(self._index), mv[i * seg:(i + 1) * seg], aad))
                self._index += 1
            rest = bytes(mv[n * seg:])
            mv.release()
            self._buf = bytearray(rest)
        return out

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        self._head(out)
        out.append(self._aead.encrypt(_nonce(self._index), bytes(self._buf), _aad(self._blob_id, True)))
        self._buf = bytearray()
        self._index += 1
        return out

    def seal(self, chunks: Sequence[bytes | bytearray | memoryview], final: bool) -> memoryview:
        """Encrypt ``chunks`` into one contiguous buffer: the same bytes as ``update`` then
        (when ``final``) ``finish`` would return, without a list of segments to join.

        The pieces are gathered once, together with what an earlier call held back, and every
        segment is sealed straight into the output (``encrypt_into``). Both buffers belong to
        this encryptor and are reused: the view returned is valid until the next call (the
        caller writes it out at once), and a stream of batches faults in no fresh pages.
        """
        carry = self._buf
        if not carry and len(chunks) == 1:
            data: bytes | bytearray | memoryview = chunks[0]
        else:
            need = len(carry) + sum(len(c) for c in chunks)
            if len(self._in) < need:
                self._in = bytearray(need)
            data = memoryview(self._in)[:need]
            o = 0
            for c in (carry, *chunks):
                data[o:o + len(c)] = c
                o += len(c)
        mv = memoryview(data)
        seg = self._seg
        stride = seg + TAG_SIZE
        total = len(mv)
        n = (total - 1) // seg if total else 0  # whole segments that are surely not the final one
        head = 0 if self._started else HEADER_SIZE
        rest = total - n * seg
        size = head + n * stride + (rest + TAG_SIZE if final else 0)
        if len(self._out) < size:
            self._out = bytearray(size)
        om = memoryview(self._out)[:size]
        if head:
            om[:HEADER_SIZE] = header(seg)
            self._started = True
        enc = self._aead.encrypt_into
        aad = _aad(self._blob_id, False)
        o = head
        index = self._index
        for i in range(n):
            enc(_nonce(index), mv[i * seg:(i + 1) * seg], aad, om[o:o + stride])
            index += 1
            o += stride
        if final:
            enc(_nonce(index), mv[n * seg:], _aad(self._blob_id, True), om[o:])
            index += 1
            self._buf = bytearray()
        else:
            self._buf = bytearray(mv[n * seg:])
        self._index = index
        return om


class SegmentDecryptor:
    """Decrypt whole segments of one blob by index."""

    __slots__ = ("_aead", "_blob_id", "seg", "size", "count")

    def __init__(self, key: bytes, blob_id: str, size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self._aead = AESGCM(key)
        self._blob_id = blob_id.encode()
        self.seg = segment_size
        self.size = size
        self.count = segment_count(size, segment_size)

    def ciphertext_span(self, first: int, last: int) -> tuple[int, int]:
        """Byte offset and length, in the blob, of segments first..last inclusive."""
        stride = self.seg + TAG_SIZE
        start = HEADER_SIZE + first * stride
        end = HEADER_SIZE + min(self.size + TAG_SIZE * self.count, (last + 1) * stride)
        return start, end - start

    def segments_for(self, offset: int, length: int) -> tuple[int, int]:
        """Indices of the first and last segments covering plaintext [offset, offset+length)."""
        if length <= 0:
            return 0, 0
        return offset // self.seg, (offset + length - 1) // self.seg

    def decrypt(self, first: int, data: bytes | bytearray | memoryview) -> bytearray:
        """Decrypt consecutive whole segments starting at index ``first``.

        The plaintext of every segment is written straight into one output buffer
        (``decrypt_into``): no per-segment bytes to join. Nothing of it is returned
        unless every segment authenticated.

        Data that runs past the final segment is refused: a blob extended after
        its final segment is as corrupt as a truncated one.
        """
        stride = self.seg + TAG_SIZE
        mv = memoryview(data)
        size = len(mv)
        nseg = -(-size // stride)
        out = bytearray(max(0, size - TAG_SIZE * nseg))
        om = memoryview(out)
        dec = self._aead.decrypt_into
        index = first
        pos = 0
        o = 0
        try:
            while pos < size:
                if index >= self.count:
                    raise IntegrityError(f"data past the final segment ({self.count - 1})")
                clen = min(stride, size - pos)
                if clen < TAG_SIZE:
                    raise IntegrityError(f"segment {index} is shorter than its tag")
                plen = clen - TAG_SIZE
                dec(_nonce(index), mv[pos:pos + clen], _aad(self._blob_id, index == self.count - 1),
                    om[o:o + plen])
                index += 1
                pos += clen
                o += plen
        except IntegrityError:
            raise
        except Exception as e:  # cryptography raises InvalidTag
            raise IntegrityError(f"segment {index} failed authentication") from e
        finally:
            om.release()
            mv.release()
        return out

    def decrypt_span(self, first: int, last: int, data: bytes | bytearray | memoryview) -> bytearray:
        """Decrypt segments first..last inclusive, which ``data`` must hold exactly.

        The length check is what catches a blob cut at a segment boundary: the
        segments left before the cut still authenticate on their own, only the
        missing bytes betray the loss.
        """
        _, length = self.ciphertext_span(first, last)
        if len(data) != length:
            raise IntegrityError(f"segments {first}..{last}: expected {length} bytes, found {len(data)}")
        return self.decrypt(first, data)
