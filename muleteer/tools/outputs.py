"""Which of a tool's outputs a job makes, of which format, and which files a
<discover_datasets> rule collects, following Galaxy (lib/galaxy/tools/actions/__init__.py
filter_output and determine_output_format; lib/galaxy/model/store/discover.py).

A <filter> is a Python expression Galaxy hands to eval(); we evaluate a whitelisted subset
instead (names, constant subscripts, attribute access to dict keys, constants,
lists/tuples, comparisons, and/or/not, str() int() float() len() bool()), in the style of
muleteer/resubmit.py. The loader refuses any other filter with check_filter().
"""
from __future__ import annotations

import ast
import logging
import operator
import os
import posixpath
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from muleteer.tools.model import (ChangeFormat, Conditional, DiscoverDatasets, Output, Param,
                                  ParamType, Repeat, Tool)

log = logging.getLogger(__name__)

MAX_DISCOVERED = 1000
_MAX_FILTER_LENGTH = 2000
_CALLS = {"str": str, "int": int, "float": float, "len": len, "bool": bool}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
            ast.Is: operator.is_, ast.IsNot: operator.is_not}
_ALLOWED = ("only names, constant subscripts, attributes, constants, lists/tuples, "
            "comparisons, and/or/not and str() int() float() len() bool() are allowed")


# ---- <filter> ---------------------------------------------------------------------------

def check_filter(expression: str) -> None:
    """Raise ValueError (saying what and where) unless this module can evaluate the filter."""
    _parse(expression)


def filter_passes(expression: str, values: dict) -> bool:
    """The filter's truth over the job's value tree. An expression that fails to evaluate
    (a missing key, a comparison of unlike types) keeps the output, as in Galaxy, which
    logs the failure and creates the dataset."""
    body = _parse(expression)
    try:
        return bool(_evaluate(body, values))
    except Exception as exc:  # noqa: BLE001 - Galaxy keeps the output on any failure
        log.debug("output filter %r failed, keeping the output: %s", expression, exc)
        return True


def wanted_outputs(tool: Tool, values: dict) -> list[Output]:
    """The tool's outputs whose filters all pass, in declaration order."""
    return [o for o in tool.outputs if all(filter_passes(f, values) for f in o.filters)]


def _parse(expression: str) -> ast.expr:
    text = str(expression).strip()
    if not text:
        raise ValueError("output filter is empty")
    if len(text) > _MAX_FILTER_LENGTH:
        raise ValueError(f"output filter {text[:60]!r}...: longer than {_MAX_FILTER_LENGTH} "
                         "characters")
    try:
        body = ast.parse(text, mode="eval").body
        _check_node(body, text)
    except SyntaxError as exc:
        raise ValueError(f"output filter {text!r}: {exc.msg}") from None
    except RecursionError:
        raise ValueError(f"output filter {text[:60]!r}...: nested too deeply") from None
    return body


