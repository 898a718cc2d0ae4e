"""ACLs: GetBucketAcl, PutBucketAcl, GetObjectAcl, PutObjectAcl.

An ACL is set by a canned name (x-amz-acl), by x-amz-grant-* headers or by an
AccessControlPolicy document. On a bucket with ACLs disabled (BucketOwnerEnforced) only the
bucket owner's full control may be set and reading shows just that, as on AWS.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web
from lxml import etree

from coffre.core import acl
from coffre.core.errors import (
    AccessControlListNotSupported,
    AccessDenied,
    InvalidArgument,
    MalformedACLError,
    MalformedXML,
)
from coffre.meta.records import BucketRecord
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import read_verified
from coffre.s3.handlers.tagging import version_header
from coffre.s3.xml import Doc

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_TYPES = {"CanonicalUser": "id", "Group": "uri", "AmazonCustomerByEmail": "emailAddress"}
_TYPE_CHILD = {"id": "ID", "uri": "URI", "emailAddress": "EmailAddress"}


def acl_doc(owner: str, grants: acl.Acl) -> Doc:
    doc = Doc("AccessControlPolicy")
    doc.open("Owner").leaf("ID", owner).close("Owner")
    doc.open("AccessControlList")
    for g in grants:
        doc.open("Grant")
        if g.group:
            doc.raw(f'<Grantee xmlns:xsi="{_XSI}" xsi:type="Group">').leaf("URI", g.group)
        else:
            doc.raw(f'<Grantee xmlns:xsi="{_XSI}" xsi:type="CanonicalUser">').leaf("ID", g.canonical_id)
        doc.close("Grantee").leaf("Permission", g.permission).close("Grant")
    doc.close("AccessControlList").close("AccessControlPolicy")
    return doc


def parse_acl(body: bytes, owner: str) -> acl.Acl:
    """The grants of an AccessControlPolicy document; its Owner, when given, must be the
    resource's owner (AWS answers AccessDenied otherwise)."""
    try:
        root = xml.parse(body)
    except MalformedXML as e:
        raise MalformedACLError() from e
    if root.tag != "AccessControlPolicy":
        raise MalformedACLError()
    owner_el = root.find("Owner")
    if owner_el is not None and (xml.text(owner_el, "ID") or "").strip() != owner:
        raise AccessDenied()
    acl_el = root.find("AccessControlList")
    if acl_el is None:
        raise MalformedACLError()
    out: list[acl.Grant] = []
    for grant in acl_el.findall("Grant"):
        grantee = grant.find("Grantee")
        permission = (xml.text(grant, "Permission") or "").strip()
        if grantee is None or permission not in acl.PERMISSIONS:
            raise MalformedACLError()
        kind = _TYPES.get(_attribute(grantee, "type") or "")
        if kind is None:
            raise MalformedACLError()
        value = (xml.text(grantee, _TYPE_CHILD[kind]) or "").strip()
        if not value:
            raise MalformedACLError()
        g = acl.grantee(kind, value, "Grantee")
        out.append(acl.Grant(permission, canonical_id=g.canonical_id, group=g.group))
    return tuple(out)


def _attribute(el: etree._Element, local: str) -> str | None:
    for name, value in el.attrib.items():
        if str(name) == local or str(name).endswith("}" + local):
            return str(value)
    return None


async def _requested(ctx: Ctx, owner: str, bucket_owner: str) -> acl.Acl:
    """The ACL a Put*Acl asks for: by headers, or else by the body."""
    from_headers = acl.requested(ctx.headers, owner, bucket_owner)
    body = await read_verified(ctx, missing=None)
    if from_headers is not None:
        if body.strip():
            raise InvalidArgument("Specifying both ACL headers and a request body is not allowed",
                                  name="x-amz-acl")
        return from_headers
    if not body.strip():
        raise MalformedACLError()
    return parse_acl(body, owner)


async def _settable(ctx: Ctx, bucket: BucketRecord, grants: acl.Acl, bucket_owner: str) -> bool:
    """Whether ``grants`` may be stored on this bucket or one of its objects; False when the
    bucket's ACLs are disabled and the ACL gives only what it keeps anyway (nothing to store)."""
    access = ctx.coffre.access
    if not access.bucket_access(bucket).acls_enabled:
        if acl.only_owner(grants, bucket_owner) or ctx.headers.get("x-amz-acl") == "bucket-owner-full-control":
            return False
        raise AccessControlListNotSupported(bucket=bucket.name)
    if acl.is_public(grants) and (await access.effective_block(bucket)).block_public_acls:
        raise AccessDenied(bucket=bucket.name)
    return True


@operation("GetBucketAcl")
async def get_bucket_acl(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    access = ctx.coffre.access
    owner = await access.canonical_id(bucket.tenant_id)
    settings = access.bucket_access(bucket)
    grants = settings.acl if settings.acls_enabled and settings.acl is not None else acl.owner_full_control(owner)
    return ctx.xml(acl_doc(owner, grants))


@operation("PutBucketAcl")
async def put_bucket_acl(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    access = ctx.coffre.access
    owner = await access.canonical_id(bucket.tenant_id)
    grants = await _requested(ctx, owner, owner)
    if await _settable(ctx, bucket, grants, owner):
        settings = access.bucket_access(bucket)
        stored = None if grants == acl.owner_full_control(owner) else grants
        await access.set_bucket_access(bucket, replace(settings, acl=stored))
    return ctx.empty()


@operation("GetObjectAcl")
async def get_object_acl(ctx: Ctx) -> web.StreamResponse:
    version_id = ctx.query.get("versionId")
    obj = await ctx.coffre.objects.head_object(ctx.p, ctx.b, ctx.k, version_id)
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    access = ctx.coffre.access
    if access.bucket_access(bucket).acls_enabled:
        owner, grants = obj.owner, acl.loads(obj.acl, obj.owner)
    else:
        owner = await access.canonical_id(bucket.tenant_id)
        grants = acl.owner_full_control(owner)
    version_header(ctx, obj.version_id)
    return ctx.xml(acl_doc(owner, grants))


@operation("PutObjectAcl")
async def put_object_acl(ctx: Ctx) -> web.StreamResponse:
    version_id = ctx.query.get("versionId")
    obj = await ctx.coffre.objects.head_object(ctx.p, ctx.b, ctx.k, version_id)
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    access = ctx.coffre.access
    bucket_owner = await access.canonical_id(bucket.tenant_id)
    grants = await _requested(ctx, obj.owner, bucket_owner)
    if await _settable(ctx, bucket, grants, bucket_owner):
        version = await access.set_object_acl(bucket, ctx.k, obj.version_id, acl.dumps(grants, obj.owner))
    else:
        version = obj.version_id
    version_header(ctx, version)
    return ctx.empty()
