"""The policy engine's API: evaluation across several policies, variables, the request
context's shapes, and that evaluation reuses what parsing compiled.

The semantics themselves are pinned by docs/policy-evaluation.md's table
(test_policy_cases.py); parse errors by test_policy_parse.py."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from coffre.core.policy import (
    Decision,
    Policy,
    RequestContext,
    document,
    evaluate,
    is_public,
    matching,
    parse_policy,
)

ALICE = dict(principal_arn="arn:aws:iam::111122223333:user/alice", principal_account="111122223333",
             principal_canonical_id="a" * 64)


def identity(*statements: dict[str, Any], version: str = "2012-10-17") -> Policy:
    return parse_policy(json.dumps({"Version": version, "Statement": list(statements)}), "identity")


def ctx(action: str = "s3:GetObject", resource: str = "arn:aws:s3:::b/k", **keys: Any) -> RequestContext:
    """Keys as keyword arguments: ``aws__username`` is "aws:username", other "_" are "-"."""
    return RequestContext(action=action, resource=resource,
                          keys={k.replace("__", ":").replace("_", "-"): v for k, v in keys.items()}, **ALICE)


def test_deny_in_any_policy_wins() -> None:
    allow = identity({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    deny = identity({"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})
    assert evaluate([allow], ctx(), False) is Decision.ALLOW
    assert evaluate([allow, deny], ctx(), False) is Decision.DENY
    assert evaluate([deny, allow], ctx(), False) is Decision.DENY
    assert evaluate([], ctx(), False) is Decision.NONE


def test_policy_is_immutable_and_keeps_its_text() -> None:
    text = json.dumps({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}})
    policy = parse_policy(text, "identity")
    assert policy.text == text and policy.kind == "identity" and policy.version == "2012-10-17"
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.text = "{}"  # type: ignore[misc]


def test_single_string_key_values_are_accepted() -> None:
    """A key given as a plain string (not a list) is one value, not a list of characters."""
    policy = identity({"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                       "Condition": {"StringEquals": {"s3:x-amz-acl": "private"}}})
    assert evaluate([policy], ctx(s3__x_amz_acl="private"), False) is Decision.ALLOW
    assert evaluate([policy], ctx(s3__x_amz_acl="p"), False) is Decision.NONE


def test_variables_in_condition_values() -> None:
    policy = identity({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
                       "Condition": {"StringEquals": {"s3:prefix": ["home/${aws:username}/", "${$}shared"]}}})
    list_ctx = {"action": "s3:ListBucket", "resource": "arn:aws:s3:::b", "aws__username": ["alice"]}
    assert evaluate([policy], ctx(**list_ctx, s3__prefix=["home/alice/"]), False) is Decision.ALLOW
    assert evaluate([policy], ctx(**list_ctx, s3__prefix=["$shared"]), False) is Decision.ALLOW
    assert evaluate([policy], ctx(**list_ctx, s3__prefix=["home/bob/"]), False) is Decision.NONE


def test_variable_defaults_and_quotes() -> None:
    policy = identity({"Effect": "Allow", "Action": "s3:*",
                       "Resource": "arn:aws:s3:::b/${aws:PrincipalTag/team, 'it''s'}/*"})
    assert evaluate([policy], ctx(resource="arn:aws:s3:::b/it's/x"), False) is Decision.ALLOW
    tagged = ctx(resource="arn:aws:s3:::b/red/x", **{"aws:principaltag/team": ["red"]})
    assert evaluate([policy], tagged, False) is Decision.ALLOW  # the key name is case-insensitive


def test_multi_valued_key_is_not_a_variable() -> None:
    policy = identity({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:TagKeys}"})
    assert evaluate([policy], ctx(resource="arn:aws:s3:::b/x", aws__tagkeys=["x"]), False) is Decision.ALLOW
    assert evaluate([policy], ctx(resource="arn:aws:s3:::b/x", aws__tagkeys=["x", "y"]), False) is Decision.NONE


def test_unresolved_variable_in_not_resource_does_not_apply() -> None:
    deny = identity({"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::b/${aws:username}/*"},
                    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    assert evaluate([deny], ctx(resource="arn:aws:s3:::b/bob/x", aws__username=["alice"]), False) is Decision.DENY
    assert evaluate([deny], ctx(resource="arn:aws:s3:::b/alice/x", aws__username=["alice"]), False) is Decision.ALLOW
    assert evaluate([deny], ctx(resource="arn:aws:s3:::b/bob/x"), False) is Decision.ALLOW


def test_identity_policy_not_public() -> None:
    assert not is_public(identity({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}))


def test_principal_checked_only_when_asked() -> None:
    policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Principal": {"AWS": "444455556666"}, "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::b/*"}}), "resource", bucket="b")
    assert evaluate([policy], ctx(), True) is Decision.NONE
    assert evaluate([policy], ctx(), False) is Decision.ALLOW


def _ten_statement_policy() -> Policy:
    statements = [{"Sid": f"S{i}", "Effect": "Allow", "Principal": {"AWS": f"44445555{i:04d}"},
                   "Action": ["s3:Get*", "s3:List*"], "Resource": [f"arn:aws:s3:::b/p{i}/*", "arn:aws:s3:::b"],
                   "Condition": {"StringLike": {"s3:prefix": f"p{i}/*"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
                  for i in range(9)]
    statements.append({"Sid": "Deny", "Effect": "Deny", "Principal": "*", "NotAction": "s3:Get*",
                       "Resource": "arn:aws:s3:::b/*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": statements}), "resource", bucket="b")


def test_evaluation_reuses_compiled_matchers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything evaluation needs is compiled at parse time: with the parser's and the
    compiler's entry points made to fail, evaluating a 10-statement policy still works."""
    policy = _ten_statement_policy()
    for st in policy.statements:
        assert all(not p.dynamic for p in st.resources)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("evaluation parsed or compiled something")

    monkeypatch.setattr(document.json, "loads", refuse)
    monkeypatch.setattr(document, "parse", refuse)
    monkeypatch.setattr(matching, "tokenize", refuse)
    monkeypatch.setattr(re, "compile", refuse)
    monkeypatch.setattr(re, "fullmatch", refuse)
    keys = {"s3:prefix": ["p8/x"], "aws:sourceip": ["10.1.2.3"], "aws:securetransport": ["true"]}
    request = RequestContext(action="s3:ListBucket", resource="arn:aws:s3:::b", keys=keys,
                             principal_arn="arn:aws:iam::444455550008:root", principal_account="444455550008")
    for _ in range(100):
        assert evaluate([policy], request, True) is Decision.ALLOW
    denied = dataclasses.replace(request, action="s3:PutObject", resource="arn:aws:s3:::b/k",
                                 keys={**keys, "aws:securetransport": ["false"]})
    assert evaluate([policy], denied, True) is Decision.DENY


