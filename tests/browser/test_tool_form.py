"""The tool form of a real Galaxy wrapper (app/tool_form.py, tool_form.html, tool_form.js) in
headless Chromium against a real uWSGI server whose only tool is
tests/data/tool_form/pick_columns.xml: a data param, a conditional (a select whose "cut"
case holds a data_column), a repeat (min 1, max 3) with a boolean, a section.
The first tests need no server: the help's rendering, the form's flat params, the JSON.
"""
from __future__ import annotations

import os
import re

import pytest

from tests.support.uwsgi_server import LOCAL_JOB_CONF, REPO, UwsgiServer

try:
    from playwright.sync_api import expect
except ImportError:  # conftest's browser_available skips (or fails) every test, saying why
    expect = None

FIXTURES = os.path.join(REPO, "tests", "data", "tool_form")
TOOL = os.path.join(FIXTURES, "pick_columns.xml")
TABLE = "name\tgroup\tscore\ncarol\tb\t7\nalice\ta\t10\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's own server (conftest's `alice` and `login` use it): the fixture tool only."""
    srv = UwsgiServer(str(tmp_path_factory.mktemp("tool_form")), job_conf=LOCAL_JOB_CONF, mules=1,
                      galaxy={"tool_path": FIXTURES}).start()
    yield srv
    srv.stop()


def tool():
    from muleteer.tools.load import load_tool
    return load_tool(TOOL)


# -- without a server -------------------------------------------------------------------
def test_help_is_rendered_without_raw_html_files_or_script_links():
    from app.tool_form import help_html, render_rst
    html = str(render_rst("""
        **Bold** and `a link <https://galaxyproject.org>`_ and `bad <javascript:alert(1)>`_.

        .. raw:: html

           <script>alert(1)</script>

        .. include:: /etc/passwd

        .. image:: javascript:alert(2)
        """))
    assert "<strong>Bold</strong>" in html
    assert 'href="https://galaxyproject.org"' in html
    assert "bad" in html  # the text of the refused link stays
    for refused in ("<script", "javascript:", "root:", "passwd", "<img", "System Message"):
        assert refused not in html, refused
    assert not html.lstrip().startswith("<blockquote")  # the XML's indentation is not a quote
    t = tool()
    assert help_html(t) is help_html(t)  # cached per tool


def test_the_form_becomes_galaxys_flat_params():
    from werkzeug.datastructures import MultiDict
    from app.tool_form import flat_params
    form = MultiDict([
        ("csrf_token", "x"), ("tool_version", "1.0.0"), ("input", "7"),
        ("mode|kind", "cut"), ("mode|column", "2"), ("mode|lines", "5"),  # lines: not the chosen case
        ("sortkeys_0|__block__", "1"), ("sortkeys_0|label", "a"), ("sortkeys_0|reverse", "false"),
        ("sortkeys_1|__block__", "1"), ("sortkeys_1|label", "b"), ("sortkeys_1|reverse", "false"),
        ("sortkeys_1|reverse", "true"), ("extra|note", "n")])
    assert flat_params(tool(), form) == {
        "input": {"src": "hda", "id": 7}, "mode|kind": "cut", "mode|column": "2",
        "sortkeys_0|label": "a", "sortkeys_0|reverse": "false", "sortkeys_1|label": "b",
        "sortkeys_1|reverse": "true", "extra|note": "n"}
    # No dataset chosen: left out (check_params says it is needed); no block: no key.
    assert flat_params(tool(), MultiDict([("input", ""), ("mode|kind", "head"), ("mode|lines", "3")])) == {
        "mode|kind": "head", "mode|lines": "3"}


