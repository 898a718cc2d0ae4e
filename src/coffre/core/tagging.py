"""Object and bucket tags: the rules AWS applies to them, and the operations that set them.

A tag set is a dict (keys are unique by rule). Limits, as AWS enforces them:
- at most 10 tags per object, 50 per bucket (400 BadRequest beyond);
- a key of 1 to 128 characters, a value of 0 to 256, both matching
  ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`` (400 InvalidTag otherwise);
- keys starting with "aws:" (in any case) are reserved for AWS's own tags.

Lengths are counted as AWS's Java services count them, in UTF-16 code units: a character
outside the Basic Multilingual Plane (an astral letter such as "𝒜") counts twice.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from coffre.core.errors import InvalidArgument, InvalidTag, NoSuchBucket, NoSuchKey, NoSuchTagSet, TooManyTags
from coffre.core.identity import Principal
from coffre.meta.base import MetadataStore
from coffre.meta.errors import NotFound
from coffre.meta.records import ObjectRecord

if TYPE_CHECKING:
    # Types only: core.objects imports this module's rules to check the tags of a write.
    from coffre.core.buckets import BucketService
    from coffre.core.objects import ObjectService

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
BUCKET_CONFIG = "tagging"  # name of the bucket configuration document holding a bucket's tags

TAGGING_DIRECTIVES = ("COPY", "REPLACE")
HEADER = "x-amz-tagging"
BAD_HEADER = ("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters "
              "without tag name duplicates.")
DUPLICATE_KEY = "Cannot provide multiple Tags with the same key"
SYSTEM_TAG = "System tags cannot be added/updated by requester"
SYSTEM_TAG_CASE = ('Invalid Tag. Tags cannot start with "aws:"(case insensitive) unless they are System Tags '
                   'that start with "aws:"(case sensitive)')
INVALID_KEY = "The TagKey you have provided is invalid"
INVALID_VALUE = "The TagValue you have provided is invalid"

# Unicode categories of \p{L} (letters), \p{Z} (separators) and \p{N} (numbers).
_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Zs", "Zl", "Zp", "Nd", "Nl", "No"})
_PUNCTUATION = frozenset("_.:/=+-@")


def _length(text: str) -> int:
    """Length in UTF-16 code units (see the module docstring)."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def _allowed(text: str) -> bool:
    return all(c in _PUNCTUATION or unicodedata.category(c) in _CATEGORIES for c in text)


def check_tags(pairs: Iterable[tuple[str, str]], limit: int = MAX_OBJECT_TAGS) -> dict[str, str]:
    """Validate a tag list in the order given; return it as a dict.

    Each tag is checked in turn (a duplicate key, a reserved prefix, then the key and value
    themselves), and the count last, as AWS does.
    """
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key in tags:
            raise InvalidTag(DUPLICATE_KEY, tag_key=key)
        if key[:4].lower() == "aws:":
            raise InvalidTag(SYSTEM_TAG if key.startswith("aws:") else SYSTEM_TAG_CASE, tag_key=key)
        if not 1 <= _length(key) <= MAX_KEY_LENGTH or not _allowed(key):
            raise InvalidTag(INVALID_KEY, tag_key=key)
        if _length(value) > MAX_VALUE_LENGTH or not _allowed(value):
            raise InvalidTag(INVALID_VALUE, tag_key=key, tag_value=value)
        tags[key] = value
    if len(tags) > limit:
        if limit == MAX_BUCKET_TAGS:
            raise TooManyTags(f"Bucket tag count cannot be greater than {limit}")
        raise TooManyTags(f"Object tags cannot be greater than {limit}")
    return tags


def parse_header(value: str) -> list[tuple[str, str]]:
    """The tags of an ``x-amz-tagging`` header: URL query encoding ("k1=v1&k2=v2").

    "+" is a space, a tag without "=" has an empty value, empty pieces are skipped. An empty
    key, a duplicate key or bytes that are not UTF-8 make the whole header invalid.
    """
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for piece in value.split("&"):
        if not piece:
            continue
        raw_key, _, raw_value = piece.partition("=")
        try:
            key = _unquote(raw_key)
            val = _unquote(raw_value)
        except UnicodeDecodeError as e:
            raise InvalidArgument(BAD_HEADER, name=HEADER, value=value) from e
        if not key or key in seen:
            raise InvalidArgument(BAD_HEADER, name=HEADER, value=value)
        seen.add(key)
        pairs.append((key, val))
    return pairs


