"""The tool form of the browser: a Tool's inputs as a tree of fields to render (with the
values shown and the errors by their field), the submitted form back into Galaxy's flat
params, and the tool's help as HTML.

Field names are Galaxy's flat form ("cond|sel", "queries_0|input", "sec|x"), the names
check_params (muleteer/tools/params.py) takes and names in its errors; app/static/tool_form.js
shows the chosen <when>, adds and removes repeat blocks and fills data_column selects.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Union

from markupsafe import Markup

from muleteer.tools.model import Conditional, Param, ParamType, Repeat, Section, Tool

INDEX = "__index__"  # where a repeat's template block puts its index (tool_form.js replaces it)
BLOCK_MARK = "__block__"  # a hidden field in each repeat block: it counts even with no value sent


# -- the view model ---------------------------------------------------------------------
@dataclass
class Choice:
    value: str
    label: str
    selected: bool = False
    detail: tuple = ()                 # a dataset's (format, size)


@dataclass
class FieldView:
    """One param: its flat name, what it shows and offers, its error."""
    param: Param
    name: str
    values: list                       # the current value(s) as strings
    error: str = ""
    choices: list = field(default_factory=list)   # select options, or datasets
    data_ref: str | None = None        # data_column: the flat name of its data param
    test_of: str | None = None         # set when this is a conditional's test
    kind: str = "param"

    @property
    def value(self) -> str:
        return self.values[0] if self.values else ""

    @property
    def checked(self) -> bool:
        return "true" in self.values

    @property
    def required(self) -> bool:
        return not self.param.optional


@dataclass
class CaseView:
    value: str
    active: bool
    fields: list


@dataclass
class ConditionalView:
    cond: Conditional
    name: str
    test: FieldView
    cases: list
    kind: str = "conditional"


@dataclass
class BlockView:
    index: Union[int, str]             # INDEX in the template block
    prefix: str                        # "r_0|"
    fields: list

    @property
    def number(self):
        return self.index + 1 if isinstance(self.index, int) else ""


@dataclass
class RepeatView:
    repeat: Repeat
    name: str                          # the flat base, "outer_0|r"
    blocks: list
    template: BlockView
    error: str = ""
    kind: str = "repeat"

    @property
    def pattern(self) -> str:
        return f"{self.name}_{INDEX}|"


@dataclass
class SectionView:
    section: Section
    name: str
    fields: list
    open: bool
    error: str = ""
    kind: str = "section"


@dataclass
class FormView:
    fields: list
    errors: dict                       # every error by flat path
    unplaced: list                     # errors naming no field shown: (path, message)


class _Builder:
    """Walks a tool's inputs once, with the submitted form (a MultiDict) or, for a new form,
    the defaults; `datasets` maps a data param's pattern (Tool.data_params) to its choices."""

    def __init__(self, form, errors: dict, datasets: dict):
        self.form, self.errors, self.datasets = form, errors, datasets
        self.placed: set = set()

    def error(self, name: str) -> str:
        if name in self.errors:
            self.placed.add(name)
            return self.errors[name]
        return ""

    def inputs(self, inputs, prefix: str, pattern: str, scopes: tuple, template: bool) -> list:
        # `scopes`: the data params visible from here, innermost first (data_ref's lookup).
        here = {i.name: prefix + i.name for i in inputs
                if isinstance(i, Param) and i.type == ParamType.DATA}
        scopes = (here,) + scopes
        return [self.input(i, prefix, pattern, scopes, template) for i in inputs]

    def input(self, item, prefix, pattern, scopes, template):
        name = prefix + item.name
        if isinstance(item, Param):
            return self.param(item, name, pattern + item.name, scopes, template)
        if isinstance(item, Conditional):
            test = self.param(item.test, f"{name}|{item.test.name}", "", scopes, template)
            test.test_of = name
            chosen = _chosen_case(item, test)
            cases = [CaseView(w.value, w.value == chosen,
                              self.inputs(w.inputs, f"{name}|", f"{pattern}{item.name}|", scopes,
                                          template))
                     for w in item.whens]
            return ConditionalView(item, name, test, cases)
        if isinstance(item, Repeat):
            count = (max(item.default, item.min) if self.form is None or template
                     else submitted_blocks(self.form, name))
            sub = f"{pattern}{item.name}_%d|"
            blocks = [BlockView(i, f"{name}_{i}|",
                                self.inputs(item.inputs, f"{name}_{i}|", sub, scopes, template))
                      for i in range(count)]
            # The template is a fresh block: defaults, never the submitted values.
            saved, self.form = self.form, None
            tpl = BlockView(INDEX, f"{name}_{INDEX}|",
                            self.inputs(item.inputs, f"{name}_{INDEX}|", sub, scopes, True))
            self.form = saved
            return RepeatView(item, name, blocks, tpl, self.error(name))
        fields = self.inputs(item.inputs, f"{name}|", f"{pattern}{item.name}|", scopes, template)
        has_error = any(k == name or k.startswith(name + "|") for k in self.errors)
        return SectionView(item, name, fields, item.expanded or has_error, self.error(name))

    def param(self, p: Param, name: str, pattern: str, scopes, template) -> FieldView:
        view = FieldView(p, name, self.values(p, name), "" if template else self.error(name))
        if p.type == ParamType.SELECT:
            view.choices = [Choice(o.value, o.label, o.value in view.values) for o in p.options]
        elif p.type == ParamType.DATA:
            view.choices = [Choice(str(d.id), f"{d.id}: {d.name}", str(d.id) in view.values, (d.format, d.size))
                            for d in self.datasets.get(pattern, ())]
        elif p.type == ParamType.DATA_COLUMN:
            view.data_ref = next((s[p.data_ref] for s in scopes if p.data_ref in s), p.data_ref)
        return view

    def values(self, p: Param, name: str) -> list:
        if self.form is not None:
            sent = [v for v in self.form.getlist(name)]
            if p.type == ParamType.BOOLEAN:
                return ["true" if "true" in sent else "false"]
            return sent
        return default_values(p)


