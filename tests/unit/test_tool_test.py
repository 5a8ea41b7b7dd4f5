"""muleteer/tool_test.py (scripts/tool-test): reading wrappers' <tests> into uploads and
flat params, and checking ended jobs as Galaxy does, against a fake server (no HTTP)."""
from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from muleteer import tool_test as tt
from muleteer.tool_test import (
    DataRef, JobTimeout, ServerError, Upload, UsageError, collect_cases,
    find_tool_files, load_cases, resolve_params, run_tests, wait_for_job,
)
from tests.support.shared_tools import text_processing_dir

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(text_processing_dir())
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared Galaxy wrappers are not at {SHARED} "
                                "(reference material outside the repository)")


# -- a small tool of our own, with tests of every kind of check -------------------------
UPPER_XML = """
<tool id="upper" name="Upper" version="1.2+galaxy3">
    <command>tr a-z A-Z &lt; '$input' &gt; '$out'</command>
    <inputs>
        <param name="input" type="data" format="txt"/>
        <conditional name="mode">
            <param name="how" type="select">
                <option value="plain">plain</option>
                <option value="fail">fail</option>
            </param>
            <when value="plain"/>
            <when value="fail">
                <param name="code" type="integer" value="3"/>
            </when>
        </conditional>
    </inputs>
    <outputs><data name="out" format_source="input"/></outputs>
    <tests>
        <test>
            <param name="input" value="in.txt" ftype="tabular"/>
            <output name="out" file="up.txt" ftype="tabular"/>
        </test>
        <test>
            <param name="input" value="in.txt"/>
            <output name="out" file="up_one_off.txt" lines_diff="2"/>
        </test>
        <test>
            <param name="input" value="in.txt"/>
            <output name="out" file="up_one_off.txt"/>
        </test>
        <test>
            <param name="input" value="in.txt"/>
            <output name="out">
                <assert_contents>
                    <has_text text="B"/>
                    <has_n_lines n="3"/>
                </assert_contents>
            </output>
        </test>
        <test>
            <param name="input" value="in.txt"/>
            <output name="out">
                <assert_contents>
                    <has_text text="lowercase b"/>
                    <has_n_lines n="7"/>
                </assert_contents>
            </output>
        </test>
        <test expect_failure="true" expect_exit_code="3">
            <param name="input" value="in.txt"/>
            <conditional name="mode">
                <param name="how" value="fail"/>
                <param name="code" value="3"/>
            </conditional>
            <assert_stdout><has_text text="boom"/></assert_stdout>
        </test>
        <test>
            <param name="input" value="in.txt" ftype="tabular"/>
            <output name="out" file="up.txt">
                <metadata name="columns" value="1"/>
                <metadata name="data_lines" value="4"/>
            </output>
        </test>
        <test expect_num_outputs="2">
            <param name="input" value="in.txt" ftype="tabular"/>
            <output name="out" file="up.txt" ftype="txt"/>
        </test>
    </tests>
</tool>
"""

COLLECTION_XML = """
<tool id="coll" name="Coll" version="1.0">
    <command>cat $c > $out</command>
    <inputs><param name="c" type="data_collection" collection_type="list"/></inputs>
    <outputs><data name="out" format="txt"/></outputs>
    <tests>
        <test>
            <param name="c">
                <collection type="list"><element name="e1" value="in.txt"/></collection>
            </param>
            <output name="out" file="in.txt"/>
        </test>
    </tests>
</tool>
"""


@pytest.fixture
def tool_dir(tmp_path):
    folder = tmp_path / "tools"
    data = folder / "upper" / "test-data"
    data.mkdir(parents=True)
    (folder / "upper" / "upper.xml").write_text(UPPER_XML)
    (folder / "upper" / "macros.xml").write_text("<macros><token name='@X@'>1</token></macros>")
    (data / "in.txt").write_text("a\nb\nc\n")
    (data / "up.txt").write_text("A\nB\nC\n")
    (data / "up_one_off.txt").write_text("A\nX\nC\n")
    # A <tool> inside test-data/ is data, not a tool to test.
    (data / "not_a_tool.xml").write_text(UPPER_XML)
    return folder


