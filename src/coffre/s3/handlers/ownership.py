"""S3 Object Ownership: Put/Get/DeleteBucketOwnershipControls.

BucketOwnerEnforced disables ACLs (the bucket owner owns every object); BucketOwnerPreferred
and ObjectWriter keep them, and decide who owns an object another tenant writes.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from coffre.core import acl
from coffre.core.access import ALL_BLOCKED, BUCKET_OWNER_ENFORCED, OWNERSHIPS, BucketAccess
from coffre.core.errors import (
    AccessDenied,
    InvalidArgument,
    InvalidBucketAclWithObjectOwnership,
    MalformedXML,
    OwnershipControlsNotFoundError,
)
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import read_verified
from coffre.s3.xml import Doc


def parse_ownership(body: bytes) -> str:
    root = xml.parse(body)
    if root.tag != "OwnershipControls":
        raise MalformedXML()
    rules = root.findall("Rule")
    if len(rules) != 1:
        raise MalformedXML()
    value = (xml.text(rules[0], "ObjectOwnership") or "").strip()
    if value not in OWNERSHIPS:
        raise MalformedXML()
    return value


@operation("PutBucketOwnershipControls")
async def put_bucket_ownership_controls(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    ownership = parse_ownership(await read_verified(ctx, missing=None))
    access = ctx.coffre.access
    settings = access.bucket_access(bucket)
    new_acl = settings.acl
    if ownership == BUCKET_OWNER_ENFORCED and settings.acl is not None:
        # Disabling ACLs needs a bucket ACL that gives nothing to anyone but the owner (AWS).
        owner = await access.canonical_id(bucket.tenant_id)
        if not acl.only_owner(settings.acl, owner):
            raise InvalidBucketAclWithObjectOwnership(bucket=bucket.name)
        new_acl = None
    await access.set_bucket_access(bucket, replace(settings, ownership=ownership, acl=new_acl))
    return ctx.empty()


@operation("GetBucketOwnershipControls")
async def get_bucket_ownership_controls(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    ownership = ctx.coffre.access.bucket_access(bucket).ownership
    if ownership is None:
        raise OwnershipControlsNotFoundError(bucket=bucket.name)
    doc = Doc("OwnershipControls").open("Rule").leaf("ObjectOwnership", ownership).close("Rule")
    return ctx.xml(doc.close("OwnershipControls"))


@operation("DeleteBucketOwnershipControls")
async def delete_bucket_ownership_controls(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    settings = ctx.coffre.access.bucket_access(bucket)
    await ctx.coffre.access.set_bucket_access(bucket, replace(settings, ownership=None))
    return ctx.empty(204)


def new_bucket_access(ctx: Ctx) -> str | None:
    """The access document of a bucket CreateBucket makes: x-amz-object-ownership (default
    BucketOwnerEnforced, as on AWS), every Block Public Access setting on, and the ACL of
    x-amz-acl / x-amz-grant-*. An ACL that gives anything to anyone but the owner needs ACLs
    enabled (InvalidBucketAclWithObjectOwnership) and, being public or not, is refused while
    the new bucket blocks public ACLs."""
    h = ctx.headers
    ownership = h.get("x-amz-object-ownership", BUCKET_OWNER_ENFORCED).strip()
    if ownership not in OWNERSHIPS:
        raise InvalidArgument("Invalid x-amz-object-ownership header", name="x-amz-object-ownership",
                              value=ownership)
    owner = ctx.p.canonical_id
    asked = acl.requested(h, owner, owner)
    if asked is not None and acl.only_owner(asked, owner):
        asked = None
    if asked is not None:
        if ownership == BUCKET_OWNER_ENFORCED:
            raise InvalidBucketAclWithObjectOwnership()
        if acl.is_public(asked):  # a new bucket starts with BlockPublicAcls on
            raise AccessDenied(bucket=ctx.b)
    return BucketAccess(ownership=ownership, block=ALL_BLOCKED, acl=asked).dumps()
