"""Galaxy's job metrics configuration file, in either of its forms, as a list of plugin
entries that remember where they were written.

    <job_metrics>                        - type: core
        <core/>                          - type: cgroup
        <cgroup params="memory.peak"/>     params: memory.peak
    </job_metrics>

job_metrics_conf.xml: one element per plugin, its tag the plugin's type, its attributes
the plugin's settings. job_metrics_conf.yml (or .yaml): a list of mappings, each with
`type` and the settings. What the settings mean is judged by the plugins; every error
names the file, the line and the plugin.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

import yaml
from lxml import etree

from muleteer.config import ConfigError


class JobMetricsConfError(ConfigError):
    """The job metrics file is unreadable or wrong; the message says where and what."""


@dataclass(frozen=True)
class PluginConf:
    """One plugin as the file lists it: its type, its settings (XML: strings; YAML: any
    scalar or a list), and where each was written."""
    type: str
    attributes: dict = field(default_factory=dict)
    path: str = ""
    line: int | None = None
    attribute_lines: dict = field(default_factory=dict)

    def where(self, attribute: str | None = None) -> str:
        line = self.attribute_lines.get(attribute, self.line) if attribute else self.line
        place = f"{self.path}, line {line}" if line else self.path or "job metrics"
        return f"{place}: <{self.type}>" + (f": {attribute}" if attribute else "")

    def fail(self, message: str, attribute: str | None = None) -> NoReturn:
        shown = f"={self.attributes[attribute]!r}" if attribute in self.attributes else ""
        raise JobMetricsConfError(f"{self.where(attribute)}{shown}: {message}")


def read_conf(path: str) -> list[PluginConf]:
    """The plugins of a job_metrics_conf.xml, or of a .yml/.yaml file."""
    if path.endswith((".yml", ".yaml")):
        return _read_yaml(path)
    return _read_xml(path)


def _read_xml(path: str) -> list[PluginConf]:
    try:
        tree = etree.parse(path, etree.XMLParser(remove_comments=True, remove_pis=True,
                                                 resolve_entities=False, no_network=True))
    except OSError as exc:
        raise JobMetricsConfError(f"{path}: cannot read: {exc}") from exc
    except etree.XMLSyntaxError as exc:
        raise JobMetricsConfError(f"{path}, line {exc.lineno}: not well-formed XML: "
                                  f"{exc.msg}") from exc
    root = tree.getroot()
    if root.tag != "job_metrics":
        raise JobMetricsConfError(f"{path}, line {root.sourceline}: the root element is "
                                  f"<{root.tag}>, expected <job_metrics>")
    plugins = []
    for element in root:
        if not isinstance(element.tag, str):
            continue  # an entity or the like: nothing a plugin reads
        conf = PluginConf(type=element.tag, attributes=dict(element.attrib), path=path,
                          line=element.sourceline)
        children = [c for c in element if isinstance(c.tag, str)]
        if children:
            conf.fail(f"takes no child elements (found <{children[0].tag}>, line "
                      f"{children[0].sourceline}): its settings are attributes")
        plugins.append(conf)
    return plugins


class _Mapping(dict):
    """A YAML mapping that knows its line and each of its keys' lines."""
    line: int = 0
    key_lines: dict


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader, node):
    mapping = _Mapping(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {key.value: key.start_mark.line + 1 for key, _ in node.value
                         if isinstance(key, yaml.ScalarNode)}
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: str) -> list[PluginConf]:
    try:
        with open(path, encoding="utf-8") as fh:
            document = yaml.load(fh, Loader=_LineLoader)  # noqa: S506 (a SafeLoader)
    except OSError as exc:
        raise JobMetricsConfError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise JobMetricsConfError(f"{path}: not UTF-8 text ({exc.reason} at byte "
                                  f"{exc.start})") from exc
    except yaml.YAMLError as exc:
        raise JobMetricsConfError(f"{path}: not valid YAML: {exc}") from exc
    if document is None:
        return []
    if not isinstance(document, list):
        shown = "a mapping" if isinstance(document, dict) else repr(document)[:60]
        raise JobMetricsConfError(f"{path}: expected a list of plugins (`- type: core`), got "
                                  f"{shown}")
    plugins = []
    for number, item in enumerate(document, 1):
        if not isinstance(item, _Mapping):
            raise JobMetricsConfError(f"{path}: plugin {number}: expected a mapping with "
                                      f"`type`, got {item!r}")
        kind = item.get("type")
        if not isinstance(kind, str) or not kind:
            raise JobMetricsConfError(f"{path}, line {item.line}: plugin {number}: `type` must "
                                      f"name a plugin (core, cgroup, ...), got {kind!r}")
        attributes = {k: v for k, v in item.items() if k != "type"}
        for key in attributes:
            if not isinstance(key, str):
                raise JobMetricsConfError(f"{path}, line {item.line}: <{kind}>: setting names "
                                          f"are strings, got {key!r}")
        plugins.append(PluginConf(type=kind, attributes=attributes, path=path, line=item.line,
                                  attribute_lines=dict(item.key_lines)))
    return plugins