class FakeServer:
    """The methods of tool_test.Client, over a dict instead of HTTP: it runs the upper
    tool itself (tr a-z A-Z, or fail with the test's exit code)."""

    def __init__(self, job_states=None):
        self.datasets: dict[int, tuple[str, str, bytes]] = {}  # id -> name, format, bytes
        self.jobs: dict[int, dict] = {}
        self.uploads: list[tuple[str, str | None]] = []
        self.submitted: list[dict] = []
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.job_states = job_states  # states a job goes through before its end, if any

    def check(self) -> None:
        pass

    def upload(self, path: Path, name: str, ftype: str | None) -> dict:
        with self.lock:
            self.uploads.append((name, ftype))
            ds_id = next(self.ids)
            self.datasets[ds_id] = (name, ftype or "txt", path.read_bytes())
        return {"id": ds_id, "name": name, "format": ftype or "txt"}

    def submit(self, payload: dict) -> dict:
        with self.lock:
            self.submitted.append(payload)
            job_id = next(self.ids)
        params = payload["params"]
        if payload["tool_id"] != "upper":
            raise ServerError("job submission", 400, f"no tool {payload['tool_id']!r}", "tool_id")
        _name, fmt, content = self.datasets[params["input"]["id"]]
        if params.get("mode|how") == "fail":
            job = {"id": job_id, "state": "error", "exit_code": int(params["mode|code"]),
                   "info": "exit code 3", "outputs": {}, "stdout": "boom\n", "stderr": "bad\n"}
        else:
            out_id = next(self.ids)
            self.datasets[out_id] = ("out", fmt, content.upper())
            job = {"id": job_id, "state": "ok", "exit_code": 0, "info": None, "stdout": "",
                   "stderr": "", "outputs": {"out": {"id": out_id, "name": "out", "format": fmt,
                                                     "size": len(content)}}}
        job["polls"] = list(self.job_states or [])
        self.jobs[job_id] = job
        return {"id": job_id, "state": "new"}

    def job(self, job_id: int) -> dict:
        job = self.jobs[job_id]
        if job["polls"]:
            return {"id": job_id, "state": job["polls"].pop(0)}
        return job

    def job_text(self, job_id: int, stream: str) -> str:
        return self.jobs[job_id][stream]

    def display(self, dataset_id: int) -> bytes:
        return self.datasets[dataset_id][2]

    def dataset(self, dataset_id: int) -> dict:
        name, fmt, content = self.datasets[dataset_id]
        return {"id": dataset_id, "name": name, "format": fmt, "size": len(content),
                "metadata": {"data_lines": content.count(b"\n"), "columns": 1}}


def run_fake(tool_dir, server=None, **kw):
    server = server or FakeServer()
    out = io.StringIO()
    summary = run_tests("http://fake", "key", tool_dir, api=server, out=out, poll=0, **kw)
    return summary, out.getvalue(), server


# -- reading the tests -------------------------------------------------------------------
def test_find_tool_files_skips_macros_and_test_data(tool_dir):
    assert find_tool_files(tool_dir) == [tool_dir / "upper" / "upper.xml"]


def test_own_tool_uploads_and_flat_params(tool_dir):
    cases = load_cases(tool_dir / "upper" / "upper.xml")
    assert [c.number for c in cases] == [1, 2, 3, 4, 5, 6, 7, 8]
    first, failing = cases[0], cases[5]
    assert (first.tool_id, first.tool_version) == ("upper", "1.2+galaxy3")
    assert first.uploads == (Upload("in.txt", "tabular", "in.txt"),)
    assert cases[1].uploads == (Upload("in.txt", None, "in.txt"),)
    assert first.params == {"input": DataRef(Upload("in.txt", "tabular", "in.txt"))}
    assert failing.params == {"input": DataRef(Upload("in.txt", None, "in.txt")),
                              "mode|how": "fail", "mode|code": "3"}
    ids = {Upload("in.txt", None, "in.txt"): 41}
    assert resolve_params(failing.params, ids) == {
        "input": {"src": "hda", "id": 41}, "mode|how": "fail", "mode|code": "3"}


@needs_shared
def test_shared_cat_multiple_and_repeat_inputs_are_lists():
    cases = {c.number: c for c in collect_cases(SHARED, "tp_cat")}
    two = cases[2]
    assert (two.tool_version, two.problem, two.skip_reason) == ("9.3+galaxy0", None, None)
    assert [u.fname for u in two.uploads] == ["sort_result1.bed", "sort_result3.bed"]
    ids = {u: n for n, u in enumerate(two.uploads, start=10)}
    hda1, hda3 = {"src": "hda", "id": 10}, {"src": "hda", "id": 11}
    # A multiple data param gets a list even of one dataset (queries_1|inputs2).
    assert resolve_params(two.params, ids) == {
        "inputs": [hda1, hda3], "queries_0|inputs2": [hda3, hda3], "queries_1|inputs2": [hda3]}


