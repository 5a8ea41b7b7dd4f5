"""Galaxy's XML macros in job_conf.xml (galaxy/util/xml_macros.py, the part a job
configuration uses), expanded in place before the file is read:

    <job_conf>
        <macros>
            <import>site_macros.xml</import>            <!-- relative to job_conf.xml -->
            <token name="@PARTITION@">debug</token>      <!-- replaced in every text and attribute -->
            <xml name="retries"><param id="submit_retries">3</param></xml>
            <xml name="slurm" tokens="cores" token_mem="512">  <!-- @CORES@ required, @MEM@ has a default -->
                <destination id="slurm_@CORES@" runner="slurm">
                    <param id="nativeSpecification">-p @PARTITION@ -c @CORES@ --mem=@MEM@</param>
                    <yield/>                              <!-- the <expand>'s own children -->
                </destination>
            </xml>
        </macros>
        ...
        <expand macro="slurm" cores="2"><env id="LC_ALL">C</env></expand>

`<macro name= type="xml">` is the long form of `<xml>`; named `<yield name="x"/>` take the
children of the `<expand>`'s `<token name="x">`; `token_quote` changes `@`. Macros may expand
macros (a cycle is an error); template macros (tools' Cheetah) mean nothing here and are
ignored. Expanded elements keep the line of their definition, for error messages.
"""
from __future__ import annotations

import os
from copy import deepcopy

from lxml import etree


class MacroError(Exception):
    def __init__(self, element, message: str):
        super().__init__(message)
        self.element = element


class _Macro:
    def __init__(self, element):
        self.element = element
        quote = element.get("token_quote", "@")
        self.params = {}  # token as written in the macro (@CORES@) -> (attribute, default)
        for key, value in element.attrib.items():
            if key == "tokens":
                for name in (n.strip() for n in value.split(",") if n.strip()):
                    self.params[f"{quote}{name.upper()}{quote}"] = (name, None)
            elif key.startswith("token_") and key != "token_quote":
                name = key[len("token_"):]
                self.params[f"{quote}{name.upper()}{quote}"] = (name, value)

    def tokens_for(self, expand_el) -> dict:
        tokens = {}
        for token, (name, default) in self.params.items():
            value = expand_el.get(name, default)
            if value is None:
                raise MacroError(expand_el, f"macro={expand_el.get('macro')!r}: missing "
                                            f"required parameter {name!r}")
            tokens[token] = value
        return tokens


def expand_macros(tree, path: str) -> None:
    """Expand `<macros>` of tree's root in place (and remove it); MacroError on a bad one."""
    root = tree.getroot()
    macros_el = root.find("macros")
    if macros_el is None:
        if next(root.iter("expand"), None) is not None:
            raise MacroError(next(root.iter("expand")), "no <macros> to expand from")
        return
    macros: dict[str, _Macro] = {}
    tokens: dict[str, str] = {}
    _load(macros_el, os.path.dirname(os.path.abspath(path)), macros, tokens, [])
    root.remove(macros_el)
    _expand_all(root, macros, [])
    _replace_tokens(root, _nested(tokens, macros_el))


def _load(macros_el, base_dir, macros, tokens, importing):
    for child in macros_el:
        if not isinstance(child.tag, str):
            continue  # a processing instruction
        kind = child.get("type", "xml") if child.tag == "macro" else child.tag
        if kind == "import":
            _import(child, base_dir, macros, tokens, importing)
        elif kind in ("xml", "token"):
            name = (child.get("name") or "").strip()
            if not name:
                raise MacroError(child, "missing required attribute 'name'")
            if kind == "xml":
                macros[name] = _Macro(child)
            else:
                tokens[name] = child.text or ""
        elif kind != "template":
            raise MacroError(child, "expected <xml>, <token>, <import> or <macro>")


def _import(element, base_dir, macros, tokens, importing):
    relative = (element.text or "").strip()
    if not relative:
        raise MacroError(element, "names no file")
    path = os.path.join(base_dir, relative)
    if path in importing:
        raise MacroError(element, f"{relative}: imports itself")
    try:
        root = etree.parse(path, etree.XMLParser(remove_comments=True)).getroot()
    except OSError as exc:
        raise MacroError(element, f"{relative}: cannot read: {exc}") from None
    except etree.XMLSyntaxError as exc:
        raise MacroError(element, f"{relative}, line {exc.lineno}: not well-formed XML: "
                                  f"{exc.msg}") from None
    # Galaxy resolves imports of an imported file against the first file's directory.
    _load(root, base_dir, macros, tokens, importing + [path])


def _expand_all(parent, macros, stack):
    while True:
        expand_el = next(parent.iter("expand"), None)
        if expand_el is None:
            return
        _expand(expand_el, macros, stack)


def _expand(expand_el, macros, stack):
    name = (expand_el.get("macro") or "").strip()
    if not name:
        raise MacroError(expand_el, "missing required attribute 'macro'")
    if name in stack:
        raise MacroError(expand_el, f"macro={name!r}: a cycle ({' -> '.join(stack + [name])})")
    if name not in macros:
        raise MacroError(expand_el, f"macro={name!r}: no such macro "
                                    f"(defined: {', '.join(sorted(macros)) or 'none'})")
    macro = macros[name]
    body = deepcopy(macro.element)
    _fill_yields(body, expand_el)
    params = macro.tokens_for(expand_el)
    if params:
        for child in body:
            _replace_tokens(child, params)
    _expand_all(body, macros, stack + [name])
    parent = expand_el.getparent()
    index = parent.index(expand_el)
    for offset, child in enumerate(list(body)):
        parent.insert(index + offset, child)
    parent.remove(expand_el)


def _fill_yields(body, expand_el):
    for token_el in expand_el.findall("token"):
        name = token_el.get("name")
        if not name:
            raise MacroError(token_el, "missing required attribute 'name'")
        targets = [y for y in body.iter("yield") if y.get("name") == name]
        if not targets:
            raise MacroError(token_el, f"macro={expand_el.get('macro')!r} has no "
                                       f"<yield name={name!r}/>")
        for target in targets:
            _put_in_place(target, list(token_el))
    children = [c for c in expand_el if c.tag != "token"]
    for target in list(body.iter("yield")):
        _put_in_place(target, children)


def _put_in_place(target, elements):
    parent = target.getparent()
    index = parent.index(target)
    for offset, element in enumerate(elements):
        parent.insert(index + offset, deepcopy(element))
    parent.remove(target)


def _nested(tokens: dict, macros_el) -> dict:
    """Tokens may use tokens (as Galaxy's expand_nested_tokens)."""
    for name in list(tokens):
        for other, value in tokens.items():
            if name in value:
                if name == other:
                    raise MacroError(macros_el, f"token {name!r} contains itself")
                tokens[other] = value.replace(name, tokens[name])
    return tokens


def _replace_tokens(element, tokens: dict):
    if not tokens:
        return
    for el in element.iter():
        if not isinstance(el.tag, str):
            continue
        if el.text:
            el.text = _replace(el.text, tokens)
        for key, value in list(el.attrib.items()):
            new_key, new_value = _replace(key, tokens), _replace(value, tokens)
            if new_key != key:
                del el.attrib[key]
            el.set(new_key, new_value)


def _replace(text: str, tokens: dict) -> str:
    for token, value in tokens.items():
        if token in text:
            text = text.replace(token, value)
    return text