def test_a_refused_form_is_shown_as_sent_with_the_error_by_its_field():
    from werkzeug.datastructures import MultiDict
    from app.tool_form import form_view
    form = MultiDict([("mode|kind", "cut"), ("mode|column", "9"), ("sortkeys_0|__block__", "1"),
                      ("sortkeys_0|label", "a"), ("sortkeys_1|__block__", "1"), ("sortkeys_1|label", "kept"),
                      ("sortkeys_1|reverse", "false"), ("sortkeys_1|reverse", "true")])
    view = form_view(tool(), form, {"mode|column": "no column 9", "elsewhere": "?"})
    _data, mode, keys, extra = view.fields
    assert [c.value for c in mode.cases if c.active] == ["cut"]
    assert mode.cases[1].fields[0].error == "no column 9"
    assert [b.prefix for b in keys.blocks] == ["sortkeys_0|", "sortkeys_1|"]
    assert keys.blocks[1].fields[0].value == "kept" and keys.blocks[1].fields[1].checked
    assert keys.template.prefix == "sortkeys___index__|" and keys.template.fields[0].value == "k"
    assert not extra.open
    assert view.unplaced == [("elsewhere", "?")]
    new = form_view(tool())
    assert len(new.fields[2].blocks) == 1  # default="1"
    assert [c.value for c in new.fields[1].cases if c.active] == ["head"]


def test_the_tool_as_json():
    from app.tool_json import tool_json, tool_summary
    t = tool()
    got = tool_json(t, ["1.0.0"])
    assert tool_summary(t) == {"id": "pick_columns", "name": "Pick columns", "version": "1.0.0",
                               "description": t.description, "section": t.section}
    assert got["versions"] == ["1.0.0"] and got["profile"] == "21.01"
    assert "**What it does**" in got["help"]
    data, mode, keys, extra = got["inputs"]
    assert data["type"] == "data" and data["extensions"] == ["tabular"] and not data["optional"]
    assert mode["type"] == "conditional" and mode["test_param"]["name"] == "kind"
    assert mode["test_param"]["options"] == [["First lines", "head", True], ["One column", "cut", False]]
    assert [c["value"] for c in mode["cases"]] == ["head", "cut"]
    lines = mode["cases"][0]["inputs"][0]
    assert (lines["type"], lines["value"], lines["min"], lines["max"]) == ("integer", 2, 1, 100)
    column = mode["cases"][1]["inputs"][0]
    assert column["type"] == "data_column" and column["data_ref"] == "input"
    assert (keys["type"], keys["min"], keys["max"], keys["title"]) == ("repeat", 1, 3, "Key")
    assert [i["name"] for i in keys["inputs"]] == ["label", "reverse"]
    assert keys["inputs"][1]["value"] is False
    assert extra["type"] == "section" and extra["inputs"][0]["optional"]
    assert got["outputs"] == [{"name": "out", "format": "txt", "label": "", "hidden": False}]


def test_a_jobs_params_shown_as_flat_paths():
    from app.tool_form import job_param_rows
    tree = {"input": 7, "mode": {"kind": "cut", "column": 2},
            "sortkeys": [{"label": "a", "reverse": False}, {"label": "b", "reverse": True}],
            "extra": {"note": ""}}
    for t in (tool(), None):  # None: a tool no longer loaded
        rows = job_param_rows(t, tree, {"input": {"id": 7, "name": "t.tsv"}})
        got = {r.path: (r.text, [d["id"] for d in r.datasets]) for r in rows}
        assert got["mode|column"] == ("2", []) and got["sortkeys_1|reverse"] == ("true", [])
        assert got["input"][1] == [7]
        assert list(got)[:3] == ["input", "mode|kind", "mode|column"]


# -- in the browser ----------------------------------------------------------------------
def names(page) -> list:
    """What the form would send now, in order (disabled fields are not)."""
    return page.evaluate("""() => Array.from(new FormData(document.getElementById('tool-form')).keys())
                               .filter(k => k !== 'csrf_token' && k !== 'tool_version')""")


def open_form(page, server, user, login):
    login(page, user)
    page.goto(f"{server.url}/tools/pick_columns")
    expect(page.locator("main h1")).to_contain_text("Pick columns")


