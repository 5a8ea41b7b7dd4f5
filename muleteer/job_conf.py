"""job_conf.xml: which handler and which destination each tool's jobs go to.

Galaxy's schema (plugins, handlers, destinations, tools, limits), including the
legacy runner URLs `local:///`, `pbs://server/queue/options/` and
`drmaa://native options/`. Every error names the file, the line and the element,
and stops start-up: a half-understood job configuration runs jobs in the wrong place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from muleteer.handler_names import is_farm, mule_number, web_number

RUNNER_TYPES = ("local", "pbs", "drmaa", "slurm")
ASSIGN_METHODS = ("mem-self", "db-self", "db-preassign", "db-transaction-isolation",
                  "db-skip-locked", "uwsgi-mule-message")
LIMIT_TYPES = ("registered_user_concurrent_jobs", "anonymous_user_concurrent_jobs",
               "destination_user_concurrent_jobs", "destination_total_concurrent_jobs",
               "walltime", "output_size")
RESUBMIT_CONDITIONS = ("walltime_reached", "memory_limit_reached", "any_failure",
                       "unknown_error", "attempt")
_DIGITS = re.compile(r"^[0-9]+$")  # str.isdigit() also accepts '²', which int() refuses


class JobConfError(Exception):
    """job_conf.xml is invalid; the message says file, line and what is wrong."""


@dataclass
class Plugin:
    id: str
    type: str
    workers: int
    params: dict = field(default_factory=dict)


@dataclass
class Destination:
    id: str
    runner: str
    params: dict = field(default_factory=dict)
    env: list = field(default_factory=list)  # dicts: {"name", "value"} | {"file"} | {"exec"}
    resubmit: list = field(default_factory=list)  # dicts: condition, destination, handler, delay
    tags: tuple = ()


@dataclass
class Handler:
    id: str
    tags: tuple = ()


@dataclass
class ToolMapping:
    id: str
    handler: str | None = None
    destination: str | None = None


@dataclass
class Limit:
    type: str
    value: object
    id: str | None = None
    tag: str | None = None


@dataclass
class JobConfig:
    path: str
    plugins: dict
    destinations: dict
    default_destination: str
    handlers: dict
    default_handler: str | None
    assign_with: str | None
    tools: dict
    limits: list

    def handler_for(self, tool_id: str) -> str | None:
        """The handler id or tag this tool's jobs go to; None means "the deployment's default"."""
        mapping = self.tools.get(tool_id)
        if mapping and mapping.handler:
            return mapping.handler
        return self.default_handler

    def destination_for(self, tool_id: str) -> Destination:
        mapping = self.tools.get(tool_id)
        ref = mapping.destination if mapping and mapping.destination else self.default_destination
        return self.resolve_destination(ref)

    def resolve_destination(self, ref: str) -> Destination:
        if ref in self.destinations:
            return self.destinations[ref]
        tagged = [d for d in self.destinations.values() if ref in d.tags]
        if tagged:
            return tagged[0]
        raise KeyError(ref)

    def handler_tags(self, handler_id: str) -> tuple:
        handler = self.handlers.get(handler_id)
        return handler.tags if handler else ()


def destination_from_url(dest_id: str, url: str) -> Destination:
    """Galaxy's legacy runner URLs, e.g. `pbs://server/queue/-l nodes=1:ppn=2/`."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in RUNNER_TYPES:
        raise ValueError(f"runner URL {url!r}: expected one of "
                         + ", ".join(f"{t}://" for t in RUNNER_TYPES))
    rest = rest[:-1] if rest.endswith("/") else rest
    params = {}
    if scheme == "pbs":
        server, _, rest = rest.partition("/")
        queue, _, options = rest.partition("/")
        params = {k: v for k, v in (("server", server), ("queue", queue),
                                    ("nativeSpecification", options)) if v}
    elif scheme in ("drmaa", "slurm"):
        if rest:
            params["nativeSpecification"] = rest
    return Destination(id=dest_id, runner=scheme, params=params)


class _Reader:
    """Walks the XML tree, turning problems into JobConfError with file and line."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, element, message: str):
        line = getattr(element, "sourceline", None)
        where = f"{self.path}, line {line}" if line else self.path
        tag = f"<{element.tag}>: " if element is not None and isinstance(element.tag, str) else ""
        raise JobConfError(f"{where}: {tag}{message}")

    def required(self, element, attr: str) -> str:
        value = (element.get(attr) or "").strip()
        if not value:
            self.fail(element, f"missing required attribute {attr!r}")
        return value

    def positive_int(self, element, attr: str, default: int) -> int:
        raw = element.get(attr)
        if raw is None:
            return default
        if not _DIGITS.match(raw.strip()) or int(raw) < 1:
            self.fail(element, f"{attr}={raw!r}: expected a whole number of at least 1")
        return int(raw)

    def params(self, element) -> dict:
        params = {}
        for param in element.findall("param"):
            params[self.required(param, "id")] = (param.text or "").strip()
        return params

    @staticmethod
    def tags(element) -> tuple:
        return tuple(t.strip() for t in (element.get("tags") or "").split(",") if t.strip())