@needs_shared
def test_shared_wrappers_conditionals_repeats_booleans_and_ftype():
    cases = {c.label: c for c in collect_cases(SHARED)}
    sort3 = cases["tp_sort_header_tool test 3"]
    assert resolve_params(sort3.params, {sort3.uploads[0]: 7}) == {
        "infile": {"src": "hda", "id": 7},
        "sortkeys_0|column": "5", "sortkeys_0|order": "", "sortkeys_0|style": "g"}
    tac2 = cases["tp_tac test 2"]
    assert tac2.params["separator|before"] is True
    assert tac2.params["separator|separator_select"] == "yes"
    nl2 = cases["nl test 2"]
    assert nl2.uploads == (Upload("cut1.txt", "tabular", "cut1.txt"),)
    assert nl2.params["number_format"] == "ln"
    assert nl2.description.outputs[0]["attributes"]["assert_list"]  # assertions came through
    cut2 = cases["tp_cut_tool test 2"]
    assert cut2.params["cut_type_options|colnames_option|list"] == ["2"]  # multiple data_column
    assert cut2.params["complement"] == "--complement"
    grep1 = cases["tp_grep_tool test 1"]
    assert grep1.problem.startswith("input file ") and "grep1.txt is missing" in grep1.problem
    cut1 = cases["tp_cut_tool test 1"]
    assert cut1.problem.startswith("output 'output': expected file")
    assert "macros.xml" not in {c.description.tool_id for c in cases.values() if c.description}