def default_values(p: Param) -> list:
    """What a new form shows, as Galaxy's form does: the XML's value, the selected options
    (else a required single select's first option), a boolean's `checked`."""
    if p.type == ParamType.BOOLEAN:
        checked = p.checked or (p.value or "").lower() in ("true", "yes", "on") or (
            p.value is not None and p.value == p.truevalue and p.truevalue not in ("", "false"))
        return ["true" if checked else "false"]
    if p.type == ParamType.SELECT:
        selected = [o.value for o in p.options if o.selected]
        if not selected and p.value is not None:
            selected = [v.strip() for v in p.value.split(",")] if p.multiple else [p.value]
        if not selected and p.options and not p.optional and not p.multiple:
            selected = [p.options[0].value]
        return selected
    if p.type == ParamType.DATA:
        return []
    if p.type == ParamType.DATA_COLUMN and p.multiple and p.value:
        return [v.strip() for v in p.value.split(",") if v.strip()]
    return [p.value] if p.value is not None else []


def _chosen_case(cond: Conditional, test: FieldView) -> str | None:
    if cond.test.type == ParamType.BOOLEAN:
        when = cond.when(test.checked)
    else:
        when = cond.when(test.value) if test.values else None
    return when.value if when else None


def form_view(tool: Tool, form=None, errors: dict | None = None, datasets: dict | None = None) -> FormView:
    """The form of `tool`: new (form None: the defaults) or as submitted (a MultiDict), with
    `errors` {flat path: message} placed by their fields."""
    errors = errors or {}
    builder = _Builder(form, errors, datasets or {})
    fields = builder.inputs(tool.inputs, "", "", (), False)
    unplaced = [(k, v) for k, v in errors.items() if k not in builder.placed]
    return FormView(fields, errors, unplaced)


def error_path(field_name: str) -> str:
    """ParamError.field ("params.r_0|x") -> the flat path ("r_0|x")."""
    return field_name[len("params."):] if field_name.startswith("params.") else field_name


# -- the submitted form -> Galaxy's flat params -----------------------------------------
def submitted_blocks(form, name: str) -> int:
    """How many blocks of the repeat `name` ("outer_0|r") were sent: tool_form.js numbers
    them 0..n-1 without gaps, and each carries a BLOCK_MARK field."""
    found = re.compile(re.escape(name) + r"_(\d+)\|")
    indexes = {int(m.group(1)) for key in form.keys() for m in [found.match(key)] if m}
    return max(indexes) + 1 if indexes else 0


def flat_params(tool: Tool, form) -> dict:
    """The form's fields (a MultiDict) as Galaxy's flat params: multi-valued fields as
    lists, a boolean "true"/"false" (unchecked: "false"), data ids as {"src": "hda", "id": N},
    an empty data or select choice left out (check_params says if one is needed). Only the
    fields of the chosen <when> are read, whatever else was sent."""
    out: dict = {}

    def walk(inputs, prefix):
        for item in inputs:
            name = prefix + item.name
            if isinstance(item, Param):
                _param(item, name)
            elif isinstance(item, Conditional):
                test_name = f"{name}|{item.test.name}"
                _param(item.test, test_name)
                sent = out.get(test_name)
                when = item.when(sent == "true" if item.test.type == ParamType.BOOLEAN else sent) \
                    if sent is not None else None
                if when is not None:
                    walk(when.inputs, f"{name}|")
            elif isinstance(item, Repeat):
                for i in range(submitted_blocks(form, name)):
                    walk(item.inputs, f"{name}_{i}|")
            else:
                walk(item.inputs, f"{name}|")

    def _param(p: Param, name: str):
        sent = form.getlist(name)
        if p.type == ParamType.BOOLEAN:
            out[name] = "true" if "true" in sent else "false"
            return
        if p.type == ParamType.DATA:
            refs = [_dataset_ref(v) for v in sent if v.strip()]
            if refs:
                out[name] = refs if p.multiple else refs[0]
            return
        if p.type == ParamType.DATA_COLUMN and p.multiple:
            # The number-input fallback takes "1,3" for several columns.
            sent = [part.strip() for v in sent for part in v.split(",") if part.strip()]
            if sent:
                out[name] = sent
            return
        if p.type == ParamType.SELECT:
            sent = [v for v in sent if v != ""]
            if not sent:
                return
            out[name] = sent if p.multiple else sent[0]
            return
        if sent:
            out[name] = sent if p.multiple else sent[-1]

    walk(tool.inputs, "")
    return out