def load_job_conf(path: str) -> JobConfig:
    try:
        tree = etree.parse(path, etree.XMLParser(remove_comments=True))
    except OSError as exc:
        raise JobConfError(f"{path}: cannot read: {exc}") from exc
    except etree.XMLSyntaxError as exc:
        raise JobConfError(f"{path}, line {exc.lineno}: not well-formed XML: {exc.msg}") from exc
    root = tree.getroot()
    reader = _Reader(path)
    if root.tag != "job_conf":
        reader.fail(root, "the root element must be <job_conf>")
    known = {"plugins", "handlers", "destinations", "tools", "limits"}
    for child in root:
        if child.tag not in known:
            reader.fail(child, f"unknown section (expected one of {', '.join(sorted(known))})")

    plugins = _read_plugins(reader, root.find("plugins"))
    destinations, default_destination = _read_destinations(reader, root.find("destinations"), plugins)
    handlers, default_handler, assign_with = _read_handlers(reader, root.find("handlers"))
    tools = _read_tools(reader, root.find("tools"), destinations, handlers, plugins)
    limits = _read_limits(reader, root.find("limits"), destinations)
    return JobConfig(path=path, plugins=plugins, destinations=destinations,
                     default_destination=default_destination, handlers=handlers,
                     default_handler=default_handler, assign_with=assign_with,
                     tools=tools, limits=limits)


def _runner_type(reader, element) -> str:
    load = element.get("load") or element.get("id") or ""
    # Galaxy's load strings (galaxy.jobs.runners.slurm:SlurmJobRunner) name the type by module.
    module = load.split(":")[0].rsplit(".", 1)[-1]
    if module not in RUNNER_TYPES:
        reader.fail(element, f"load={load!r}: unknown runner (known: {', '.join(RUNNER_TYPES)})")
    return module


def _read_plugins(reader, section) -> dict:
    plugins = {}
    if section is None:
        return {"local": Plugin(id="local", type="local", workers=4)}
    default_workers = reader.positive_int(section, "workers", 4)
    for element in section:
        if element.tag != "plugin":
            reader.fail(element, "only <plugin> elements belong in <plugins>")
        plugin_id = reader.required(element, "id")
        kind = element.get("type", "runner")
        if kind != "runner":
            reader.fail(element, f"type={kind!r}: only runner plugins are supported")
        if plugin_id in plugins:
            reader.fail(element, f"plugin id {plugin_id!r} is defined twice")
        plugins[plugin_id] = Plugin(id=plugin_id, type=_runner_type(reader, element),
                                    workers=reader.positive_int(element, "workers", default_workers),
                                    params=reader.params(element))
    return plugins


def _read_destinations(reader, section, plugins):
    if section is None:
        if "local" not in plugins:
            raise JobConfError(f"{reader.path}: no <destinations> and no local plugin to default to")
        return {"local": Destination(id="local", runner="local")}, "local"
    destinations = {}
    for element in section:
        if element.tag != "destination":
            reader.fail(element, "only <destination> elements belong in <destinations>")
        dest_id = reader.required(element, "id")
        if dest_id in destinations:
            reader.fail(element, f"destination id {dest_id!r} is defined twice")
        if element.get("url"):
            try:
                destination = destination_from_url(dest_id, element.get("url"))
            except ValueError as exc:
                reader.fail(element, str(exc))
            destination.params.update(reader.params(element))
        else:
            destination = Destination(id=dest_id, runner=reader.required(element, "runner"),
                                      params=reader.params(element))
        destination.tags = reader.tags(element)
        _attach_plugin(reader, element, destination, plugins)
        destination.env = _read_env(reader, element)
        destination.resubmit = [_read_resubmit(reader, r) for r in element.findall("resubmit")]
        destinations[dest_id] = destination
    if not destinations:
        reader.fail(section, "defines no destination")
    default = section.get("default")
    if default is None:
        if len(destinations) > 1:
            reader.fail(section, "several destinations and no default=: say which one is the default")
        default = next(iter(destinations))
    elif default not in destinations and not any(default in d.tags for d in destinations.values()):
        reader.fail(section, f"default={default!r} is not a destination id or tag")
    for element in section.findall("destination"):
        for rule in element.findall("resubmit"):
            target = rule.get("destination")
            if target and target not in destinations:
                reader.fail(rule, f"destination={target!r} is not a destination id")
    return destinations, default


