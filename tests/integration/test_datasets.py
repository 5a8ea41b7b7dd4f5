"""Datasets against a real uWSGI server: uploads (real curl, requests), reading back byte for
byte, Range, preview, other users' 404s, delete, the size limit, the quota, formats."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
import requests

from tests.support.uwsgi_server import UwsgiServer

MAX_UPLOAD = 3 * 1024 * 1024
QUOTA = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = UwsgiServer(str(tmp_path_factory.mktemp("datasets")),
                      galaxy={"max_upload_size": MAX_UPLOAD, "user_quota": QUOTA}).start()
    yield srv
    srv.stop()


def make_user(server, email):
    user = server.http.post(f"{server.url}/api/users", json={"email": email,
                                                             "password": "a good password"},
                            timeout=10).json()
    key = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys", timeout=10).json()["key"]
    session = requests.Session()
    session.headers["x-api-key"] = key
    return key, session


@pytest.fixture(scope="module")
def alice(server):
    return make_user(server, "alice@datasets.org")


@pytest.fixture(scope="module")
def bob(server):
    return make_user(server, "bob@datasets.org")


def curl_upload(server, key, path, *fields):
    args = ["curl", "-sS", "-H", f"x-api-key: {key}", "-F", f"file=@{path}"]
    for f in fields:
        args += ["-F", f]
    out = subprocess.run(args + ["-w", "\n%{http_code}", f"{server.url}/api/datasets"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body)


def test_curl_multipart_upload_reads_back_byte_for_byte(server, alice, tmp_path):
    key, http = alice
    data = b"@r1\nACGT\n+\nIIII\n" * 50000  # ~850 KB: near max_request_body, under the upload limit
    path = tmp_path / "reads.fastq"
    path.write_bytes(data)
    code, ds = curl_upload(server, key, path, "format=fastqsanger")
    assert code == 201, ds
    assert (ds["name"], ds["format"], ds["size"], ds["state"]) == ("reads.fastq", "fastqsanger",
                                                                   len(data), "ok")
    assert ds["sha256"] == hashlib.sha256(data).hexdigest()
    assert ds["peek"].startswith("@r1\nACGT\n+")
    got = http.get(f"{server.url}/api/datasets/{ds['id']}/display", timeout=30)
    assert got.status_code == 200 and got.content == data
    assert "reads.fastq" in got.headers["Content-Disposition"]
    # The file is in Galaxy's layout under file_path, 0600.
    on_disk = os.path.join(server.directory, "database", "files", "000", f"dataset_{ds['id']}.dat")
    assert os.stat(on_disk).st_mode & 0o777 == 0o600


def test_requests_multipart_over_max_request_body_binary_range_and_preview(server, alice):
    _, http = alice
    data = os.urandom(2 * 1024 * 1024 + 5)  # over the 1 MiB of other requests
    r = http.post(f"{server.url}/api/datasets", files={"file": ("blob.bin", data)},
                  data={"name": "my blob"}, timeout=60)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["format"] == "data" and ds["peek"] is None and ds["name"] == "my blob"
    url = f"{server.url}/api/datasets/{ds['id']}/display"
    whole = http.get(url, timeout=30)
    assert hashlib.sha256(whole.content).hexdigest() == ds["sha256"]
    part = http.get(url, headers={"Range": "bytes=1000-1999"}, timeout=30)
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    preview = http.get(url + "?preview=1", timeout=30)
    assert preview.status_code == 200 and preview.content == data[:1024]
    # Other requests keep max_request_body.
    big_json = http.post(f"{server.url}/api/jobs", data=b"x" * (1024 * 1024 + 10),
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert big_json.status_code == 413


def test_pasted_text_dataset_and_listing(server, alice):
    _, http = alice
    r = http.post(f"{server.url}/api/datasets", json={"content": "a\tb\n1\t2\n",
                                                       "name": "lines.tsv"}, timeout=10)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["format"] == "tabular" and ds["source"] == "upload"  # guessed
    assert http.get(f"{server.url}/api/datasets/{ds['id']}/display", timeout=10).text == "a\tb\n1\t2\n"
    pasted = http.post(f"{server.url}/api/datasets", json={"content": "hello\n", "format": "txt"},
                       timeout=10).json()
    assert pasted["name"] == "Pasted Text"
    listing = http.get(f"{server.url}/api/datasets", timeout=10).json()
    ids = [d["id"] for d in listing["datasets"]]
    assert ids == sorted(ids, reverse=True) and ids[0] == pasted["id"]
    only = http.get(f"{server.url}/api/datasets?format=tabular&name=LINES", timeout=10).json()
    assert [d["id"] for d in only["datasets"]] == [ds["id"]] and only["total"] == 1
    paged = http.get(f"{server.url}/api/datasets?limit=1&offset=1", timeout=10).json()
    assert paged["datasets"][0]["id"] == ids[1] and paged["limit"] == 1
    shown = http.get(f"{server.url}/api/datasets/{ds['id']}", timeout=10).json()
    assert shown["provenance"] == {"created_by": None, "used_by": []}


def test_another_users_dataset_is_a_404_like_a_missing_one_everywhere(server, alice, bob):
    _, http = alice
    _, other = bob
    ds = http.post(f"{server.url}/api/datasets", json={"content": "secret\n"}, timeout=10).json()
    for method, suffix in [("get", ""), ("get", "/display"), ("get", "/display?preview=1"),
                           ("delete", "")]:
        theirs = getattr(other, method)(f"{server.url}/api/datasets/{ds['id']}{suffix}", timeout=10)
        missing = getattr(other, method)(f"{server.url}/api/datasets/999999{suffix}", timeout=10)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["error"].replace(str(ds["id"]), "N") == \
            missing.json()["error"].replace("999999", "N")
    assert ds["id"] not in [d["id"] for d in other.get(f"{server.url}/api/datasets",
                                                       timeout=10).json()["datasets"]]
    assert http.get(f"{server.url}/api/datasets/{ds['id']}", timeout=10).status_code == 200


def test_delete_frees_the_file_and_the_quota(server, alice):
    _, http = alice
    before = http.get(f"{server.url}/api/users/current", timeout=10).json()
    assert before["quota"] == QUOTA
    ds = http.post(f"{server.url}/api/datasets", files={"file": ("x.txt", b"x\n" * 1000)},
                   timeout=10).json()
    after = http.get(f"{server.url}/api/users/current", timeout=10).json()
    assert after["disk_usage"] == before["disk_usage"] + 2000
    on_disk = os.path.join(server.directory, "database", "files", "000", f"dataset_{ds['id']}.dat")
    assert os.path.exists(on_disk)
    r = http.delete(f"{server.url}/api/datasets/{ds['id']}", timeout=10)
    assert r.status_code == 200 and r.json()["state"] == "deleted"
    assert not os.path.exists(on_disk)
    assert http.get(f"{server.url}/api/users/current", timeout=10).json()["disk_usage"] == \
        before["disk_usage"]
    assert http.get(f"{server.url}/api/datasets/{ds['id']}/display", timeout=10).status_code == 410
    assert http.delete(f"{server.url}/api/datasets/{ds['id']}", timeout=10).status_code == 200


def test_over_max_upload_size_is_a_413_naming_the_resumable_upload(server, alice, tmp_path):
    key, http = alice
    path = tmp_path / "big.bin"
    path.write_bytes(b"\0" * (MAX_UPLOAD + 100 * 1024))
    code, body = curl_upload(server, key, path)
    assert code == 413 and "/api/upload/resumable_upload/" in body["error"], body
    incoming = os.path.join(server.directory, "database", "files", "incoming")
    assert os.listdir(incoming) == []


def test_quota_refusal(server, bob):
    _, http = bob
    chunk = os.urandom(MAX_UPLOAD - 1024)
    codes = [http.post(f"{server.url}/api/datasets", files={"file": ("q.bin", chunk)},
                       timeout=60).status_code for _ in range(3)]
    assert codes == [201, 201, 403]
    r = http.post(f"{server.url}/api/datasets", files={"file": ("q.bin", chunk)}, timeout=60)
    assert r.status_code == 403 and "quota" in r.json()["error"] and r.json()["field"] == "quota"
    me = http.get(f"{server.url}/api/users/current", timeout=10).json()
    assert me["disk_usage"] == 2 * len(chunk) <= QUOTA


def test_wrong_or_unknown_format_is_a_400(server, alice, tmp_path):
    key, http = alice
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(100) + b"\0")
    code, body = curl_upload(server, key, path, "format=fasta")
    assert code == 400 and body["field"] == "format" and "binary data" in body["error"], body
    r = http.post(f"{server.url}/api/datasets", json={"content": "text\n", "format": "bam"},
                  timeout=10)
    assert r.status_code == 400 and "text" in r.json()["error"]
    r = http.post(f"{server.url}/api/datasets", json={"content": "x", "format": "fastx"}, timeout=10)
    assert r.status_code == 400 and "fastqsanger" in r.json()["error"]
    r = http.post(f"{server.url}/api/datasets", files={"nofile": ("a", b"b")}, timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "file"
    r = http.post(f"{server.url}/api/datasets", json={"upload_id": "abc"}, timeout=10)
    assert r.status_code in (400, 404, 501) and r.json()["field"] == "upload_id"