def _dataset_ref(value: str):
    value = value.strip()
    # A non-number is passed on as it is: check_params refuses it by its field.
    return {"src": "hda", "id": int(value)} if value.isascii() and value.isdigit() else value


# -- help ---------------------------------------------------------------------------------
_SAFE_URL = re.compile(r"^(https?:|mailto:|ftp:|/|#|\.|[^:/?#]*(?:[/?#]|$))", re.IGNORECASE)
_help_cache: dict = {}
_help_lock = threading.Lock()


def help_html(tool: Tool) -> Markup:
    """The tool's <help> (reStructuredText) as an HTML fragment, cached per tool version:
    no raw HTML, no file inclusion, no javascript: links; a help docutils cannot read
    shows as plain text."""
    key = (tool.id, tool.version, tool.path, tool.help)
    with _help_lock:
        cached = _help_cache.get(key)
    if cached is None:
        cached = render_rst(tool.help)
        with _help_lock:
            _help_cache[key] = cached
    return cached


def render_rst(text: str) -> Markup:
    if not text or not text.strip():
        return Markup("")
    from docutils import nodes
    from docutils.core import publish_doctree, publish_parts
    from docutils.io import DocTreeInput
    from docutils.readers.doctree import Reader as DoctreeReader
    settings = {"raw_enabled": False, "file_insertion_enabled": False, "report_level": 5,
                "halt_level": 5, "warning_stream": False, "traceback": True,
                "doctitle_xform": False, "sectsubtitle_xform": False, "embed_stylesheet": False,
                "_disable_config": True, "input_encoding": "unicode", "output_encoding": "unicode",
                "syntax_highlight": "none", "math_output": "HTML"}
    try:
        tree = publish_doctree(_dedent(text), settings_overrides=settings)
        for node in list(tree.findall(nodes.reference)):
            if "refuri" in node and not _SAFE_URL.match(node["refuri"].strip()):
                node.replace_self(nodes.Text(node.astext()))
        for node in list(tree.findall(nodes.image)):
            uri = node.get("uri", "").strip()
            # "$PATH_TO_IMAGES/x.png": Galaxy's static images, which Muleteer does not serve.
            if uri.startswith("$") or not _SAFE_URL.match(uri):
                node.parent.remove(node)
        for node in list(tree.findall(nodes.system_message)):
            node.parent.remove(node)
        body = publish_parts(source=tree, source_class=DocTreeInput, reader=DoctreeReader(),
                             writer="html5", settings_overrides=settings)["body"]
    except Exception:  # docutils refuses it: the text itself, escaped
        return Markup('<pre class="help-text">{}</pre>').format(text.strip())
    return Markup(body)


def _dedent(text: str) -> str:
    """Tool XML indents its <help>: docutils would read the whole text as a quotation."""
    import textwrap
    return textwrap.dedent(text.expandtabs(8).strip("\n"))


# -- the job page's parameters --------------------------------------------------------------
@dataclass
class ParamRow:
    path: str                          # the flat path, "r_0|x"
    text: str                          # the value for people
    datasets: list                     # the input datasets behind it (job_datasets_json's)


def job_param_rows(tool: Tool | None, values: dict, inputs: dict) -> list:
    """A job's parameter tree as "flat path: value" rows; a data param's row carries its
    datasets (`inputs`: job_datasets_json's, by flat path) so the page can link them."""
    rows = []
    for path, value in _flat(tool, values or {}):
        linked = inputs.get(path)
        linked = linked if isinstance(linked, list) else [linked] if linked else []
        rows.append(ParamRow(path, _text(value), linked))
    return rows


def _flat(tool, values: dict) -> list:
    if tool is not None and isinstance(tool, Tool):
        try:
            from muleteer.tools.params import flatten
        except ImportError:  # params.py not there yet
            flatten = None
        if flatten is not None:
            return list(flatten(tool, values).items())
    return list(_flat_tree(values, ""))


def _flat_tree(values: dict, prefix: str):
    """The tree's own shape gives the flat names: a dict is a conditional or a section
    ("c|x"), a list of dicts a repeat ("r_0|x"); a job of a tool no longer loaded still shows."""
    for key, value in values.items():
        if isinstance(value, dict) and not _is_ref(value):
            yield from _flat_tree(value, f"{prefix}{key}|")
        elif isinstance(value, list) and value and all(isinstance(v, dict) and not _is_ref(v) for v in value):
            for i, block in enumerate(value):
                yield from _flat_tree(block, f"{prefix}{key}_{i}|")
        else:
            yield prefix + key, value


def _is_ref(value: dict) -> bool:
    return "id" in value and "src" in value


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and _is_ref(value):
        return f"dataset {value['id']}"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)