def _unquote(text: str) -> str:
    # The header value was decoded with surrogateescape: undo that before percent-decoding,
    # so raw non-UTF-8 bytes are refused like percent-encoded ones.
    raw = text.replace("+", " ").encode("utf-8", "surrogateescape")
    return unquote_to_bytes(raw).decode("utf-8")


def header_tags(value: str | None) -> dict[str, str]:
    """The validated object tags of an ``x-amz-tagging`` header (none when absent)."""
    if value is None:
        return {}
    return check_tags(parse_header(value), MAX_OBJECT_TAGS)


def copy_tags(directive: str, source: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """CopyObject's tags: the source's (COPY, the default) or the request's (REPLACE)."""
    if directive not in TAGGING_DIRECTIVES:
        raise InvalidArgument("Unknown tagging directive.", name="x-amz-tagging-directive", value=directive)
    return dict(source) if directive == "COPY" else dict(given)


class TaggingService:
    def __init__(self, meta: MetadataStore, objects: ObjectService, buckets: BucketService) -> None:
        self.meta = meta
        self.objects = objects
        self.buckets = buckets

    # -- objects --
    async def get_object_tagging(self, principal: Principal, bucket: str, key: str,
                                 version_id: str | None) -> ObjectRecord:
        """The object (or version) whose ``tags`` and ``version_id`` answer a GetObjectTagging."""
        return await self.objects.head_object(principal, bucket, key, version_id)

    async def put_object_tagging(self, principal: Principal, bucket: str, key: str, version_id: str | None,
                                 pairs: Iterable[tuple[str, str]]) -> str:
        """Replace the tags of an object (or version); returns the version id tagged."""
        tags = check_tags(pairs, MAX_OBJECT_TAGS)
        return await self._set(principal, bucket, key, version_id, tags)

    async def delete_object_tagging(self, principal: Principal, bucket: str, key: str,
                                    version_id: str | None) -> str:
        return await self._set(principal, bucket, key, version_id, {})

    async def _set(self, principal: Principal, bucket: str, key: str, version_id: str | None,
                   tags: dict[str, str]) -> str:
        # head_object checks access and the version id, and answers NoSuchKey / NoSuchVersion.
        obj = await self.objects.head_object(principal, bucket, key, version_id)
        try:
            return await self.meta.set_object_tags(obj.bucket, obj.key, version_id, tags)
        except NotFound as e:
            # Deleted between the two calls.
            raise NoSuchKey(key=key) from e

    # -- buckets --
    async def get_bucket_tagging(self, principal: Principal, bucket: str) -> dict[str, str]:
        b = await self.buckets.authorize(principal, bucket)
        doc = await self.meta.get_bucket_config(b.name, BUCKET_CONFIG)
        tags: dict[str, str] = json.loads(doc) if doc else {}
        if not tags:
            raise NoSuchTagSet(bucket=bucket)
        return tags

    async def put_bucket_tagging(self, principal: Principal, bucket: str,
                                 pairs: Iterable[tuple[str, str]]) -> None:
        b = await self.buckets.authorize(principal, bucket)
        tags = check_tags(pairs, MAX_BUCKET_TAGS)
        # An empty tag set leaves the bucket without tags (GetBucketTagging: NoSuchTagSet).
        await self._store_bucket(b.name, json.dumps(tags) if tags else None)

    async def delete_bucket_tagging(self, principal: Principal, bucket: str) -> None:
        b = await self.buckets.authorize(principal, bucket)
        await self._store_bucket(b.name, None)

    async def _store_bucket(self, bucket: str, document: str | None) -> None:
        try:
            await self.meta.put_bucket_config(bucket, BUCKET_CONFIG, document)
        except NotFound as e:
            raise NoSuchBucket(bucket=bucket) from e
