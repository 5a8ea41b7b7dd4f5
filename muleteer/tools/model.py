"""The tool model: what a Galaxy tool wrapper declares, as typed values.

Built from Galaxy's own parser (galaxy-tool-util: macros, tokens, profiles are expanded
there) by muleteer/tools/load.py; used by params.py (checking what a client submits),
evaluation.py (the command, configfiles, environment), stdio.py (was the job an error)
and outputs.py (which outputs, of which format). Nothing here reads files or runs code.

A submitted job's parameter values are a tree of plain JSON values (params.py builds it):
    text, hidden, color, select (single) -> str (select: None when optional and unset)
    integer -> int, float -> float (None when optional and unset), boolean -> bool
    select multiple -> list[str]
    data -> int (a dataset id) or None; data multiple -> list[int]
    data_column -> int (1-based) or None; multiple -> list[int]
    conditional -> {test param's name: value, each param of the chosen <when>: value}
    repeat -> list of {param name: value}
    section -> {param name: value}
It is stored with the job as is, and the handler builds the command from it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union


class ParamType(str, enum.Enum):
    TEXT = "text"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    SELECT = "select"
    DATA = "data"
    DATA_COLUMN = "data_column"
    HIDDEN = "hidden"
    COLOR = "color"


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    selected: bool = False


@dataclass(frozen=True)
class DynamicOptions:
    """<options from_dataset|from_file> of a select: column `value`/`name` of a tab-separated
    file (a dataset param's, or a file under the tool's directory or tool_data_path);
    lines starting with `#` skipped; `filters` are ("type", attrs) pairs, kept for the
    loader's refusal of kinds it cannot apply."""
    from_dataset: str | None = None    # a data param's name
    from_file: str | None = None       # a path relative to the tool's directory
    value_column: int = 0
    name_column: int = 0
    startswith: str | None = None


@dataclass(frozen=True)
class Validator:
    """Galaxy's <validator type=...>: in_range (min, max, exclude_min, exclude_max), regex
    (expression), length (min, max), empty_field, no_options. `negate` flips it."""
    type: str
    message: str = ""
    min: float | None = None
    max: float | None = None
    exclude_min: bool = False
    exclude_max: bool = False
    expression: str | None = None
    negate: bool = False


@dataclass(frozen=True)
class Sanitizer:
    """Galaxy's <sanitizer>: the characters kept as they are (`valid`) and what the others
    become (`mapping`: char -> replacement; unmapped invalid characters become `invalid_char`).
    `None` on a text param means Galaxy's default sanitizer; sanitize="False" on the param
    means no sanitizer at all (Sanitizer.OFF)."""
    valid: frozenset = frozenset()
    mapping: tuple = ()                # ((char, replacement), ...)
    invalid_char: str = "X"
    off: bool = False


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    label: str = ""
    help: str = ""
    argument: str | None = None        # e.g. "--line-increment" (the name was derived from it)
    optional: bool = False
    value: str | None = None           # the default as written in the XML (a string)
    # integer / float
    min: float | None = None
    max: float | None = None
    # text
    area: bool = False
    sanitizer: Sanitizer | None = None
    # boolean
    truevalue: str = "true"
    falsevalue: str = "false"
    checked: bool = False
    # select
    options: tuple = ()                # (Option, ...)
    dynamic_options: DynamicOptions | None = None
    multiple: bool = False             # select, data, data_column
    display: str | None = None         # select: radio | checkboxes
    # data
    formats: tuple = ()                # accepted format names (their subclasses too)
    # data_column
    data_ref: str | None = None
    use_header_names: bool = False
    accept_default: bool = False
    numerical: bool = False
    validators: tuple = ()             # (Validator, ...)


@dataclass(frozen=True)
class When:
    value: str
    inputs: tuple                      # (Input, ...)


@dataclass(frozen=True)
class Conditional:
    name: str
    test: Param                        # a select or boolean
    whens: tuple                       # (When, ...)

    def when(self, value) -> When | None:
        key = value if isinstance(value, str) else (
            (self.test.truevalue if value else self.test.falsevalue) if isinstance(value, bool)
            else str(value))
        return next((w for w in self.whens if w.value == key), None)


@dataclass(frozen=True)
class Repeat:
    name: str
    title: str
    inputs: tuple
    min: int = 0
    max: int | None = None
    default: int = 0
    help: str = ""


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    inputs: tuple
    expanded: bool = False
    help: str = ""


Input = Union[Param, Conditional, Repeat, Section]


@dataclass(frozen=True)
class ChangeFormat:
    """<change_format><when input="x" value="y" format="z"/>: the output takes format z
    when the param at flat path x has value y."""
    input: str
    value: str
    format: str


