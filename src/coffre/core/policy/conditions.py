"""Condition operators: parsed once into ``Condition`` objects, evaluated per request.

Semantics (AWS "IAM JSON policy elements: Condition operators", "Conditions with multiple
context keys or values", "Single-valued vs. multivalued context keys"):

- several operators, and several keys under one operator, are ANDed; several values for one
  key are ORed, and for a negated operator (StringNotEquals, NotIpAddress...) NORed: a negated
  operator is exactly the negation of its positive twin;
- a key absent from the request: positive operators are false, negated ones true;
  ``...IfExists`` is true; ``Null`` tests presence itself; ``ForAllValues:`` is true and
  ``ForAnyValue:`` false (an empty multi-valued key counts as absent);
- a request key with several values and no set qualifier is true, for a positive operator,
  when any request value matches (a negated one: when none does);
  ``ForAnyValue:`` asks that at least one request value satisfy the operator,
  ``ForAllValues:`` that every request value does;
- a policy variable without a value in the request makes the value it appears in fail,
  whatever the operator's polarity (so a negated operator is then false, never vacuously true).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from coffre.core.policy.matching import Pattern, Token, VariableError, substitute, tokenize


class ConditionError(ValueError):
    """A condition the parser refuses; the message is shown to the client."""



# base operator name (lower case) -> (family, negated)
_OPERATORS: dict[str, tuple[str, bool]] = {
    "stringequals": ("string_equals", False),
    "stringnotequals": ("string_equals", True),
    "stringequalsignorecase": ("string_equals_ic", False),
    "stringnotequalsignorecase": ("string_equals_ic", True),
    "stringlike": ("string_like", False),
    "stringnotlike": ("string_like", True),
    "numericequals": ("numeric_eq", False),
    "numericnotequals": ("numeric_eq", True),
    "numericlessthan": ("numeric_lt", False),
    "numericlessthanequals": ("numeric_le", False),
    "numericgreaterthan": ("numeric_gt", False),
    "numericgreaterthanequals": ("numeric_ge", False),
    "dateequals": ("date_eq", False),
    "datenotequals": ("date_eq", True),
    "datelessthan": ("date_lt", False),
    "datelessthanequals": ("date_le", False),
    "dategreaterthan": ("date_gt", False),
    "dategreaterthanequals": ("date_ge", False),
    "bool": ("bool", False),
    "binaryequals": ("binary", False),
    "ipaddress": ("ip", False),
    "notipaddress": ("ip", True),
    "arnequals": ("arn", False),
    "arnlike": ("arn", False),
    "arnnotequals": ("arn", True),
    "arnnotlike": ("arn", True),
    "null": ("null", False),
}

# The canonical spelling of each operator, for messages and documentation.
OPERATOR_NAMES = (
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan",
    "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals",
    "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan",
    "DateGreaterThanEquals", "Bool", "BinaryEquals", "IpAddress", "NotIpAddress", "ArnEquals",
    "ArnLike", "ArnNotEquals", "ArnNotLike", "Null",
)


def parse_number(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def parse_date(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 date / date-time (UTC when no offset) or of an epoch number."""
    text = text.strip()
    number = parse_number(text)
    if number is not None:
        return float(number)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@lru_cache(maxsize=4096)
