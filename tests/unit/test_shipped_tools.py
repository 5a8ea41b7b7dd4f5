"""The example wrappers shipped in tools/: Galaxy-style wrappers that Galaxy's own parser
(galaxy-tool-util) reads, each with <tests> whose files are in tools/test-data/ and a
<command> (and configfiles) that Cheetah compiles. The suite runs those <tests> end to
end through a server elsewhere; here nothing runs, the wrappers are only read.

Also pinned: the interface the other tests and clients submit to (tool ids, param names,
types and defaults, output names), which a rewrite of a wrapper must keep.
"""
from __future__ import annotations

import glob
import io
import os
import re
import xml.etree.ElementTree as ET

import pytest
from Cheetah.Template import Template
from docutils.core import publish_doctree
from galaxy.tool_util.parser import get_tool_source

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS_DIR = os.path.join(REPO, "tools")
TEST_DATA = os.path.join(TOOLS_DIR, "test-data")


def tool_files() -> list[str]:
    """Every XML file under tools/ whose root element is <tool> (not macros.xml)."""
    found = []
    for path in sorted(glob.glob(os.path.join(TOOLS_DIR, "**", "*.xml"), recursive=True)):
        if os.path.commonpath([path, TEST_DATA]) == TEST_DATA:
            continue
        if ET.parse(path).getroot().tag == "tool":
            found.append(path)
    return found


TOOL_FILES = tool_files()
IDS = [os.path.relpath(p, TOOLS_DIR) for p in TOOL_FILES]

# What clients and the other tests submit: id -> ({param: (type, default)}, [outputs]).
# A boolean's default is (checked, truevalue, falsevalue); a select's its selected option.
INTERFACE = {
    "cat_lines": ({"text": ("text", "hello"), "times": ("integer", "1")}, []),
    "checksum": ({"text": ("text", ""), "algorithm": ("select", "sha256sum")}, ["digest"]),
    "concatenate": ({"inputs": ("data", None)}, ["joined"]),
    "count_dataset": ({"input": ("data", None)}, ["counts"]),
    "fail": ({"message": ("text", "failing on purpose"), "exit_code": ("integer", "1")}, []),
    "gzip_dataset": ({"input": ("data", None)}, ["compressed"]),
    "noop": ({}, []),
    "sleep": ({"seconds": ("float", "10")}, []),
    "sort_lines": ({"text": ("text", ""), "reverse": ("boolean", (False, "-r", "")),
                    "numeric": ("boolean", (False, "-n", ""))}, ["sorted"]),
    "sort_tabular": ({"input": ("data", None), "column": ("integer", "1"),
                      "numeric": ("boolean", (False, "-n", "")),
                      "reverse": ("boolean", (False, "-r", ""))}, ["sorted"]),
    "word_count": ({"text": ("text", ""), "mode": ("select", "-w")}, ["report"]),
}


def walk(sources, prefix=""):
    """(flat name, input source) of every param, at any depth: a repeat's params appear
    as `name_N|param` with the index removed (`name|param`), a conditional's test param
    and its <when>s' params as `cond|param`."""
    for source in sources:
        kind = source.parse_input_type()
        name = source.get("name")
        if kind == "param":
            yield prefix + name, source
        elif kind == "conditional":
            test = source.parse_test_input_source()
            yield f"{prefix}{name}|{test.get('name')}", test
            for _value, when in source.parse_when_input_sources():
                yield from walk(when.parse_input_sources(), f"{prefix}{name}|")
        else:  # repeat, section
            yield from walk(source.parse_nested_inputs_source().parse_input_sources(),
                            f"{prefix}{name}|")


def params_of(tool_source) -> dict:
    pages = tool_source.parse_input_pages()
    if not pages.inputs_defined:
        return {}
    return dict(walk(pages.page_sources[0].parse_input_sources()))


def default_of(source):
    kind = source.get("type")
    if kind == "boolean":
        return (source.get_bool("checked", False), source.get("truevalue"), source.get("falsevalue"))
    if kind == "select":
        options = source.parse_static_options()
        return next((value for _label, value, selected in options if selected), options[0][1])
    if kind == "data":
        return None
    return source.get("value")


def flat_without_indexes(name: str) -> str:
    return re.sub(r"_\d+\|", "|", name)


def files_named_by_tests(tool_source) -> list[str]:
    data_params = {name for name, source in params_of(tool_source).items()
                   if source.get("type") == "data"}
    names = []
    for test in tool_source.parse_tests_to_dict()["tests"]:
        for item in test["inputs"]:
            if flat_without_indexes(item["name"]) in data_params:
                names += [n.strip() for n in str(item["value"]).split(",") if n.strip()]
        names += [output["value"] for output in test["outputs"] if output["value"]]
    return names


# -- the set of tools --------------------------------------------------------------------
def test_the_shipped_tools_are_all_found():
    ids = {get_tool_source(path).parse_id() for path in TOOL_FILES}
    assert set(INTERFACE) | {"sort_columns"} <= ids
    assert len(ids) == len(TOOL_FILES)  # no id shipped twice
    assert os.path.exists(os.path.join(TOOLS_DIR, "macros.xml"))


# -- each tool ----------------------------------------------------------------------------
@pytest.fixture(params=TOOL_FILES, ids=IDS)
def tool(request):
    return request.param, get_tool_source(request.param)


