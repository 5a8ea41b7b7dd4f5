"""job_conf.yml (Galaxy 21+), or the same mapping inline as `job_config:` in galaxy.yml's
`galaxy:` section: read with the line of every key, so errors name file, line and key path
(`job_conf.yml, line 12: execution.environments.slurm_big.resubmit[0].condition: ...`).
A key given twice in one mapping is an error (standard YAML; PyYAML would keep the last)."""
from __future__ import annotations

import yaml

from muleteer.job_config.build import NO_VALUE, Locator
from muleteer.job_config.model import JobConfError


def key_path(keys: tuple, prefix: str = "") -> str:
    text = prefix
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


class YamlLocator(Locator):
    def __init__(self, path: str, lines: dict, prefix: str = ""):
        super().__init__(path)
        self.lines = lines  # key path -> line
        self.prefix = prefix  # galaxy.job_config when inline in galaxy.yml

    def describe(self, keys: tuple, value=NO_VALUE) -> str:
        found = tuple(keys)
        while found and found not in self.lines:
            found = found[:-1]
        line = self.lines.get(found)
        where = f"{self.path}, line {line}" if line else self.path
        label = key_path(tuple(keys), self.prefix) or "(top level)"
        return f"{where}: {label}" + ("" if value is NO_VALUE else f": {value!r}")


def read_yaml(path: str) -> tuple[object, YamlLocator]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise JobConfError(f"{path}: cannot read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise JobConfError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    data, lines = parse_with_lines(text, path)
    return data, YamlLocator(path, lines)


def parse_with_lines(text: str, path: str) -> tuple[object, dict]:
    """The document, and {key path: line} for every key and list item in it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[tuple, int] = {(): 1}
        if node is not None:
            _walk(node, (), lines, path, set())
        return (loader.construct_document(node) if node is not None else None), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobConfError(f"{where}: not valid YAML: {problem}") from exc
    finally:
        loader.dispose()


def _walk(node, keys, lines, path, active):
    if id(node) in active:  # an alias of an enclosing node
        return
    active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                raise JobConfError(f"{path}, line {line}: {key_path((*keys, key))}: "
                                   "given twice in one mapping")
            seen.add(key)
            lines[(*keys, key)] = line
            _walk(value_node, (*keys, key), lines, path, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*keys, i)] = item.start_mark.line + 1
            _walk(item, (*keys, i), lines, path, active)


def inline_locator(config_file: str, data: dict, galaxy_section) -> YamlLocator:
    """Where galaxy.yml's `galaxy.job_config` keys are, if the file still holds `data` there
    (galaxy_section(text) blanks the file's other sections, keeping line numbers)."""
    lines: dict = {}
    try:
        with open(config_file, encoding="utf-8") as fh:
            document, all_lines = parse_with_lines(galaxy_section(fh.read()), config_file)
        if isinstance(document, dict) and (document.get("galaxy") or {}).get("job_config") == data:
            cut = ("galaxy", "job_config")
            lines = {k[2:]: v for k, v in all_lines.items() if k[:2] == cut}
    except (OSError, ValueError, JobConfError, AttributeError):
        pass  # no lines, then: the key path still says where
    return YamlLocator(config_file, lines, prefix="galaxy.job_config")
