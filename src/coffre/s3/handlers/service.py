"""Service-level operations: ListBuckets."""

from __future__ import annotations

from aiohttp import web

from coffre.s3.context import Ctx, operation
from coffre.s3.xml import Doc, iso8601


@operation("ListBuckets")
async def list_buckets(ctx: Ctx) -> web.StreamResponse:
    buckets = await ctx.coffre.buckets.list_buckets(ctx.p)
    prefix = ctx.query.get("prefix", "")
    doc = Doc("ListAllMyBucketsResult")
    doc.open("Owner").leaf("ID", ctx.p.canonical_id).leaf("DisplayName", ctx.p.display_name).close("Owner")
    doc.open("Buckets")
    for b in buckets:
        if prefix and not b.name.startswith(prefix):
            continue
        doc.open("Bucket").leaf("Name", b.name).leaf("CreationDate", iso8601(b.created_at))
        doc.leaf("BucketRegion", b.region).close("Bucket")
    doc.close("Buckets")
    if prefix:
        doc.leaf("Prefix", prefix)
    doc.close("ListAllMyBucketsResult")
    return ctx.xml(doc)
