"""What a runner declares about itself, as data: its type, its plugin and destination params
(name, type, default, doc) and its legacy URL form.

Each runner module (mules/runners/) declares one `RunnerSpec` at module level, and the
registry (mules/runners/__init__.py) lists them. The core never imports mules/: whoever
builds the context (wsgi.py, check.py, mules/handler.py, mules/webless.py) passes the
registry's specs to the job configuration loader (muleteer/job_config), which checks every
plugin and destination against them when the file loads, not when a first job runs.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping

_INT = re.compile(r"^\s*[+-]?[0-9]+\s*$")  # ASCII digits only: str.isdigit() accepts '²'
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_KINDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


@dataclass(frozen=True)
class Param:
    """One param of a runner: `<param id="name">` in XML, `name: value` in YAML."""
    name: str
    type: type  # str, int, float or bool
    default: object = None
    doc: str = ""
    minimum: float | None = None
    aliases: tuple[str, ...] = ()  # other names Galaxy accepts (native_specification)
    # A runner's own rule on the typed value (ValueError saying why): e.g. a qsub option
    # the scheduler's client would silently ignore.
    check: Callable[[object], None] | None = None

    def coerce(self, value):
        """The value as this param's type; ValueError (saying what was expected) if it is not.
        Text from XML is parsed; typed values from YAML are taken as they are."""
        kind = _KINDS[self.type]
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError(f"expected {kind}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"expected {kind}, got {type(value).__name__}")
        if self.type is str:
            return self._checked(value if isinstance(value, str) else str(value))
        if self.type is int:
            if isinstance(value, float) or (isinstance(value, str) and not _INT.match(value)):
                raise ValueError(f"expected {kind}")
            result = int(value)
        else:
            try:
                result = float(value)
            except ValueError:
                raise ValueError(f"expected {kind}") from None
            if not math.isfinite(result):
                raise ValueError("expected a finite number")
        if self.minimum is not None and result < self.minimum:
            raise ValueError(f"expected {kind} of at least {self.minimum:g}")
        return self._checked(result)

    def _checked(self, value):
        if self.check is not None:
            self.check(value)
        return value


@dataclass(frozen=True)
class RunnerSpec:
    """A runner type: what a `<plugin load=...>` / `runners:` entry and its destinations may say.

    url_form: the params a legacy URL `type://a/b/rest/` fills, in order (the last takes
    the rest, slashes included); () accepts `type:///` with nothing in it; None: no URL form.
    destination_param_prefixes: params named by a prefix rather than listed (pbs: any
    `-X` is that qsub option).
    """
    type: str
    plugin_params: tuple[Param, ...] = ()
    destination_params: tuple[Param, ...] = ()
    url_form: tuple[str, ...] | None = None
    destination_param_prefixes: tuple[str, ...] = ()
    # The runner's rule for a prefixed param (name, value): ValueError saying why not.
    prefix_check: Callable[[str, object], None] | None = None
    doc: str = ""

    def plugin_param(self, name: str) -> Param | None:
        return _find(self.plugin_params, name)

    def destination_param(self, name: str) -> Param | None:
        found = _find(self.destination_params, name)
        if found is None and name.startswith(self.destination_param_prefixes):
            check = functools.partial(self.prefix_check, name) if self.prefix_check else None
            return Param(name, str, "", check=check)
        return found

    def plugin_values(self, params: Mapping) -> dict:
        """Every plugin param of this runner, typed, defaults filled in (what a runner reads
        in its __init__). The loader has checked them; this also accepts a Plugin built by
        hand, with text values."""
        return param_values(self.plugin_params, params)


def param_values(declared: tuple[Param, ...], params: Mapping) -> dict:
    """{name: typed value} for the declared params, from `params` or their defaults."""
    values = {}
    for param in declared:
        given = [params[n] for n in (param.name, *param.aliases) if n in params]
        values[param.name] = param.coerce(given[0]) if given and given[0] is not None \
            else param.default
    return values


def _find(params: tuple[Param, ...], name: str) -> Param | None:
    for param in params:
        if name == param.name or name in param.aliases:
            return param
    return None
