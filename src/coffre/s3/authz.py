"""From an S3 request to the authorisation questions it raises, asked before its handler runs.

``ACTIONS`` maps every operation that has a handler to the IAM action(s) it needs and the
resource they are about (tests/s3/test_policy.py checks that no registered handler is
missing, so a new operation cannot skip authorisation). Condition keys are built only when
a policy may read them: a tenant root on its own bucket without a bucket policy is allowed
without building any (the hot path).

Existence is revealed as on AWS: an unknown bucket is NoSuchBucket for anyone, an existing
bucket the caller may not use is AccessDenied before any object is looked up, and a missing
key is AccessDenied for a caller who may not list the bucket.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from coffre.core import access, acl
from coffre.core.access import AccessControl
from coffre.core.errors import (
    AccessControlListNotSupported,
    AccessDenied,
    CoffreError,
    MethodNotAllowed,
    NoSuchKey,
)
from coffre.core.identity import ANONYMOUS, Principal
from coffre.core.objects import WriteMeta
from coffre.core.tagging import parse_header
from coffre.meta.records import BucketRecord, ObjectRecord
from coffre.s3.context import HANDLERS, Ctx
from coffre.s3.copysource import parse_copy_source

log = logging.getLogger("coffre.s3")

SERVICE, BUCKET, OBJECT, ACCOUNT, NONE = "service", "bucket", "object", "account", "none"


@dataclass(frozen=True, slots=True)
class Rule:
    """What one operation needs: ``action`` on the ``kind`` of resource it addresses; with a
    ``versionId`` in the query, ``versioned`` instead when set (s3:GetObjectVersion...)."""

    kind: str
    action: str = ""
    versioned: str = ""
    # Only the bucket owner's tenant may run it, whatever a policy grants (AWS: 405 otherwise).
    owner_only: bool = False


def _b(action: str, owner_only: bool = False) -> Rule:
    return Rule(BUCKET, action, owner_only=owner_only)


def _o(action: str, versioned: str = "") -> Rule:
    return Rule(OBJECT, action, versioned)


ACTIONS: dict[str, Rule] = {
    "ListBuckets": Rule(SERVICE, "s3:ListAllMyBuckets"),
    "CreateBucket": Rule(SERVICE, "s3:CreateBucket"),
    "DeleteBucket": _b("s3:DeleteBucket"),
    "HeadBucket": _b("s3:ListBucket"),
    "ListObjects": _b("s3:ListBucket"),
    "ListObjectsV2": _b("s3:ListBucket"),
    "ListObjectVersions": _b("s3:ListBucketVersions"),
    "ListMultipartUploads": _b("s3:ListBucketMultipartUploads"),
    "GetBucketLocation": _b("s3:GetBucketLocation"),
    "GetBucketVersioning": _b("s3:GetBucketVersioning"),
    "PutBucketVersioning": _b("s3:PutBucketVersioning"),
    "GetBucketCors": _b("s3:GetBucketCORS"),
    "PutBucketCors": _b("s3:PutBucketCORS"),
    "DeleteBucketCors": _b("s3:PutBucketCORS"),
    "GetBucketLifecycleConfiguration": _b("s3:GetLifecycleConfiguration"),
    "PutBucketLifecycleConfiguration": _b("s3:PutLifecycleConfiguration"),
    "DeleteBucketLifecycle": _b("s3:PutLifecycleConfiguration"),  # AWS has no separate delete action
    "GetBucketTagging": _b("s3:GetBucketTagging"),
    "PutBucketTagging": _b("s3:PutBucketTagging"),
    "DeleteBucketTagging": _b("s3:PutBucketTagging"),
    "GetBucketPolicy": _b("s3:GetBucketPolicy", True),
    "PutBucketPolicy": _b("s3:PutBucketPolicy", True),
    "DeleteBucketPolicy": _b("s3:DeleteBucketPolicy", True),
    "GetBucketPolicyStatus": _b("s3:GetBucketPolicyStatus", True),
    "GetPublicAccessBlock": _b("s3:GetBucketPublicAccessBlock", True),
    "PutPublicAccessBlock": _b("s3:PutBucketPublicAccessBlock", True),
    "DeletePublicAccessBlock": _b("s3:PutBucketPublicAccessBlock", True),
    "GetBucketOwnershipControls": _b("s3:GetBucketOwnershipControls", True),
    "PutBucketOwnershipControls": _b("s3:PutBucketOwnershipControls", True),
    "DeleteBucketOwnershipControls": _b("s3:PutBucketOwnershipControls", True),
    "GetBucketNotificationConfiguration": _b("s3:GetBucketNotification"),
    "PutBucketNotificationConfiguration": _b("s3:PutBucketNotification"),
    "GetBucketAcl": _b("s3:GetBucketAcl"),
    "GetBucketEncryption": _b("s3:GetEncryptionConfiguration"),
    "PutBucketEncryption": _b("s3:PutEncryptionConfiguration"),
    "DeleteBucketEncryption": _b("s3:PutEncryptionConfiguration"),
    "PutBucketAcl": _b("s3:PutBucketAcl"),
    "GetObject": _o("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": _o("s3:GetObject", "s3:GetObjectVersion"),
    "GetObjectAttributes": _o("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
    "PutObject": _o("s3:PutObject"),
    "CopyObject": _o("s3:PutObject"),
    "DeleteObject": _o("s3:DeleteObject", "s3:DeleteObjectVersion"),
    # Each key is authorised on its own (s3:DeleteObject / s3:DeleteObjectVersion); a denied key
    # is an AccessDenied entry of the result, as on AWS. Only the bucket is checked up front.
    "DeleteObjects": Rule(BUCKET),
    "GetObjectTagging": _o("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": _o("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObjectTagging": _o("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    "GetObjectAcl": _o("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
    "PutObjectAcl": _o("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    "CreateMultipartUpload": _o("s3:PutObject"),
    "UploadPart": _o("s3:PutObject"),
    "UploadPartCopy": _o("s3:PutObject"),
    "CompleteMultipartUpload": _o("s3:PutObject"),
    "AbortMultipartUpload": _o("s3:AbortMultipartUpload"),
    # Object Lock (AWS has no version-specific actions for these).
    "GetObjectLockConfiguration": _b("s3:GetBucketObjectLockConfiguration"),
    "PutObjectLockConfiguration": _b("s3:PutBucketObjectLockConfiguration"),
    "GetObjectRetention": _o("s3:GetObjectRetention"),
    "PutObjectRetention": _o("s3:PutObjectRetention"),
    "GetObjectLegalHold": _o("s3:GetObjectLegalHold"),
    "PutObjectLegalHold": _o("s3:PutObjectLegalHold"),
    "ListParts": _o("s3:ListMultipartUploadParts"),
    # Authenticated by the signature in its form: its handler asks (post_object) once it knows who.
    "PostObject": Rule(NONE, "s3:PutObject"),
    # A browser's CORS preflight is unauthenticated by design; it reveals only the CORS rules.
    "OptionsObject": Rule(NONE),
    # Tenant-level Block Public Access (the S3 Control API).
    "GetAccountPublicAccessBlock": Rule(ACCOUNT, "s3:GetAccountPublicAccessBlock"),
    "PutAccountPublicAccessBlock": Rule(ACCOUNT, "s3:PutAccountPublicAccessBlock"),
    "DeleteAccountPublicAccessBlock": Rule(ACCOUNT, "s3:PutAccountPublicAccessBlock"),
    # coffre's own tenant API (/_coffre/..., s3/coffre_api.py): always about the caller's tenant.
    "GetAuditRecords": Rule(ACCOUNT, "coffre:GetAuditRecords"),
    "GetAuditDelivery": Rule(ACCOUNT, "coffre:GetAuditDelivery"),
    "PutAuditDelivery": Rule(ACCOUNT, "coffre:PutAuditDelivery"),
    "DeleteAuditDelivery": Rule(ACCOUNT, "coffre:PutAuditDelivery"),
    "GetAuditPublicKey": Rule(NONE),  # public by nature: what every verifier needs
}

# Operations that write an object and may carry an ACL or tags (extra actions asked).
_WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})
_COPIES = frozenset({"CopyObject", "UploadPartCopy"})  # a source bucket to ask about too
_LIST_OPS = frozenset({"ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads"})
# Request headers offered as s3:<name> condition keys when present.
_HEADER_KEYS = ("x-amz-acl", "x-amz-content-sha256", "x-amz-server-side-encryption",
                "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-server-side-encryption-customer-algorithm",
                "x-amz-storage-class", "x-amz-copy-source",
                "x-amz-metadata-directive", "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
                "x-amz-object-lock-legal-hold", "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
                "x-amz-grant-write-acp", "x-amz-grant-full-control", "x-amz-object-ownership")
_HEADER_ALIASES = {"x-amz-object-lock-mode": "s3:object-lock-mode",
                   "x-amz-object-lock-retain-until-date": "s3:object-lock-retain-until-date",
                   "x-amz-object-lock-legal-hold": "s3:object-lock-legal-hold"}
_EXISTING_TAG = "s3:existingobjecttag/"
_REQUEST_TAG = "s3:requestobjecttag"


def arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" if key is None else f"arn:aws:s3:::{bucket}/{key}"


def principal_of(ctx: Ctx) -> Principal:
    return ctx.principal if ctx.principal is not None else ANONYMOUS


def global_keys(ctx: Ctx, principal: Principal) -> dict[str, list[str]]:
    """The global aws:* condition keys of a request, what it and its caller are (lower-case
    names, as the engine reads); the IAM API uses them as they are. aws:Referer is added for
    S3 requests only (base_keys)."""
    now = time.time()
    keys: dict[str, list[str]] = {
        "aws:currenttime": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))],
        "aws:epochtime": [str(int(now))],
        "aws:securetransport": ["true" if ctx.request.secure else "false"],
    }
    peer = ctx.request.remote
    if peer:
        keys["aws:sourceip"] = [peer]
    if "user-agent" in ctx.headers:
        keys["aws:useragent"] = [ctx.headers["user-agent"]]
    if principal.is_anonymous:
        keys["aws:principaltype"] = ["Anonymous"]
    else:
        keys["aws:principalaccount"] = [principal.tenant_id]
        keys["aws:principalarn"] = [principal.arn]
        if principal.is_root:
            keys["aws:principaltype"] = ["Account"]
            keys["aws:userid"] = [principal.tenant_id]
        else:
            keys["aws:principaltype"] = ["User"]
            keys["aws:username"] = [principal.name]
            keys["aws:userid"] = [principal.user_id or principal.name]
        for k, v in principal.tags:
            keys["aws:principaltag/" + k.lower()] = [v]
    return keys


def base_keys(ctx: Ctx, principal: Principal) -> dict[str, list[str]]:
    """The global and S3 condition keys of a request (lower-case names, as the engine reads)."""
    keys = global_keys(ctx, principal)
    if "referer" in ctx.headers:
        keys["aws:referer"] = [ctx.headers["referer"]]
    auth = ctx.auth
    if auth is not None:
        keys["s3:signatureversion"] = ["AWS4-HMAC-SHA256" if auth.version == 4 else "AWS"]
        keys["s3:authtype"] = ["REST-QUERY-STRING" if auth.presigned else "REST-HEADER"]
    elif ctx.operation == "PostObject" and not principal.is_anonymous:
        keys["s3:authtype"] = ["POST"]
    for header in _HEADER_KEYS:
        if header in ctx.headers:
            keys[_HEADER_ALIASES.get(header, "s3:" + header)] = [ctx.headers[header]]
    if "versionId" in ctx.query:
        keys["s3:versionid"] = [ctx.query["versionId"]]
    if ctx.operation in _LIST_OPS:
        keys["s3:prefix"] = [ctx.query.get("prefix", "")]
        if "delimiter" in ctx.query:
            keys["s3:delimiter"] = [ctx.query["delimiter"]]
        if "max-keys" in ctx.query:
            keys["s3:max-keys"] = [ctx.query["max-keys"]]
    if ctx.operation == "CreateBucket":
        keys["s3:locationconstraint"] = [ctx.settings.region]
    tagging = ctx.headers.get("x-amz-tagging")
    if tagging is not None and ctx.operation in _WRITES:
        add_request_tags(keys, parse_header(tagging))
    return keys


def add_request_tags(keys: dict[str, list[str]], tags: list[tuple[str, str]]) -> None:
    """s3:RequestObjectTag/<key> and s3:RequestObjectTagKeys from the tags a request sets."""
    for k, v in tags:
        keys["s3:requestobjecttag/" + k.lower()] = [v]
    keys["s3:requestobjecttagkeys"] = [k for k, _ in tags]


class Asker:
    """The authorisation questions of one request, sharing its condition keys and object reads."""

    def __init__(self, ctx: Ctx, principal: Principal) -> None:
        # The request's Ctx holds this Asker (ctx.asker): a strong reference back would make a
        # cycle, and every request's whole state (headers, records, the aiohttp request) would
        # wait for the cyclic garbage collector instead of going when the request ends.
        self._ctx = weakref.ref(ctx)
        self.meta = ctx.coffre.meta
        self.principal = principal
        self.access: AccessControl = ctx.coffre.access
        self._keys: dict[str, list[str]] | None = None
        self._objects: dict[tuple[str, str, str | None], ObjectRecord | None] = {}

    def keys(self) -> dict[str, list[str]]:
        if self._keys is None:
            ctx = self._ctx()
            assert ctx is not None, "an Asker outlived its request"
            self._keys = base_keys(ctx, self.principal)
        return self._keys

    async def _object(self, bucket: str, key: str, version_id: str | None) -> ObjectRecord | None:
        k = (bucket, key, version_id)
        if k not in self._objects:
            try:
                obj = await self.meta.get_object(bucket, key, version_id)
            except (ValueError, CoffreError):
                obj = None  # a malformed version id: the operation itself will say so
            self._objects[k] = obj if obj is not None and not obj.is_delete_marker else None
        return self._objects[k]

    async def allowed(self, bucket: BucketRecord | None, action: str, resource: str, key: str | None = None,
                      version_id: str | None = None, extra: dict[str, list[str]] | None = None) -> bool:
        p = self.principal
        if bucket is not None and AccessControl.owner_root(p, bucket):
            return True
        keys = self.keys()
        if extra:
            keys = {**keys, **extra}
        if bucket is not None and key is not None and await self.access.mentions(p, bucket, _EXISTING_TAG):
            obj = await self._object(bucket.name, key, version_id)
            if obj is not None:
                keys = {**keys, **{_EXISTING_TAG + k.lower(): [v] for k, v in obj.tags.items()}}
        loader: Callable[[], Awaitable[acl.Acl | None]] | None = None
        if bucket is not None and key is not None:
            b, k, v = bucket.name, key, version_id

            async def loader() -> acl.Acl | None:
                obj = await self._object(b, k, v)
                return None if obj is None else acl.loads(obj.acl, obj.owner)

        rc = AccessControl.context(p, action, resource, keys)
        return await self.access.allowed(p, bucket, rc, loader)

    async def check(self, bucket: BucketRecord | None, action: str, resource: str, key: str | None = None,
                    version_id: str | None = None, extra: dict[str, list[str]] | None = None) -> None:
        if not await self.allowed(bucket, action, resource, key, version_id, extra):
            raise AccessDenied(bucket=bucket.name if bucket is not None else None)


async def authorize(ctx: Ctx) -> None:
    """Ask what the request's operation needs; AccessDenied (or NoSuchBucket) when it may not."""
    rule = ACTIONS.get(ctx.operation)
    if rule is None:
        if ctx.operation in HANDLERS:  # fail closed: a handler nobody mapped is never reachable
            raise AccessDenied()
        return  # no handler: the front end answers NotImplemented / MethodNotAllowed
    principal = principal_of(ctx)
    asker = Asker(ctx, principal)
    ctx.asker = asker
    if rule.kind == NONE:
        return
    if rule.kind == SERVICE:
        await asker.check(None, rule.action, "arn:aws:s3:::*" if ctx.bucket is None else arn(ctx.b))
        if ctx.operation == "CreateBucket" \
                and ctx.headers.get("x-amz-bucket-object-lock-enabled", "").strip().lower() == "true":
            # A bucket created with Object Lock is configured and versioned by that request (AWS asks both).
            for action in ("s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning"):
                await asker.check(None, action, arn(ctx.b))
        return
    if rule.kind == ACCOUNT:
        await asker.check(None, rule.action, f"arn:aws:s3:{ctx.settings.region}:{principal.tenant_id}:*")
        return
    bucket = await ctx.coffre.buckets.get(ctx.b)
    ctx.bucket_record = bucket
    if ctx.operation == "HeadBucket":  # told even to a caller refused (clients redirect by it)
        ctx.response_headers["x-amz-bucket-region"] = bucket.region
    if ctx.operation not in _COPIES and AccessControl.owner_root(principal, bucket):
        access.grant(bucket)  # the hot path: nothing could deny it (no key built, no policy read)
        return
    if ctx.operation == "DeleteObjects":
        access.grant(bucket)  # each key is asked by the handler (delete_allowed)
        return
    version_id = ctx.query.get("versionId")
    action = rule.versioned if version_id is not None and rule.versioned else rule.action
    if ctx.operation == "PutObjectTagging" and await asker.access.mentions(principal, bucket, _REQUEST_TAG):
        return  # the tags are in the body: asked by the handler once read (request_tags)
    if rule.kind == BUCKET:
        await asker.check(bucket, action, arn(bucket.name))
    else:
        await asker.check(bucket, action, arn(bucket.name, ctx.k), ctx.k, version_id)
        await _extras(ctx, asker, bucket, version_id)
    if rule.owner_only and principal.tenant_id != bucket.tenant_id:
        raise MethodNotAllowed()
    access.grant(bucket)


