"""Block Public Access: the bucket's (PutPublicAccessBlock...) and the tenant's, through the
S3 Control API shape (``/v20180820/configuration/publicAccessBlock`` with x-amz-account-id).

The settings in force on a bucket are each one on at either level (core/access.py).
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from coffre.core.access import BPA_FIELDS, PublicAccessBlock
from coffre.core.errors import AccessDenied, MalformedXML, NoSuchPublicAccessBlockConfiguration
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import read_verified
from coffre.s3.xml import Doc

_ROOT = "PublicAccessBlockConfiguration"


def parse_block(body: bytes) -> PublicAccessBlock:
    """The four settings of a PublicAccessBlockConfiguration; one left out is off (AWS)."""
    root = xml.parse(body)
    if root.tag != _ROOT:
        raise MalformedXML()
    values: list[bool] = []
    for name in BPA_FIELDS:
        text = xml.text(root, name)
        if text is None:
            values.append(False)
            continue
        v = text.strip().lower()
        if v not in ("true", "false"):
            raise MalformedXML()
        values.append(v == "true")
    return PublicAccessBlock(*values)


def block_doc(block: PublicAccessBlock, ns: bool = True) -> Doc:
    doc = Doc(_ROOT, ns=ns)
    for name, value in zip(BPA_FIELDS, block.values(), strict=True):
        doc.leaf(name, value)
    return doc.close(_ROOT)


@operation("PutPublicAccessBlock")
async def put_public_access_block(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    block = parse_block(await read_verified(ctx, missing=None))
    settings = ctx.coffre.access.bucket_access(bucket)
    await ctx.coffre.access.set_bucket_access(bucket, replace(settings, block=block))
    return ctx.empty()


@operation("GetPublicAccessBlock")
async def get_public_access_block(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    block = ctx.coffre.access.bucket_access(bucket).block
    if block is None:
        raise NoSuchPublicAccessBlockConfiguration(bucket=bucket.name)
    return ctx.xml(block_doc(block))


@operation("DeletePublicAccessBlock")
async def delete_public_access_block(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    settings = ctx.coffre.access.bucket_access(bucket)
    await ctx.coffre.access.set_bucket_access(bucket, replace(settings, block=None))
    return ctx.empty(204)


# -- the tenant's own (S3 Control) --
def _account(ctx: Ctx) -> str:
    """The tenant the request names (x-amz-account-id): the caller's own, nothing else."""
    account = ctx.headers.get("x-amz-account-id", "")
    if ctx.p.is_anonymous or account != ctx.p.tenant_id:
        raise AccessDenied()
    return account


@operation("PutAccountPublicAccessBlock")
async def put_account_public_access_block(ctx: Ctx) -> web.StreamResponse:
    account = _account(ctx)
    block = parse_block(await read_verified(ctx, missing=None))
    await ctx.coffre.access.set_tenant_block(account, block)
    return ctx.empty()


@operation("GetAccountPublicAccessBlock")
async def get_account_public_access_block(ctx: Ctx) -> web.StreamResponse:
    account = _account(ctx)
    block = await ctx.coffre.access.tenant_block(account)
    if block is None:
        raise NoSuchPublicAccessBlockConfiguration()
    return ctx.xml(block_doc(block))


@operation("DeleteAccountPublicAccessBlock")
async def delete_account_public_access_block(ctx: Ctx) -> web.StreamResponse:
    account = _account(ctx)
    await ctx.coffre.access.set_tenant_block(account, None)
    return ctx.empty(204)
