"""Server-side encryption on the wire: the SSE request headers, the response headers, and
PutBucketEncryption / GetBucketEncryption / DeleteBucketEncryption (the rules: core.sse)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from coffre.core import sse
from coffre.core.access import AccessControl
from coffre.core.blobio import KeyLayer
from coffre.core.errors import InvalidRequest, MalformedXML
from coffre.core.objects import WriteMeta
from coffre.core.sse import CustomerKey, SseRequest
from coffre.meta.records import ObjectRecord, SseRecord
from coffre.s3 import xml
from coffre.s3.context import Ctx, operation
from coffre.s3.handlers.documents import read_verified
from coffre.s3.xml import Doc

_CONFIG = "ServerSideEncryptionConfiguration"
_BY_DEFAULT = "ApplyServerSideEncryptionByDefault"


def _secure(ctx: Ctx) -> None:
    """SSE-C keys travel in headers: over plain HTTP they are refused, as AWS refuses them,
    unless the operator allowed it for development (allow_sse_c_over_http)."""
    if not ctx.request.secure and not ctx.settings.allow_sse_c_over_http:
        raise InvalidRequest(sse.INSECURE)


def write_request(ctx: Ctx, fields: Mapping[str, str] | None = None) -> SseRequest | None:
    """The SSE headers of a write (PutObject, CopyObject's destination, CreateMultipartUpload;
    ``fields``: a POST form's); None when it has none (the bucket default applies)."""
    h = ctx.headers if fields is None else fields
    if not any(name.startswith("x-amz-server-side-encryption") for name in h):
        return None
    req = sse.parse_request(h)
    if req.customer is not None:
        _secure(ctx)
    return req


def customer(ctx: Ctx, prefix: str = sse.CUSTOMER_PREFIX) -> CustomerKey | None:
    """The SSE-C key a request carries (the copy source's with COPY_SOURCE_CUSTOMER_PREFIX)."""
    key = sse.parse_customer(ctx.headers, prefix)
    if key is not None:
        _secure(ctx)
    return key


def source_customer(ctx: Ctx) -> CustomerKey | None:
    return customer(ctx, sse.COPY_SOURCE_CUSTOMER_PREFIX)


async def read_layer(ctx: Ctx, obj: ObjectRecord, decrypt: bool = True) -> KeyLayer | None:
    """Check the SSE-C key a read carries against the object's (400 / 403 as AWS answers) and
    return the inner wrap to open it with; costs nothing for an SSE-S3 object read without one.
    ``decrypt`` False (HEAD, GetObjectAttributes): no data is opened, so no KMS key is used."""
    layer = await ctx.coffre.objects.sse.for_read(obj.tenant_id, obj.sse, customer(ctx), decrypt)
    if decrypt and obj.sse is not None and obj.sse.algorithm == sse.SSE_KMS and obj.sse.kms_key_id is not None:
        await kms_check(ctx, "kms:Decrypt", obj.sse.kms_key_id)
    return layer


async def with_sse(ctx: Ctx, wm: WriteMeta) -> WriteMeta:
    """``wm`` with the request's SSE headers; when they (or the bucket default) choose SSE-KMS and
    a policy mentions kms actions, kms:GenerateDataKey on the key is asked too."""
    wm.sse = write_request(ctx)
    bucket = ctx.bucket_record
    if bucket is None or (wm.sse is not None and wm.sse.customer is not None):
        return wm
    algorithm, key_id = (wm.sse.algorithm, wm.sse.kms_key_id) if wm.sse is not None else (None, None)
    if algorithm is None and bucket.encryption is not None:
        default = sse.BucketDefault.loads(bucket.encryption)
        algorithm, key_id = default.algorithm, default.kms_key_id
    if algorithm == sse.SSE_KMS:
        await kms_check(ctx, "kms:GenerateDataKey",
                        await ctx.coffre.objects.sse.resolve_key(bucket.tenant_id, key_id))
    return wm


async def kms_check(ctx: Ctx, action: str, key_id: str) -> None:
    """Ask ``action`` on a KMS key of the bucket's tenant, only when a policy that may apply
    mentions kms actions: SSE-KMS needs no separate KMS grant otherwise (the key is reachable by
    its tenant's identities only), so policies written for S3 alone keep working."""
    asker, bucket = ctx.asker, ctx.bucket_record
    if asker is None or bucket is None or AccessControl.owner_root(asker.principal, bucket):
        return
    if not await ctx.coffre.access.mentions(asker.principal, bucket, "kms:"):
        return
    await asker.check(bucket, action, ctx.coffre.objects.sse.key_arn(bucket.tenant_id, key_id))


def response_headers(ctx: Ctx, record: SseRecord | None, tenant_id: str,
                     fields: Mapping[str, str] | None = None) -> None:
    """x-amz-server-side-encryption (and the KMS key, bucket key and context, or the SSE-C
    algorithm and the MD5 of the key the request (``fields``: its POST form) carried) as AWS
    returns them."""
    h = ctx.headers if fields is None else fields
    rh = ctx.response_headers
    if record is None:
        rh[sse.H_SSE] = sse.SSE_S3
        return
    if record.algorithm == sse.SSE_C:
        rh[sse.CUSTOMER_PREFIX + "algorithm"] = sse.CUSTOMER_ALGORITHM
        given = sse.parse_customer(h)  # already checked by the operation
        if given is not None:
            rh[sse.CUSTOMER_PREFIX + "key-MD5"] = given.key_md5
        return
    rh[sse.H_SSE] = record.algorithm
    if record.algorithm == sse.SSE_KMS and record.kms_key_id is not None:
        rh[sse.H_KMS_KEY] = ctx.coffre.objects.sse.key_arn(tenant_id, record.kms_key_id)
        if record.bucket_key:
            rh[sse.H_BUCKET_KEY] = "true"
        if sse.H_CONTEXT in h and ctx.request.method not in ("GET", "HEAD"):
            rh[sse.H_CONTEXT] = h[sse.H_CONTEXT]


def _parse_config(body: bytes) -> tuple[str, str | None, bool]:
    root = xml.parse(body)
    if root.tag != _CONFIG:
        raise MalformedXML()
    rules = [el for el in root if isinstance(el.tag, str)]
    if len(rules) != 1 or rules[0].tag != "Rule":
        raise MalformedXML()  # AWS takes exactly one rule
    rule = rules[0]
    by_default = rule.find(_BY_DEFAULT)
    if by_default is None:
        raise MalformedXML()
    algorithm = (xml.text(by_default, "SSEAlgorithm") or "").strip()
    key = xml.text(by_default, "KMSMasterKeyID")
    bucket_key = sse.parse_bool("BucketKeyEnabled", xml.text(rule, "BucketKeyEnabled")) or False
    return algorithm, (key.strip() or None) if key is not None else None, bucket_key


@operation("PutBucketEncryption")
async def put_bucket_encryption(ctx: Ctx) -> web.StreamResponse:
    # Content-MD5 or a flexible checksum is optional here, but checked when sent (BadDigest).
    algorithm, key, bucket_key = _parse_config(await read_verified(ctx, missing=None))
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    await ctx.coffre.objects.sse.put_bucket_default(bucket, algorithm, key, bucket_key)
    return ctx.empty()


@operation("GetBucketEncryption")
async def get_bucket_encryption(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    # Every bucket has a default, as on AWS since 2023: SSE-S3 until PutBucketEncryption says otherwise.
    default = sse.BucketDefault.loads(bucket.encryption)
    doc = Doc(_CONFIG).open("Rule").open(_BY_DEFAULT).leaf("SSEAlgorithm", default.algorithm)
    if default.kms_key_id is not None:
        doc.leaf("KMSMasterKeyID", ctx.coffre.objects.sse.key_arn(bucket.tenant_id, default.kms_key_id))
    doc.close(_BY_DEFAULT).leaf("BucketKeyEnabled", default.bucket_key).close("Rule").close(_CONFIG)
    return ctx.xml(doc)


@operation("DeleteBucketEncryption")
async def delete_bucket_encryption(ctx: Ctx) -> web.StreamResponse:
    bucket = await ctx.coffre.buckets.authorize(ctx.p, ctx.b)
    await ctx.coffre.objects.sse.delete_bucket_default(bucket)
    return ctx.empty(204)