async def _extras(ctx: Ctx, asker: Asker, bucket: BucketRecord, version_id: str | None) -> None:
    """What some operations need besides their main action."""
    op, h = ctx.operation, ctx.headers
    resource = arn(bucket.name, ctx.k)
    if op == "GetObjectAttributes":  # AWS asks both
        await asker.check(bucket, "s3:GetObjectVersion" if version_id else "s3:GetObject", resource, ctx.k,
                          version_id)
    if op in _WRITES or op == "PostObject":
        if "x-amz-tagging" in h and (op != "CopyObject" or h.get("x-amz-tagging-directive") == "REPLACE"):
            await asker.check(bucket, "s3:PutObjectTagging", resource, ctx.k)
        if "x-amz-acl" in h or any(g in h for g in acl.GRANT_HEADERS):
            await asker.check(bucket, "s3:PutObjectAcl", resource, ctx.k)
        if "x-amz-object-lock-mode" in h or "x-amz-object-lock-retain-until-date" in h:
            await asker.check(bucket, "s3:PutObjectRetention", resource, ctx.k)
        if "x-amz-object-lock-legal-hold" in h:
            await asker.check(bucket, "s3:PutObjectLegalHold", resource, ctx.k)
    if op in ("CopyObject", "UploadPartCopy"):
        src = parse_copy_source(ctx)
        src_bucket = await ctx.coffre.buckets.get(src.bucket)
        await asker.check(src_bucket, "s3:GetObjectVersion" if src.version_id else "s3:GetObject",
                          arn(src.bucket, src.key), src.key, src.version_id)
        access.grant(src_bucket)


