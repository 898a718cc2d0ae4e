"""POST policy documents: parsing and condition matching (the HTTP side is in tests/s3/test_post_object.py)."""

from __future__ import annotations

import base64
import json

import pytest

from coffre.core import postpolicy
from coffre.core.errors import AccessDenied, EntityTooLarge, EntityTooSmall, InvalidPolicyDocument

EXP = "2030-01-01T00:00:00.000Z"
NOW = 1_700_000_000.0


def enc(doc: object) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def policy(*conditions: object) -> postpolicy.Policy:
    return postpolicy.decode(enc({"expiration": EXP, "conditions": list(conditions)}))


def check(p: postpolicy.Policy, **fields: str) -> None:
    form = [(k.replace("_", "-"), v) for k, v in fields.items()]
    values = {k.lower(): v for k, v in form}
    values["bucket"] = "b"
    postpolicy.check(p, form, values, NOW)


@pytest.mark.parametrize("raw, message", [
    ("not base64!", "Invalid Policy: invalid Base64 encoding."),
    (base64.b64encode(b"not json").decode(), "Invalid Policy: Invalid JSON."),
    (enc([1]), "Invalid Policy: Invalid JSON."),
    (enc({"conditions": []}), "Invalid Policy: Policy missing expiration."),
    (enc({"expiration": EXP}), "Invalid Policy: Policy missing conditions."),
    (enc({"EXPIRATION": EXP, "conditions": []}), "Invalid Policy: Unexpected: 'expiration'"),
    (enc({"expiration": EXP, "conditions": {}}), "Invalid Policy: Invalid 'conditions' value: must be a List."),
    (enc({"expiration": "2030-01-01 00:00:00", "conditions": []}),
     "Invalid Policy: Invalid 'expiration' value: '2030-01-01 00:00:00'"),
    (enc({"expiration": "2030-01-01T00:00:00+02:00", "conditions": []}),
     "Invalid Policy: Invalid 'expiration' value: '2030-01-01T00:00:00+02:00'"),
    (enc({"expiration": EXP, "conditions": [{"a": "1", "b": "2"}]}),
     "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one property specified."),
    (enc({"expiration": EXP, "conditions": [{"a": 1}]}),
     "Invalid Policy: Invalid Simple-Condition: value must be a string."),
    (enc({"expiration": EXP, "conditions": [[]]}), "Invalid Policy: Invalid Condition: missing operation identifier."),
    (enc({"expiration": EXP, "conditions": [["ends-with", "$key", "x"]]}),
     "Invalid Policy: Invalid Condition: unknown operation 'ends-with'."),
    (enc({"expiration": EXP, "conditions": [["eq", "$key"]]}), "Invalid Policy: Invalid eq: wrong number of arguments."),
    (enc({"expiration": EXP, "conditions": [["content-length-range", 0, 512.0]]}), "Invalid Policy: Invalid JSON."),
    (enc({"expiration": EXP, "conditions": ["key"]}), "Invalid Policy: Invalid condition test: must be a List or Object."),
])
def test_invalid_documents(raw, message):
    with pytest.raises(InvalidPolicyDocument) as ei:
        postpolicy.decode(raw)
    assert str(ei.value) == message


def test_expiration():
    p = postpolicy.decode(enc({"expiration": "2023-11-14T22:13:20Z", "conditions": []}))
    assert p.expiration == NOW
    postpolicy.check(p, [], {}, NOW - 1)
    with pytest.raises(AccessDenied, match="Policy expired"):
        postpolicy.check(p, [], {}, NOW)


def test_names_are_case_insensitive_values_are_not():
    p = policy(["StArTs-WiTh", "$KeY", "user/"], {"Content-Type": "image/png"})
    check(p, key="user/a", Content_Type="image/png")
    with pytest.raises(AccessDenied) as ei:
        check(p, key="USER/a", Content_Type="image/png")
    assert str(ei.value) == 'Invalid according to Policy: Policy Condition failed: ["StArTs-WiTh", "$KeY", "user/"]'


def test_simple_conditions_print_as_eq():
    with pytest.raises(AccessDenied) as ei:
        check(policy({"key": "a"}), key="b")
    assert str(ei.value) == 'Invalid according to Policy: Policy Condition failed: ["eq", "$key", "a"]'


def test_absent_field_fails_even_starts_with_empty():
    with pytest.raises(AccessDenied):
        check(policy({"key": "k"}, ["starts-with", "$Content-Type", ""]), key="k")
    check(policy({"key": "k"}, ["starts-with", "$Content-Type", ""]), key="k", Content_Type="")


def test_condition_without_dollar_never_holds():
    with pytest.raises(AccessDenied):
        check(policy(["eq", "key", "k"]), key="k")


def test_content_type_list_must_all_start_with_prefix():
    p = policy({"key": "k"}, ["starts-with", "$Content-Type", "image/"])
    check(p, key="k", Content_Type="image/png, image/jpeg")
    with pytest.raises(AccessDenied):
        check(p, key="k", Content_Type="image/png, text/html")


def test_bucket_condition_uses_the_request_bucket():
    check(policy({"bucket": "b"}, {"key": "k"}), key="k")
    with pytest.raises(AccessDenied):
        check(policy({"bucket": "other"}, {"key": "k"}), key="k")


def test_extra_fields_named_as_sent_in_order():
    p = policy({"key": "k"})
    with pytest.raises(AccessDenied) as ei:
        postpolicy.check(p, [("key", "k"), ("Zeta", "1"), ("alpha", "2"), ("x-ignore-me", "3"), ("Policy", "x")],
                         {"key": "k", "zeta": "1", "alpha": "2"}, NOW)
    assert str(ei.value) == "Invalid according to Policy: Extra input fields: Zeta, alpha"


def test_content_length_range():
    p = policy(["content-length-range", "5", 10], ["content-length-range", 0, 8])
    assert p.length_range() == (5, 8)
    postpolicy.check_size(5, p.length_range())
    postpolicy.check_size(8, p.length_range())
    with pytest.raises(EntityTooSmall) as small:
        postpolicy.check_size(4, p.length_range())
    assert small.value.fields == {"size": 4, "min": 5}
    with pytest.raises(EntityTooLarge):
        postpolicy.check_size(9, p.length_range())
    with pytest.raises(AccessDenied) as ei:
        check(policy(["content-length-range", "test", "10"]), key="k")
    assert str(ei.value).endswith('["content-length-range", "test", "10"]')