def table(server, user, content=TABLE, name="people.tabular") -> int:
    made = user.api.post(f"{server.url}/api/datasets", timeout=10,
                         json={"content": content, "name": name, "format": "tabular"})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def test_the_conditional_shows_only_its_chosen_case(page, server, alice, login, shot):
    open_form(page, server, alice, login)
    lines, column = page.get_by_label("Lines"), page.locator('[name="mode|column"]').first
    expect(lines).to_be_visible()
    expect(column).to_be_hidden()
    assert "mode|lines" in names(page) and "mode|column" not in names(page)
    page.get_by_label("What to do").select_option("cut")
    expect(lines).to_be_hidden()
    expect(page.get_by_label("Column")).to_be_visible()
    assert "mode|lines" not in names(page) and "mode|column" in names(page)
    page.get_by_label("What to do").select_option("head")
    expect(lines).to_be_visible()
    # The help: reStructuredText as HTML, its raw HTML and javascript: link dropped.
    help_ = page.locator(".tool-help .rst")
    expect(help_.locator("strong", has_text="What it does")).to_have_count(1)
    expect(help_.get_by_role("link", name="Galaxy")).to_have_attribute("href", "https://galaxyproject.org")
    expect(help_.locator("a", has_text="this")).to_have_count(0)
    assert page.evaluate("() => window.pwned") is None
    # The section is closed until opened; its field is sent either way.
    section = page.locator("details.section")
    expect(page.get_by_label("Note")).to_be_hidden()
    section.locator("summary").click()
    expect(page.get_by_label("Note")).to_be_visible()
    assert "extra|note" in names(page)
    shot(page, "tool-form-conditional")


def test_repeat_blocks_are_added_and_removed_within_min_and_max(page, server, alice, login, shot):
    open_form(page, server, alice, login)
    repeat = page.locator('.repeat[data-name="sortkeys"]')
    add = repeat.get_by_role("button", name="Add Key")
    blocks = repeat.locator(".repeat-block")
    expect(blocks).to_have_count(1)
    expect(repeat.get_by_role("button", name="Remove Key 1")).to_be_disabled()  # min 1
    add.click()
    add.click()
    expect(blocks).to_have_count(3)
    expect(add).to_be_disabled()  # max 3
    page.fill('[name="sortkeys_1|label"]', "second")
    page.fill('[name="sortkeys_2|label"]', "third")
    page.check('[name="sortkeys_2|reverse"][type=checkbox]')
    shot(page, "tool-form-repeat")
    repeat.get_by_role("button", name="Remove Key 1").click()
    expect(blocks).to_have_count(2)
    expect(add).to_be_enabled()
    # Renumbered: no gap in the flat names, each value kept with its block.
    expect(page.locator('[name="sortkeys_0|label"]')).to_have_value("second")
    expect(page.locator('[name="sortkeys_1|label"]')).to_have_value("third")
    expect(page.locator('[name="sortkeys_1|reverse"][type=checkbox]')).to_be_checked()
    expect(page.locator('[name^="sortkeys_2|"]')).to_have_count(0)
    expect(blocks.nth(1).locator(".repeat-number")).to_have_text("2")
    expect(page.locator("#l-sortkeys_1\\|label")).to_have_attribute("for", "p-sortkeys_1|label")
    sent = [n for n in names(page) if n.startswith("sortkeys_")]
    assert sent == ["sortkeys_0|__block__", "sortkeys_0|label", "sortkeys_0|reverse", "sortkeys_1|__block__",
                    "sortkeys_1|label", "sortkeys_1|reverse", "sortkeys_1|reverse"]