def _reference(pattern: str, value: str, arn: bool) -> bool:
    """The wildcard semantics spelled naively (exponential in the number of stars, fine for
    short texts): in an ARN a wildcard in the first five parts stays in its part, unless the
    pattern has fewer than six parts and ends with "*"."""
    free_all = not arn or (pattern.count(":") < 5 and pattern.endswith("*"))
    source, colons = [], 0
    for ch in pattern:
        free = free_all or colons >= 5
        if ch == "*":
            source.append(".*" if free else "[^:]*")
        elif ch == "?":
            source.append("." if free else "[^:]")
        else:
            colons += ch == ":"
            source.append(re.escape(ch))
    return re.fullmatch("".join(source), value, re.DOTALL) is not None


@pytest.mark.parametrize("arn", [False, True])
def test_wildcards_agree_with_the_naive_semantics(arn: bool) -> None:
    import random

    rng = random.Random(20261130)
    for _ in range(4000):
        pattern = "".join(rng.choice("a:b/*?*:") for _ in range(rng.randint(0, 12)))
        value = "".join(rng.choice("ab:/") for _ in range(rng.randint(0, 14)))
        compiled = matching.Pattern(matching.tokenize(pattern, variables=False), arn=arn)
        assert compiled.matches(value, {}) is _reference(pattern, value, arn), (pattern, value)


def test_many_wildcards_do_not_backtrack_exponentially() -> None:
    """A policy's stars against a long key: a naive regex would take hours here."""
    policy = identity({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/x" + "*a" * 12 + "*b"},
                      {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                       "Condition": {"StringLike": {"s3:prefix": "x" + "*a" * 12 + "*b"}}})
    long_key = "x" + "a" * 1000
    assert evaluate([policy], ctx(resource="arn:aws:s3:::b/" + long_key), False) is Decision.NONE
    assert evaluate([policy], ctx(s3__prefix=[long_key]), False) is Decision.NONE
    assert evaluate([policy], ctx(s3__prefix=[long_key + "b"]), False) is Decision.ALLOW
    with pytest.raises(Exception, match="Policy has invalid action"):
        parse_policy(json.dumps({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:" + "*e" * 30 + "x",
                                               "Resource": "*"}}), "resource")
