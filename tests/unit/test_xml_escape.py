"""XML text escaping: the page-wide shortcut agrees with the escaping itself."""

from __future__ import annotations

import re

import pytest

from coffre.s3.xml import esc, needs_escape

SPECIAL = re.compile(r"[&<>\x00-\x1f]")


@pytest.mark.parametrize("text", [
    "", "plain/key.txt", "a&b", "<", ">", "tab\there", "new\nline", "cr\rx", "\x00", "\x1f", "\x7f del",
    "é café", "\u00a0nbsp", "line\u2028sep", "zero\u200bwidth", "emoji 🙂", "\udc80 surrogate",
    "x" * 100_000 + "&", "y" * 100_000 + "\x01", "z" * 100_000 + "\u00a0",
])
def test_needs_escape_agrees_with_the_escaping(text: str) -> None:
    # Exactly the characters esc() looks at; text without any is left as it is.
    assert needs_escape(text) == (SPECIAL.search(text) is not None)
    if not needs_escape(text):
        assert esc(text) == text


def test_escaped_forms() -> None:
    assert esc("a&b<c>d") == "a&amp;b&lt;c&gt;d"
    assert esc("a\rb\x01c\td") == "a&#13;b&#x1;c\td"
