"""The record format: canonical JSON lines, each committing to the one before it.

A record is a JSON object written on one line in canonical form (keys sorted, no spaces,
UTF-8). Its ``content`` digest is the hex SHA-256 of the canonical form without ``hash``,
``seq`` and ``prev``; its ``hash`` is the hex SHA-256 of the canonical form of
``{"content", "prev", "seq"}``. ``prev`` is the ``hash`` of the record before it, so changing,
removing or reordering any record breaks the chain from that point, and a record can be shown
as its content digest alone (to someone who may not see it) without breaking the chain. Checkpoint and retention records also carry
``sig``, an Ed25519 signature over the canonical form without ``hash`` and ``sig``; as that
form contains ``prev``, one signature vouches for the whole chain up to it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

Record = dict[str, Any]

GENESIS = "0" * 64  # the ``prev`` of the very first record of a deployment
SEGMENT_PREFIX = "audit-"
SEGMENT_SUFFIX = ".jsonl"
KEY_FILE = "signing.key"
PUB_FILE = "signing.pub"

# Record types.
SEGMENT = "segment"  # first line of every segment file
REQUEST = "request"
CHECKPOINT = "checkpoint"
RETENTION = "retention"
LOST = "lost"  # records that could not be written (counted, so the gap itself is on record)
SIGNED = frozenset({CHECKPOINT, RETENTION})


# One encoder for every record (json.dumps with options builds a new one per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(record: Record) -> bytes:
    return _CANONICAL.encode(record).encode("utf-8")


# The fields of a record that place it in the chain; everything else is its content.
_LINK_FIELDS = ("hash", "seq", "prev")


def content_digest(record: Record) -> str:
    """The hex SHA-256 of a record's content: the canonical form without ``hash``, ``seq``, ``prev``.

    A tenant's export shows another tenant's record as this digest alone (export.py): the
    chain still verifies through it, and the record's ``nonce`` (128 random bits in every
    request record) makes it impossible to confirm a guess of the record's fields from it.
    """
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k not in _LINK_FIELDS})).hexdigest()


def _plain(value: str) -> bool:
    """Whether JSON writes the string as is, between quotes (ASCII letters and digits: a hex digest)."""
    return value.isascii() and value.isalnum()


def link(seq: object, prev: object, content: str) -> str:
    """A record's ``hash``: its position, the hash before it and its content digest, together.

    The hashed bytes are the canonical form of ``{"content", "prev", "seq"}``; when the three
    are what the writer puts there (an int and two hex digests) that form is spelled out
    directly, byte for byte what ``canonical`` gives (a test compares them), without an encoder
    per record. Anything else (a tampered record being verified) goes through ``canonical``.
    """
    if type(seq) is int and isinstance(prev, str) and _plain(prev) and _plain(content):
        return hashlib.sha256(b'{"content":"%s","prev":"%s","seq":%d}'
                              % (content.encode("ascii"), prev.encode("ascii"), seq)).hexdigest()
    return hashlib.sha256(canonical({"content": content, "prev": prev, "seq": seq})).hexdigest()


def chained_line(content: bytes, seq: int, prev: str, digest: bytes | None = None) -> tuple[str, bytes]:
    """The ``hash`` and the line of a record whose content is ``content`` (its canonical form,
    without ``hash``, ``seq`` and ``prev``), placed at ``seq`` after ``prev``.

    The line is that canonical content with the three link fields appended, in one pass and
    one encoding per record: readers parse lines as JSON and recompute both digests from the
    parsed record (verify, exports), so the link fields' place on the line is free, and with
    them last the content digest is the SHA-256 of the bytes the line starts with.
    ``digest``: that digest (hex, ASCII) when the caller computed it already (AuditLog.prepare).
    """
    if content[:1] != b"{" or content[-1:] != b"}" or len(content) <= 2:
        raise ValueError("a record's content is a non-empty JSON object")
    if digest is None:
        digest = hashlib.sha256(content).hexdigest().encode("ascii")
    if type(seq) is int and _plain(prev):  # always, but for a log whose last hash was tampered with
        p = prev.encode("ascii")
        h = hashlib.sha256(b'{"content":"%s","prev":"%s","seq":%d}' % (digest, p, seq)).hexdigest()
        return h, b'%s,"hash":"%s","prev":"%s","seq":%d}\n' % (content[:-1], h.encode("ascii"), p, seq)
    h = link(seq, prev, digest.decode("ascii"))
    return h, content[:-1] + b"," + canonical({"hash": h, "prev": prev, "seq": seq})[1:] + b"\n"


# Records written since tenant exports exist carry ``"hv": 2``: their ``hash`` links a content
# digest (so a record can be shown as that digest alone). Records without it were written by an
# earlier coffre, whose ``hash`` is the SHA-256 of the canonical form without ``hash``; they keep
# verifying after an upgrade, and exports never start before the last of them.
HASH_VERSION = 2


def linked(record: Record) -> bool:
    """Whether a record's hash links its content digest (can be redacted to it in an export)."""
    return record.get("hv") == HASH_VERSION


