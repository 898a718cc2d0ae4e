"""Service-level operations: ListBuckets."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from coffre.core.errors import InvalidArgument
from coffre.s3.context import Ctx, operation
from coffre.s3.xml import Doc, iso8601

_TOKEN_TAG = b"b1:"


def encode_bucket_token(name: str) -> str:
    return base64.urlsafe_b64encode(_TOKEN_TAG + name.encode()).decode()


def decode_bucket_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode())
        if not raw.startswith(_TOKEN_TAG):
            raise ValueError("not a bucket listing token")
        return raw[len(_TOKEN_TAG):].decode()
    except (binascii.Error, ValueError) as e:
        raise InvalidArgument("The continuation token provided is incorrect",
                              name="continuation-token") from e


@operation("ListBuckets")
async def list_buckets(ctx: Ctx) -> web.StreamResponse:
    prefix = ctx.query.get("prefix", "")
    region = ctx.query.get("bucket-region") or None
    token = ctx.query.get("continuation-token")
    raw_max = ctx.query.get("max-buckets")
    limit: int | None = None
    if raw_max is not None:
        try:
            limit = int(raw_max)
        except ValueError as e:
            raise InvalidArgument("Provided max-buckets not an integer or within integer range",
                                  name="max-buckets") from e
    after = decode_bucket_token(token) if token else ""
    page = await ctx.coffre.buckets.list_buckets(ctx.p, prefix=prefix, after=after, region=region, limit=limit)
    doc = Doc("ListAllMyBucketsResult")
    doc.open("Buckets")
    for b in page.buckets:
        doc.open("Bucket").leaf("Name", b.name).leaf("CreationDate", iso8601(b.created_at))
        doc.leaf("BucketRegion", b.region).close("Bucket")
    doc.close("Buckets")
    doc.open("Owner").leaf("ID", ctx.p.canonical_id).leaf("DisplayName", ctx.p.display_name).close("Owner")
    if page.continuation is not None:
        doc.leaf("ContinuationToken", encode_bucket_token(page.continuation))
    if prefix:
        doc.leaf("Prefix", prefix)
    doc.close("ListAllMyBucketsResult")
    return ctx.xml(doc)
