"""A tenant's identities: users, groups, access keys, inline and managed policies.

One service for both front ends: the IAM API on the S3 endpoint (a tenant manages itself) and
the admin API (an operator acts on a tenant). Every method is scoped to ``tenant_id``; names
are checked against IAM's rules and limits; policy documents are validated with
``coffre.core.policy.parse_policy(..., "identity")``. Errors are the IAM ones in core/errors.py
(NoSuchEntity, EntityAlreadyExists, DeleteConflict, MalformedPolicyDocument, LimitExceeded,
ValidationError). ``on_change(tenant_id)`` is called after every change that can alter an
authorisation (keys, policies, memberships), so caches drop what they hold for that tenant.

Limits are AWS's default quotas (docs/iam.md lists them), so a tenant's scripts that work
against AWS work here and a tenant cannot grow its identity tables without bound.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import string
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import replace

from coffre.core.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    LimitExceeded,
    NoSuchEntity,
    ValidationError,
)
from coffre.core.keyring import Keyring
from coffre.core.policy import parse_policy
from coffre.meta.base import MetadataStore
from coffre.meta.errors import AlreadyExists, Conflict, NotFound
from coffre.meta.records import AccessKeyRecord, GroupRecord, PolicyRecord, UserRecord

ROOT_USER = "root"  # the principal name of a tenant's root in access keys

_ID_ALPHABET = string.ascii_uppercase + string.digits

# AWS's rules and default quotas (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
MAX_USER_NAME = 64
MAX_GROUP_NAME = 128
MAX_POLICY_NAME = 128
MAX_PATH = 512
MAX_DESCRIPTION = 1000
MAX_DOCUMENT_CHARS = 131072  # the API's own bound on a document, before the size quotas below
USER_INLINE_TOTAL = 2048  # non-whitespace characters of all of a user's inline policies
GROUP_INLINE_TOTAL = 5120
MANAGED_POLICY_SIZE = 6144
ACCESS_KEYS_PER_USER = 2
GROUPS_PER_USER = 10
MANAGED_POLICIES_PER_ENTITY = 10
TAGS_PER_USER = 50
USERS_PER_TENANT = 5000
GROUPS_PER_TENANT = 300
POLICIES_PER_TENANT = 1500

_NAME = re.compile(r"[\w+=,.@-]+", re.ASCII)
_PATH = re.compile(r"/|/[\x21-\x7e]+/")
_PATH_PREFIX = re.compile(r"/[\x21-\x7f]*")
_POLICY_PATH = re.compile(r"(/[A-Za-z0-9.,+@=_-]+)*/")
_POLICY_ARN = re.compile(r"arn:aws:iam::([^:]*):policy(/(?:.*/)?)([^/]+)")
KINDS = ("user", "group")


class InvalidInput(ValidationError):
    """IAM's InvalidInput (an ARN or value that is well-typed but not acceptable); a
    ValidationError for every front end that does not tell them apart."""

    message = "The input is not valid."


def new_access_key_id() -> str:
    return "CO" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(18))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]


def new_entity_id(prefix: str) -> str:
    """IAM's unique ids: a 4-letter type prefix (AIDA user, AGPA group, ANPA policy) and 17
    upper-case letters or digits."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


def policy_arn(policy: PolicyRecord) -> str:
    return f"arn:aws:iam::{policy.tenant_id}:policy{policy.path}{policy.name}"


def user_arn(user: UserRecord) -> str:
    return f"arn:aws:iam::{user.tenant_id}:user{user.path}{user.name}"


def group_arn(group: GroupRecord) -> str:
    return f"arn:aws:iam::{group.tenant_id}:group{group.path}{group.name}"


def policy_size(document: str) -> int:
    """What IAM's size quotas count: the characters that are not white space."""
    return sum(1 for c in document if not c.isspace())


def _shown(value: str) -> str:
    return value if len(value) <= 128 else value[:128] + "..."


