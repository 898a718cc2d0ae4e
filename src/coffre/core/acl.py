"""Access control lists: grants, canned ACLs and what each permission allows.

ACLs are the legacy S3 permission system that clients still send (``x-amz-acl: private``...).
They matter only on buckets whose Object Ownership is not ``BucketOwnerEnforced``; there
they add grants to canonical users (tenants) and to the AllUsers / AuthenticatedUsers
groups. Stored as a JSON list of grants (BucketRecord.access["acl"], ObjectRecord.acl);
``None`` means the owner's full control alone, what S3 calls the private ACL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coffre.core.errors import InvalidArgument, UnresolvableGrantByEmailAddress

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
PUBLIC_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS})

FULL_CONTROL = "FULL_CONTROL"
PERMISSIONS = (FULL_CONTROL, "WRITE", "WRITE_ACP", "READ", "READ_ACP")

CANNED = ("private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
          "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write")
# Canned ACLs that open a bucket or object to everyone (Block Public Access's definition).
PUBLIC_CANNED = frozenset({"public-read", "public-read-write", "authenticated-read"})

# x-amz-grant-* request headers and the permission each grants.
GRANT_HEADERS = {
    "x-amz-grant-read": "READ", "x-amz-grant-write": "WRITE", "x-amz-grant-read-acp": "READ_ACP",
    "x-amz-grant-write-acp": "WRITE_ACP", "x-amz-grant-full-control": FULL_CONTROL,
}

# What each ACL permission allows, per resource kind (AWS's mapping of ACL permissions to
# policy actions). FULL_CONTROL is the union of the others.
_BUCKET_ACTIONS = {
    "READ": frozenset({"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"}),
    "WRITE": frozenset({"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"}),
    "READ_ACP": frozenset({"s3:GetBucketAcl"}),
    "WRITE_ACP": frozenset({"s3:PutBucketAcl"}),
}
_OBJECT_ACTIONS = {
    "READ": frozenset({"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTorrent"}),
    "READ_ACP": frozenset({"s3:GetObjectAcl", "s3:GetObjectVersionAcl"}),
    "WRITE_ACP": frozenset({"s3:PutObjectAcl", "s3:PutObjectVersionAcl"}),
}
BUCKET_ACL_ACTIONS = frozenset().union(*_BUCKET_ACTIONS.values())
OBJECT_ACL_ACTIONS = frozenset().union(*_OBJECT_ACTIONS.values())

_CANONICAL_ID = re.compile(r"^[0-9a-f]{64}$")
_GRANTEE = re.compile(r'\s*(id|uri|emailAddress)\s*=\s*"([^"]*)"\s*', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant: a permission to a canonical user (a tenant) or to a predefined group."""

    permission: str
    canonical_id: str = ""
    group: str = ""

    @property
    def public(self) -> bool:
        return self.group in PUBLIC_GROUPS

    def to_json(self) -> dict[str, str]:
        if self.group:
            return {"uri": self.group, "permission": self.permission}
        return {"id": self.canonical_id, "permission": self.permission}


Acl = tuple[Grant, ...]


def owner_full_control(owner: str) -> Acl:
    return (Grant(FULL_CONTROL, canonical_id=owner),)


def canned(name: str, owner: str, bucket_owner: str) -> Acl:
    """The grants of a canned ACL for a resource owned by ``owner`` in a bucket of ``bucket_owner``."""
    grants = list(owner_full_control(owner))
    if name == "public-read":
        grants.append(Grant("READ", group=ALL_USERS))
    elif name == "public-read-write":
        grants += [Grant("READ", group=ALL_USERS), Grant("WRITE", group=ALL_USERS)]
    elif name == "authenticated-read":
        grants.append(Grant("READ", group=AUTHENTICATED_USERS))
    elif name == "bucket-owner-read" and bucket_owner != owner:
        grants.append(Grant("READ", canonical_id=bucket_owner))
    elif name == "bucket-owner-full-control" and bucket_owner != owner:
        grants.append(Grant(FULL_CONTROL, canonical_id=bucket_owner))
    elif name == "log-delivery-write":
        grants += [Grant("WRITE", group=LOG_DELIVERY), Grant("READ_ACP", group=LOG_DELIVERY)]
    elif name not in CANNED:
        raise InvalidArgument(None, name="x-amz-acl", value=name)
    return tuple(grants)


