"""Parse and validate a policy document into compiled statements.

Everything that can be decided once is decided here (wildcards to regular expressions, action
names to a lower-cased set, principals to sets, condition values to numbers, networks, dates),
so that evaluation on the request path is a handful of set look-ups and regex matches.

Strictness: unknown fields, duplicate JSON keys, wrong types and unknown condition operators
are refused, with AWS's messages where AWS has one. A bucket policy (kind "resource") may only
name S3 actions and, when the bucket is known, resources of that bucket, as on AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from coffre.core.errors import CoffreError, LimitExceeded, MalformedPolicy, MalformedPolicyDocument
from coffre.core.policy.actions import S3_ACTIONS, S3_OBJECT_ACTIONS
from coffre.core.policy.conditions import Condition, ConditionError
from coffre.core.policy.matching import Pattern, VariableError, glob_regex, globs_regex, tokenize

RESOURCE_POLICY_MAX_BYTES = 20 * 1024  # bucket policies: 20 KB, whitespace included
IDENTITY_POLICY_MAX_CHARS = 6144  # managed policies: 6,144 characters, whitespace excluded

VERSIONS = ("2012-10-17", "2008-10-17")

_TOP_FIELDS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_FIELDS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
                               "Resource", "NotResource", "Condition"})
_PRINCIPAL_TYPES = frozenset({"AWS", "CanonicalUser", "Service", "Federated"})

_ACTION = re.compile(r"^[A-Za-z0-9-]+:[A-Za-z0-9*?]+$")
_ACCOUNT = re.compile(r"^\d{12}$")
_ACCOUNT_ARN = re.compile(r"^arn:aws:iam::(\d{12}):root$")
_IAM_ARN = re.compile(r"^arn:aws:(?:iam|sts)::\d{12}:(?:user|role|assumed-role|federated-user)/[^*?\s]+$")
_CANONICAL = re.compile(r"^[0-9a-f]{64}$")
_SERVICE = re.compile(r"^[A-Za-z0-9.-]+$")
_CONDITION_KEY = re.compile(r"^[A-Za-z0-9-]+:\S(?:.*\S)?$")
_SID_IDENTITY = re.compile(r"^[0-9A-Za-z]*$")
_WS = re.compile(r"\s")


class _Number(str):
    """A JSON number kept as its text: numbers are valid condition values, nothing else."""


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


class Principals:
    """The callers a Principal / NotPrincipal element names, as sets."""

    __slots__ = ("everyone", "accounts", "arns", "canonical_ids", "others")

    def __init__(self) -> None:
        self.everyone = False
        self.accounts: set[str] = set()  # "123456789012" (from the id or its :root ARN)
        self.arns: set[str] = set()  # users, roles... (exact)
        self.canonical_ids: set[str] = set()
        self.others: set[str] = set()  # Service / Federated principals: never a coffre caller

    def names_caller(self, arn: str | None, account: str | None, canonical_id: str | None) -> tuple[bool, bool]:
        """(the caller's account is named, the caller itself is named): an account principal
        stands for every principal of that account."""
        if self.everyone:
            return True, True
        account_named = (account is not None and account in self.accounts) or (
            canonical_id is not None and canonical_id in self.canonical_ids)
        return account_named, arn is not None and arn in self.arns


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str
    allow: bool
    not_action: bool
    actions_all: bool
    actions_exact: frozenset[str]  # lower-cased
    actions_regex: re.Pattern[str] | None
    not_resource: bool
    resources: tuple[Pattern, ...]
    principals: Principals | None
    not_principal: bool
    conditions: tuple[Condition, ...]

    def matches_action(self, action_lower: str) -> bool:
        hit = self.actions_all or action_lower in self.actions_exact or (
            self.actions_regex is not None and self.actions_regex.match(action_lower) is not None)
        return hit != self.not_action

    def matches_resource(self, resource: str, keys: Mapping[str, Sequence[str]]) -> bool:
        if self.not_resource:
            for pattern in self.resources:
                outcome = pattern.matches(resource, keys)
                if outcome is None or outcome:  # an unresolved variable: the statement does not apply
                    return False
            return True
        for pattern in self.resources:
            if pattern.matches(resource, keys):
                return True
        return False

    def matches_principal(self, arn: str | None, account: str | None, canonical_id: str | None) -> bool:
        principals = self.principals
        if principals is None:
            return True
        account_named, caller_named = principals.names_caller(arn, account, canonical_id)
        if not self.not_principal:
            return account_named or caller_named
        # NotPrincipal excludes a caller only when all it acts as is named: a user is both
        # itself and its account (AWS: "you must also specify the account ARN").
        if principals.everyone:
            return False
        if account is None:  # anonymous: excluded only by "*"
            return True
        is_user = arn is not None and not arn.endswith(":root")
        excluded = account_named and (caller_named or not is_user)
        return not excluded

    def holds(self, keys: Mapping[str, Sequence[str]]) -> bool:
        for condition in self.conditions:
            if not condition.holds(keys):
                return False
        return True


class _Parser:
    def __init__(self, kind: str, bucket: str | None) -> None:
        if kind not in ("resource", "identity"):
            raise ValueError(f"policy kind must be 'resource' or 'identity', not {kind!r}")
        self.kind = kind
        self.resource = kind == "resource"
        self.bucket = bucket

    def fail(self, resource_message: str, identity_message: str | None = None) -> CoffreError:
        if self.resource:
            return MalformedPolicy(resource_message)
        return MalformedPolicyDocument(identity_message or resource_message)

    # -- the document --
    def load(self, text: str) -> dict[str, object]:
        if self.resource:
            if len(text.encode("utf-8")) > RESOURCE_POLICY_MAX_BYTES:
                raise MalformedPolicy("Policy exceeds the maximum allowed document size.")
        elif len(_WS.sub("", text)) > IDENTITY_POLICY_MAX_CHARS:
            raise LimitExceeded(f"Cannot exceed quota for PolicySize: {IDENTITY_POLICY_MAX_CHARS}")
        if not text.lstrip().startswith("{"):
            raise self.fail("Policies must be valid JSON and the first byte must be '{'", "Syntax errors in policy.")
        try:
            doc = json.loads(text, object_pairs_hook=_pairs, parse_int=_Number, parse_float=_Number,
                             parse_constant=_reject_constant)
        except _Duplicate as dup:
            raise self.fail(f"Duplicate field {dup.args[0]} in policy") from None
        except (ValueError, RecursionError):
            raise self.fail("This policy contains invalid Json", "Syntax errors in policy.") from None
        if not isinstance(doc, dict):
            raise self.fail("Policies must be valid JSON and the first byte must be '{'", "Syntax errors in policy.")
        return doc

    def document(self, doc: dict[str, object]) -> tuple[str, tuple[Statement, ...]]:
        for name in doc:
            if name not in _TOP_FIELDS:
                raise self.fail(f"Unknown field {name}")
        version = doc.get("Version", "2008-10-17")
        if type(version) is not str or version not in VERSIONS:
            raise self.fail(f"Invalid Version {version}", "The policy failed legacy parsing")
        if "Id" in doc and type(doc["Id"]) is not str:
            raise self.fail("Id must be a string")
        if "Statement" not in doc:
            raise self.fail("Missing required field Statement")
        raw = doc["Statement"]
        items = [raw] if isinstance(raw, dict) else raw
        if not isinstance(items, list) or not items:
            raise self.fail("Missing required field Statement")
        variables = version == "2012-10-17"
        statements: list[Statement] = []
        sids: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                raise self.fail("Statement must be an object")
            statement = self.statement(item, variables)
            if statement.sid:
                if statement.sid in sids:
                    raise self.fail("Statement IDs (SID) in a single policy must be unique.")
                sids.add(statement.sid)
            statements.append(statement)
        return version, tuple(statements)

    # -- one statement --
    def statement(self, st: dict[str, object], variables: bool) -> Statement:
        for name in st:
            if name not in _STATEMENT_FIELDS:
                raise self.fail(f"Unknown field {name}")
        sid = st.get("Sid", "")
        if type(sid) is not str:
            raise self.fail("Sid must be a string")
        if not self.resource and not _SID_IDENTITY.match(sid):
            raise MalformedPolicyDocument("Statement IDs (SID) must be alpha-numeric. Check that your input "
                                          "satisfies the regular expression [0-9A-Za-z]*")
        if "Effect" not in st:
            raise self.fail("Missing required field Effect")
        effect = st["Effect"]
        if effect not in ("Allow", "Deny") or type(effect) is not str:
            raise self.fail(f"Invalid effect: {effect}")

        principals, not_principal = self.principal(st)
        actions_all, exact, regex, not_action = self.actions(st)
        resources, not_resource = self.resources(st, variables)
        if self.resource and not not_action and not not_resource:
            self._check_applies(st["Action"], st["Resource"])
        conditions = self.conditions(st.get("Condition"), variables) if "Condition" in st else ()
        return Statement(sid=sid, allow=effect == "Allow", not_action=not_action, actions_all=actions_all,
                         actions_exact=exact, actions_regex=regex, not_resource=not_resource,
                         resources=resources, principals=principals, not_principal=not_principal,
                         conditions=conditions)

    def _strings(self, value: object, field: str) -> list[str] | None:
        """A string or a non-empty list of strings, else None."""
        items = [value] if type(value) is str else value
        if not isinstance(items, list) or not items or any(type(i) is not str for i in items):
            return None
        return list(items)

    def principal(self, st: dict[str, object]) -> tuple[Principals | None, bool]:
        has_p, has_np = "Principal" in st, "NotPrincipal" in st
        if not self.resource:
            if has_p or has_np:
                field = "Principal" if has_p else "NotPrincipal"
                raise MalformedPolicyDocument(f"Has prohibited field {field}")
            return None, False
        if has_p and has_np:
            raise MalformedPolicy("Statement cannot contain both Principal and NotPrincipal")
        if not has_p and not has_np:
            raise MalformedPolicy("Missing required field Principal")
        raw = st["Principal" if has_p else "NotPrincipal"]
        principals = Principals()
        invalid = MalformedPolicy("Invalid principal in policy")
        if raw == "*" and type(raw) is str:
            principals.everyone = True
            return principals, has_np
        if not isinstance(raw, dict) or not raw:
            raise invalid
        for kind, value in raw.items():
            if kind not in _PRINCIPAL_TYPES:
                raise invalid
            names = self._strings(value, kind)
            if names is None:
                raise invalid
            for name in names:
                if kind == "AWS":
                    if name == "*":
                        principals.everyone = True
                    elif _ACCOUNT.match(name):
                        principals.accounts.add(name)
                    elif (m := _ACCOUNT_ARN.match(name)) is not None:
                        principals.accounts.add(m.group(1))
                    elif _IAM_ARN.match(name):
                        principals.arns.add(name)
                    else:
                        raise invalid
                elif kind == "CanonicalUser":
                    if not _CANONICAL.match(name):
                        raise invalid
                    principals.canonical_ids.add(name)
                elif kind == "Service":
                    if not _SERVICE.match(name):
                        raise invalid
                    principals.others.add(f"service:{name}")
                else:
                    principals.others.add(f"federated:{name}")
        return principals, has_np

    def actions(self, st: dict[str, object]) -> tuple[bool, frozenset[str], re.Pattern[str] | None, bool]:
        has_a, has_na = "Action" in st, "NotAction" in st
        if has_a and has_na:
            raise self.fail("Statement cannot contain both Action and NotAction")
        if not has_a and not has_na:
            raise self.fail("Missing required field Action", "Policy statement must contain actions.")
        field = "Action" if has_a else "NotAction"
        names = self._strings(st[field], field)
        if names is None:
            raise self.fail("Policy has invalid action", "Policy statement must contain actions.")
        everything = False
        exact: set[str] = set()
        wildcards: list[str] = []
        for name in names:
            if name == "*":
                everything = True
                continue
            if ":" not in name:
                raise self.fail("Policy has invalid action",
                                "Actions/Conditions must be prefaced by a vendor, e.g., iamadmin, AWS, etc.")
            if not _ACTION.match(name):
                raise self.fail("Policy has invalid action", f"Action {name} is not valid.")
            lowered = name.lower()
            service, _, operation = lowered.partition(":")
            wild = "*" in operation or "?" in operation
            if self.resource:
                if service != "s3":
                    raise MalformedPolicy("Policy has invalid action")
                if wild:
                    probe = glob_regex(operation)
                    if not any(probe.match(a) for a in S3_ACTIONS):
                        raise MalformedPolicy("Policy has invalid action")
                elif operation not in S3_ACTIONS:
                    raise MalformedPolicy("Policy has invalid action")
            if wild:
                wildcards.append(lowered)
            else:
                exact.add(lowered)
        regex = None
        if wildcards and not everything:
            regex = globs_regex(wildcards)
        return everything, frozenset(exact), regex, has_na

    def resources(self, st: dict[str, object], variables: bool) -> tuple[tuple[Pattern, ...], bool]:
        has_r, has_nr = "Resource" in st, "NotResource" in st
        if has_r and has_nr:
            raise self.fail("Statement cannot contain both Resource and NotResource")
        if not has_r and not has_nr:
            raise self.fail("Missing required field Resource", "Policy statement must contain resources.")
        field = "Resource" if has_r else "NotResource"
        names = self._strings(st[field], field)
        if names is None:
            raise self.fail("Policy has invalid resource", "Policy statement must contain resources.")
        patterns: list[Pattern] = []
        for name in names:
            if name != "*":
                if self.resource:
                    if not name.startswith("arn:aws:s3:::") or not self._in_bucket(name[len("arn:aws:s3:::"):]):
                        raise MalformedPolicy("Policy has invalid resource")
                elif not re.match(r"^arn:[^:]*:[^:]*:", name):
                    raise MalformedPolicyDocument(f'Resource {name} must be in ARN format or "*".')
            try:
                patterns.append(Pattern(tokenize(name, variables), arn=True))
            except VariableError:
                raise self.fail("Policy has invalid resource", f"Resource {name} has an invalid policy variable.") from None
        return tuple(patterns), has_nr

    def _check_applies(self, actions: object, resources: object) -> None:
        """AWS refuses a bucket policy statement none of whose actions applies to any of its
        resources (s3:GetObject on arn:aws:s3:::bucket, s3:ListBucket on bucket/*...)."""
        action_kinds: set[str] = set()
        for name in actions if isinstance(actions, list) else [actions]:
            assert isinstance(name, str)
            operation = name.lower().partition(":")[2]
            if name == "*":
                return
            if "*" in operation or "?" in operation:
                probe = glob_regex(operation)
                action_kinds.update("object" if a in S3_OBJECT_ACTIONS else "bucket"
                                    for a in S3_ACTIONS if probe.match(a))
            else:
                action_kinds.add("object" if operation in S3_OBJECT_ACTIONS else "bucket")
        resource_kinds: set[str] = set()
        for name in resources if isinstance(resources, list) else [resources]:
            assert isinstance(name, str)
            rest = name[len("arn:aws:s3:::"):] if name.startswith("arn:aws:s3:::") else "*"
            if "/" in rest:
                resource_kinds.add("object")
            elif "*" in rest or "?" in rest:
                return  # may name the bucket or, running on, its objects
            else:
                resource_kinds.add("bucket")
        if not action_kinds & resource_kinds:
            raise MalformedPolicy("Action does not apply to any resource(s) in statement")

    def _in_bucket(self, rest: str) -> bool:
        """Whether the part after "arn:aws:s3:::" can name the bucket being configured or one
        of its objects (AWS: "Policy has invalid resource" otherwise)."""
        if not rest:
            return False
        if self.bucket is None or "${" in rest.split("/", 1)[0]:
            return True
        # Bucket names have no "/": a glob over the name needs no care for slashes.
        bucket_part, slash, _ = rest.partition("/")
        if slash:
            return glob_regex(bucket_part).match(self.bucket) is not None
        if glob_regex(rest).match(self.bucket):
            return True
        # "arn:aws:s3:::buck*" also covers "bucket/key": a star may run into the object part.
        star = rest.find("*")
        return star >= 0 and glob_regex(rest[: star + 1]).match(self.bucket) is not None

    def conditions(self, raw: object, variables: bool) -> tuple[Condition, ...]:
        if not isinstance(raw, dict):
            raise self.fail("Condition must be an object of condition operators")
        out: list[Condition] = []
        for operator, block in raw.items():
            if not isinstance(block, dict) or not block:
                raise self.fail(f"Condition operator {operator} must map condition keys to values")
            for key, value in block.items():
                if not _CONDITION_KEY.match(key):
                    raise self.fail("Policy has an invalid condition key")
                values = _condition_values(value)
                if values is None:
                    raise self.fail(f"Invalid value for condition key {key}: a string, number, boolean "
                                    "or a non-empty list of them")
                try:
                    out.append(Condition(operator, key, values, variables))
                except ConditionError as exc:
                    raise self.fail(str(exc)) from None
        return tuple(out)


def _reject_constant(name: str) -> object:
    raise ValueError(name)  # NaN / Infinity are not JSON


def _condition_values(value: object) -> list[str] | None:
    items = value if isinstance(value, list) else [value]
    if not items:
        return None
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str):
            out.append(str(item))
        else:
            return None
    return out


def parse(text: str, kind: str, bucket: str | None) -> tuple[str, tuple[Statement, ...]]:
    parser = _Parser(kind, bucket)
    return parser.document(parser.load(text))
