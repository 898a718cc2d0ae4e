"""The client-side encryption format of ``coffre cp`` / ``coffre sync`` (docs/client-side-encryption.md).

An object encrypted on the client is a fixed-size header followed by AES-256-GCM segments of a
fixed plaintext size. The server stores it as opaque bytes: it never sees the user's key nor the
per-object data key, so the operator cannot read it, whatever it holds.

Why this shape:

- A random 256-bit data key per object, wrapped (AES-256-GCM) by a key derived from the user's
  key: objects never share a data key, so segment nonces only have to be unique within one
  object, and changing the user's key would only mean re-wrapping 60 bytes per object.
- The wrap's associated data is every header byte before it, so any change to the header (the
  plaintext size, the segment size, the nonce...) makes the data key impossible to unwrap.
- Each segment's associated data binds the SHA-256 of the header (no splicing of segments between
  objects, even with the same key), the segment's index (no reordering) and whether it is the
  final one (no truncation at a segment boundary); the plaintext size in the header tells how
  many segments there are, so a reader knows the object's layout without reading it all, and a
  plaintext range maps to a ciphertext range that a ranged GET fetches alone.
- A key id (derived from the user's key, never the key itself) tells "wrong key" apart from
  "tampered header", which makes errors clear.
- A passphrase instead of a key file (algorithm 2) is stretched by scrypt with a salt kept in the
  header's key field, so the layout and every rule above stay the same.

Everything here is pure arithmetic on bytes: no I/O beyond reading a key file, no HTTP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
import stat
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"\x89CFRCSE\n"  # like PNG's: a high byte and a newline catch text-mode mangling
VERSION = 1
ALG_AES256GCM_KEYFILE = 1  # segments: AES-256-GCM; data key wrapped by AES-256-GCM under a key-file key
ALG_AES256GCM_PASSPHRASE = 2  # the same, the key derived from a passphrase by scrypt (salt in the header)
# scrypt cost: 2^15 x 8 x 128 bytes = 32 MiB and a fraction of a second per derivation; derived once
# per salt and per command (every object a command uploads shares its salt).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
MIN_PASSPHRASE = 8
TAG_SIZE = 16
KEY_SIZE = 32
NONCE_SIZE = 12
KEY_ID_SIZE = 16
DEFAULT_SEGMENT_SIZE = 64 * 1024
MIN_LOG2, MAX_LOG2 = 12, 24  # 4 KiB .. 16 MiB segments
MAX_PLAINTEXT_SIZE = 1 << 62

# magic(8) version(1) algorithm(1) log2 segment size(1) reserved(1) plaintext size(8)
# file nonce(12) key id(16) wrap nonce(12) | wrapped data key(32 + 16 tag)
_FIXED = struct.Struct(">8sBBBBQ12s16s12s")
WRAPPED_SIZE = KEY_SIZE + TAG_SIZE
HEADER_SIZE = _FIXED.size + WRAPPED_SIZE  # 108 bytes

_INFO_WRAP = b"coffre-cse/v1 wrap"
_INFO_KEY_ID = b"coffre-cse/v1 key id"
_INFO_DIGEST = b"coffre-cse/v1 plaintext digest"


class CseError(Exception):
    """An object cannot be opened with the format's guarantees."""


class NotEncrypted(CseError):
    """The bytes are not a client-side encrypted object (no magic)."""


class UnsupportedFormat(CseError):
    """A version, algorithm or segment size this reader does not know."""


