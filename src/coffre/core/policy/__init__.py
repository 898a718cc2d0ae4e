"""The AWS policy language: parse and validate documents, evaluate them against a request.

Public interface (everything else in this package is private):

- ``parse_policy(text, kind, bucket=None)`` -> ``Policy``; raises ``MalformedPolicy`` (kind
  "resource") or ``MalformedPolicyDocument`` (kind "identity") with a message that says what is
  wrong (an identity document over 6,144 non-blank characters: ``LimitExceeded``, as IAM).
  With ``bucket``, a bucket policy may only name that bucket and its objects.
- ``RequestContext``: what one authorisation question is about.
- ``evaluate(policies, ctx, check_principal)`` -> ``Decision``: explicit deny wins, then allow,
  else implicit deny (``Decision.NONE``).
- ``is_public(policy)``: whether a resource policy grants access to everyone (AWS's definition,
  used by Block Public Access and GetBucketPolicyStatus).

How to use::

    policy = parse_policy(text, "resource", bucket="photos")     # once, when stored / cached
    ctx = RequestContext(
        action="s3:GetObject", resource="arn:aws:s3:::photos/cat.jpg",
        principal_arn="arn:aws:iam::111122223333:user/alice", principal_account="111122223333",
        principal_canonical_id="...",
        keys={"aws:sourceip": ["203.0.113.9"], "aws:securetransport": ["true"],
              "aws:username": ["alice"]})                         # lower-case key names
    evaluate([policy], ctx, check_principal=True)                 # Decision.ALLOW / DENY / NONE
    evaluate(identity_policies, ctx, check_principal=False)       # the caller's own policies

A parsed ``Policy`` is immutable and holds compiled matchers: parse once, evaluate many times
(from any task). Evaluation never parses, and costs a few set look-ups and regex matches per
statement. docs/policy-evaluation.md describes the semantics and carries the table of cases
that tests/unit/test_policy_cases.py executes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from coffre.core.policy.document import Statement, parse
from coffre.core.policy.public import any_public

__all__ = ["Decision", "Policy", "RequestContext", "evaluate", "is_public", "parse_policy"]


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
    statements: tuple[Statement, ...] = ()
    version: str = "2012-10-17"  # "2008-10-17" (also when absent): no policy variables
    kind: str = "resource"  # "resource" | "identity"


def parse_policy(text: str, kind: str, bucket: str | None = None) -> Policy:
    """Parse and validate; ``kind`` is "resource" (bucket policy: Principal required) or
    "identity" (user/group/managed policy: Principal forbidden). ``bucket``: the bucket a
    bucket policy is for; its resources must then name that bucket or its objects."""
    version, statements = parse(text, kind, bucket)
    return Policy(text=text, statements=statements, version=version, kind=kind)


def evaluate(policies: Sequence[Policy], ctx: RequestContext, check_principal: bool) -> Decision:
    """Combine statements of every policy: any matching Deny -> DENY, else any matching
    Allow -> ALLOW, else NONE. ``check_principal``: statements must match the caller by their
    Principal / NotPrincipal (resource policies); identity policies apply to their owner."""
    action = ctx.action.lower()
    resource = ctx.resource
    keys = ctx.keys
    allowed = False
    for policy in policies:
        for st in policy.statements:
            if st.allow and allowed:
                continue  # only a Deny can still change the outcome
            if not st.matches_action(action):
                continue
            if check_principal and not st.matches_principal(
                    ctx.principal_arn, ctx.principal_account, ctx.principal_canonical_id):
                continue
            if not st.matches_resource(resource, keys) or not st.holds(keys):
                continue
            if not st.allow:
                return Decision.DENY
            allowed = True
    return Decision.ALLOW if allowed else Decision.NONE


def is_public(policy: Policy) -> bool:
    """Whether an Allow statement reaches everyone (Principal "*" or NotPrincipal) without a
    condition fixing the caller to specific values (AWS's "The meaning of public")."""
    return any_public(policy.statements)
