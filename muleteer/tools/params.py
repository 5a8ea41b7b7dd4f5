"""A client's parameter values for a tool, checked as Galaxy's tool API checks them.

`check_params` turns what a client submits (nested objects and lists, Galaxy's flat
`cond|param` / `repeat_0|param` keys, or both) into the complete value tree described in
model.py, or raises ParamError naming the bad field by its flat path. `walk` visits every
param of such a tree, `flatten` gives it back in the flat form, and `check_columns` checks
data_column values against the column counts of the datasets they refer to.

Where Galaxy tells an absent key from one sent empty, so does this module: an absent
value takes the param's initial value (its default, a select's `selected` option...); a
value sent as null or "" on an optional param unsets it (None), as Galaxy's from_json does.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from muleteer.tools.errors import ParamError, ToolError
from muleteer.tools.model import Conditional, Param, ParamType, Repeat, Section, Tool

MAX_TEXT = 100_000
# What Galaxy's clients send beside the params; nothing reads them here.
IGNORED_KEYS = ("dbkey", "chromInfo")
DATASET_SOURCES = ("dataset", "hda")  # Galaxy's name for a history dataset is "hda"
MAX_DATASET_ID = 2 ** 63
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_REPEAT_INDEX = re.compile(r"(.+)_(0|[1-9][0-9]*)")
# Galaxy's data param values: {"src", "id"} items, in a {"values": [...]} batch wrapper
# whose "batch"/"product" flags ask for one job per dataset (not supported here).
_ITEM_KEYS = ("src", "id")
_BATCH_KEYS = ("values", "batch", "product")


class _Absent:
    def __repr__(self):
        return "<absent>"


ABSENT = _Absent()


@dataclass(frozen=True)
class Visit:
    """One param reached in a value tree: its flat path ("queries_1|input"), the param,
    its value, and the dicts that hold it and its neighbours, innermost first (where
    Galaxy looks a data_ref or other name up)."""
    path: str
    param: Param
    value: object
    scope: tuple


# -- the public interface ------------------------------------------------------------------
def check_params(tool: Tool, submitted: dict | None) -> dict:
    """The complete, typed value tree for what a client submitted, or ParamError."""
    if submitted is None:
        submitted = {}
    if not isinstance(submitted, dict):
        raise ParamError("params", f"expected an object of parameter values, got {_kind(submitted)}")
    names = {item.name for item in tool.inputs}
    given = {k: v for k, v in submitted.items() if k not in IGNORED_KEYS or k in names}
    return _Checker(tool).inputs(tool.inputs, _expand(tool, given), "")


def walk(tool: Tool, values: dict) -> Iterator[Visit]:
    """Every param reached in `values` (a tree check_params made), in declaration order:
    only the chosen <when> of each conditional, every instance of each repeat."""
    yield from _walk(tool.inputs, values, "", (values,))


def flatten(tool: Tool, values: dict) -> dict[str, object]:
    """The tree in Galaxy's flat form ({"cond|param": v, "rep_0|param": v}); datasets as
    {"src": "hda", "id": N}. check_params(tool, flatten(tool, v)) == v."""
    flat: dict[str, object] = {}
    _flatten(tool.inputs, values, "", flat)
    return flat


def check_columns(tool: Tool, values: dict, columns_of: Callable[[int], int | None]) -> None:
    """Each data_column value must be a column of the dataset(s) its data_ref names
    (looked up as Galaxy does: in the param's own scope first, then outwards).
    `columns_of(dataset_id)` is that dataset's column count, None when unknown."""
    for visit in walk(tool, values):
        param = visit.param
        if param.type != ParamType.DATA_COLUMN or visit.value in (None, []) or not param.data_ref:
            continue
        ref = next((scope[param.data_ref] for scope in visit.scope if param.data_ref in scope), None)
        ids = [i for i in (ref if isinstance(ref, list) else [ref]) if _is_id(i)]
        counts = [(count, i) for i in ids if (count := columns_of(i)) is not None]
        if not counts:
            continue
        # Several datasets: Galaxy offers the columns they all have.
        last, dataset_id = min(counts)
        for column in visit.value if isinstance(visit.value, list) else [visit.value]:
            if column > last:
                raise ParamError(f"params.{visit.path}",
                                 f"column {column} is beyond the last column of dataset "
                                 f"{dataset_id} ({param.data_ref}), which has {last}")


# -- flat keys into the nested tree ----------------------------------------------------------
class _FlatRepeat(dict):
    """A repeat's instances given as flat keys: index -> instance dict."""


def _expand(tool: Tool, given: dict) -> dict:
    """`given` with every flat key ("c|x", "r_0|y") moved into its nested place; the nested
    values are copied, never changed."""
    tree = {k: _copy(v) for k, v in given.items() if "|" not in k}
    for key, value in given.items():
        if "|" in key:
            _insert(tool, tool.inputs, tree, key.split("|"), key, value, "")
    return tree


def _insert(tool, inputs, node: dict, segments, key, value, prefix):
    seg, rest = segments[0], segments[1:]
    if not rest:
        if seg in node:
            raise ParamError(f"params.{key}", "given twice: in flat form and nested")
        node[seg] = value
        return
    groups = [i for i in inputs if i.name == seg and isinstance(i, (Conditional, Section))]
    if groups:
        sub = node.setdefault(seg, {})
        if not isinstance(sub, dict) or isinstance(sub, _FlatRepeat):
            raise ParamError(f"params.{prefix}{seg}", f"given as {_kind(sub)} and in flat form ({key})")
        _insert(tool, [c for g in groups for c in _children(g)], sub, rest, key, value, f"{prefix}{seg}|")
        return
    match = _REPEAT_INDEX.fullmatch(seg)
    repeats = [i for i in inputs if match and isinstance(i, Repeat) and i.name == match[1]]
    if not repeats:
        raise ParamError(f"params.{key}", f"not a parameter of tool {tool.id} "
                                          f"({prefix}{seg} is no conditional, section or repeat instance)")
    instances = node.setdefault(match[1], _FlatRepeat())
    if not isinstance(instances, _FlatRepeat):
        raise ParamError(f"params.{prefix}{match[1]}",
                         f"given both as {_kind(instances)} and in flat form ({key})")
    instance = instances.setdefault(int(match[2]), {})
    _insert(tool, [c for r in repeats for c in r.inputs], instance, rest, key, value, f"{prefix}{seg}|")


def _children(group) -> tuple:
    if isinstance(group, Conditional):
        return (group.test,) + tuple(i for w in group.whens for i in w.inputs)
    return group.inputs


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# -- the nested tree, checked ---------------------------------------------------------------
class _Checker:
    def __init__(self, tool: Tool):
        self.tool = tool

    def inputs(self, inputs, given: dict, prefix: str) -> dict:
        names = [i.name for i in inputs]
        unknown = sorted(k for k in given if k not in names)
        if unknown:
            raise ParamError(f"params.{prefix}{unknown[0]}",
                             f"not a parameter of tool {self.tool.id} "
                             f"(its parameters here: {', '.join(names) or 'none'})")
        return {item.name: self.input(item, given.get(item.name, ABSENT), prefix) for item in inputs}

    def input(self, item, raw, prefix):
        path = prefix + item.name
        if isinstance(item, Param):
            return check_value(item, raw, path)
        if isinstance(item, Repeat):
            return self.repeat(item, raw, path)
        given = {} if raw is ABSENT or raw is None else raw
        if not isinstance(given, dict):
            raise ParamError(f"params.{path}", f"expected an object, got {_kind(raw)}")
        if isinstance(item, Section):
            return self.inputs(item.inputs, given, f"{path}|")
        return self.conditional(item, given, path)

    def conditional(self, cond: Conditional, given: dict, path: str) -> dict:
        test = cond.test
        value = check_value(test, given.get(test.name, ABSENT), f"{path}|{test.name}")
        when = cond.when(value)
        if when is None:
            raise ParamError(f"params.{path}|{test.name}",
                             f"{value!r} selects no case of conditional {cond.name} "
                             f"(its cases: {', '.join(repr(w.value) for w in cond.whens)})")
        chosen = {i.name for i in when.inputs}
        for key in given:
            others = [w.value for w in cond.whens if key in {i.name for i in w.inputs}]
            if key != test.name and key not in chosen and others:
                raise ParamError(f"params.{path}|{key}",
                                 f"belongs to the case {test.name}={others[0]!r} of conditional "
                                 f"{cond.name}, not to the chosen case {when.value!r}")
        rest = {k: v for k, v in given.items() if k != test.name}
        return {test.name: value, **self.inputs(when.inputs, rest, f"{path}|")}

    def repeat(self, repeat: Repeat, raw, path: str) -> list:
        if raw is ABSENT or raw is None:
            instances = [{}] * max(repeat.default, repeat.min)
        elif isinstance(raw, _FlatRepeat):
            indexes = sorted(raw)
            missing = next((i for i, index in enumerate(indexes) if i != index), None)
            if missing is not None:
                raise ParamError(f"params.{path}_{missing}",
                                 f"repeat indexes must run 0..n-1 without gaps "
                                 f"(given: {', '.join(map(str, indexes))})")
            instances = [raw[i] for i in indexes]
        elif isinstance(raw, list):
            instances = raw
        else:
            raise ParamError(f"params.{path}", f"expected a list of {repeat.name}, got {_kind(raw)}")
        if len(instances) < repeat.min:
            raise ParamError(f"params.{path}", f"needs at least {repeat.min} {repeat.name} "
                                               f"(given: {len(instances)})")
        if repeat.max is not None and len(instances) > repeat.max:
            raise ParamError(f"params.{path}", f"takes at most {repeat.max} {repeat.name} "
                                               f"(given: {len(instances)})")
        checked = []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise ParamError(f"params.{path}_{i}", f"expected an object, got {_kind(instance)}")
            checked.append(self.inputs(repeat.inputs, instance, f"{path}_{i}|"))
        return checked


def check_value(param: Param, raw, path: str):
    """One param's typed value for what was sent (ABSENT when its key was not sent);
    `path` is its flat path."""
    where = f"params.{path}"
    value = _CHECKS[param.type](param, raw, where)
    _validate(param, value, where)
    return value


def _unset(raw) -> bool:
    return raw is ABSENT or raw is None or raw == ""


def _empty(param: Param, where: str, default=ABSENT):
    """The value of a param left unset: its default when absent, None when optional."""
    if default is not ABSENT:
        return default
    if param.optional:
        return None
    raise ParamError(where, "required")


# -- one check per param type ---------------------------------------------------------------
def _text(param: Param, raw, where):
    if raw is ABSENT or raw is None:
        if param.type == ParamType.HIDDEN:
            return param.value  # Galaxy's hidden param: its value, whatever it is
        if raw is None and param.optional:
            return None
        return _empty(param, where, ABSENT if param.value is None else param.value)
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ParamError(where, f"expected text, got {_kind(raw)}")
    text = raw if isinstance(raw, str) else str(raw)
    if len(text) > MAX_TEXT:
        raise ParamError(where, f"too long ({len(text)} characters, at most {MAX_TEXT})")
    if "\x00" in text:
        raise ParamError(where, "contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParamError(where, "is not valid Unicode text (it holds a lone surrogate)") from None
    return text


def _color(param: Param, raw, where):
    if raw is ABSENT or raw is None:
        default = param.value if param.value is not None else "#000000"  # Galaxy's default
        return _color(param, default, where)
    if not isinstance(raw, str) or not _COLOR.fullmatch(raw):
        raise ParamError(where, f"expected a color as #rrggbb, got {_show(raw)}")
    return raw.lower()


def _integer(param: Param, raw, where):
    return _number(param, raw, where, integer=True)


def _float(param: Param, raw, where):
    return _number(param, raw, where, integer=False)


def _number(param: Param, raw, where, integer: bool):
    if _unset(raw):
        if raw is not ABSENT and param.optional:
            return None
        default = ABSENT
        if param.value not in (None, ""):
            default = _parse_number(param.value, integer, f"{where} (the tool's default)")
        return _empty(param, where, default)
    value = _parse_number(raw, integer, where)
    if param.min is not None and value < param.min:
        raise ParamError(where, f"{_fmt(value)} is below the minimum {_fmt(param.min)}")
    if param.max is not None and value > param.max:
        raise ParamError(where, f"{_fmt(value)} is above the maximum {_fmt(param.max)}")
    return value


def _parse_number(raw, integer: bool, where):
    kind = "a whole number" if integer else "a number"
    if isinstance(raw, bool):
        raise ParamError(where, f"expected {kind}, got a boolean")
    if isinstance(raw, str):
        try:
            raw = int(raw.strip()) if integer else float(raw.strip())
        except ValueError:
            raise ParamError(where, f"expected {kind}, got {raw!r}") from None
    if not isinstance(raw, (int, float)):
        raise ParamError(where, f"expected {kind}, got {_kind(raw)}")
    # NaN and the infinities ("nan", "inf", or 1e999 in JSON) are no value a tool can use.
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ParamError(where, f"must be a finite number (got {raw!r})")
    if integer:
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ParamError(where, f"expected {kind}, got {raw!r}")
            raw = int(raw)
        return raw
    try:
        return float(raw)
    except OverflowError:
        raise ParamError(where, "must be a finite number (this one is too large)") from None


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _boolean(param: Param, raw, where):
    if raw is ABSENT or raw is None:
        return bool(param.checked)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    raise ParamError(where, f"expected true or false, got {_show(raw)}")


def _select(param: Param, raw, where):
    if raw is None and not param.optional:
        raw = ABSENT  # null on a param that cannot be unset: its initial value
    if param.multiple:
        return _select_many(param, raw, where)
    if raw is ABSENT:
        selected = [o.value for o in param.options if o.selected]
        if selected:
            return selected[0]
        if param.options and not param.optional:
            return param.options[0].value
        # A dynamic list's first option is not known here: the handler picks it.
        return _empty(param, where, None if param.dynamic_options else ABSENT)
    if raw is None:
        return _empty(param, where, None if param.dynamic_options else ABSENT)
    if not isinstance(raw, str):
        raise ParamError(where, f"expected one option (text), got {_kind(raw)}")
    if raw == "" and param.optional and not _legal(param, ""):
        return None
    return _option(param, raw, where)


def _select_many(param: Param, raw, where):
    if raw is ABSENT:
        values = [o.value for o in param.options if o.selected]
    elif raw is None or raw == "":
        values = []
    elif isinstance(raw, str):
        # One option whose value holds a comma stays whole; else Galaxy's "a,b" form.
        values = [raw] if _legal(param, raw) else [v for v in raw.split(",") if v != ""]
    elif isinstance(raw, list):
        values = raw
    else:
        raise ParamError(where, f"expected a list of options, got {_kind(raw)}")
    for value in values:
        if not isinstance(value, str):
            raise ParamError(where, f"expected options as text, got {_kind(value)} {_show(value)}")
    if not values and not param.optional:
        raise ParamError(where, "required: select at least one option")
    return [_option(param, v, where) for v in values]


def _legal(param: Param, value: str) -> bool:
    return any(o.value == value for o in param.options)


def _option(param: Param, value: str, where) -> str:
    if param.dynamic_options is not None or _legal(param, value):
        return value
    # Galaxy falls back to an option's label when no option has that value.
    by_label = [o.value for o in param.options if o.label == value]
    if by_label:
        return by_label[0]
    legal = ", ".join(repr(o.value) for o in param.options)
    raise ParamError(where, f"{value!r} is not one of the options ({legal})")


def _data(param: Param, raw, where):
    items = [] if _unset(raw) else _dataset_items(raw, param.multiple, where)
    if not items:
        if param.optional:
            return [] if param.multiple else None
        raise ParamError(where, "required: select a dataset" + (" or more" if param.multiple else ""))
    if not param.multiple:
        if len(items) != 1:
            raise ParamError(where, f"takes one dataset, got {len(items)}")
        return _dataset_id(items[0], where)
    ids = [_dataset_id(item, where, f"item {i}: ") for i, item in enumerate(items)]
    if param.min is not None and len(ids) < param.min:
        raise ParamError(where, f"needs at least {_fmt(param.min)} datasets (given: {len(ids)})")
    if param.max is not None and len(ids) > param.max:
        raise ParamError(where, f"takes at most {_fmt(param.max)} datasets (given: {len(ids)})")
    return ids


def _dataset_items(raw, multiple: bool, where) -> list:
    """The dataset references in one of Galaxy's forms: an item, a list of items, a
    {"values": [...]} batch, or ids separated by commas."""
    if isinstance(raw, dict) and "values" in raw:
        unknown = sorted(set(raw) - set(_BATCH_KEYS))
        if unknown:
            raise ParamError(where, f"unknown key {unknown[0]!r} (a batch holds {', '.join(_BATCH_KEYS)})")
        values = raw["values"]
        if not isinstance(values, list):
            raise ParamError(where, f'"values" must be a list of datasets, got {_kind(values)}')
        if (raw.get("batch") or raw.get("product")) and len(values) > 1:
            raise ParamError(where, "a batch (one job per dataset) is not supported: "
                                    "submit one job per dataset")
        return values
    if isinstance(raw, list):
        if not multiple:
            raise ParamError(where, "takes one dataset, not a list")
        return raw
    if isinstance(raw, str) and "," in raw:
        return [part.strip() for part in raw.split(",")]
    return [raw]


def _dataset_id(item, where, what="") -> int:
    if isinstance(item, (int, str)) and not isinstance(item, bool):
        value = item  # Galaxy's legacy form: the id alone
    elif isinstance(item, dict):
        unknown = sorted(set(item) - set(_ITEM_KEYS))
        if unknown:
            raise ParamError(where, f'{what}unknown key {unknown[0]!r} (a dataset is {{"src", "id"}})')
        if item.get("src") not in DATASET_SOURCES:
            raise ParamError(where, f"{what}src must be one of {', '.join(DATASET_SOURCES)}, "
                                    f"got {_show(item.get('src'))}")
        value = item.get("id")
    else:
        raise ParamError(where, f'{what}expected a dataset {{"src": "hda", "id": N}}, got {_kind(item)}')
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not _is_id(value):
        raise ParamError(where, f"{what}expected a dataset id (a positive whole number), got {_show(value)}")
    return value


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < MAX_DATASET_ID


def _data_column(param: Param, raw, where):
    if _unset(raw) or raw == []:
        default = _column_default(param, where)
        if raw is not ABSENT and not param.accept_default:
            default = ABSENT  # sent empty: Galaxy's initial value does not apply
        if default is ABSENT and param.optional:
            return [] if param.multiple else None
        if default is ABSENT:
            raise ParamError(where, "required: a column number" + ("s" if param.multiple else ""))
        return default
    if not param.multiple:
        if isinstance(raw, list):
            raise ParamError(where, "takes one column, not a list")
        return _column(raw, where)
    if isinstance(raw, str):
        raw = [part for line in raw.split("\n") for part in line.split(",")]
    elif not isinstance(raw, list):
        raw = [raw]
    columns = [_column(c, where) for c in raw if not (isinstance(c, str) and c.strip() == "")]
    if not columns and not param.optional:
        raise ParamError(where, "required: at least one column number")
    return columns


def _column_default(param: Param, where):
    """Galaxy's initial value: the `value` attribute; else column 1 when accept_default, or
    the first column for a single non-optional param (the first option of its list)."""
    if param.value not in (None, ""):
        parts = [p for p in str(param.value).split(",") if p.strip()]
        columns = [_column(p, f"{where} (the tool's default)") for p in parts]
        return columns if param.multiple else columns[0]
    if param.accept_default or not (param.optional or param.multiple):
        return [1] if param.multiple else 1
    return ABSENT


def _column(raw, where) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if text.lower().startswith("c") and len(text) > 1:
            text = text[1:]  # Galaxy's "c3" label convention
        value = int(text) if text.isascii() and text.isdigit() else None
    else:
        value = None
    if value is None or value < 1:
        raise ParamError(where, f"expected a column number (1, 2, ... or c1, c2, ...), got {_show(raw)}")
    return value


_CHECKS = {
    ParamType.TEXT: _text,
    ParamType.HIDDEN: _text,
    ParamType.COLOR: _color,
    ParamType.INTEGER: _integer,
    ParamType.FLOAT: _float,
    ParamType.BOOLEAN: _boolean,
    ParamType.SELECT: _select,
    ParamType.DATA: _data,
    ParamType.DATA_COLUMN: _data_column,
}


# -- <validator> ----------------------------------------------------------------------------
def _validate(param: Param, value, where):
    """Galaxy's static validators; those on datasets (metadata, unspecified_build...) need
    the dataset and are the web side's."""
    if not param.validators or (value in ("", None) and param.optional):
        return
    if isinstance(value, list):
        values = value or [value]  # Galaxy runs them once on an empty list
    else:
        values = [value]
    for validator in param.validators:
        for item in values:
            passed = _passes(validator, item)
            if passed is not None and passed == validator.negate:
                raise ParamError(where, _message(validator, item))


def _passes(v, value) -> bool | None:
    """Whether `value` passes validator `v` before `negate`, None when it does not apply."""
    if v.type == "in_range":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        low = v.min is None or value > v.min or (value == v.min and not v.exclude_min)
        high = v.max is None or value < v.max or (value == v.max and not v.exclude_max)
        return low and high
    if v.type == "regex":
        if isinstance(value, list):
            return None
        try:
            return re.match(v.expression or "", "" if value is None else str(value)) is not None
        except re.error as exc:
            raise ToolError(f"regex validator {v.expression!r}: {exc}") from None
    if v.type == "length":
        if not isinstance(value, str):
            return None
        return (v.min is None or len(value) >= v.min) and (v.max is None or len(value) <= v.max)
    if v.type == "empty_field":
        return value not in ("", None)
    if v.type == "no_options":
        return value is not None
    return None


def _message(v, value) -> str:
    message = v.message or _default_message(v)
    return message.replace("%s", str(value)) if "%s" in message else message


def _default_message(v) -> str:
    # Galaxy's own wording (galaxy.tool_util_models.parameter_validators).
    no = "not " if v.negate else ""
    if v.type == "in_range":
        low = _fmt(v.min) if v.min is not None else "-infinity"
        high = _fmt(v.max) if v.max is not None else "+infinity"
        op1 = "<" if v.exclude_min else "<="
        op2 = "<" if v.exclude_max else "<="
        return f"Value ('%s') must {no}fulfill ({low} {op1} value {op2} {high})"
    if v.type == "regex":
        return f"Value '%s' does {'' if v.negate else 'not '}match regular expression '{v.expression}'"
    if v.type == "length":
        return f"Must {no}have length of at least {v.min} and at most {v.max}"
    if v.type == "empty_field":
        return "Field must not set a value" if v.negate else "Field requires a value"
    if v.type == "no_options":
        return "Options available for selection" if v.negate else "No options available for selection"
    return "Parameter validation error."


# -- walking and flattening a tree ----------------------------------------------------------
def _walk(inputs, node: dict, prefix: str, scope: tuple) -> Iterator[Visit]:
    for item in inputs:
        path = prefix + item.name
        if isinstance(item, Param):
            yield Visit(path, item, node.get(item.name), scope)
        elif isinstance(item, Repeat):
            for i, instance in enumerate(node.get(item.name) or []):
                yield from _walk(item.inputs, instance, f"{path}_{i}|", (instance,) + scope)
        elif isinstance(item, Section):
            sub = node.get(item.name) or {}
            yield from _walk(item.inputs, sub, f"{path}|", (sub,) + scope)
        else:
            sub = node.get(item.name) or {}
            value = sub.get(item.test.name)
            yield Visit(f"{path}|{item.test.name}", item.test, value, (sub,) + scope)
            when = item.when(value)
            if when is not None:
                yield from _walk(when.inputs, sub, f"{path}|", (sub,) + scope)


def _flatten(inputs, node: dict, prefix: str, flat: dict):
    for item in inputs:
        path = prefix + item.name
        if isinstance(item, Param):
            flat[path] = _flat_value(item, node.get(item.name))
        elif isinstance(item, Repeat):
            instances = node.get(item.name) or []
            if not instances:
                flat[path] = []  # the flat form has no other way to say "none"
            for i, instance in enumerate(instances):
                _flatten(item.inputs, instance, f"{path}_{i}|", flat)
        elif isinstance(item, Section):
            _flatten(item.inputs, node.get(item.name) or {}, f"{path}|", flat)
        else:
            sub = node.get(item.name) or {}
            value = sub.get(item.test.name)
            flat[f"{path}|{item.test.name}"] = value
            when = item.when(value)
            if when is not None:
                _flatten(when.inputs, sub, f"{path}|", flat)


def _flat_value(param: Param, value):
    if param.type == ParamType.DATA and value is not None:
        if isinstance(value, list):
            return [{"src": "hda", "id": i} for i in value]
        return {"src": "hda", "id": value}
    return value


# -- messages ---------------------------------------------------------------------------------
def _kind(raw) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "text",
            list: "a list", dict: "an object", type(None): "null"}.get(type(raw), type(raw).__name__)


def _show(raw) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _fmt(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)

