"""Who is calling: the authenticated principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """A tenant identity (its root or one of its users), or the anonymous caller."""

    tenant_id: str  # "" for the anonymous caller
    canonical_id: str  # the owning tenant's canonical user id (64 hex), shown as Owner/ID
    name: str  # "root" for a tenant root, else the user name ("anonymous" for ANONYMOUS)
    access_key_id: str
    display_name: str = ""
    user_id: str = ""  # the IAM user id (AIDA...); the tenant id for a tenant root
    tags: tuple[tuple[str, str], ...] = ()  # the user's tags (aws:PrincipalTag/...)

    @property
    def is_root(self) -> bool:
        return self.name == "root" and bool(self.tenant_id)

    @property
    def is_anonymous(self) -> bool:
        return not self.tenant_id

    @property
    def arn(self) -> str:
        if self.is_anonymous:
            return "*"
        if self.name == "root":
            return f"arn:aws:iam::{self.tenant_id}:root"
        return f"arn:aws:iam::{self.tenant_id}:user/{self.name}"


# The caller of an unsigned request: it reaches only what a public policy or ACL opens.
ANONYMOUS = Principal(tenant_id="", canonical_id="", name="anonymous", access_key_id="")


@dataclass(frozen=True, slots=True)
class Operator:
    """An identity of the operator plane: it administers tenants, never acts inside one on S3."""

    name: str
    access_key_id: str = ""  # "" when authenticated by password + TOTP session
