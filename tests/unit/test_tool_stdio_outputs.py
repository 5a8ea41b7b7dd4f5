"""stdio.judge (Galaxy's <stdio> semantics) and outputs.py (filters, formats, discovery)."""
from __future__ import annotations

import itertools
import math

import pytest
from galaxy.tool_util.output_checker import DETECTED_JOB_STATE, check_output
from galaxy.tool_util.parser.stdio import StdioErrorLevel, ToolStdioExitCode, ToolStdioRegex

from muleteer.tools.model import (ChangeFormat, Conditional, DiscoverDatasets, ExitCodeRule,
                                  Level, Option, Output, Param, ParamType, RegexRule, Repeat,
                                  Section, Stdio, Tool, When)
from muleteer.tools.outputs import (Discovered, check_filter, discover, filter_passes,
                                    output_format, wanted_outputs)
from muleteer.tools.stdio import check_rules, judge

INF = math.inf
NONZERO = (ExitCodeRule(-INF, -1), ExitCodeRule(1, INF))


# ---- stdio ------------------------------------------------------------------------------

def test_nonzero_exit_code_fails_under_default_rules():
    verdict = judge(Stdio(exit_codes=NONZERO), 1, "", "")
    assert verdict.failed and not verdict.oom
    assert verdict.reason == "exit code 1 (rule: exit code 1 and above is fatal)"
    assert judge(Stdio(exit_codes=NONZERO), -9, "", "").reason.startswith(
        "exit code -9 (rule: exit code -1 and below is fatal")


def test_zero_exit_code_with_stderr_passes_under_exit_code_rules():
    assert judge(Stdio(exit_codes=NONZERO), 0, "out", "some warning on stderr") == \
        judge(Stdio(exit_codes=NONZERO), 0, "", "")
    assert not judge(Stdio(exit_codes=NONZERO), 0, "out", "noise").failed


def test_no_rules_means_exit_code_rules():
    assert judge(Stdio(), 2, "", "").failed
    assert not judge(Stdio(), 0, "", "stderr text").failed


def test_legacy_fails_on_any_stderr_and_ignores_the_exit_code_like_galaxy():
    legacy = Stdio(legacy_stderr=True)
    verdict = judge(legacy, 0, "", "oops\nmore")
    assert verdict.failed and "legacy" in verdict.reason and "'oops'" in verdict.reason
    assert judge(legacy, 0, "", " \n").failed            # whitespace is content to Galaxy
    assert not judge(legacy, 1, "output", "").failed      # Galaxy: exit code not checked
    assert not judge(legacy, 0, "output", "").failed


def test_legacy_flag_does_not_apply_when_there_are_rules():
    stdio = Stdio(exit_codes=NONZERO, legacy_stderr=True)
    assert not judge(stdio, 0, "", "stderr").failed


def test_exit_code_description_and_single_value_and_range():
    stdio = Stdio(exit_codes=(ExitCodeRule(2, 2, Level.FATAL, "bad input"),
                              ExitCodeRule(3, 5, Level.WARNING, "partial")))
    assert judge(stdio, 2, "", "").reason == "exit code 2 (rule: exit code 2 is fatal: bad input)"
    verdict = judge(stdio, 4, "", "")
    assert not verdict.failed
    assert verdict.warnings == ("exit code 4 (rule: exit codes 3 to 5 is warning: partial)",)
    assert not judge(stdio, 1, "", "").failed              # no rule covers 1


def test_regex_is_case_insensitive_and_searches_not_anchored():
    stdio = Stdio(regexes=(RegexRule("Error:"),))
    verdict = judge(stdio, 0, "", "line 1\nfatal error: no file\n")
    assert verdict.failed
    assert verdict.reason.startswith("stderr matched 'Error:' (fatal)")
    assert not judge(stdio, 0, "Errors are fine", "").failed