def digest(record: Record) -> str:
    """The ``hash`` a record must carry (its ``seq`` and ``prev`` are part of what it commits to)."""
    if not linked(record):
        return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()
    return link(record.get("seq"), record.get("prev"), content_digest(record))


def nonce() -> str:
    """128 random bits for a request record: its content digest reveals nothing guessable."""
    return os.urandom(16).hex()


def nonces(n: int) -> list[str]:
    """``n`` nonces from one read of the system's random source (one syscall per batch)."""
    raw = os.urandom(16 * n).hex()
    return [raw[i:i + 32] for i in range(0, 32 * n, 32)]


def signed_bytes(record: Record) -> bytes:
    return canonical({k: v for k, v in record.items() if k not in ("hash", "sig")})


def utc(ts: float) -> str:
    """``2026-11-30T13:01:02.345Z``: UTC, to the millisecond (truncated)."""
    us = round(ts * 1_000_000)
    second, us = divmod(us, 1_000_000)
    return f"{_utc_second(second)}.{us // 1000:03d}Z"


@functools.lru_cache(maxsize=64)  # one request record per request: the same second, over and over
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def segment_name(ts: float, index: int) -> str:
    return f"{SEGMENT_PREFIX}{datetime.fromtimestamp(ts, UTC):%Y%m%d}-{index:04d}{SEGMENT_SUFFIX}"


def segment_index(name: str) -> int | None:
    """The index of a segment file name, None for any other file."""
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    parts = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)].split("-")
    if len(parts) != 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[1])


def list_segments(directory: str) -> list[str]:
    """Segment file names in chain order (by index: a clock set back never reorders them)."""
    found = [(i, n) for n in os.listdir(directory) if (i := segment_index(n)) is not None]
    return [n for _, n in sorted(found)]


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """The deployment's audit signing key (Ed25519)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def sign(self, record: Record) -> str:
        return self._private.sign(signed_bytes(record)).hex()

    @classmethod
    def load(cls, directory: str) -> Signer:
        """Read ``signing.key`` only (FileNotFoundError when there is none yet): for a process
        that reads the log another one writes (a secondary worker's exports)."""
        path = os.path.join(directory, KEY_FILE)
        with open(path, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(key)

    @classmethod
    def load_or_create(cls, directory: str) -> Signer:
        """Read ``signing.key``, creating it (mode 0600) and ``signing.pub`` on first start."""
        path = os.path.join(directory, KEY_FILE)
        try:
            with open(path, "rb") as fh:
                key = serialization.load_pem_private_key(fh.read(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path} is not an Ed25519 private key")
        except FileNotFoundError:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            # O_EXCL: two processes starting at once never overwrite each other's key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
        signer = cls(key)
        pub_path = os.path.join(directory, PUB_FILE)
        # The public half is always re-exported, so auditors can be handed a current copy.
        pub = signer.public.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        try:
            with open(pub_path, "rb") as fh:
                current = fh.read()
        except FileNotFoundError:
            current = b""
        if current != pub:
            tmp = pub_path + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(pub)
            # Public, but the data directory stays private to the server's user like all the rest:
            # operators hand out a copy.
            os.chmod(tmp, 0o600)
            os.replace(tmp, pub_path)
        return signer


def load_public_key(path: str) -> Ed25519PublicKey:
    with open(path, "rb") as fh:
        key = serialization.load_pem_public_key(fh.read())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def signature_ok(public: Ed25519PublicKey, record: Record) -> bool:
    sig = record.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        public.verify(bytes.fromhex(sig), signed_bytes(record))
    except (InvalidSignature, ValueError):
        return False
    return True
