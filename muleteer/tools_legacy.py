"""Tools: what admins allow users to run.

A documented subset of Galaxy's tool XML (see README, "Tools"):

    <tool id="cat_lines" name="Repeat a line" version="1.0.0">
      <description>...</description>
      <command>printf '%s\\n' $text > $out_file</command>
      <inputs>
        <param name="text" type="text" value="hello" label="Text" help="..."/>
        <param name="times" type="integer" value="1" min="1" max="1000"/>
        <param name="ratio" type="float" min="0" max="1" optional="true"/>
        <param name="upper" type="boolean" truevalue="--upper" falsevalue="" checked="false"/>
        <param name="algo" type="select"><option value="md5">MD5</option></param>
        <param name="input" type="data" format="tabular,bed" multiple="false" optional="false"/>
      </inputs>
      <outputs>
        <data name="out_file" format="txt" from_work_dir="result.txt"/>
        <data name="sorted" format_source="input"/>  (or format="input": the first input's)
      </outputs>
      <help>...</help>
    </tool>

`$name` / `${name}` in <command> is replaced by the parameter's value, always
shell-quoted, so no client can run a command of its own; `$$` is a literal `$`.
Booleans insert their admin-written truevalue/falsevalue as written. A data param is the
path of the stored dataset (a multiple one, the paths separated by spaces); a client names
datasets as {"src": "dataset", "id": N} (Galaxy's {"src": "hda", ...} too), and the web
side checks that each is the user's, not deleted, and of an accepted format.
"""
from __future__ import annotations

import glob
import math
import os
import re
import shlex
import string
from dataclasses import dataclass, field

from lxml import etree

PARAM_TYPES = ("text", "integer", "float", "boolean", "select", "data")
DATASET_SOURCES = ("dataset", "hda")  # Galaxy's name for a history dataset is "hda"
MAX_TEXT = 10_000
_TOOL_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


from muleteer.tools.errors import ParamError, ToolError  # noqa: E402


@dataclass
class Param:
    name: str
    type: str
    label: str = ""
    help: str = ""
    value: object = None
    optional: bool = False
    min: float | None = None
    max: float | None = None
    options: list = field(default_factory=list)  # (value, label)
    truevalue: str = "true"
    falsevalue: str = "false"
    formats: tuple = ()      # data: the formats accepted (and their subclasses)
    multiple: bool = False   # data: a list of datasets

    def describe(self) -> dict:
        d = {"name": self.name, "type": self.type, "label": self.label or self.name,
             "help": self.help, "value": self.value, "optional": self.optional}
        if self.type in ("integer", "float"):
            d.update(min=self.min, max=self.max)
        if self.type == "select":
            d["options"] = [{"value": v, "label": lab} for v, lab in self.options]
        if self.type == "data":
            d.update(formats=list(self.formats), multiple=self.multiple)
        return d

    def check(self, raw, where: str):
        """The typed value of a submitted raw value, or ParamError."""
        if self.type == "text":
            if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
                raise ParamError(where, f"expected text, got {_kind(raw)}")
            text = str(raw)
            if len(text) > MAX_TEXT:
                raise ParamError(where, f"too long ({len(text)} characters, at most {MAX_TEXT})")
            if "\x00" in text:
                raise ParamError(where, "contains a NUL character")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ParamError(where, "is not valid Unicode text (a lone surrogate)") from None
            return text
        if self.type in ("integer", "float"):
            value = _number(raw, integer=self.type == "integer", where=where)
            if self.min is not None and value < self.min:
                raise ParamError(where, f"{value} is below the minimum {_fmt(self.min)}")
            if self.max is not None and value > self.max:
                raise ParamError(where, f"{value} is above the maximum {_fmt(self.max)}")
            return value
        if self.type == "boolean":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "false", "on", "off", "1", "0", "yes", "no"):
                return raw.lower() in ("true", "on", "1", "yes")
            raise ParamError(where, f"expected true or false, got {_kind(raw)}")
        if self.type == "data":
            return self._dataset_ids(raw, where)
        # select
        allowed = [v for v, _ in self.options]
        if not isinstance(raw, str) or raw not in allowed:
            raise ParamError(where, f"{raw!r} is not one of {', '.join(allowed)}")
        return raw

    def _dataset_ids(self, raw, where: str):
        """{"src": "dataset", "id": N} (a list of them when multiple) -> N (or [N, ...])."""
        if self.multiple:
            items = raw if isinstance(raw, list) else [raw]
            if not items and not self.optional:
                raise ParamError(where, "required: at least one dataset")
            return [_dataset_id(item, f"{where}[{i}]") for i, item in enumerate(items)]
        if isinstance(raw, list):
            raise ParamError(where, "expected one dataset, not a list")
        return _dataset_id(raw, where)

    def render(self, value, dataset_path=None) -> str:
        if self.type == "boolean":
            return self.truevalue if value else self.falsevalue
        if self.type == "data":
            ids = value if isinstance(value, list) else [] if value is None else [value]
            return " ".join(shlex.quote(dataset_path(i)) for i in ids) or "''"
        if value is None:
            return "''"
        return shlex.quote(_fmt(value) if isinstance(value, float) else str(value))


