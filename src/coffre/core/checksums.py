"""The checksums S3 clients send and ask for: CRC32, CRC32C, CRC64NVME, SHA1, SHA256.

Values travel base64-encoded, big-endian for CRCs. Multipart objects carry
either a COMPOSITE checksum (the checksum of the parts' binary checksums,
suffixed "-N") or, for CRCs, a FULL_OBJECT one (the parts' CRCs combined as
if computed over the whole object).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

from awscrt import checksums as _crt

from coffre.core.errors import InvalidRequest

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
CRCS = ("CRC32", "CRC32C", "CRC64NVME")
_SIZES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}
# Objects stored without a requested checksum get this one, as S3 does.
DEFAULT_ALGORITHM = "CRC64NVME"


def header_name(algorithm: str) -> str:
    return "x-amz-checksum-" + algorithm.lower()


def normalize(algorithm: str | None) -> str | None:
    if algorithm is None or algorithm == "":
        return None
    a = algorithm.upper()
    if a not in ALGORITHMS:
        raise InvalidRequest(f"Checksum algorithm {algorithm} is not supported.")
    return a


def validate_value(algorithm: str, value: str) -> bytes:
    """Decode a base64 checksum value; raise InvalidRequest when it cannot be one."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _SIZES[algorithm]:
        raise InvalidRequest(f"Value for x-amz-checksum-{algorithm.lower()} header is invalid.")
    return raw


class Checksum:
    """Incremental checksum over a stream."""

    __slots__ = ("algorithm", "_crc", "_hash", "_fn")

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._crc = 0
        self._hash = None
        if algorithm == "CRC32":
            self._fn = _crt.crc32
        elif algorithm == "CRC32C":
            self._fn = _crt.crc32c
        elif algorithm == "CRC64NVME":
            self._fn = _crt.crc64nvme
        else:
            self._fn = None
            self._hash = hashlib.sha1() if algorithm == "SHA1" else hashlib.sha256()  # noqa: S324 - a checksum the client asked for, not a security hash

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._fn is not None:
            self._crc = self._fn(data, self._crc)
        else:
            assert self._hash is not None
            self._hash.update(data)

    @property
    def crc(self) -> int:
        return self._crc

    def digest(self) -> bytes:
        if self._fn is not None:
            return self._crc.to_bytes(_SIZES[self.algorithm], "big")
        assert self._hash is not None
        return self._hash.digest()

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode()


def composite(algorithm: str, part_values: Sequence[str]) -> str:
    """COMPOSITE checksum of a multipart object from its parts' base64 checksums."""
    c = Checksum(algorithm)
    for v in part_values:
        c.update(base64.b64decode(v))
    return f"{c.b64()}-{len(part_values)}"


def combine_full_object(algorithm: str, parts: Sequence[tuple[str, int]]) -> str:
    """FULL_OBJECT CRC of a multipart object from (base64 part CRC, part size) pairs."""
    if algorithm not in CRCS:
        raise InvalidRequest(f"The FULL_OBJECT checksum type is not supported for {algorithm}.")
    combine = {"CRC32": _crt.combine_crc32, "CRC32C": _crt.combine_crc32c,
               "CRC64NVME": _crt.combine_crc64nvme}[algorithm]
    crc = 0
    first = True
    for value, size in parts:
        part_crc = int.from_bytes(base64.b64decode(value), "big")
        crc = part_crc if first else combine(crc, part_crc, size)
        first = False
    return base64.b64encode(crc.to_bytes(_SIZES[algorithm], "big")).decode()
