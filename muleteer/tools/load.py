"""One Galaxy tool wrapper (XML) as a typed Tool (model.py).

Galaxy's own parser (galaxy-tool-util's get_tool_source) reads the file and expands
<macros>, <import>, <xml>/<yield>, <token> and <expand>, so a wrapper means here what it
means in Galaxy. This module then maps the expanded XML onto the model, refusing what
Muleteer cannot run as Galaxy would (collections, dynamic options from data tables,
expression validators, injected keys...) with a ToolError that names the file and line.
"""
from __future__ import annotations

import logging
import math
import os
import posixpath
import re
import textwrap

from galaxy.tool_util.parser import get_tool_source
from galaxy.tool_util.parser.output_collection_def import NAMED_PATTERNS
from lxml import etree
from packaging.version import InvalidVersion, Version

from muleteer.containers import ContainerError, check_image
from muleteer.tools.errors import ToolError
from muleteer.tools.model import (
    ChangeFormat, ConfigFile, Conditional, Container, DiscoverDatasets, DynamicOptions,
    EnvVar, ExitCodeRule, Level, Option, Output, Param, ParamType, RegexRule, Repeat,
    Requirement, Sanitizer, Section, Stdio, Tool, Validator, When,
)
from muleteer.tools.sanitize import OFF, parse_sanitizer

log = logging.getLogger(__name__)
_TOOL_ID = re.compile(r"^[A-Za-z0-9_.\-+]{1,255}$")
# A name is used in Cheetah ($name) and in flat paths (cond|name, rep_0|name).
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What is left of a <token> reference Galaxy could not expand: it leaves `@NAME@` as is.
_TOKEN = re.compile(r"@[A-Z][A-Z0-9_]*@")
_UNKNOWN_MACRO = re.compile(r"No macro named (\S+) found")
_VALIDATORS = ("in_range", "regex", "length", "empty_field", "no_options")
_LEVELS = {1: Level.LOG, 1.1: Level.QC, 2: Level.WARNING, 3: Level.FATAL, 4: Level.FATAL_OOM}
_TRUE = ("true", "yes", "on", "1")


def load_tool(path: str, section: str | None = None) -> Tool:
    """The tool at `path` (a Galaxy tool XML file); `section` is its tool panel section.
    ToolError, naming the file and line, when the file is not a tool Muleteer can run."""
    path = os.path.abspath(path)
    tool_source = _tool_source(path)
    reader = _Reader(path, list(tool_source.macro_paths or []))
    root = tool_source.root
    if root.tag != "tool":
        reader.fail(root, "the root element must be <tool>")
    reader.check_tokens(root)
    return reader.tool(tool_source, section)


# Cheetah looks a `$name` up on the namespace dict's attributes before its keys, so a param
# with one of these names reads as the dict's method in a template (Galaxy shares this).
_DICT_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))


def _warn_shadowed_names(path: str, inputs) -> None:
    """Log (not refuse: Galaxy loads such wrappers too) each top-level input whose name a
    template cannot reach as `$name`."""
    for item in inputs:
        if item.name in _DICT_METHODS:
            log.warning("%s: the input %r reads as a dict method in Cheetah ($%s is not this "
                        "input; templates must use another name): rename it", path, item.name,
                        item.name)


def is_tool_file(path: str) -> bool:
    """Whether `path` is XML whose root element is <tool> (macros.xml, tool_conf.xml and
    other XML beside the tools are not). Unreadable XML counts as a tool, so that loading
    it reports what is wrong."""
    try:
        for _, element in etree.iterparse(path, events=("start",)):
            return element.tag == "tool"
    except etree.XMLSyntaxError:
        return True
    except OSError:
        return False
    return False


