"""POST policies of browser uploads (SigV4): parsing the policy document and checking a form against it.

The policy is base64 JSON: {"expiration": ISO8601 UTC, "conditions": [...]}. A condition is
{"field": "value"} (exact match), ["eq", "$field", "value"], ["starts-with", "$field", "prefix"]
or ["content-length-range", min, max]. Condition and field names compare case-insensitively,
values case-sensitively. Every form field except the signature, the policy, the file and
``x-ignore-*`` must be named by a condition. The messages are S3's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from calendar import timegm
from dataclasses import dataclass, field
from typing import Any

from coffre.core.errors import AccessDenied, EntityTooLarge, EntityTooSmall, InvalidPolicyDocument

# Fields a policy never has to name.
EXEMPT_FIELDS = frozenset({"x-amz-signature", "policy", "file"})
EXEMPT_FIELDS_V2 = frozenset({"awsaccesskeyid", "signature", "policy", "file"})
IGNORED_PREFIX = "x-ignore-"
_EXPIRATION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")


@dataclass(frozen=True, slots=True)
class Condition:
    op: str  # "eq", "starts-with" or "content-length-range"
    name: str  # the field, lower case, without "$" ("" for content-length-range)
    value: str = ""
    low: int = 0
    high: int = 0
    text: str = ""  # as S3 prints it in "Policy Condition failed: ..."
    has_dollar: bool = True


@dataclass(frozen=True, slots=True)
class Policy:
    expiration: float
    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    def length_range(self) -> tuple[int, int] | None:
        """The tightest content-length-range, when the policy states one."""
        ranges = [(c.low, c.high) for c in self.conditions if c.op == "content-length-range"]
        if not ranges:
            return None
        return max(r[0] for r in ranges), min(r[1] for r in ranges)


def _bad(message: str) -> InvalidPolicyDocument:
    return InvalidPolicyDocument(f"Invalid Policy: {message}")


def _printed(items: list[Any]) -> str:
    return json.dumps(items, ensure_ascii=False)


def parse_expiration(value: object) -> float:
    """ISO8601 in UTC ("2026-01-01T00:00:00.000Z"); S3 refuses offsets and spaces."""
    bad = _bad(f"Invalid 'expiration' value: '{value}'")
    m = _EXPIRATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise bad
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        raise bad
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    return timegm((y, mo, d, h, mi, s, 0, 0, 0)) + frac


def _condition(raw: object) -> Condition:
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise _bad("Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")
        ((name, value),) = raw.items()
        if not isinstance(value, str):
            raise _bad("Invalid Simple-Condition: value must be a string.")
        # S3 prints a simple condition as the "eq" it stands for.
        return Condition("eq", name.lower(), value, text=_printed(["eq", "$" + name, value]))
    if not isinstance(raw, list):
        raise _bad("Invalid condition test: must be a List or Object.")
    if not raw:
        raise _bad("Invalid Condition: missing operation identifier.")
    op = raw[0]
    if not isinstance(op, str):
        raise _bad("Invalid JSON.")
    low_op = op.lower()
    if low_op in ("eq", "starts-with"):
        if len(raw) != 3:
            raise _bad(f"Invalid {op}: wrong number of arguments.")
        name, value = raw[1], raw[2]
        if not isinstance(name, str) or not isinstance(value, str):
            raise _bad("Invalid JSON.")
        dollar = name.startswith("$")
        return Condition(low_op, (name[1:] if dollar else name).lower(), value, text=_printed(raw),
                         has_dollar=dollar)
    if low_op == "content-length-range":
        if len(raw) != 3:
            raise _bad(f"Invalid {op}: wrong number of arguments.")
        bounds: list[int] = []
        for b in raw[1:]:
            if isinstance(b, bool) or isinstance(b, float):
                raise _bad("Invalid JSON.")
            if isinstance(b, int):
                bounds.append(b)
            elif isinstance(b, str) and b.isascii() and b.isdigit():
                bounds.append(int(b))
            else:
                # Not a number: the policy parses, the condition can never hold.
                return Condition("never", "", text=_printed(raw))
        if bounds[0] < 0 or bounds[1] < 0:
            raise _bad("Invalid content-length-range: values must not be negative.")
        return Condition("content-length-range", "", low=bounds[0], high=bounds[1], text=_printed(raw))
    raise _bad(f"Invalid Condition: unknown operation '{op}'.")


def decode(policy_b64: str) -> Policy:
    """The policy field as sent (base64 JSON) as a Policy, or InvalidPolicyDocument."""
    try:
        raw = base64.b64decode(policy_b64.encode("ascii"), validate=False)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise _bad("invalid Base64 encoding.") from e
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad("Invalid JSON.") from e
    if not isinstance(doc, dict):
        raise _bad("Invalid JSON.")
    for k in doc:
        if k not in ("expiration", "conditions"):
            raise _bad(f"Unexpected: '{k.lower()}'")
    if "expiration" not in doc:
        raise _bad("Policy missing expiration.")
    if "conditions" not in doc:
        raise _bad("Policy missing conditions.")
    if not isinstance(doc["conditions"], list):
        raise _bad("Invalid 'conditions' value: must be a List.")
    expiration = parse_expiration(doc["expiration"])
    return Policy(expiration, tuple(_condition(c) for c in doc["conditions"]))


def _holds(c: Condition, value: str | None) -> bool:
    if c.op == "never" or not c.has_dollar or value is None:
        return False
    if c.op == "eq":
        return value == c.value
    if c.name == "content-type":
        # A browser may send several types; each must start with the prefix.
        return all(v.strip().startswith(c.value) for v in value.split(","))
    return value.startswith(c.value)


def check(policy: Policy, fields: list[tuple[str, str]], values: dict[str, str], now: float,
          exempt: frozenset[str] = EXEMPT_FIELDS) -> None:
    """Refuse the form unless the policy is current, every condition holds, and it names every field.

    ``fields`` are the form's (name as sent, value) before the file; ``values`` maps lower-case
    names to what conditions compare (the bucket, and the key after ${filename})."""
    if now >= policy.expiration:
        raise AccessDenied("Invalid according to Policy: Policy expired.")
    named: set[str] = set()
    for c in policy.conditions:
        if c.op == "content-length-range":
            continue
        named.add(c.name)
        if not _holds(c, values.get(c.name)):
            raise AccessDenied(f"Invalid according to Policy: Policy Condition failed: {c.text}")
    extra = [name for name, _ in fields
             if name.lower() not in exempt and not name.lower().startswith(IGNORED_PREFIX)
             and name.lower() not in named]
    if extra:
        raise AccessDenied(f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")


def check_size(size: int, bounds: tuple[int, int] | None) -> None:
    """content-length-range, both ends inclusive."""
    if bounds is None:
        return
    low, high = bounds
    if size > high:
        raise EntityTooLarge("Your proposed upload exceeds the maximum allowed size", size=size, max=high)
    if size < low:
        raise EntityTooSmall("Your proposed upload is smaller than the minimum allowed size", size=size, min=low)


def signed_fields_missing(fields: dict[str, str]) -> str | None:
    """The first SigV4 form field a signed POST lacks, as S3 names it; None when all are there."""
    for name, canon in (("x-amz-algorithm", "X-Amz-Algorithm"), ("x-amz-credential", "X-Amz-Credential"),
                        ("x-amz-date", "X-Amz-Date"), ("x-amz-signature", "X-Amz-Signature"),
                        ("policy", "Policy")):
        if name not in fields:
            return canon
    return None
