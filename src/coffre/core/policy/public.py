"""Whether a resource policy is "public", in Amazon S3's sense (Block Public Access,
GetBucketPolicyStatus).

AWS ("The meaning of public"): a bucket policy is public unless every statement that grants
(Allow) is limited to fixed principals, or carries a condition that fixes the caller to values
without wildcards of: aws:SourceIp (a set of CIDRs), aws:SourceArn, aws:SourceVpc,
aws:SourceVpce, aws:SourceOwner, aws:SourceAccount, aws:PrincipalAccount, aws:PrincipalOrgID,
aws:PrincipalArn, aws:userid (a fixed id, or a role's "AROLEID:*" sessions),
s3:x-amz-server-side-encryption-aws-kms-key-id, s3:DataAccessPointArn,
s3:DataAccessPointAccount.

A grant is to "everyone" when its Principal is ``*`` / ``{"AWS": "*"}``, or when it uses
NotPrincipal (everyone but the listed). Only positive operators fix a value: a negated one, an
``...IfExists`` one or ``ForAllValues:`` is satisfied by a request without the key. An
aws:SourceIp range wider than an IPv4 /8 or an IPv6 /32 (0.0.0.0/0 and ::/0 included) does
not fix anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from coffre.core.policy.conditions import Condition, Network
from coffre.core.policy.document import Statement
from coffre.core.policy.matching import Pattern, Token, Variable, Wildcard

_FIXING_KEYS = frozenset({
    "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceowner", "aws:sourceaccount",
    "aws:principalaccount", "aws:principalorgid", "aws:principalarn", "aws:userid",
    "s3:x-amz-server-side-encryption-aws-kms-key-id", "s3:dataaccesspointarn",
    "s3:dataaccesspointaccount",
})
_FIXING_FAMILIES = frozenset({"string_equals", "string_equals_ic", "string_like", "arn"})
_MIN_PREFIX = {4: 8, 6: 32}


def _tokens(value: object) -> tuple[Token, ...]:
    if isinstance(value, Pattern):
        return value.tokens
    assert isinstance(value, tuple)
    return value


def _fixed(tokens: tuple[Token, ...], key: str) -> bool:
    if any(isinstance(t, Variable) for t in tokens):
        return False
    wild = [i for i, t in enumerate(tokens) if isinstance(t, Wildcard)]
    if not wild:
        return True
    # aws:userid "AROLEID:*": every session of one role is still a fixed principal.
    return (key == "aws:userid" and wild == [len(tokens) - 1] and len(tokens) == 2
            and isinstance(tokens[0], str) and tokens[0].endswith(":") and len(tokens[0]) > 1)


def _restricts(condition: Condition) -> bool:
    if condition.negated or condition.if_exists or condition.qualifier == "forallvalues":
        return False
    if condition.key == "aws:sourceip":
        if condition.family != "ip":
            return False
        networks = [v.network for v in condition.values if isinstance(v, Network)]
        return all(n.prefixlen >= _MIN_PREFIX[n.version] for n in networks)
    if condition.key in _FIXING_KEYS and condition.family in _FIXING_FAMILIES:
        return all(_fixed(_tokens(v), condition.key) for v in condition.values)
    return False


def statement_is_public(statement: Statement) -> bool:
    if not statement.allow:
        return False
    principals = statement.principals
    if principals is None:
        return False
    if statement.not_principal:
        if principals.everyone:
            return False
    elif not principals.everyone:
        return False
    return not any(_restricts(c) for c in statement.conditions)


def any_public(statements: Iterable[Statement]) -> bool:
    return any(statement_is_public(s) for s in statements)