class _QuietParseErrors(logging.Filter):
    """galaxy.util logs a traceback for XML it cannot parse; the ToolError says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Error parsing file")


logging.getLogger("galaxy.util").addFilter(_QuietParseErrors())


def _tool_source(path: str):
    """Galaxy's parsed, macro-expanded tool; its failures turned into ToolErrors."""
    try:
        return get_tool_source(path)
    except etree.XMLSyntaxError as exc:
        where = exc.filename or path
        also = "" if os.path.abspath(where) == path else f" (imported by {path})"
        raise ToolError(f"{where}, line {exc.lineno}: not well-formed XML{also}: "
                        f"{exc.msg}") from None
    except OSError as exc:
        missing = exc.filename or "?"
        if os.path.abspath(missing) == path:
            raise ToolError(f"{path}: cannot read: {exc.strerror}") from None
        line = _find_line(path, "<import", os.path.basename(missing))
        where = f"{path}, line {line}" if line else path
        raise ToolError(f"{where}: the macros file {missing} cannot be read: "
                        f"{exc.strerror}") from None
    except AssertionError as exc:
        found = _UNKNOWN_MACRO.search(str(exc))
        if found:
            name = found.group(1)
            line = _find_line(path, f'macro="{name}"') or _find_line(path, f"macro='{name}'")
            where = f"{path}, line {line}" if line else path
            raise ToolError(f"{where}: <expand macro=\"{name}\">: no macro of that name "
                            f"({str(exc).split(', ', 1)[-1].rstrip('.')})") from None
        raise ToolError(f"{path}: invalid macros: {exc}") from None
    except Exception as exc:  # galaxy-tool-util raises plain Exception/ValueError here
        raise ToolError(f"{path}: cannot be read as a Galaxy tool: {exc}") from None


