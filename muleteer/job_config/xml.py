"""job_conf.xml (Galaxy's schema) into Galaxy's dict form, as Galaxy's own
job_config_xml_to_dict does, remembering which element and attribute each key came from.

The shape of the file is judged here (root, sections, one kind of child per section, ids,
duplicates); what the values mean is judged by build.py, for both formats. Every error
names the file, the line and the element: `job_conf.xml, line 7: <destination>: runner='x'`.
"""
from __future__ import annotations

from lxml import etree

from muleteer.job_config.build import NO_VALUE, Locator
from muleteer.job_config.macros import MacroError, expand_macros
from muleteer.job_config.model import JobConfError

TEXT = "#text"  # in a keymap: the key is the element's text, not an attribute
_SECTIONS = ("plugins", "handlers", "destinations", "tools", "limits", "resources")


class XmlLocator(Locator):
    """Key paths of the dict -> (element, label, {dict key: attribute name})."""

    def __init__(self, path: str):
        super().__init__(path)
        self.nodes: dict[tuple, tuple] = {}

    def add(self, keys: tuple, element, label: str | None = None, **keymap):
        self.nodes[keys] = (element, label or f"<{element.tag}>", keymap)

    def _at(self, element) -> str:
        line = getattr(element, "sourceline", None)
        return f"{self.path}, line {line}" if line else self.path

    def describe(self, keys: tuple, value=NO_VALUE) -> str:
        shown = "" if value is NO_VALUE else f": {value!r}"
        while keys:
            if keys in self.nodes:
                element, label, _ = self.nodes[keys]
                return f"{self._at(element)}: {label}{shown}"
            if keys[:-1] in self.nodes:
                element, label, keymap = self.nodes[keys[:-1]]
                attr = keymap.get(keys[-1], keys[-1])
                if attr == TEXT:
                    return f"{self._at(element)}: {label}{shown}"
                return (f"{self._at(element)}: {label}: {attr}"
                        + ("" if value is NO_VALUE else f"={value!r}"))
            keys = keys[:-1]
        return f"{self.path}{shown}"

    def missing(self, keys: tuple, key: str) -> str:
        _, _, keymap = self.nodes.get(keys, (None, None, {}))
        return f"{self.describe(keys)}: missing required attribute {keymap.get(key, key)!r}"