class WrongKey(CseError):
    """The user's key is not the one the object was encrypted with."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("the key does not open this object" + (f" ({detail})" if detail else ""))


class AuthenticationFailed(CseError):
    """The header or a segment does not authenticate: tampered, truncated, reordered or spliced."""

    def __init__(self, where: str) -> None:
        super().__init__(f"authentication failed at {where}")
        self.where = where


def _hkdf(key: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


class UserKey:
    """The user's 256-bit key and the subkeys derived from it (one per purpose, never the key itself).

    A key is also a key *source* (see PassphraseKey): ``writing_key`` gives the key that encrypts
    new objects, ``reading_key`` the one that opens an object given its header's algorithm and key
    field (the key id for a key file, the scrypt salt for a passphrase)."""

    __slots__ = ("_wrap", "_digest", "key_id", "algorithm", "key_field")

    def __init__(self, material: bytes, algorithm: int = ALG_AES256GCM_KEYFILE,
                 key_field: bytes | None = None) -> None:
        if len(material) != KEY_SIZE:
            raise ValueError(f"a client-side encryption key is {KEY_SIZE} bytes, not {len(material)}")
        self._wrap = AESGCM(_hkdf(material, _INFO_WRAP))
        self._digest = _hkdf(material, _INFO_DIGEST)
        self.key_id = _hkdf(material, _INFO_KEY_ID, KEY_ID_SIZE)
        self.algorithm = algorithm
        # what the header's 16-byte key field holds for objects this key writes
        self.key_field = self.key_id if key_field is None else key_field

    def writing_key(self) -> UserKey:
        return self

    def reading_key(self, algorithm: int, key_field: bytes) -> UserKey:
        if algorithm != ALG_AES256GCM_KEYFILE:
            raise WrongKey("it was encrypted with a passphrase")
        if not hmac.compare_digest(key_field, self.key_id):
            raise WrongKey()
        return self

    def __repr__(self) -> str:  # never the key
        return f"UserKey(id={self.key_id.hex()})"

    @classmethod
    def from_file(cls, path: str) -> UserKey:
        """Read a key file made by ``coffre keygen``: exactly 32 bytes, readable by its owner only."""
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise PermissionError(f"the key file {path} is readable by others: chmod 600 {path}")
            data = os.read(fd, KEY_SIZE + 1)
        finally:
            os.close(fd)
        if len(data) != KEY_SIZE:
            raise ValueError(f"{path} is not a client-side encryption key file ({KEY_SIZE} bytes, "
                             "made by `coffre keygen`)")
        return cls(data)

    def digester(self) -> hmac.HMAC:
        """A keyed digest of a plaintext (HMAC-SHA256): stored beside an object so ``sync`` can tell
        whether a local file changed, without revealing a plain hash the server could test guesses
        against."""
        return hmac.new(self._digest, digestmod=hashlib.sha256)


class PassphraseKey:
    """A passphrase, stretched by scrypt with a random salt that the header carries.

    One command writes every object with one salt (one derivation); reading derives once per
    distinct salt met. Without a key id, a wrong passphrase and an altered header look alike."""

    __slots__ = ("_passphrase", "_writing_salt", "_derived")

    def __init__(self, passphrase: str) -> None:
        if len(passphrase) < MIN_PASSPHRASE:
            raise ValueError(f"a passphrase has at least {MIN_PASSPHRASE} characters")
        self._passphrase = passphrase.encode("utf-8")
        self._writing_salt = secrets.token_bytes(KEY_ID_SIZE)
        self._derived: dict[bytes, UserKey] = {}

    def __repr__(self) -> str:  # never the passphrase
        return "PassphraseKey()"

    @property
    def key_id(self) -> bytes:
        return self.writing_key().key_id

    def _derive(self, salt: bytes) -> UserKey:
        key = self._derived.get(salt)
        if key is None:
            material = Scrypt(salt=salt, length=KEY_SIZE, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(self._passphrase)
            key = self._derived[salt] = UserKey(material, ALG_AES256GCM_PASSPHRASE, salt)
        return key

    def writing_key(self) -> UserKey:
        return self._derive(self._writing_salt)

    def reading_key(self, algorithm: int, key_field: bytes) -> UserKey:
        if algorithm != ALG_AES256GCM_PASSPHRASE:
            raise WrongKey("it was encrypted with a key file")
        return self._derive(key_field)


KeySource = UserKey | PassphraseKey


def write_key_file(path: str) -> None:
    """Create a new key file of 32 random bytes, mode 0600; never overwrite one (that would lose data)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_SIZE))
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_count(plaintext_size: int, segment_size: int) -> int:
    """An empty object still has one (empty, final) segment, so its end is authenticated too."""
    return max(1, -(-plaintext_size // segment_size))


def ciphertext_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    return HEADER_SIZE + plaintext_size + TAG_SIZE * segment_count(plaintext_size, segment_size)


@dataclasses.dataclass(frozen=True)
class Header:
    version: int
    algorithm: int
    segment_size: int
    plaintext_size: int
    file_nonce: bytes
    key_id: bytes
    wrap_nonce: bytes
    wrapped_key: bytes

    def prefix(self) -> bytes:
        """Every header byte before the wrapped key: the wrap's associated data."""
        return _FIXED.pack(MAGIC, self.version, self.algorithm, self.segment_size.bit_length() - 1, 0,
                           self.plaintext_size, self.file_nonce, self.key_id, self.wrap_nonce)

    def to_bytes(self) -> bytes:
        return self.prefix() + self.wrapped_key

    @property
    def segments(self) -> int:
        return segment_count(self.plaintext_size, self.segment_size)

    @property
    def object_size(self) -> int:
        return ciphertext_size(self.plaintext_size, self.segment_size)

    def segment_plaintext_size(self, index: int) -> int:
        if not 0 <= index < self.segments:
            raise IndexError(index)
        return min(self.segment_size, self.plaintext_size - index * self.segment_size)

    def segment_offset(self, index: int) -> int:
        """Where segment ``index`` starts in the object."""
        return HEADER_SIZE + index * (self.segment_size + TAG_SIZE)

    def ciphertext_range(self, first: int, last: int) -> tuple[int, int]:
        """The inclusive byte range of the object holding plaintext bytes ``first..last`` (inclusive)."""
        if not 0 <= first <= last < self.plaintext_size:
            raise ValueError("range outside the object")
        s0, s1 = first // self.segment_size, last // self.segment_size
        return self.segment_offset(s0), self.segment_offset(s1) + self.segment_plaintext_size(s1) + TAG_SIZE - 1


def parse_header(data: bytes) -> Header:
    """Read a header's fields; nothing is authenticated until ``open_object`` unwraps the data key."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise NotEncrypted("not a client-side encrypted object")
    if len(data) < HEADER_SIZE:
        raise AuthenticationFailed("the header (object too short)")
    magic, version, algorithm, log2, reserved, size, file_nonce, key_id, wrap_nonce = _FIXED.unpack_from(data)
    if version != VERSION or algorithm not in (ALG_AES256GCM_KEYFILE, ALG_AES256GCM_PASSPHRASE):
        raise UnsupportedFormat(f"unsupported client-side encryption format (version {version}, "
                                f"algorithm {algorithm})")
    if not MIN_LOG2 <= log2 <= MAX_LOG2 or reserved != 0 or size > MAX_PLAINTEXT_SIZE:
        raise AuthenticationFailed("the header")
    return Header(version, algorithm, 1 << log2, size, file_nonce, key_id, wrap_nonce,
                  bytes(data[_FIXED.size:HEADER_SIZE]))


class _Segments:
    __slots__ = ("header", "_aead", "_header_hash", "_nonce")

    def __init__(self, header: Header, data_key: bytes) -> None:
        self.header = header
        self._aead = AESGCM(data_key)
        self._header_hash = hashlib.sha256(header.to_bytes()).digest()
        self._nonce = int.from_bytes(header.file_nonce, "big")

    def _params(self, index: int) -> tuple[bytes, bytes]:
        # nonce = file nonce XOR index (96 bits): unique per segment of this object's data key.
        nonce = (self._nonce ^ index).to_bytes(NONCE_SIZE, "big")
        final = index == self.header.segments - 1
        return nonce, self._header_hash + struct.pack(">QB", index, 1 if final else 0)


class Encryptor(_Segments):
    """Encrypts the segments of one object; they may be produced in any order (multipart parts)."""

    __slots__ = ()

    def encrypt_segment(self, index: int, plaintext: bytes) -> bytes:
        if len(plaintext) != self.header.segment_plaintext_size(index):
            raise ValueError(f"segment {index} must hold {self.header.segment_plaintext_size(index)} bytes, "
                             f"not {len(plaintext)} (did the file change while it was read?)")
        nonce, aad = self._params(index)
        return self._aead.encrypt(nonce, plaintext, aad)


class Decryptor(_Segments):
    __slots__ = ()

    def decrypt_segment(self, index: int, ciphertext: bytes) -> bytes:
        if not 0 <= index < self.header.segments or \
                len(ciphertext) != self.header.segment_plaintext_size(index) + TAG_SIZE:
            raise AuthenticationFailed(f"segment {index}")
        nonce, aad = self._params(index)
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise AuthenticationFailed(f"segment {index}") from None


def new_object(source: KeySource, plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Encryptor:
    """A fresh data key and nonces for one object of ``plaintext_size`` bytes."""
    log2 = segment_size.bit_length() - 1
    if 1 << log2 != segment_size or not MIN_LOG2 <= log2 <= MAX_LOG2:
        raise ValueError("the segment size must be a power of two between 4 KiB and 16 MiB")
    if not 0 <= plaintext_size <= MAX_PLAINTEXT_SIZE:
        raise ValueError("object too large")
    key = source.writing_key()
    data_key = secrets.token_bytes(KEY_SIZE)
    unwrapped = Header(VERSION, key.algorithm, segment_size, plaintext_size,
                       secrets.token_bytes(NONCE_SIZE), key.key_field, secrets.token_bytes(NONCE_SIZE), b"")
    wrapped = key._wrap.encrypt(unwrapped.wrap_nonce, data_key, unwrapped.prefix())
    return Encryptor(dataclasses.replace(unwrapped, wrapped_key=wrapped), data_key)


def open_object(source: KeySource, header_bytes: bytes) -> Decryptor:
    """Authenticate a header with the user's key and return the object's decryptor."""
    header = parse_header(header_bytes)
    key = source.reading_key(header.algorithm, header.key_id)
    try:
        data_key = key._wrap.decrypt(header.wrap_nonce, header.wrapped_key, header.prefix())
    except InvalidTag:
        if header.algorithm == ALG_AES256GCM_PASSPHRASE:
            raise WrongKey("or its header was altered") from None
        raise AuthenticationFailed("the header") from None
    return Decryptor(header, data_key)