def parse_ip(text: str) -> tuple[int, int] | None:
    """(IP version, address as an integer): request addresses repeat across statements and
    requests, and parsing them is the slow part of an IpAddress test."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return address.version, int(address)


class Network:
    """A CIDR as an integer range, so a membership test is two comparisons."""

    __slots__ = ("network", "version", "first", "last")

    def __init__(self, text: str) -> None:
        self.network = ipaddress.ip_network(text.strip(), strict=False)
        self.version = self.network.version
        self.first = int(self.network.network_address)
        self.last = int(self.network.broadcast_address)


class Condition:
    """One (operator, key, values) triple of a statement's Condition block."""

    __slots__ = ("operator", "key", "family", "negated", "if_exists", "qualifier", "values", "_test")

    def __init__(self, operator: str, key: str, raw_values: Sequence[str], variables: bool) -> None:
        self.operator = operator
        self.key = key.lower()
        lowered = operator.lower()
        self.qualifier = ""
        for prefix in ("foranyvalue:", "forallvalues:"):
            if lowered.startswith(prefix):
                self.qualifier = prefix[:-1]
                lowered = lowered[len(prefix):]
        self.if_exists = False
        base = lowered
        if base.endswith("ifexists") and base != "null":
            base = base[: -len("ifexists")]
            self.if_exists = True
        if base not in _OPERATORS or (self.if_exists and base == "null"):
            raise ConditionError(f"Unknown condition operator {operator}")
        self.family, self.negated = _OPERATORS[base]
        self.values: tuple[object, ...] = tuple(self._compile(v, variables) for v in raw_values)
        self._test: Callable[[object, str, Mapping[str, Sequence[str]]], bool | None] = _TESTS[self.family]

    def _compile(self, value: str, variables: bool) -> object:
        family = self.family
        try:
            if family == "string_equals" or family == "string_equals_ic":
                tokens: tuple[Token, ...] = tokenize(value, variables)
                return tokens
            if family == "string_like":
                return Pattern(tokenize(value, variables), arn=False)
            if family == "arn":
                return Pattern(tokenize(value, variables), arn=True)
        except VariableError:
            raise ConditionError(f"Invalid policy variable in condition value {value!r}") from None
        if family.startswith("numeric"):
            number = parse_number(value)
            if number is None:
                raise ConditionError(f"Invalid numeric value {value!r} for condition operator {self.operator}")
            return number
        if family.startswith("date"):
            when = parse_date(value)
            if when is None:
                raise ConditionError(f"Invalid date value {value!r} for condition operator {self.operator}")
            return when
        if family == "ip":
            try:
                return Network(value)
            except ValueError:
                raise ConditionError(f"Invalid IP address or CIDR {value!r} in condition") from None
        if family == "binary":
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ConditionError(f"Invalid base64 value {value!r} for BinaryEquals") from None
        if family == "bool":
            return value.lower()
        # null
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise ConditionError(f"Invalid value {value!r} for the Null condition operator: true or false")
        return lowered == "true"

    def holds(self, keys: Mapping[str, Sequence[str]]) -> bool:
        values = keys.get(self.key)
        if isinstance(values, str):
            values = (values,)
        present = bool(values)
        if self.family == "null":
            return any(expect_absent is not present for expect_absent in self.values)
        if not present:
            if self.if_exists or self.qualifier == "forallvalues":
                return True
            if self.qualifier == "foranyvalue":
                return False
            return self.negated
        assert values is not None
        if len(values) == 1:
            return self._satisfied(values[0], keys)
        if self.qualifier == "forallvalues" or (not self.qualifier and self.negated):
            return all(self._satisfied(v, keys) for v in values)
        return any(self._satisfied(v, keys) for v in values)

    def _satisfied(self, request_value: str, keys: Mapping[str, Sequence[str]]) -> bool:
        """Whether one request value satisfies the operator against the policy's values."""
        test = self._test
        if self.negated:
            for policy_value in self.values:
                outcome = test(policy_value, request_value, keys)
                if outcome is None or outcome:  # an unresolved variable fails the value
                    return False
            return True
        for policy_value in self.values:
            if test(policy_value, request_value, keys):
                return True
        return False


def _string_equals(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool | None:
    assert isinstance(policy, tuple)
    text = substitute(policy, keys)
    return None if text is None else text == value


def _string_equals_ic(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool | None:
    assert isinstance(policy, tuple)
    text = substitute(policy, keys)
    return None if text is None else text.casefold() == value.casefold()


def _pattern(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool | None:
    assert isinstance(policy, Pattern)
    return policy.matches(value, keys)


def _numeric(compare: Callable[[Decimal, Decimal], bool]) -> Callable[[object, str, Mapping[str, Sequence[str]]], bool]:
    def test(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool:
        assert isinstance(policy, Decimal)
        number = parse_number(value)
        return number is not None and compare(number, policy)

    return test


def _date(compare: Callable[[float, float], bool]) -> Callable[[object, str, Mapping[str, Sequence[str]]], bool]:
    def test(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool:
        assert isinstance(policy, float)
        when = parse_date(value)
        return when is not None and compare(when, policy)

    return test


def _date_eq(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-6)


def _bool(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool:
    return value.lower() == policy


def _binary(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool:
    try:
        return base64.b64decode(value, validate=True) == policy
    except (binascii.Error, ValueError):
        return False


def _ip(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool:
    assert isinstance(policy, Network)
    address = parse_ip(value)
    return address is not None and address[0] == policy.version and policy.first <= address[1] <= policy.last


def _never(policy: object, value: str, keys: Mapping[str, Sequence[str]]) -> bool:
    return False


_TESTS: dict[str, Callable[[object, str, Mapping[str, Sequence[str]]], bool | None]] = {
    "string_equals": _string_equals,
    "string_equals_ic": _string_equals_ic,
    "string_like": _pattern,
    "arn": _pattern,
    "numeric_eq": _numeric(lambda a, b: a == b),
    "numeric_lt": _numeric(lambda a, b: a < b),
    "numeric_le": _numeric(lambda a, b: a <= b),
    "numeric_gt": _numeric(lambda a, b: a > b),
    "numeric_ge": _numeric(lambda a, b: a >= b),
    "date_eq": _date(_date_eq),
    "date_lt": _date(lambda a, b: a < b),
    "date_le": _date(lambda a, b: a <= b),
    "date_gt": _date(lambda a, b: a > b),
    "date_ge": _date(lambda a, b: a >= b),
    "bool": _bool,
    "binary": _binary,
    "ip": _ip,
    "null": _never,
}
