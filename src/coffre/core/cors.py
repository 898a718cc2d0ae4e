"""CORS: a bucket's rules, their validation, and how a browser's request is matched against them.

No HTTP here: the protocol layer passes the Origin, the method and the requested headers in
and gets the values of the Access-Control-* response headers out. Matching follows S3:

- the first rule whose AllowedOrigin, AllowedMethod and (for a preflight) AllowedHeader all
  match wins; later rules are never consulted;
- an AllowedOrigin or AllowedHeader may hold one ``*`` standing for any text (possibly empty);
  origins compare case-sensitively outside the wildcard, header names case-insensitively;
- a rule that lists the literal origin ``*`` answers ``Access-Control-Allow-Origin: *`` (and no
  ``Access-Control-Allow-Credentials``); any other match echoes the request's Origin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from coffre.core.errors import (
    CORSBadRequest,
    CORSForbidden,
    InvalidRequest,
    NoSuchBucket,
    NoSuchCORSConfiguration,
)
from coffre.meta.base import MetadataStore
from coffre.meta.errors import NotFound

CONFIG_NAME = "cors"
MAX_RULES = 100
MAX_ID_LENGTH = 255
MAX_AGE_LIMIT = 2**31 - 1
METHODS = ("GET", "PUT", "HEAD", "POST", "DELETE")
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
NOT_ENABLED = "CORSResponse: CORS is not enabled for this bucket."
NOT_ALLOWED = ("CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
               "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not "
               "whitelisted by the resource's CORS spec.")  # "evalution": S3's own spelling


@dataclass(frozen=True, slots=True)
class CorsRule:
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    id: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "origins": list(self.allowed_origins), "methods": list(self.allowed_methods),
                "headers": list(self.allowed_headers), "expose": list(self.expose_headers),
                "max_age": self.max_age}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> CorsRule:
        def strings(name: str) -> tuple[str, ...]:
            v = d.get(name) or []
            assert isinstance(v, list)
            return tuple(str(x) for x in v)

        max_age = d.get("max_age")
        rid = d.get("id")
        return cls(strings("origins"), strings("methods"), strings("headers"), strings("expose"),
                   int(max_age) if isinstance(max_age, int) else None, str(rid) if rid is not None else None)


def validate(rules: list[CorsRule]) -> None:
    """What S3 refuses with InvalidRequest once the document's shape is right (MalformedXML is
    the protocol layer's). Checked rule by rule in S3's order: methods, origins, headers, exposed headers."""
    for rule in rules:
        for m in rule.allowed_methods:
            if m not in METHODS:
                raise InvalidRequest(f"Found unsupported HTTP method in CORS config. Unsupported method is {m}")
        for o in rule.allowed_origins:
            if o.count("*") > 1:
                raise InvalidRequest(f'AllowedOrigin "{o}" can not have more than one wildcard.')
        for h in rule.allowed_headers:
            if h.count("*") > 1:
                raise InvalidRequest(f'AllowedHeader "{h}" can not have more than one wildcard.')
        for h in rule.expose_headers:
            if "*" in h:
                raise InvalidRequest(f'ExposeHeader "{h}" contains wildcard. We currently do not support '
                                     "wildcard for ExposeHeader.")


def _wildcard_match(pattern: str, value: str) -> bool:
    star = pattern.find("*")
    if star < 0:
        return pattern == value
    prefix, suffix = pattern[:star], pattern[star + 1:]
    return len(value) >= len(prefix) + len(suffix) and value.startswith(prefix) and value.endswith(suffix)


def split_header_names(raw: str | None) -> list[str]:
    """Access-Control-Request-Headers as a list of lower-case names (empty items dropped)."""
    if not raw:
        return []
    return [n.strip().lower() for n in raw.split(",") if n.strip()]


@dataclass(frozen=True, slots=True)
class CorsMatch:
    rule: CorsRule
    allow_origin: str  # "*" or the request's Origin


def match(rules: list[CorsRule], origin: str, method: str, request_headers: list[str] | None = None) -> CorsMatch | None:
    """The first rule allowing ``origin`` to use ``method`` (and, for a preflight, every requested header)."""
    for rule in rules:
        if method not in rule.allowed_methods:
            continue
        if not any(_wildcard_match(o, origin) for o in rule.allowed_origins):
            continue
        if request_headers:
            allowed = [h.strip().lower() for h in rule.allowed_headers]
            if not all(any(_wildcard_match(a, h) for a in allowed) for h in request_headers):
                continue
        return CorsMatch(rule, "*" if "*" in rule.allowed_origins else origin)
    return None


def response_headers(m: CorsMatch, request_headers: list[str] | None = None) -> list[tuple[str, str]]:
    """The Access-Control-* headers (and Vary) S3 answers for a match, in S3's order."""
    rule = m.rule
    out = [("Access-Control-Allow-Origin", m.allow_origin),
           ("Access-Control-Allow-Methods", ", ".join(rule.allowed_methods))]
    if request_headers:
        out.append(("Access-Control-Allow-Headers", ", ".join(request_headers)))
    if rule.expose_headers:
        out.append(("Access-Control-Expose-Headers", ", ".join(rule.expose_headers)))
    if rule.max_age is not None:
        out.append(("Access-Control-Max-Age", str(rule.max_age)))
    if m.allow_origin != "*":
        out.append(("Access-Control-Allow-Credentials", "true"))
    out.append(("Vary", VARY))
    return out


def preflight(rules: list[CorsRule] | None, origin: str | None, method: str | None,
              raw_request_headers: str | None, resource_type: str) -> list[tuple[str, str]]:
    """The answer to an OPTIONS preflight: its headers, or CORSBadRequest / CORSForbidden.

    ``rules`` is None when the bucket has no CORS configuration; ``resource_type`` is
    "BUCKET" or "OBJECT" (S3 names it in the error)."""
    if not origin:
        raise CORSBadRequest("Insufficient information. Origin request header needed.")
    if method not in METHODS:
        raise CORSBadRequest(f"Invalid Access-Control-Request-Method: {'null' if method is None else method}")
    if rules is None:
        raise CORSForbidden(NOT_ENABLED, method=method, resource_type=resource_type)
    wanted = split_header_names(raw_request_headers)
    m = match(rules, origin, method, wanted)
    if m is None:
        raise CORSForbidden(NOT_ALLOWED, method=method, resource_type=resource_type)
    return response_headers(m, wanted)


def actual(rules: list[CorsRule] | None, origin: str, method: str) -> list[tuple[str, str]]:
    """Headers added to a (non-preflight) request carrying an Origin; none when no rule matches."""
    if not rules or not origin:
        return []
    m = match(rules, origin, method)
    return response_headers(m) if m is not None else []


# -- storage (one JSON document per bucket in the metadata store) --
async def load(meta: MetadataStore, bucket: str) -> list[CorsRule] | None:
    raw = await meta.get_bucket_config(bucket, CONFIG_NAME)
    if raw is None:
        return None
    return [CorsRule.from_json(d) for d in json.loads(raw)]


async def get(meta: MetadataStore, bucket: str) -> list[CorsRule]:
    rules = await load(meta, bucket)
    if rules is None:
        raise NoSuchCORSConfiguration(bucket=bucket)
    return rules


async def save(meta: MetadataStore, bucket: str, rules: list[CorsRule] | None) -> None:
    doc = None if rules is None else json.dumps([r.to_json() for r in rules], separators=(",", ":"))
    try:
        await meta.put_bucket_config(bucket, CONFIG_NAME, doc)
    except NotFound as e:
        raise NoSuchBucket(bucket=bucket) from e

