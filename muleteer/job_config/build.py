"""From Galaxy's dict form of a job configuration to the model, checked against the runners'
specs. Both formats come here: job_conf.yml (and galaxy.yml's inline `job_config:`) is that
dict already; job_conf.xml is turned into it first (xml.py), as Galaxy itself does. One set
of rules therefore judges both, and the same setup loads into equal JobConfig objects.

A Locator, given by the reader, says where a key path of the dict is in the file: the XML
reader answers with a line and an element (`<plugin>: workers='many'`), the YAML reader
with a line and the key path (`runners.slurm.workers: 'many'`).
"""
from __future__ import annotations

import logging
import os
import re
from typing import Mapping, NoReturn

from muleteer import job_rules
from muleteer import resubmit as resubmit_rules
from muleteer.handler_names import is_farm, mule_number, web_number
from muleteer.job_config.model import (ASSIGN_METHODS, DYNAMIC, LIMIT_TYPES, RESUBMIT_CONDITIONS,
                                       TOOL_CLASSES, Destination, Handler, JobConfError,
                                       JobConfig, Limit, Plugin, ToolMapping)
from muleteer.job_metrics import JobMetrics, JobMetricsConfError
from muleteer.job_metrics.conf import PluginConf as MetricsPluginConf
from muleteer.job_metrics.conf import read_conf as read_metrics_conf
from muleteer.job_resources import ResourceParams
from muleteer.runner_spec import RunnerSpec

log = logging.getLogger(__name__)

NO_VALUE = object()
SECTIONS = ("runners", "handling", "execution", "tools", "limits", "resources")
DEFAULT_RULES = "job_rules"  # beside the job configuration (Galaxy's is galaxy.jobs.rules)
DEFAULT_WORKERS = 4
_DIGITS = re.compile(r"^[0-9]+$")  # str.isdigit() also accepts '²', which int() refuses
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Locator:
    """Where a key path of the dict is in the file, for messages."""

    def __init__(self, path: str):
        self.path = path

    def describe(self, keys: tuple, value=NO_VALUE) -> str:
        raise NotImplementedError

    def missing(self, keys: tuple, key: str) -> str:
        """The message for a required key (an attribute, in XML) missing from keys."""
        return f"{self.describe(keys)}: missing required key {key!r}"

    def fail(self, keys: tuple, message: str, value=NO_VALUE) -> NoReturn:
        raise JobConfError(f"{self.describe(keys, value)}: {message}")


def destination_from_url(dest_id: str, url: str, specs: Mapping[str, RunnerSpec]) -> Destination:
    """Galaxy's legacy runner URLs, e.g. `pbs://server/queue/-l nodes=1:ppn=2/`: each runner's
    spec says which params the URL's parts fill (its url_form)."""
    forms = {t: s.url_form for t, s in specs.items() if s.url_form is not None}
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in forms:
        raise ValueError(f"runner URL {url!r}: expected one of "
                         + ", ".join(f"{t}://" for t in forms))
    rest = rest[:-1] if rest.endswith("/") else rest
    names = forms[scheme]
    if rest and not names:
        raise ValueError(f"runner URL {url!r}: {scheme}:// takes no options ({scheme}:///)")
    params = {}
    for i, name in enumerate(names):
        value, rest = (rest, "") if i == len(names) - 1 else rest.partition("/")[::2]
        if value:
            params[name] = value
    return Destination(id=dest_id, runner=scheme, params=params)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    match = _SIZE.match(text or "")
    if not match:
        raise ValueError(f"{text!r}: expected a size such as 500MB or 10GB")
    factor = 1024 ** " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * factor)


def parse_walltime(text: str) -> int:
    parts = (text or "").strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(_DIGITS.match(p) for p in parts):
        raise ValueError(f"{text!r}: expected a duration such as 24:00:00")
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds


def build_job_config(data, locator: Locator, specs: Mapping[str, RunnerSpec],
                     resource_params: ResourceParams | None = None) -> JobConfig:
    """The model of Galaxy's dict form `data`; JobConfError names the file and place at fault.
    `resource_params` (job_resource_params_conf.xml's) are what `resources` groups may name;
    None: the names are not checked."""
    return _Builder(locator, specs, resource_params).build(data)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false",
            type(None): "nothing"}.get(type(value), type(value).__name__)


