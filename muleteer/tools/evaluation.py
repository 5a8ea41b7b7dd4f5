"""A job's command line, configfiles and environment, built from its tool's Cheetah
templates and its values as Galaxy builds them (lib/galaxy/tools/evaluation.py).

compile_templates() compiles a tool's templates once (cached per Tool object);
build_command() fills them for one job: the namespace holds each input's wrapper
(wrappers.py), each output's, each configfile's path and Galaxy's `$__tool_directory__`,
`$__new_file_path__`, `$__user_email__`. The command's lines are then stripped and joined
with spaces, and a legacy `interpreter` is put in front, exactly as Galaxy does.

Templates are the admin's code: Cheetah can `#import` and call anything, so this is not
a sandbox. What it does guarantee is that the templates' namespace holds only what is
built here: no configuration, store, secrets or os.environ of the server.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import string
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Mapping

from Cheetah.NameMapper import NotFound
from Cheetah.Template import Template

from muleteer.tools.errors import ToolError
from muleteer.tools.model import (
    ConfigFile, Conditional, DatasetInfo, Param, ParamType, Repeat, Section, Tool,
)
from muleteer.tools.sanitize import sanitize_text
from muleteer.tools.wrappers import (
    DatasetListWrapper, NoDatasetWrapper, OutputWrapper, WrapError,
    with_nested_names, wrap_inputs,
)

# Galaxy's <configfiles><inputs data_style>: how data params appear in the JSON.
DATA_STYLES = ("paths", "skip")
_CHEETAH_POSITION = re.compile(r"Line (\d+), column (\d+)")


class BuildError(Exception):
    """A job's command could not be built from its tool and values; the message names the
    tool (id and file) and what failed."""


@dataclass(frozen=True)
class _Template:
    """One compiled Cheetah template and where it comes from (for messages)."""
    where: str                         # e.g. "<command>", "<configfile name=\"script\">"
    klass: type


@dataclass(frozen=True)
class CompiledTool:
    """A tool's templates, compiled once: build_command() only fills them."""
    command: _Template | None
    configfiles: tuple                 # ((ConfigFile, _Template | None), ...) None: <inputs>
    environment: tuple                 # ((EnvVar, _Template), ...)
    version_command: string.Template | None


@dataclass(frozen=True)
class BuiltCommand:
    command: str
    # file name relative to the job's working directory -> content
    configfiles: dict[str, str] = field(default_factory=dict)
    # variable -> value, to be set (quoted) before the command runs
    environment: dict[str, str] = field(default_factory=dict)
    version_command: str | None = None


def _tool_label(tool: Tool) -> str:
    return f"tool {tool.id!r} ({tool.path or 'no file'})"


def _compile(tool: Tool, where: str, source: str) -> _Template:
    try:
        klass = Template.compile(source=source)
    except Exception as exc:  # Cheetah's ParseError, or Python's SyntaxError inside it
        text = str(exc)
        found = _CHEETAH_POSITION.search(text)
        position = (f"line {found.group(1)}, column {found.group(2)} of the template"
                    if found else "the template")
        summary = next((line.strip() for line in text.splitlines() if line.strip()),
                       type(exc).__name__)
        raise ToolError(f"{tool.path or tool.id}: {where}, {position}: {summary}") from None
    return _Template(where, klass)


def _compile_all(tool: Tool) -> CompiledTool:
    command = _compile(tool, "<command>", tool.command) if tool.command else None
    configfiles = []
    for cf in tool.configfiles:
        if cf.kind == "inputs":
            if cf.data_style not in DATA_STYLES:
                raise ToolError(
                    f"{tool.path or tool.id}: <configfiles><inputs name=\"{cf.name}\"> "
                    f"data_style=\"{cf.data_style}\" is not supported: use one of "
                    f"{', '.join(DATA_STYLES)}")
            configfiles.append((cf, None))
        elif cf.kind == "configfile":
            configfiles.append((cf, _compile(tool, f'<configfile name="{cf.name}">', cf.text)))
        else:
            raise ToolError(f"{tool.path or tool.id}: <configfiles> entry {cf.name!r} of kind "
                            f"{cf.kind!r} is not supported (configfile or inputs)")
    environment = []
    for var in tool.environment:
        if var.inject:
            # Galaxy injects a user's API key or tokens; no credential reaches a job here.
            raise ToolError(f"{tool.path or tool.id}: <environment_variable name="
                            f"\"{var.name}\" inject=\"{var.inject}\"> is refused: Muleteer "
                            f"gives jobs no credentials")
        environment.append((var, _compile(tool, f'<environment_variable name="{var.name}">',
                                          var.text)))
    # Galaxy fills <version_command> with string.Template ($__tool_directory__ only), not Cheetah.
    version = string.Template(tool.version_command) if tool.version_command else None
    return CompiledTool(command, tuple(configfiles), tuple(environment), version)


