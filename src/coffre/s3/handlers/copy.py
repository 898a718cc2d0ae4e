"""CopyObject: PUT with x-amz-copy-source (UploadPartCopy lives with multipart)."""

from __future__ import annotations

from aiohttp import web

from coffre.core import checksums
from coffre.core.objects import CopyRequest
from coffre.meta.records import NULL_VERSION
from coffre.s3 import authz
from coffre.s3.context import Ctx, operation
from coffre.s3.copysource import parse_copy_source
from coffre.s3.handlers import encryption
from coffre.s3.handlers.objects import committed, write_meta
from coffre.s3.xml import Doc, iso8601


@operation("CopyObject")
async def copy_object(ctx: Ctx) -> web.StreamResponse:
    src = parse_copy_source(ctx)
    h = ctx.headers
    req = CopyRequest(
        directive=h.get("x-amz-metadata-directive", "COPY"),
        wm=await authz.owned(ctx, await encryption.with_sse(ctx, write_meta(ctx))),
        storage_class_given="x-amz-storage-class" in h,
        checksum_algorithm=checksums.normalize(h.get("x-amz-checksum-algorithm")),
        # Naming an encryption or a redirect is a change AWS accepts for a copy onto itself
        # (the usual way to rewrite an object in place).
        other_changes="x-amz-server-side-encryption" in h or "x-amz-website-redirect-location" in h
        or "x-amz-server-side-encryption-customer-algorithm" in h,
        if_match=h.get("if-match"), if_none_match=h.get("if-none-match"),
        tagging_directive=h.get("x-amz-tagging-directive", "COPY"), source_customer=encryption.source_customer(ctx))
    obj, source = await ctx.coffre.objects.copy_object(
        ctx.p, src.bucket, src.key, src.version_id, src.conditions, ctx.b, ctx.k, req)
    committed(ctx, "ObjectCreated:Copy", obj)
    rh = ctx.response_headers
    encryption.response_headers(ctx, obj.sse, obj.tenant_id)
    if source.version_id != NULL_VERSION:
        rh["x-amz-copy-source-version-id"] = source.version_id
    if obj.version_id != NULL_VERSION:
        rh["x-amz-version-id"] = obj.version_id
    doc = Doc("CopyObjectResult").leaf("ETag", obj.etag).leaf("LastModified", iso8601(obj.last_modified))
    if obj.checksum_algorithm and obj.checksum_value:
        doc.leaf("ChecksumType", obj.checksum_type or "FULL_OBJECT")
        doc.leaf("Checksum" + obj.checksum_algorithm, obj.checksum_value)
    doc.close("CopyObjectResult")
    return ctx.xml(doc)