async def request_tags(ctx: Ctx, tags: list[tuple[str, str]]) -> None:
    """PutObjectTagging, when a policy reads s3:RequestObjectTag: asked with the tags of the
    body, before they are stored (the front end left this question to the handler)."""
    asker, bucket = ctx.asker, ctx.bucket_record
    assert asker is not None and bucket is not None
    if access.granted(bucket.name) is not None:
        return  # already allowed up front (no policy reads the request's tags)
    extra: dict[str, list[str]] = {}
    add_request_tags(extra, tags)
    version_id = ctx.query.get("versionId")
    action = "s3:PutObjectVersionTagging" if version_id is not None else "s3:PutObjectTagging"
    await asker.check(bucket, action, arn(bucket.name, ctx.k), ctx.k, version_id, extra)
    access.grant(bucket)


async def delete_allowed(ctx: Ctx, key: str, version_id: str | None) -> bool:
    """DeleteObjects: whether this one key may be deleted."""
    asker, bucket = ctx.asker, ctx.bucket_record
    assert asker is not None and bucket is not None
    action = "s3:DeleteObjectVersion" if version_id else "s3:DeleteObject"
    return await asker.allowed(bucket, action, arn(bucket.name, key), key, version_id)


async def may(ctx: Ctx, action: str, key: str, version_id: str | None = None) -> bool:
    """Whether the caller of an object operation, already authorised, may also ``action`` on
    this key (e.g. see the lock headers of a GET). The tenant root on its own bucket without a
    policy is answered without building any condition key."""
    asker, bucket = ctx.asker, ctx.bucket_record
    if asker is None or bucket is None:
        return False
    return await asker.allowed(bucket, action, arn(bucket.name, key), key, version_id)