def test_regex_streams_are_chosen_per_rule():
    only_stdout = Stdio(regexes=(RegexRule("boom", stdout=True, stderr=False),))
    assert not judge(only_stdout, 0, "", "boom").failed
    assert judge(only_stdout, 0, "boom", "").reason.startswith("stdout matched 'boom'")
    only_stderr = Stdio(regexes=(RegexRule("boom", stdout=False, stderr=True),))
    assert not judge(only_stderr, 0, "boom", "").failed
    assert judge(only_stderr, 0, "", "boom").failed


def test_regex_description_may_use_groups():
    stdio = Stdio(regexes=(RegexRule(r"missing (\w+)", description=r"no \1"),))
    assert judge(stdio, 0, "", "missing input").reason == \
        "stderr matched 'missing (\\\\w+)' (fatal: no input): 'missing input'"


def test_warning_log_and_qc_are_noted_not_failed():
    stdio = Stdio(regexes=(RegexRule("warn", level=Level.WARNING),
                           RegexRule("note", level=Level.LOG),
                           RegexRule("qc", level=Level.QC)))
    verdict = judge(stdio, 0, "a note", "warn; qc")
    assert not verdict.failed and verdict.reason is None
    assert [w.split(" ", 3)[2] for w in verdict.warnings] == ["'warn'", "'note'", "'qc'"]


def test_fatal_exit_code_then_oom_regex_is_oom():
    stdio = Stdio(exit_codes=NONZERO, regexes=(RegexRule("MemoryError", level=Level.FATAL_OOM),))
    verdict = judge(stdio, 1, "", "Traceback...\nMemoryError")
    assert verdict.failed and verdict.oom
    assert verdict.reason.startswith("stderr matched 'MemoryError' (fatal_oom)")


def test_oom_exit_code_stops_before_regexes():
    stdio = Stdio(exit_codes=(ExitCodeRule(42, 42, Level.FATAL_OOM), *NONZERO),
                  regexes=(RegexRule("x", level=Level.WARNING),))
    verdict = judge(stdio, 42, "x", "x")
    assert verdict.oom and verdict.reason.startswith("exit code 42 (rule: exit code 42 is fatal_oom")
    assert verdict.warnings == ()                          # regexes never ran


def test_first_fatal_rule_is_the_reason():
    stdio = Stdio(regexes=(RegexRule("first"), RegexRule("second")))
    assert "'first'" in judge(stdio, 0, "second", "first").reason
    # one rule on both streams: Galaxy searches stderr before stdout
    both = Stdio(regexes=(RegexRule("bad"),))
    assert judge(both, 0, "bad out", "bad err").reason.startswith("stderr matched 'bad'")


def test_unknown_exit_code_skips_exit_code_rules():
    assert not judge(Stdio(exit_codes=NONZERO), None, "", "").failed


def test_invalid_regex_is_skipped_and_noted_and_refused_by_check_rules():
    stdio = Stdio(exit_codes=NONZERO, regexes=(RegexRule("(unclosed"),))
    verdict = judge(stdio, 1, "", "(unclosed")
    assert verdict.failed and verdict.reason.startswith("exit code 1")
    assert "invalid" in verdict.warnings[0]
    with pytest.raises(ValueError, match=r"regex 1 '\(unclosed' is not a valid"):
        check_rules(stdio)
    with pytest.raises(ValueError, match="exit_code 1: range"):
        check_rules(Stdio(exit_codes=(ExitCodeRule(5, 1),)))
    check_rules(Stdio(exit_codes=NONZERO, regexes=(RegexRule("Error:"),)))


_GALAXY_LEVEL = {Level.LOG: StdioErrorLevel.LOG, Level.QC: StdioErrorLevel.QC,
                 Level.WARNING: StdioErrorLevel.WARNING, Level.FATAL: StdioErrorLevel.FATAL,
                 Level.FATAL_OOM: StdioErrorLevel.FATAL_OOM}


