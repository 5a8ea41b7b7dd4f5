"""What a tool's Cheetah templates see for each value: Galaxy's value wrappers
(lib/galaxy/tools/wrappers.py), rebuilt small.

A wrapper's str() is what lands in the command: text, hidden, color and select values
sanitized (sanitize.py; the param's <sanitizer>, Galaxy's default when it has none),
numbers and booleans as Galaxy writes them, datasets as their paths. Attributes and
truthiness follow Galaxy so that `#if $x`, `$input.ext`, `$input.metadata.columns`,
`#for $k in $repeat` and `$cond.sel == "a"` work as they do there.

One deliberate difference: Galaxy hands out the raw, unsanitized string through a text
wrapper's attributes (`$text.value`, `$text.strip()`); here every attribute of a text-like
wrapper is taken from the sanitized string, so a user's text never reaches a command
unsanitized whatever the template does with it.
"""
from __future__ import annotations

import os
from functools import total_ordering
from typing import Any, Iterator, Mapping

from muleteer import formats
from muleteer.tools.model import (
    Conditional, DatasetInfo, Param, ParamType, Repeat, Section, Tool,
)
from muleteer.tools.sanitize import sanitize_text

# Galaxy 23.0 changed an unset optional text param from "" to None in templates.
_TEXT_NONE_PROFILE = (23, 0)
_TEXT_LIKE = (ParamType.TEXT, ParamType.HIDDEN, ParamType.COLOR)