# Per Tool object: (a weak reference to it, its compiled templates). Keyed by id() so a
# big tool is never hashed; the weak reference's callback drops the entry with the tool.
_cache: dict[int, tuple[weakref.ref, CompiledTool]] = {}
_cache_lock = threading.Lock()


def compile_templates(tool: Tool) -> CompiledTool:
    """The tool's <command>, configfiles, environment variables and version_command,
    compiled once per Tool object. A template that does not compile is a ToolError naming
    the tool's file, the template and its line."""
    key = id(tool)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0]() is tool:
            return entry[1]
    compiled = _compile_all(tool)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0]() is tool:
            return entry[1]
        ref = weakref.ref(tool, lambda _ref, key=key: _cache.pop(key, None))
        _cache[key] = (ref, compiled)
    return compiled


def _no_input():
    raise NotFound("cannot find 'input'")


def _namespace(tool: Tool, values: Mapping[str, Any], *, datasets, outputs, working_directory,
               new_file_path, user_email, config_paths, tool_directory=None) -> dict[str, Any]:
    try:
        namespace = wrap_inputs(tool, values, datasets)
    except WrapError as exc:
        raise BuildError(f"{_tool_label(tool)}: param {exc.path}: {exc.message}") from None
    for out in tool.outputs:
        # Galaxy: an output left out by its <filter> is a "no dataset" for the templates.
        if out.name not in outputs and out.filters:
            namespace[out.name] = NoDatasetWrapper(out.format)
    for name, (path, fmt) in outputs.items():
        namespace[name] = OutputWrapper(name, path, fmt)
    namespace.update(config_paths)
    email = sanitize_text(user_email, None) if user_email else "Anonymous"
    namespace.update({
        "__tool_directory__": tool_directory or tool.tool_dir,
        "__new_file_path__": new_file_path,
        "__user_email__": email,
        "userEmail": email,
    })
    if "input" not in namespace:
        # Otherwise `$input` finds Python's builtin input() and the job hangs on stdin.
        namespace["input"] = _no_input
    return namespace


def _render(tool: Tool, template: _Template, namespace: dict[str, Any]) -> str:
    # The search list is this namespace and nothing else (see the module's docstring).
    try:
        try:
            return str(template.klass(searchList=[namespace]))
        except NotFound:
            # Galaxy retries with nested names reachable unqualified (TreeDict).
            return str(template.klass(searchList=[with_nested_names(namespace)]))
    except NotFound as exc:
        raise BuildError(f"{_tool_label(tool)}: {template.where}: {exc}") from None
    except Exception as exc:
        raise BuildError(f"{_tool_label(tool)}: {template.where}: "
                         f"{type(exc).__name__}: {exc}") from None


def _clean_command(text: str) -> str:
    # Galaxy's ToolEvaluator._build_command_line: strip each line, then join them.
    lines = "\n".join(line.strip() for line in text.split("\n"))
    return lines.replace("\n", " ").replace("\r", " ").strip()


def _with_interpreter(tool: Tool, command: str) -> str:
    # Galaxy's legacy <command interpreter="python">: the first word is a script in the
    # tool's directory.
    if not command:
        return command
    executable = command.split()[0]
    absolute = os.path.join(os.path.abspath(tool.tool_dir or "."), executable)
    return command.replace(executable, f"{tool.interpreter} {shlex.quote(absolute)}", 1)


