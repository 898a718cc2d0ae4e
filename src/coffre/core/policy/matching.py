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


Plain = str | Wildcard  # a token once variables are substituted


def _glob_source(tokens: Sequence[Plain]) -> str:
    """A regular expression (for ``re.match``, with DOTALL) accepting exactly what the glob
    accepts, in time linear in the text for each part between stars.

    A naive translation (``a.*b.*c``) backtracks exponentially in the number of stars: a policy
    with a handful of ``*`` and a long key would hold a CPU for hours. A glob has a greedy
    solution: the text between two stars may always be matched at its leftmost occurrence,
    so each such middle part is an atomic group that never gives back what it matched; only the
    last part is anchored at the end of the text."""
    segments: list[list[str]] = [[]]
    for t in tokens:
        if t is STAR:
            segments.append([])
        elif isinstance(t, Wildcard):
            segments[-1].append(".")
        else:
            segments[-1].append(re.escape(t))
    sources = ["".join(segment) for segment in segments]
    if len(sources) == 1:
        return sources[0] + r"\Z"
    middle = "".join(f"(?>.*?{source})" for source in sources[1:-1] if source)
    return f"{sources[0]}{middle}.*{sources[-1]}\\Z"


def _plain(text: str) -> list[Plain]:
    return [t for t in tokenize(text, variables=False) if not isinstance(t, Variable)]


def glob_regex(text: str, ignore_case: bool = False) -> re.Pattern[str]:
    """A compiled glob (``*`` and ``?``) for ``.match``; ``text`` has no policy variables."""
    return re.compile(_glob_source(_plain(text)),
                      re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def globs_regex(texts: Sequence[str], ignore_case: bool = False) -> re.Pattern[str]:
    """One expression (for ``.match``) accepting what any of the globs accepts."""
    sources = [_glob_source(_plain(text)) for text in texts]
    return re.compile("|".join(f"(?:{source})" for source in sources),
                      re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _split_colons(tokens: Sequence[Plain]) -> list[list[Plain]]:
    parts: list[list[Plain]] = [[]]
    for t in tokens:
        if isinstance(t, Wildcard):
            parts[-1].append(t)
            continue
        pieces = t.split(":")
        if pieces[0]:
            parts[-1].append(pieces[0])
        for piece in pieces[1:]:
            parts.append([piece] if piece else [])
    return parts


class _Matcher:
    """A compiled pattern without variables: one expression, or (ARN patterns with a wildcard
    in one of the first five parts) one expression per colon-separated part."""

    __slots__ = ("regex", "parts", "whole_split")

    def __init__(self, tokens: Sequence[Plain], arn: bool, flags: int) -> None:
        self.regex: re.Pattern[str] | None = None
        self.parts: tuple[re.Pattern[str], ...] = ()
        self.whole_split = False
        flags |= re.DOTALL
        if arn:
            parts = _split_colons(tokens)
            trailing_star = bool(tokens) and tokens[-1] is STAR
            head = parts[:5] if len(parts) >= 6 else ([] if trailing_star else parts)
            if any(isinstance(t, Wildcard) for part in head for t in part):
                # A wildcard in the first five parts stays in its part: match part by part.
                if len(parts) >= 6:
                    tail: list[Plain] = []
                    for i, part in enumerate(parts[5:]):
                        if i:
                            tail.append(":")
                        tail.extend(part)
                    self.parts = tuple(re.compile(_glob_source(p), flags) for p in [*parts[:5], tail])
                else:
                    self.parts = tuple(re.compile(_glob_source(p), flags) for p in parts)
                    self.whole_split = True
                return
        # No wildcard before the resource part (the usual "arn:aws:s3:::bucket/*"), a short
        # pattern ending in "*", or a plain glob: one expression over the whole text.
        self.regex = re.compile(_glob_source(tokens), flags)

    def match(self, value: str) -> bool:
        if self.regex is not None:
            return self.regex.match(value) is not None
        pieces = value.split(":") if self.whole_split else value.split(":", 5)
        if len(pieces) != len(self.parts):
            return False
        for regex, piece in zip(self.parts, pieces, strict=True):
            if regex.match(piece) is None:
                return False
        return True


class Pattern:
    """One compiled pattern (a Resource entry, a StringLike / ArnLike value, an action)."""

    __slots__ = ("tokens", "arn", "flags", "literal", "matcher", "_resolved")

    # Matchers compiled for the variable values seen lately (per pattern, bounded): a
    # per-user Resource is compiled once per user, not once per request.
    CACHE_SIZE = 256

    def __init__(self, tokens: tuple[Token, ...], arn: bool, ignore_case: bool = False) -> None:
        self.tokens = tokens
        self.arn = arn
        self.flags = re.IGNORECASE if ignore_case else 0
        self.literal: str | None = None
        self.matcher: _Matcher | None = None
        self._resolved: dict[tuple[str, ...], _Matcher] = {}
        if not has_variables(tokens):
            plain = [t for t in tokens if not isinstance(t, Variable)]
            if not has_wildcards(tokens):
                text = "".join(t for t in plain if isinstance(t, str))
                self.literal = text.lower() if ignore_case else text
            else:
                self.matcher = _Matcher(plain, arn, self.flags)

    @property
    def dynamic(self) -> bool:
        return self.literal is None and self.matcher is None

    def matches(self, value: str, keys: Mapping[str, Sequence[str]]) -> bool | None:
        """True / False, or None when a policy variable has no value in this request."""
        if self.literal is not None:
            return (value.lower() if self.flags else value) == self.literal
        if self.matcher is not None:
            return self.matcher.match(value)
        resolved: list[str] = []
        plain: list[Plain] = []
        for t in self.tokens:
            if isinstance(t, Variable):
                text = resolve_variable(t, keys)
                if text is None:
                    return None
                resolved.append(text)
                plain.append(text)  # literal text: a value's "*" is not a wildcard
            else:
                plain.append(t)
        cache_key = tuple(resolved)
        matcher = self._resolved.get(cache_key)
        if matcher is None:
            matcher = _Matcher(plain, self.arn, self.flags)
            if len(self._resolved) >= self.CACHE_SIZE:
                self._resolved.clear()
            self._resolved[cache_key] = matcher
        return matcher.match(value)


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