class WrapError(ValueError):
    """A value in the job's tree does not fit the tool; `path` is its flat name."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _profile_tuple(profile: str) -> tuple[int, ...]:
    parts = []
    for piece in str(profile or "16.01").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _as_bool(text: str) -> bool:
    return str(text).strip().lower() in ("true", "yes", "on", "1")


class ValueWrapper:
    """Base of every input wrapper (Galaxy's ToolParameterValueWrapper)."""

    value: Any

    def __bool__(self) -> bool:
        return bool(self.value)


@total_ordering
class InputValueWrapper(ValueWrapper):
    """text, hidden, color, integer, float and boolean params (Galaxy's InputValueWrapper)."""

    def __init__(self, param: Param, value: Any, profile: str = "16.01"):
        self.input = param
        if value is None and param.type in _TEXT_LIKE and \
                _profile_tuple(profile) < _TEXT_NONE_PROFILE:
            value = ""
        self._raw = value
        self._text = self._render(param, value)
        # Text-like: `.value` is the sanitized text (see the module's docstring).
        self.value = self._text if param.type in _TEXT_LIKE and value is not None else value

    @staticmethod
    def _render(param: Param, value: Any) -> str:
        if param.type == ParamType.BOOLEAN:
            return param.truevalue if value else param.falsevalue
        if value is None:
            return "None"
        if param.type in _TEXT_LIKE:
            return sanitize_text(str(value), param.sanitizer)
        return str(value)

    def __bool__(self) -> bool:
        return bool(self._raw)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"<{self.input.type.value} {self.input.name}={self._text!r}>"

    def __iter__(self) -> Iterator[str]:
        return iter([self._text])

    def __hash__(self) -> int:
        return hash(self._text)

    def _cast(self, other: Any) -> tuple[Any, Any]:
        # Galaxy's _get_cast_values: compare as the param's type, as strings when the
        # other side is a string (`$flag == "true"`, `$opt_int != ""`).
        if self.input.type == ParamType.BOOLEAN and isinstance(other, str):
            if other in (self.input.truevalue, self.input.falsevalue):
                return self._text, other
            return bool(self), _as_bool(other)
        if self._raw is None:
            return (self._text, other) if isinstance(other, str) else (None, other)
        if isinstance(other, str) or self.input.type in _TEXT_LIKE:
            return self._text, other
        if self.input.type == ParamType.INTEGER:
            return int(self._raw), other
        if self.input.type == ParamType.FLOAT:
            return float(self._raw), other
        if self.input.type == ParamType.BOOLEAN:
            return bool(self._raw), other
        return self._text, other

    def __eq__(self, other: Any) -> bool:
        mine, theirs = self._cast(other)
        return mine == theirs

    def __ne__(self, other: Any) -> bool:
        return not self == other

    def __gt__(self, other: Any) -> bool:
        mine, theirs = self._cast(other)
        return mine > theirs

    def __int__(self) -> int:
        return int(float(self))

    def __float__(self) -> float:
        return float(self._text)

    def __add__(self, other: Any):
        if isinstance(other, (int, float)) and not isinstance(other, bool) and \
                self.input.type in (ParamType.INTEGER, ParamType.FLOAT) and self._raw is not None:
            return self._raw + other
        return f"{self}{other}"

    def __radd__(self, other: Any):
        if isinstance(other, (int, float)) and not isinstance(other, bool) and \
                self.input.type in (ParamType.INTEGER, ParamType.FLOAT) and self._raw is not None:
            return other + self._raw
        return f"{other}{self}"

    def __sub__(self, other: Any):
        return self._number() - other

    def __rsub__(self, other: Any):
        return other - self._number()

    def _number(self):
        if self.input.type in (ParamType.INTEGER, ParamType.FLOAT) and self._raw is not None:
            return self._raw
        return float(self._text)

    def __getattr__(self, key: str) -> Any:
        # Galaxy delegates to the value: `$text.replace(...)`, `$num.real`. Text-like
        # params delegate to the sanitized string.
        if key.startswith("__"):
            raise AttributeError(key)
        target = self._text if self.input.type in _TEXT_LIKE else self._raw
        return getattr(target, key)


class SelectWrapper(ValueWrapper):
    """select (single or multiple) and data_column params (Galaxy's
    SelectToolParameterWrapper): str() is the sanitized value, multiple ones comma-joined;
    iterating gives each sanitized value."""

    def __init__(self, param: Param, value: Any):
        self.input = param
        if isinstance(value, (list, tuple)):
            self._values = [self._clean(param, v) for v in value]
            self.value = list(self._values)
        elif value is None:
            self._values = []
            self.value = None
        else:
            self._values = [self._clean(param, value)]
            self.value = self._values[0]

    @staticmethod
    def _clean(param: Param, value: Any) -> str:
        if param.type == ParamType.DATA_COLUMN:
            return str(int(value))
        return sanitize_text(str(value), param.sanitizer)

    def __str__(self) -> str:
        if self.value is None:
            return "None"
        return ",".join(self._values)

    def __repr__(self) -> str:
        return f"<{self.input.type.value} {self.input.name}={str(self)!r}>"

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, item: Any) -> bool:
        return str(item) in self._values

    def __hash__(self) -> int:
        return hash(str(self))

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            if other == "" and not self._values:
                return True
            return str(self) == other
        if isinstance(other, int) and not isinstance(other, bool) and len(self._values) == 1:
            return self._values[0] == str(other)
        return self is other

    def __ne__(self, other: Any) -> bool:
        return not self == other

    def __add__(self, other: Any) -> str:
        return f"{self}{other}"

    def __radd__(self, other: Any) -> str:
        return f"{other}{self}"

    def __int__(self) -> int:
        return int(str(self))

    def __getattr__(self, key: str) -> Any:
        # Galaxy delegates to the param (`$sel.name`, `$sel.multiple`): the admin's data.
        if key.startswith("__"):
            raise AttributeError(key)
        return getattr(self.input, key)


class MetadataWrapper:
    """A dataset's metadata: `.columns`, `.data_lines`, `.column_names`...; a key the
    dataset does not have is None. Strings are sanitized (Galaxy's to_safe_string):
    column names come from the user's file."""

    def __init__(self, metadata: Mapping[str, Any] | None):
        self._metadata = dict(metadata or {})

    @staticmethod
    def _safe(value: Any) -> Any:
        if isinstance(value, str):
            return sanitize_text(value, None)
        if isinstance(value, (list, tuple)):
            return [MetadataWrapper._safe(v) for v in value]
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._safe(self._metadata.get(name))

    def get(self, key: str, default: Any = None) -> Any:
        return self._safe(self._metadata[key]) if key in self._metadata else default

    def element_is_set(self, name: str) -> bool:
        return self._metadata.get(name) is not None

    def items(self):
        return iter((k, self._safe(v)) for k, v in self._metadata.items())

    def __iter__(self):
        return iter(self._metadata)

    def __bool__(self) -> bool:
        return bool(self._metadata)


class _DatasetRef:
    """`$input.dataset`: Galaxy's Dataset, of which templates use `.id`."""

    def __init__(self, dataset_id: int | None):
        self.id = dataset_id

    def __str__(self) -> str:
        return str(self.id)