def _galaxy_state(stdio: Stdio, exit_code, stdout, stderr):
    exit_codes = [ToolStdioExitCode({"range_start": r.low, "range_end": r.high,
                                     "error_level": _GALAXY_LEVEL[r.level]})
                  for r in stdio.exit_codes]
    regexes = [ToolStdioRegex({"match": r.match, "stdout_match": r.stdout,
                               "stderr_match": r.stderr, "error_level": _GALAXY_LEVEL[r.level]})
               for r in stdio.regexes]
    return check_output(regexes, exit_codes, stdout, stderr, exit_code)[0]


def test_judge_agrees_with_galaxys_check_output():
    rule_sets = [
        Stdio(legacy_stderr=True),
        Stdio(exit_codes=NONZERO),
        Stdio(exit_codes=(ExitCodeRule(137, 137, Level.FATAL_OOM), *NONZERO)),
        Stdio(exit_codes=(ExitCodeRule(1, 1, Level.WARNING), ExitCodeRule(2, INF))),
        Stdio(regexes=(RegexRule("error:"), RegexRule("warn", level=Level.WARNING))),
        Stdio(exit_codes=NONZERO, regexes=(RegexRule("bad_alloc", level=Level.FATAL_OOM),
                                           RegexRule("^Exception", stdout=False))),
        Stdio(exit_codes=(ExitCodeRule(3, 3, Level.LOG),),
              regexes=(RegexRule("qc", level=Level.QC, stderr=False),)),
    ]
    streams = ["", "all good", "ERROR: broken", "std::bad_alloc", "exception at line 1",
               "warn: careful", "qc done"]
    for stdio, code, out, err in itertools.product(rule_sets, (0, 1, 2, 3, 137, -11),
                                                   streams, streams):
        ours = judge(stdio, code, out, err)
        expected = _galaxy_state(stdio, code, out, err)
        got = (DETECTED_JOB_STATE.OUT_OF_MEMORY_ERROR if ours.oom else
               DETECTED_JOB_STATE.GENERIC_ERROR if ours.failed else DETECTED_JOB_STATE.OK)
        assert got == expected, (stdio, code, out, err, ours)


# ---- filters ----------------------------------------------------------------------------

ACCEPTED = [
    "options['selector'] == 'yes'",
    "output_opts['format'] in ['bam', 'sam']",
    "not out_dir",
    "'x' in outputs_select",
    "str(c['sel']) == 'a'",
    "len(list_param) > 0",
    "c['x'] and c['y'] == \"1\"",
    "options.selector == 'yes'",
    "c['x'] is None or c['x'] is not True",
    "int(n) >= 2 and float(f) < 1.5 and bool(b)",
    "r[0]['v'] != r[-1]['v']",
    "a in ('x', 'y')",
    "-n < 0",
]
REFUSED = [
    ("__import__('os').system('id')", "__import__"),
    ("open('/etc/passwd')", "the call open()"),
    ("c.__class__", "'__class__'"),
    ("c._private", "'_private'"),
    ("__builtins__", "'__builtins__'"),
    ("(lambda: 1)()", "the call"),
    ("lambda: 1", "Lambda"),
    ("[x for x in y]", "ListComp"),
    ("{k: 1 for k in y}", "DictComp"),
    ("import os", "invalid syntax"),
    ("x.keys()", "the call x.keys()"),
    ("'a,b'.split(',')", "the call"),
    ("c[k] == 1", "the subscript 'k'"),
    ("c[1:2]", "the subscript"),
    ("x + 1 > 2", "BinOp"),
    ("x if y else z", "IfExp"),
    ("str(x, 'utf-8')", "one plain argument"),
    ("len(*x)", "one plain argument"),
    ("str(object=x)", "one plain argument"),
    ("x is 'a'", "'is' with anything but"),
    ("(x := 1)", "NamedExpr"),
    ("f'{x}'", "JoinedStr"),
    ("str", "'str' other than as a call"),
    ("", "empty"),
    ("x == " + "1 or x == " * 400 + "1", "longer than"),
]


