"""Authorisation: may this principal (or the anonymous caller) do this action on this resource?

Combines, as AWS does, the caller's identity policies (inline, managed, group), the bucket
policy, ACLs and Block Public Access, with tenant boundaries: explicit deny wins; inside a
tenant an allow on either side suffices; across tenants both sides must allow; anonymous
callers only reach what a public policy or ACL opens and Block Public Access does not block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from coffre.core.identity import Principal
from coffre.core.policy import Policy
from coffre.meta.base import MetadataStore


class AccessControl:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    async def identity_policies(self, principal: Principal) -> Sequence[Policy]:
        """The parsed policies that apply to a tenant user (none for a root or anonymous caller);
        cached until ``forget`` is called for its tenant."""
        raise NotImplementedError

    async def check_identity(self, principal: Principal, action: str, resource: str,
                             keys: Mapping[str, Sequence[str]] | None = None) -> None:
        """For actions on a tenant's own non-S3 resources (IAM): a tenant root may do anything in
        its tenant; a user needs an identity-policy Allow and no Deny. Raises AccessDenied."""
        raise NotImplementedError

    def forget(self, tenant_id: str) -> None:
        """Drop what is cached for a tenant (its identities' policies changed)."""