async def bypass_governance(ctx: Ctx, key: str, version_id: str | None) -> bool:
    """Whether a request may bypass GOVERNANCE retention on this key: it sent
    x-amz-bypass-governance-retention: true AND its caller holds s3:BypassGovernanceRetention
    (a tenant root does unless a policy denies it). Without both, a governance-locked version
    is refused as a compliance one would be."""
    if ctx.headers.get("x-amz-bypass-governance-retention", "").strip().lower() != "true":
        return False
    return await may(ctx, "s3:BypassGovernanceRetention", key, version_id)


async def authorize_post(ctx: Ctx, key: str, form: dict[str, str]) -> None:
    """PostObject, once its form named the caller (or none: anonymous) and the key."""
    bucket = await ctx.coffre.buckets.get(ctx.b)
    ctx.bucket_record = bucket
    asker = Asker(ctx, principal_of(ctx))
    ctx.asker = asker
    extra: dict[str, list[str]] = {}
    if "acl" in form:
        extra["s3:x-amz-acl"] = [form["acl"]]
    if "tagging" in form:
        extra["s3:x-amz-tagging"] = [form["tagging"]]
    resource = arn(bucket.name, key)
    await asker.check(bucket, "s3:PutObject", resource, key, extra=extra)
    if "acl" in form:
        await asker.check(bucket, "s3:PutObjectAcl", resource, key, extra=extra)
    access.grant(bucket)


