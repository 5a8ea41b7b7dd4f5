"""muleteer/tools.py: tool XML, parameter validation and the (always quoted) command line."""
import glob
import hashlib
import math
import os
import subprocess

import pytest

from muleteer.tools_legacy import MAX_TEXT, ParamError, ToolError, load_tool, load_tools

ALL_TYPES = """
<tool id="all_types" name="All types" version="2.0">
    <command>echo $t $i $f $b $s $opt_i ${req} > $out</command>
    <inputs>
        <param name="t" type="text" value="dflt"/>
        <param name="i" type="integer" value="5" min="1" max="10"/>
        <param name="f" type="float" value="0.5" min="0" max="1"/>
        <param name="b" type="boolean" truevalue="--yes" falsevalue="--no" checked="true"/>
        <param name="s" type="select">
            <option value="a">A</option>
            <option value="b" selected="true">B</option>
        </param>
        <param name="opt_i" type="integer" optional="true"/>
        <param name="req" type="text"/>
    </inputs>
    <outputs><data name="out" format="tsv"/></outputs>
</tool>
"""


@pytest.fixture
def tool(write):
    return load_tool(write("all_types.xml", ALL_TYPES))


def check(tool, name, raw):
    """The validated value of one parameter (the required one filled in)."""
    return tool.validate({"req": "r", name: raw})[name]


def rejected(tool, name, raw) -> ParamError:
    with pytest.raises(ParamError) as info:
        tool.validate({"req": "r", name: raw})
    assert info.value.field == f"params.{name}"
    assert str(info.value).startswith(f"params.{name}: ")
    return info.value


# -- shipped tools -----------------------------------------------------------------------
def test_every_shipped_tool_loads(repo):
    paths = sorted(glob.glob(os.path.join(repo, "tools", "*.xml")))
    tools = load_tools(os.path.join(repo, "tools"))
    assert len(tools) == len(paths) >= 7
    assert {"cat_lines", "checksum", "fail", "noop", "sleep", "sort_lines",
            "word_count"} <= set(tools)
    for tool_id, tool in tools.items():
        assert tool.path.endswith(f"/{tool_id}.xml")
        assert tool.name and tool.version and tool.command
        described = tool.describe(full=True)
        assert described["id"] == tool_id
        assert [p["name"] for p in described["inputs"]] == [p.name for p in tool.params]


def test_every_shipped_tool_runs_with_its_defaults_through_bash_syntax_check(repo):
    for tool in load_tools(os.path.join(repo, "tools")).values():
        # A data param has no default: give it dataset 1 (a list of it for a multiple one).
        datasets = {p.name: [{"src": "dataset", "id": 1}] if p.multiple else
                    {"src": "dataset", "id": 1} for p in tool.data_params()}
        values = tool.validate(datasets)
        command = tool.command_line(values, lambda i: f"/files/000/dataset_{i}.dat")
        result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True,
                                timeout=10)
        assert result.returncode == 0, (tool.id, command, result.stderr)


def test_shipped_defaults(repo):
    tools = load_tools(os.path.join(repo, "tools"))
    assert tools["cat_lines"].validate({}) == {"text": "hello", "times": 1}
    assert tools["checksum"].validate({}) == {"text": "", "algorithm": "sha256sum"}
    assert tools["sleep"].validate({}) == {"seconds": 10.0}
    assert tools["sort_lines"].validate({}) == {"text": "", "reverse": False, "numeric": False}
    assert tools["word_count"].validate({}) == {"text": "", "mode": "-w"}
    assert tools["checksum"].output("digest").relative_path() == "digest.txt"
    assert tools["sort_lines"].output("sorted").relative_path() == "outputs/sorted.txt"


# -- validation --------------------------------------------------------------------------
def test_defaults_fill_what_is_not_sent(tool):
    assert tool.validate({"req": "x"}) == {
        "t": "dflt", "i": 5, "f": 0.5, "b": True, "s": "b", "opt_i": None, "req": "x"}