@dataclass
class Output:
    name: str
    format: str = "txt"          # a format name, or "input": the first data input's
    from_work_dir: str | None = None
    label: str = ""
    format_source: str | None = None  # a data param whose dataset's format this takes

    def relative_path(self) -> str:
        """Where the output lives, relative to the job's working directory."""
        if self.from_work_dir:
            return self.from_work_dir
        known = self.format if self.format != "input" and not self.format_source else "dat"
        return f"outputs/{self.name}.{known}"


@dataclass
class Tool:
    id: str
    name: str
    version: str
    command: str
    params: list
    outputs: list
    description: str = ""
    help: str = ""
    path: str = ""

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def output(self, name: str) -> Output | None:
        return next((o for o in self.outputs if o.name == name), None)

    def validate(self, submitted) -> dict:
        """Typed, complete parameter values from a client's `params` object."""
        if submitted is None:
            submitted = {}
        if not isinstance(submitted, dict):
            raise ParamError("params", f"expected an object of parameter values, got {_kind(submitted)}")
        known = {p.name for p in self.params}
        for name in submitted:
            if name not in known:
                raise ParamError(f"params.{name}", f"not a parameter of tool {self.id} "
                                                   f"(its parameters: {', '.join(sorted(known)) or 'none'})")
        values = {}
        for p in self.params:
            where = f"params.{p.name}"
            raw = submitted.get(p.name)
            if raw is None or (raw == "" and p.type in ("integer", "float", "select")):
                if p.value is not None:
                    values[p.name] = p.value
                elif p.optional or p.type == "boolean":
                    values[p.name] = False if p.type == "boolean" else None
                else:
                    raise ParamError(where, "required")
                continue
            values[p.name] = p.check(raw, where)
        return values

    def data_params(self) -> list[Param]:
        return [p for p in self.params if p.type == "data"]

    def output_format(self, output: "Output", input_formats: dict) -> str:
        """An output's format: its own, or that of the input it names (format_source, or
        format="input": the first data input). `input_formats`: param name -> format."""
        source = output.format_source or (
            self.data_params()[0].name if output.format == "input" and self.data_params() else None)
        return input_formats.get(source) or (output.format if output.format != "input" else "data")

    def command_line(self, values: dict, dataset_path=None) -> str:
        """The shell command for these (validated) values, every value quoted.

        Outputs are paths relative to the job's working directory, where the job
        script runs the command; data params are their datasets' paths
        (`dataset_path(id)`).
        """
        mapping = {p.name: p.render(values.get(p.name), dataset_path) for p in self.params}
        for out in self.outputs:
            mapping[out.name] = shlex.quote(out.relative_path())
        return string.Template(self.command).substitute(mapping)

    def describe(self, full: bool = False) -> dict:
        d = {"id": self.id, "name": self.name, "version": self.version,
             "description": self.description}
        if full:
            d.update(help=self.help, inputs=[p.describe() for p in self.params],
                     outputs=[{"name": o.name, "format": o.format, "label": o.label}
                              for o in self.outputs])
        return d


def _dataset_id(raw, where: str) -> int:
    if not isinstance(raw, dict):
        raise ParamError(where, 'expected a dataset: {"src": "dataset", "id": N}, '
                                f"got {_kind(raw)}")
    unknown = sorted(set(raw) - {"src", "id"})
    if unknown:
        raise ParamError(f"{where}.{unknown[0]}", 'unknown key (a dataset is {"src", "id"})')
    if raw.get("src") not in DATASET_SOURCES:
        raise ParamError(f"{where}.src", f"expected one of {', '.join(DATASET_SOURCES)}, "
                                         f"got {raw.get('src')!r}")
    dataset_id = raw.get("id")
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 0 < dataset_id < 2**63:
        raise ParamError(f"{where}.id", f"expected a dataset id, got {_kind(dataset_id)}")
    return dataset_id


def _kind(raw) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "text",
            list: "a list", dict: "an object", type(None): "null"}.get(type(raw), type(raw).__name__)