class DatasetWrapper(ValueWrapper):
    """One input dataset (Galaxy's DatasetFilenameWrapper): str() is its path."""

    is_collection = False

    def __init__(self, info: DatasetInfo):
        self._info = info
        self.value = info
        self.file_name = info.path
        self.ext = self.extension = self.file_ext = info.format
        # The dataset's name is the user's words: sanitized as Galaxy's SafeStringWrapper does.
        self.name = sanitize_text(info.name or "", None)
        self.element_identifier = self.name
        self.name_and_ext = f"{self.name}.{info.format}"
        self.file_size = info.size
        self.id = info.id
        self.hid = info.id
        self.dataset = _DatasetRef(info.id)
        self.metadata = MetadataWrapper(info.metadata)
        # Galaxy keeps a dataset's extra files in <file without .dat>_files.
        self.extra_files_path = self.files_path = os.path.splitext(info.path)[0] + "_files"

    def is_of_type(self, *exts: str) -> bool:
        return formats.accepts(list(exts), self.ext)

    def get_size(self) -> int:
        return self.file_size

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.file_name

    def __repr__(self) -> str:
        return f"<dataset {self.id} {self.file_name!r}>"


class NoDatasetWrapper(ValueWrapper):
    """An unset optional data param (Galaxy's NoneDataset): str() "None", falsy."""

    is_collection = False

    def __init__(self, ext: str = "data"):
        self.value = None
        self.ext = self.extension = self.file_ext = ext
        self.file_name = "None"
        self.name = self.element_identifier = "None"
        self.file_size = 0
        self.dataset = _DatasetRef(None)
        self.metadata = MetadataWrapper(None)
        self.extra_files_path = self.files_path = "None"

    def is_of_type(self, *exts: str) -> bool:
        return False

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return "None"

    def __eq__(self, other: Any) -> bool:
        return other is None or other == "None" or other == "" or other is self

    def __hash__(self) -> int:
        return hash(None)


class DatasetListWrapper(list):
    """A multiple data param (Galaxy's DatasetListWrapper): a list of DatasetWrapper, str()
    the comma-joined paths."""

    is_collection = False

    def __str__(self) -> str:
        return ",".join(str(d) for d in self)

    @property
    def value(self) -> list:
        return list(self)


class OutputWrapper:
    """One output dataset: str() is the absolute path the tool must write."""

    is_collection = False

    def __init__(self, name: str, path: str, fmt: str):
        self.name = self.element_identifier = name
        self.file_name = path
        self.ext = self.extension = self.file_ext = fmt
        self.files_path = self.extra_files_path = os.path.splitext(path)[0] + "_files"
        self.metadata = MetadataWrapper(None)

    def is_of_type(self, *exts: str) -> bool:
        return formats.accepts(list(exts), self.ext)

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.file_name

    def __repr__(self) -> str:
        return f"<output {self.name} {self.file_name!r}>"


