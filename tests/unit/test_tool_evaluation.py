"""Building a job's command from a tool and its values as Galaxy does (evaluation.py,
wrappers.py): wrappers, Cheetah semantics, configfiles, environment, and that a user's
text stays inert in the shell whatever the wrapper does with it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from Cheetah.Template import Template

from muleteer.tools import evaluation
from muleteer.tools.errors import ToolError
from muleteer.tools.evaluation import BuildError, build_command, compile_templates
from muleteer.tools.model import (
    ConfigFile, Conditional, DatasetInfo, EnvVar, Option, Output, Param, ParamType, Repeat,
    Sanitizer, Section, Tool, When,
)
from muleteer.tools.sanitize import sanitize_text
from tests.support.shared_tools import text_processing_dir

SHARED_TOOLS = Path(text_processing_dir())
BASH = shutil.which("bash")


def make_tool(command: str, inputs=(), outputs=(Output("out", format="txt"),), **kw) -> Tool:
    kw.setdefault("path", "/tools/t.xml")
    kw.setdefault("tool_dir", "/tools")
    return Tool(id="t", name="T", version="1.0", command=command, inputs=tuple(inputs),
                outputs=tuple(outputs), **kw)


def build(tool: Tool, values: dict, datasets=(), outputs=None, workdir="/job/1", **kw):
    if outputs is None:
        outputs = {o.name: (f"{workdir}/outputs/{o.name}.dat", o.format) for o in tool.outputs}
    return build_command(tool, values, datasets={d.id: d for d in datasets}, outputs=outputs,
                         working_directory=workdir, new_file_path="/scratch/new", **kw)


def text(name, **kw) -> Param:
    return Param(name, ParamType.TEXT, **kw)


def select(name, *values, **kw) -> Param:
    return Param(name, ParamType.SELECT, options=tuple(Option(v, v) for v in values), **kw)


# -- injection: a user's text stays inert ---------------------------------------------------
PAYLOADS = [
    "; touch pwned", "$(touch pwned)", "`touch pwned`", "' ; touch pwned ; '",
    '" ; touch pwned ; "', "| touch pwned", "&& touch pwned", "\n touch pwned", "> pwned",
    "$HOME", "${IFS}touch${IFS}pwned",
]
QUOTED = "echo '$text' > '$out'"
UNQUOTED = "echo $text > $out"


def run_in(tmp_path: Path, command: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent-home",
           "LC_ALL": "C"}
    return subprocess.run([BASH, "-c", command], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.skipif(BASH is None, reason="bash is needed to run the built commands")
@pytest.mark.parametrize("template", [QUOTED, UNQUOTED], ids=["quoted", "unquoted"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_user_text_is_inert_in_the_shell(tmp_path, template, payload):
    tool = make_tool(template, [text("text")])
    out = tmp_path / "out.txt"
    built = build(tool, {"text": payload}, outputs={"out": (str(out), "txt")},
                  workdir=str(tmp_path))
    result = run_in(tmp_path, built.command)
    assert not (tmp_path / "pwned").exists(), built.command
    expected = sanitize_text(payload, None)
    assert "$" not in expected and "`" not in expected and ";" not in expected
    if template == UNQUOTED and "(" in expected:
        # Galaxy's default sanitizer keeps ( and ): unquoted they are a shell syntax error
        # (as under Galaxy), which runs nothing. Wrapper authors quote.
        assert result.returncode == 2 and "syntax error" in result.stderr
        assert not out.exists()
        return
    assert result.returncode == 0, result.stderr
    written = out.read_text()
    if template == QUOTED:
        assert written == expected + "\n"
    else:  # the shell splits the unquoted words, nothing else
        assert written.split() == expected.split()
    assert "/nonexistent-home" not in written


@pytest.mark.skipif(BASH is None, reason="bash is needed to run the built commands")
def test_a_select_value_and_a_dataset_name_are_sanitized_too(tmp_path):
    # An admin's odd option value and a user's dataset name: both go through the sanitizer.
    data = tmp_path / "dataset_1.dat"
    data.write_text("x\n")
    info = DatasetInfo(1, str(data), "txt", name="$(touch pwned);x", metadata={
        "column_names": ["a`touch pwned`"]})
    tool = make_tool("echo '$sel' '${inp.name}' '${inp.metadata.column_names[0]}' > '$out' && "
                     "cat '$inp' >> '$out'",
                     [select("sel", "$(touch pwned)"), Param("inp", ParamType.DATA)])
    out = tmp_path / "out.txt"
    built = build(tool, {"sel": "$(touch pwned)", "inp": 1}, [info],
                  outputs={"out": (str(out), "txt")}, workdir=str(tmp_path))
    result = run_in(tmp_path, built.command)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "pwned").exists()
    assert out.read_text() == "X(touch pwned) X(touch pwned)Xx aXtouch pwnedX\nx\n"


def test_a_dataset_path_goes_in_as_the_server_made_it():
    info = DatasetInfo(7, "/data/000/dataset_7.dat", "tabular")
    built = build(make_tool("cat '$inp' > '$out'", [Param("inp", ParamType.DATA)]),
                  {"inp": 7}, [info])
    assert built.command == "cat '/data/000/dataset_7.dat' > '/job/1/outputs/out.dat'"


def test_a_param_sanitizer_is_applied_and_sanitize_false_keeps_the_text():
    tool = make_tool("x $a $b", [
        text("a", sanitizer=Sanitizer(valid=frozenset("abc;"), invalid_char="_")),
        text("b", sanitizer=Sanitizer(off=True)),
    ])
    assert build(tool, {"a": "ab;cd$", "b": "a'b"}).command == "x ab;c__ a'b"


# -- Galaxy's command rules -----------------------------------------------------------------
def test_lines_are_stripped_and_joined_with_spaces_as_galaxy_does():
    tool = make_tool("\n   first  line   \r\n\tsecond\n\n  third '$out'  \n")
    assert build(tool, {}).command == "first  line second  third '/job/1/outputs/out.dat'"


def test_galaxy_slots_escape_comes_out_as_shell_syntax():
    tool = make_tool("tool -p \\${GALAXY_SLOTS:-1} -t \\$TMPDIR > '$out'")
    assert build(tool, {}).command == \
        "tool -p ${GALAXY_SLOTS:-1} -t $TMPDIR > '/job/1/outputs/out.dat'"


def test_unescaped_galaxy_slots_is_a_template_error_with_its_line():
    tool = make_tool("first\nsecond ${GALAXY_SLOTS:-1}\n")
    with pytest.raises(ToolError, match=r"/tools/t.xml: <command>, line 2"):
        compile_templates(tool)


def test_old_style_plain_names_in_a_tool_without_profile():
    tool = make_tool("python $__tool_directory__/x.py $input $n $out",
                     [Param("input", ParamType.DATA), Param("n", ParamType.INTEGER)])
    info = DatasetInfo(1, "/d/1.dat", "txt")
    assert build(tool, {"input": 1, "n": 3}, [info]).command == \
        "python /tools/x.py /d/1.dat 3 /job/1/outputs/out.dat"


def test_interpreter_prefixes_the_script_made_absolute_under_the_tool_dir():
    tool = make_tool("script.py $n $out", [Param("n", ParamType.INTEGER)],
                     interpreter="python", tool_dir="/tools/my tool")
    assert build(tool, {"n": 2}).command == \
        "python '/tools/my tool/script.py' 2 /job/1/outputs/out.dat"


def test_special_names_galaxy_offers():
    tool = make_tool("$__tool_directory__ $__new_file_path__ $__user_email__ $userEmail")
    assert build(tool, {}, user_email="ann@example.org").command == \
        "/tools /scratch/new ann__at__example.org ann__at__example.org"
    assert build(tool, {}).command == "/tools /scratch/new Anonymous Anonymous"


def test_the_namespace_holds_nothing_of_the_server():
    os.environ["MULETEER_TEST_SECRET"] = "s3cret"
    try:
        for name in ("MULETEER_TEST_SECRET", "config", "store", "app", "__app__", "environ"):
            with pytest.raises(BuildError, match="cannot find"):
                build(make_tool(f"echo ${name}"), {})
    finally:
        del os.environ["MULETEER_TEST_SECRET"]


def test_dollar_input_is_not_pythons_builtin():
    with pytest.raises(BuildError, match="input"):
        build(make_tool("cat $input"), {})


# -- wrappers ---------------------------------------------------------------------------------
def test_conditional_test_and_chosen_when():
    cond = Conditional("c", select("sel", "a", "b"), (
        When("a", (text("x"), Param("n", ParamType.INTEGER))),
        When("b", ()),
    ))
    tool = make_tool(
        "#if $c.sel == 'a':\n-x '$c.x' -n $c.n#if $c.n > 2# big#end if#\n#else\nnone\n#end if\n"
        "$c['sel'] ${c.__current_case__}", [cond])
    assert build(tool, {"c": {"sel": "a", "x": "hi", "n": 3}}).command == "-x 'hi' -n 3 big a 0"
    assert build(tool, {"c": {"sel": "b"}}).command == "none b 1"


def test_boolean_conditional_test():
    cond = Conditional("c", Param("on", ParamType.BOOLEAN, truevalue="yes", falsevalue="no"), (
        When("yes", (Param("n", ParamType.INTEGER),)), When("no", ())))
    tool = make_tool("#if $c.on#on $c.n#else#off#end if# $c.on", [cond])
    assert build(tool, {"c": {"on": True, "n": 5}}).command == "on 5 yes"
    assert build(tool, {"c": {"on": False}}).command == "off no"


def test_nested_names_reachable_unqualified_as_in_galaxy():
    cond = Conditional("c", select("sel", "a"), (When("a", (text("x"),)),))
    tool = make_tool("$x $sel", [cond])
    assert build(tool, {"c": {"sel": "a", "x": "deep"}}).command == "deep a"
    # A real top-level name wins over a nested one.
    tool = make_tool("$x", [text("x"), cond])
    assert build(tool, {"x": "top", "c": {"sel": "a", "x": "deep"}}).command == "top"


def test_repeat_is_a_list_of_instances():
    rep = Repeat("sortkeys", "Key", (Param("column", ParamType.DATA_COLUMN, data_ref="i"),
                                     select("order", "", "r")))
    tool = make_tool("#for $k in $sortkeys\n-k${k.column}${k.order} [$k.__index__]\n#end for\n"
                     "n=${len($sortkeys)}", [rep])
    values = {"sortkeys": [{"column": 2, "order": "r"}, {"column": 5, "order": ""}]}
    assert build(tool, values).command == "-k2r [0] -k5 [1] n=2"
    assert build(tool, {"sortkeys": []}).command == "n=0"


def test_section_params():
    tool = make_tool("$adv.limit ${adv.name}", [Section("adv", "Advanced", (
        Param("limit", ParamType.INTEGER), text("name")))])
    assert build(tool, {"adv": {"limit": 10, "name": "a b"}}).command == "10 a b"


def test_integer_and_float_compare_and_convert():
    tool = make_tool("#if $n > 2 and $n == 3 and $f < 1.0#yes#end if# ${int($n) + 1} "
                     "${float($f) * 2} $n $f #if $n == '3'#s#end if#",
                     [Param("n", ParamType.INTEGER), Param("f", ParamType.FLOAT)])
    assert build(tool, {"n": 3, "f": 0.25}).command == "yes 4 0.5 3 0.25 s"


def test_boolean_gives_its_true_and_false_values():
    flag = Param("flag", ParamType.BOOLEAN, truevalue="--all", falsevalue="")
    tool = make_tool("ls $flag #if $flag#A#else#B#end if# #if $flag == '--all'#eq#end if#", [flag])
    assert build(tool, {"flag": True}).command == "ls --all A eq"
    assert build(tool, {"flag": False}).command == "ls  B"


def test_select_multiple_is_comma_joined_and_iterable():
    tool = make_tool("$s #for $v in $s#[$v]#end for# #if 'b' in $s#has-b#end if#",
                     [select("s", "a", "b", "c", multiple=True)])
    assert build(tool, {"s": ["a", "b"]}).command == "a,b [a][b] has-b"


def test_data_column_single_and_multiple():
    tool = make_tool("-f $cols -c $col ${int(str($col)) - 1} #for $c in $cols#<$c>#end for#", [
        Param("cols", ParamType.DATA_COLUMN, multiple=True, data_ref="i"),
        Param("col", ParamType.DATA_COLUMN, data_ref="i")])
    assert build(tool, {"cols": [1, 3], "col": 4}).command == "-f 1,3 -c 4 3 <1><3>"


def test_unset_optionals_are_none_and_falsy():
    tool = make_tool(
        "#if $t#T#end if##if $n#N#end if##if $s#S#end if##if $d#D#end if#"
        "#if str($n) == 'None'#n-none#end if# $d $s $n $d.ext",
        [text("t", optional=True), Param("n", ParamType.INTEGER, optional=True),
         select("s", "a", optional=True),
         Param("d", ParamType.DATA, optional=True, formats=("tabular",))], profile="23.0")
    assert build(tool, {"t": None, "n": None, "s": None, "d": None}).command == \
        "n-none None None None tabular"
    # Before 23.0 an unset text is "" in templates (Galaxy's profile rule).
    tool23 = make_tool("[$t]", [text("t", optional=True)], profile="23.0")
    tool_old = make_tool("[$t]", [text("t", optional=True)], profile="21.05")
    assert build(tool23, {"t": None}).command == "[None]"
    assert build(tool_old, {"t": None}).command == "[]"


def test_data_wrapper_attributes_and_metadata():
    info = DatasetInfo(12, "/data/000/dataset_12.dat", "bed", name="my peaks", size=1234,
                       metadata={"columns": 6, "data_lines": 10, "column_names": None,
                                 "comment_lines": 1})
    tool = make_tool(
        "$inp.ext $inp.extension $inp.name|$inp.element_identifier $inp.file_name "
        "$inp.file_size $inp.metadata.columns $inp.metadata.data_lines "
        "$inp.metadata.column_names $inp.metadata.no_such_key $inp.dataset.id "
        "#if $inp.is_of_type('tabular')#tab#end if# "
        "#if $inp.is_of_type('fasta', 'vcf')#no#else#yes#end if#"
        " ${inp.metadata.columns + 1} $inp.extra_files_path",
        [Param("inp", ParamType.DATA, formats=("tabular",))])
    assert build(tool, {"inp": 12}, [info]).command == (
        # Cheetah writes None as nothing (as under Galaxy).
        "bed bed my peaks|my peaks /data/000/dataset_12.dat 1234 6 10   12 tab yes"
        " 7 /data/000/dataset_12_files")


def test_multiple_data_is_a_list_of_datasets():
    infos = [DatasetInfo(1, "/d/1.dat", "txt", name="one"), DatasetInfo(2, "/d/2.dat", "tabular",
                                                                         name="two")]
    tool = make_tool("cat $ins > $out; #for $i in $ins#${i.name}:${i.ext} #end for#${len($ins)}",
                     [Param("ins", ParamType.DATA, multiple=True)])
    assert build(tool, {"ins": [1, 2]}, infos).command == \
        "cat /d/1.dat,/d/2.dat > /job/1/outputs/out.dat; one:txt two:tabular 2"


def test_output_wrapper():
    tool = make_tool("$out $out.ext $out.name $out.files_path",
                     outputs=(Output("out", format="tabular"),))
    assert build(tool, {}, outputs={"out": ("/job/1/o/dataset_5.dat", "tabular")}).command == \
        "/job/1/o/dataset_5.dat tabular out /job/1/o/dataset_5_files"


def test_filtered_output_is_a_no_dataset():
    tool = make_tool("#if $extra#has#else#none#end if#",
                     outputs=(Output("out"), Output("extra", filters=("False",))))
    assert build(tool, {}, outputs={"out": ("/o.dat", "txt")}).command == "none"


# -- configfiles, environment, version command ----------------------------------------------------
def test_configfile_rendered_and_its_path_in_the_command():
    tool = make_tool("python $script --n $n > $out", [Param("n", ParamType.INTEGER), text("t")],
                     configfiles=(ConfigFile("script", text="print($n)\nprint('$t')\n"),
                                  ConfigFile("other", text="x", filename="fixed.txt")))
    built = build(tool, {"n": 4, "t": "a'b"}, workdir="/job/9")
    assert built.command == "python /job/9/configs/script --n 4 > /job/9/outputs/out.dat"
    assert built.configfiles == {"configs/script": "print(4)\nprint('a__sq__b')\n",
                                 "configs/fixed.txt": "x"}


def test_configfiles_see_each_other():
    tool = make_tool("sh $a", configfiles=(ConfigFile("a", text="cat $b"),
                                           ConfigFile("b", text="hello")))
    built = build(tool, {}, workdir="/w")
    assert built.configfiles["configs/a"] == "cat /w/configs/b"


def test_inputs_configfile_is_json_with_paths():
    cond = Conditional("c", select("sel", "a", "b"), (When("a", (Param("f", ParamType.FLOAT),)),
                                                       When("b", ())))
    tool = make_tool("run $inputs", [
        Param("d", ParamType.DATA), Param("ds", ParamType.DATA, multiple=True),
        Param("opt", ParamType.DATA, optional=True), text("t"), Param("b", ParamType.BOOLEAN),
        Param("col", ParamType.DATA_COLUMN, data_ref="d"), cond,
        Repeat("r", "R", (Param("i", ParamType.INTEGER),)),
        Section("s", "S", (select("m", "x", "y", multiple=True),)),
    ], configfiles=(ConfigFile("inputs", kind="inputs", data_style="paths"),))
    infos = [DatasetInfo(1, "/d/1.dat", "txt"), DatasetInfo(2, "/d/2.dat", "txt")]
    built = build(tool, {"d": 1, "ds": [1, 2], "opt": None, "t": "x;y", "b": True, "col": 2,
                         "c": {"sel": "a", "f": 1.5}, "r": [{"i": 1}, {"i": 2}],
                         "s": {"m": ["x", "y"]}}, infos, workdir="/w")
    assert built.command == "run /w/configs/inputs"
    assert json.loads(built.configfiles["configs/inputs"]) == {
        "d": "/d/1.dat", "ds": ["/d/1.dat", "/d/2.dat"], "opt": None, "t": "xXy", "b": True,
        "col": [2], "c": {"sel": "a", "f": 1.5}, "r": [{"i": 1}, {"i": 2}], "s": {"m": "x,y"}}


def test_inputs_configfile_with_another_data_style_is_refused():
    tool = make_tool("x", configfiles=(ConfigFile("inputs", kind="inputs",
                                                  data_style="staging_path_and_source_path"),))
    with pytest.raises(ToolError, match=r"t.xml: .*data_style=\"staging_path_and_source_path\""):
        compile_templates(tool)


def test_environment_variables_rendered_and_stripped():
    tool = make_tool("x", [Param("n", ParamType.INTEGER), text("t")], environment=(
        EnvVar("THREADS", text="  $n  ", strip=True), EnvVar("LABEL", text="$t-\\$HOME ")))
    built = build(tool, {"n": 8, "t": "a;b"})
    assert built.environment == {"THREADS": "8", "LABEL": "aXb-$HOME "}


def test_injected_environment_variable_is_refused():
    tool = make_tool("x", environment=(EnvVar("KEY", inject="api_key"),))
    with pytest.raises(ToolError, match="inject"):
        compile_templates(tool)


def test_version_command_gets_the_tool_directory_only():
    tool = make_tool("x", version_command="python $__tool_directory__/v.py --version $n",
                     tool_dir="/opt/t")
    assert build(tool, {}).version_command == "python /opt/t/v.py --version $n"
    assert build(make_tool("x"), {}).version_command is None


# -- compile once, errors -----------------------------------------------------------------------
def test_templates_compile_once_per_tool(monkeypatch):
    calls = []
    real = Template.compile

    def counting(*args, **kwargs):
        calls.append(kwargs.get("source"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation.Template, "compile", counting)
    tool = make_tool("echo $n > $out", [Param("n", ParamType.INTEGER)],
                     configfiles=(ConfigFile("cf", text="$n"),),
                     environment=(EnvVar("E", text="$n"),))
    first = build(tool, {"n": 1})
    second = build(tool, {"n": 2})
    assert len(calls) == 3  # command, configfile, environment variable: once each
    assert first.command != second.command
    assert compile_templates(tool) is compile_templates(tool)
    # An equal but distinct Tool object is compiled on its own.
    build(make_tool("echo $n > $out", [Param("n", ParamType.INTEGER)],
                    configfiles=(ConfigFile("cf", text="$n"),),
                    environment=(EnvVar("E", text="$n"),)), {"n": 1})
    assert len(calls) == 6


def test_configfile_template_error_names_it():
    tool = make_tool("x", configfiles=(ConfigFile("cf", text="ok\n#if $a\nno end\n"),))
    with pytest.raises(ToolError, match=r'<configfile name="cf">'):
        compile_templates(tool)


def test_unknown_name_at_render_is_a_build_error_naming_the_tool():
    with pytest.raises(BuildError, match=r"tool 't' \(/tools/t.xml\): <command>: .*nope"):
        build(make_tool("echo $nope"), {})


def test_exception_in_template_is_a_build_error():
    with pytest.raises(BuildError, match=r"<command>: ZeroDivisionError"):
        build(make_tool("echo ${1/0}"), {})


def test_bad_values_name_the_flat_path():
    rep = Repeat("r", "R", (Param("d", ParamType.DATA),))
    tool = make_tool("x", [rep])
    with pytest.raises(BuildError, match=r"param r_1\|d: dataset 9 is not among"):
        build(tool, {"r": [{"d": 1}, {"d": 9}]}, [DatasetInfo(1, "/d/1", "txt")])
    cond = Conditional("c", select("sel", "a"), (When("a", ()),))
    with pytest.raises(BuildError, match=r"param c\|sel: 'zz' matches no <when>"):
        build(make_tool("x", [cond]), {"c": {"sel": "zz"}})
    with pytest.raises(BuildError, match=r"param n: no value"):
        build(make_tool("x", [Param("n", ParamType.INTEGER)]), {})


# -- real wrappers written by others, through the loader ----------------------------------------
needs_shared = pytest.mark.skipif(
    not SHARED_TOOLS.is_dir(),
    reason=f"{SHARED_TOOLS} (real Galaxy wrappers with test data) is not on this machine")


def _load(name: str) -> Tool:
    load = pytest.importorskip("muleteer.tools.load")
    return load.load_tool(str(SHARED_TOOLS / name))


def _values(tool: Tool, submitted: dict) -> dict:
    params = pytest.importorskip("muleteer.tools.params")
    return params.check_params(tool, submitted)


def _run_real(tmp_path, tool_file, submitted, input_name, input_format="tabular",
              metadata=None):
    tool = _load(tool_file)
    data = tmp_path / "dataset_1.dat"
    shutil.copy(SHARED_TOOLS / "test-data" / input_name, data)
    info = DatasetInfo(1, str(data), input_format, name=input_name, metadata=metadata or {})
    values = _values(tool, submitted)
    out_name = tool.outputs[0].name
    out = tmp_path / "out.dat"
    built = build_command(tool, values, datasets={1: info},
                          outputs={out_name: (str(out), input_format)},
                          working_directory=str(tmp_path), new_file_path=str(tmp_path))
    result = run_in(tmp_path, built.command)
    assert result.returncode == 0, (built.command, result.stderr)
    return built, out.read_text()


@needs_shared
@pytest.mark.skipif(BASH is None, reason="bash is needed to run the built commands")
def test_real_sort_wrapper_matches_its_expected_output(tmp_path):
    built, output = _run_real(tmp_path, "sort.xml", {
        "infile": {"src": "hda", "id": 1},
        "sortkeys": [{"column": 5, "style": "g", "order": ""}]}, "sort2.bed", "bed",
        metadata={"columns": 6})
    assert "-k '5g,5'" in built.command
    assert output == (SHARED_TOOLS / "test-data" / "sort_result3.bed").read_text()


@needs_shared
@pytest.mark.skipif(BASH is None, reason="bash is needed to run the built commands")
def test_real_nl_wrapper_matches_its_expected_output(tmp_path):
    built, output = _run_real(tmp_path, "nl.xml", {
        "input": {"src": "hda", "id": 1}, "line_increment": 2, "starting_line_number": 10},
        "cut1.txt")
    assert "--line-increment=2 --starting-line-number=10" in built.command
    assert output == (SHARED_TOOLS / "test-data" / "nl-start-incr.txt").read_text()
    assert built.version_command == "nl --version | head -n 1"


@needs_shared
def test_real_cut_and_sed_wrappers_build(tmp_path):
    for name in ("cut.xml", "sed.xml"):
        tool = _load(name)
        data_params = tool.data_params()
        assert data_params, name
        compiled = compile_templates(tool)
        assert compiled.command is not None
