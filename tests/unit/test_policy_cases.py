"""docs/policy-evaluation.md's tables of cases, executed row by row: the documentation and the
engine cannot disagree without this file failing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from coffre.core.policy import Decision, RequestContext, evaluate, is_public, parse_policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-evaluation.md"
CASE_ROW = re.compile(r"^\| ([a-z0-9-]+) \| `(.+)` \| `(.+)` \| (ALLOW|DENY|NONE) \|$")
PUBLIC_ROW = re.compile(r"^\| ([a-z0-9-]+) \| `(.+)` \| (yes|no) \|$")

CANONICAL = {"111122223333": "a" * 64, "444455556666": "b" * 64}


def _section(name: str) -> list[str]:
    text = DOC.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    assert begin in text and end in text, f"{DOC.name} lost its {name} table markers"
    body = text.split(begin, 1)[1].split(end, 1)[0]
    rows = [line for line in body.strip().splitlines()[2:]]  # skip the header and its rule
    return rows


def _rows(name: str, pattern: re.Pattern[str]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for line in _section(name):
        m = pattern.match(line)
        assert m, f"malformed row in {DOC.name}: {line!r}"
        assert m.group(1) not in seen, f"case {m.group(1)} is listed twice"
        seen.add(m.group(1))
        out.append(m.groups())
    return out


CASES = _rows("cases", CASE_ROW)
PUBLIC = _rows("public", PUBLIC_ROW)


def _document(policy: Any) -> tuple[str, str]:
    """(policy text, kind) for a statement, a list of statements or a whole document."""
    if isinstance(policy, dict) and "Statement" in policy:
        doc = policy
    else:
        doc = {"Version": "2012-10-17", "Statement": policy}
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    kind = "resource" if any("Principal" in s or "NotPrincipal" in s for s in statements) else "identity"
    return json.dumps(doc), kind


def _context(request: dict[str, Any]) -> RequestContext:
    caller = request.get("caller", "alice")
    keys: dict[str, list[str]] = {}
    arn = account = canonical = None
    if caller != "anon":
        name, _, account = caller.partition("@")
        account = account or "111122223333"
        canonical = CANONICAL[account]
        if name == "root":
            arn = f"arn:aws:iam::{account}:root"
        else:
            arn = f"arn:aws:iam::{account}:user/{name}"
            keys["aws:username"] = [name]
        keys["aws:principalarn"] = [arn]
        keys["aws:principalaccount"] = [account]
    keys.update(request.get("keys", {}))
    return RequestContext(action=request.get("action", "s3:GetObject"),
                          resource=request.get("resource", "arn:aws:s3:::b/k"),
                          principal_arn=arn, principal_account=account, principal_canonical_id=canonical,
                          keys=keys)


def test_tables_are_large_enough():
    assert len(CASES) >= 60
    assert len(PUBLIC) >= 20
    decisions = {row[3] for row in CASES}
    assert decisions == {"ALLOW", "DENY", "NONE"}


@pytest.mark.parametrize(("name", "policy", "request_", "expected"), CASES, ids=[c[0] for c in CASES])
def test_case(name: str, policy: str, request_: str, expected: str) -> None:
    text, kind = _document(json.loads(policy))
    parsed = parse_policy(text, kind, bucket="b" if kind == "resource" else None)
    ctx = _context(json.loads(request_))
    assert evaluate([parsed], ctx, check_principal=kind == "resource") is Decision[expected]


@pytest.mark.parametrize(("name", "statement", "expected"), PUBLIC, ids=[c[0] for c in PUBLIC])
def test_public(name: str, statement: str, expected: str) -> None:
    text, kind = _document(json.loads(statement))
    assert kind == "resource"
    assert is_public(parse_policy(text, kind, bucket="b")) is (expected == "yes")
