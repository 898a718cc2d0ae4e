"""parse_policy refuses what AWS refuses, with a message that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coffre.core.errors import LimitExceeded, MalformedPolicy, MalformedPolicyDocument
from coffre.core.policy import parse_policy

ALLOW_ALL = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
IDENTITY = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}


def bucket_policy(*statements: dict[str, Any], **top: Any) -> str:
    doc: dict[str, Any] = {"Version": "2012-10-17", "Statement": list(statements)}
    doc.update(top)
    return json.dumps(doc)


def statement(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {k: v for k, v in base.items() if k not in changes}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


def resource_error(text: str, bucket: str | None = "b") -> str:
    with pytest.raises(MalformedPolicy) as info:
        parse_policy(text, "resource", bucket=bucket)
    return str(info.value)


def identity_error(text: str) -> str:
    with pytest.raises(MalformedPolicyDocument) as info:
        parse_policy(text, "identity")
    return str(info.value)


# -- JSON and the document --

@pytest.mark.parametrize("text", ["", "   ", "[]", "null", "x{}", '"{}"'])
def test_not_an_object(text: str) -> None:
    assert resource_error(text) == "Policies must be valid JSON and the first byte must be '{'"
    assert identity_error(text) == "Syntax errors in policy."


@pytest.mark.parametrize("text", ["{", '{"Version": }', '{"a": NaN}', "{'Version': '2012-10-17'}", "{} {}"])
def test_invalid_json(text: str) -> None:
    assert resource_error(text) == "This policy contains invalid Json"
    assert identity_error(text) == "Syntax errors in policy."


def test_duplicate_keys_are_refused() -> None:
    text = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Effect":"Deny","Principal":"*",' \
           '"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}'
    assert resource_error(text) == "Duplicate field Effect in policy"


def test_resource_policy_size_limit() -> None:
    sid_pad = "x" * 20_000
    text = bucket_policy(statement(ALLOW_ALL, Sid=sid_pad))
    assert len(text) <= 20 * 1024
    parse_policy(text, "resource", bucket="b")
    text = bucket_policy(statement(ALLOW_ALL, Sid=sid_pad + "y" * 500))
    assert resource_error(text) == "Policy exceeds the maximum allowed document size."


def test_identity_policy_size_limit_ignores_blanks() -> None:
    resources = [f"arn:aws:s3:::b/{i:05d}" for i in range(300)]
    compact = json.dumps({"Version": "2012-10-17", "Statement": [statement(IDENTITY, Resource=resources)]},
                         separators=(",", ":"))
    assert len(compact) > 6144
    with pytest.raises(LimitExceeded) as info:
        parse_policy(compact, "identity")
    assert str(info.value) == "Cannot exceed quota for PolicySize: 6144"
    small = json.dumps({"Version": "2012-10-17", "Statement": [statement(IDENTITY, Resource=resources[:150])]},
                       indent=8)
    assert len(small) > 6144  # blanks do not count
    parse_policy(small, "identity")


def test_unknown_fields() -> None:
    assert resource_error(bucket_policy(ALLOW_ALL, Comment="x")) == "Unknown field Comment"
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Principle="*"))) == "Unknown field Principle"
    assert identity_error(json.dumps({"Statement": [statement(IDENTITY, effect="Allow")]})) == "Unknown field effect"


def test_version() -> None:
    assert resource_error(bucket_policy(ALLOW_ALL, Version="2010-01-01")) == "Invalid Version 2010-01-01"
    assert identity_error(json.dumps({"Version": "2012-10-18", "Statement": IDENTITY})) == \
        "The policy failed legacy parsing"
    assert parse_policy(json.dumps({"Statement": ALLOW_ALL}), "resource").version == "2008-10-17"
    assert parse_policy(bucket_policy(ALLOW_ALL, Version="2008-10-17"), "resource").version == "2008-10-17"
    assert resource_error(bucket_policy(ALLOW_ALL, Id=5)) == "Id must be a string"


def test_statement_element() -> None:
    assert resource_error(json.dumps({"Version": "2012-10-17"})) == "Missing required field Statement"
    assert resource_error(json.dumps({"Version": "2012-10-17", "Statement": []})) == "Missing required field Statement"
    assert resource_error(json.dumps({"Statement": "x"})) == "Missing required field Statement"
    assert resource_error(json.dumps({"Statement": ["x"]})) == "Statement must be an object"
    # a single statement object is accepted as well as a list
    assert len(parse_policy(json.dumps({"Statement": ALLOW_ALL}), "resource").statements) == 1


def test_sid() -> None:
    a, b = statement(ALLOW_ALL, Sid="same"), statement(ALLOW_ALL, Sid="same")
    assert resource_error(bucket_policy(a, b)) == "Statement IDs (SID) in a single policy must be unique."
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Sid=3))) == "Sid must be a string"
    parse_policy(bucket_policy(statement(ALLOW_ALL, Sid="public read, 2026")), "resource")  # S3 is lenient
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, Sid="not alnum")})).startswith(
        "Statement IDs (SID) must be alpha-numeric.")


def test_effect() -> None:
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Effect=None))) == "Missing required field Effect"
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Effect="allow"))) == "Invalid effect: allow"
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, Effect="Permit")})) == "Invalid effect: Permit"
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Effect=1))) == "Invalid effect: 1"


# -- principals --

def test_principal_required_in_bucket_policy() -> None:
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Principal=None))) == "Missing required field Principal"
    both = statement(ALLOW_ALL, NotPrincipal={"AWS": "111122223333"})
    assert resource_error(bucket_policy(both)) == "Statement cannot contain both Principal and NotPrincipal"


def test_principal_forbidden_in_identity_policy() -> None:
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, Principal="*")})) == \
        "Has prohibited field Principal"
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, NotPrincipal="*")})) == \
        "Has prohibited field NotPrincipal"


@pytest.mark.parametrize("principal", [
    "**", "arn:aws:iam::111122223333:root", {}, [], {"AWS": []}, {"AWS": 111122223333},
    {"AWS": "alice"}, {"AWS": "arn:aws:iam::*:root"}, {"AWS": "arn:aws:iam::111122223333:user/*"},
    {"AWS": "11112222333"}, {"Foo": "x"}, {"CanonicalUser": "xyz"}, {"CanonicalUser": "*"},
    {"Service": "bad service"},
])
def test_invalid_principal(principal: Any) -> None:
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Principal=principal))) == "Invalid principal in policy"


@pytest.mark.parametrize("principal", [
    "*", {"AWS": "*"}, {"AWS": "111122223333"}, {"AWS": ["arn:aws:iam::111122223333:root",
                                                       "arn:aws:iam::444455556666:user/path/bob"]},
    {"CanonicalUser": "a" * 64}, {"Service": "logging.s3.amazonaws.com"},
    {"Federated": "cognito-identity.amazonaws.com"},
])
def test_valid_principal(principal: Any) -> None:
    parse_policy(bucket_policy(statement(ALLOW_ALL, Principal=principal)), "resource", bucket="b")


# -- actions --

def test_action_required() -> None:
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Action=None))) == "Missing required field Action"
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, Action=None)})) == \
        "Policy statement must contain actions."
    both = statement(ALLOW_ALL, NotAction="s3:PutObject")
    assert resource_error(bucket_policy(both)) == "Statement cannot contain both Action and NotAction"


@pytest.mark.parametrize("action", ["iam:CreateUser", "s3:GetObjekt", "s3:Foo*", "GetObject", [], 5, "s3:Get Object",
                                    ["s3:GetObject", "sqs:SendMessage"], "s3:"])
def test_invalid_action_in_bucket_policy(action: Any) -> None:
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Action=action))) == "Policy has invalid action"


@pytest.mark.parametrize("action", ["*", "s3:*", "S3:getobject", "s3:Get*", "s3:?etObject", "s3:ListBucket",
                                    "s3:PutBucketPolicy", "s3:GetObjectVersion", "s3:ListAllMyBuckets"])
def test_valid_action_in_bucket_policy(action: Any) -> None:
    st = statement(ALLOW_ALL, Action=action, Resource=["arn:aws:s3:::b", "arn:aws:s3:::b/*"])
    parse_policy(bucket_policy(st), "resource", bucket="b")


@pytest.mark.parametrize(("action", "resource"), [
    ("s3:GetObject", "arn:aws:s3:::b"), ("s3:ListBucket", "arn:aws:s3:::b/*"),
    (["s3:PutObject", "s3:DeleteObject"], ["arn:aws:s3:::b"]), ("s3:GetObject*", "arn:aws:s3:::b"),
    ("s3:GetBucketObjectLockConfiguration", "arn:aws:s3:::b/*"),
])
def test_action_must_apply_to_a_resource(action: Any, resource: Any) -> None:
    st = statement(ALLOW_ALL, Action=action, Resource=resource)
    assert resource_error(bucket_policy(st)) == "Action does not apply to any resource(s) in statement"


@pytest.mark.parametrize(("action", "resource"), [
    ("s3:*", "arn:aws:s3:::b"), ("s3:Get*", "arn:aws:s3:::b"), (["s3:GetObject", "s3:ListBucket"], "arn:aws:s3:::b"),
    ("s3:GetObject", "arn:aws:s3:::b*"), ("s3:ListBucket", "*"), ("s3:ListBucket", ["arn:aws:s3:::b/*", "arn:aws:s3:::b"]),
])
def test_action_applies_to_some_resource(action: Any, resource: Any) -> None:
    parse_policy(bucket_policy(statement(ALLOW_ALL, Action=action, Resource=resource)), "resource", bucket="b")
    # NotAction / NotResource are not checked: they name what a statement does not cover
    parse_policy(bucket_policy(statement(ALLOW_ALL, Action=None, NotAction=action, Resource=resource)), "resource")


def test_actions_in_identity_policy() -> None:
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, Action="GetObject")})) == \
        "Actions/Conditions must be prefaced by a vendor, e.g., iamadmin, AWS, etc."
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, Action="s3:Get Object")})) == \
        "Action s3:Get Object is not valid."
    # IAM does not check that an action exists
    parse_policy(json.dumps({"Statement": statement(IDENTITY, Action=["iam:CreateUser", "sts:GetCallerIdentity",
                                                                     "s3:NotYetInvented"])}), "identity")


# -- resources --

def test_resource_required() -> None:
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Resource=None))) == "Missing required field Resource"
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, Resource=None)})) == \
        "Policy statement must contain resources."
    both = statement(ALLOW_ALL, NotResource="arn:aws:s3:::b/x")
    assert resource_error(bucket_policy(both)) == "Statement cannot contain both Resource and NotResource"


@pytest.mark.parametrize("resource", ["arn:aws:s3:::other/*", "arn:aws:s3:::other", "arn:aws:s3:::bb/*",
                                      "arn:aws:s3:::", "arn:aws:iam::111122223333:user/alice", "b/*", [],
                                      "arn:aws:s3:::o*", "arn:aws:s3:::b/${aws:username"])
def test_invalid_resource_in_bucket_policy(resource: Any) -> None:
    assert resource_error(bucket_policy(statement(ALLOW_ALL, Resource=resource))) == "Policy has invalid resource"


@pytest.mark.parametrize("resource", ["*", "arn:aws:s3:::b", "arn:aws:s3:::b/*", "arn:aws:s3:::b*",
                                      "arn:aws:s3:::*/*", "arn:aws:s3:::?", "arn:aws:s3:::*",
                                      "arn:aws:s3:::b/home/${aws:username}/*", ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]])
def test_valid_resource_in_bucket_policy(resource: Any) -> None:
    st = statement(ALLOW_ALL, Action=["s3:GetObject", "s3:ListBucket"], Resource=resource)
    parse_policy(bucket_policy(st), "resource", bucket="b")


def test_bucket_check_needs_the_bucket() -> None:
    text = bucket_policy(statement(ALLOW_ALL, Resource="arn:aws:s3:::other/*"))
    parse_policy(text, "resource")  # without a bucket, only the shape is checked
    assert resource_error(text, bucket="b") == "Policy has invalid resource"


def test_not_resource_is_checked_too() -> None:
    st = statement(ALLOW_ALL, Resource=None, NotResource="arn:aws:s3:::other/*")
    assert resource_error(bucket_policy(st)) == "Policy has invalid resource"


def test_resources_in_identity_policy() -> None:
    assert identity_error(json.dumps({"Statement": statement(IDENTITY, Resource="b/*")})) == \
        'Resource b/* must be in ARN format or "*".'
    parse_policy(json.dumps({"Statement": statement(IDENTITY, Resource=["*", "arn:aws:iam::111122223333:user/*",
                                                                       "arn:aws:s3:::any/*"])}), "identity")


# -- conditions --

def cond(condition: Any) -> str:
    return bucket_policy(statement(ALLOW_ALL, Condition=condition))


def test_condition_shape() -> None:
    assert resource_error(cond([])) == "Condition must be an object of condition operators"
    assert resource_error(cond({"StringEquals": "x"})) == \
        "Condition operator StringEquals must map condition keys to values"
    assert resource_error(cond({"StringEquals": {}})) == \
        "Condition operator StringEquals must map condition keys to values"
    for value in ({"a": 1}, [], None, [["x"]], [None]):
        assert resource_error(cond({"StringEquals": {"s3:prefix": value}})).startswith(
            "Invalid value for condition key s3:prefix")


@pytest.mark.parametrize("key", ["prefix", ":prefix", "s3:", "s3:prefix ", "s 3:prefix"])
def test_invalid_condition_key(key: str) -> None:
    assert resource_error(cond({"StringEquals": {key: "x"}})) == "Policy has an invalid condition key"


@pytest.mark.parametrize("operator", ["StringEqualz", "NullIfExists", "ForSomeValues:StringEquals",
                                      "IfExists", "StringEqualsIfExistsIfExists", "ForAnyValue:"])
def test_unknown_condition_operator(operator: str) -> None:
    assert resource_error(cond({operator: {"s3:prefix": "x"}})) == f"Unknown condition operator {operator}"
    doc = json.dumps({"Statement": statement(IDENTITY, Condition={operator: {"s3:prefix": "x"}})})
    assert identity_error(doc) == f"Unknown condition operator {operator}"


@pytest.mark.parametrize("operator", ["StringEquals", "stringequals", "ForAnyValue:StringLike",
                                      "ForAllValues:StringNotEqualsIgnoreCaseIfExists", "NumericLessThanIfExists",
                                      "DateGreaterThanEquals", "BoolIfExists", "ArnNotLike", "Null"])
def test_known_condition_operators(operator: str) -> None:
    value = {"numeric": "10", "date": "2026-01-01T00:00:00Z", "null": "true"}.get(
        next((p for p in ("numeric", "date", "null") if p in operator.lower()), ""), "x")
    parse_policy(cond({operator: {"s3:prefix": value}}), "resource", bucket="b")


def test_condition_values_must_fit_the_operator() -> None:
    assert resource_error(cond({"NumericLessThan": {"s3:max-keys": "ten"}})) == \
        "Invalid numeric value 'ten' for condition operator NumericLessThan"
    assert resource_error(cond({"DateLessThan": {"aws:CurrentTime": "yesterday"}})) == \
        "Invalid date value 'yesterday' for condition operator DateLessThan"
    assert resource_error(cond({"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}})) == \
        "Invalid IP address or CIDR '10.0.0.300/8' in condition"
    assert resource_error(cond({"BinaryEquals": {"aws:x": "not base64!"}})) == \
        "Invalid base64 value 'not base64!' for BinaryEquals"
    assert resource_error(cond({"Null": {"aws:x": "maybe"}})) == \
        "Invalid value 'maybe' for the Null condition operator: true or false"
    assert resource_error(cond({"StringLike": {"s3:prefix": "${aws:username"}})) == \
        "Invalid policy variable in condition value '${aws:username'"


def test_malformed_variables_are_plain_text_in_2008_documents() -> None:
    doc = json.dumps({"Version": "2008-10-17", "Statement": statement(
        ALLOW_ALL, Condition={"StringLike": {"s3:prefix": "${aws:username"}})})
    parse_policy(doc, "resource", bucket="b")


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        parse_policy(bucket_policy(ALLOW_ALL), "bucket")