class _Builder:
    def __init__(self, locator: Locator, specs: Mapping[str, RunnerSpec],
                 resource_params: ResourceParams | None = None):
        self.loc = locator
        self.specs = dict(specs)
        self.resource_params = resource_params
        self.warnings: list[str] = []
        self.rules_module = None  # the `dynamic` plugin's rules_module: (keys, value)

    # -- helpers ---------------------------------------------------------------------
    def fail(self, keys, message, value=NO_VALUE) -> NoReturn:
        self.loc.fail(tuple(keys), message, value)

    def warn(self, keys, message):
        self.warnings.append(f"{self.loc.describe(tuple(keys))}: {message}")

    def mapping(self, value, keys) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(keys, f"expected a mapping, got {_kind(value)}")
        return value

    def sequence(self, value, keys) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(keys, f"expected a list, got {_kind(value)}")
        return value

    def only(self, mapping, keys, known):
        for key in mapping:
            if key not in known:
                self.fail((*keys, key), f"unknown key (known: {', '.join(known)})")

    def text(self, mapping, keys, key, required=False) -> str | None:
        value = mapping.get(key)
        if value is None or value == "":
            if required:
                raise JobConfError(self.loc.missing(tuple(keys), key))
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.fail((*keys, key), f"expected text, got {_kind(value)}")
        return str(value).strip() if isinstance(value, str) else str(value)

    def positive_int(self, mapping, keys, key, default):
        value = mapping.get(key)
        if value is None:
            return default
        if _is_int(value) and value >= 1:
            return value
        if isinstance(value, str) and _DIGITS.match(value.strip()) and int(value) >= 1:
            return int(value)
        self.fail((*keys, key), "expected a whole number of at least 1", value)

    def tags(self, value, keys) -> tuple:
        if value is None:
            return ()
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            self.fail(keys, "expected a list of tags (or text, comma-separated)")
        return tuple(t.strip() for t in value if t.strip())

    def spec_of(self, plugin: Plugin) -> RunnerSpec:
        return self.specs[plugin.type]

    # -- the whole file -----------------------------------------------------------------
    def build(self, data) -> JobConfig:
        data = self.mapping(data, ())
        self.only(data, (), SECTIONS)
        plugins = self.runners(data.get("runners"), ("runners",))
        destinations, default_destination = self.execution(data.get("execution"), ("execution",),
                                                           plugins)
        handlers, default_handler, assign, max_grab, window = self.handling(
            data.get("handling"), ("handling",))
        groups, default_group = self.resources(data.get("resources"), ("resources",))
        tools, tool_classes = self.tools(data.get("tools"), ("tools",), destinations, handlers,
                                         plugins, groups)
        limits = self.limits(data.get("limits"), ("limits",), destinations)
        return JobConfig(path=self.loc.path, plugins=plugins, destinations=destinations,
                         default_destination=default_destination, handlers=handlers,
                         default_handler=default_handler, assign=assign, tools=tools,
                         limits=limits, tool_classes=tool_classes, max_grab=max_grab,
                         ready_window_size=window, warnings=self.warnings,
                         resource_params=dict(self.resource_params.params)
                         if self.resource_params else {},
                         resource_groups=groups, default_resource_group=default_group)

    # -- runners (<plugins>) ------------------------------------------------------------------
    def runners(self, section, keys) -> dict:
        if section is None:
            return {"local": Plugin(id="local", type="local", workers=DEFAULT_WORKERS)}
        plugins = {}
        for runner_id, raw in self.mapping(section, keys).items():
            here = (*keys, runner_id)
            raw = self.mapping(raw, here)
            if str(runner_id) == DYNAMIC:
                self.dynamic_plugin(raw, here)
                continue
            load = self.text(raw, here, "load") or str(runner_id)
            # Galaxy's load strings (galaxy.jobs.runners.slurm:SlurmJobRunner) name the type
            # by module.
            kind = load.split(":")[0].rsplit(".", 1)[-1]
            if kind not in self.specs:
                self.fail((*here, "load"), f"unknown runner (known: {', '.join(self.specs)})", load)
            workers = self.positive_int(raw, here, "workers", DEFAULT_WORKERS)
            if "kwds" in raw:  # Galaxy's explicit form: the params under kwds:
                self.only(raw, here, ("load", "workers", "kwds"))
                params_keys, params = (*here, "kwds"), self.mapping(raw["kwds"], (*here, "kwds"))
            else:
                params_keys = here
                params = {k: v for k, v in raw.items() if k not in ("id", "load", "workers")}
            plugins[str(runner_id)] = Plugin(
                id=str(runner_id), type=kind, workers=workers,
                params=self.plugin_params(self.specs[kind], params, params_keys))
        return plugins

    def dynamic_plugin(self, raw: dict, keys) -> None:
        """Galaxy's `dynamic` plugin: no runner (its `load` is ignored, as Galaxy does); its
        rules_module is the default rules directory of dynamic destinations."""
        if "kwds" in raw:
            params_keys, params = (*keys, "kwds"), self.mapping(raw["kwds"], (*keys, "kwds"))
        else:
            params_keys = keys
            params = {k: v for k, v in raw.items() if k not in ("id", "load", "workers")}
        self.only(params, params_keys, ("rules_module",))
        if params.get("rules_module") not in (None, ""):
            self.rules_module = ((*params_keys, "rules_module"),
                                 self.text(params, params_keys, "rules_module"))

    def plugin_params(self, spec: RunnerSpec, params: dict, keys) -> dict:
        checked = {}
        for name, value in params.items():
            param = spec.plugin_param(name)
            if param is None:
                known = ", ".join(p.name for p in spec.plugin_params) or "none"
                self.fail((*keys, name), f"unknown plugin param of runner {spec.type!r} "
                                         f"(known: {known})")
            self.checked_value(checked, param, value, (*keys, name))
        return checked

    def checked_value(self, checked: dict, param, value, keys) -> None:
        """Put `value`, typed by `param`, in `checked`; a param given twice (by two of its
        names) or a value of the wrong type fails naming `keys`."""
        if param.name in checked:
            self.fail(keys, f"{param.name!r} is given twice")
        try:
            checked[param.name] = param.coerce(value)
        except ValueError as exc:
            self.fail(keys, str(exc), value)

    def attach_plugin(self, runner, keys, plugins) -> Plugin:
        if runner in plugins:
            return plugins[runner]
        if runner in self.specs:
            # A destination naming a runner type with no plugin gets that runner with
            # defaults, as a legacy URL would.
            plugins[runner] = Plugin(id=runner, type=runner, workers=DEFAULT_WORKERS)
            return plugins[runner]
        self.fail(keys, f"is not a plugin id (defined: {', '.join(sorted(plugins)) or 'none'})",
                  runner)

    # -- execution environments (<destinations>) --------------------------------------------
    def execution(self, section, keys, plugins):
        if section is None:
            if "local" not in plugins:
                self.fail((), "no destinations and no local runner to default to")
            return {"local": Destination(id="local", runner="local")}, "local"
        section = self.mapping(section, keys)
        self.only(section, keys, ("default", "environments"))
        raw_environments = section.get("environments")
        if isinstance(raw_environments, list):  # Galaxy also takes a list of {id: ...}
            listed = {}
            for i, item in enumerate(raw_environments):
                item = self.mapping(item, (*keys, "environments", i))
                env_id = self.text(item, (*keys, "environments", i), "id", required=True)
                if env_id in listed:
                    self.fail((*keys, "environments", i, "id"), "is defined twice", env_id)
                listed[env_id] = ((*keys, "environments", i), item)
        else:
            listed = {str(k): ((*keys, "environments", k), v) for k, v in
                      self.mapping(raw_environments, (*keys, "environments")).items()}
        if not listed:
            self.fail((*keys, "environments"), "defines no destination (environment)")
        destinations = {}
        for env_id, (here, raw) in listed.items():
            destinations[env_id] = self.environment(env_id, raw, here, plugins)
        default = self.text(section, keys, "default")
        if default is None:
            if len(destinations) > 1:
                self.fail(keys, "several destinations and no default: say which one is the default")
            default = next(iter(destinations))
        elif default not in destinations and not any(default in d.tags
                                                      for d in destinations.values()):
            self.fail((*keys, "default"), "is not a destination id or tag", default)
        for env_id, (here, _) in listed.items():
            for i, rule in enumerate(destinations[env_id].resubmit):
                target = rule["destination"]
                if target and target not in destinations:
                    self.fail((*here, "resubmit", i, "environment"), "is not a destination id",
                              target)
        return destinations, default

    _RESERVED = ("id", "runner", "tags", "env", "resubmit", "params", "metrics")

    def environment(self, env_id, raw, keys, plugins) -> Destination:
        raw = self.mapping(raw, keys)
        runner = self.text(raw, keys, "runner")
        reserved = self._RESERVED + (() if runner else ("url",))
        if "params" in raw:  # Galaxy's explicit form: the params under params:
            self.only(raw, keys, reserved)
            params_keys, params = (*keys, "params"), dict(self.mapping(raw["params"], (*keys, "params")))
        else:
            params_keys, params = keys, {k: v for k, v in raw.items() if k not in reserved}
        if runner == DYNAMIC:
            return self.dynamic(env_id, raw, keys, params_keys, params)
        if runner is None:
            url = self.text(raw, keys, "url")
            if url is None:
                raise JobConfError(self.loc.missing(keys, "runner"))
            try:
                from_url = destination_from_url(env_id, url, self.specs)
            except ValueError as exc:
                self.fail((*keys, "url"), str(exc))
            runner, params = from_url.runner, {**from_url.params, **params}
        plugin = self.attach_plugin(runner, (*keys, "runner"), plugins)
        return Destination(
            id=env_id, runner=runner,
            params=self.destination_params(self.spec_of(plugin), params, params_keys),
            env=[self.env_item(item, (*keys, "env", i))
                 for i, item in enumerate(self.sequence(raw.get("env"), (*keys, "env")))],
            resubmit=[self.resubmit(item, (*keys, "resubmit", i))
                      for i, item in enumerate(self.sequence(raw.get("resubmit"),
                                                             (*keys, "resubmit")))],
            tags=self.tags(raw.get("tags"), (*keys, "tags")),
            job_metrics=self.job_metrics(raw.get("metrics"), (*keys, "metrics")))

    _METRICS_SOURCES = ("default", "disabled", "path")

    def job_metrics(self, value, keys) -> JobMetrics | None:
        """Galaxy's per-destination metrics: a list of plugins (`- type: core`, as in a
        job_metrics_conf.yml; job_conf.xml's <job_metrics> element comes here as one), or
        {src: default | disabled | path, path: FILE} (a file relative to the job
        configuration's own directory). None: galaxy.yml's job_metrics_config_file."""
        if value is None:
            return None
        try:
            if isinstance(value, list):
                return JobMetrics.from_confs(
                    [self.metrics_plugin(item, (*keys, i)) for i, item in enumerate(value)],
                    source=self.loc.path)
            value = self.mapping(value, keys)
            self.only(value, keys, ("src", "path"))
            src = self.text(value, keys, "src") or ("path" if value.get("path") else "default")
            if src not in self._METRICS_SOURCES:
                self.fail((*keys, "src"), f"expected {', '.join(self._METRICS_SOURCES)} (or a "
                                          "list of plugins)", src)
            if src == "default":
                return None
            if src == "disabled":
                return JobMetrics.disabled()
            path = self.text(value, keys, "path", required=True)
            path = os.path.join(os.path.dirname(os.path.abspath(self.loc.path)), path)
            if not os.path.isfile(path):
                self.fail((*keys, "path"), f"{path} is not a file", value.get("path"))
            return JobMetrics.from_confs(read_metrics_conf(path), source=path)
        except JobMetricsConfError as exc:
            raise JobConfError(str(exc)) from None

    def metrics_plugin(self, item, keys) -> MetricsPluginConf:
        item = self.mapping(item, keys)
        kind = self.text(item, keys, "type", required=True)
        # Errors inside the plugin's settings name this place, then the plugin and setting.
        return MetricsPluginConf(type=kind, attributes={k: v for k, v in item.items()
                                                        if k != "type"},
                                 path=self.loc.describe(tuple(keys)))

    def dynamic(self, env_id, raw, keys, params_keys, params) -> Destination:
        """A dynamic destination: its rule is found (and its rules imported) now, so a rule
        that cannot be called stops start-up rather than failing jobs."""
        kind = self.text(params, params_keys, "type") or "python"
        if kind != "python":
            self.fail((*params_keys, "type"), "Galaxy's stock rules (choose_one, burst, dtd, "
                                              "docker_dispatch) are not available: use type "
                                              "python and a function of your own", kind)
        function = self.text(params, params_keys, "function")
        if function is None:
            self.fail(params_keys, "a dynamic destination needs the param `function`: its rule's "
                                   "name (a rule is not looked up by tool id)")
        if "rules_module" in params:
            where, directory = (*params_keys, "rules_module"), self.text(params, params_keys,
                                                                        "rules_module")
        elif self.rules_module:
            where, directory = self.rules_module
        else:
            where, directory = (*params_keys, "function"), DEFAULT_RULES
        directory = os.path.join(os.path.dirname(os.path.abspath(self.loc.path)), directory or "")
        try:
            rules = job_rules.load_rules(directory)
        except job_rules.RulesError as exc:
            self.fail(where, f"rules_module: {exc}")
        rule = rules.get(function)
        if rule is None:
            self.fail((*params_keys, "function"), f"no function {function!r} in the rules of "
                                                  f"{directory} (its rules: "
                                                  f"{', '.join(sorted(rules.rules)) or 'none'})",
                      function)
        try:
            job_rules.check_rule(rule, params)
        except job_rules.RulesError as exc:
            self.fail((*params_keys, "function"), str(exc), function)
        for unused in ("env", "resubmit", "metrics"):
            if raw.get(unused):
                self.warn((*keys, unused), "not used on a dynamic destination: the destination "
                                           "its rule chooses has its own")
        return Destination(id=env_id, runner=DYNAMIC,
                           params={**params, "type": kind, "function": function,
                                   "rules_module": os.path.normpath(directory)},
                           tags=self.tags(raw.get("tags"), (*keys, "tags")))

    def destination_params(self, spec: RunnerSpec, params: dict, keys) -> dict:
        """Known params are checked and typed; an unknown one is kept as given, with a warning
        (Galaxy destinations carry many params other runners or Galaxy itself read)."""
        checked = {}
        for name, value in params.items():
            param = spec.destination_param(name)
            if param is None:
                known = ", ".join([p.name for p in spec.destination_params]
                                  + [f"{prefix}*" for prefix in spec.destination_param_prefixes])
                self.warn((*keys, name), f"not a destination param of runner {spec.type!r} "
                                         f"(known: {known or 'none'}): no runner reads it")
                checked[name] = value
                continue
            self.checked_value(checked, param, value, (*keys, name))
        return checked

    def env_item(self, item, keys) -> dict:
        item = self.mapping(item, keys)
        self.only(item, keys, ("name", "value", "file", "execute", "raw"))
        if item.get("raw") not in (None, False, "false", "False"):
            self.fail((*keys, "raw"), "not supported: values are always shell-quoted",
                      item.get("raw"))
        given = [k for k in ("name", "file", "execute") if item.get(k) not in (None, "")]
        if len(given) > 1:
            self.fail(keys, f"give one of name, file, execute (got {', '.join(given)})")
        if given == ["file"]:
            return {"file": self.text(item, keys, "file")}
        if given == ["execute"]:
            return {"exec": self.text(item, keys, "execute")}
        name = self.text(item, keys, "name", required=True)
        if not _ENV_NAME.match(name):
            self.fail((*keys, "name"), "is not a valid environment variable name", name)
        value = item.get("value")
        if isinstance(value, bool) or not isinstance(value, (str, int, float, type(None))):
            self.fail((*keys, "value"), f"expected text, got {_kind(value)}")
        return {"name": name, "value": "" if value is None else str(value)}

    def resubmit(self, rule, keys) -> dict:
        rule = self.mapping(rule, keys)
        self.only(rule, keys, ("condition", "environment", "handler", "delay"))
        condition = self.text(rule, keys, "condition", required=True)
        words = set(re.findall(r"[a-z_]+", condition)) - {"and", "or", "not"}
        unknown = words - set(RESUBMIT_CONDITIONS)
        if unknown:
            self.fail((*keys, "condition"), f"unknown {', '.join(sorted(unknown))} "
                                            f"(known: {', '.join(RESUBMIT_CONDITIONS)})", condition)
        try:
            resubmit_rules.check(condition)
        except ValueError as exc:
            self.fail((*keys, "condition"), str(exc), condition)
        # Seconds, or Galaxy's expression of the attempt that failed (e.g. attempt * 30).
        delay = rule.get("delay")
        if isinstance(delay, str) and delay.strip():
            try:
                delay = float(delay)
            except ValueError:
                delay = delay.strip()
        elif delay in (None, ""):
            delay = 0.0
        try:
            if isinstance(delay, bool) or not isinstance(delay, (int, float, str)):
                raise ValueError("expected seconds, or an expression of attempt such as "
                                 "'attempt * 30'")
            resubmit_rules.delay_seconds(delay, attempt=1)
        except ValueError as exc:
            self.fail((*keys, "delay"), str(exc), rule.get("delay"))
        return {"condition": condition, "destination": self.text(rule, keys, "environment"),
                "handler": self.text(rule, keys, "handler"),
                "delay": float(delay) if isinstance(delay, (int, float)) else delay}

    # -- handling (<handlers>) -----------------------------------------------------------------
    def handling(self, section, keys):
        if section is None:
            return {}, None, (), None, None
        section = self.mapping(section, keys)
        self.only(section, keys, ("default", "assign", "max_grab", "ready_window_size",
                                  "processes", "handlers"))
        if "processes" in section and "handlers" in section:
            self.fail((*keys, "handlers"), "give handlers or processes (Galaxy's name), not both")
        name = "handlers" if "handlers" in section else "processes"
        handlers = {}
        for handler_id, raw in self.mapping(section.get(name), (*keys, name)).items():
            here = (*keys, name, handler_id)
            raw = self.mapping(raw, here)
            self.only(raw, here, ("tags",))
            handlers[str(handler_id)] = Handler(id=str(handler_id),
                                                tags=self.tags(raw.get("tags"), (*here, "tags")))
        assign = section.get("assign")
        if isinstance(assign, str):
            assign = [a.strip() for a in assign.split(",") if a.strip()]
        assign = tuple(self.sequence(assign, (*keys, "assign")))
        supported = [m for m in ASSIGN_METHODS if m != "db-transaction-isolation"]
        for i, method in enumerate(assign):
            if method == "db-transaction-isolation":
                self.fail((*keys, "assign", i), "is for databases without SKIP LOCKED; "
                                                "Muleteer's (SQLite, PostgreSQL) do what "
                                                "db-skip-locked needs: use one of "
                                                f"{', '.join(supported)}", method)
            if method not in ASSIGN_METHODS:
                self.fail((*keys, "assign", i), f"expected one of {', '.join(supported)}",
                          method)
        max_grab = self.positive_int(section, keys, "max_grab", None)
        window = self.positive_int(section, keys, "ready_window_size", None)
        if window is not None:
            self.fail((*keys, "ready_window_size"), "is not supported: a handler claims at most "
                                                    "max_grab jobs per sweep, oldest first",
                      window)
        default = self.text(section, keys, "default")
        if default and handlers and not _is_handler_ref(default, handlers):
            self.fail((*keys, "default"), "is not a handler id or tag", default)
        if default is None and len(handlers) == 1:
            default = next(iter(handlers))
        return handlers, default, assign, max_grab, window

    # -- tools ------------------------------------------------------------------------------
    def tools(self, section, keys, destinations, handlers, plugins, groups):
        tools, classes = {}, {}
        for i, raw in enumerate(self.sequence(section, keys)):
            here = (*keys, i)
            raw = self.mapping(raw, here)
            self.only(raw, here, ("id", "class", "handler", "environment", "resources"))
            resources = self.text(raw, here, "resources")
            if resources is not None and resources not in groups:
                self.fail((*here, "resources"), "is not a resources group "
                                                f"(defined: {', '.join(groups) or 'none'})",
                          resources)
            tool_id, tool_class = self.text(raw, here, "id"), self.text(raw, here, "class")
            if tool_id is None and tool_class is None:
                raise JobConfError(self.loc.missing(here, "id"))
            if tool_id is not None and tool_class is not None:
                self.fail((*here, "class"), "give id or class, not both", tool_class)
            if tool_class is not None:
                # Galaxy's classes sort its own internal tools (local, requires_galaxy);
                # Muleteer's tools have no class, so such a mapping could never apply.
                self.fail((*here, "class"), "tool classes are Galaxy-internal and not "
                                            f"supported (one of {', '.join(TOOL_CLASSES)}): "
                                            "map tools by id", tool_class)
            handler, destination = self.text(raw, here, "handler"), self.text(raw, here, "environment")
            if handler and handlers and not _is_handler_ref(handler, handlers):
                self.fail((*here, "handler"), "is not a handler id or tag", handler)
            if destination and "://" in destination:
                try:
                    url_dest = destination_from_url(destination, destination, self.specs)
                except ValueError as exc:
                    self.fail((*here, "environment"), str(exc))
                plugin = self.attach_plugin(url_dest.runner, (*here, "environment"), plugins)
                url_dest.params = self.destination_params(self.spec_of(plugin), url_dest.params,
                                                          (*here, "environment"))
                destinations.setdefault(destination, url_dest)
            elif destination and destination not in destinations and not any(
                    destination in d.tags for d in destinations.values()):
                self.fail((*here, "environment"), "is not a destination id or tag", destination)
            mapping = ToolMapping(id=tool_id or tool_class, handler=handler, destination=destination,
                                  resources=resources)
            (tools if tool_id is not None else classes)[mapping.id] = mapping
        return tools, classes

    # -- resources (groups of job resource params) --------------------------------------------
    def resources(self, section, keys) -> tuple[dict, str | None]:
        """Galaxy's `resources`: {default, groups: {id: [param names] or "a,b"}}."""
        if section is None:
            return {}, None
        section = self.mapping(section, keys)
        self.only(section, keys, ("default", "groups"))
        groups = {}
        for group_id, raw in self.mapping(section.get("groups"), (*keys, "groups")).items():
            here = (*keys, "groups", group_id)
            if raw is None:
                raw = []
            elif isinstance(raw, str):
                raw = raw.split(",")
            if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
                self.fail(here, "expected a list of job resource param names (or text, "
                                "comma-separated)")
            names = [n.strip() for n in raw if n.strip()]
            for name in names:
                self.check_resource_param(name, here)
                if names.count(name) > 1:
                    self.fail(here, f"{name!r} is named twice")
            groups[str(group_id)] = tuple(names)
        default = self.text(section, keys, "default")
        if default is not None and default not in groups:
            self.fail((*keys, "default"), "is not a resources group "
                                          f"(defined: {', '.join(groups) or 'none'})", default)
        return groups, default

    def check_resource_param(self, name: str, keys) -> None:
        known = self.resource_params
        if known is None or name in known.params:
            return
        if not known.found:
            source = known.path or "galaxy.yml's job_resource_params_file"
            self.fail(keys, f"{name!r}: no job resource params are defined ({source} does not "
                            "exist)")
        self.fail(keys, f"{name!r} is not a param of {known.path} (its params: "
                        f"{', '.join(known.params) or 'none'})")

    # -- limits -----------------------------------------------------------------------------
    def limits(self, section, keys, destinations) -> list:
        limits = []
        for i, raw in enumerate(self.sequence(section, keys)):
            here = (*keys, i)
            raw = self.mapping(raw, here)
            self.only(raw, here, ("type", "value", "id", "tag"))
            kind = self.text(raw, here, "type", required=True)
            if kind.startswith("environment_"):  # Galaxy 21's name of destination_* limits
                kind = "destination_" + kind[len("environment_"):]
            if kind not in LIMIT_TYPES:
                self.fail((*here, "type"), f"expected one of {', '.join(LIMIT_TYPES)}", raw["type"])
            value = raw.get("value")
            try:
                if _is_int(value) and value >= 0:
                    pass  # seconds (YAML reads 24:00:00 as 86400), bytes, or jobs
                elif not isinstance(value, str):
                    raise ValueError(f"{value!r}: expected text or a whole number")
                elif kind == "walltime":
                    value = parse_walltime(value)
                elif kind == "output_size":
                    value = parse_size(value)
                elif _DIGITS.match(value.strip()):
                    value = int(value)
                else:
                    raise ValueError(f"{value!r}: expected a whole number of jobs")
            except ValueError as exc:
                self.fail((*here, "value"), str(exc))
            dest, tag = self.text(raw, here, "id"), self.text(raw, here, "tag")
            if dest and dest not in destinations:
                self.fail((*here, "id"), "is not a destination id", dest)
            if kind.startswith("destination_"):
                if bool(dest) == bool(tag):
                    self.fail(here, f"a {kind} limit names a destination: id= or tag=, one "
                                    "of them")
                if tag and not any(tag in (d.tags or ()) for d in destinations.values()):
                    self.fail((*here, "tag"), "is not the tag of any destination", tag)
            elif dest or tag:
                self.fail(here, f"a {kind} limit applies everywhere: it takes no id= or tag=")
            limits.append(Limit(type=kind, value=value, id=dest, tag=tag))
        return limits


def _is_handler_ref(ref, handlers) -> bool:
    return (ref in handlers or any(ref in h.tags for h in handlers.values())
            or mule_number(ref) is not None or web_number(ref) is not None
            or is_farm(ref))


def log_warnings(conf: JobConfig) -> None:
    for warning in conf.warnings:
        log.warning("%s", warning)