@dataclass(frozen=True)
class DiscoverDatasets:
    """<discover_datasets pattern directory format ext visible>: `pattern` a Python regex
    with a `designation` group (Galaxy's named patterns such as __designation_and_ext__
    resolved by the loader to their regex)."""
    pattern: str
    directory: str | None = None
    format: str | None = None
    visible: bool = False
    recurse: bool = False
    sort_by: str | None = None


@dataclass(frozen=True)
class Output:
    name: str
    format: str = "data"               # a format name, or "input": the first data input's
    format_source: str | None = None   # a data param's name (flat path)
    metadata_source: str | None = None
    from_work_dir: str | None = None
    label: str = ""                    # a template, e.g. "${tool.name} on ${on_string}"
    hidden: bool = False
    change_format: tuple = ()          # (ChangeFormat, ...)
    filters: tuple = ()                # (str: a Galaxy filter expression, ...)
    discover: tuple = ()               # (DiscoverDatasets, ...)


class Level(str, enum.Enum):
    LOG = "log"
    QC = "qc"
    WARNING = "warning"
    FATAL = "fatal"
    FATAL_OOM = "fatal_oom"


@dataclass(frozen=True)
class ExitCodeRule:
    low: float                         # -inf for an open range
    high: float                        # inf for an open range
    level: Level = Level.FATAL
    description: str = ""


@dataclass(frozen=True)
class RegexRule:
    match: str
    stdout: bool = True
    stderr: bool = True
    level: Level = Level.FATAL
    description: str = ""


@dataclass(frozen=True)
class Stdio:
    """How a job's end is judged. `legacy`: no <stdio> and no detect_errors: Galaxy's old
    rule (any stderr is an error) when the profile is < 16.04, exit code != 0 otherwise."""
    exit_codes: tuple = ()             # (ExitCodeRule, ...)
    regexes: tuple = ()                # (RegexRule, ...)
    legacy_stderr: bool = False        # profile < 16.04 without <stdio>: stderr means error


@dataclass(frozen=True)
class ConfigFile:
    """<configfiles>: a <configfile name> template, or <inputs name data_style filename>:
    the job's params as JSON. Its path is `$name` in the command."""
    name: str
    kind: str = "configfile"           # configfile | inputs
    text: str = ""
    filename: str | None = None
    data_style: str = "paths"


@dataclass(frozen=True)
class EnvVar:
    name: str
    text: str = ""                     # a template
    inject: str | None = None          # e.g. "api_key" (refused: no keys reach a job)
    strip: bool = False


@dataclass(frozen=True)
class Requirement:
    type: str                          # package | set_environment
    name: str
    version: str | None = None


@dataclass(frozen=True)
class Container:
    type: str                          # docker | singularity
    identifier: str


@dataclass(frozen=True)
class Tool:
    id: str
    name: str
    version: str
    command: str                       # the <command> template (Cheetah)
    inputs: tuple                      # (Input, ...) in declaration order
    outputs: tuple                     # (Output, ...)
    profile: str = "16.01"
    description: str = ""
    help: str = ""                     # reStructuredText
    path: str = ""                     # the tool XML file
    tool_dir: str = ""                 # $__tool_directory__
    interpreter: str | None = None     # legacy <command interpreter="python">
    version_command: str | None = None
    stdio: Stdio = field(default_factory=Stdio)
    configfiles: tuple = ()            # (ConfigFile, ...)
    environment: tuple = ()            # (EnvVar, ...)
    requirements: tuple = ()           # (Requirement, ...)
    containers: tuple = ()             # (Container, ...)
    section: str | None = None         # the tool panel section (tool_conf.xml)
    hidden: bool = False

    def output(self, name: str) -> Output | None:
        return next((o for o in self.outputs if o.name == name), None)

    def data_params(self) -> list[tuple[str, Param]]:
        """(flat path pattern, param) of every data param, at any depth: a param inside a
        repeat appears once, with `%d` where the repeat's index goes (e.g. "queries_%d|input")."""
        found = []

        def walk(inputs, prefix):
            for item in inputs:
                if isinstance(item, Param):
                    if item.type == ParamType.DATA:
                        found.append((prefix + item.name, item))
                elif isinstance(item, Conditional):
                    for when in item.whens:
                        walk(when.inputs, f"{prefix}{item.name}|")
                elif isinstance(item, Repeat):
                    walk(item.inputs, f"{prefix}{item.name}_%d|")
                else:
                    walk(item.inputs, f"{prefix}{item.name}|")
        walk(self.inputs, "")
        return found


@dataclass(frozen=True)
class DatasetInfo:
    """What a job's command may know of one input dataset (evaluation.py's wrappers):
    `metadata` holds what Galaxy computes for text formats: columns, data_lines,
    comment_lines, column_names (list or None), column_types."""
    id: int
    path: str
    format: str
    name: str = ""
    size: int = 0
    metadata: dict = field(default_factory=dict)
