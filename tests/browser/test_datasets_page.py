"""The Datasets page in headless Chromium against a real uWSGI server: an upload over the
resumable protocol (app/static/upload.js) with its progress bar, pasted text, delete, and
a tool form that runs on an uploaded dataset. Screenshots: test-artifacts/screenshots/.
"""
from __future__ import annotations

import hashlib
import os
import re

try:
    from playwright.sync_api import expect
except ImportError:  # conftest's browser_available skips (or fails) every test, saying why
    expect = None


def open_datasets(page, server, user, login):
    login(page, user)
    page.get_by_role("link", name="Datasets", exact=True).click()
    expect(page).to_have_url(re.compile(r"/datasets$"))
    expect(page.locator("main h1")).to_have_text("Datasets")


def row_of(page, name):
    return page.locator("#datasets tbody tr", has=page.locator("td.name", has_text=name))


def test_upload_a_file_with_its_progress_bar(page, server, alice, login, shot, tmp_path):
    open_datasets(page, server, alice, login)
    # 10.5 MiB: three PATCH requests of 4 MiB (the last one shorter), text so the peek shows.
    line = b"chr1\t100\t200\tfeature\n"
    data = line * ((10 * 1024 * 1024 + 512 * 1024) // len(line))
    path = tmp_path / "regions.bed"
    path.write_bytes(data)
    patches = []
    page.on("request", lambda r: patches.append(r) if r.method == "PATCH" else None)
    page.select_option("#upload-format", "bed")
    page.set_input_files("#upload-file", str(path))

    item = page.locator("#uploads li").first
    expect(item.locator(".upload-name")).to_have_text("regions.bed")
    expect(item.locator("progress")).to_have_attribute("value", "100", timeout=30_000)
    expect(item.locator(".percent")).to_have_text("100%")
    expect(item).to_have_class(re.compile(r"\bdone\b"), timeout=20_000)
    expect(item.locator(".upload-status")).to_contain_text("Stored as dataset")
    dataset_id = int(item.get_attribute("data-dataset"))
    # In 4 MiB chunks (a chunk retried on a busy machine is sent again from its offset).
    offsets = sorted({int(p.headers.get("upload-offset")) for p in patches})
    assert offsets == [0, 4 * 1024 * 1024, 8 * 1024 * 1024], offsets
    assert all(p.headers.get("x-csrftoken") for p in patches)

    row = row_of(page, "regions.bed")
    expect(row).to_have_count(1)
    expect(row.locator("td.size")).to_have_attribute("data-bytes", str(len(data)))
    expect(row.locator("td.size")).to_have_text("10.5 MiB")
    expect(row.locator("td.format")).to_have_text("bed")
    expect(row.locator(".state")).to_have_text("ok")
    expect(row.locator("time")).to_contain_text("UTC")
    row.locator("summary").click()
    expect(row.locator("pre.peek")).to_contain_text("chr1\t100\t200\tfeature")
    link = row.get_by_role("link", name="Download")
    assert link.get_attribute("href") == f"/api/datasets/{dataset_id}/display"
    shot(page, "datasets-upload")

    # The bytes read back, byte for byte (through the API).
    got = alice.api.get(f"{server.url}/api/datasets/{dataset_id}/display", timeout=30)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()


def test_an_upload_resumes_after_a_failed_chunk(page, server, alice, login, tmp_path):
    open_datasets(page, server, alice, login)
    data = os.urandom(9 * 1024 * 1024)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    failed = []

    def flaky(route):
        request = route.request
        if request.method == "PATCH" and request.headers.get("upload-offset") == str(4 * 1024 * 1024) \
                and not failed:
            failed.append(request.url)
            route.abort("connectionreset")  # the second chunk is lost once
        else:
            route.continue_()
    page.route("**/api/upload/resumable_upload/**", flaky)
    page.set_input_files("#upload-file", str(path))
    item = page.locator("#uploads li").first
    expect(item).to_have_class(re.compile(r"\bdone\b"), timeout=40_000)
    assert failed
    dataset_id = int(item.get_attribute("data-dataset"))
    shown = alice.api.get(f"{server.url}/api/datasets/{dataset_id}", timeout=10).json()
    assert shown["size"] == len(data)
    assert shown["sha256"] == hashlib.sha256(data).hexdigest()
    assert shown["format"] in ("data", "binary")


def test_paste_text_then_delete_it(page, server, alice, login, shot):
    open_datasets(page, server, alice, login)
    # A format the content clearly is not: the API's error shows by its field.
    page.fill("#paste-name", "pasted.fa")
    page.select_option("#paste-format", "bam")
    page.fill("#paste-content", "hello\nworld\n")
    page.get_by_role("button", name="Save as a dataset").click()
    error = page.locator("#paste-form .field.invalid .field-error")
    expect(error).to_contain_text("format")
    shot(page, "datasets-paste-error")

    page.fill("#paste-name", "greeting.txt")
    page.select_option("#paste-format", "txt")
    page.get_by_role("button", name="Save as a dataset").click()
    expect(page.locator("#paste-error")).to_contain_text("Stored as dataset")
    expect(page.locator("#paste-form .field.invalid")).to_have_count(0)
    expect(page.locator("#paste-content")).to_have_value("")
    row = row_of(page, "greeting.txt")
    expect(row.locator("td.size")).to_have_attribute("data-bytes", "12")
    expect(row.locator("td.size")).to_have_text("12 bytes")
    expect(row.locator("td.format")).to_have_text("txt")
    dataset_id = int(row.get_attribute("data-dataset"))

    # Delete asks first: no means no.
    page.once("dialog", lambda d: d.dismiss())
    row.get_by_role("button", name="Delete greeting.txt").click()
    expect(row).to_have_count(1)
    questions = []

    def accept(dialog):
        questions.append(dialog.message)
        dialog.accept()
    page.once("dialog", accept)
    row.get_by_role("button", name="Delete greeting.txt").click()
    expect(row).to_have_count(0)
    assert "greeting.txt" in questions[0]
    assert alice.api.get(f"{server.url}/api/datasets/{dataset_id}", timeout=10).json()["state"] == "deleted"


def test_another_users_datasets_are_not_listed(page, server, alice, bob, login):
    made = alice.api.post(f"{server.url}/api/datasets", timeout=10,
                          json={"content": "secret\n", "name": "alice-only.txt", "format": "txt"})
    assert made.status_code == 201, made.text
    open_datasets(page, server, bob, login)
    expect(page.locator("#datasets tbody")).not_to_contain_text("Loading")
    expect(row_of(page, "alice-only.txt")).to_have_count(0)


def test_the_page_fits_a_phone(new_context, server, alice, login, shot):
    page = new_context(viewport={"width": 390, "height": 844}).new_page()
    open_datasets(page, server, alice, login)
    expect(page.locator("#datasets tbody")).not_to_contain_text("Loading")
    shot(page, "datasets-phone")
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner


def upload_through_the_page(page, path, format="auto") -> int:
    page.select_option("#upload-format", format)
    page.set_input_files("#upload-file", str(path))
    item = page.locator("#uploads li", has=page.locator(".upload-name", has_text=path.name)).first
    expect(item).to_have_class(re.compile(r"\bdone\b"), timeout=20_000)
    return int(item.get_attribute("data-dataset"))


def test_run_a_tool_on_an_uploaded_dataset(page, server, alice, login, shot, tmp_path):
    open_datasets(page, server, alice, login)
    table = tmp_path / "scores.bed"
    table.write_text("chr1\t10\t20\tc\t30\nchr1\t5\t9\ta\t100\nchr2\t1\t4\tb\t7\n")
    bed_id = upload_through_the_page(page, table, "bed")
    fasta = alice.api.post(f"{server.url}/api/datasets", timeout=10,
                           json={"content": ">s\nACGT\n", "name": "seq.fa", "format": "fasta"}).json()

    page.get_by_role("link", name="Tools", exact=True).click()
    page.get_by_role("link", name="Sort a table by a column").click()
    expect(page).to_have_url(re.compile(r"/tools/sort_tabular$"))
    picker = page.get_by_label("Table")
    # A tabular param takes bed (bed ⊂ interval ⊂ tabular), never fasta.
    expect(picker.locator(f'option[value="{bed_id}"]')).to_have_text(re.compile(r"scores\.bed \(bed, "))
    expect(picker.locator(f'option[value="{fasta["id"]}"]')).to_have_count(0)
    picker.select_option(str(bed_id))
    page.get_by_label("Column").fill("5")
    page.get_by_label("Numeric").check()
    shot(page, "tool-form-data-param")
    page.get_by_role("button", name="Run Sort a table by a column").click()

    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = int(re.search(r"/jobs/(\d+)$", page.url).group(1))
    expect(page.locator('#job-state:not([data-active="1"])')).to_have_text("ok", timeout=30_000)
    inputs = page.locator("#job-inputs li")
    expect(inputs).to_have_count(1)
    expect(inputs.get_by_role("link", name="scores.bed")).to_have_attribute(
        "href", f"/api/datasets/{bed_id}/display")
    output = page.locator("#job-outputs li[data-dataset]")
    expect(output).to_have_count(1)
    output_id = int(output.get_attribute("data-dataset"))
    expect(output.locator("a").first).to_have_attribute("href", f"/api/datasets/{output_id}/display")
    expect(output.get_by_role("link", name="in Datasets")).to_have_attribute("href", re.compile(r"^/datasets\?name="))
    shot(page, "job-with-datasets")

    job = alice.api.get(f"{server.url}/api/jobs/{job_id}", timeout=10).json()
    assert job["inputs"]["input"]["id"] == bed_id
    assert job["outputs"]["sorted"]["id"] == output_id
    sorted_text = alice.api.get(f"{server.url}/api/datasets/{output_id}/display", timeout=10).text
    assert [line.split("\t")[3] for line in sorted_text.splitlines()] == ["b", "c", "a"]

    # The output is in the list too, found by the job page's link.
    output.get_by_role("link", name="in Datasets").click()
    expect(page).to_have_url(re.compile(r"/datasets\?name="))
    expect(page.locator(f'#datasets tbody tr[data-dataset="{output_id}"]')).to_have_count(1)


def test_a_multiple_data_param_and_a_missing_choice(page, server, alice, login, shot):
    ids = []
    for name, text in (("one.txt", "first\n"), ("two.txt", "second\n")):
        made = alice.api.post(f"{server.url}/api/datasets", timeout=10,
                              json={"content": text, "name": name, "format": "txt"})
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    login(page, alice)
    page.goto(f"{server.url}/tools/concatenate")
    picker = page.get_by_label("Datasets")
    assert picker.evaluate("e => e.multiple")
    # None chosen: the page says so by the field, and nothing is sent.
    page.get_by_role("button", name="Run Concatenate datasets").click()
    expect(page.locator('.field[data-param="inputs"] .field-error')).not_to_have_text("")
    expect(page).to_have_url(re.compile(r"/tools/concatenate$"))
    picker.select_option([str(i) for i in ids])
    page.get_by_role("button", name="Run Concatenate datasets").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator('#job-state:not([data-active="1"])')).to_have_text("ok", timeout=30_000)
    expect(page.locator("#job-inputs li")).to_have_count(2)
    output = page.locator("#job-outputs li[data-dataset]")
    expect(output).to_have_count(1)
    got = alice.api.get(f"{server.url}/api/datasets/{output.get_attribute('data-dataset')}/display",
                        timeout=10).text
    assert got in ("first\nsecond\n", "second\nfirst\n")


def test_drop_a_file_on_the_page(page, server, alice, login):
    open_datasets(page, server, alice, login)
    # What a drag from the desktop delivers: a drop event whose DataTransfer holds a File.
    page.evaluate("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["dropped\\n"], "dropped.txt", {type: "text/plain"}));
        const zone = document.getElementById("dropzone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""")
    item = page.locator("#uploads li", has=page.locator(".upload-name", has_text="dropped.txt"))
    expect(item).to_have_class(re.compile(r"\bdone\b"), timeout=20_000)
    expect(item.locator(".percent")).to_have_text("100%")
    expect(row_of(page, "dropped.txt").locator("td.size")).to_have_attribute("data-bytes", "8")
