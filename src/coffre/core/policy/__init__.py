"""The AWS policy language: parse and validate documents, evaluate them against a request.

Public interface (everything else in this package is private):

- ``parse_policy(text, kind)`` -> ``Policy``; raises ``MalformedPolicy`` (kind "resource") or
  ``MalformedPolicyDocument`` (kind "identity") with a message that says what is wrong.
- ``RequestContext``: what one authorisation question is about.
- ``evaluate(policies, ctx, check_principal)`` -> ``Decision``: explicit deny wins, then allow,
  else implicit deny (``Decision.NONE``).
- ``is_public(policy)``: whether a resource policy grants access to everyone (AWS's definition,
  used by Block Public Access and GetBucketPolicyStatus).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class Decision(enum.Enum):
    NONE = "none"  # no statement applies: implicit deny
    ALLOW = "allow"
    DENY = "deny"  # an explicit deny


@dataclass(frozen=True, slots=True)
class RequestContext:
    action: str  # "s3:GetObject", "iam:CreateUser"...
    resource: str  # "arn:aws:s3:::bucket", "arn:aws:s3:::bucket/key", "arn:aws:iam::ACCOUNT:user/alice"
    # The caller; all None for an anonymous request.
    principal_arn: str | None = None  # arn:aws:iam::ACCOUNT:root | arn:aws:iam::ACCOUNT:user/NAME
    principal_account: str | None = None  # the tenant id (12 digits)
    principal_canonical_id: str | None = None
    # Condition keys and their values, names lower-cased ("aws:sourceip", "s3:prefix",
    # "aws:principaltag/team", "s3:existingobjecttag/project"...). A key absent from the map is
    # absent from the request (the Null operator and ...IfExists see that).
    keys: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed, validated policy document (opaque outside this package)."""

    text: str
    statements: tuple[object, ...] = ()


def parse_policy(text: str, kind: str) -> Policy:
    """Parse and validate; ``kind`` is "resource" (bucket policy: Principal required) or
    "identity" (user/group/managed policy: Principal forbidden)."""
    raise NotImplementedError


def evaluate(policies: Sequence[Policy], ctx: RequestContext, check_principal: bool) -> Decision:
    """Combine statements of every policy: any matching Deny -> DENY, else any matching
    Allow -> ALLOW, else NONE. ``check_principal``: statements must match the caller by their
    Principal / NotPrincipal (resource policies); identity policies apply to their owner."""
    raise NotImplementedError


def is_public(policy: Policy) -> bool:
    raise NotImplementedError
