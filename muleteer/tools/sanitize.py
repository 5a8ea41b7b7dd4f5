"""Galaxy's text sanitizer: what a text/hidden/select value may look like when it reaches a
command.

Galaxy keeps letters, digits and " -=_.()/+*^,:?!" as they are, maps a few characters to
`__xx__` names (lib/galaxy/util/__init__.py `valid_chars`, `mapped_chars`) and replaces
everything else with "X". A param's `<sanitizer>` changes those sets
(lib/galaxy/tools/parameters/sanitize.py ToolParameterSanitizer); both are reproduced here
so that a wrapper written for Galaxy sees the same strings under Muleteer.
"""
from __future__ import annotations

import string

from muleteer.tools.errors import ToolError
from muleteer.tools.model import Sanitizer

DEFAULT_VALID = frozenset(string.ascii_letters + string.digits + " -=_.()/+*^,:?!")

# Galaxy's mapped_chars, in its order (restoring text replaces in this order).
DEFAULT_MAPPING = (
    (">", "__gt__"),
    ("<", "__lt__"),
    ("'", "__sq__"),
    ('"', "__dq__"),
    ("[", "__ob__"),
    ("]", "__cb__"),
    ("{", "__oc__"),
    ("}", "__cc__"),
    ("@", "__at__"),
    ("\n", "__cn__"),
    ("\r", "__cr__"),
    ("\t", "__tc__"),
    ("#", "__pd__"),
)
DEFAULT_INVALID_CHAR = "X"

# The `string` module constants a <valid initial|preset> may name; Galaxy evaluates
# "string.<name>", we look the name up instead of evaluating anything.
_STRING_CONSTANTS = ("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits",
                     "hexdigits", "octdigits", "punctuation", "printable", "whitespace")
# Python 2 names Galaxy still accepts.
_PY2_NAMES = {"letters": "ascii_letters", "lowercase": "ascii_lowercase",
              "uppercase": "ascii_uppercase"}

DEFAULT_SANITIZER = Sanitizer(valid=DEFAULT_VALID, mapping=DEFAULT_MAPPING,
                              invalid_char=DEFAULT_INVALID_CHAR)
OFF = Sanitizer(off=True)


def sanitize_text(text: str, sanitizer: Sanitizer | None) -> str:
    """`text` as Galaxy puts it in a command: None is Galaxy's default sanitizer, a
    Sanitizer with `off` leaves the text as it is."""
    sanitizer = DEFAULT_SANITIZER if sanitizer is None else sanitizer
    if sanitizer.off:
        return text
    mapping = dict(sanitizer.mapping)
    out = []
    for char in text:
        if char in sanitizer.valid:
            out.append(char)
        elif char in mapping:
            out.append(mapping[char])
        else:
            out.append(sanitizer.invalid_char)
    return "".join(out)


def _where(element) -> str:
    line = getattr(element, "sourceline", None)
    return f"line {line}: " if line else ""


def _valid_preset(names: str, element) -> list[str]:
    """Characters of a comma list of presets: default, none, string.<constant>. As in
    Galaxy, anything after a ';' in a name is ignored."""
    chars: list[str] = []
    for name in names.split(","):
        name = name.split(";", 1)[0].strip()
        if name.startswith("string."):
            constant = _PY2_NAMES.get(name[7:], name[7:])
            if constant not in _STRING_CONSTANTS:
                raise ToolError(f"{_where(element)}<sanitizer>: unknown preset {name!r} "
                                f"(known: default, none, "
                                f"{', '.join('string.' + c for c in _STRING_CONSTANTS)})")
            value = getattr(string, constant)
        elif name == "default":
            value = string.ascii_letters + string.digits + " -=_.()/+*^,:?!"
        elif name in ("none", ""):
            value = ""
        else:
            raise ToolError(f"{_where(element)}<sanitizer>: unknown preset {name!r} "
                            "(known: default, none, string.<constant>)")
        chars.extend(c for c in value if c not in chars)
    return chars


def _mapping_preset(names: str, element) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for name in names.split(","):
        name = name.strip()
        if name == "default":
            mapping.update(DEFAULT_MAPPING)
        elif name not in ("none", ""):
            raise ToolError(f"{_where(element)}<sanitizer>: unknown mapping preset {name!r} "
                            "(known: default, none)")
    return mapping


def _as_bool(value: str) -> bool:
    # Galaxy's string_as_bool: only these spellings are true.
    return value.strip().lower() in ("true", "yes", "on", "1")


def parse_sanitizer(element) -> Sanitizer:
    """A param's <sanitizer> element (lxml or ElementTree) as Galaxy reads it. As in
    Galaxy, a <sanitizer> without <valid> keeps no character as it is, and one without
    <mapping> maps none: only what the element declares applies."""
    if not _as_bool(element.get("sanitize", "True")):
        return OFF
    valid: list[str] = []
    for valid_elem in element.findall("valid"):
        valid = _valid_preset(valid_elem.get("initial", "default"), valid_elem)
        for action in valid_elem:
            if not isinstance(action.tag, str):
                continue                         # an XML comment
            chars = _valid_preset(action.get("preset", "none"), action) \
                + list(action.get("value", ""))
            tag = action.tag.lower()
            if tag == "add":
                valid.extend(c for c in chars if c not in valid)
            elif tag == "remove":
                valid = [c for c in valid if c not in chars]
            else:
                raise ToolError(f"{_where(action)}<sanitizer><valid>: unknown element "
                                f"<{action.tag}> (expected <add> or <remove>)")
    mapping: dict[str, str] = {}
    for mapping_elem in element.findall("mapping"):
        mapping = _mapping_preset(mapping_elem.get("initial", "default"), mapping_elem)
        for action in mapping_elem:
            if not isinstance(action.tag, str):
                continue
            preset = _mapping_preset(action.get("preset", "none"), action)
            source, target = action.get("source"), action.get("target")
            tag = action.tag.lower()
            if tag == "add":
                mapping.update(preset)
                if source is not None and target is not None:
                    mapping[source] = target
            elif tag == "remove":
                for key in preset:
                    mapping.pop(key, None)
                if source is not None:
                    mapping.pop(source, None)
            else:
                raise ToolError(f"{_where(action)}<sanitizer><mapping>: unknown element "
                                f"<{action.tag}> (expected <add> or <remove>)")
    return Sanitizer(valid=frozenset(valid), mapping=tuple(mapping.items()),
                     invalid_char=element.get("invalid_char", DEFAULT_INVALID_CHAR))