def _fmt(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _number(raw, integer: bool, where: str):
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
    # NaN and the infinities ("nan", "inf", or 1e999 in JSON) are no value a tool can use;
    # nor is an integer too large for a float parameter.
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ParamError(where, f"must be a finite number (got {raw!r})")
    if integer and isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if integer and not isinstance(raw, int):
        raise ParamError(where, f"expected {kind}, got {_kind(raw)} {raw!r}")
    if integer:
        return raw
    try:
        return float(raw)
    except OverflowError:
        raise ParamError(where, "must be a finite number (this one is too large)") from None


class _ToolReader:
    def __init__(self, path):
        self.path = path

    def fail(self, element, message):
        line = getattr(element, "sourceline", None)
        where = f"{self.path}, line {line}" if line else self.path
        raise ToolError(f"{where}: <{element.tag}>: {message}")

    def number(self, element, attr):
        raw = element.get(attr)
        if raw is None or raw == "":
            return None
        try:
            return float(raw)
        except ValueError:
            self.fail(element, f"{attr}={raw!r} is not a number")


def load_tool(path: str) -> Tool:
    try:
        root = etree.parse(path, etree.XMLParser(remove_comments=True)).getroot()
    except etree.XMLSyntaxError as exc:
        raise ToolError(f"{path}, line {exc.lineno}: not well-formed XML: {exc.msg}") from exc
    r = _ToolReader(path)
    if root.tag != "tool":
        r.fail(root, "the root element must be <tool>")
    tool_id = root.get("id") or ""
    if not _TOOL_ID.match(tool_id):
        r.fail(root, f"id={tool_id!r}: letters, digits, '_', '.', '-' only")
    command_el = root.find("command")
    if command_el is None or not (command_el.text or "").strip():
        r.fail(root, "missing <command>")
    params = [_read_param(r, el) for el in root.findall("inputs/param")]
    outputs = [_read_output(r, el) for el in root.findall("outputs/data")]
    data = {p.name for p in params if p.type == "data"}
    for out, el in zip(outputs, root.findall("outputs/data")):
        if out.format_source and out.format_source not in data:
            r.fail(el, f"format_source={out.format_source!r} is not a data param of this tool")
        if out.format == "input" and not data:
            r.fail(el, 'format="input" needs a data param')
    names = [p.name for p in params] + [o.name for o in outputs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        r.fail(root, f"name(s) used twice: {', '.join(sorted(duplicates))}")
    template = string.Template(command_el.text.strip())
    if not template.is_valid():
        r.fail(command_el, "a '$' that is not $name, ${name} or $$ (write $$ for a literal $)")
    unknown = set(template.get_identifiers()) - set(names)
    if unknown:
        r.fail(command_el, f"refers to ${', $'.join(sorted(unknown))}, which is not a param or output")
    return Tool(id=tool_id, name=root.get("name") or tool_id, version=root.get("version") or "1.0.0",
                command=template.template, params=params, outputs=outputs,
                description=(root.findtext("description") or "").strip(),
                help=(root.findtext("help") or "").strip(), path=path)


def _read_param(r, el) -> Param:
    name = el.get("name") or ""
    if not _NAME.match(name):
        r.fail(el, f"name={name!r}: a parameter name is a letter or '_' then letters, digits, '_'")
    kind = el.get("type")
    if kind not in PARAM_TYPES:
        r.fail(el, f"type={kind!r}: expected one of {', '.join(PARAM_TYPES)}")
    p = Param(name=name, type=kind, label=el.get("label") or "", help=el.get("help") or "",
              optional=(el.get("optional") or "false").lower() == "true",
              min=r.number(el, "min"), max=r.number(el, "max"),
              truevalue=el.get("truevalue", "true"), falsevalue=el.get("falsevalue", "false"))
    if kind == "data":
        p.formats = tuple(f.strip() for f in (el.get("format") or "data").split(",") if f.strip())
        p.multiple = (el.get("multiple") or "false").lower() == "true"
        if el.get("value"):
            r.fail(el, "a data param has no default value")
        return p
    if kind == "select":
        p.options = [(o.get("value", o.text or ""), (o.text or o.get("value") or "").strip())
                     for o in el.findall("option")]
        if not p.options:
            r.fail(el, "a select needs at least one <option>")
        selected = [v for (v, _), o in zip(p.options, el.findall("option")) if o.get("selected") == "true"]
        default = el.get("value") or (selected[0] if selected else p.options[0][0])
    elif kind == "boolean":
        default = (el.get("checked") or "false").lower() in ("true", "yes")
    else:
        default = el.get("value")
    if default is not None and default != "" or kind == "text" and default == "":
        try:
            p.value = default if kind == "boolean" else p.check(default, f"default of {name}")
        except ParamError as exc:
            r.fail(el, f"value={default!r}: {exc.message}")
    return p


def _read_output(r, el) -> Output:
    name = el.get("name") or ""
    if not _NAME.match(name):
        r.fail(el, f"name={name!r}: not a valid output name")
    from_work_dir = el.get("from_work_dir")
    if from_work_dir and (os.path.isabs(from_work_dir) or ".." in from_work_dir.split("/")):
        r.fail(el, f"from_work_dir={from_work_dir!r} must stay inside the working directory")
    output = Output(name=name, format=el.get("format") or "txt", from_work_dir=from_work_dir,
                    label=el.get("label") or "", format_source=el.get("format_source"))
    return output


def load_tools(tool_path: str) -> dict:
    """Every *.xml tool under tool_path, by id. A bad file or a repeated id stops start-up."""
    tools = {}
    for path in sorted(glob.glob(os.path.join(tool_path, "**", "*.xml"), recursive=True)):
        tool = load_tool(path)
        if tool.id in tools:
            raise ToolError(f"{path}: tool id {tool.id!r} is already defined in {tools[tool.id].path}")
        tools[tool.id] = tool
    return tools