def _find_line(path: str, *needles: str) -> int | None:
    """The first line of `path` that holds every needle (1-based), or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if all(n in line for n in needles):
                    return number
    except OSError:
        pass
    return None


def _bool(value, default: bool = False) -> bool:
    if value is None:
        return default
    return str(value).strip().lower() in _TRUE


def _elements(parent):
    """Child elements, without comments and processing instructions."""
    return [child for child in parent if isinstance(child.tag, str)]


class _Reader:
    """Maps one expanded tool tree onto the model; knows the files for error messages."""

    def __init__(self, path: str, macro_paths: list[str]):
        self.path = path
        self.macro_paths = macro_paths
        self._lines: dict[str, list[str]] = {}

    # -- where things are ------------------------------------------------------------

    def _file_lines(self, path: str) -> list[str]:
        if path not in self._lines:
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    self._lines[path] = fh.read().splitlines()
            except OSError:
                self._lines[path] = []
        return self._lines[path]

    def where(self, element) -> str:
        """"file, line N" of an element. A macro's element keeps its line in the macros
        file it came from, so the file is the one whose line N opens that element."""
        line = getattr(element, "sourceline", None)
        if not line:
            return self.path
        for candidate in [self.path, *self.macro_paths]:
            lines = self._file_lines(candidate)
            if line <= len(lines) and f"<{element.tag}" in lines[line - 1]:
                return f"{candidate}, line {line}"
        return f"{self.path}, line {line}"

    def fail(self, element, message: str):
        raise ToolError(f"{self.where(element)}: {message}")

    def locate(self, text: str) -> str:
        for candidate in [self.path, *self.macro_paths]:
            for number, line in enumerate(self._file_lines(candidate), 1):
                if text in line:
                    return f"{candidate}, line {number}"
        return self.path

    def check_tokens(self, root) -> None:
        """Galaxy leaves an undefined @TOKEN@ as it is; refuse it instead of running it."""
        for element in root.iter():
            if not isinstance(element.tag, str) or element.tag in ("help", "citations"):
                continue
            if any(a.tag == "help" for a in element.iterancestors()):
                continue
            texts = [element.text or "", *element.attrib.values()]
            for text in texts:
                found = _TOKEN.search(text)
                if found:
                    token = found.group(0)
                    raise ToolError(f"{self.locate(token)}: {token} is not a defined "
                                    "<token> (neither the tool nor its macros define it)")

    # -- attributes --------------------------------------------------------------------

    def number(self, element, attr: str, integer: bool = False) -> float | None:
        raw = element.get(attr)
        if raw is None or raw.strip() == "":
            return None
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            self.fail(element, f"<{element.tag}> {attr}={raw!r} is not {kind}")
        if not integer and not math.isfinite(value) and attr not in ("max", "min"):
            self.fail(element, f"<{element.tag}> {attr}={raw!r} is not a finite number")
        return value

    def name(self, element, what: str) -> str:
        name = element.get("name")
        if not name and what == "param" and element.get("argument"):
            # Galaxy: argument="--line-increment" names the param line_increment.
            name = element.get("argument").lstrip("-").replace("-", "_")
        if not name:
            self.fail(element, f"<{element.tag}> has no name"
                      + (" (nor argument)" if what == "param" else ""))
        if not _NAME.match(name):
            self.fail(element, f"<{element.tag}> name {name!r}: a name is a letter or '_' "
                      "then letters, digits, '_'")
        return name

    # -- the tool ---------------------------------------------------------------------

    def tool(self, tool_source, section: str | None) -> Tool:
        root = tool_source.root
        tool_id = tool_source.parse_id() or ""
        if not _TOOL_ID.match(tool_id):
            self.fail(root, f"<tool> id {tool_id!r}: letters, digits, '_', '.', '-', '+' only")
        profile = tool_source.parse_profile()
        try:
            Version(profile)
        except InvalidVersion:
            self.fail(root, f"<tool> profile {profile!r} is not a version such as 23.0")
        command_el = root.find("command")
        command = tool_source.parse_command()
        if command_el is None or not (command or "").strip():
            self.fail(root, "<tool> has no <command>"
                      + (" (expression tools are not supported)"
                         if root.find("expression") is not None else ""))
        if root.get("tool_type") not in (None, "default"):
            self.fail(root, f"<tool> tool_type {root.get('tool_type')!r} is not supported")
        tool_sanitize = _bool(tool_source.parse_sanitize(), True)
        help_content = tool_source.parse_help()
        version_command = tool_source.parse_version_command()
        inputs = self.inputs(root, tool_sanitize)
        _warn_shadowed_names(self.path, inputs)
        return Tool(
            id=tool_id,
            name=tool_source.parse_name() or tool_id,
            version=tool_source.parse_version() or "1.0.0",
            profile=profile,
            description=(tool_source.parse_description() or "").strip(),
            help=textwrap.dedent(help_content.content).strip("\n") if help_content else "",
            command=command,
            interpreter=tool_source.parse_interpreter(),
            version_command=version_command.strip() if version_command else None,
            inputs=inputs,
            outputs=self.outputs(root, _data_names(inputs)),
            stdio=self.stdio(tool_source),
            configfiles=self.configfiles(root),
            environment=self.environment(root),
            requirements=self.requirements(root),
            containers=self.containers(root),
            path=self.path,
            tool_dir=os.path.dirname(self.path),
            section=section,
            hidden=bool(tool_source.parse_hidden()),
        )

    # -- inputs -----------------------------------------------------------------------

    def inputs(self, root, tool_sanitize: bool) -> tuple:
        self._sanitize = tool_sanitize
        inputs_el = root.find("inputs")
        if inputs_el is None:
            return ()
        pages = inputs_el.findall("page")
        children = [c for page in pages for c in _elements(page)] if pages \
            else _elements(inputs_el)
        inputs = self.input_list(children)
        data_names = _data_names(inputs)
        # data_ref and from_dataset name a data param (Galaxy finds it by name).
        for element in inputs_el.iter("param", "options"):
            ref = element.get("data_ref") if element.tag == "param" \
                else element.get("from_dataset")
            if ref and ref not in data_names:
                self.fail(element, f"<{element.tag}> refers to {ref!r}, which is not a data "
                          "param of this tool")
        return inputs

    def input_list(self, elements) -> tuple:
        items, seen = [], {}
        for element in elements:
            if element.tag == "param":
                item = self.param(element)
            elif element.tag == "conditional":
                item = self.conditional(element)
            elif element.tag == "repeat":
                item = self.repeat(element)
            elif element.tag == "section":
                item = self.section(element)
            else:
                self.fail(element, f"<{element.tag}> in <inputs> is not supported "
                          "(expected param, conditional, repeat or section)")
            if item.name in seen:
                self.fail(element, f"the name {item.name!r} is used twice at this level "
                          f"(first at line {seen[item.name]})")
            seen[item.name] = element.sourceline
            items.append(item)
        return tuple(items)

    def param(self, element) -> Param:
        name = self.name(element, "param")
        raw_type = element.get("type")
        try:
            kind = ParamType(raw_type)
        except ValueError:
            known = ", ".join(t.value for t in ParamType)
            self.fail(element, f"param {name!r}: type {raw_type!r} is not supported "
                      f"(supported: {known})")
        help_text = element.get("help")
        if not help_text and element.find("help") is not None:
            help_text = " ".join((element.find("help").text or "").split())
        fields = dict(
            name=name, type=kind, label=element.get("label") or "", help=help_text or "",
            argument=element.get("argument"),
            optional=_bool(element.get("optional")),
            value=element.get("value"),
            validators=self.validators(element, name),
            sanitizer=self.sanitizer(element),
        )
        if kind in (ParamType.INTEGER, ParamType.FLOAT):
            integer = kind == ParamType.INTEGER
            fields.update(min=self.number(element, "min"), max=self.number(element, "max"))
            self.number(element, "value", integer=integer)
            if fields["min"] is not None and fields["max"] is not None \
                    and fields["min"] > fields["max"]:
                self.fail(element, f"param {name!r}: min {fields['min']} is above max "
                          f"{fields['max']}")
        elif kind == ParamType.TEXT:
            fields.update(area=_bool(element.get("area")))
        elif kind == ParamType.BOOLEAN:
            checked = element.get("checked")
            fields.update(truevalue=element.get("truevalue", "true"),
                          falsevalue=element.get("falsevalue", "false"),
                          checked=_bool(checked if checked is not None else element.get("value")))
        elif kind == ParamType.SELECT:
            fields.update(self.select(element, name))
        elif kind == ParamType.DATA:
            if element.find("options") is not None:
                self.fail(element, f"param {name!r}: <options> on a data param (filtering "
                          "datasets by metadata) is not supported")
            formats = [f.strip() for f in (element.get("format") or "data").split(",")]
            fields.update(formats=tuple(f for f in formats if f) or ("data",),
                          multiple=_bool(element.get("multiple")))
        elif kind == ParamType.DATA_COLUMN:
            data_ref = element.get("data_ref")
            if not data_ref:
                self.fail(element, f"param {name!r}: a data_column param needs data_ref")
            # Galaxy's force_select is the older spelling of optional="false".
            optional = not _bool(element.get("force_select")) \
                if "force_select" in element.attrib else _bool(element.get("optional"))
            fields.update(data_ref=data_ref, optional=optional,
                          multiple=_bool(element.get("multiple")),
                          use_header_names=_bool(element.get("use_header_names")),
                          accept_default=_bool(element.get("accept_default")),
                          numerical=_bool(element.get("numerical")))
        return Param(**fields)

    def sanitizer(self, element) -> Sanitizer | None:
        sanitizer_el = element.find("sanitizer")
        if sanitizer_el is None:
            # <options sanitize="false"> on the tool turns Galaxy's sanitizing off for all.
            return None if self._sanitize else OFF
        try:
            return parse_sanitizer(sanitizer_el)
        except ToolError as exc:
            raise ToolError(f"{self.path}, {exc}") from None

    def validators(self, element, name: str) -> tuple:
        validators = []
        for v in element.findall("validator"):
            kind = v.get("type")
            if kind == "expression":
                self.fail(v, f"param {name!r}: expression validators are not evaluated "
                          "(Muleteer runs no Python from tool files)")
            if kind not in _VALIDATORS:
                self.fail(v, f"param {name!r}: validator type {kind!r} is not supported "
                          f"(supported: {', '.join(_VALIDATORS)})")
            expression = None
            if kind == "regex":
                expression = v.text or ""
                try:
                    re.compile(expression)
                except re.error as exc:
                    self.fail(v, f"param {name!r}: regex validator {expression!r} is not a "
                              f"valid regular expression: {exc}")
            integer = kind == "length"
            validators.append(Validator(
                type=kind, message=v.get("message") or "",
                min=self.number(v, "min", integer=integer),
                max=self.number(v, "max", integer=integer),
                exclude_min=_bool(v.get("exclude_min")),
                exclude_max=_bool(v.get("exclude_max")),
                expression=expression, negate=_bool(v.get("negate"))))
        return tuple(validators)

    def select(self, element, name: str) -> dict:
        # As Galaxy: a repeated option value keeps the last one.
        options: dict[str, Option] = {}
        for o in element.findall("option"):
            value = o.get("value")
            if value is None:
                self.fail(o, f"param {name!r}: <option> has no value")
            options[value] = Option(value=value, label=(o.text or value).strip() or value,
                                    selected=_bool(o.get("selected")))
        display = element.get("display")
        if display not in (None, "radio", "checkboxes"):
            self.fail(element, f"param {name!r}: display {display!r} is not radio or checkboxes")
        if element.get("dynamic_options"):
            self.fail(element, f"param {name!r}: dynamic_options (Python code) is not supported")
        options_el = element.find("options")
        return dict(options=tuple(options.values()),
                    dynamic_options=self.dynamic_options(options_el, name)
                    if options_el is not None else None,
                    multiple=_bool(element.get("multiple")) or display == "checkboxes",
                    display=display)

    def dynamic_options(self, element, name: str) -> DynamicOptions:
        for attr in ("from_data_table", "from_parameter", "from_url", "meta_file_key"):
            if element.get(attr):
                self.fail(element, f"param {name!r}: <options {attr}> is not supported (only "
                          "from_dataset and from_file)")
        from_dataset, from_file = element.get("from_dataset"), element.get("from_file")
        if not from_dataset and not from_file:
            self.fail(element, f"param {name!r}: <options> without from_dataset or from_file "
                      "is not supported")
        if from_file:
            normal = posixpath.normpath(from_file)
            if normal.startswith("/") or normal == ".." or normal.startswith("../"):
                self.fail(element, f"param {name!r}: from_file {from_file!r} must be a path "
                          "inside the tool's directory")
        if element.get("separator") not in (None, "\t"):
            self.fail(element, f"param {name!r}: <options separator> other than a tab is "
                      "not supported")
        columns = {}
        for column in element.findall("column"):
            column_name = column.get("name")
            index = self.number(column, "index", integer=True)
            if not column_name or index is None or index < 0:
                self.fail(column, f"param {name!r}: <column> needs a name and an index >= 0")
            columns[column_name] = index
        if "value" not in columns:
            self.fail(element, f"param {name!r}: <options> needs <column name=\"value\">")
        startswith = None
        for f in element.findall("filter"):
            kind = f.get("type")
            # The one filter Muleteer applies: skip lines starting with a prefix.
            if kind == "startswith" and not _bool(f.get("keep"), True) \
                    and f.get("column", "0") == "0" and f.get("value") and startswith is None:
                startswith = f.get("value")
                continue
            self.fail(f, f"param {name!r}: <filter type={kind!r}> in <options> is not "
                      "supported (only startswith on column 0 with keep=\"false\")")
        return DynamicOptions(from_dataset=from_dataset, from_file=from_file,
                              value_column=columns["value"],
                              name_column=columns.get("name", columns["value"]),
                              startswith=startswith)

    def conditional(self, element) -> Conditional:
        name = self.name(element, "conditional")
        tests = element.findall("param")
        if len(tests) != 1:
            self.fail(element, f"conditional {name!r} needs exactly one <param> (its test), "
                      f"has {len(tests)}")
        test = self.param(tests[0])
        if test.type not in (ParamType.SELECT, ParamType.BOOLEAN):
            self.fail(tests[0], f"conditional {name!r}: its test param must be a select or "
                      f"boolean, not {test.type.value}")
        whens, seen = [], set()
        for w in element.findall("when"):
            value = w.get("value")
            if value is None:
                self.fail(w, f"conditional {name!r}: <when> has no value")
            if value in seen:
                self.fail(w, f"conditional {name!r}: <when value={value!r}> appears twice")
            seen.add(value)
            whens.append(When(value=value, inputs=self.input_list(_elements(w))))
        # Galaxy gives every value of the test param a case; missing ones have no inputs.
        if test.type == ParamType.BOOLEAN:
            values = [test.truevalue, test.falsevalue]
        else:
            values = [o.value for o in test.options]
        whens.extend(When(value=v, inputs=()) for v in values if v not in seen)
        return Conditional(name=name, test=test, whens=tuple(whens))

    def repeat(self, element) -> Repeat:
        name = self.name(element, "repeat")
        low = self.number(element, "min", integer=True) or 0
        high = self.number(element, "max", integer=True)
        default = self.number(element, "default", integer=True) or 0
        if low < 0 or (high is not None and high < low):
            self.fail(element, f"repeat {name!r}: min {low} and max {high} do not make a range")
        return Repeat(name=name, title=element.get("title") or name,
                      inputs=self.input_list(_elements(element)), min=low, max=high,
                      default=max(default, low), help=element.get("help") or "")

    def section(self, element) -> Section:
        name = self.name(element, "section")
        return Section(name=name, title=element.get("title") or name,
                       inputs=self.input_list(_elements(element)),
                       expanded=_bool(element.get("expanded")),
                       help=element.get("help") or "")

    # -- outputs ----------------------------------------------------------------------

    def outputs(self, root, data_names: set) -> tuple:
        outputs_el = root.find("outputs")
        if outputs_el is None:
            return ()
        outputs, seen = [], set()
        for element in _elements(outputs_el):
            if element.tag == "collection":
                self.fail(element, f"<collection name={element.get('name')!r}>: output "
                          "collections are not supported")
            if element.tag != "data":
                self.fail(element, f"<{element.tag}> in <outputs> is not supported "
                          "(only <data>)")
            output = self.output(element, data_names)
            if output.name in seen:
                self.fail(element, f"output name {output.name!r} is used twice")
            seen.add(output.name)
            outputs.append(output)
        return tuple(outputs)

    def output(self, element, data_names: set) -> Output:
        name = self.name(element, "output")
        if _bool(element.get("auto_format")):
            self.fail(element, f"output {name!r}: auto_format (sniffing) is not supported")
        for attr in ("format_source", "metadata_source"):
            ref = element.get(attr)
            if ref and ref not in data_names and ref.rsplit("|", 1)[-1] not in data_names:
                self.fail(element, f"output {name!r}: {attr}={ref!r} is not a data param "
                          "of this tool")
        from_work_dir = element.get("from_work_dir")
        if from_work_dir is not None:
            from_work_dir = from_work_dir.strip()
            normal = posixpath.normpath(from_work_dir)
            if not from_work_dir or os.path.isabs(from_work_dir) or normal == ".." \
                    or normal.startswith("../"):
                self.fail(element, f"output {name!r}: from_work_dir {from_work_dir!r} must "
                          "be a path inside the job's working directory")
        fmt = element.get("format") or "data"
        label = element.get("label")
        if not label and element.find("label") is not None:
            label = " ".join((element.find("label").text or "").split())
        return Output(
            name=name, format=fmt,
            format_source=element.get("format_source"),
            metadata_source=element.get("metadata_source"),
            from_work_dir=from_work_dir, label=label or "",
            hidden=_bool(element.get("hidden")),
            change_format=self.change_format(element, name),
            filters=self.filters(element, name),
            discover=self.discover(element, name, fmt))

    def change_format(self, element, name: str) -> tuple:
        rules = []
        for change in element.findall("change_format"):
            for w in change.findall("when"):
                if w.get("input_dataset") or w.get("attribute"):
                    self.fail(w, f"output {name!r}: <change_format><when input_dataset "
                              "attribute> is not supported (only input, value, format)")
                if not w.get("input") or w.get("value") is None or not w.get("format"):
                    self.fail(w, f"output {name!r}: <change_format><when> needs input, value "
                              "and format")
                rules.append(ChangeFormat(input=w.get("input"), value=w.get("value"),
                                          format=w.get("format")))
        return tuple(rules)

    def filters(self, element, name: str) -> tuple:
        try:
            from muleteer.tools.outputs import check_filter
        except ImportError:
            check_filter = None
        filters = []
        for f in element.findall("filter"):
            text = (f.text or "").strip()
            if not text:
                self.fail(f, f"output {name!r}: empty <filter>")
            if check_filter is not None:
                try:
                    check_filter(text)
                except ValueError as exc:
                    self.fail(f, f"output {name!r}: <filter>{text}</filter>: {exc}")
            filters.append(text)
        return tuple(filters)

    def discover(self, element, name: str, output_format: str) -> tuple:
        rules = []
        for d in element.findall("discover_datasets"):
            pattern = d.get("pattern", "__default__")
            if pattern == "__default__":
                self.fail(d, f"output {name!r}: <discover_datasets pattern=\"__default__\"> "
                          "is not supported (give a pattern)")
            pattern = NAMED_PATTERNS.get(pattern, pattern)
            try:
                re.compile(pattern)
            except re.error as exc:
                self.fail(d, f"output {name!r}: discover_datasets pattern {pattern!r} is not "
                          f"a valid regular expression: {exc}")
            rules.append(DiscoverDatasets(
                pattern=pattern, directory=d.get("directory"),
                # Galaxy: the rule's format (or ext), else the output's.
                format=d.get("format") or d.get("ext") or output_format,
                visible=_bool(d.get("visible")), recurse=_bool(d.get("recurse")),
                sort_by=d.get("sort_by")))
        return tuple(rules)

    # -- the rest -----------------------------------------------------------------------

    def stdio(self, tool_source) -> Stdio:
        root = tool_source.root
        command_el = root.find("command")
        detect = command_el.get("detect_errors") if command_el is not None else None
        if detect not in (None, "default", "exit_code", "aggressive"):
            self.fail(command_el, f"<command> detect_errors {detect!r}: expected default, "
                      "exit_code or aggressive")
        oom = command_el.get("oom_exit_code") if command_el is not None else None
        if oom is not None:
            self.number(command_el, "oom_exit_code", integer=True)
        for stdio_el in root.findall("stdio"):
            for code_el in stdio_el.findall("exit_code"):
                raw = code_el.get("range", code_el.get("value"))
                if raw is None or not re.fullmatch(r"\s*(-?\d+)?\s*(:\s*(-?\d+)?\s*)?", raw) \
                        or not raw.strip() or raw.strip() == ":":
                    self.fail(code_el, f"<exit_code> range {raw!r}: expected N, N:, :N or N:M")
            for regex_el in stdio_el.findall("regex"):
                if regex_el.get("match") is None:
                    self.fail(regex_el, "<regex> has no match attribute")
        exit_codes, regexes = tool_source.parse_stdio()
        stdio = Stdio(
            exit_codes=tuple(ExitCodeRule(low=float(c.range_start), high=float(c.range_end),
                                          level=_LEVELS.get(c.error_level, Level.FATAL),
                                          description=c.desc or "") for c in exit_codes),
            regexes=tuple(RegexRule(match=r.match, stdout=bool(r.stdout_match),
                                    stderr=bool(r.stderr_match),
                                    level=_LEVELS.get(r.error_level, Level.FATAL),
                                    description=r.desc or "") for r in regexes),
            # Galaxy's rule before profile 16.04: with nothing declared, stderr is an error.
            legacy_stderr=not exit_codes and not regexes and not root.findall("stdio")
            and detect in (None, "default")
            and Version(tool_source.parse_profile()) < Version("16.04"))
        try:
            from muleteer.tools.stdio import check_rules
        except ImportError:
            check_rules = None
        if check_rules is not None:
            try:
                check_rules(stdio)
            except ValueError as exc:
                stdio_el = root.find("stdio")
                self.fail(stdio_el if stdio_el is not None else root, str(exc))
        return stdio

    def configfiles(self, root) -> tuple:
        parent = root.find("configfiles")
        if parent is None:
            return ()
        files, seen = [], set()
        for element in _elements(parent):
            if element.tag == "configfile":
                name = self.name(element, "configfile")
                item = ConfigFile(name=name, kind="configfile", text=element.text or "",
                                  filename=element.get("filename"))
            elif element.tag == "inputs":
                name = self.name(element, "inputs")
                if element.get("format", "json") != "json":
                    self.fail(element, f"<inputs> format {element.get('format')!r}: only json")
                style = element.get("data_style") or "paths"
                if style not in ("paths", "skip", "staging_path_and_source_path"):
                    self.fail(element, f"<inputs> data_style {style!r}: expected paths, skip "
                              "or staging_path_and_source_path")
                item = ConfigFile(name=name, kind="inputs", filename=element.get("filename"),
                                  data_style=style)
            else:
                self.fail(element, f"<{element.tag}> in <configfiles> is not supported "
                          "(configfile and inputs only)")
            if item.filename is not None:
                normal = posixpath.normpath(item.filename)
                if not item.filename or "/" in normal or normal in (".", ".."):
                    self.fail(element, f"<{element.tag}> filename {item.filename!r} must be a "
                              "plain file name")
            if name in seen:
                self.fail(element, f"configfile name {name!r} is used twice")
            seen.add(name)
            files.append(item)
        return tuple(files)

    def environment(self, root) -> tuple:
        parent = root.find("environment_variables")
        if parent is None:
            return ()
        variables = []
        for element in parent.findall("environment_variable"):
            name = element.get("name")
            if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                self.fail(element, f"<environment_variable> name {name!r} is not a variable "
                          "name")
            if element.get("inject"):
                self.fail(element, f"<environment_variable name={name!r} "
                          f"inject={element.get('inject')!r}>: injected keys are not "
                          "supported (no key reaches a job)")
            variables.append(EnvVar(name=name, text=element.text or "",
                                    strip=_bool(element.get("strip"))))
        return tuple(variables)

    def requirements(self, root) -> tuple:
        found = []
        for parent in root.findall("requirements"):
            for element in parent.findall("requirement"):
                kind = element.get("type") or "package"
                name = (element.text or "").strip()
                if not name:
                    self.fail(element, "<requirement> names no package")
                found.append(Requirement(type=kind, name=name, version=element.get("version")))
        return tuple(found)

    def containers(self, root) -> tuple:
        found = []
        for parent in root.findall("requirements"):
            for element in parent.findall("container"):
                identifier = (element.text or "").strip()
                if not identifier:
                    self.fail(element, "<container> names no image")
                if (element.get("type") or "docker") == "docker":
                    try:
                        check_image(identifier)
                    except ContainerError as exc:
                        self.fail(element, f"<container>: {exc}")
                found.append(Container(type=element.get("type") or "docker",
                                       identifier=identifier))
        return tuple(found)


def _data_names(inputs) -> set:
    """The names of the data params, at any depth."""
    names = set()
    for item in inputs:
        if isinstance(item, Param):
            if item.type == ParamType.DATA:
                names.add(item.name)
        elif isinstance(item, Conditional):
            for when in item.whens:
                names |= _data_names(when.inputs)
        else:
            names |= _data_names(item.inputs)
    return names