def _attach_plugin(reader, element, destination, plugins):
    if destination.runner in plugins:
        return
    if destination.runner in RUNNER_TYPES:
        # A destination naming a runner type with no <plugin> gets that runner with defaults,
        # as a legacy URL would.
        plugins[destination.runner] = Plugin(id=destination.runner, type=destination.runner,
                                             workers=4)
        return
    reader.fail(element, f"runner={destination.runner!r} is not a plugin id "
                         f"(defined: {', '.join(sorted(plugins)) or 'none'})")


def _read_env(reader, element) -> list:
    env = []
    for item in element.findall("env"):
        if item.get("file"):
            env.append({"file": item.get("file")})
        elif item.get("exec"):
            env.append({"exec": item.get("exec")})
        else:
            name = reader.required(item, "id")
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                reader.fail(item, f"id={name!r} is not a valid environment variable name")
            env.append({"name": name, "value": item.text or ""})
    return env


def _read_resubmit(reader, element) -> dict:
    condition = reader.required(element, "condition")
    words = set(re.findall(r"[a-z_]+", condition)) - {"and", "or", "not"}
    unknown = words - set(RESUBMIT_CONDITIONS)
    if unknown:
        reader.fail(element, f"condition={condition!r}: unknown {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(RESUBMIT_CONDITIONS)})")
    delay = element.get("delay", "0")
    try:
        delay = float(delay)
    except ValueError:
        reader.fail(element, f"delay={delay!r}: expected seconds")
    return {"condition": condition, "destination": element.get("destination"),
            "handler": element.get("handler"), "delay": delay}


def _read_handlers(reader, section):
    if section is None:
        return {}, None, None
    handlers = {}
    for element in section:
        if element.tag != "handler":
            reader.fail(element, "only <handler> elements belong in <handlers>")
        handler_id = reader.required(element, "id")
        if handler_id in handlers:
            reader.fail(element, f"handler id {handler_id!r} is defined twice")
        handlers[handler_id] = Handler(id=handler_id, tags=reader.tags(element))
    assign_with = section.get("assign_with")
    if assign_with is not None and assign_with not in ASSIGN_METHODS:
        reader.fail(section, f"assign_with={assign_with!r}: expected one of {', '.join(ASSIGN_METHODS)}")
    default = section.get("default")
    if default and handlers and not _is_handler_ref(default, handlers):
        reader.fail(section, f"default={default!r} is not a handler id or tag")
    if default is None and len(handlers) == 1:
        default = next(iter(handlers))
    return handlers, default, assign_with


def _is_handler_ref(ref, handlers) -> bool:
    return (ref in handlers or any(ref in h.tags for h in handlers.values())
            or mule_number(ref) is not None or web_number(ref) is not None
            or is_farm(ref))


def _read_tools(reader, section, destinations, handlers, plugins) -> dict:
    tools = {}
    if section is None:
        return tools
    for element in section:
        if element.tag != "tool":
            reader.fail(element, "only <tool> elements belong in <tools>")
        tool_id = reader.required(element, "id")
        handler = element.get("handler")
        destination = element.get("destination")
        if handler and handlers and not _is_handler_ref(handler, handlers):
            reader.fail(element, f"handler={handler!r} is not a handler id or tag")
        if destination and "://" in destination:
            try:
                url_dest = destination_from_url(destination, destination)
            except ValueError as exc:
                reader.fail(element, str(exc))
            _attach_plugin(reader, element, url_dest, plugins)
            destinations.setdefault(destination, url_dest)
        elif destination and destination not in destinations and not any(
                destination in d.tags for d in destinations.values()):
            reader.fail(element, f"destination={destination!r} is not a destination id or tag")
        tools[tool_id] = ToolMapping(id=tool_id, handler=handler, destination=destination)
    return tools


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


def _read_limits(reader, section, destinations) -> list:
    limits = []
    if section is None:
        return limits
    for element in section:
        if element.tag != "limit":
            reader.fail(element, "only <limit> elements belong in <limits>")
        kind = reader.required(element, "type")
        if kind not in LIMIT_TYPES:
            reader.fail(element, f"type={kind!r}: expected one of {', '.join(LIMIT_TYPES)}")
        text = (element.text or "").strip()
        try:
            if kind == "walltime":
                value = parse_walltime(text)
            elif kind == "output_size":
                value = parse_size(text)
            else:
                if not _DIGITS.match(text):
                    raise ValueError(f"{text!r}: expected a whole number of jobs")
                value = int(text)
        except ValueError as exc:
            reader.fail(element, str(exc))
        dest = element.get("id")
        if dest and dest not in destinations:
            reader.fail(element, f"id={dest!r} is not a destination id")
        limits.append(Limit(type=kind, value=value, id=dest, tag=element.get("tag")))
    return limits
