"""Wildcard patterns and policy variables, compiled once at parse time.

A pattern is a sequence of tokens: literal text, ``*``, ``?`` and (in "2012-10-17" documents)
policy variables ``${key}`` / ``${key, 'default'}`` and the escapes ``${*}``, ``${?}``, ``${$}``.
A pattern without variables compiles to one regular expression at parse time; a pattern with
variables keeps its tokens, and each evaluation substitutes the request's values (as literal
text, never as wildcards) before matching, so a user named ``a*`` cannot widen a grant.

Two wildcard dialects exist in the policy language:
- free (``StringLike``, action names): ``*`` matches any run of characters;
- ARN (``Resource``, ``ArnLike``): an ARN has six colon-separated parts and a wildcard in one of
  the first five parts stays inside that part; the sixth part (the resource path) may contain
  colons and its ``*`` matches anything. A pattern with fewer than six parts whose last
  character is ``*`` expands beyond the colons, as AWS documents ("arn:aws:s3:*").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_VAR = re.compile(r"\$\{([^}]*)\}")
# ${ key , 'default' }: the key is a context key name; '' inside the default is one quote.
_VAR_BODY = re.compile(r"^\s*([^\s,']+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?$")


class VariableError(ValueError):
    """A ``${...}`` that is neither a known escape nor ``key`` / ``key, 'default'``."""


@dataclass(frozen=True, slots=True)
class Variable:
    key: str  # lower-cased context key name
    default: str | None


class Wildcard:
    __slots__ = ("char",)

    def __init__(self, char: str) -> None:
        self.char = char

    def __repr__(self) -> str:
        return self.char


# Tokens: str (literal text), STAR, QMARK, or Variable.
STAR = Wildcard("*")
QMARK = Wildcard("?")
Token = str | Variable | Wildcard


def tokenize(text: str, variables: bool) -> tuple[Token, ...]:
    """Split a pattern into tokens; ``variables`` is False for "2008-10-17" documents, where
    ``${...}`` is plain text. Raises VariableError for a malformed ``${...}``."""
    out: list[Token] = []
    pos = 0
    literal: list[str] = []

    def flush() -> None:
        if literal:
            out.append("".join(literal))
            literal.clear()

    while pos < len(text):
        ch = text[pos]
        if variables and text.startswith("${", pos):
            m = _VAR.match(text, pos)
            if m is None:
                raise VariableError(text)
            body = m.group(1)
            if body in ("*", "?", "$"):
                literal.append(body)
            else:
                vm = _VAR_BODY.match(body)
                if vm is None:
                    raise VariableError(text)
                flush()
                default = vm.group(2)
                out.append(Variable(vm.group(1).lower(), None if default is None else default.replace("''", "'")))
            pos = m.end()
            continue
        if ch == "*":
            flush()
            out.append(STAR)
        elif ch == "?":
            flush()
            out.append(QMARK)
        else:
            literal.append(ch)
        pos += 1
    flush()
    return tuple(out)


def has_variables(tokens: Sequence[Token]) -> bool:
    return any(isinstance(t, Variable) for t in tokens)


def has_wildcards(tokens: Sequence[Token]) -> bool:
    return any(isinstance(t, Wildcard) for t in tokens)


def resolve_variable(var: Variable, keys: Mapping[str, Sequence[str]]) -> str | None:
    """The value a variable stands for in this request, or None when it has none (absent, or
    multi-valued: AWS does not substitute multi-valued keys)."""
    values = keys.get(var.key)
    if isinstance(values, str):
        return values
    if values is not None and len(values) == 1:
        return values[0]
    return var.default


def _regex(tokens: Sequence[Token], arn: bool, keys: Mapping[str, Sequence[str]] | None) -> str | None:
    """Regex source for tokens; None when a variable has no value in ``keys``."""
    parts: list[str] = []
    free_from_start = False
    if arn:
        # Count the colons of the pattern's literal text to know which ARN part a token is in.
        text_colons = sum(t.count(":") for t in tokens if isinstance(t, str))
        free_from_start = text_colons < 5 and bool(tokens) and tokens[-1] is STAR
    colons = 0
    for t in tokens:
        if isinstance(t, Wildcard):
            free = not arn or free_from_start or colons >= 5
            if t is STAR:
                parts.append(".*" if free else "[^:]*")
            else:
                parts.append("." if free else "[^:]")
        elif isinstance(t, Variable):
            if keys is None:
                return None
            value = resolve_variable(t, keys)
            if value is None:
                return None
            parts.append(re.escape(value))
        else:
            if arn:
                colons += t.count(":")
            parts.append(re.escape(t))
    return "".join(parts)


class Pattern:
    """One compiled pattern (a Resource entry, a StringLike / ArnLike value, an action)."""

    __slots__ = ("tokens", "arn", "flags", "regex", "literal", "_resolved")

    # Expressions compiled for the variable values seen lately (per pattern, bounded): a
    # per-user Resource is compiled once per user, not once per request.
    CACHE_SIZE = 256

    def __init__(self, tokens: tuple[Token, ...], arn: bool, ignore_case: bool = False) -> None:
        self.tokens = tokens
        self.arn = arn
        self.flags = re.IGNORECASE if ignore_case else 0
        self.regex: re.Pattern[str] | None = None
        self.literal: str | None = None
        self._resolved: dict[tuple[str, ...], re.Pattern[str]] = {}
        if not has_variables(tokens):
            if not has_wildcards(tokens):
                text = "".join(t for t in tokens if isinstance(t, str))
                self.literal = text.lower() if ignore_case else text
            else:
                source = _regex(tokens, arn, None)
                assert source is not None
                self.regex = re.compile(source, self.flags | re.DOTALL)

    @property
    def dynamic(self) -> bool:
        return self.literal is None and self.regex is None

    def matches(self, value: str, keys: Mapping[str, Sequence[str]]) -> bool | None:
        """True / False, or None when a policy variable has no value in this request."""
        if self.literal is not None:
            return (value.lower() if self.flags else value) == self.literal
        if self.regex is not None:
            return self.regex.fullmatch(value) is not None
        resolved: list[str] = []
        for t in self.tokens:
            if isinstance(t, Variable):
                text = resolve_variable(t, keys)
                if text is None:
                    return None
                resolved.append(text)
        cache_key = tuple(resolved)
        regex = self._resolved.get(cache_key)
        if regex is None:
            source = _regex(self.tokens, self.arn, keys)
            assert source is not None
            regex = re.compile(source, self.flags | re.DOTALL)
            if len(self._resolved) >= self.CACHE_SIZE:
                self._resolved.clear()
            self._resolved[cache_key] = regex
        return regex.fullmatch(value) is not None


def substitute(tokens: Sequence[Token], keys: Mapping[str, Sequence[str]]) -> str | None:
    """The literal text of a wildcard-free pattern with its variables replaced (StringEquals
    values), or None when a variable has no value."""
    out: list[str] = []
    for t in tokens:
        if isinstance(t, Variable):
            value = resolve_variable(t, keys)
            if value is None:
                return None
            out.append(value)
        elif isinstance(t, Wildcard):
            out.append(t.char)
        else:
            out.append(t)
    return "".join(out)