async def hide_missing(ctx: Ctx, exc: CoffreError) -> CoffreError:
    """A missing key is AccessDenied to a caller who may not list the bucket (AWS), so that
    probing keys tells nothing a listing would not."""
    if not isinstance(exc, NoSuchKey) or ctx.bucket_record is None or ctx.asker is None:
        return exc
    bucket = ctx.bucket_record
    try:
        if await ctx.asker.allowed(bucket, "s3:ListBucket", arn(bucket.name)):
            return exc
    except Exception:
        log.exception("could not tell whether a missing key may be revealed: answering AccessDenied")
    return AccessDenied(bucket=bucket.name)


# -- ACLs a write asks for --
async def write_acl(ctx: Ctx, bucket: BucketRecord, owner: str, headers: dict[str, str] | None = None,
                    ) -> acl.Acl | None:
    """The ACL an object write asks for (x-amz-acl / x-amz-grant-*, or the POST form's acl),
    checked against the bucket's Object Ownership and Block Public Access. None: no ACL to
    store (none asked, or ACLs disabled and the request asked only for the bucket owner's
    full control, which is all such a bucket keeps)."""
    h = ctx.headers if headers is None else headers
    access_ctl: AccessControl = ctx.coffre.access
    principal = principal_of(ctx)
    bucket_owner = await access_ctl.canonical_id(bucket.tenant_id)
    settings = access_ctl.bucket_access(bucket)
    if not settings.acls_enabled:
        writer = principal.canonical_id or bucket_owner
        asked = acl.requested(h, writer, bucket_owner)
        if asked is None or h.get("x-amz-acl", "").strip() == "bucket-owner-full-control" \
                or acl.only_owner(asked, bucket_owner):
            return None
        raise AccessControlListNotSupported()
    grants = acl.requested(h, owner, bucket_owner)
    if grants is None:
        return None
    if acl.is_public(grants) and (await access_ctl.effective_block(bucket)).block_public_acls:
        raise AccessDenied(bucket=bucket.name)
    return grants



async def owned(ctx: Ctx, wm: WriteMeta, headers: dict[str, str] | None = None) -> WriteMeta:
    """``wm`` with who will own the object written and the ACL it asked for (S3 Object
    Ownership; BucketOwnerEnforced / Block Public Access refusals). A tenant writing into its
    own bucket without an ACL header costs nothing here."""
    h = ctx.headers if headers is None else headers
    bucket = ctx.bucket_record
    principal = principal_of(ctx)
    if bucket is None:
        return wm
    asks_acl = "x-amz-acl" in h or any(g in h for g in acl.GRANT_HEADERS)
    if not asks_acl and not principal.is_anonymous and principal.tenant_id == bucket.tenant_id:
        return wm
    access_ctl: AccessControl = ctx.coffre.access
    owner = await access_ctl.object_owner(principal, bucket, h.get("x-amz-acl", "").strip() or None)
    grants = await write_acl(ctx, bucket, owner, h) if asks_acl else None
    wm.owner = owner
    wm.acl = acl.dumps(grants, owner) if grants is not None else None
    return wm