# -- checking, against the fake server ---------------------------------------------------
def test_run_against_fake_server(tool_dir):
    summary, out, server = run_fake(tool_dir, jobs=4)
    lines = dict(line.split(":", 1) if ":" in line else (line, "")
                 for line in out.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP"))
    assert lines.keys() == {
        "PASS upper test 1", "PASS upper test 2", "FAIL upper test 3", "PASS upper test 4",
        "FAIL upper test 5", "PASS upper test 6", "FAIL upper test 7", "FAIL upper test 8"}
    assert "different than expected" in lines["FAIL upper test 3"]
    assert "lowercase b" in out  # the failed has_text
    assert lines["FAIL upper test 7"] == (
        " output out: Dataset metadata verification for [metadata_data_lines] failed, "
        "expected [4] but found [3]")
    assert "expected 2 outputs, found 1" in lines["FAIL upper test 8"]
    assert "(+1 more)" in lines["FAIL upper test 8"]
    assert "format is tabular, expected txt" in out
    assert out.splitlines()[-1] == "4 passed, 4 failed"
    assert (summary.passed, summary.failed, summary.skipped, summary.exit_code) == (4, 4, 0, 1)
    assert [r.number for r in summary.results] == [1, 2, 3, 4, 5, 6, 7, 8]
    # One upload per (file, ftype) for the whole run, though seven tests use in.txt.
    assert sorted(server.uploads, key=lambda u: u[1] or "") == [("in.txt", None), ("in.txt", "tabular")]
    first = server.submitted[0]
    assert first["tool_version"] == "1.2+galaxy3" and first["tool_id"] == "upper"


def test_only_one_tool_and_all_passing_exit_zero(tool_dir):
    (tool_dir / "upper" / "upper.xml").write_text(UPPER_XML.replace(
        'file="up_one_off.txt"/>', 'file="up.txt"/>').replace(
        '<has_text text="lowercase b"/>\n                    <has_n_lines n="7"/>',
        '<has_text text="C"/>').replace('ftype="txt"', 'ftype="tabular"').replace(
        'expect_num_outputs="2"', 'expect_num_outputs="1"').replace(
        'name="data_lines" value="4"', 'name="data_lines" value="3"'))
    summary, out, _ = run_fake(tool_dir, tool_id="upper", jobs=1)
    assert out.splitlines()[-1] == "8 passed, 0 failed", out
    assert summary.exit_code == 0


def test_only_selected_tests_run(tool_dir):
    summary, out, _ = run_fake(tool_dir, only={("upper", 0), ("upper", 2), ("other", 1)})
    assert [(r.number, r.outcome.value) for r in summary.results] == [(1, "PASS"), (3, "FAIL")]
    assert out.splitlines()[-1] == "1 passed, 1 failed"
    with pytest.raises(UsageError, match="none of the 1 selected tests"):
        run_fake(tool_dir, only={("upper", 8)})


def test_expect_failure_catches_a_job_that_succeeds(tool_dir):
    (tool_dir / "upper" / "upper.xml").write_text(
        UPPER_XML.replace('<param name="how" value="fail"/>', '<param name="how" value="plain"/>'))
    summary, out, _ = run_fake(tool_dir)
    assert "FAIL upper test 6: expected the job to fail, but it ended ok" in out


def test_a_job_ending_in_error_fails_with_its_info_and_stderr(tool_dir):
    (tool_dir / "upper" / "upper.xml").write_text(
        UPPER_XML.replace('<test expect_failure="true" expect_exit_code="3">', "<test>"))
    summary, out, _ = run_fake(tool_dir)
    assert re.search(r"^FAIL upper test 6: job \d+ ended error: exit code 3$", out, re.M), out
    assert "    stderr: bad" in out


def test_submission_refused_is_a_failure_with_the_server_message(tool_dir):
    (tool_dir / "upper" / "upper.xml").write_text(UPPER_XML.replace('id="upper"', 'id="nope"'))
    summary, out, _ = run_fake(tool_dir, tool_id="nope")
    assert "FAIL nope test 1: job submission: HTTP 400: no tool 'nope' (field tool_id)" in out
    assert summary.failed == 7 and summary.passed == 1  # expect_failure: a refusal is a failure


def test_collection_tests_are_skipped_with_why(tool_dir):
    coll = tool_dir / "coll"
    (coll / "test-data").mkdir(parents=True)
    (coll / "coll.xml").write_text(COLLECTION_XML)
    (coll / "test-data" / "in.txt").write_text("x\n")
    summary, out, server = run_fake(tool_dir, tool_id="coll")
    assert "SKIP coll test 1: input c is a collection" in out
    assert out.splitlines()[-1] == "0 passed, 0 failed, 1 skipped"
    assert summary.exit_code == 0 and server.submitted == []


def test_job_polled_until_it_ends(tool_dir):
    server = FakeServer(job_states=["new", "queued", "running"])
    summary, out, _ = run_fake(tool_dir, server=server, tool_id="upper")
    assert summary.passed == 4  # as without the waiting states
    assert server.jobs and all(not job["polls"] for job in server.jobs.values())


def test_wait_for_job_is_bounded():
    class Stuck:
        def job(self, job_id):
            return {"id": job_id, "state": "running"}
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
    with pytest.raises(JobTimeout, match="job 5 still running after 3 s"):
        wait_for_job(Stuck(), 5, timeout=3, poll=1, sleep=sleep, clock=lambda: now[0])
    # A clock that never moves cannot make it loop for ever.
    with pytest.raises(JobTimeout):
        wait_for_job(Stuck(), 5, timeout=3, poll=1, sleep=lambda s: None, clock=lambda: 0.0)


def test_usage_errors(tool_dir, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        collect_cases(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no tool XML"):
        collect_cases(tmp_path / "empty")
    with pytest.raises(UsageError, match="no tool with id 'other'"):
        collect_cases(tool_dir, "other")
    with pytest.raises(UsageError, match="--jobs"):
        run_fake(tool_dir, jobs=0)


def test_launcher_exit_2_for_an_unreachable_server(tool_dir):
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    result = subprocess.run([str(REPO / "scripts" / "tool-test"), "http://127.0.0.1:9",
                             str(tool_dir)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MULETEER_API_KEY": "k"}, cwd="/tmp")
    assert result.returncode == 2, result.stderr
    assert "cannot use the server at http://127.0.0.1:9" in result.stderr
    assert "Connection refused" in result.stderr


def test_command_line_temp_folder_is_its_own_and_removed():
    before = tempfile.gettempdir()
    with tt._own_temp_dir():
        inside = tempfile.gettempdir()
        assert inside != before and Path(inside).is_dir()
    assert tempfile.gettempdir() == before and not Path(inside).exists()


def test_main_usage_error_exit_2(tmp_path, capsys):
    assert tt.main(["http://127.0.0.1:9", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