@pytest.mark.parametrize("name, raw", [("i", ""), ("f", ""), ("s", ""), ("i", None), ("t", None)])
def test_empty_or_null_means_the_default(tool, name, raw):
    assert check(tool, name, raw) == tool.param(name).value


def test_required_missing(tool):
    with pytest.raises(ParamError) as info:
        tool.validate({})
    assert info.value.field == "params.req"
    assert info.value.message == "required"


def test_optional(tool):
    assert check(tool, "opt_i", None) is None
    assert check(tool, "opt_i", "") is None
    assert check(tool, "opt_i", 3) == 3


def test_unknown_parameter_name(tool):
    with pytest.raises(ParamError) as info:
        tool.validate({"req": "x", "rm_rf": "/"})
    assert info.value.field == "params.rm_rf"
    assert "not a parameter of tool all_types" in info.value.message


@pytest.mark.parametrize("submitted", [[1, 2], "t=1", 5, True])
def test_params_must_be_an_object(tool, submitted):
    with pytest.raises(ParamError) as info:
        tool.validate(submitted)
    assert info.value.field == "params"


def test_params_none_is_an_empty_object(repo):
    assert load_tool(os.path.join(repo, "tools", "noop.xml")).validate(None) == {}


@pytest.mark.parametrize("raw, value", [
    ("hello", "hello"), ("", ""), (12, "12"), (1.5, "1.5"), ("x" * MAX_TEXT, "x" * MAX_TEXT),
    ("line 1\nline 2", "line 1\nline 2"), ("ünïcödé ✓", "ünïcödé ✓")])
def test_text(tool, raw, value):
    assert check(tool, "t", raw) == value


@pytest.mark.parametrize("raw, message", [
    ("x" * (MAX_TEXT + 1), "too long"), ("a\x00b", "NUL"), (True, "expected text"),
    (["a"], "expected text"), ({"a": 1}, "expected text")])
def test_text_rejected(tool, raw, message):
    assert message in rejected(tool, "t", raw).message


def test_text_with_lone_surrogate_is_rejected(tool):
    rejected(tool, "t", "\ud800")


@pytest.mark.parametrize("raw, value", [
    (7, 7), ("7", 7), (" 7 ", 7), (7.0, 7), ("10", 10), (1, 1)])
def test_integer(tool, raw, value):
    result = check(tool, "i", raw)
    assert result == value and type(result) is int


@pytest.mark.parametrize("raw, message", [
    (True, "got a boolean"), (False, "got a boolean"), (7.5, "whole number"),
    ("7.5", "whole number"), ("seven", "whole number"), ("1e3", "whole number"),
    ([7], "whole number"), (float("inf"), "must be a finite number"),
    (float("nan"), "must be a finite number"),
    (0, "below the minimum 1"), (11, "above the maximum 10"), ("-3", "below the minimum")])
def test_integer_rejected(tool, raw, message):
    assert message in rejected(tool, "i", raw).message


@pytest.mark.parametrize("raw, value", [
    (0.25, 0.25), ("0.25", 0.25), (1, 1.0), ("0", 0.0), (" 1e-1 ", 0.1), (0, 0.0)])
def test_float(tool, raw, value):
    result = check(tool, "f", raw)
    assert result == value and type(result) is float


@pytest.mark.parametrize("raw, message", [
    (float("inf"), "must be a finite number"), (float("-inf"), "must be a finite number"),
    (float("nan"), "must be a finite number"), ("inf", "must be a finite number"),
    ("NaN", "must be a finite number"), ("-Infinity", "must be a finite number"),
    (10 ** 400, "must be a finite number"),
    (True, "got a boolean"), ("half", "expected a number"), ({}, "expected a number"),
    (1.5, "above the maximum 1"), (-0.1, "below the minimum 0")])
def test_float_rejected(tool, raw, message):
    assert message in rejected(tool, "f", raw).message


