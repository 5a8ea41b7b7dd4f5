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
from tests.support.shared_tools import text_processing_dir

CORPUS = text_processing_dir()

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


VERSIONED_TOOL = """<tool id="versioned" name="Versioned" version="{version}" profile="22.05">
    <version_command>echo 'versioned {version}'</version_command>
    <command>echo 'ran {version}' > '$out'</command>
    <outputs><data name="out" format="txt"/></outputs>
</tool>
"""


def test_broken_wrappers_are_skipped_and_versions_are_chosen(tmp_path):
    """A wrapper with a missing macro file and one whose template does not compile are
    skipped, each logged with its file and line; the others load: two versions of one id
    both, the newest by default, the other by tool_version; the version command's output
    is kept with the job."""
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
    (tools / "bad_template.xml").write_text(
        '<tool id="bad_template" name="Bad template" version="1.0" profile="22.05">\n'
        '    <command>#if $x\necho no end</command>\n'
        '    <inputs><param name="x" type="boolean"/></inputs>\n'
        '</tool>\n')
    for version in ("1.0", "2.0"):
        (tools / f"versioned_{version}.xml").write_text(VERSIONED_TOOL.format(version=version))
    srv = UwsgiServer(str(tmp_path / "srv"), mules=1, job_conf=C_LOCALE_JOB_CONF,
                      galaxy={"tool_path": str(tools)}).start()
    try:
        ids = sorted(t["id"] for t in srv.http.get(f"{srv.url}/api/tools", timeout=30).json())
        assert ids == ["noop", "versioned"]
        log = open(srv.logfile, errors="replace").read()
        assert "broken.xml" in log and "no_such_macros.xml" in log, srv.log_tail()
        assert "bad_template.xml" in log and "<command>" in log, srv.log_tail()
        shown = srv.http.get(f"{srv.url}/api/tools/versioned", timeout=30).json()
        assert shown["version"] == "2.0" and shown["versions"] == ["1.0", "2.0"], shown
        for asked, expected in ((None, "2.0"), ("1.0", "1.0")):
            # Galaxy's clients send `inputs`; ours `params`: both are taken.
            body = {"tool_id": "versioned", "inputs" if asked else "params": {}}
            if asked:
                body["tool_version"] = asked
            answer = srv.http.post(f"{srv.url}/api/jobs", json=body, timeout=30)
            assert answer.status_code == 201, answer.text
            job = srv.wait(answer.json()["id"])
            assert job["state"] == "ok" and job["tool_version"] == expected, job
            assert job["command_version"] == f"versioned {expected}", job
            out = srv.http.get(f"{srv.url}/api/datasets/{job['outputs']['out']['id']}/display",
                               timeout=30).text
            assert out == f"ran {expected}\n"
        missing = srv.http.post(f"{srv.url}/api/jobs", timeout=30, json={
            "tool_id": "versioned", "tool_version": "3.0", "params": {}})
        assert missing.status_code == 400 and missing.json()["field"] == "tool_version"
        assert "1.0, 2.0" in missing.json()["error"]
    finally:
        srv.stop()