def _json_value(item, wrapped, data_style: str):
    """Galaxy's wrapped_json._json_wrap_input for one input and its wrapper."""
    if isinstance(item, Repeat):
        return [_json_inputs(item.inputs, group, data_style) for group in wrapped]
    if isinstance(item, Conditional):
        when = item.whens[wrapped["__current_case__"]]
        out = _json_inputs(when.inputs, wrapped, data_style)
        out[item.test.name] = _json_value(item.test, wrapped[item.test.name], data_style)
        return out
    if isinstance(item, Section):
        return _json_inputs(item.inputs, wrapped, data_style)
    param: Param = item
    kind = param.type
    if kind == ParamType.DATA:
        if isinstance(wrapped, DatasetListWrapper):
            return [str(d) for d in wrapped]
        return str(wrapped) if wrapped else None
    if kind == ParamType.DATA_COLUMN:
        if wrapped.value is None:
            return [None] if not param.multiple else None
        return [int(v) for v in wrapped]
    if kind == ParamType.SELECT:
        return None if wrapped.value is None else str(wrapped)
    if kind in (ParamType.TEXT, ParamType.HIDDEN, ParamType.COLOR):
        return None if wrapped.value is None else str(wrapped)
    if kind == ParamType.INTEGER:
        return None if wrapped.value is None else int(wrapped.value)
    if kind == ParamType.FLOAT:
        return None if wrapped.value is None else float(wrapped.value)
    if kind == ParamType.BOOLEAN:
        return None if wrapped.value is None else bool(wrapped.value)
    raise BuildError(f"param {param.name}: type {kind.value} has no JSON form")


def _json_inputs(inputs: tuple, wrapped: Mapping[str, Any], data_style: str) -> dict:
    out = {}
    for item in inputs:
        if data_style == "skip" and isinstance(item, Param) and item.type == ParamType.DATA:
            continue
        out[item.name] = _json_value(item, wrapped[item.name], data_style)
    return out


def _inputs_json(tool: Tool, cf: ConfigFile, namespace: Mapping[str, Any]) -> str:
    try:
        return json.dumps(_json_inputs(tool.inputs, namespace, cf.data_style))
    except BuildError as exc:
        raise BuildError(f"{_tool_label(tool)}: <inputs name=\"{cf.name}\">: {exc}") from None


def build_command(tool: Tool, values: Mapping[str, Any], *,
                  datasets: Mapping[int, DatasetInfo],
                  outputs: Mapping[str, tuple[str, str]],
                  working_directory: str,
                  new_file_path: str,
                  user_email: str | None = None,
                  config_directory: str = "configs",
                  tool_directory: str | None = None) -> BuiltCommand:
    """The job's command line, configfiles and environment from `tool` and its value tree
    (model.py). `datasets`: the input datasets by id; `outputs`: output name -> (absolute
    path, format); configfiles are written by the caller under
    working_directory/config_directory. `tool_directory`: the tool's directory as the machine
    running the job sees it (a staged job's copy), default the tool's own. Raises ToolError (a template that does not
    compile) or BuildError (values that do not fit, a template that fails)."""
    compiled = compile_templates(tool)
    config_paths: dict[str, str] = {}
    config_names: dict[str, str] = {}
    for cf, _template in compiled.configfiles:
        relative = f"{config_directory}/{cf.filename or cf.name}"
        config_names[cf.name] = relative
        config_paths[cf.name] = os.path.join(working_directory, relative)
    namespace = _namespace(tool, values, datasets=datasets, outputs=outputs,
                           working_directory=working_directory, new_file_path=new_file_path,
                           user_email=user_email, config_paths=config_paths,
                           tool_directory=tool_directory)

    configfiles: dict[str, str] = {}
    for cf, template in compiled.configfiles:
        if template is None:
            configfiles[config_names[cf.name]] = _inputs_json(tool, cf, namespace)
        else:
            configfiles[config_names[cf.name]] = _render(tool, template, namespace)

    command = ""
    if compiled.command is not None:
        command = _clean_command(_render(tool, compiled.command, namespace))
        if tool.interpreter:
            command = _with_interpreter(tool, command)

    environment: dict[str, str] = {}
    for var, template in compiled.environment:
        value = _render(tool, template, namespace)
        environment[var.name] = value.strip() if var.strip else value

    version_command = None
    if compiled.version_command is not None:
        version_command = compiled.version_command.safe_substitute(
            {"__tool_directory__": tool_directory or tool.tool_dir}).strip()
    return BuiltCommand(command, configfiles, environment, version_command)