@pytest.mark.parametrize("raw, value", [
    (True, True), (False, False), ("true", True), ("TRUE", True), ("on", True), ("yes", True),
    ("1", True), ("false", False), ("off", False), ("No", False), ("0", False)])
def test_boolean(tool, raw, value):
    assert check(tool, "b", raw) is value


@pytest.mark.parametrize("raw", ["maybe", "", "2", 2, [True], {}])
def test_boolean_rejected(tool, raw):
    assert "expected true or false" in rejected(tool, "b", raw).message


def test_select(tool):
    assert check(tool, "s", "a") == "a"
    assert check(tool, "s", "b") == "b"


@pytest.mark.parametrize("raw", ["c", "A", " a", 1, ["a"], True])
def test_select_not_in_options(tool, raw):
    assert "is not one of a, b" in rejected(tool, "s", raw).message


# -- command building --------------------------------------------------------------------
HOSTILE = [
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
    "&& touch pwned || touch pwned &",
    "| touch pwned",
    "> pwned",
    "' ; touch pwned; echo '",
    '" ; touch pwned; echo "',
    "it's \"quoted\"",
    "line one\ntouch pwned\nline three",
    "  spaces   inside and around  ",
    "$HOME ${PATH} $$ $1",
    "\\ back\\slash \\n",
    "* ? [a-z]",
    "-n",
    "",
    "ünïcödé ✓ \t tab",
    "$(touch pwned)`touch pwned`;touch pwned\n$(touch pwned)",
]


def bash(command, cwd, env=None):
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True,
                          timeout=10, env=env)