@pytest.mark.parametrize("expression", ACCEPTED)
def test_check_filter_accepts_galaxy_filters(expression):
    check_filter(expression)


@pytest.mark.parametrize("expression,why", REFUSED)
def test_check_filter_refuses_what_it_cannot_evaluate_safely(expression, why):
    with pytest.raises(ValueError) as info:
        check_filter(expression)
    assert why in str(info.value)
    assert "output filter" in str(info.value)


def test_check_filter_refuses_deep_nesting_with_a_value_error():
    for expression in ("-" * 1990 + "x", "[" * 600 + "]" * 600):
        with pytest.raises(ValueError, match="output filter"):
            check_filter(expression)
    assert filter_passes("not " * 400 + "x", {"x": 1}) is True


VALUES = {"options": {"selector": "yes", "flag": True}, "output_opts": {"format": "bam"},
          "out_dir": False, "outputs_select": ["x", "z"], "list_param": [],
          "c": {"sel": "a", "x": True, "y": "1"}, "n": 3, "r": [{"v": 1}, {"v": 2}]}


@pytest.mark.parametrize("expression,expected", [
    ("options['selector'] == 'yes'", True),
    ("options['selector'] == 'no'", False),
    ("options.selector == 'yes'", True),
    ("options['flag'] == True", True),
    ("options['flag'] is True", True),
    ("output_opts['format'] in ['bam', 'sam']", True),
    ("output_opts['format'] not in ('bam', 'sam')", False),
    ("not out_dir", True),
    ("'x' in outputs_select", True),
    ("'y' in outputs_select", False),
    ("str(c['sel']) == 'a'", True),
    ("len(list_param) > 0", False),
    ("c['x'] and c['y'] == \"1\"", True),
    ("c['x'] and c['y'] == \"2\"", False),
    ("1 < n <= 3", True),
    ("1 < n < 3", False),
    ("r[-1]['v'] == 2", True),
    ("not c['x'] or n == 3", True),
])
def test_filter_passes_evaluates_over_the_value_tree(expression, expected):
    assert filter_passes(expression, VALUES) is expected


def test_filter_evaluation_error_keeps_the_output_like_galaxy():
    assert filter_passes("c['missing'] == 'a'", VALUES) is True    # KeyError
    assert filter_passes("nowhere == 1", VALUES) is True            # unknown name
    assert filter_passes("c['sel'] > 3", VALUES) is True            # TypeError
    assert filter_passes("int(c['sel']) == 1", VALUES) is True      # ValueError


def test_filter_passes_refuses_an_unsafe_filter_instead_of_evaluating_it():
    with pytest.raises(ValueError):
        filter_passes("__import__('os')", VALUES)


def test_wanted_outputs_keeps_outputs_whose_filters_all_pass():
    tool = _tool(outputs=(
        Output("always"),
        Output("bam", filters=("output_opts['format'] == 'bam'",)),
        Output("sam", filters=("output_opts['format'] == 'sam'",)),
        Output("both", filters=("n == 3", "'z' in outputs_select")),
        Output("one_fails", filters=("n == 3", "'q' in outputs_select")),
        Output("broken", filters=("c['nope'] == 1",)),
    ))
    assert [o.name for o in wanted_outputs(tool, VALUES)] == ["always", "bam", "both", "broken"]


# ---- formats ----------------------------------------------------------------------------

def _data(name, **kw):
    return Param(name, ParamType.DATA, formats=("tabular",), **kw)


def _tool(inputs=(), outputs=()):
    return Tool(id="t", name="T", version="1", command="true", inputs=inputs, outputs=outputs)