def test_run_with_a_data_column_from_the_chosen_dataset(page, server, alice, login, shot):
    dataset_id = table(server, alice)
    other = alice.api.post(f"{server.url}/api/datasets", timeout=10,
                           json={"content": ">s\nACGT\n", "name": "seq.fa", "format": "fasta"}).json()
    open_form(page, server, alice, login)
    picker = page.get_by_label("Table")
    expect(picker.locator(f'option[value="{dataset_id}"]')).to_contain_text("people.tabular")
    expect(picker.locator(f'option[value="{other["id"]}"]')).to_have_count(0)  # not tabular
    page.get_by_label("What to do").select_option("cut")
    # No dataset yet: a number input.
    expect(page.locator('input.column-number[name="mode|column"]')).to_be_visible()
    picker.select_option(str(dataset_id))
    columns = page.locator('select.column-select[name="mode|column"]')
    expect(columns).to_be_visible()
    expect(columns.locator("option")).to_have_count(3)
    expect(columns.locator("option").nth(1)).to_have_attribute("value", "2")
    columns.select_option("2")
    page.get_by_role("button", name="Add Key").click()
    page.fill('[name="sortkeys_1|label"]', "second")
    page.check('[name="sortkeys_1|reverse"][type=checkbox]')
    shot(page, "tool-form-data-column")
    page.get_by_role("button", name="Run Pick columns").click()

    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = int(re.search(r"/jobs/(\d+)$", page.url).group(1))
    job = alice.api.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()
    assert job["params"] == {"input": dataset_id, "mode": {"kind": "cut", "column": 2},
                             "sortkeys": [{"label": "k", "reverse": False},
                                      {"label": "second", "reverse": True}],
                             "extra": {"note": ""}}
    params = page.locator("#job-params")
    expect(params.locator('dd[data-path="mode|column"]')).to_have_text("2")
    expect(params.locator('dd[data-path="sortkeys_1|reverse"]')).to_have_text("true")
    expect(params.locator('dd[data-path="input"] a')).to_have_attribute(
        "href", f"/api/datasets/{dataset_id}/display")
    expect(page.locator('#job-state:not([data-active="1"])')).not_to_have_text("", timeout=30_000)
    ended = alice.api.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()
    stderr = alice.api.get(f"{server.url}/api/jobs/{job_id}/stderr", timeout=10).text
    assert ended["state"] == "ok", (ended.get("info"), stderr, ended.get("command_line"))
    output = page.locator("#job-outputs li[data-dataset]")
    got = alice.api.get(f"{server.url}/api/datasets/{output.get_attribute('data-dataset')}/display",
                        timeout=10).text
    assert got == "group\nb\na\nk fwd\nsecond rev\n"
    shot(page, "tool-form-job")


def test_a_refused_value_is_shown_by_its_field_with_the_form_as_sent(page, server, alice, login, shot):
    dataset_id = table(server, alice, name="refused.tabular")
    open_form(page, server, alice, login)
    page.get_by_label("Table").select_option(str(dataset_id))
    page.get_by_role("button", name="Add Key").click()
    page.fill('[name="sortkeys_1|label"]', "kept")
    # Past the page's own check (min="1"), so the server's is what answers.
    page.evaluate("() => document.querySelector('[name=\"mode|lines\"]').removeAttribute('min')")
    page.get_by_label("Lines").fill("0")
    page.get_by_role("button", name="Run Pick columns").click()
    expect(page.locator('.field.invalid[data-param="mode|lines"] .field-error')).to_contain_text("minimum")
    expect(page).to_have_url(re.compile(r"/tools/pick_columns$"))
    expect(page.get_by_label("Lines")).to_have_value("0")
    expect(page.locator('[name="sortkeys_1|label"]')).to_have_value("kept")
    expect(page.locator('.repeat[data-name="sortkeys"] .repeat-block')).to_have_count(2)
    expect(page.get_by_label("Table")).to_have_value(str(dataset_id))
    shot(page, "tool-form-error")
    # The chosen case is kept too: an error in the other case's field.
    page.get_by_label("What to do").select_option("cut")
    columns = page.locator('select.column-select[name="mode|column"]')
    expect(columns).to_be_visible()
    # A column the dataset does not have, sent past the page (a stale page, a hand-made form).
    page.evaluate("""() => { const s = document.querySelector('select.column-select[name="mode|column"]');
                             s.add(new Option('Column 9', '9', true, true)); }""")
    page.get_by_role("button", name="Run Pick columns").click()
    expect(page.locator('.field.invalid[data-param="mode|column"] .field-error')).not_to_have_text("")
    expect(page.get_by_label("What to do")).to_have_value("cut")


