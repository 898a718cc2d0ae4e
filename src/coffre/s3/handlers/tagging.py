"""Tagging operations: Put/Get/DeleteObjectTagging and Put/Get/DeleteBucketTagging.

The rules (limits, characters, reserved keys) live in core.tagging; this module reads and
writes the ``<Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>`` document.
"""

from __future__ import annotations

from aiohttp import web

from coffre.core.errors import MalformedXML, MissingRequestBodyError
from coffre.meta.records import NULL_VERSION
from coffre.notify.events import Change
from coffre.s3 import authz, xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import MISSING_DIGEST, read_verified
from coffre.s3.xml import Doc


async def _read_document(ctx: Ctx, *, digest_required: bool) -> bytes:
    """The tagging document. AWS demands a digest on PutBucketTagging, not on PutObjectTagging;
    either way a digest that was sent must match before anything is parsed."""
    out = await read_verified(ctx, missing=MISSING_DIGEST if digest_required else None)
    if not out.strip():
        raise MissingRequestBodyError()
    return out


def parse_tagging(body: bytes) -> list[tuple[str, str]]:
    """(key, value) pairs of a Tagging document, in document order (duplicates kept for the rules)."""
    root = xml.parse(body)
    if root.tag != "Tagging":
        raise MalformedXML()
    tag_sets = [el for el in root if isinstance(el.tag, str)]
    if len(tag_sets) != 1 or tag_sets[0].tag != "TagSet":
        raise MalformedXML()
    pairs: list[tuple[str, str]] = []
    for tag in tag_sets[0]:
        if not isinstance(tag.tag, str):
            continue
        if tag.tag != "Tag":
            raise MalformedXML()
        fields = [el for el in tag if isinstance(el.tag, str)]
        names = sorted(el.tag for el in fields)
        if names != ["Key", "Value"]:
            raise MalformedXML()
        key = xml.text(tag, "Key") or ""
        value = xml.text(tag, "Value") or ""
        pairs.append((key, value))
    return pairs


def _tagging_doc(tags: dict[str, str]) -> Doc:
    doc = Doc("Tagging").open("TagSet")
    for key, value in tags.items():
        doc.open("Tag").leaf("Key", key).leaf("Value", value).close("Tag")
    return doc.close("TagSet").close("Tagging")


def version_header(ctx: Ctx, version_id: str) -> None:
    """x-amz-version-id on the answer about an object's version (none for the null version)."""
    if version_id != NULL_VERSION:
        ctx.response_headers["x-amz-version-id"] = version_id


@operation("GetObjectTagging")
async def get_object_tagging(ctx: Ctx) -> web.StreamResponse:
    obj = await ctx.coffre.tagging.get_object_tagging(ctx.p, ctx.b, ctx.k, ctx.query.get("versionId"))
    version_header(ctx, obj.version_id)
    return ctx.xml(_tagging_doc(obj.tags))


@operation("PutObjectTagging")
async def put_object_tagging(ctx: Ctx) -> web.StreamResponse:
    pairs = parse_tagging(await _read_document(ctx, digest_required=False))
    await authz.request_tags(ctx, pairs)
    version = await ctx.coffre.tagging.put_object_tagging(ctx.p, ctx.b, ctx.k, ctx.query.get("versionId"), pairs)
    version_header(ctx, version)
    ctx.changes.append(Change("ObjectTagging:Put", ctx.k, version_id=version if version != NULL_VERSION else None))
    return ctx.empty()


@operation("DeleteObjectTagging")
async def delete_object_tagging(ctx: Ctx) -> web.StreamResponse:
    version = await ctx.coffre.tagging.delete_object_tagging(ctx.p, ctx.b, ctx.k, ctx.query.get("versionId"))
    version_header(ctx, version)
    ctx.changes.append(Change("ObjectTagging:Delete", ctx.k, version_id=version if version != NULL_VERSION else None))
    return ctx.empty(204)


@operation("GetBucketTagging")
async def get_bucket_tagging(ctx: Ctx) -> web.StreamResponse:
    return ctx.xml(_tagging_doc(await ctx.coffre.tagging.get_bucket_tagging(ctx.p, ctx.b)))


@operation("PutBucketTagging")
async def put_bucket_tagging(ctx: Ctx) -> web.StreamResponse:
    # The bucket is checked first: a tag document for a bucket that is not there is NoSuchBucket.
    await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    pairs = parse_tagging(await _read_document(ctx, digest_required=True))
    await ctx.coffre.tagging.put_bucket_tagging(ctx.p, ctx.b, pairs)
    return ctx.empty(204)


@operation("DeleteBucketTagging")
async def delete_bucket_tagging(ctx: Ctx) -> web.StreamResponse:
    await ctx.coffre.tagging.delete_bucket_tagging(ctx.p, ctx.b)
    return ctx.empty(204)