def _check_node(node: ast.AST, text: str) -> None:
    def refuse(what: str):
        raise ValueError(f"output filter {text!r}: {what} is not allowed; {_ALLOWED}")

    if isinstance(node, ast.Name):
        if node.id.startswith("__"):
            refuse(f"the name {node.id!r}")
        if node.id in _CALLS:
            refuse(f"{node.id!r} other than as a call")
    elif isinstance(node, ast.Constant):
        if not (node.value is None or isinstance(node.value, (str, int, float, bool))):
            refuse(f"the constant {node.value!r}")
    elif isinstance(node, ast.Subscript):
        key = node.slice
        if not _constant_key(key):
            refuse(f"the subscript {ast.unparse(key)!r} (only a constant string or integer)")
        _check_node(node.value, text)
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            refuse(f"the attribute {node.attr!r}")
        _check_node(node.value, text)
    elif isinstance(node, (ast.List, ast.Tuple)):
        for element in node.elts:
            if isinstance(element, ast.Starred):
                refuse("unpacking (*)")
            _check_node(element, text)
    elif isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators):
            if type(op) not in _COMPARE:
                refuse(f"the comparison {type(op).__name__}")
            if isinstance(op, (ast.Is, ast.IsNot)) and not (
                    isinstance(right, ast.Constant)
                    and (right.value is None or isinstance(right.value, bool))):
                refuse("'is' with anything but None, True or False")
        for operand in [node.left, *node.comparators]:
            _check_node(operand, text)
    elif isinstance(node, ast.BoolOp):
        for operand in node.values:
            _check_node(operand, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        _check_node(node.operand, text)
    elif isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _CALLS:
            refuse(f"the call {ast.unparse(node.func)}()")
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            refuse(f"{name}() with other than one plain argument")
        _check_node(node.args[0], text)
    else:
        refuse(f"{ast.unparse(node)!r} ({type(node).__name__})")


def _constant_key(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
        return isinstance(node, ast.Constant) and type(node.value) is int
    return isinstance(node, ast.Constant) and type(node.value) in (str, int)


def _evaluate(node: ast.AST, values: dict):
    """Evaluate a node check_filter accepted; Python's semantics (and/or return operands)."""
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise KeyError(f"no parameter {node.id!r}")
        return values[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Subscript):
        return _evaluate(node.value, values)[ast.literal_eval(node.slice)]
    if isinstance(node, ast.Attribute):
        container = _evaluate(node.value, values)
        if not isinstance(container, dict):
            raise TypeError(f"{ast.unparse(node.value)!r} has no key {node.attr!r}")
        return container[node.attr]
    if isinstance(node, ast.List):
        return [_evaluate(e, values) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e, values) for e in node.elts)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, right_node in zip(node.ops, node.comparators):
            right = _evaluate(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        result = None
        for operand in node.values:
            result = _evaluate(operand, values)
            if isinstance(node.op, ast.And) and not result:
                return result
            if isinstance(node.op, ast.Or) and result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return (not operand) if isinstance(node.op, ast.Not) else -operand
    if isinstance(node, ast.Call):
        return _CALLS[node.func.id](_evaluate(node.args[0], values))
    raise ValueError(f"cannot evaluate {ast.unparse(node)!r}")  # check_filter refused it


# ---- format -----------------------------------------------------------------------------

def output_format(tool: Tool, output: Output, values: dict,
                  input_formats: Mapping[str, str]) -> str:
    """The output's format, in Galaxy's order of precedence: a matching <change_format>
    <when> (all are checked and, as in Galaxy, the LAST match wins), then format_source,
    then format ("input": the first data input's format; "data" when there is none).

    `input_formats` maps a data param's flat path ("infile", "c|x", "queries_0|input") to
    its (first) dataset's format; unset inputs are left out."""
    fmt = output.format or "data"
    if fmt == "input":
        fmt = _first_input_format(tool, input_formats)
    if output.format_source:
        fmt = _source_format(output.format_source, input_formats) or fmt
    for when in output.change_format:
        if _when_matches(tool, when, values):
            fmt = when.format
    return fmt


def _first_input_format(tool: Tool, input_formats: Mapping[str, str]) -> str:
    for pattern, _param in tool.data_params():
        path_re = re.compile(re.escape(pattern).replace("%d", r"\d+") + r"\Z")
        for path, fmt in input_formats.items():
            if fmt and path_re.match(path):
                return fmt
    return "data"


def _source_format(source: str, input_formats: Mapping[str, str]) -> str | None:
    if input_formats.get(source):
        return input_formats[source]
    # A bare name for a param nested in a conditional or section: when it is unambiguous.
    found = [fmt for path, fmt in input_formats.items()
             if fmt and "|" in path and path.rsplit("|", 1)[1] == source]
    return found[0] if len(found) == 1 else None


def _when_matches(tool: Tool, when: ChangeFormat, values: dict) -> bool:
    """Galaxy renders `${input}` and compares the text with `value`; a path that does not
    resolve (a param of another <when>) is skipped, as Galaxy skips it."""
    path = _split_path(when.input)
    found, value = _lookup(values, path)
    if not found:
        return False
    return _as_text(value, _param_at(tool.inputs, path)) == when.value


def _split_path(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    text = text.lstrip("$")
    return [part for part in re.split(r"[|.]", text) if part]


def _lookup(values, path: list[str]):
    current = values
    for part in path:
        if isinstance(current, dict) and part in current:
            current = current[part]
            continue
        repeat = re.fullmatch(r"(.+)_(\d+)", part)
        if isinstance(current, dict) and repeat and isinstance(current.get(repeat[1]), list):
            items = current[repeat[1]]
            if int(repeat[2]) < len(items):
                current = items[int(repeat[2])]
                continue
        return False, None
    return True, current


def _param_at(inputs: tuple, path: list[str]) -> Param | None:
    """The Param a value path ends at (through conditionals, sections, repeats), or None."""
    if not path:
        return None
    head, rest = path[0], path[1:]
    repeat = re.fullmatch(r"(.+)_(\d+)", head)
    for item in inputs:
        if isinstance(item, Param) and item.name == head and not rest:
            return item
        if isinstance(item, Conditional) and item.name == head and rest:
            if rest == [item.test.name]:
                return item.test
            for when in item.whens:
                found = _param_at(when.inputs, rest)
                if found is not None:
                    return found
        if isinstance(item, Repeat) and repeat and item.name == repeat[1] and rest:
            return _param_at(item.inputs, rest)
        if not isinstance(item, (Param, Conditional, Repeat)) and item.name == head and rest:
            return _param_at(item.inputs, rest)
    return None


def _as_text(value, param: Param | None) -> str:
    # What Galaxy's parameter wrapper prints for ${name}.
    if isinstance(value, bool):
        if param is not None and param.type == ParamType.BOOLEAN:
            return param.truevalue if value else param.falsevalue
        return "true" if value else "false"
    if value is None:
        return "None"
    if isinstance(value, list):
        return ",".join(_as_text(v, None) for v in value)
    return str(value)


# ---- <discover_datasets> ----------------------------------------------------------------

@dataclass(frozen=True)
class Discovered:
    path: str                          # relative to the job's working directory
    designation: str
    name: str | None                   # the pattern's `name` group, if any
    format: str
    visible: bool


_SORT_KEYS = ("filename", "name", "designation", "dbkey")


def discover(rules: Sequence[DiscoverDatasets], files: Sequence[str],
             limit: int = MAX_DISCOVERED) -> list[Discovered]:
    """The files the rules collect, rule by rule, each rule's sorted by its sort_by
    (Galaxy's default: filename, lexical); a file collected by an earlier rule is not
    collected again. `files` are regular files, relative to the job's working directory.
    A pattern matches the file's name from its start (re.match), as in Galaxy."""
    taken: set[str] = set()
    found: list[Discovered] = []
    for number, rule in enumerate(rules, 1):
        where = f"<discover_datasets> {number} (pattern {rule.pattern!r})"
        for item in _rule_matches(rule, files, where):
            if item.path in taken:
                continue
            taken.add(item.path)
            found.append(item)
            if len(found) > limit:
                raise ValueError(f"the job made more than {limit} files to discover; "
                                 f"{where} stopped at {item.path!r}")
    return found


def _rule_matches(rule: DiscoverDatasets, files: Sequence[str], where: str) -> list[Discovered]:
    try:
        # Galaxy puts a dataset id in DATASET_ID (the legacy __default__ pattern); any id here.
        pattern = re.compile(rule.pattern.replace("DATASET_ID", r"\d+"))
    except re.error as exc:
        raise ValueError(f"{where}: not a valid regular expression: {exc}") from None
    directory = _directory(rule.directory, where)
    reverse, numeric, key_name = _sort_order(rule.sort_by, where)

    matched = []
    for path in files:
        normal = posixpath.normpath(path.replace(os.sep, "/"))
        if normal.startswith("../") or normal == ".." or normal.startswith("/"):
            continue
        parent, filename = posixpath.split(normal)
        inside = parent == directory or (
            rule.recurse and (directory == "" or parent.startswith(directory + "/")))
        if not inside:
            continue
        found = pattern.match(filename)
        if found:
            matched.append(_discovered(rule, normal, filename, found.groupdict()))

    def sort_key(pair):
        item, filename = pair
        key = {"filename": filename, "name": item.name, "designation": item.designation,
               "dbkey": ""}[key_name]
        if numeric:
            try:
                return (int(key), item.path)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: sort_by {rule.sort_by!r} needs a number, "
                                 f"{item.path!r} gives {key!r}") from None
        return (key or "", item.path)

    pairs = sorted(((item, posixpath.basename(item.path)) for item in matched),
                   key=sort_key, reverse=reverse)
    return [item for item, _ in pairs]


def _discovered(rule: DiscoverDatasets, path: str, filename: str, groups: dict) -> Discovered:
    designation = groups.get("designation") or groups.get("name") or filename
    visible = rule.visible
    if groups.get("visible") is not None:
        visible = groups["visible"].lower() == "visible"
    # As in Galaxy: the pattern's ext group first, then the rule's format.
    fmt = groups.get("ext") or rule.format or "data"
    return Discovered(path=path, designation=designation, name=groups.get("name"),
                      format=fmt, visible=visible)


def _directory(directory: str | None, where: str) -> str:
    if not directory:
        return ""
    normal = posixpath.normpath(directory.replace(os.sep, "/"))
    if normal.startswith("/") or normal == ".." or normal.startswith("../"):
        raise ValueError(f"{where}: directory {directory!r} is outside the job's working "
                         "directory")
    return "" if normal == "." else normal


def _sort_order(sort_by: str | None, where: str) -> tuple[bool, bool, str]:
    """(reverse, numeric, key) from Galaxy's sort_by: [reverse_][lexical_|numeric_]key."""
    text = sort_by or "filename"
    reverse = text.startswith("reverse_")
    if reverse:
        text = text[len("reverse_"):]
    numeric = False
    if "_" in text:
        comparison, text = text.split("_", 1)
        if comparison not in ("lexical", "numeric"):
            raise ValueError(f"{where}: sort_by {sort_by!r}: {comparison!r} is not lexical "
                             "or numeric")
        numeric = comparison == "numeric"
    if text not in _SORT_KEYS:
        raise ValueError(f"{where}: sort_by {sort_by!r}: sorts by one of {', '.join(_SORT_KEYS)}")
    return reverse, numeric, text
