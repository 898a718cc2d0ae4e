"""Who is calling: the authenticated principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    canonical_id: str  # the owning tenant's canonical user id (64 hex), shown as Owner/ID
    name: str  # "root" for a tenant root, else the user name
    access_key_id: str
    display_name: str = ""

    @property
    def arn(self) -> str:
        if self.name == "root":
            return f"arn:aws:iam::{self.tenant_id}:root"
        return f"arn:aws:iam::{self.tenant_id}:user/{self.name}"
