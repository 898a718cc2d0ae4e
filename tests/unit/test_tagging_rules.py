"""core.tagging's pure rules: the x-amz-tagging header format and the tag limits."""

from __future__ import annotations

import pytest

from coffre.core.errors import InvalidArgument, InvalidTag, TooManyTags
from coffre.core.tagging import MAX_BUCKET_TAGS, check_tags, copy_tags, header_tags, parse_header


@pytest.mark.parametrize("header, pairs", [
    ("", []),
    ("&&", []),
    ("a=1", [("a", "1")]),
    ("a", [("a", "")]),
    ("a=", [("a", "")]),
    ("a=b=c", [("a", "b=c")]),
    ("a+b=c%2Bd", [("a b", "c+d")]),
    ("%E2%82%AC=%F0%9D%92%9C", [("€", "𝒜")]),
    ("z=1&a=2", [("z", "1"), ("a", "2")]),  # order kept
])
def test_parse_header(header, pairs):
    assert parse_header(header) == pairs


@pytest.mark.parametrize("header", ["a=1&a=2", "=1", "&=", "a=%FF", "%C3=1", "a\udcff=1"])
def test_parse_header_refuses(header):
    with pytest.raises(InvalidArgument) as e:
        parse_header(header)
    assert e.value.fields == {"name": "x-amz-tagging", "value": header}


def test_header_tags_applies_the_rules():
    assert header_tags(None) == {}
    assert header_tags("a=1&b=") == {"a": "1", "b": ""}
    with pytest.raises(TooManyTags):
        header_tags("&".join(f"k{i}=" for i in range(11)))
    with pytest.raises(InvalidTag):
        header_tags("aws%3Ax=1")


def test_lengths_count_utf16_units():
    check_tags([("k" * 128, "v" * 256)])
    check_tags([("𝒜" * 64, "𝒜" * 128)])
    for pairs in ([("k" * 129, "")], [("𝒜" * 65, "")], [("k", "v" * 257)], [("k", "𝒜" * 129)]):
        with pytest.raises(InvalidTag):
            check_tags(pairs)


@pytest.mark.parametrize("text", ["a b", "Ünï_cödé.:/=+-@", "٣٤", "文字", "\u2028", "Ⅻ"])
def test_allowed_characters(text):
    assert check_tags([(text, text)]) == {text: text}


@pytest.mark.parametrize("text", ["a,b", "a;b", "a!b", "a*b", "a#b", "a%b", "a(b)", "a\tb", "a\nb", "😀", "e\u0301"])
def test_refused_characters(text):
    with pytest.raises(InvalidTag) as e:
        check_tags([(text, "v")])
    assert e.value.fields == {"tag_key": text}
    with pytest.raises(InvalidTag) as e:
        check_tags([("k", text)])
    assert e.value.fields == {"tag_key": "k", "tag_value": text}


def test_reserved_prefix_and_duplicates():
    with pytest.raises(InvalidTag, match="System tags"):
        check_tags([("aws:x", "1")])
    with pytest.raises(InvalidTag, match="case insensitive"):
        check_tags([("AwS:x", "1")])
    assert check_tags([("x:aws:y", "1")]) == {"x:aws:y": "1"}
    with pytest.raises(InvalidTag, match="same key"):
        check_tags([("a", "1"), ("a", "1")])


def test_each_tag_is_checked_before_the_count():
    many = [(f"k{i}", "") for i in range(20)]
    with pytest.raises(InvalidTag):
        check_tags(many + [("bad,key", "")])
    with pytest.raises(TooManyTags, match="Object tags cannot be greater than 10"):
        check_tags(many)
    assert len(check_tags(many, MAX_BUCKET_TAGS)) == 20
    with pytest.raises(TooManyTags, match="Bucket tag count cannot be greater than 50"):
        check_tags([(f"k{i}", "") for i in range(51)], MAX_BUCKET_TAGS)


def test_copy_tags():
    assert copy_tags("COPY", {"a": "1"}, {"b": "2"}) == {"a": "1"}
    assert copy_tags("REPLACE", {"a": "1"}, {"b": "2"}) == {"b": "2"}
    assert copy_tags("REPLACE", {"a": "1"}, {}) == {}
    with pytest.raises(InvalidArgument):
        copy_tags("copy", {}, {})