def grantee(kind: str, value: str, header: str) -> Grant:
    """A grantee named by type (``id``, ``uri``, ``emailAddress``) with no permission yet."""
    kind = kind.lower()
    if kind == "id":
        if not _CANONICAL_ID.match(value):
            raise InvalidArgument("Invalid id", name=header, value=value)
        return Grant("", canonical_id=value)
    if kind == "uri":
        if value not in GROUPS:
            raise InvalidArgument("Invalid group uri", name=header, value=value)
        return Grant("", group=value)
    # coffre keeps no e-mail addresses: no grant by address can resolve (AWS's error).
    raise UnresolvableGrantByEmailAddress()


def from_headers(headers: Mapping[str, str]) -> Acl | None:
    """The explicit grants of x-amz-grant-* headers (None when none is present); the owner's
    full control is not implied (S3 replaces the ACL with exactly these grants)."""
    grants: list[Grant] = []
    found = False
    for header, permission in GRANT_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        found = True
        for item in value.split(","):
            if not item.strip():
                continue
            m = _GRANTEE.fullmatch(item)
            if m is None:
                raise InvalidArgument(None, name=header, value=value)
            g = grantee(m.group(1), m.group(2), header)
            grants.append(Grant(permission, canonical_id=g.canonical_id, group=g.group))
    return tuple(grants) if found else None


def requested(headers: Mapping[str, str], owner: str, bucket_owner: str) -> Acl | None:
    """The ACL a write request asks for (x-amz-acl or x-amz-grant-*), None when it names none.

    Both at once is an error, as on S3."""
    name = headers.get("x-amz-acl")
    explicit = from_headers(headers)
    if name is not None and explicit is not None:
        raise InvalidArgument("Specifying both Canned ACLs and Header Grants is not allowed", name="x-amz-acl")
    if name is not None:
        return canned(name.strip(), owner, bucket_owner)
    return explicit


def is_public(acl: Iterable[Grant]) -> bool:
    return any(g.public for g in acl)


def only_owner(acl: Iterable[Grant], owner: str) -> bool:
    """Whether an ACL gives nothing to anyone but ``owner`` (what BucketOwnerEnforced accepts)."""
    return all(g.canonical_id == owner and not g.group for g in acl)


def dumps(acl: Acl, owner: str) -> str | None:
    """Stored form; the owner's sole full control is stored as None (the default)."""
    if acl == owner_full_control(owner):
        return None
    return json.dumps([g.to_json() for g in acl], separators=(",", ":"))


def loads(text: str | None, owner: str) -> Acl:
    if text is None:
        return owner_full_control(owner)
    return parse_json(json.loads(text))


def parse_json(items: object) -> Acl:
    if not isinstance(items, list):
        return ()
    out: list[Grant] = []
    for it in items:
        if isinstance(it, dict) and isinstance(it.get("permission"), str):
            out.append(Grant(it["permission"], canonical_id=str(it.get("id", "")), group=str(it.get("uri", ""))))
    return tuple(out)


def grants_action(acl: Iterable[Grant], action: str, on_object: bool, canonical_id: str, anonymous: bool,
                  ignore_public: bool) -> bool:
    """Whether an ACL lets this caller do ``action``: by its canonical id, or as a member of
    AllUsers (everyone) or AuthenticatedUsers (any signed request)."""
    table = _OBJECT_ACTIONS if on_object else _BUCKET_ACTIONS
    for g in acl:
        if g.group:
            if g.group == LOG_DELIVERY or (ignore_public and g.public):
                continue
            if g.group == AUTHENTICATED_USERS and anonymous:
                continue
        elif anonymous or g.canonical_id != canonical_id:
            continue
        if g.permission == FULL_CONTROL or action in table.get(g.permission, ()):
            return True
    return False