def test_output_format_plain_and_default():
    tool = _tool(inputs=(_data("infile"),))
    assert output_format(tool, Output("o", format="bed"), {}, {"infile": "tabular"}) == "bed"
    assert output_format(tool, Output("o"), {}, {"infile": "tabular"}) == "data"


def test_output_format_input_is_the_first_data_inputs_format():
    tool = _tool(inputs=(Param("n", ParamType.INTEGER), _data("first"), _data("second")))
    out = Output("o", format="input")
    # the mapping's order does not matter: the tool's declaration order does
    assert output_format(tool, out, {}, {"second": "csv", "first": "bed"}) == "bed"
    assert output_format(tool, out, {}, {"second": "csv"}) == "csv"   # first one unset
    assert output_format(tool, out, {}, {}) == "data"


def test_output_format_source_by_name_or_flat_path():
    cond = Conditional("c", Param("sel", ParamType.SELECT, options=(Option("a", "A"),)),
                       (When("a", (_data("infile"),)),))
    tool = _tool(inputs=(cond, _data("other")))
    formats = {"c|infile": "fasta", "other": "csv"}
    assert output_format(tool, Output("o", format="txt", format_source="c|infile"), {},
                         formats) == "fasta"
    assert output_format(tool, Output("o", format="txt", format_source="infile"), {},
                         formats) == "fasta"
    assert output_format(tool, Output("o", format="txt", format_source="other"), {},
                         formats) == "csv"
    # an unset source leaves the declared format, as in Galaxy
    assert output_format(tool, Output("o", format="txt", format_source="missing"), {},
                         formats) == "txt"


def test_change_format_overrides_format_source_and_last_match_wins():
    cond = Conditional("opts", Param("mode", ParamType.SELECT),
                       (When("color", (Param("color", ParamType.BOOLEAN, truevalue="COLOR",
                                             falsevalue="NOCOLOR"),)),
                        When("plain", ())))
    tool = _tool(inputs=(_data("infile"), cond, Param("fmt", ParamType.SELECT)))
    out = Output("o", format_source="infile", change_format=(
        ChangeFormat("opts|color", "COLOR", "html"),
        ChangeFormat("fmt", "b", "bed"),
        ChangeFormat("fmt", "c", "csv"),
    ))
    formats = {"infile": "tabular"}
    colour = {"opts": {"mode": "color", "color": True}, "fmt": "a"}
    assert output_format(tool, out, colour, formats) == "html"
    assert output_format(tool, out, {"opts": {"mode": "color", "color": False}, "fmt": "a"},
                         formats) == "tabular"
    # the other <when> of the conditional: the path does not resolve and is skipped
    assert output_format(tool, out, {"opts": {"mode": "plain"}, "fmt": "c"}, formats) == "csv"
    # two matches: Galaxy does not stop at the first, the last one sets the format
    assert output_format(tool, out, {**colour, "fmt": "b"}, formats) == "bed"


def test_change_format_paths_with_dots_repeats_sections_and_numbers():
    rep = Repeat("queries", "Q", (Param("kind", ParamType.SELECT),))
    sec = Section("adv", "Advanced", (Param("level", ParamType.INTEGER),))
    tool = _tool(inputs=(rep, sec))
    out = Output("o", format="txt", change_format=(
        ChangeFormat("adv.level", "2", "json"),
        ChangeFormat("queries_1|kind", "v", "vcf")))
    values = {"queries": [{"kind": "a"}, {"kind": "v"}], "adv": {"level": 1}}
    assert output_format(tool, out, values, {}) == "vcf"
    assert output_format(tool, out, {**values, "queries": [], "adv": {"level": 2}}, {}) == "json"


# ---- discovery --------------------------------------------------------------------------

DESIGNATION_AND_EXT = r"(?P<designation>.*)\.(?P<ext>[^\._]+)?"


