"""Bucket policies: PutBucketPolicy, GetBucketPolicy, DeleteBucketPolicy, GetBucketPolicyStatus.

The policy document is kept as sent (GetBucketPolicy returns it byte for byte, as S3 does)
once the policy engine validated it for this bucket.
"""

from __future__ import annotations

from aiohttp import web

from coffre.core.errors import MalformedPolicy, NoSuchBucketPolicy
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import read_verified
from coffre.s3.xml import Doc

# AWS's limit on a bucket policy; the engine enforces it too, this bounds what is read.
MAX_POLICY_BYTES = 20 * 1024


@operation("PutBucketPolicy")
async def put_bucket_policy(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    length = ctx.payload_length()
    if length is not None and length > MAX_POLICY_BYTES:
        raise MalformedPolicy("Policy exceeds the maximum allowed document size.")
    body = await read_verified(ctx, missing=None)  # Content-MD5 optional; checked when sent
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedPolicy("Policies must be valid JSON and the first byte must be '{'") from e
    await ctx.coffre.access.put_bucket_policy(bucket, text)
    return ctx.empty(204)


@operation("GetBucketPolicy")
async def get_bucket_policy(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    if bucket.policy is None:
        raise NoSuchBucketPolicy(bucket=bucket.name)
    return web.Response(body=bucket.policy.encode("utf-8"), content_type="application/json",
                        headers=ctx.response_headers)


@operation("DeleteBucketPolicy")
async def delete_bucket_policy(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    await ctx.coffre.access.delete_bucket_policy(bucket)
    return ctx.empty(204)


@operation("GetBucketPolicyStatus")
async def get_bucket_policy_status(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    public = ctx.coffre.access.policy_is_public(bucket)
    doc = Doc("PolicyStatus").leaf("IsPublic", public).close("PolicyStatus")
    return ctx.xml(doc)
