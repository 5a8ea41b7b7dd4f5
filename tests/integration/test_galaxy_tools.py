"""Real Galaxy tool wrappers through a real server (uWSGI, mules, the local runner), checked
by their own <tests> with scripts/tool-test's code (galaxy-tool-util's verify):

- the shipped example wrappers (tools/), every test;
- the text_processing wrappers others wrote (../shared/galaxy-tools/text_processing),
  every test whose files are all there (tests.json says which), jobs with LC_ALL=C as in
  Galaxy's test environments;
- a folder with broken wrappers: the server starts, serves the good one, and says which
  file and line each broken one failed at.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import pytest

from muleteer import tool_test
from tests.support.uwsgi_server import REPO, UwsgiServer

CORPUS = os.path.realpath(os.path.join(REPO, "..", "shared", "galaxy-tools", "text_processing"))

# Galaxy's test environments run tools in the C locale; the corpus's expected files assume it.
C_LOCALE_JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins workers="4">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
    </plugins>
    <destinations default="local">
        <destination id="local" runner="local">
            <env id="LC_ALL">C</env>
        </destination>
    </destinations>
</job_conf>
"""


def run(server: UwsgiServer, tool_dir: str, **kwargs):
    out = io.StringIO()
    summary = tool_test.run_tests(server.url, server.api_key, tool_dir, out=out, **kwargs)
    return summary, out.getvalue()


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    srv = UwsgiServer(str(tmp_path_factory.mktemp("shipped")), job_conf=C_LOCALE_JOB_CONF,
                      mules=1).start()
    yield srv
    srv.stop()


def test_shipped_wrappers_pass_their_own_tests(shipped):
    summary, text = run(shipped, os.path.join(REPO, "tools"))
    assert summary.failed == 0 and summary.passed >= 12, text


def test_tool_test_command_reports_a_failure(shipped, tmp_path):
    """The command itself, as an admin runs it: a wrapper whose expected output is wrong
    fails with exit code 1 and says which test."""
    wrapper = tmp_path / "tools"
    (wrapper / "test-data").mkdir(parents=True)
    for name in ("sort_lines.xml", "macros.xml"):
        shutil.copy(os.path.join(REPO, "tools", name), wrapper / name)
    for name in os.listdir(os.path.join(REPO, "tools", "test-data")):
        target = wrapper / "test-data" / name
        shutil.copy(os.path.join(REPO, "tools", "test-data", name), target)
        if name.startswith("sort_lines"):  # every expected output of sort_lines, now wrong
            target.write_text("not what sort_lines makes\n")
    result = subprocess.run([os.path.join(REPO, "scripts", "tool-test"), shipped.url, str(wrapper),
                             "--key", shipped.api_key, "--tool", "sort_lines"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL sort_lines test" in result.stdout, result.stdout
    assert "failed" in result.stdout.splitlines()[-1], result.stdout


@pytest.mark.skipif(not os.path.isdir(CORPUS), reason=f"{CORPUS} is absent: the shared "
                    "text_processing wrappers are reference material beside the checkout")
def test_every_complete_text_processing_test_passes(tmp_path_factory):
    with open(os.path.join(CORPUS, "tests.json")) as fh:
        complete = {(t["tool_id"], t["test_index"]) for t in json.load(fh) if t["complete"]}
    srv = UwsgiServer(str(tmp_path_factory.mktemp("corpus")), job_conf=C_LOCALE_JOB_CONF,
                      mules=1, galaxy={"tool_path": CORPUS}).start()
    try:
        summary, text = run(srv, CORPUS, only=complete)
    finally:
        srv.stop()
    assert summary.passed == len(complete) and summary.failed == 0, text


def test_a_broken_wrapper_is_skipped_with_its_file_and_line(tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("noop.xml", "macros.xml"):
        shutil.copy(os.path.join(REPO, "tools", name), tools / name)
    (tools / "broken.xml").write_text(
        '<tool id="broken" name="Broken" version="1.0">\n'
        '    <macros>\n'
        '        <import>no_such_macros.xml</import>\n'
        '    </macros>\n'
        '    <command>true</command>\n'
        '</tool>\n')
    srv = UwsgiServer(str(tmp_path / "srv"), mules=1, job_conf=C_LOCALE_JOB_CONF,
                      galaxy={"tool_path": str(tools)}).start()
    try:
        ids = [t["id"] for t in srv.http.get(f"{srv.url}/api/tools", timeout=30).json()]
        assert ids == ["noop"]
        log = open(srv.logfile, errors="replace").read()
        assert "broken.xml" in log and "no_such_macros.xml" in log, srv.log_tail()
    finally:
        srv.stop()