def test_parses_as_a_galaxy_wrapper_with_a_profile_and_help(tool):
    path, source = tool
    assert source.parse_id() and source.parse_name()
    version = source.parse_version()
    assert version and "@" not in version, f"{path}: token not expanded: {version!r}"
    profile = source.parse_profile()
    assert "@" not in profile and tuple(int(p) for p in profile.split(".")) >= (22, 5)
    help_ = source.parse_help()
    assert help_.format == "restructuredtext" and help_.content.strip()
    # valid reStructuredText: docutils reports no warning or error
    publish_doctree(help_.content, settings_overrides={"halt_level": 2, "report_level": 2,
                                                       "warning_stream": io.StringIO()})
    root = ET.parse(path).getroot()
    command = root.find("command")
    assert command is not None and command.get("detect_errors") == "exit_code"
    assert any(el.tag == "expand" for el in root), f"{path} expands no macro"


def test_has_tests_and_every_file_they_name_is_in_test_data(tool):
    path, source = tool
    tests = source.parse_tests_to_dict()["tests"]
    assert len(tests) >= 1, f"{path} has no <test>"
    if any(p.get("type") in ("boolean", "select") or p.get("type") == "integer"
           for p in params_of(source).values()):
        assert len(tests) >= 2, f"{path} has options but only one <test>"
    for test in tests:
        checks = test["outputs"] or test["stdout"] or test["stderr"] or test["expect_failure"]
        assert checks, f"{path}: a <test> that checks nothing"
    for name in files_named_by_tests(source):
        assert os.path.isfile(os.path.join(TEST_DATA, name)), f"{path}: test-data/{name} missing"


def test_command_and_configfiles_compile_with_cheetah(tool):
    path, source = tool
    command = source.parse_command()
    assert command and command.strip()
    Template.compile(source=command)
    for configfile in source.parse_template_configfiles():
        Template.compile(source=configfile.content)


def test_text_values_reach_the_command_quoted_or_only_through_a_file(tool):
    """Galaxy's default sanitizer leaves spaces and `*`, `?`, `(`...: the author quotes
    ('$text'). A text param with its own <sanitizer> (which may keep quotes) must not
    appear on the command line at all, only in a configfile."""
    path, source = tool
    command = source.parse_command()
    configfiles = "".join(c.content for c in source.parse_template_configfiles())
    for name, param in params_of(source).items():
        if param.get("type") != "text":
            continue
        uses = re.findall(r"(.?)\$\{?%s\b\}?(.?)" % re.escape(name), command)
        if param.parse_sanitizer_elem() is not None:
            assert not uses, f"{path}: {name} has its own sanitizer and is on the command line"
            assert re.search(r"\$\{?%s\b" % re.escape(name), configfiles), f"{path}: {name} unused"
        else:
            assert uses, f"{path}: {name} is not used"
            assert all(before == after == "'" for before, after in uses), \
                f"{path}: ${name} not single-quoted in the command"


@pytest.mark.parametrize("tool_id", sorted(INTERFACE))
def test_the_interface_other_tests_submit_to_is_kept(tool_id):
    sources = [s for s in map(get_tool_source, TOOL_FILES) if s.parse_id() == tool_id]
    assert len(sources) == 1, f"{tool_id}: {len(sources)} wrappers"
    params, outputs = INTERFACE[tool_id]
    found = {name: (p.get("type"), default_of(p)) for name, p in params_of(sources[0]).items()}
    assert found == params
    assert list(sources[0].parse_outputs(None)[0]) == outputs


# -- details worth pinning ----------------------------------------------------------------
def test_test_data_holds_only_files_some_test_uses():
    used = set()
    for path in TOOL_FILES:
        used |= set(files_named_by_tests(get_tool_source(path)))
    assert sorted(os.listdir(TEST_DATA)) == sorted(used)


def test_sort_columns_has_a_conditional_and_a_repeat_of_data_columns():
    source = get_tool_source(os.path.join(TOOLS_DIR, "sort_columns.xml"))
    params = params_of(source)
    assert params["header|has_header"].get("type") == "select"
    assert params["header|header_lines"].get("type") == "integer"
    column = params["sortkeys|column"]
    assert column.get("type") == "data_column" and column.get("data_ref") == "input"
    repeat = next(s for s in source.parse_input_pages().page_sources[0].parse_input_sources()
                  if s.parse_input_type() == "repeat")
    assert repeat.get("name") == "sortkeys" and repeat.get("min") == "1"
    tests = [{i["name"]: i["value"] for i in t["inputs"]}
             for t in source.parse_tests_to_dict()["tests"]]
    assert any("sortkeys_1|column" in test for test in tests)  # two keys in one test
    assert {test.get("header|has_header") for test in tests} >= {"yes", "no"}  # both <when>s


def test_macros_expand_to_the_shared_version_and_profile():
    versions = {get_tool_source(p).parse_version() for p in TOOL_FILES}
    profiles = {get_tool_source(p).parse_profile() for p in TOOL_FILES}
    macros = ET.parse(os.path.join(TOOLS_DIR, "macros.xml")).getroot()
    tokens = {t.get("name"): t.text for t in macros.iter("token")}
    assert versions == {tokens["@WRAPPER_VERSION@"]}
    assert profiles == {tokens["@PROFILE@"]}
    gzip = get_tool_source(os.path.join(TOOLS_DIR, "gzip_dataset.xml"))
    requirements = gzip.parse_requirements()[0]
    assert [(r.type, r.name) for r in requirements] == [("package", "gzip")]
