"""A tenant's identities: users, groups, access keys, inline and managed policies.

One service for both front ends: the IAM API on the S3 endpoint (a tenant manages itself) and
the admin API (an operator acts on a tenant). Every method is scoped to ``tenant_id``; names
are checked against IAM's rules and limits; policy documents are validated with
``coffre.core.policy.parse_policy(..., "identity")``. Errors are the IAM ones in core/errors.py
(NoSuchEntity, EntityAlreadyExists, DeleteConflict, MalformedPolicyDocument, LimitExceeded,
ValidationError). ``on_change(tenant_id)`` is called after every change that can alter an
authorisation (keys, policies, memberships), so caches drop what they hold for that tenant.
"""

from __future__ import annotations

from collections.abc import Callable

from coffre.core.keyring import Keyring
from coffre.meta.base import MetadataStore
from coffre.meta.records import AccessKeyRecord, GroupRecord, PolicyRecord, UserRecord

ROOT_USER = "root"  # the principal name of a tenant's root in access keys


class IamService:
    def __init__(self, meta: MetadataStore, keyring: Keyring, on_change: Callable[[str], None]) -> None:
        self.meta = meta
        self.keyring = keyring
        self.on_change = on_change

    # -- users --
    async def create_user(self, tenant_id: str, name: str, path: str = "/",
                          tags: dict[str, str] | None = None) -> UserRecord:
        raise NotImplementedError

    async def get_user(self, tenant_id: str, name: str) -> UserRecord:
        raise NotImplementedError

    async def list_users(self, tenant_id: str, path_prefix: str = "/") -> list[UserRecord]:
        raise NotImplementedError

    async def delete_user(self, tenant_id: str, name: str) -> None:
        raise NotImplementedError

    # -- access keys (user ROOT_USER = the tenant root) --
    async def create_access_key(self, tenant_id: str, user: str) -> tuple[AccessKeyRecord, str]:
        """A new active key and its secret (shown once, never stored in plaintext)."""
        raise NotImplementedError

    async def list_access_keys(self, tenant_id: str, user: str | None) -> list[AccessKeyRecord]:
        raise NotImplementedError

    async def update_access_key(self, tenant_id: str, access_key_id: str, status: str) -> None:
        """status "Active" | "Inactive" (IAM spelling)."""
        raise NotImplementedError

    async def delete_access_key(self, tenant_id: str, access_key_id: str) -> None:
        raise NotImplementedError

    # -- groups --
    async def create_group(self, tenant_id: str, name: str, path: str = "/") -> GroupRecord:
        raise NotImplementedError

    async def get_group(self, tenant_id: str, name: str) -> tuple[GroupRecord, list[UserRecord]]:
        raise NotImplementedError

    async def list_groups(self, tenant_id: str, path_prefix: str = "/") -> list[GroupRecord]:
        raise NotImplementedError

    async def delete_group(self, tenant_id: str, name: str) -> None:
        raise NotImplementedError

    async def add_user_to_group(self, tenant_id: str, group: str, user: str) -> None:
        raise NotImplementedError

    async def remove_user_from_group(self, tenant_id: str, group: str, user: str) -> None:
        raise NotImplementedError

    async def list_groups_for_user(self, tenant_id: str, user: str) -> list[GroupRecord]:
        raise NotImplementedError

    # -- inline policies (kind "user" | "group") --
    async def put_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str, document: str) -> None:
        raise NotImplementedError

    async def get_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str) -> str:
        raise NotImplementedError

    async def delete_inline_policy(self, tenant_id: str, kind: str, owner: str, name: str) -> None:
        raise NotImplementedError

    async def list_inline_policies(self, tenant_id: str, kind: str, owner: str) -> list[str]:
        raise NotImplementedError

    # -- managed policies (ARN arn:aws:iam::TENANT:policy/PATHNAME) --
    async def create_policy(self, tenant_id: str, name: str, document: str, path: str = "/",
                            description: str = "") -> PolicyRecord:
        raise NotImplementedError

    async def get_policy(self, tenant_id: str, arn: str) -> PolicyRecord:
        raise NotImplementedError

    async def list_policies(self, tenant_id: str) -> list[PolicyRecord]:
        raise NotImplementedError

    async def delete_policy(self, tenant_id: str, arn: str) -> None:
        raise NotImplementedError

    async def attach_policy(self, tenant_id: str, kind: str, owner: str, arn: str) -> None:
        raise NotImplementedError

    async def detach_policy(self, tenant_id: str, kind: str, owner: str, arn: str) -> None:
        raise NotImplementedError

    async def list_attached_policies(self, tenant_id: str, kind: str, owner: str) -> list[PolicyRecord]:
        raise NotImplementedError
