"""x-amz-copy-source and its preconditions, shared by CopyObject and UploadPartCopy."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from coffre.core.conditions import ReadConditions
from coffre.core.errors import InvalidArgument
from coffre.s3.context import Ctx


@dataclass(frozen=True, slots=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None
    conditions: ReadConditions


def parse_copy_source(ctx: Ctx) -> CopySource:
    """``/bucket/key[?versionId=v]`` or ``bucket/key``, percent-encoded (key may contain '?')."""
    raw = ctx.headers.get("x-amz-copy-source", "")
    path, version_id = raw, None
    # The versionId parameter is the only query S3 accepts here; a '?' elsewhere is part of the key
    # only when encoded, since clients encode the key.
    if "?" in raw:
        path, _, q = raw.partition("?")
        for part in q.split("&"):
            name, _, value = part.partition("=")
            if name == "versionId":
                version_id = unquote(value)
    decoded = unquote(path, errors="surrogateescape")
    if decoded.startswith("/"):
        decoded = decoded[1:]
    bucket, sep, key = decoded.partition("/")
    if not bucket or not sep or not key:
        raise InvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
                              name="x-amz-copy-source")
    h = ctx.headers
    conditions = ReadConditions(
        if_match=h.get("x-amz-copy-source-if-match"), if_none_match=h.get("x-amz-copy-source-if-none-match"),
        if_modified_since=h.get("x-amz-copy-source-if-modified-since"),
        if_unmodified_since=h.get("x-amz-copy-source-if-unmodified-since"))
    return CopySource(bucket=bucket, key=key, version_id=version_id, conditions=conditions)