class GroupWrapper(dict):
    """A conditional, section or repeat instance: a dict (as in Galaxy) whose keys are also
    attributes, so `$cond.sel`, `$section.x` and `cond['sel']` all work."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _flat(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


class _Wrapping:
    """Walks the tool's inputs beside the job's value tree, wrapping each value."""

    def __init__(self, tool: Tool, datasets: Mapping[int, DatasetInfo]):
        self.tool = tool
        self.datasets = datasets

    def inputs(self, inputs: tuple, values: Any, prefix: str, into: dict) -> None:
        if not isinstance(values, Mapping):
            raise WrapError(prefix.rstrip("|") or "params",
                            f"expected an object of values, got {type(values).__name__}")
        for item in inputs:
            path = _flat(prefix, item.name)
            if item.name not in values:
                raise WrapError(path, "no value in the job's parameters")
            value = values[item.name]
            if isinstance(item, Param):
                into[item.name] = self.param(item, value, path)
            elif isinstance(item, Conditional):
                into[item.name] = self.conditional(item, value, path)
            elif isinstance(item, Repeat):
                into[item.name] = self.repeat(item, value, path)
            elif isinstance(item, Section):
                group = GroupWrapper()
                self.inputs(item.inputs, value, path + "|", group)
                into[item.name] = group
            else:
                raise WrapError(path, f"unknown input kind {type(item).__name__}")

    def conditional(self, cond: Conditional, values: Any, path: str) -> GroupWrapper:
        if not isinstance(values, Mapping) or cond.test.name not in values:
            raise WrapError(f"{path}|{cond.test.name}", "no value for the conditional's test")
        test_value = values[cond.test.name]
        when = cond.when(test_value)
        if when is None:
            raise WrapError(f"{path}|{cond.test.name}",
                            f"{test_value!r} matches no <when> of the conditional")
        group = GroupWrapper()
        group[cond.test.name] = self.param(cond.test, test_value, f"{path}|{cond.test.name}")
        group["__current_case__"] = cond.whens.index(when)
        self.inputs(when.inputs, values, path + "|", group)
        return group

    def repeat(self, rep: Repeat, values: Any, path: str) -> list:
        if not isinstance(values, list):
            raise WrapError(path, f"a repeat's value must be a list, got {type(values).__name__}")
        instances = []
        for index, instance in enumerate(values):
            group = GroupWrapper()
            group["__index__"] = index
            self.inputs(rep.inputs, instance, f"{path}_{index}|", group)
            instances.append(group)
        return instances

    def param(self, param: Param, value: Any, path: str):
        kind = param.type
        if kind == ParamType.DATA:
            return self.data(param, value, path)
        if kind in (ParamType.SELECT, ParamType.DATA_COLUMN):
            try:
                return SelectWrapper(param, value)
            except (TypeError, ValueError) as exc:
                raise WrapError(path, f"bad {kind.value} value {value!r}: {exc}") from None
        if isinstance(value, (list, dict)):
            raise WrapError(path, f"a {kind.value} param takes one value, got {value!r}")
        return InputValueWrapper(param, value, self.tool.profile)

    def data(self, param: Param, value: Any, path: str):
        if param.multiple or isinstance(value, list):
            ids = value if isinstance(value, list) else ([] if value is None else [value])
            return DatasetListWrapper(self.dataset(i, f"{path}[{n}]") for n, i in enumerate(ids))
        if value is None:
            return NoDatasetWrapper(param.formats[0] if param.formats else "data")
        return self.dataset(value, path)

    def dataset(self, dataset_id: Any, path: str) -> DatasetWrapper:
        if isinstance(dataset_id, bool) or not isinstance(dataset_id, int):
            raise WrapError(path, f"a dataset id must be an integer, got {dataset_id!r}")
        info = self.datasets.get(dataset_id)
        if info is None:
            raise WrapError(path, f"dataset {dataset_id} is not among the job's input datasets")
        return DatasetWrapper(info)


def wrap_inputs(tool: Tool, values: Mapping[str, Any],
                datasets: Mapping[int, DatasetInfo]) -> dict[str, Any]:
    """Each top-level input's wrapper by name, from the job's value tree (model.py).
    Raises WrapError naming the flat path of a value that does not fit."""
    namespace: dict[str, Any] = {}
    _Wrapping(tool, datasets).inputs(tool.inputs, values, "", namespace)
    return namespace


def with_nested_names(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Galaxy's second try (galaxy.util.template.fill_template with TreeDict): the names of
    params inside conditionals and sections also reachable from the levels above them
    (`$x` for `$cond.x`), the first found winning and a real name always winning. Repeats
    are not looked into, as in Galaxy. Returns copies; `namespace` is left as it is."""
    top: dict[str, Any] = {}
    # Per level (by id): names injected from below, applied once every real name is in.
    injected: dict[int, dict[str, Any]] = {id(top): {}}
    levels: list[dict] = [top]

    def copy_group(group: GroupWrapper, ancestors: list[dict]) -> GroupWrapper:
        new = GroupWrapper()
        injected[id(new)] = {}
        levels.append(new)
        for key, value in group.items():
            if isinstance(value, GroupWrapper):
                value = copy_group(value, ancestors + [new])
            new[key] = value
            if key in ("__current_case__", "__index__"):
                continue
            for ancestor in ancestors:
                injected[id(ancestor)].setdefault(key, value)
        return new

    for key, value in namespace.items():
        top[key] = copy_group(value, [top]) if isinstance(value, GroupWrapper) else value
    for level in levels:
        for key, value in injected[id(level)].items():
            level.setdefault(key, value)
    return top
