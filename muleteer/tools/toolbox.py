"""The toolbox: every tool the server offers, by id and version, and the tool panel.

Either Galaxy's tool_conf.xml (galaxy.yml's tool_config_file) lists the wrappers, in
sections with labels, or every tool XML under tool_path is offered. A broken wrapper is
logged, recorded in `errors` and skipped, so one bad file does not take the server down;
a broken tool_conf.xml is the admin's own configuration and stops start-up.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace

from galaxy.tool_util.version import parse_version
from lxml import etree

from muleteer.tools.errors import ToolError
from muleteer.tools.evaluation import compile_templates
from muleteer.tools.model import Tool

log = logging.getLogger(__name__)

@dataclass
class Toolbox:
    errors: list = field(default_factory=list)       # one message per skipped file
    # The panel: [(section name or None, [tool id or ("label", text), ...])]
    sections: list = field(default_factory=list)
    _tools: dict = field(default_factory=dict)       # id -> {version: Tool}

    def get(self, tool_id: str, version: str | None = None) -> Tool | None:
        """The tool of that id: the given version, or the newest (Galaxy's ordering)."""
        versions = self._tools.get(tool_id)
        if not versions:
            return None
        if version is not None:
            return versions.get(version)
        return versions[max(versions, key=parse_version)]

    def versions(self, tool_id: str) -> list[str]:
        """The versions of a tool, oldest first."""
        return sorted(self._tools.get(tool_id, {}), key=parse_version)

    def values(self) -> list[Tool]:
        """The newest version of each tool, sorted by name (then id)."""
        newest = [self.get(tool_id) for tool_id in self._tools]
        return sorted(newest, key=lambda t: (t.name.lower(), t.id))

    def __contains__(self, tool_id: str) -> bool:
        return tool_id in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def files(self) -> set[str]:
        """The wrapper file of every tool loaded, every version (absolute paths)."""
        return {os.path.abspath(tool.path) for versions in self._tools.values()
                for tool in versions.values() if tool.path}

    def add(self, tool: Tool) -> bool:
        """Add a tool; False (and an error recorded) when its id and version are taken."""
        versions = self._tools.setdefault(tool.id, {})
        if tool.version in versions:
            self._error(f"{tool.path}: tool {tool.id!r} version {tool.version!r} is already "
                        f"defined in {versions[tool.version].path}; this file is skipped")
            return False
        versions[tool.version] = tool
        return True

    def _error(self, message: str) -> None:
        log.error("tool not loaded: %s", message)
        self.errors.append(message)

    def _load(self, path: str, section: str | None, hidden: bool = False) -> Tool | None:
        # Imported here: load.py brings Galaxy's parser (~40 MB), which a process that
        # gets its toolbox from toolbox_apart.py never needs.
        from muleteer.tools.load import load_tool
        try:
            tool = load_tool(path, section=section)
            if hidden:
                tool = replace(tool, hidden=True)
            # Once per tool, at load: a template that does not compile skips the wrapper
            # (with its line) instead of failing each of its jobs.
            compile_templates(tool)
        except ToolError as exc:
            self._error(str(exc))
            return None
        return tool if self.add(tool) else None


def load_toolbox(tool_path: str, tool_config_file: str | None = None) -> Toolbox:
    """The toolbox of a tool_conf.xml, or of every tool XML under tool_path. ToolError
    only when tool_config_file itself is unreadable or malformed."""
    if tool_config_file:
        return _from_tool_conf(tool_config_file, tool_path)
    toolbox = Toolbox()
    entries = []
    for path in _tool_files(tool_path):
        tool = toolbox._load(path, None)
        if tool is not None and tool.id not in entries and not tool.hidden:
            entries.append(tool.id)
    toolbox.sections = [(None, _by_name(toolbox, entries))] if entries else []
    return toolbox


def _tool_files(directory: str) -> list[str]:
    """Every XML file under `directory` whose root is <tool>, in path order; test-data
    folders (a wrapper's test files) and other XML (macros, tool_conf) skipped."""
    from muleteer.tools.load import is_tool_file
    found = []
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = sorted(d for d in subfolders if d != "test-data" and not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.endswith(".xml") and is_tool_file(path):
                found.append(path)
    return sorted(found)


def _by_name(toolbox: Toolbox, tool_ids: list[str]) -> list[str]:
    return sorted(tool_ids, key=lambda i: (toolbox.get(i).name.lower(), i))


def _from_tool_conf(conf_path: str, default_tool_path: str) -> Toolbox:
    conf_path = os.path.abspath(conf_path)
    try:
        root = etree.parse(conf_path, etree.XMLParser(remove_comments=True)).getroot()
    except etree.XMLSyntaxError as exc:
        raise ToolError(f"{conf_path}, line {exc.lineno}: not well-formed XML: {exc.msg}") \
            from None
    except OSError as exc:
        raise ToolError(f"{conf_path}: cannot read the tool configuration: "
                        f"{exc.strerror or exc}") from None

    def fail(element, message):
        raise ToolError(f"{conf_path}, line {element.sourceline}: {message}")

    if root.tag != "toolbox":
        fail(root, f"the root element must be <toolbox>, not <{root.tag}>")
    tool_path = root.get("tool_path")
    tool_path = os.path.join(os.path.dirname(conf_path), tool_path) if tool_path \
        else default_tool_path
    toolbox = Toolbox()

    def tool_files(element) -> list[str]:
        if element.tag == "tool":
            file = element.get("file")
            if not file:
                fail(element, "<tool> needs a file attribute")
            return [os.path.join(tool_path, file)]
        directory = element.get("dir")
        if not directory:
            fail(element, "<tool_dir> needs a dir attribute")
        return _tool_files(os.path.join(tool_path, directory))

    def entries_of(elements, section_name) -> list:
        entries = []
        for element in elements:
            if element.tag == "label":
                if not element.get("text"):
                    fail(element, "<label> needs a text attribute")
                entries.append(("label", element.get("text")))
            elif element.tag in ("tool", "tool_dir"):
                hidden = element.get("hidden", "").strip().lower() in ("true", "yes", "1")
                for path in tool_files(element):
                    tool = toolbox._load(path, section_name, hidden)
                    if tool is not None and tool.id not in entries and not tool.hidden:
                        entries.append(tool.id)
            elif element.tag == "section":
                fail(element, "a <section> cannot hold another <section>")
            else:
                fail(element, f"<{element.tag}> is not supported in a tool panel "
                     "(expected tool, tool_dir, label, section)")
        return entries

    for element in root:
        if element.tag == "section":
            name = element.get("name") or element.get("id")
            if not name:
                fail(element, "<section> needs a name (or id)")
            toolbox.sections.append((name, entries_of(list(element), name)))
            continue
        # Top-level tools and labels stay where the file puts them, between sections.
        entries = entries_of([element], None)
        if entries and toolbox.sections and toolbox.sections[-1][0] is None:
            toolbox.sections[-1][1].extend(entries)
        elif entries:
            toolbox.sections.append((None, entries))
    return toolbox