def _constraint(value: str, member: str, rule: str) -> ValidationError:
    return ValidationError(f"1 validation error detected: Value '{_shown(value)}' at '{member}' failed to "
                           f"satisfy constraint: {rule}")


def check_name(value: str, member: str, max_len: int) -> None:
    if not 1 <= len(value) <= max_len:
        raise _constraint(value, member, f"Member must have length between 1 and {max_len}")
    if not _NAME.fullmatch(value):
        raise _constraint(value, member, r"Member must satisfy regular expression pattern: [\w+=,.@-]+")


def check_path(value: str, member: str = "path") -> None:
    if not 1 <= len(value) <= MAX_PATH:
        raise _constraint(value, member, f"Member must have length between 1 and {MAX_PATH}")
    if not _PATH.fullmatch(value):
        raise _constraint(value, member, "Member must satisfy regular expression pattern: "
                                         r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)")


def check_path_prefix(value: str, member: str = "pathPrefix") -> None:
    if not 1 <= len(value) <= MAX_PATH:
        raise _constraint(value, member, f"Member must have length between 1 and {MAX_PATH}")
    if not _PATH_PREFIX.fullmatch(value):
        raise _constraint(value, member, r"Member must satisfy regular expression pattern: \u002F[\u0021-\u007F]*")


def _tag_text(text: str) -> bool:
    """IAM's tag alphabet: letters and digits of any script, separators (\\p{Z}) and _.:/=+-@."""
    return all(c.isalnum() or c in "_.:/=+-@" or unicodedata.category(c).startswith("Z") for c in text)


