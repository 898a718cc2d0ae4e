"""What is configured: the operator's targets, and each bucket's notification rules.

Targets are named by the operator only (settings); a bucket configuration can name nothing
else, so the store never calls out to an address a tenant chose. Bucket rules follow S3's
NotificationConfiguration: event names with wildcards, one prefix and one suffix filter, and
no two rules that could both match one event (S3 refuses those as ambiguous).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coffre.core.errors import InvalidArgument

TARGET_TYPES = ("webhook", "nats", "amqp", "mqtt", "redis")
# Options each target type takes besides id and type (docs/notifications.md lists them).
_COMMON = {"ca_file", "client_cert", "client_key", "insecure_skip_verify", "tenants"}
_OPTIONS: dict[str, set[str]] = {
    "webhook": {"url", "auth_token"},
    "nats": {"url", "subject", "jetstream", "user", "password", "token"},
    "amqp": {"url", "exchange", "routing_key", "mandatory"},
    "mqtt": {"url", "topic", "username", "password", "client_id"},
    "redis": {"url", "key", "username", "password"},
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "webhook": ("url",), "nats": ("url", "subject"), "amqp": ("url", "routing_key"),
    "mqtt": ("url", "topic"), "redis": ("url", "key"),
}
SECRET_OPTIONS = ("password", "token", "auth_token")
_TARGET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Every event name S3 accepts in a configuration; coffre emits the ones in EMITTED.
EVENTS = frozenset({
    "s3:ObjectCreated:*", "s3:ObjectCreated:Put", "s3:ObjectCreated:Post", "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated",
    "s3:ObjectTagging:*", "s3:ObjectTagging:Put", "s3:ObjectTagging:Delete",
    "s3:ObjectAcl:Put",
    "s3:ObjectRestore:*", "s3:ObjectRestore:Post", "s3:ObjectRestore:Completed", "s3:ObjectRestore:Delete",
    "s3:Replication:*", "s3:Replication:OperationFailedReplication",
    "s3:Replication:OperationMissedThreshold", "s3:Replication:OperationReplicatedAfterThreshold",
    "s3:Replication:OperationNotTracked",
    "s3:LifecycleExpiration:*", "s3:LifecycleExpiration:Delete",
    "s3:LifecycleExpiration:DeleteMarkerCreated", "s3:LifecycleTransition",
    "s3:IntelligentTiering", "s3:ReducedRedundancyLostObject",
})
EMITTED = ("ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy",
           "ObjectCreated:CompleteMultipartUpload", "ObjectRemoved:Delete",
           "ObjectRemoved:DeleteMarkerCreated", "ObjectTagging:Put", "ObjectTagging:Delete")

# The three S3 element kinds; coffre delivers all of them to an operator's target.
KINDS = (("TopicConfiguration", "Topic"), ("QueueConfiguration", "Queue"),
         ("CloudFunctionConfiguration", "CloudFunction"))
MAX_RULES = 100  # configurations per bucket
MAX_FILTER_VALUE = 1024
MAX_ID_LENGTH = 255

DESTINATION_INVALID = "Unable to validate the following destination configurations"


@dataclass(frozen=True)
class Target:
    """One destination the operator configured ([[notify.targets]])."""

    id: str
    type: str
    options: Mapping[str, Any] = field(repr=False)

    def arn(self, region: str) -> str:
        return f"arn:coffre:sqs:{region}:{self.id}:{self.type}"

    @property
    def restricted(self) -> bool:
        return "tenants" in self.options

    def allows(self, tenant_id: str, tenant_name: str | None) -> bool:
        """Whether buckets of this tenant may name the target (``tenants``: names or ids; absent: all)."""
        if not self.restricted:
            return True
        allowed = self.options["tenants"]
        return tenant_id in allowed or (tenant_name is not None and tenant_name in allowed)

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line (passwords, tokens, URL credentials)."""
        out = [str(self.options[k]) for k in SECRET_OPTIONS if self.options.get(k)]
        url = str(self.options.get("url", ""))
        m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^@/]*)@", url)
        if m:
            out.append(m.group(1))  # user:password of the URL
            if ":" in m.group(1):
                out.append(m.group(1).split(":", 1)[1])
        return [s for s in out if s]


def available(targets: Mapping[str, Target], tenant_id: str, tenant_name: str | None) -> dict[str, Target]:
    """The targets buckets of one tenant may name: the others do not exist for it."""
    return {tid: t for tid, t in targets.items() if t.allows(tenant_id, tenant_name)}