RESOURCES_JOB_CONF = LOCAL_JOB_CONF.replace("</job_conf>", """    <resources default="basic">
        <group id="basic">cores,memory</group>
    </resources>
</job_conf>""")
RESOURCE_PARAMS = """<parameters>
    <param name="cores" type="integer" label="Cores" min="1" max="2" value="" help="Leave blank for the default."/>
    <param name="memory" type="float" label="Memory (GB)" min="0.5" max="4" value=""/>
</parameters>
"""


def test_job_resource_parameters_are_chosen_in_the_form(page, tmp_path_factory, shot):
    """Galaxy's "Job Resource Parameters": the defaults unless the user says otherwise; the
    asked values checked by the server and kept with the job (a server of its own: resources
    are a setting of the job configuration)."""
    directory = tmp_path_factory.mktemp("tool_form_resources")
    (directory / "job_resource_params_conf.xml").write_text(RESOURCE_PARAMS)
    srv = UwsgiServer(str(directory), job_conf=RESOURCES_JOB_CONF, mules=1, processes=1,
                      galaxy={"tool_path": FIXTURES}).start()
    try:
        email, password = "resources@example.org", "a good browser password"
        made = srv.http.post(f"{srv.url}/api/users", json={"email": email, "password": password},
                             timeout=10)
        assert made.status_code == 201, made.text
        key = srv.http.post(f"{srv.url}/api/users/{made.json()['id']}/api_keys", timeout=10)
        owner = type("Owner", (), {"api": srv.session()})()
        owner.api.headers["x-api-key"] = key.json()["key"]
        dataset_id = table(srv, owner)
        page.goto(f"{srv.url}/login")
        page.fill("#email", email)
        page.fill("#password", password)
        page.click("main form button[type=submit]")
        page.wait_for_url(re.compile(r"/jobs$"))
        page.goto(f"{srv.url}/tools/pick_columns")
        choice, cores = page.get_by_label("Job Resource Parameters"), page.get_by_label("Cores")
        expect(choice).to_have_value("no")
        expect(choice.locator("option:checked")).to_have_text("Use default job resource parameters")
        expect(cores).to_be_hidden()
        assert "__job_resource|__job_resource__select" in names(page)
        assert "__job_resource|cores" not in names(page)
        choice.select_option("yes")
        expect(cores).to_be_visible()
        expect(page.get_by_label("Memory (GB)")).to_be_visible()
        assert [n for n in names(page) if n.startswith("__job_resource")] == [
            "__job_resource|__job_resource__select", "__job_resource|cores", "__job_resource|memory"]
        page.get_by_label("Table").select_option(str(dataset_id))
        # Past the page's own max="2", so the server's check is what answers.
        page.evaluate("() => document.querySelector('[name=\"__job_resource|cores\"]').removeAttribute('max')")
        page.get_by_label("Cores").fill("3")
        page.get_by_role("button", name="Run Pick columns").click()
        error = page.locator('.field.invalid[data-param="__job_resource|cores"] .field-error')
        expect(error).to_contain_text("maximum")
        expect(page.get_by_label("Job Resource Parameters")).to_have_value("yes")
        shot(page, "tool-form-job-resources")
        page.get_by_label("Cores").fill("2")
        page.get_by_label("Memory (GB)").fill("0.5")
        page.get_by_role("button", name="Run Pick columns").click()
        page.wait_for_url(re.compile(r"/jobs/\d+$"))
        job_id = int(re.search(r"/jobs/(\d+)$", page.url).group(1))
        job = srv.wait(job_id, timeout=30)
        assert job["params"]["__job_resource"] == {"__job_resource__select": "yes", "cores": 2,
                                                   "memory": 0.5}
        assert job["state"] == "ok", job["info"]
    finally:
        srv.stop()