def check_tags(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Validated tags; keys compare case-insensitively, as IAM's do, and "aws:" is reserved."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in pairs:
        if not 1 <= len(key) <= 128 or not _tag_text(key):
            raise _constraint(key, "tags.member.key", "Member must have length between 1 and 128 and contain "
                                                     r"only letters, digits, spaces and _.:/=+\-@")
        if len(value) > 256 or not _tag_text(value):
            raise _constraint(value, "tags.member.value", "Member must have length at most 256 and contain only "
                                                         r"letters, digits, spaces and _.:/=+\-@")
        if key.lower().startswith("aws:"):
            raise InvalidInput("User-created tag keys cannot begin with the reserved prefix 'aws:'.")
        if key.lower() in seen:
            raise InvalidInput("Duplicate tag keys found. Please note that Tag keys are case insensitive.")
        seen.add(key.lower())
        out[key] = value
    return out


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def parse_policy_arn(arn: str) -> tuple[str, str, str]:
    """(account, path, name) of a managed policy's ARN; InvalidInput when it is not one."""
    m = _POLICY_ARN.fullmatch(arn)
    if m is None:
        raise InvalidInput(f"ARN {_shown(arn)} is not valid.")
    return m.group(1), m.group(2), m.group(3)


def _validate_document(document: str) -> None:
    if not document:
        raise _constraint(document, "policyDocument", "Member must have length greater than or equal to 1")
    if len(document) > MAX_DOCUMENT_CHARS:
        raise _constraint("...", "policyDocument",
                          f"Member must have length less than or equal to {MAX_DOCUMENT_CHARS}")
    parse_policy(document, "identity")  # MalformedPolicyDocument, saying what is wrong


class IamService:
    def __init__(self, meta: MetadataStore, keyring: Keyring, on_change: Callable[[str], None]) -> None:
        self.meta = meta
        self.keyring = keyring
        self.on_change = on_change
        # Held from a quota check to the write it guards (keys per user, groups per user...), so
        # concurrent calls in this gateway cannot both pass the check. IAM writes are rare: one
        # lock for all is enough. (Gateways sharing a store may still race by one.)
        self._limits = asyncio.Lock()

    # -- users --
    async def create_user(self, tenant_id: str, name: str, path: str = "/",
                          tags: dict[str, str] | None = None) -> UserRecord:
        check_name(name, "userName", MAX_USER_NAME)
        if name.lower() == ROOT_USER:
            # "root" names the tenant root in access keys: a user of that name would act as the root.
            raise InvalidInput(f"The user name {name} is reserved.")
        check_path(path)
        checked = check_tags((tags or {}).items())
        if len(checked) > TAGS_PER_USER:
            raise LimitExceeded(f"Cannot exceed quota for TagsPerUser: {TAGS_PER_USER}")
        if len(await self.meta.list_users(tenant_id)) >= USERS_PER_TENANT:
            raise LimitExceeded(f"Cannot exceed quota for UsersPerAccount: {USERS_PER_TENANT}")
        user = UserRecord(tenant_id=tenant_id, name=name, user_id=new_entity_id("AIDA"), created_at=time.time(),
                          path=path, tags=checked)
        try:
            await self.meta.create_user(user)
        except AlreadyExists as e:
            raise EntityAlreadyExists(f"User with name {name} already exists.") from e
        self.on_change(tenant_id)
        return user

    async def get_user(self, tenant_id: str, name: str) -> UserRecord:
        user = await self.meta.get_user(tenant_id, name)
        if user is None:
            raise NoSuchEntity(f"The user with name {_shown(name)} cannot be found.")
        return user

    async def list_users(self, tenant_id: str, path_prefix: str = "/") -> list[UserRecord]:
        check_path_prefix(path_prefix)
        return await self.meta.list_users(tenant_id, path_prefix)

    async def update_user(self, tenant_id: str, name: str, new_path: str | None = None,
                          new_name: str | None = None) -> UserRecord:
        """Move a user to another path. Renaming is refused: access keys, memberships and
        policies are kept by name, and ARNs in other tenants' policies would silently change."""
        if new_path is not None:
            check_path(new_path, "newPath")
        async with self._limits:  # read-modify-write, as tag_user
            user = await self.get_user(tenant_id, name)
            if new_name is not None and new_name != user.name:
                check_name(new_name, "newUserName", MAX_USER_NAME)
                raise InvalidInput("Renaming a user is not supported by coffre; create a new user instead.")
            if new_path is None or new_path == user.path:
                return user
            updated = replace(user, path=new_path)
            await self._update_user(updated)
            return updated

    async def delete_user(self, tenant_id: str, name: str) -> None:
        user = await self.get_user(tenant_id, name)
        # The store refuses too (in its transaction); these reads only give IAM's precise message.
        if await self.meta.list_access_keys(tenant_id, user.name):
            raise DeleteConflict("Cannot delete entity, must delete access keys first.")
        if await self.meta.list_inline_policies(tenant_id, "user", user.name):
            raise DeleteConflict("Cannot delete entity, must delete policies first.")
        if await self.meta.list_attached_policies(tenant_id, "user", user.name):
            raise DeleteConflict("Cannot delete entity, must detach all policies first.")
        if await self.meta.list_groups_for_user(tenant_id, user.name):
            raise DeleteConflict("Cannot delete entity, must remove users from group first.")
        try:
            await self.meta.delete_user(tenant_id, user.name)
        except NotFound as e:
            raise NoSuchEntity(f"The user with name {_shown(name)} cannot be found.") from e
        except Conflict as e:
            raise DeleteConflict("Cannot delete entity, it is still in use.") from e
        self.on_change(tenant_id)

    async def tag_user(self, tenant_id: str, name: str, tags: Iterable[tuple[str, str]]) -> None:
        """Add or overwrite tags (a key equal but for case replaces the old one, as in IAM)."""
        given = check_tags(tags)
        async with self._limits:  # read-modify-write: concurrent TagUser calls must not lose tags
            user = await self.get_user(tenant_id, name)
            merged = {k: v for k, v in user.tags.items() if k.lower() not in {g.lower() for g in given}}
            merged.update(given)
            if len(merged) > TAGS_PER_USER:
                raise LimitExceeded(f"Cannot exceed quota for TagsPerUser: {TAGS_PER_USER}")
            await self._update_user(replace(user, tags=merged))

    async def untag_user(self, tenant_id: str, name: str, keys: Iterable[str]) -> None:
        drop = {k.lower() for k in keys}
        async with self._limits:
            user = await self.get_user(tenant_id, name)
            await self._update_user(replace(user, tags={k: v for k, v in user.tags.items()
                                                        if k.lower() not in drop}))

    async def _update_user(self, user: UserRecord) -> None:
        try:
            await self.meta.update_user(user)
        except NotFound as e:
            raise NoSuchEntity(f"The user with name {user.name} cannot be found.") from e
        self.on_change(user.tenant_id)  # aws:PrincipalTag conditions read the tags

    # -- access keys (user ROOT_USER = the tenant root) --
    async def principal_name(self, tenant_id: str, user: str) -> str:
        """The principal name stored on a key: ROOT_USER, or the user's name as stored."""
        if user == ROOT_USER:
            return ROOT_USER
        return (await self.get_user(tenant_id, user)).name

    async def create_access_key(self, tenant_id: str, user: str) -> tuple[AccessKeyRecord, str]:
        """A new active key and its secret (shown once, never stored in plaintext)."""
        principal = await self.principal_name(tenant_id, user)
        akid, secret = new_access_key_id(), new_secret_key()
        key = AccessKeyRecord(access_key_id=akid, tenant_id=tenant_id, principal=principal,
                              wrapped_secret=self.keyring.wrap_secret(akid, secret), status="active",
                              created_at=time.time())
        async with self._limits:
            if len(await self.meta.list_access_keys(tenant_id, principal)) >= ACCESS_KEYS_PER_USER:
                raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {ACCESS_KEYS_PER_USER}")
            await self.meta.put_access_key(key)
        self.on_change(tenant_id)
        return key, secret

    async def list_access_keys(self, tenant_id: str, user: str | None) -> list[AccessKeyRecord]:
        """The keys of one principal, or (user None) of the whole tenant, oldest first."""
        if user is None:
            return await self.meta.list_access_keys(tenant_id)
        return await self.meta.list_access_keys(tenant_id, await self.principal_name(tenant_id, user))

    async def get_access_key(self, tenant_id: str, access_key_id: str, user: str | None = None) -> AccessKeyRecord:
        """A key of this tenant (and of ``user`` when given); another tenant's key is as absent
        as a key that never existed."""
        owner = None if user is None else await self.principal_name(tenant_id, user)
        key = await self.meta.get_access_key(access_key_id)
        if key is None or key.tenant_id != tenant_id or (owner is not None and key.principal != owner):
            raise NoSuchEntity(f"The Access Key with id {_shown(access_key_id)} cannot be found.")
        return key

    async def update_access_key(self, tenant_id: str, access_key_id: str, status: str,
                                user: str | None = None) -> None:
        """status "Active" | "Inactive" (IAM spelling)."""
        if status not in ("Active", "Inactive"):
            raise _constraint(status, "status", "Member must satisfy enum value set: [Active, Inactive]")
        key = await self.get_access_key(tenant_id, access_key_id, user)
        await self.meta.put_access_key(replace(key, status=status.lower()))
        self.on_change(tenant_id)

    async def delete_access_key(self, tenant_id: str, access_key_id: str, user: str | None = None) -> None:
        await self.get_access_key(tenant_id, access_key_id, user)
        try:
            await self.meta.delete_access_key(access_key_id)
        except NotFound as e:
            raise NoSuchEntity(f"The Access Key with id {_shown(access_key_id)} cannot be found.") from e
        self.on_change(tenant_id)

    # -- groups --
    async def create_group(self, tenant_id: str, name: str, path: str = "/") -> GroupRecord:
        check_name(name, "groupName", MAX_GROUP_NAME)
        check_path(path)
        if len(await self.meta.list_groups(tenant_id)) >= GROUPS_PER_TENANT:
            raise LimitExceeded(f"Cannot exceed quota for GroupsPerAccount: {GROUPS_PER_TENANT}")
        group = GroupRecord(tenant_id=tenant_id, name=name, group_id=new_entity_id("AGPA"), created_at=time.time(),
                            path=path)
        try:
            await self.meta.create_group(group)
        except AlreadyExists as e:
            raise EntityAlreadyExists(f"Group with name {name} already exists.") from e
        self.on_change(tenant_id)
        return group

    async def _group(self, tenant_id: str, name: str) -> GroupRecord:
        group = await self.meta.get_group(tenant_id, name)
        if group is None:
            raise NoSuchEntity(f"The group with name {_shown(name)} cannot be found.")
        return group

    async def get_group(self, tenant_id: str, name: str) -> tuple[GroupRecord, list[UserRecord]]:
        group = await self._group(tenant_id, name)
        return group, await self.meta.list_group_members(tenant_id, group.name)

    async def list_groups(self, tenant_id: str, path_prefix: str = "/") -> list[GroupRecord]:
        check_path_prefix(path_prefix)
        return await self.meta.list_groups(tenant_id, path_prefix)

    async def delete_group(self, tenant_id: str, name: str) -> None:
        group = await self._group(tenant_id, name)
        if await self.meta.list_group_members(tenant_id, group.name):
            raise DeleteConflict("Cannot delete entity, must remove users from group first.")
        if await self.meta.list_inline_policies(tenant_id, "group", group.name):
            raise DeleteConflict("Cannot delete entity, must delete policies first.")
        if await self.meta.list_attached_policies(tenant_id, "group", group.name):
            raise DeleteConflict("Cannot delete entity, must detach all policies first.")
        try:
            await self.meta.delete_group(tenant_id, group.name)
        except NotFound as e:
            raise NoSuchEntity(f"The group with name {_shown(name)} cannot be found.") from e
        except Conflict as e:
            raise DeleteConflict("Cannot delete entity, it is still in use.") from e
        self.on_change(tenant_id)

    async def add_user_to_group(self, tenant_id: str, group: str, user: str) -> None:
        g = await self._group(tenant_id, group)
        u = await self.get_user(tenant_id, user)
        async with self._limits:
            current = await self.meta.list_groups_for_user(tenant_id, u.name)
            if len(current) >= GROUPS_PER_USER and all(x.group_id != g.group_id for x in current):
                raise LimitExceeded(f"Cannot exceed quota for GroupsPerUser: {GROUPS_PER_USER}")
            try:
                await self.meta.add_user_to_group(tenant_id, g.name, u.name)
            except NotFound as e:
                raise NoSuchEntity(f"The group with name {_shown(group)} cannot be found.") from e
        self.on_change(tenant_id)

    async def remove_user_from_group(self, tenant_id: str, group: str, user: str) -> None:
        g = await self._group(tenant_id, group)
        u = await self.get_user(tenant_id, user)
        try:
            await self.meta.remove_user_from_group(tenant_id, g.name, u.name)
        except NotFound as e:
            raise NoSuchEntity(f"The user with name {_shown(user)} is not in group {g.name}.") from e
        self.on_change(tenant_id)

    async def list_groups_for_user(self, tenant_id: str, user: str) -> list[GroupRecord]:
        u = await self.get_user(tenant_id, user)
        return await self.meta.list_groups_for_user(tenant_id, u.name)

    async def stored_name(self, tenant_id: str, kind: str, owner: str) -> str:
        """The stored name of an existing user or group (NoSuchEntity otherwise)."""
        check_kind(kind)
        if kind == "user":
            return (await self.get_user(tenant_id, owner)).name
        return (await self._group(tenant_id, owner)).name

    # -- inline policies (kind "user" | "group") --
    async def put_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str, document: str) -> None:
        check_name(name, "policyName", MAX_POLICY_NAME)
        stored_owner = await self.stored_name(tenant_id, kind, owner)
        _validate_document(document)
        limit = USER_INLINE_TOTAL if kind == "user" else GROUP_INLINE_TOTAL
        async with self._limits:
            total = policy_size(document)
            for other in await self.meta.list_inline_policies(tenant_id, kind, stored_owner):
                if other.lower() == name.lower():
                    continue  # being replaced
                text = await self.meta.get_inline_policy(tenant_id, kind, stored_owner, other)
                total += policy_size(text or "")
            if total > limit:
                raise LimitExceeded(f"Maximum policy size of {limit} bytes exceeded for {kind} {stored_owner}")
            try:
                await self.meta.put_inline_policy(tenant_id, kind, stored_owner, name, document)
            except NotFound as e:
                raise NoSuchEntity(f"The {kind} with name {_shown(owner)} cannot be found.") from e
        self.on_change(tenant_id)

    async def get_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str) -> str:
        stored_owner = await self.stored_name(tenant_id, kind, owner)
        document = await self.meta.get_inline_policy(tenant_id, kind, stored_owner, name)
        if document is None:
            raise NoSuchEntity(f"The {kind} policy with name {_shown(name)} cannot be found.")
        return document

    async def delete_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str) -> None:
        stored_owner = await self.stored_name(tenant_id, kind, owner)
        try:
            await self.meta.delete_inline_policy(tenant_id, kind, stored_owner, name)
        except NotFound as e:
            raise NoSuchEntity(f"The {kind} policy with name {_shown(name)} cannot be found.") from e
        self.on_change(tenant_id)

    async def list_inline_policies(self, tenant_id: str, kind: str, owner: str) -> list[str]:
        stored_owner = await self.stored_name(tenant_id, kind, owner)
        return await self.meta.list_inline_policies(tenant_id, kind, stored_owner)

    # -- managed policies (ARN arn:aws:iam::TENANT:policy/PATHNAME) --
    async def create_policy(self, tenant_id: str, name: str, document: str, path: str = "/",
                            description: str = "") -> PolicyRecord:
        check_name(name, "policyName", MAX_POLICY_NAME)
        if len(path) > MAX_PATH or not _POLICY_PATH.fullmatch(path):
            raise _constraint(path, "path", r"Member must satisfy regular expression pattern: "
                                            r"((/[A-Za-z0-9\.,\+@=_-]+)*)/")
        if len(description) > MAX_DESCRIPTION:
            raise _constraint(description, "description",
                              f"Member must have length less than or equal to {MAX_DESCRIPTION}")
        _validate_document(document)
        if policy_size(document) > MANAGED_POLICY_SIZE:
            raise LimitExceeded(f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_SIZE}")
        if len(await self.meta.list_policies(tenant_id)) >= POLICIES_PER_TENANT:
            raise LimitExceeded(f"Cannot exceed quota for PoliciesPerAccount: {POLICIES_PER_TENANT}")
        now = time.time()
        policy = PolicyRecord(tenant_id=tenant_id, name=name, policy_id=new_entity_id("ANPA"), document=document,
                              created_at=now, updated_at=now, path=path, description=description)
        try:
            await self.meta.create_policy(policy)
        except AlreadyExists as e:
            raise EntityAlreadyExists(f"A policy called {name} already exists. Duplicate names are not allowed.") \
                from e
        self.on_change(tenant_id)
        return policy

    async def create_policy_version(self, tenant_id: str, arn: str, document: str) -> PolicyRecord:
        """Replace a managed policy's document with a new default version (v1 -> v2...). Only
        the default version is kept: what IaC tools do on an update (create a version set as
        default, then delete the old ones) leaves the same state as on AWS."""
        _validate_document(document)
        if policy_size(document) > MANAGED_POLICY_SIZE:
            raise LimitExceeded(f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_SIZE}")
        async with self._limits:
            policy = await self.get_policy(tenant_id, arn)
            number = int(policy.default_version[1:]) if policy.default_version[1:].isdigit() else 1
            updated = replace(policy, document=document, default_version=f"v{number + 1}",
                              updated_at=time.time())
            try:
                await self.meta.update_policy(updated)
            except NotFound as e:
                raise NoSuchEntity(f"Policy {_shown(arn)} does not exist or is not attachable.") from e
        self.on_change(tenant_id)
        return updated

    async def list_entities_for_policy(self, tenant_id: str, arn: str) -> tuple[list[UserRecord], list[GroupRecord]]:
        """The users and groups a managed policy is attached to (a scan of the tenant's entities:
        the call is rare, and a tenant holds at most USERS_PER_TENANT + GROUPS_PER_TENANT)."""
        policy = await self.get_policy(tenant_id, arn)
        users = [u for u in await self.meta.list_users(tenant_id)
                 if any(p.policy_id == policy.policy_id
                        for p in await self.meta.list_attached_policies(tenant_id, "user", u.name))]
        groups = [g for g in await self.meta.list_groups(tenant_id)
                  if any(p.policy_id == policy.policy_id
                         for p in await self.meta.list_attached_policies(tenant_id, "group", g.name))]
        return users, groups

    async def get_policy(self, tenant_id: str, arn: str) -> PolicyRecord:
        """The tenant's policy this ARN names; an ARN of another account (including AWS-managed
        policies, which coffre does not have) names nothing."""
        account, path, name = parse_policy_arn(arn)
        policy = await self.meta.get_policy(tenant_id, name) if account == tenant_id else None
        if policy is None or policy.path != path:
            raise NoSuchEntity(f"Policy {_shown(arn)} does not exist or is not attachable.")
        return policy

    async def list_policies(self, tenant_id: str) -> list[PolicyRecord]:
        return await self.meta.list_policies(tenant_id)

    async def attachment_count(self, tenant_id: str, policy: PolicyRecord) -> int:
        return await self.meta.policy_attachment_count(tenant_id, policy.name)

    async def delete_policy(self, tenant_id: str, arn: str) -> None:
        policy = await self.get_policy(tenant_id, arn)
        if await self.attachment_count(tenant_id, policy):
            raise DeleteConflict("Cannot delete a policy attached to entities.")
        try:
            await self.meta.delete_policy(tenant_id, policy.name)
        except NotFound as e:
            raise NoSuchEntity(f"Policy {_shown(arn)} does not exist or is not attachable.") from e
        except Conflict as e:
            raise DeleteConflict("Cannot delete a policy attached to entities.") from e
        self.on_change(tenant_id)

    async def attach_policy(self, tenant_id: str, kind: str, owner: str, arn: str) -> None:
        policy = await self.get_policy(tenant_id, arn)
        stored_owner = await self.stored_name(tenant_id, kind, owner)
        async with self._limits:
            attached = await self.meta.list_attached_policies(tenant_id, kind, stored_owner)
            if len(attached) >= MANAGED_POLICIES_PER_ENTITY and \
                    all(p.policy_id != policy.policy_id for p in attached):
                raise LimitExceeded(f"Cannot exceed quota for PoliciesPer{kind.capitalize()}: "
                                    f"{MANAGED_POLICIES_PER_ENTITY}")
            try:
                await self.meta.attach_policy(tenant_id, kind, stored_owner, policy.name)
            except NotFound as e:
                raise NoSuchEntity(f"Policy {_shown(arn)} does not exist or is not attachable.") from e
        self.on_change(tenant_id)

    async def detach_policy(self, tenant_id: str, kind: str, owner: str, arn: str) -> None:
        policy = await self.get_policy(tenant_id, arn)
        stored_owner = await self.stored_name(tenant_id, kind, owner)
        try:
            await self.meta.detach_policy(tenant_id, kind, stored_owner, policy.name)
        except NotFound as e:
            raise NoSuchEntity(f"Policy {_shown(arn)} was not found.") from e
        self.on_change(tenant_id)

    async def list_attached_policies(self, tenant_id: str, kind: str, owner: str) -> list[PolicyRecord]:
        stored_owner = await self.stored_name(tenant_id, kind, owner)
        return await self.meta.list_attached_policies(tenant_id, kind, stored_owner)
