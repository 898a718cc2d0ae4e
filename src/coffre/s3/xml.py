"""Hardened XML parsing and S3 XML rendering.

Parsing: one lxml parser with entities, DTDs and network access off; any
DOCTYPE is refused; bodies are size-capped before parsing. Rendering: a small
escaping writer (faster than building trees for the hot listing path).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from lxml import etree

from coffre.core.errors import MalformedXML

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          dtd_validation=False, remove_comments=True, remove_pis=True)


def parse(body: bytes) -> etree._Element:
    """Parse a request body; namespaces are stripped so lookups use local names."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise MalformedXML("DOCTYPE and ENTITY declarations are not allowed.")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise MalformedXML() from exc
    if root is None:
        raise MalformedXML()
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def has_text(s: str | None) -> bool:
    """Whether ``s`` holds more than whitespace."""
    return bool(s and s.strip())


def children(el: etree._Element, *, text_without_children: bool = False) -> list[etree._Element]:
    """The element children of ``el``; stray text beside them is MalformedXML.

    ``text_without_children`` lets text stand in an element that has no children at all."""
    if has_text(el.text) and (len(el) or not text_without_children):
        raise MalformedXML()
    out = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if has_text(child.tail):
            raise MalformedXML()
        out.append(child)
    return out


def leaf(el: etree._Element) -> str:
    """The text of an element that must have no children (MalformedXML otherwise)."""
    if len(el):
        raise MalformedXML()
    return el.text or ""


def text(el: etree._Element, name: str, default: str | None = None) -> str | None:
    child = el.find(name)
    if child is None:
        return default
    return child.text or ""


def iso8601(ts: float) -> str:
    """S3's timestamp format in XML bodies: 2006-02-03T16:45:09.000Z.

    Formatted from ``time.gmtime`` with the second's text memoised (a listing formats
    a thousand of these per page; ``datetime.strftime`` was an eighth of its CPU)."""
    ms = int(ts * 1000)
    sec, frac = divmod(ms, 1000)
    return f"{iso8601_second(sec)}{frac:03d}Z"


# The text of a whole second, memoised (lru_cache: a hit is one C-level lookup): a listing
# formats a thousand timestamps per page, and objects written together share their second.
@functools.lru_cache(maxsize=4096)
def iso8601_second(sec: int) -> str:
    """``2006-02-03T16:45:09.``: the text of a whole second (iso8601's first part)."""
    t = time.gmtime(sec)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(ts: float) -> str:
    """An HTTP date (RFC 9110 IMF-fixdate, what Last-Modified carries): Sun, 06 Nov 1994 08:49:37 GMT.

    Formatted from ``time.gmtime`` directly (email.utils.formatdate goes through datetime
    and took 2% of a small GET's CPU); always English names, whatever the locale."""
    return _http_second(int(ts))


@functools.lru_cache(maxsize=4096)
def _http_second(sec: int) -> str:
    t = time.gmtime(sec)
    return (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


_XML_ILLEGAL = {i: f"&#x{i:X};" for i in range(0x20) if i not in (0x9, 0xA, 0xD)}
# Anything esc() has to change; most keys, ETags and ids hold none of it.
_SPECIAL = re.compile(r"[&<>\x00-\x1f]")


def needs_escape(value: str) -> bool:
    """Whether esc() would change ``value``: a listing asks once for the whole page.

    ``in`` and ``isprintable`` are C loops several times faster than the regex over a page's
    ~100 KB of text; text that is printable and holds no ``&<>`` has nothing to escape (the
    control characters are not printable). Only otherwise does the regex decide."""
    if "&" in value or "<" in value or ">" in value:
        return True
    return not value.isprintable() and _SPECIAL.search(value) is not None


def esc(value: str) -> str:
    """Escape for XML text; control characters become character references as S3 emits them."""
    if _SPECIAL.search(value) is None:
        return value
    s = escape(value)
    if "\r" in s:
        s = s.replace("\r", "&#13;")
    return s.translate(_XML_ILLEGAL)


def url_value(value: str, url: bool) -> str:
    """A key or prefix as a listing returns it: URL-encoded under ``encoding-type=url``.

    XML 1.0 cannot carry every character a key may hold; URL encoding can."""
    return quote(value, safe="/") if url else value


class Doc:
    """A tiny streaming XML builder: doc.open("A"); doc.leaf("B", "x"); doc.close("A")."""

    __slots__ = ("parts",)

    def __init__(self, root: str | None = None, ns: bool = True) -> None:
        self.parts: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n']
        if root is not None:
            self.parts.append(f'<{root} xmlns="{S3_NS}">' if ns else f"<{root}>")

    def open(self, name: str) -> Doc:
        self.parts.append(f"<{name}>")
        return self

    def close(self, name: str) -> Doc:
        self.parts.append(f"</{name}>")
        return self

    def leaf(self, name: str, value: Any) -> Doc:
        if value is None:
            return self
        if isinstance(value, bool):
            value = "true" if value else "false"
        self.parts.append(f"<{name}>{esc(str(value))}</{name}>")
        return self

    def leaves(self, pairs: Iterable[tuple[str, Any]]) -> Doc:
        for k, v in pairs:
            self.leaf(k, v)
        return self

    def raw(self, fragment: str) -> Doc:
        self.parts.append(fragment)
        return self

    def bytes(self) -> bytes:
        return "".join(self.parts).encode("utf-8")
