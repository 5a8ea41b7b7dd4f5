"""muleteer/tools/sanitize.py: Galaxy's text sanitizer, character for character."""
import string

import pytest
from lxml import etree

from muleteer.tools.errors import ToolError
from muleteer.tools.model import Sanitizer
from muleteer.tools.sanitize import (DEFAULT_MAPPING, DEFAULT_VALID, parse_sanitizer,
                                     sanitize_text)


def sanitizer(xml: str) -> Sanitizer:
    return parse_sanitizer(etree.fromstring(xml))


# Galaxy's lib/galaxy/util/__init__.py mapped_chars, as documented there.
GALAXY_MAPPED = {">": "__gt__", "<": "__lt__", "'": "__sq__", '"': "__dq__", "[": "__ob__",
                 "]": "__cb__", "{": "__oc__", "}": "__cc__", "@": "__at__", "\n": "__cn__",
                 "\r": "__cr__", "\t": "__tc__", "#": "__pd__"}


def test_default_sets_are_galaxys():
    assert DEFAULT_VALID == set(string.ascii_letters + string.digits + " -=_.()/+*^,:?!")
    assert dict(DEFAULT_MAPPING) == GALAXY_MAPPED


@pytest.mark.parametrize("char,expected", sorted(GALAXY_MAPPED.items()))
def test_default_mapping(char, expected):
    assert sanitize_text(f"a{char}b", None) == f"a{expected}b"


@pytest.mark.parametrize("char", list("$`;|&\\%~") + ["\x00", "é"])
def test_default_replaces_other_characters_with_X(char):
    # Galaxy maps neither $ nor the shell's ; | & ` : they become X.
    assert sanitize_text(f"a{char}b", None) == "aXb"


def test_default_keeps_valid_characters():
    text = string.ascii_letters + string.digits + " -=_.()/+*^,:?!"
    assert sanitize_text(text, None) == text


def test_galaxy_doctest_example():
    # Galaxy's Params docstring: '$rm&#!' sanitized.
    assert sanitize_text("$rm&#!", None) == "XrmX__pd__!"
    assert sanitize_text("<>", None) == "__lt____gt__"


def test_off_leaves_text_unchanged():
    text = "'; rm -rf / #$`"
    assert sanitize_text(text, Sanitizer(off=True)) == text
    assert sanitize_text(text, sanitizer('<sanitizer sanitize="False"/>')) == text


def test_invalid_char_and_ascii_letters_only():
    # Galaxy's first ToolParameterSanitizer doctest.
    s = sanitizer('<sanitizer invalid_char=""><valid initial="string.ascii_letters"/></sanitizer>')
    assert sanitize_text(string.printable, s) == string.ascii_letters


def test_printable_minus_quote_with_escaping_mapping():
    # Galaxy's second ToolParameterSanitizer doctest.
    s = sanitizer("""
        <sanitizer>
          <valid initial="none">
            <add preset="string.printable"/>
            <remove value="&quot;"/>
            <remove value="\\"/>
          </valid>
          <mapping initial="none">
            <add source="&quot;" target="\\&quot;"/>
            <add source="\\" target="\\\\"/>
          </mapping>
        </sanitizer>""")
    assert list(sanitize_text('\\"$rm&#!', s)) == ["\\", "\\", "\\", '"', "$", "r", "m", "&",
                                                   "#", "!"]


def test_without_valid_or_mapping_nothing_is_kept():
    # As in Galaxy: only what the element declares applies.
    assert sanitize_text("ab'", sanitizer("<sanitizer/>")) == "XXX"


def test_mapping_default_plus_and_minus():
    s = sanitizer("""
        <sanitizer>
          <valid/>
          <mapping>
            <add source="|" target="__pipe__"/>
            <remove source="#"/>
          </mapping>
        </sanitizer>""")
    assert sanitize_text("a|b#'", s) == "a__pipe__bX__sq__"


def test_valid_add_remove_and_python2_names():
    s = sanitizer("""
        <sanitizer invalid_char="?">
          <valid initial="string.letters,string.digits">
            <add value="-;"/>
            <remove preset="string.digits"/>
          </valid>
        </sanitizer>""")
    assert sanitize_text("ab-;1 ", s) == "ab-;??"


def test_unknown_preset_is_a_tool_error_with_line():
    with pytest.raises(ToolError, match=r"line 2: .*'string.nope'"):
        sanitizer('<sanitizer>\n<valid initial="string.nope"/></sanitizer>')
    with pytest.raises(ToolError, match="unknown mapping preset 'fancy'"):
        sanitizer('<sanitizer><mapping initial="fancy"/></sanitizer>')