def parse_targets(raw: Iterable[Mapping[str, Any]]) -> dict[str, Target]:
    """The operator's targets, checked at start: a mistake stops the server and says which."""
    targets: dict[str, Target] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise ValueError(f"notify.targets[{i}]: a table is expected")
        tid = str(entry.get("id", ""))
        kind = str(entry.get("type", ""))
        where = f"notify target {tid!r}" if tid else f"notify.targets[{i}]"
        if not _TARGET_ID.match(tid):
            raise ValueError(f"{where}: id must be 1-64 letters, digits, '-' or '_'")
        if tid in targets:
            raise ValueError(f"{where}: the id is used twice")
        if kind not in TARGET_TYPES:
            raise ValueError(f"{where}: type must be one of {', '.join(TARGET_TYPES)}")
        options = {k.replace("-", "_"): v for k, v in entry.items() if k not in ("id", "type")}
        unknown = sorted(set(options) - _OPTIONS[kind] - _COMMON)
        if unknown:
            raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)} for a {kind} target")
        missing = [k for k in _REQUIRED[kind] if k not in options or options[k] in ("", None)]
        if missing:
            raise ValueError(f"{where}: {', '.join(missing)} is required for a {kind} target")
        if "tenants" in options:
            names = options["tenants"]
            if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"{where}: tenants must be a list of tenant names")
            options["tenants"] = tuple(names)
        targets[tid] = Target(tid, kind, options)
    return targets


# -- bucket rules --

@dataclass(frozen=True)
class Rule:
    """One Topic/Queue/CloudFunction configuration of a bucket."""

    id: str
    kind: str  # "QueueConfiguration" | "TopicConfiguration" | "CloudFunctionConfiguration"
    arn: str
    events: tuple[str, ...]
    prefix: str | None = None
    suffix: str | None = None

    def matches(self, event_name: str, key: str) -> bool:
        """``event_name`` as emitted ("ObjectCreated:Put"), against s3:-prefixed patterns."""
        full = "s3:" + event_name
        category = full.rsplit(":", 1)[0]
        if not any(p == full or (p.endswith(":*") and p[:-2] == category) for p in self.events):
            return False
        if self.prefix is not None and not key.startswith(self.prefix):
            return False
        return self.suffix is None or key.endswith(self.suffix)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "arn": self.arn, "events": list(self.events),
                "prefix": self.prefix, "suffix": self.suffix}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Rule:
        return cls(str(d["id"]), str(d["kind"]), str(d["arn"]), tuple(d["events"]), d.get("prefix"),
                   d.get("suffix"))


def new_rule_id() -> str:
    """S3 names a configuration sent without an Id; so does coffre (random, URL-safe)."""
    return secrets.token_urlsafe(24)


def parse_arn(arn: str) -> tuple[str, str, str] | None:
    """(region, target id, type) of ``arn:coffre:sqs:REGION:ID:TYPE``, None when not that shape."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[1] != "coffre" or parts[2] != "sqs":
        return None
    return parts[3], parts[4], parts[5]


def validate(rules: list[Rule], targets: Mapping[str, Target], region: str) -> None:
    """S3's checks of a NotificationConfiguration, in S3's order: events, ARNs, overlaps."""
    if len(rules) > MAX_RULES:
        raise InvalidArgument(f"A notification configuration holds at most {MAX_RULES} configurations.")
    ids: set[str] = set()
    for rule in rules:
        if rule.id in ids:
            raise InvalidArgument("Configuration ID must be unique.", name="Id", value=rule.id)
        ids.add(rule.id)
        for name in rule.events:
            if name not in EVENTS:
                raise InvalidArgument("The event is not supported for notifications", name="Event", value=name)
    bad = [r.arn for r in rules if not _known(r.arn, targets, region)]
    if bad:
        raise InvalidArgument(DESTINATION_INVALID, name=bad[0],
                              value="The destination ARN does not exist or is not well-formed")
    for i, a in enumerate(rules):
        for b in rules[i + 1:]:
            if _overlap(a, b):
                raise InvalidArgument(
                    "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules "
                    "if the prefixes are overlapping for the same event type.")


def _known(arn: str, targets: Mapping[str, Target], region: str) -> bool:
    parsed = parse_arn(arn)
    if parsed is None:
        return False
    arn_region, tid, kind = parsed
    target = targets.get(tid)
    return target is not None and arn_region == region and target.type == kind


def _expand(events: Iterable[str]) -> set[str]:
    """Concrete event names a list of patterns covers (a wildcard covers its whole category)."""
    out: set[str] = set()
    for e in events:
        if e.endswith(":*"):
            category = e[:-1]
            out |= {x for x in EVENTS if x.startswith(category) and not x.endswith(":*")}
            out.add(e)  # categories without listed members still collide with themselves
        else:
            out.add(e)
    return out


def _overlap(a: Rule, b: Rule) -> bool:
    events_a, events_b = _expand(a.events), _expand(b.events)
    if not (events_a & events_b):
        return False
    pa, pb = a.prefix or "", b.prefix or ""
    sa, sb = a.suffix or "", b.suffix or ""
    prefixes = pa.startswith(pb) or pb.startswith(pa)
    suffixes = sa.endswith(sb) or sb.endswith(sa)
    return prefixes and suffixes


def dumps(rules: list[Rule]) -> str:
    return json.dumps({"version": 1, "rules": [r.to_json() for r in rules]}, separators=(",", ":"))


def loads(document: str | None) -> list[Rule]:
    if not document:
        return []
    d = json.loads(document)
    return [Rule.from_json(r) for r in d.get("rules", [])]
