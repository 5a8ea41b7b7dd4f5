"""Jobs take and make datasets, against a real server: a job on an uploaded dataset makes an
output dataset of the right content, listed under the job's outputs (and the dataset's
provenance); outputs feed the next job; a multiple data param; bad data params are 4xx
naming the field; another user sees neither the datasets nor can use them."""
import hashlib

import pytest
import requests

from tests.support.uwsgi_server import UwsgiServer
from tests.support.waiting import wait_for

TABLE = "b\t2\na\t10\nc\t1\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = UwsgiServer(str(tmp_path_factory.mktemp("jobdata"))).start()
    yield srv
    srv.stop()


def upload(server, content, name="table.tsv", fmt="tabular", session=None):
    answer = (session or server.http).post(f"{server.url}/api/datasets", timeout=30,
                                           json={"content": content, "name": name, "format": fmt})
    assert answer.status_code == 201, answer.text
    return answer.json()


def display(server, dataset_id, session=None) -> str:
    answer = (session or server.http).get(f"{server.url}/api/datasets/{dataset_id}/display",
                                          timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def run(server, tool_id, params, session=None):
    answer = (session or server.http).post(f"{server.url}/api/jobs", timeout=30,
                                           json={"tool_id": tool_id, "params": params})
    assert answer.status_code == 201, answer.text
    return server.wait(answer.json()["id"], timeout=60)


def test_a_job_on_an_uploaded_dataset_makes_an_output_dataset(server):
    table = upload(server, TABLE)
    job = run(server, "sort_tabular", {"input": {"src": "dataset", "id": table["id"]},
                                       "column": 2, "numeric": True})
    assert job["state"] == "ok", job
    assert job["inputs"]["input"]["id"] == table["id"]
    output = job["outputs"]["sorted"]
    assert output["format"] == "tabular"  # format_source: the input's
    assert display(server, output["id"]) == "c\t1\nb\t2\na\t10\n"
    shown = server.http.get(f"{server.url}/api/datasets/{output['id']}", timeout=30).json()
    assert shown["size"] == len("c\t1\nb\t2\na\t10\n")
    assert shown["sha256"] == hashlib.sha256(b"c\t1\nb\t2\na\t10\n").hexdigest()
    # The old route to a job's output still works.
    old = server.http.get(f"{server.url}/api/jobs/{job['id']}/outputs/sorted", timeout=30)
    assert old.status_code == 200 and old.text == "c\t1\nb\t2\na\t10\n"


def test_outputs_feed_the_next_job_and_a_multiple_param_takes_a_list(server):
    first = upload(server, "one\ntwo\n", "a.txt", "txt")
    second = upload(server, "three\n", "b.txt", "txt")
    joined = run(server, "concatenate", {"inputs": [{"src": "dataset", "id": first["id"]},
                                                    {"src": "hda", "id": second["id"]}]})
    assert joined["state"] == "ok", joined
    assert [d["id"] for d in joined["inputs"]["inputs"]] == [first["id"], second["id"]]
    output = joined["outputs"]["joined"]
    assert output["format"] == "txt" and display(server, output["id"]) == "one\ntwo\nthree\n"
    counted = run(server, "count_dataset", {"input": {"src": "dataset", "id": output["id"]}})
    assert counted["state"] == "ok", counted
    assert display(server, counted["outputs"]["counts"]["id"]) == "3\t3\t14\n"


def test_bad_data_params_are_4xx_naming_the_field(server):
    table = upload(server, TABLE)
    text = upload(server, "just text\n", "t.txt", "txt")
    url = f"{server.url}/api/jobs"
    cases = [
        ({"input": {"src": "dataset", "id": text["id"]}}, "params.input", "takes tabular"),
        ({"input": {"src": "dataset", "id": 999999}}, "params.input", "no dataset 999999"),
        ({"input": {"src": "library", "id": table["id"]}}, "params.input", "must be one of"),
        ({"input": "x"}, "params.input", "expected a dataset"),
        ({"input": [{"src": "dataset", "id": table["id"]}]}, "params.input", "not a list"),
        ({}, "params.input", "required"),
    ]
    for params, field, words in cases:
        answer = server.http.post(url, json={"tool_id": "sort_tabular", "params": params},
                                  timeout=30)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["field"] == field and words in answer.json()["error"], answer.json()
    server.http.delete(f"{server.url}/api/datasets/{table['id']}", timeout=30)
    gone = server.http.post(url, timeout=30, json={
        "tool_id": "sort_tabular", "params": {"input": {"src": "dataset", "id": table["id"]}}})
    assert gone.status_code == 400 and "deleted" in gone.json()["error"]


def test_another_user_can_neither_use_nor_see_my_datasets_or_outputs(server):
    table = upload(server, TABLE)
    job = run(server, "sort_tabular", {"input": {"src": "dataset", "id": table["id"]}})
    user = server.http.post(f"{server.url}/api/users", timeout=30,
                            json={"email": "other-data@example.org", "password": "a good password"})
    key = server.http.post(f"{server.url}/api/users/{user.json()['id']}/api_keys",
                           timeout=30).json()["key"]
    other = requests.Session()
    other.headers["x-api-key"] = key
    used = other.post(f"{server.url}/api/jobs", timeout=30, json={
        "tool_id": "sort_tabular", "params": {"input": {"src": "dataset", "id": table["id"]}}})
    assert used.status_code == 400 and used.json()["error"].endswith(f"no dataset {table['id']}")
    for dataset_id in (table["id"], job["outputs"]["sorted"]["id"]):
        assert other.get(f"{server.url}/api/datasets/{dataset_id}", timeout=30).status_code == 404
    assert other.get(f"{server.url}/api/jobs/{job['id']}", timeout=30).status_code == 404


@pytest.mark.parametrize("policy", ["onsuccess", "always"])
def test_cleanup_job_removes_finished_job_directories_and_keeps_what_users_read(tmp_path,
                                                                               policy):
    """Galaxy's cleanup_job: the job directory goes (onsuccess: only when the job ended ok);
    its stdout and stderr still show (kept in its row), its outputs are datasets, and the
    old output route reaches them."""
    import os
    from muleteer.job_files import working_directory
    srv = UwsgiServer(str(tmp_path), galaxy={"cleanup_job": policy}).start()
    try:
        table = upload(srv, TABLE)
        ok = run(srv, "sort_tabular", {"input": {"src": "dataset", "id": table["id"]}})
        failed = srv.wait(srv.submit("fail", message="it broke", exit_code=3)["id"])
        jobs = os.path.join(srv.directory, "database", "jobs")
        assert ok["state"] == "ok" and failed["state"] == "error"
        # The directory goes after the job's end is recorded: wait for it (bounded).
        removed = [ok] if policy == "onsuccess" else [ok, failed]
        for job in removed:
            path = working_directory(jobs, job["id"])
            wait_for(lambda: not os.path.exists(path), timeout=30, what=f"{path} to go")
        if policy == "onsuccess":
            assert os.path.isdir(working_directory(jobs, failed["id"]))
        stderr = srv.http.get(f"{srv.url}/api/jobs/{failed['id']}/stderr", timeout=30)
        assert stderr.text == "it broke\n"
        old = srv.http.get(f"{srv.url}/api/jobs/{ok['id']}/outputs/sorted", timeout=30)
        assert old.status_code == 200 and old.text == "a\t10\nb\t2\nc\t1\n"
        assert display(srv, ok["outputs"]["sorted"]["id"]) == "a\t10\nb\t2\nc\t1\n"
    finally:
        srv.stop()
