"""A tool as JSON (GET /api/tools and /api/tools/ID), close to Galaxy's own tool JSON so a
client written for Galaxy finds its fields: inputs nested as the wrapper nests them, each
with Galaxy's "model_class", "name", "type", "label", "help", "optional", "value"...
"""
from __future__ import annotations

from muleteer.tools.model import Conditional, Param, ParamType, Repeat, Section, Tool

_MODEL_CLASS = {
    ParamType.TEXT: "TextToolParameter", ParamType.INTEGER: "IntegerToolParameter",
    ParamType.FLOAT: "FloatToolParameter", ParamType.BOOLEAN: "BooleanToolParameter",
    ParamType.SELECT: "SelectToolParameter", ParamType.DATA: "DataToolParameter",
    ParamType.DATA_COLUMN: "ColumnListParameter", ParamType.HIDDEN: "HiddenToolParameter",
    ParamType.COLOR: "ColorToolParameter",
}


def tool_summary(tool: Tool) -> dict:
    return {"id": tool.id, "name": tool.name, "version": tool.version,
            "description": tool.description, "section": tool.section}


def tool_json(tool: Tool, versions=()) -> dict:
    return {**tool_summary(tool), "versions": list(versions) or [tool.version],
            "help": tool.help, "profile": tool.profile,
            "inputs": [input_json(i) for i in tool.inputs],
            "outputs": [{"name": o.name, "format": o.format, "label": o.label, "hidden": o.hidden}
                        for o in tool.outputs]}


def input_json(item) -> dict:
    if isinstance(item, Param):
        return param_json(item)
    if isinstance(item, Conditional):
        return {"model_class": "Conditional", "name": item.name, "type": "conditional",
                "test_param": param_json(item.test),
                "cases": [{"model_class": "ConditionalWhen", "value": w.value,
                           "inputs": [input_json(i) for i in w.inputs]} for w in item.whens]}
    if isinstance(item, Repeat):
        return {"model_class": "Repeat", "name": item.name, "type": "repeat", "title": item.title,
                "help": item.help, "min": item.min, "max": item.max, "default": item.default,
                "inputs": [input_json(i) for i in item.inputs]}
    assert isinstance(item, Section), item
    return {"model_class": "Section", "name": item.name, "type": "section", "title": item.title,
            "help": item.help, "expanded": item.expanded,
            "inputs": [input_json(i) for i in item.inputs]}


def param_json(p: Param) -> dict:
    out = {"model_class": _MODEL_CLASS[p.type], "name": p.name, "argument": p.argument,
           "type": p.type.value, "label": p.label, "help": p.help, "optional": p.optional,
           "hidden": p.type == ParamType.HIDDEN, "value": _value(p)}
    if p.type in (ParamType.INTEGER, ParamType.FLOAT):
        out.update(min=p.min, max=p.max)
    elif p.type == ParamType.TEXT:
        out["area"] = p.area
    elif p.type == ParamType.BOOLEAN:
        out.update(truevalue=p.truevalue, falsevalue=p.falsevalue)
    elif p.type == ParamType.SELECT:
        out.update(options=[[o.label, o.value, o.selected] for o in p.options],
                   multiple=p.multiple, display=p.display,
                   is_dynamic=p.dynamic_options is not None)
    elif p.type == ParamType.DATA:
        out.update(extensions=list(p.formats) or ["data"], multiple=p.multiple)
    elif p.type == ParamType.DATA_COLUMN:
        out.update(data_ref=p.data_ref, multiple=p.multiple, numerical=p.numerical,
                   use_header_names=p.use_header_names, accept_default=p.accept_default)
    return out


def _value(p: Param):
    """The default as a client would send it back: typed where the XML's string allows."""
    if p.type == ParamType.BOOLEAN:
        return p.checked or (p.value or "").lower() in ("true", "yes", "on")
    if p.type == ParamType.SELECT:
        selected = [o.value for o in p.options if o.selected]
        if p.multiple:
            return selected or ([v.strip() for v in p.value.split(",")] if p.value else [])
        if selected:
            return selected[0]
        if p.value is not None:
            return p.value
        return p.options[0].value if p.options and not p.optional else None
    if p.value is None or p.value == "":
        return None if p.type != ParamType.TEXT else (p.value or "")
    if p.type == ParamType.INTEGER:
        try:
            return int(p.value)
        except ValueError:
            return p.value
    if p.type == ParamType.FLOAT:
        try:
            return float(p.value)
        except ValueError:
            return p.value
    return p.value