def read_xml(path: str) -> tuple[dict, XmlLocator]:
    try:
        tree = etree.parse(path, etree.XMLParser(remove_comments=True))
    except OSError as exc:
        raise JobConfError(f"{path}: cannot read: {exc}") from exc
    except etree.XMLSyntaxError as exc:
        raise JobConfError(f"{path}, line {exc.lineno}: not well-formed XML: {exc.msg}") from exc
    reader = _Reader(path)
    try:
        expand_macros(tree, path)
    except MacroError as exc:
        reader.fail(exc.element, str(exc))
    return reader.read(tree.getroot()), reader.loc


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.loc = XmlLocator(path)

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

    def children(self, section, tag: str) -> list:
        for element in section:
            if element.tag != tag:
                self.fail(element, f"only <{tag}> elements belong in <{section.tag}>")
        return list(section)

    def unique(self, element, ids, kind: str) -> str:
        value = self.required(element, "id")
        if value in ids:
            self.fail(element, f"{kind} id {value!r} is defined twice")
        return value

    @staticmethod
    def attrs(element, **names) -> dict:
        """{dict key: attribute value} for the attributes present (names: key=attribute)."""
        return {key: element.get(attr) for key, attr in names.items()
                if element.get(attr) is not None}

    def params(self, element, keys: tuple) -> dict:
        params = {}
        for param in element.findall("param"):
            name = self.required(param, "id")
            if name in params:
                self.fail(param, f"param {name!r} is given twice")
            params[name] = (param.text or "").strip()
            self.loc.add((*keys, name), param, f'<param id="{name}">')
        return params

    # -----------------------------------------------------------------------------
    def read(self, root) -> dict:
        if root.tag != "job_conf":
            self.fail(root, "the root element must be <job_conf>")
        for child in root:
            if child.tag not in _SECTIONS:
                self.fail(child, f"unknown section (expected one of {', '.join(sorted(_SECTIONS))})")
        self.loc.add((), root)
        data = {}
        readers = {"plugins": ("runners", self.plugins), "handlers": ("handling", self.handlers),
                   "destinations": ("execution", self.destinations), "tools": ("tools", self.tools),
                   "limits": ("limits", self.limits), "resources": ("resources", self.resources)}
        for tag, (key, read) in readers.items():
            section = root.find(tag)
            if section is not None:
                data[key] = read(section, (key,))
        return data

    def plugins(self, section, keys) -> dict:
        self.loc.add(keys, section)
        default_workers = section.get("workers")
        if default_workers is not None:
            text = default_workers.strip()
            if not (text.isascii() and text.isdigit() and int(text) >= 1):
                self.fail(section, f"workers={default_workers!r}: expected a whole number of at least 1")
        runners = {}
        for element in self.children(section, "plugin"):
            plugin_id = self.unique(element, runners, "plugin")
            kind = element.get("type", "runner")
            if kind != "runner":
                self.fail(element, f"type={kind!r}: only runner plugins are supported")
            here = (*keys, plugin_id)
            self.loc.add(here, element)
            self.loc.add((*here, "kwds"), element)
            runner = self.attrs(element, load="load", workers="workers")
            if "workers" not in runner and default_workers is not None:
                runner["workers"] = default_workers
            runner["kwds"] = self.params(element, (*here, "kwds"))
            runners[plugin_id] = runner
        return runners

    def handlers(self, section, keys) -> dict:
        self.loc.add(keys, section, assign="assign_with")
        processes = {}
        self.loc.add((*keys, "processes"), section)
        for element in self.children(section, "handler"):
            handler_id = self.unique(element, processes, "handler")
            self.loc.add((*keys, "processes", handler_id), element)
            processes[handler_id] = self.attrs(element, tags="tags")
        handling = self.attrs(section, default="default", assign="assign_with",
                              max_grab="max_grab", ready_window_size="ready_window_size")
        handling["processes"] = processes
        return handling

    def destinations(self, section, keys) -> dict:
        self.loc.add(keys, section)
        self.loc.add((*keys, "environments"), section)
        environments = {}
        for element in self.children(section, "destination"):
            dest_id = self.unique(element, environments, "destination")
            here = (*keys, "environments", dest_id)
            self.loc.add(here, element)
            self.loc.add((*here, "params"), element)
            environment = self.attrs(element, url="url") if element.get("url") else \
                self.attrs(element, runner="runner")
            environment.update(self.attrs(element, tags="tags"))
            environment["params"] = self.params(element, (*here, "params"))
            environment["env"] = []
            for i, item in enumerate(element.findall("env")):
                self.loc.add((*here, "env", i), item, name="id", execute="exec", value=TEXT)
                env = self.attrs(item, name="id", file="file", execute="exec", raw="raw")
                if item.text is not None:
                    env["value"] = item.text
                environment["env"].append(env)
            metrics = self.metrics(element, (*here, "metrics"))
            if metrics is not None:
                environment["metrics"] = metrics
            environment["resubmit"] = []
            for i, rule in enumerate(element.findall("resubmit")):
                self.loc.add((*here, "resubmit", i), rule, environment="destination")
                environment["resubmit"].append(self.attrs(
                    rule, condition="condition", environment="destination", handler="handler",
                    delay="delay"))
            environments[dest_id] = environment
        execution = self.attrs(section, default="default")
        execution["environments"] = environments
        return execution

    def metrics(self, destination, keys):
        """Galaxy's per-destination metrics: metrics="false" (none), metrics="FILE" (another
        job_metrics_conf.xml), or a <job_metrics> element of plugins, as in that file."""
        attribute = destination.get("metrics")
        elements = destination.findall("job_metrics")
        if len(elements) > 1:
            self.fail(elements[1], "given twice: one <job_metrics> per destination")
        if attribute is not None and elements:
            self.fail(elements[0], "and metrics= both given: say one")
        if attribute is not None:
            self.loc.add(keys, destination, src="metrics", path="metrics")
            if attribute.strip().lower() in ("false", "no", "off", "0", ""):
                return {"src": "disabled"}
            return {"src": "path", "path": attribute.strip()}
        if not elements:
            return None
        self.loc.add(keys, elements[0])
        plugins = []
        for element in elements[0]:
            if not isinstance(element.tag, str):
                continue
            children = [c for c in element if isinstance(c.tag, str)]
            if children:
                self.fail(children[0], f"<{element.tag}> takes no child elements: its settings "
                                       "are attributes")
            self.loc.add((*keys, len(plugins)), element, "<job_metrics>")
            plugins.append({"type": element.tag, **element.attrib})
        return plugins

    def tools(self, section, keys) -> list:
        self.loc.add(keys, section)
        tools = []
        for i, element in enumerate(self.children(section, "tool")):
            self.loc.add((*keys, i), element, environment="destination", **{"class": "class"})
            tools.append(self.attrs(element, id="id", handler="handler", resources="resources",
                                    environment="destination", **{"class": "class"}))
        return tools

    def resources(self, section, keys) -> dict:
        """<resources default="..."><group id="basic">cores,time</group></resources>"""
        self.loc.add(keys, section)
        self.loc.add((*keys, "groups"), section)
        groups = {}
        for element in self.children(section, "group"):
            group_id = self.unique(element, groups, "group")
            self.loc.add((*keys, "groups", group_id), element, f'<group id="{group_id}">')
            groups[group_id] = (element.text or "").strip()
        resources = self.attrs(section, default="default")
        resources["groups"] = groups
        return resources

    def limits(self, section, keys) -> list:
        self.loc.add(keys, section)
        limits = []
        for i, element in enumerate(self.children(section, "limit")):
            self.loc.add((*keys, i), element, value=TEXT)
            limit = self.attrs(element, type="type", id="id", tag="tag")
            limit["value"] = (element.text or "").strip()
            limits.append(limit)
        return limits