@pytest.mark.parametrize("text", HOSTILE)
def test_values_reach_the_command_literally(repo, tmp_path, text):
    cat_lines = load_tool(os.path.join(repo, "tools", "cat_lines.xml"))
    (tmp_path / "a-file").write_text("")  # something for an unquoted glob to expand to
    result = bash(cat_lines.command_line(cat_lines.validate({"text": text, "times": 2})), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{text}\n" * 2
    assert result.stderr == ""
    assert sorted(os.listdir(tmp_path)) == ["a-file"]  # no pwned, nothing else created


def test_hostile_values_in_every_position(tmp_path, write):
    tool = load_tool(write("tool/all_types.xml", ALL_TYPES))
    workdir = tmp_path / "work"
    (workdir / "outputs").mkdir(parents=True)
    values = tool.validate({"t": "$(touch pwned)", "req": "`touch pwned`; touch pwned", "i": "3"})
    result = bash(tool.command_line(values), workdir)
    assert result.returncode == 0, result.stderr
    assert os.listdir(workdir) == ["outputs"]
    assert (workdir / "outputs" / "out.tsv").read_text() == \
        "$(touch pwned) 3 0.5 --yes b  `touch pwned`; touch pwned\n"  # opt_i: an empty word


def test_booleans_insert_the_admins_flags_and_outputs_are_paths(repo, tmp_path):
    sort_lines = load_tool(os.path.join(repo, "tools", "sort_lines.xml"))
    (tmp_path / "outputs").mkdir()
    values = sort_lines.validate({"text": "10\n9\n100", "reverse": True, "numeric": "true"})
    command = sort_lines.command_line(values)
    assert "sort -r -n > outputs/sorted.txt" in command
    assert bash(command, tmp_path).returncode == 0
    assert (tmp_path / "outputs" / "sorted.txt").read_text() == "100\n10\n9\n"


def test_select_value_in_the_command(repo, tmp_path):
    checksum = load_tool(os.path.join(repo, "tools", "checksum.xml"))
    result = bash(checksum.command_line(checksum.validate({"text": "abc", "algorithm": "md5sum"})),
                  tmp_path)
    assert result.stdout.split()[0] == hashlib.md5(b"abc").hexdigest()
    assert (tmp_path / "digest.txt").exists()


def test_numbers_are_rendered_plainly(repo):
    sleep = load_tool(os.path.join(repo, "tools", "sleep.xml"))
    assert sleep.command_line({"seconds": 2.0}) == 'echo "sleeping 2 s"; sleep 2; echo done'
    assert sleep.command_line({"seconds": 0.25}) == 'echo "sleeping 0.25 s"; sleep 0.25; echo done'


def test_double_dollar_is_a_literal_dollar(repo, write, tmp_path):
    cat_lines = load_tool(os.path.join(repo, "tools", "cat_lines.xml"))
    command = cat_lines.command_line({"text": "x", "times": 3})
    assert command.startswith("i=0; while [ $i -lt 3 ]; do")
    assert "$((i + 1))" in command and "$$" not in command

    tool = load_tool(write("dollar.xml", """
        <tool id="dollar" name="Dollar">
            <command>printf '%s|%s|%s\\n' "$$MARK" '$$' $word</command>
            <inputs><param name="word" type="text" value="$$"/></inputs>
        </tool>
    """))
    command = tool.command_line(tool.validate({}))
    assert command == "printf '%s|%s|%s\\n' \"$MARK\" '$' '$$'"
    result = bash(command, tmp_path, env={**os.environ, "MARK": "marked"})
    assert result.stdout == "marked|$|$$\n"


# -- invalid tool files ------------------------------------------------------------------
INVALID = {
    "bad param type": ("""
        <tool id="t">
            <command>echo $x</command>
            <inputs>
                <param name="x" type="file"/>
            </inputs>
        </tool>
    """, 4, ["<param>", "type='file'"]),
    "missing param type": ("""
        <tool id="t">
            <command>echo $x</command>
            <inputs>
                <param name="x"/>
            </inputs>
        </tool>
    """, 4, ["<param>", "type=None"]),
    "unknown identifier in command": ("""
        <tool id="t">
            <command>
                echo $x $nope
            </command>
            <inputs><param name="x" type="text"/></inputs>
        </tool>
    """, 2, ["<command>", "$nope"]),
    "unknown braced identifier": ("""
        <tool id="t">

            <command>echo ${missing}</command>
        </tool>
    """, 3, ["<command>", "$missing"]),
    "lone dollar": ("""
        <tool id="t">
            <command>echo costs 5 $ each</command>
        </tool>
    """, 2, ["<command>", "'$'", "$$"]),
    "trailing dollar": ("""
        <tool id="t">
            <command>echo 5$</command>
        </tool>
    """, 2, ["<command>", "'$'"]),
    "dollar before a digit": ("""
        <tool id="t">
            <command>awk '{print $1}'</command>
        </tool>
    """, 2, ["<command>", "'$'"]),
    "duplicate param names": ("""
        <tool id="t">
            <command>echo $x</command>
            <inputs>
                <param name="x" type="text"/>
                <param name="x" type="integer"/>
            </inputs>
        </tool>
    """, 1, ["<tool>", "used twice: x"]),
    "param and output share a name": ("""
        <tool id="t">
            <command>echo $x</command>
            <inputs><param name="x" type="text"/></inputs>
            <outputs><data name="x"/></outputs>
        </tool>
    """, 1, ["<tool>", "used twice: x"]),
    "select without options": ("""
        <tool id="t">
            <command>echo $s</command>
            <inputs>

                <param name="s" type="select"/>
            </inputs>
        </tool>
    """, 5, ["<param>", "<option>"]),
    "select default not an option": ("""
        <tool id="t">
            <command>echo $s</command>
            <inputs>
                <param name="s" type="select" value="zzz"><option value="a"/></param>
            </inputs>
        </tool>
    """, 4, ["<param>", "value='zzz'"]),
    "from_work_dir escaping with ..": ("""
        <tool id="t">
            <command>true</command>
            <outputs>
                <data name="o" from_work_dir="../../etc/passwd"/>
            </outputs>
        </tool>
    """, 4, ["<data>", "from_work_dir='../../etc/passwd'"]),
    "from_work_dir escaping in the middle": ("""
        <tool id="t">
            <command>true</command>
            <outputs>
                <data name="o" from_work_dir="sub/../../x"/>
            </outputs>
        </tool>
    """, 4, ["<data>", "from_work_dir='sub/../../x'"]),
    "absolute from_work_dir": ("""
        <tool id="t">
            <command>true</command>
            <outputs>
                <data name="o" from_work_dir="/etc/passwd"/>
            </outputs>
        </tool>
    """, 4, ["<data>", "from_work_dir='/etc/passwd'"]),
    "bad tool id": ("""
        <tool id="bad id!">
            <command>true</command>
        </tool>
    """, 1, ["<tool>", "id='bad id!'"]),
    "missing tool id": ("""
        <!-- the tool starts on line 2 -->
        <tool name="no id">
            <command>true</command>
        </tool>
    """, 2, ["<tool>", "id=''"]),
    "missing command": ("""
        <tool id="t">
            <description>nothing to run</description>
        </tool>
    """, 1, ["<tool>", "missing <command>"]),
    "blank command": ("""
        <tool id="t">
            <command>   </command>
        </tool>
    """, 1, ["<tool>", "missing <command>"]),
    "wrong root": ("""
        <macros>
            <command>true</command>
        </macros>
    """, 1, ["<macros>", "root element must be <tool>"]),
    "bad param name": ("""
        <tool id="t">
            <command>true</command>
            <inputs>
                <param name="1x" type="text"/>
            </inputs>
        </tool>
    """, 4, ["<param>", "name='1x'"]),
    "bad output name": ("""
        <tool id="t">
            <command>true</command>
            <outputs>
                <data name="out-file"/>
            </outputs>
        </tool>
    """, 4, ["<data>", "name='out-file'"]),
    "default above max": ("""
        <tool id="t">
            <command>echo $n</command>
            <inputs>
                <param name="n" type="integer" value="20" max="10"/>
            </inputs>
        </tool>
    """, 4, ["<param>", "value='20'", "above the maximum 10"]),
    "min not a number": ("""
        <tool id="t">
            <command>echo $n</command>
            <inputs>
                <param name="n" type="float" min="low"/>
            </inputs>
        </tool>
    """, 4, ["<param>", "min='low'"]),
    "malformed XML": ("""
        <tool id="t">
            <command>echo a &amp;&amp; b</command>
            <inputs>
        </tool>
    """, 4, ["not well-formed"]),
}


@pytest.mark.parametrize("text, line, fragments", list(INVALID.values()), ids=list(INVALID))
def test_invalid_tool_file(write, text, line, fragments):
    path = write("bad_tool.xml", text)
    with pytest.raises(ToolError) as info:
        load_tool(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_load_tools_rejects_a_duplicate_id(write, tmp_path):
    first = write("tools/a.xml", '<tool id="dup"><command>true</command></tool>')
    second = write("tools/sub/b.xml", '<tool id="dup"><command>false</command></tool>')
    with pytest.raises(ToolError) as info:
        load_tools(str(tmp_path / "tools"))
    assert str(info.value).startswith(f"{second}: ")
    assert "'dup'" in str(info.value) and first in str(info.value)


def test_load_tools_finds_nested_files_and_stops_at_a_bad_one(write, tmp_path):
    write("tools/a.xml", '<tool id="a"><command>true</command></tool>')
    write("tools/deeper/b.xml", '<tool id="b"><command>true</command></tool>')
    assert set(load_tools(str(tmp_path / "tools"))) == {"a", "b"}
    bad = write("tools/deeper/c.xml", '<tool id="c"><command>echo $x</command></tool>')
    with pytest.raises(ToolError, match=f"^{bad}, line 1: <command>"):
        load_tools(str(tmp_path / "tools"))


def test_param_describe(tool):
    described = {p["name"]: p for p in tool.describe(full=True)["inputs"]}
    assert described["i"]["min"] == 1 and described["i"]["max"] == 10
    assert described["s"]["options"] == [{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]
    assert described["opt_i"]["optional"] is True
    assert math.isclose(described["f"]["value"], 0.5)
