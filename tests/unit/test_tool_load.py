"""muleteer/tools/load.py (one Galaxy wrapper -> the model) and toolbox.py (the panel)."""
import math
import os
import shutil
import textwrap

import pytest

from muleteer.tools.errors import ToolError
from muleteer.tools.load import load_tool
from muleteer.tools.model import (ChangeFormat, Conditional, ConfigFile, Container, Level,
                                  Param, ParamType, Repeat, Requirement, Section)
from muleteer.tools.sanitize import sanitize_text
from muleteer.tools.toolbox import load_toolbox
from tests.support.shared_tools import text_processing_dir

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "data", "tool_load")
FIXTURES = os.path.abspath(FIXTURES)
TEXT_PROCESSING = text_processing_dir()

needs_text_processing = pytest.mark.skipif(
    not os.path.isdir(TEXT_PROCESSING),
    reason=f"the reference Galaxy wrappers are not here ({TEXT_PROCESSING} is absent)")


def fixture(name):
    return os.path.join(FIXTURES, name)


def by_name(inputs, name):
    return next(i for i in inputs if i.name == name)


@pytest.fixture
def tool_file(tmp_path):
    """write(xml) -> path of a tool file in tmp_path (dedented)."""
    def write(xml, name="tool.xml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(xml).lstrip())
        return str(path)
    return write


def tool_xml(inputs="", outputs="", extra="", attrs='profile="22.05"'):
    return f"""
        <tool id="t" name="T" version="1.0" {attrs}>
            <command>echo</command>
            {extra}
            <inputs>
                {inputs}
            </inputs>
            <outputs>
                {outputs}
            </outputs>
        </tool>"""


# -- the reference wrappers -------------------------------------------------------------

@needs_text_processing
@pytest.mark.parametrize("name", ["cat", "cut", "grep", "head", "nl", "sed", "sort",
                                  "sort_rows", "tac", "tail"])
def test_every_reference_wrapper_loads(name):
    tool = load_tool(os.path.join(TEXT_PROCESSING, f"{name}.xml"))
    # macros.xml's tokens and <xml> macros were expanded.
    assert tool.version == "9.3+galaxy0"
    assert tool.profile == "23.1"
    assert Requirement("package", "coreutils", "9.3") in tool.requirements or name in (
        "grep", "sed", "sort_rows")
    assert "@" not in tool.version
    assert tool.tool_dir == TEXT_PROCESSING
    assert tool.outputs
    assert not tool.stdio.legacy_stderr


@needs_text_processing
def test_sort_repeat_of_data_columns():
    tool = load_tool(os.path.join(TEXT_PROCESSING, "sort.xml"))
    assert tool.id == "tp_sort_header_tool"
    repeat = by_name(tool.inputs, "sortkeys")
    assert isinstance(repeat, Repeat)
    assert (repeat.min, repeat.max, repeat.default, repeat.title) == (1, None, 1,
                                                                      "Column selections")
    column = by_name(repeat.inputs, "column")
    assert column.type == ParamType.DATA_COLUMN
    assert column.data_ref == "infile" and column.accept_default
    order = by_name(repeat.inputs, "order")
    assert order.display == "radio" and [o.value for o in order.options] == ["", "r"]
    header = by_name(tool.inputs, "header")
    assert header.validators[0].type == "in_range" and header.validators[0].min == 0
    assert by_name(tool.inputs, "unique").truevalue == "--unique"
    assert tool.outputs[0].format_source == "infile"
    assert tool.data_params() == [("infile", by_name(tool.inputs, "infile"))]
    # The literal TAB of -t '<TAB>' survives in the command template.
    assert "-t '\t'" in tool.command


@needs_text_processing
def test_cut_nested_conditionals():
    tool = load_tool(os.path.join(TEXT_PROCESSING, "cut.xml"))
    cond = by_name(tool.inputs, "cut_type_options")
    assert isinstance(cond, Conditional)
    assert cond.test.name == "cut_element"
    assert [w.value for w in cond.whens] == ["-f", "-c"]
    inner = by_name(cond.when("-f").inputs, "colnames_option")
    assert isinstance(inner, Conditional)
    assert [o.value for o in inner.test.options if o.selected] == ["N"]
    with_header = by_name(inner.when("Y").inputs, "list")
    assert with_header.use_header_names and with_header.multiple
    assert not by_name(inner.when("N").inputs, "list").use_header_names
    chars = by_name(cond.when("-c").inputs, "list")
    assert chars.type == ParamType.TEXT
    # <valid initial="string.printable"><remove value="'"/>: no mapping, so ' becomes X.
    assert sanitize_text("1,3;'x'", chars.sanitizer) == "1,3;XxX"


@needs_text_processing
def test_nl_argument_derived_names():
    tool = load_tool(os.path.join(TEXT_PROCESSING, "nl.xml"))
    names = [i.name for i in tool.inputs]
    assert names == ["input", "line_increment", "starting_line_number", "number_format",
                     "number_width"]
    increment = by_name(tool.inputs, "line_increment")
    assert increment.argument == "--line-increment"
    assert increment.type == ParamType.INTEGER and increment.value == "1"
    assert by_name(tool.inputs, "number_width").min == 1


@needs_text_processing
def test_sed_configfile_and_grep_change_format():
    sed = load_tool(os.path.join(TEXT_PROCESSING, "sed.xml"))
    assert [(c.name, c.kind) for c in sed.configfiles] == [("sed_script", "configfile")]
    assert "$code" in sed.configfiles[0].text
    assert by_name(sed.inputs, "code").area
    grep = load_tool(os.path.join(TEXT_PROCESSING, "grep.xml"))
    assert grep.outputs[0].change_format == (ChangeFormat("color", "COLOR", "html"),)


@needs_text_processing
def test_toolbox_over_reference_folder():
    toolbox = load_toolbox(TEXT_PROCESSING)
    assert toolbox.errors == []   # macros.xml is not a tool; test-data/ is skipped
    assert len(toolbox) == 10
    assert "nl" in toolbox and "macros" not in toolbox
    names = [t.name for t in toolbox.values()]
    assert names == sorted(names, key=str.lower)


# -- our fixture: every element ---------------------------------------------------------

@pytest.fixture(scope="module")
def full():
    return load_tool(fixture("full.xml"), section="Text")


def test_full_tool_header(full):
    assert (full.id, full.name, full.version, full.profile) == ("full", "Full tool",
                                                                "2.1+galaxy3", "23.1")
    assert full.description == "uses every supported element"
    assert full.section == "Text"
    assert full.help.startswith("**What it does**")
    assert full.version_command == "cat --version"
    assert "cat '$input'" in full.command
    assert full.path == fixture("full.xml") and full.tool_dir == FIXTURES
    assert full.requirements == (Requirement("package", "coreutils", "2.1"),
                                 Requirement("package", "sed", "4.8"))
    assert full.containers == (Container("docker", "debian:12"),)


def test_full_tool_stdio(full):
    # <stdio> first, then detect_errors="exit_code"'s rules, as Galaxy orders them.
    codes = [(c.low, c.high, c.level) for c in full.stdio.exit_codes]
    assert codes[:2] == [(2, math.inf, Level.FATAL), (1, 1, Level.WARNING)]
    assert (-math.inf, -1, Level.FATAL) in codes and (1, math.inf, Level.FATAL) in codes
    regex = full.stdio.regexes[0]
    assert (regex.match, regex.stdout, regex.stderr, regex.level) == ("^Warning:", False,
                                                                      True, Level.WARNING)
    assert full.stdio.exit_codes[0].description == "Bad things"
    assert not full.stdio.legacy_stderr


def test_full_tool_params(full):
    lines = by_name(full.inputs, "max_lines")
    assert (lines.argument, lines.min, lines.max, lines.value) == ("--max-lines", 1, 1000, "10")
    assert lines.validators[0].exclude_max and lines.validators[0].message == "too many"
    assert by_name(full.inputs, "ratio").optional
    pattern = by_name(full.inputs, "pattern")
    assert [v.type for v in pattern.validators] == ["regex", "length"]
    assert pattern.validators[0].expression == "^[a-z.]*$"
    assert (pattern.validators[1].min, pattern.validators[1].max) == (1, 20)
    assert sanitize_text("a.b|c'", pattern.sanitizer) == "a.b__pipe__c_"
    assert by_name(full.inputs, "secret").type == ParamType.HIDDEN
    assert by_name(full.inputs, "colour").value == "#ff0000"
    column = by_name(full.inputs, "column")    # from an <xml> macro with a tokens= attribute
    assert column.numerical and column.label == "Column" and column.data_ref == "input"
    names = by_name(full.inputs, "names")
    assert names.multiple and names.optional
    assert names.dynamic_options.from_dataset == "input"
    assert (names.dynamic_options.value_column, names.dynamic_options.name_column) == (0, 1)
    assert names.dynamic_options.startswith == "#"
    assert names.validators[0].type == "no_options"
    builtin = by_name(full.inputs, "builtin").dynamic_options
    assert builtin.from_file == "builtin.loc" and builtin.name_column == builtin.value_column == 2


def test_full_tool_groups(full):
    cond = by_name(full.inputs, "mode_cond")
    assert [w.value for w in cond.whens] == ["fast", "slow", "none"]   # "none" added, empty
    assert cond.when("none").inputs == ()
    inner = by_name(cond.when("slow").inputs, "inner")
    assert inner.test.type == ParamType.BOOLEAN and inner.test.checked
    # A boolean test's values are its truevalue/falsevalue; the missing one gets a case.
    assert [w.value for w in inner.whens] == ["--deep", ""]
    assert inner.when(True).inputs[0].name == "depth"
    repeat = by_name(full.inputs, "queries")
    assert (repeat.min, repeat.max, repeat.default) == (1, 5, 2)
    assert repeat.inputs[0].multiple and repeat.inputs[0].formats == ("txt",)
    section = by_name(full.inputs, "advanced")
    assert isinstance(section, Section) and section.expanded and section.help == "more"
    assert by_name(section.inputs, "flag").checked
    assert by_name(section.inputs, "label_text").sanitizer.off
    assert [p for p, _ in full.data_params()] == ["input", "queries_%d|query_input"]


def test_full_tool_outputs(full):
    out, report, split = full.outputs
    assert out.label == "${tool.name} on ${on_string}"
    assert out.change_format == (ChangeFormat("mode_cond|mode", "slow", "txt"),)
    assert (report.format_source, report.metadata_source) == ("input", "input")
    assert report.from_work_dir == "sub/report.txt" and report.hidden
    assert report.filters == ("advanced['flag']",)
    named, custom = split.discover
    assert named.pattern == r"(?P<designation>.*)\.(?P<ext>[^\._]+)?"
    assert (named.directory, named.visible, named.format) == ("parts", True, "txt")
    assert (custom.format, custom.sort_by) == ("tabular", "reverse_numeric_designation")


def test_full_tool_configfiles_and_environment(full):
    assert full.configfiles == (
        ConfigFile(name="config", kind="configfile", text="mode=$mode"),
        ConfigFile(name="params_json", kind="inputs", filename="params.json",
                   data_style="paths"))
    (env,) = full.environment
    assert (env.name, env.text, env.strip, env.inject) == ("MY_MODE", "$mode", True, None)


def test_legacy_minimal_form_loads():
    tool = load_tool(fixture("legacy.xml"))
    assert tool.profile == "16.01"
    assert [(p.name, p.type) for p in tool.inputs] == [
        ("t", ParamType.TEXT), ("i", ParamType.INTEGER), ("f", ParamType.FLOAT),
        ("b", ParamType.BOOLEAN), ("s", ParamType.SELECT), ("d", ParamType.DATA)]
    assert tool.command == "echo $t $i $f $b $s > $out"
    assert tool.outputs[0].format == "input"
    # Galaxy before profile 16.04, without <stdio>: anything on stderr is an error.
    assert tool.stdio.legacy_stderr
    assert tool.stdio.exit_codes == () and tool.stdio.regexes == ()


def test_profile_1604_without_stdio_uses_exit_code(tool_file):
    tool = load_tool(tool_file(tool_xml(attrs='profile="16.04"')))
    assert not tool.stdio.legacy_stderr
    assert [(c.low, c.high) for c in tool.stdio.exit_codes] == [(-math.inf, -1), (1, math.inf)]


def test_tool_sanitize_false_turns_every_default_off(tool_file):
    xml = tool_xml('<param name="x" type="text"/>', extra='<options sanitize="False"/>')
    assert load_tool(tool_file(xml)).inputs[0].sanitizer.off


# -- broken wrappers: file and line ---------------------------------------------------------

@pytest.mark.parametrize("name,line,text", [
    ("missing_import.xml", 3, "no_such_macros.xml cannot be read"),
    ("unknown_macro.xml", 7, 'macro="no_such_macro"'),
    ("undefined_token.xml", 7, "@NO_SUCH_TOKEN@ is not a defined <token>"),
    ("broken_xml.xml", 5, "not well-formed XML"),
    ("expression_validator.xml", 5, "expression validators are not evaluated"),
])
def test_broken_fixture_names_file_and_line(name, line, text):
    with pytest.raises(ToolError) as info:
        load_tool(fixture(name))
    message = str(info.value)
    assert message.startswith(f"{fixture(name)}, line {line}: "), message
    assert text in message


def test_broken_macros_file_names_the_macros_file(tmp_path, tool_file):
    (tmp_path / "bad_macros.xml").write_text("<macros>\n  <xml name='x'>\n</macros>\n")
    path = tool_file("""
        <tool id="t" name="T" version="1">
            <macros><import>bad_macros.xml</import></macros>
            <command>echo</command>
        </tool>""")
    with pytest.raises(ToolError, match=rf"^{tmp_path}/bad_macros.xml, line 3: not well-formed "
                                        rf"XML \(imported by {path}\)"):
        load_tool(path)


def test_error_inside_a_macro_names_the_macros_file(tmp_path, tool_file):
    (tmp_path / "m.xml").write_text('<macros>\n  <xml name="p">\n'
                                    '    <param name="n" type="integer" min="low"/>\n'
                                    '  </xml>\n</macros>\n')
    tool_file("""
        <tool id="t" name="T" version="1">
            <macros><import>m.xml</import></macros>
            <command>echo</command>
            <inputs><expand macro="p"/></inputs>
        </tool>""", name="t.xml")
    with pytest.raises(ToolError, match=rf"^{tmp_path}/m.xml, line 3: <param> min='low' is "
                                        "not a number"):
        load_tool(str(tmp_path / "t.xml"))


@pytest.mark.parametrize("inputs,outputs,extra,message", [
    ('<param name="c" type="data_collection"/>', "", "",
     "line 5: param 'c': type 'data_collection' is not supported"),
    ('<param name="g" type="genomebuild"/>', "", "", "type 'genomebuild' is not supported"),
    ('<param name="d" type="drill_down"/>', "", "", "type 'drill_down' is not supported"),
    ("", '<collection name="list" type="list"/>', "",
     "line 8: <collection name='list'>: output collections are not supported"),
    ('<param name="n" type="integer" value="x"/>', "", "",
     "line 5: <param> value='x' is not a whole number"),
    ('<param name="n" type="float" max="big"/>', "", "", "<param> max='big' is not a number"),
    ('<param name="s" type="select"><options from_data_table="fasta"/></param>', "", "",
     "<options from_data_table> is not supported"),
    ('<param name="s" type="select"><options from_parameter="x"/></param>', "", "",
     "<options from_parameter> is not supported"),
    ('<param name="s" type="select"><options from_dataset="nope">'
     '<column name="value" index="0"/></options></param>', "", "",
     "refers to 'nope', which is not a data param"),
    ('<param name="t" type="text"><validator type="dataset_ok_validator"/></param>', "", "",
     "validator type 'dataset_ok_validator' is not supported"),
    ('<param type="text"/>', "", "", "<param> has no name (nor argument)"),
    ('<param name="a" type="text"/><param name="a" type="text"/>', "", "",
     "the name 'a' is used twice"),
    ("", '<data name="o" from_work_dir="../escape.txt"/>', "",
     "from_work_dir '../escape.txt' must be a path inside"),
    ("", '<data name="o" from_work_dir="/etc/passwd"/>', "", "from_work_dir '/etc/passwd'"),
    ("", '<data name="o" format_source="nope"/>', "", "format_source='nope' is not a data param"),
    ("", '<data name="o"><filter>__import__("os").system("x")</filter></data>', "",
     "line 8: output 'o': <filter>"),
    ("", "", '<environment_variables><environment_variable name="K" inject="api_key"/>'
     "</environment_variables>", "injected keys are not supported"),
    ('<conditional name="c"><param name="t" type="text"/></conditional>', "", "",
     "its test param must be a select or boolean"),
    ('<repeat name="r" title="R" min="3" max="1"/>', "", "", "do not make a range"),
])
def test_refusals_name_file_line_and_what(tool_file, inputs, outputs, extra, message):
    path = tool_file(tool_xml(inputs, outputs, extra))
    with pytest.raises(ToolError) as info:
        load_tool(path)
    assert str(info.value).startswith(f"{path}, line "), str(info.value)
    assert message in str(info.value)


def test_bad_stdio_regex_is_refused(tool_file):
    path = tool_file(tool_xml(extra='<stdio><regex match="(unclosed"/></stdio>'))
    with pytest.raises(ToolError, match="not a valid regular expression"):
        load_tool(path)


def test_root_must_be_tool(tool_file):
    with pytest.raises(ToolError, match="line 1: the root element must be <tool>"):
        load_tool(tool_file("<macros/>"))


# -- the toolbox -----------------------------------------------------------------------

def test_toolbox_over_fixture_folder_loads_good_and_lists_broken():
    toolbox = load_toolbox(FIXTURES)
    assert sorted(t.id for t in toolbox.values()) == ["full", "legacy_form", "multi"]
    broken = ["broken_xml.xml", "expression_validator.xml", "missing_import.xml",
              "undefined_token.xml", "unknown_macro.xml"]
    assert len(toolbox.errors) == len(broken)
    for name, error in zip(broken, sorted(toolbox.errors)):
        assert error.startswith(f"{fixture(name)}, line "), error
    # test-data/ is skipped; macros.xml and tool_conf.xml are not tools.
    assert not any("test-data" in e or "macros.xml," in e for e in toolbox.errors)
    assert toolbox.sections == [(None, ["full", "legacy_form", "multi"])]


def test_two_versions_newest_wins():
    toolbox = load_toolbox(FIXTURES)
    assert toolbox.versions("multi") == ["1.0", "1.9", "1.10"]   # not string order
    assert toolbox.get("multi").version == "1.10"
    assert toolbox.get("multi", "1.0").name == "Multi 1.0"
    assert toolbox.get("multi", "2.0") is None and toolbox.get("nope") is None
    assert len(toolbox) == 3 and "multi" in toolbox and "nope" not in toolbox
    assert [t.version for t in toolbox.values() if t.id == "multi"] == ["1.10"]


def test_non_pep440_versions_sort_naturally(tmp_path):
    for version in ("1.0.a", "1.0.b", "2.0"):
        (tmp_path / f"v{version}.xml").write_text(
            f'<tool id="x" name="X" version="{version}"><command>echo</command></tool>')
    toolbox = load_toolbox(str(tmp_path))
    assert toolbox.get("x").version == "2.0"
    assert toolbox.versions("x") == ["1.0.a", "1.0.b", "2.0"]


def test_repeated_id_and_version_skips_the_second(tmp_path):
    shutil.copy(fixture("legacy.xml"), tmp_path / "a.xml")
    shutil.copy(fixture("legacy.xml"), tmp_path / "b.xml")
    toolbox = load_toolbox(str(tmp_path))
    assert toolbox.get("legacy_form").path == str(tmp_path / "a.xml")
    assert toolbox.errors == [f"{tmp_path}/b.xml: tool 'legacy_form' version '1.0.0' is "
                              f"already defined in {tmp_path}/a.xml; this file is skipped"]


def test_tool_conf_sections_and_labels(tmp_path):
    toolbox = load_toolbox(str(tmp_path), fixture("tool_conf.xml"))
    assert toolbox.sections == [
        (None, [("label", "Start here"), "legacy_form"]),
        ("Text Manipulation", [("label", "Basics"), "full", "multi"]),
        ("Broken", []),
    ]
    assert toolbox.get("full").section == "Text Manipulation"
    assert toolbox.get("legacy_form").section is None
    assert toolbox.get("multi", "1.9").hidden    # hidden="true" in tool_conf: not in panel
    assert toolbox.versions("multi") == ["1.0", "1.9", "1.10"]
    assert [e.split(":")[0].split(",")[0] for e in toolbox.errors] == [
        fixture("broken_xml.xml"), fixture("no_such_file.xml")]


def test_tool_conf_default_tool_path_is_the_setting(tmp_path):
    conf = tmp_path / "tool_conf.xml"
    conf.write_text('<toolbox>\n  <section id="s" name="S"><tool file="legacy.xml"/></section>\n'
                    '</toolbox>\n')
    toolbox = load_toolbox(FIXTURES, str(conf))
    assert toolbox.sections == [("S", ["legacy_form"])]


@pytest.mark.parametrize("text,message", [
    ("<toolbox>\n<section id='s' name='S'>\n</toolbox>", "line 3: not well-formed XML"),
    ("<tools/>", "line 1: the root element must be <toolbox>"),
    ("<toolbox>\n  <tool/>\n</toolbox>", "line 2: <tool> needs a file attribute"),
    ("<toolbox>\n  <workflow id='w'/>\n</toolbox>", "line 2: <workflow> is not supported"),
    ("<toolbox>\n  <section id='a' name='A'>\n    <section id='b' name='B'/>\n  </section>\n"
     "</toolbox>", "line 3: a <section> cannot hold another <section>"),
])
def test_malformed_tool_conf_is_a_startup_error(tmp_path, text, message):
    conf = tmp_path / "tool_conf.xml"
    conf.write_text(text)
    with pytest.raises(ToolError) as info:
        load_toolbox(FIXTURES, str(conf))
    assert str(info.value).startswith(f"{conf}, "), str(info.value)
    assert message in str(info.value)


def test_missing_tool_conf_is_a_startup_error(tmp_path):
    with pytest.raises(ToolError, match="cannot read the tool configuration"):
        load_toolbox(FIXTURES, str(tmp_path / "nope.xml"))


def test_shipped_tools_load():
    repo_tools = os.path.join(HERE, "..", "..", "tools")
    toolbox = load_toolbox(repo_tools)
    assert toolbox.errors == []
    assert len(toolbox) >= 1
    assert all(isinstance(i, (Param, Conditional, Repeat, Section))
               for t in toolbox.values() for i in t.inputs)


def test_an_input_named_like_a_dict_method_is_loaded_with_a_warning(tmp_path, caplog):
    """Cheetah reads `$keys` as the namespace's own keys(): the admin is told at load."""
    path = tmp_path / "keys.xml"
    path.write_text('<tool id="k" name="K" version="1" profile="22.05">'
                    '<command>echo</command><inputs>'
                    '<repeat name="keys" title="Key"><param name="c" type="integer" value="1"/></repeat>'
                    '<param name="fine" type="text"/></inputs></tool>')
    with caplog.at_level("WARNING", logger="muleteer.tools.load"):
        tool = load_tool(str(path))
    assert [i.name for i in tool.inputs] == ["keys", "fine"]
    assert any("'keys' reads as a dict method" in r.getMessage() for r in caplog.records)
    assert not any("'fine'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("image", ["bad image", "debian;rm -rf /", "-v/:/host", "$(id)"])
def test_a_docker_container_that_is_not_a_plain_image_reference_is_refused(tool_file, image):
    """The image reaches a container command line: refused when the tool loads, saying
    where, not when a job runs."""
    extra = f'<requirements><container type="docker">{image}</container></requirements>'
    with pytest.raises(ToolError, match=r"line 3: <container>: .* is not a plain image"):
        load_tool(tool_file(tool_xml(extra=extra)))