def test_discover_in_a_directory_with_designation_and_ext():
    rule = DiscoverDatasets(DESIGNATION_AND_EXT, directory="out", visible=True)
    files = ["out/b.tabular", "out/a.txt", "other/c.txt", "out/sub/d.txt", "top.txt"]
    assert discover([rule], files) == [
        Discovered("out/a.txt", "a", None, "txt", True),
        Discovered("out/b.tabular", "b", None, "tabular", True),
    ]


def test_discover_format_ext_group_first_then_rule_format_then_data():
    with_format = DiscoverDatasets(r"(?P<designation>[^.]+)(\.(?P<ext>\w+))?$", format="csv")
    found = {d.path: d.format for d in discover([with_format], ["x.bed", "y"])}
    assert found == {"x.bed": "bed", "y": "csv"}
    plain = DiscoverDatasets(r"(?P<designation>.+)")
    assert discover([plain], ["y"])[0].format == "data"


def test_discover_recurse_name_group_visible_group_and_match_from_start():
    rule = DiscoverDatasets(r"split_(?P<name>\w+)_(?P<visible>visible|hidden)\.txt",
                            directory="res", recurse=True)
    files = ["res/split_a_visible.txt", "res/deep/er/split_b_hidden.txt",
             "res/xsplit_c_visible.txt", "split_d_visible.txt"]
    found = discover([rule], files)
    assert [(d.path, d.designation, d.name, d.visible) for d in found] == [
        ("res/split_a_visible.txt", "a", "a", True),
        ("res/deep/er/split_b_hidden.txt", "b", "b", False),
    ]


def test_discover_sort_by_galaxy_keys():
    files = ["10.txt", "9.txt", "1.txt"]
    pattern = r"(?P<designation>\d+)\.txt"
    assert [d.path for d in discover([DiscoverDatasets(pattern)], files)] == \
        ["1.txt", "10.txt", "9.txt"]                       # Galaxy's default: lexical filename
    assert [d.path for d in discover([DiscoverDatasets(pattern, sort_by="numeric_designation")],
                                     files)] == ["1.txt", "9.txt", "10.txt"]
    assert [d.path for d in discover([DiscoverDatasets(pattern,
                                                       sort_by="reverse_numeric_designation")],
                                     files)] == ["10.txt", "9.txt", "1.txt"]
    with pytest.raises(ValueError, match="sort_by 'size'"):
        discover([DiscoverDatasets(pattern, sort_by="size")], files)
    with pytest.raises(ValueError, match="needs a number"):
        discover([DiscoverDatasets(r"(?P<designation>\w+)\.txt", sort_by="numeric_designation")],
                 ["a.txt"])


def test_discover_no_file_twice_across_rules():
    first = DiscoverDatasets(r"(?P<designation>.+)\.bed", format="bed")
    second = DiscoverDatasets(r"(?P<designation>.+)\.(?P<ext>\w+)")
    found = discover([first, second], ["a.bed", "b.txt"])
    assert [(d.path, d.format) for d in found] == [("a.bed", "bed"), ("b.txt", "txt")]


def test_discover_limit_and_bad_rules():
    files = [f"f{i}.txt" for i in range(1001)]
    rule = DiscoverDatasets(r"(?P<designation>.+)\.txt")
    assert len(discover([rule], files[:1000])) == 1000
    with pytest.raises(ValueError, match="more than 1000 files"):
        discover([rule], files)
    with pytest.raises(ValueError, match="outside the job's working directory"):
        discover([DiscoverDatasets(rule.pattern, directory="../x")], files)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        discover([DiscoverDatasets("(?P<designation>")], files)


def test_discover_legacy_default_pattern_dataset_id():
    default = r"primary_DATASET_ID_(?P<designation>[^_]+)_(?P<visible>[^_]+)_(?P<ext>[^_]+)"
    found = discover([DiscoverDatasets(default)], ["primary_12_part1_visible_bed", "other"])
    assert found == [Discovered("primary_12_part1_visible_bed", "part1", None, "bed", True)]
