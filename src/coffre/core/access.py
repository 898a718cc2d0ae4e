"""Authorisation: may this principal (or the anonymous caller) do this action on this resource?

Combines, as AWS does, the caller's identity policies (inline, managed, group), the bucket
policy, ACLs and Block Public Access, with tenant boundaries: explicit deny wins; inside a
tenant an allow on either side suffices; across tenants both sides must allow; anonymous
callers only reach what a public policy or ACL opens and Block Public Access does not block.

The front end (coffre.s3.authz) turns each request into questions (action, resource,
condition keys) and asks them here before the handler runs. Buckets it authorised are
remembered for the rest of the request (``grant``/``granted``), so the domain services, which
still refuse a bucket of another tenant on their own, accept the buckets a policy or an ACL
opened and do not read the bucket row a second time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace

from coffre.core import acl
from coffre.core.errors import AccessDenied, NoSuchBucket, NoSuchBucketPolicy, NoSuchKey, NoSuchVersion
from coffre.core.identity import Principal
from coffre.core.policy import Decision, Policy, RequestContext, evaluate, is_public, parse_policy
from coffre.meta.base import MetadataStore
from coffre.meta.errors import NotFound
from coffre.meta.records import BucketRecord, TenantRecord

BUCKET_OWNER_ENFORCED = "BucketOwnerEnforced"
BUCKET_OWNER_PREFERRED = "BucketOwnerPreferred"
OBJECT_WRITER = "ObjectWriter"
OWNERSHIPS = (BUCKET_OWNER_ENFORCED, BUCKET_OWNER_PREFERRED, OBJECT_WRITER)

BPA_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")

# How long a tenant record (its Block Public Access and canonical id) is reused; a change made
# through this process drops it at once (``forget``), one made by another process within this.
_TENANT_TTL = 30.0
_IDENTITY_TTL = 30.0
_CACHE_MAX = 4096
_NO_ACCOUNT = "-"  # an account no principal element can name


@dataclass(frozen=True, slots=True)
class PublicAccessBlock:
    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False

    @classmethod
    def from_json(cls, doc: object) -> PublicAccessBlock:
        d = doc if isinstance(doc, dict) else {}
        return cls(*(bool(d.get(f, False)) for f in BPA_FIELDS))

    def to_json(self) -> dict[str, bool]:
        return dict(zip(BPA_FIELDS, self.values(), strict=True))

    def values(self) -> tuple[bool, bool, bool, bool]:
        return (self.block_public_acls, self.ignore_public_acls, self.block_public_policy,
                self.restrict_public_buckets)

    def __or__(self, other: PublicAccessBlock) -> PublicAccessBlock:
        return PublicAccessBlock(*(a or b for a, b in zip(self.values(), other.values(), strict=True)))


ALL_BLOCKED = PublicAccessBlock(True, True, True, True)
NOTHING_BLOCKED = PublicAccessBlock()


@dataclass(frozen=True, slots=True)
class BucketAccess:
    """The bucket's access document (BucketRecord.access), parsed.

    ``ownership`` None: no ownership controls (GetBucketOwnershipControls answers
    OwnershipControlsNotFoundError) and objects belong to their writer, AWS's behaviour
    before ownership controls existed — the state of buckets created before them.
    """

    ownership: str | None = None
    block: PublicAccessBlock | None = None
    acl: acl.Acl | None = None  # None: the owner's full control

    @property
    def acls_enabled(self) -> bool:
        return self.ownership != BUCKET_OWNER_ENFORCED

    @property
    def effective_ownership(self) -> str:
        return self.ownership or OBJECT_WRITER

    def dumps(self) -> str | None:
        doc: dict[str, object] = {}
        if self.ownership is not None:
            doc["ownership"] = self.ownership
        if self.block is not None:
            doc["public_access_block"] = self.block.to_json()
        if self.acl is not None:
            doc["acl"] = [g.to_json() for g in self.acl]
        return json.dumps(doc, separators=(",", ":"), sort_keys=True) if doc else None

    @classmethod
    def loads(cls, text: str | None) -> BucketAccess:
        if not text:
            return cls()
        doc = json.loads(text)
        own = doc.get("ownership")
        block = doc.get("public_access_block")
        grants = doc.get("acl")
        return cls(ownership=own if own in OWNERSHIPS else None,
                   block=PublicAccessBlock.from_json(block) if block is not None else None,
                   acl=acl.parse_json(grants) if grants is not None else None)


# What a bucket created now starts with, as on AWS since April 2023: ACLs disabled, every
# Block Public Access setting on.
NEW_BUCKET_ACCESS = BucketAccess(ownership=BUCKET_OWNER_ENFORCED, block=ALL_BLOCKED)


# -- buckets authorised for the request being served (one context per request task) --
_granted: ContextVar[dict[str, BucketRecord] | None] = ContextVar("coffre_granted_buckets", default=None)


def begin_request() -> None:
    """Start a request with nothing authorised (the S3 front end calls this first)."""
    _granted.set({})


def grant(bucket: BucketRecord) -> None:
    g = _granted.get()
    if g is not None:
        g[bucket.name] = bucket


def granted(name: str) -> BucketRecord | None:
    """The bucket record, when this request was authorised on it."""
    g = _granted.get()
    return None if g is None else g.get(name)


def regrant(bucket: BucketRecord) -> None:
    """Replace the remembered record after this request changed it (policy, access...)."""
    g = _granted.get()
    if g is not None and bucket.name in g:
        g[bucket.name] = bucket


@dataclass(frozen=True, slots=True)
class _Identity:
    at: float
    policies: tuple[Policy, ...]
    lowered: str  # every document's text, lower-cased: which condition keys they mention


class AccessControl:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta
        self._bucket_policies: dict[str, Policy] = {}
        self._accesses: dict[str, BucketAccess] = {}
        self._identities: dict[tuple[str, str], _Identity] = {}
        self._tenants: dict[str, tuple[float, TenantRecord | None]] = {}

    # -- caches --
    def forget(self, tenant_id: str) -> None:
        """Drop what is cached for a tenant (its identities' policies changed)."""
        for k in [k for k in self._identities if k[0] == tenant_id]:
            self._identities.pop(k, None)
        self._tenants.pop(tenant_id, None)

    def bucket_policy(self, bucket: BucketRecord) -> Policy | None:
        """The parsed bucket policy, cached by document text (a changed policy is a new text)."""
        text = bucket.policy
        if text is None:
            return None
        p = self._bucket_policies.get(text)
        if p is None:
            if len(self._bucket_policies) >= _CACHE_MAX:
                self._bucket_policies.clear()
            p = self._bucket_policies[text] = parse_policy(text, "resource")
        return p

    def bucket_access(self, bucket: BucketRecord) -> BucketAccess:
        text = bucket.access
        if text is None:
            return BucketAccess()
        a = self._accesses.get(text)
        if a is None:
            if len(self._accesses) >= _CACHE_MAX:
                self._accesses.clear()
            a = self._accesses[text] = BucketAccess.loads(text)
        return a

    async def tenant(self, tenant_id: str) -> TenantRecord | None:
        now = time.monotonic()
        hit = self._tenants.get(tenant_id)
        if hit is not None and now - hit[0] < _TENANT_TTL:
            return hit[1]
        rec = await self.meta.get_tenant(tenant_id)
        if len(self._tenants) >= _CACHE_MAX:
            self._tenants.clear()
        self._tenants[tenant_id] = (now, rec)
        return rec

    async def canonical_id(self, tenant_id: str) -> str:
        rec = await self.tenant(tenant_id)
        return rec.canonical_id if rec is not None else ""

    async def tenant_block(self, tenant_id: str) -> PublicAccessBlock | None:
        rec = await self.tenant(tenant_id)
        if rec is None or rec.public_access_block is None:
            return None
        return PublicAccessBlock.from_json(json.loads(rec.public_access_block))

    async def effective_block(self, bucket: BucketRecord) -> PublicAccessBlock:
        """Block Public Access in force on a bucket: each setting on at tenant or bucket level."""
        own = self.bucket_access(bucket).block or NOTHING_BLOCKED
        tenant = await self.tenant_block(bucket.tenant_id)
        return own | tenant if tenant is not None else own

    async def identity_policies(self, principal: Principal) -> Sequence[Policy]:
        """The parsed policies that apply to a tenant user (none for a root or anonymous caller);
        cached until ``forget`` is called for its tenant."""
        return (await self._identity(principal)).policies

    async def _identity(self, principal: Principal) -> _Identity:
        if principal.is_anonymous or principal.is_root:
            return _Identity(0.0, (), "")
        key = (principal.tenant_id, principal.name.lower())
        now = time.monotonic()
        hit = self._identities.get(key)
        if hit is not None and now - hit.at < _IDENTITY_TTL:
            return hit
        texts = await self.meta.identity_policies(principal.tenant_id, principal.name)
        ident = _Identity(now, tuple(parse_policy(t, "identity") for t in texts),
                          "\n".join(texts).lower())
        if len(self._identities) >= _CACHE_MAX:
            self._identities.clear()
        self._identities[key] = ident
        return ident

    async def mentions(self, principal: Principal, bucket: BucketRecord | None, needle: str) -> bool:
        """Whether a policy that may apply to this request names ``needle`` (lower case): keys
        that cost a read (s3:ExistingObjectTag) are gathered only then."""
        if bucket is not None and bucket.policy is not None and needle in bucket.policy.lower():
            return True
        return needle in (await self._identity(principal)).lowered

    # -- questions --
    @staticmethod
    def owner_root(principal: Principal, bucket: BucketRecord) -> bool:
        """The hot path: a tenant root on its own bucket with no bucket policy may do anything
        (nothing could deny it), decided without building a single condition key."""
        return bucket.policy is None and principal.is_root and principal.tenant_id == bucket.tenant_id

    @staticmethod
    def context(principal: Principal, action: str, resource: str,
                keys: Mapping[str, Sequence[str]]) -> RequestContext:
        if principal.is_anonymous:
            return RequestContext(action=action, resource=resource, keys=keys)
        return RequestContext(action=action, resource=resource, principal_arn=principal.arn,
                              principal_account=principal.tenant_id,
                              principal_canonical_id=principal.canonical_id, keys=keys)

    async def allowed(self, principal: Principal, bucket: BucketRecord | None, rc: RequestContext,
                      object_acl: Callable[[], Awaitable[acl.Acl | None]] | None = None) -> bool:
        """Whether ``principal`` may do ``rc.action`` on ``rc.resource`` (in ``bucket``, or on no
        bucket: ListBuckets, CreateBucket).

        ``object_acl`` loads the ACL of the object the question is about; it is called only
        when nothing else decided and the bucket's ACLs are enabled (so the object lookup a
        denial may need never costs anything to a caller already allowed).
        """
        anonymous = principal.is_anonymous
        identity = Decision.NONE
        if not anonymous and not principal.is_root:
            identity = evaluate((await self._identity(principal)).policies, rc, False)
            if identity is Decision.DENY:
                return False
        if bucket is None:  # nothing but the caller's own tenant is concerned
            return not anonymous and (principal.is_root or identity is Decision.ALLOW)
        same = not anonymous and principal.tenant_id == bucket.tenant_id
        if not same:
            # A suspended (or deleting) tenant's buckets are closed to everyone else too: its own
            # identities are already refused at authentication.
            owner = await self.tenant(bucket.tenant_id)
            if owner is None or owner.status != "active":
                return False
        resource = Decision.NONE
        policy = self.bucket_policy(bucket)
        block: PublicAccessBlock | None = None
        if policy is not None:
            resource = evaluate((policy,), rc, True)
            if resource is Decision.DENY:
                return False
            if resource is Decision.ALLOW and not same:
                block = await self.effective_block(bucket)
                # RestrictPublicBuckets: a public policy lets in only the bucket's own tenant.
                if block.restrict_public_buckets and is_public(policy):
                    resource = Decision.NONE
        if same:
            if principal.is_root or identity is Decision.ALLOW:
                return True
            if resource is Decision.ALLOW and policy is not None:
                # Inside its tenant, an Allow to the tenant itself (account principal) delegates
                # to the tenant's own identity policies: only a statement naming the user (or
                # everyone) lets it in by itself, as on AWS.
                narrow = replace(rc, principal_account=_NO_ACCOUNT, principal_canonical_id=None)
                return evaluate((policy,), narrow, True) is Decision.ALLOW
            return False
        # An identity of another tenant acts for its tenant: its own side must allow too (a
        # foreign root implicitly does). ACL grants name tenants, never their users, so
        # inside the bucket's tenant they add nothing to what policies decide.
        if not anonymous and not (principal.is_root or identity is Decision.ALLOW):
            return False
        if resource is Decision.ALLOW:
            return True
        return await self._acl_allows(principal, bucket, rc.action, block, object_acl)

    async def _acl_allows(self, principal: Principal, bucket: BucketRecord, action: str,
                          block: PublicAccessBlock | None,
                          object_acl: Callable[[], Awaitable[acl.Acl | None]] | None) -> bool:
        access = self.bucket_access(bucket)
        if not access.acls_enabled:
            return False
        on_bucket = action in acl.BUCKET_ACL_ACTIONS
        on_object = object_acl is not None and action in acl.OBJECT_ACL_ACTIONS
        if not on_bucket and not on_object:
            return False
        if block is None:
            block = await self.effective_block(bucket)
        ignore = block.ignore_public_acls
        if on_bucket:
            grants = access.acl
            if grants is None:
                grants = acl.owner_full_control(await self.canonical_id(bucket.tenant_id))
            if acl.grants_action(grants, action, False, principal.canonical_id, principal.is_anonymous, ignore):
                return True
        if on_object:
            assert object_acl is not None
            grants_o = await object_acl()
            if grants_o is not None and acl.grants_action(grants_o, action, True, principal.canonical_id,
                                                          principal.is_anonymous, ignore):
                return True
        return False

    async def check(self, principal: Principal, bucket: BucketRecord | None, rc: RequestContext,
                    object_acl: Callable[[], Awaitable[acl.Acl | None]] | None = None) -> None:
        """``allowed``, raising AccessDenied."""
        if not await self.allowed(principal, bucket, rc, object_acl):
            raise AccessDenied(bucket=bucket.name if bucket is not None else None)

    async def check_identity(self, principal: Principal, action: str, resource: str,
                             keys: Mapping[str, Sequence[str]] | None = None) -> None:
        """For actions on a tenant's own non-S3 resources (IAM): a tenant root may do anything in
        its tenant; a user needs an identity-policy Allow and no Deny. Raises AccessDenied."""
        if principal.is_anonymous:
            raise AccessDenied()
        if principal.is_root:
            return
        rc = self.context(principal, action, resource, keys or {})
        if evaluate((await self._identity(principal)).policies, rc, False) is not Decision.ALLOW:
            raise AccessDenied(f"User: {principal.arn} is not authorized to perform: {action} on resource: "
                               f"{resource}")

    # -- ownership --
    async def object_owner(self, principal: Principal, bucket: BucketRecord, canned: str | None) -> str:
        """Who owns an object this principal writes into ``bucket`` (S3 Object Ownership):
        the writer, unless ACLs are disabled (BucketOwnerEnforced) or the bucket prefers
        its owner and the writer handed it over (bucket-owner-full-control). An anonymous
        writer's object belongs to the bucket owner (see docs/s3-compatibility.md)."""
        if not principal.is_anonymous and principal.tenant_id == bucket.tenant_id:
            return principal.canonical_id
        ownership = self.bucket_access(bucket).effective_ownership
        if principal.is_anonymous or ownership == BUCKET_OWNER_ENFORCED or (
                ownership == BUCKET_OWNER_PREFERRED and canned == "bucket-owner-full-control"):
            return await self.canonical_id(bucket.tenant_id)
        return principal.canonical_id

    # -- the bucket's access settings (PutBucketPolicy, Block Public Access, ownership, ACL) --
    async def put_bucket_policy(self, bucket: BucketRecord, text: str) -> BucketRecord:
        """Validate (MalformedPolicy says what is wrong) and store a bucket policy; a public one
        is refused while BlockPublicPolicy is on (AccessDenied, as on AWS)."""
        policy = parse_policy(text, "resource", bucket=bucket.name)
        if is_public(policy) and (await self.effective_block(bucket)).block_public_policy:
            raise AccessDenied(bucket=bucket.name)
        return await self._set_policy(bucket, text)

    async def delete_bucket_policy(self, bucket: BucketRecord) -> BucketRecord:
        return await self._set_policy(bucket, None)

    async def _set_policy(self, bucket: BucketRecord, text: str | None) -> BucketRecord:
        try:
            await self.meta.set_bucket_policy(bucket.name, text)
        except NotFound as e:
            raise NoSuchBucket(bucket=bucket.name) from e
        updated = replace(bucket, policy=text)
        regrant(updated)
        return updated

    def policy_is_public(self, bucket: BucketRecord) -> bool:
        policy = self.bucket_policy(bucket)
        if policy is None:
            raise NoSuchBucketPolicy(bucket=bucket.name)
        return is_public(policy)

    async def set_bucket_access(self, bucket: BucketRecord, settings: BucketAccess) -> BucketRecord:
        text = settings.dumps()
        try:
            await self.meta.set_bucket_access(bucket.name, text)
        except NotFound as e:
            raise NoSuchBucket(bucket=bucket.name) from e
        updated = replace(bucket, access=text)
        regrant(updated)
        return updated

    async def set_tenant_block(self, tenant_id: str, block: PublicAccessBlock | None) -> None:
        """Tenant-level Block Public Access (None: remove), effective at once in this process."""
        rec = await self.meta.get_tenant(tenant_id)
        if rec is None:
            raise AccessDenied()
        text = None if block is None else json.dumps(block.to_json(), separators=(",", ":"))
        await self.meta.update_tenant(replace(rec, public_access_block=text))
        self._tenants.pop(tenant_id, None)

    async def set_object_acl(self, bucket: BucketRecord, key: str, version_id: str | None,
                             text: str | None) -> str:
        """Store an object's ACL (None: its owner's full control); returns the version set."""
        try:
            return await self.meta.set_object_acl(bucket.name, key, version_id, text)
        except NotFound as e:
            if version_id is not None:
                raise NoSuchVersion(key=key, version_id=version_id) from e
            raise NoSuchKey(key=key) from e
