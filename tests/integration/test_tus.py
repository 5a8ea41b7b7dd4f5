"""Resumable uploads (tus 1.0, app/tus.py) against a real uWSGI server, with a client no one
here wrote (tuspy) and with raw requests: a 30 MB upload in 4 MiB chunks, a client killed
mid-upload and resumed by another, a server restart, another user's upload, a wrong offset,
termination, a bad checksum, expiry."""
from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest
import requests
from tusclient import client as tus_client

from app.tus_store import UploadNotFound, finished_upload, remove_upload
from tests.support.uwsgi_server import REPO, UwsgiServer

JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
    <destinations default="local"><destination id="local" runner="local"/></destinations>
</job_conf>
"""
ENDPOINT = "/api/upload/resumable_upload/"
MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = UwsgiServer(str(tmp_path_factory.mktemp("tus")), job_conf=JOB_CONF, mules=0,
                      processes=2).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "big.bin"
    path.write_bytes(os.urandom(30 * 1000 * 1000))
    return str(path)


def ctx_of(server) -> SimpleNamespace:
    """What finished_upload needs of the server's context: its store and expiry."""
    return SimpleNamespace(config=SimpleNamespace(
        tus_upload_store=os.path.join(server.directory, "database", "tus"), tus_upload_expiry=86400))


def user_id(server) -> int:
    """The id of the first admin (the user of the server's bootstrap key)."""
    users = server.http.get(server.url + "/api/users", timeout=10).json()
    return next(user["id"] for user in users if user["email"] == "admin@localhost")


def tuspy(server, key=None) -> tus_client.TusClient:
    return tus_client.TusClient(server.url + ENDPOINT, headers={"x-api-key": key or server.api_key})


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def same_bytes(path_a: str, path_b: str) -> bool:
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        while True:
            x, y = a.read(MiB), b.read(MiB)
            if x != y:
                return False
            if not x:
                return True


def create(server, length: int, key=None, **headers) -> str:
    answer = requests.post(server.url + ENDPOINT, timeout=10, headers={
        **TUS, "x-api-key": key or server.api_key, "Upload-Length": str(length), **headers})
    assert answer.status_code == 201, answer.text
    return server.url + answer.headers["Location"]


def test_discovery(server):
    answer = requests.options(server.url + ENDPOINT, timeout=10)
    assert answer.status_code == 204
    assert answer.headers["Tus-Resumable"] == "1.0.0" and answer.headers["Tus-Version"] == "1.0.0"
    assert set(answer.headers["Tus-Extension"].split(",")) == {
        "creation", "termination", "checksum", "expiration"}
    assert int(answer.headers["Tus-Max-Size"]) > 0 and "sha1" in answer.headers["Tus-Checksum-Algorithm"]
    # Without a key: 401, with the tus header too.
    anonymous = requests.post(server.url + ENDPOINT, headers={**TUS, "Upload-Length": "1"}, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["Tus-Resumable"] == "1.0.0"


def test_30_mb_in_4_mib_chunks_reads_back_byte_for_byte(server, big_file):
    uploader = tuspy(server).uploader(big_file, chunk_size=4 * MiB, upload_checksum=True,
                                      metadata={"filename": "big.bin", "filetype": "application/x-test"})
    uploader.upload()
    assert uploader.offset == os.path.getsize(big_file)
    path, metadata = finished_upload(ctx_of(server), user_id(server), upload_id(uploader.url))
    assert same_bytes(path, big_file)
    assert metadata["filename"] == "big.bin" and metadata["filetype"] == "application/x-test"
    assert metadata["length"] == os.path.getsize(big_file)
    # The app's own limit still holds everywhere else: a 2 MB job submission is a 413.
    big_json = server.http.post(server.url + "/api/jobs", data=b"x" * (2 * MiB), timeout=30,
                                headers={"Content-Type": "application/json"})
    assert big_json.status_code == 413
    remove_upload(ctx_of(server), upload_id(uploader.url))
    with pytest.raises(UploadNotFound):
        finished_upload(ctx_of(server), user_id(server), upload_id(uploader.url))


def test_a_chunk_over_tus_max_chunk_is_a_413(server):
    url = create(server, 9 * MiB)
    answer = requests.patch(url, data=b"x" * (8 * MiB + 1), timeout=30,
                            headers={**PATCH, "x-api-key": server.api_key, "Upload-Offset": "0"})
    assert answer.status_code == 413 and "tus_max_chunk" in answer.json()["error"]
    assert answer.headers["Tus-Resumable"] == "1.0.0"


CHILD = textwrap.dedent("""
    import sys
    from tusclient import client
    url, key, path = sys.argv[1:4]
    uploader = client.TusClient(url, headers={"x-api-key": key}).uploader(path, chunk_size=65536)
    uploader.set_url(uploader.create_url())
    print(uploader.url, flush=True)
    uploader.upload()
    print("finished", flush=True)
""")


def test_a_client_killed_mid_upload_is_resumed_by_another(server, big_file):
    child = subprocess.Popen([sys.executable, "-c", CHILD, server.url + ENDPOINT, server.api_key,
                              big_file], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        url = child.stdout.readline().strip()
        assert url.startswith(server.url + ENDPOINT), url
        head = {**TUS, "x-api-key": server.api_key}
        deadline = time.monotonic() + 60
        while int(requests.head(url, headers=head, timeout=10).headers["Upload-Offset"]) < 2 * MiB:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    offset = int(requests.head(url, headers=head, timeout=10).headers["Upload-Offset"])
    assert 2 * MiB <= offset < os.path.getsize(big_file), "the child finished before it was killed"
    # A new client, from the stored URL: it asks the offset and sends the rest.
    uploader = tuspy(server).uploader(big_file, url=url, chunk_size=4 * MiB)
    assert uploader.offset == offset
    uploader.upload()
    path, _ = finished_upload(ctx_of(server), user_id(server), upload_id(url))
    assert same_bytes(path, big_file)


def test_resume_after_a_server_restart(server, big_file):
    uploader = tuspy(server).uploader(big_file, chunk_size=4 * MiB)
    uploader.upload(stop_at=12 * MiB)
    assert uploader.offset == 12 * MiB
    server.stop()
    server.start()
    resumed = tuspy(server).uploader(big_file, url=uploader.url, chunk_size=4 * MiB)
    assert resumed.offset == 12 * MiB
    resumed.upload()
    path, _ = finished_upload(ctx_of(server), user_id(server), upload_id(uploader.url))
    assert same_bytes(path, big_file)


def test_another_users_upload_is_a_404(server):
    user = server.http.post(server.url + "/api/users", timeout=10,
                            json={"email": "other@example.org", "password": "a good password"}).json()
    key = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys", timeout=10).json()["key"]
    url = create(server, 10)
    theirs = {"x-api-key": key}
    assert requests.head(url, headers={**TUS, **theirs}, timeout=10).status_code == 404
    assert requests.patch(url, data=b"x", headers={**PATCH, **theirs, "Upload-Offset": "0"},
                          timeout=10).status_code == 404
    assert requests.delete(url, headers={**TUS, **theirs}, timeout=10).status_code == 404
    missing = server.url + ENDPOINT + "0" * 32
    assert requests.head(missing, headers={**TUS, **theirs}, timeout=10).status_code == 404
    with pytest.raises(UploadNotFound):
        finished_upload(ctx_of(server), user["id"], upload_id(url))
    # Still the owner's, untouched.
    mine = requests.head(url, headers={**TUS, "x-api-key": server.api_key}, timeout=10)
    assert mine.status_code == 200 and mine.headers["Upload-Offset"] == "0"


def test_wrong_offset_termination_and_checksum(server):
    url = create(server, 20)
    mine = {"x-api-key": server.api_key}
    first = requests.patch(url, data=b"0123456789", headers={**PATCH, **mine, "Upload-Offset": "0"},
                           timeout=10)
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "10"
    again = requests.patch(url, data=b"0123456789", headers={**PATCH, **mine, "Upload-Offset": "0"},
                           timeout=10)
    assert again.status_code == 409
    past = requests.patch(url, data=b"x" * 11, headers={**PATCH, **mine, "Upload-Offset": "10"},
                          timeout=10)
    assert past.status_code == 413
    wrong = base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
    bad = requests.patch(url, data=b"abcdefghij", timeout=10, headers={
        **PATCH, **mine, "Upload-Offset": "10", "Upload-Checksum": f"sha1 {wrong}"})
    assert bad.status_code == 460
    head = requests.head(url, headers={**TUS, **mine}, timeout=10)
    assert head.headers["Upload-Offset"] == "10" and head.headers["Cache-Control"] == "no-store"
    right = base64.b64encode(hashlib.sha1(b"abcdefghij").digest()).decode()
    good = requests.patch(url, data=b"abcdefghij", timeout=10, headers={
        **PATCH, **mine, "Upload-Offset": "10", "Upload-Checksum": f"sha1 {right}"})
    assert good.status_code == 204 and good.headers["Upload-Offset"] == "20"
    path, _ = finished_upload(ctx_of(server), user_id(server), upload_id(url))
    assert open(path, "rb").read() == b"0123456789abcdefghij"
    gone = requests.delete(url, headers={**TUS, **mine}, timeout=10)
    assert gone.status_code == 204 and gone.headers["Tus-Resumable"] == "1.0.0"
    assert requests.head(url, headers={**TUS, **mine}, timeout=10).status_code == 404
    assert not os.path.exists(path) and not os.path.exists(path + ".json")


def test_unfinished_uploads_expire(server):
    # Last: the server comes back with an expiry of 2 seconds.
    server.stop()
    server.write_config(0, 2, {"job_config_file": "job_conf.xml", "tus_upload_expiry": 2}, {})
    server.start()
    stale = create(server, 100)
    answer = requests.head(stale, headers={**TUS, "x-api-key": server.api_key}, timeout=10)
    assert "Upload-Expires" in answer.headers
    time.sleep(2.5)
    fresh = create(server, 100)  # each creation removes the uploads idle past the expiry
    head = {**TUS, "x-api-key": server.api_key}
    assert requests.head(stale, headers=head, timeout=10).status_code == 404
    assert requests.head(fresh, headers=head, timeout=10).status_code == 200
    store = os.path.join(server.directory, "database", "tus")
    assert not any(name.startswith(upload_id(stale)) for name in os.listdir(store))


def test_a_finished_upload_becomes_a_dataset_that_reads_back_byte_for_byte(server, big_file):
    """The issue's whole path: tuspy in 4 MiB chunks, then POST /api/datasets {"upload_id"},
    then /display; the upload's own files are gone, and its id cannot be used twice."""
    import hashlib
    uploader = tuspy(server).uploader(big_file, chunk_size=4 * MiB,
                                      metadata={"filename": "reads.bin"})
    uploader.upload()
    key = upload_id(uploader.url)
    other = server.http.post(server.url + "/api/users", timeout=10,
                             json={"email": "tus-other@example.org", "password": "a good password"})
    other_key = server.http.post(f"{server.url}/api/users/{other.json()['id']}/api_keys",
                                 timeout=10).json()["key"]
    stolen = requests.post(server.url + "/api/datasets", json={"upload_id": key}, timeout=30,
                           headers={"x-api-key": other_key})
    assert stolen.status_code == 404, stolen.text
    made = server.http.post(server.url + "/api/datasets", timeout=120,
                            json={"upload_id": key, "format": "data"})
    assert made.status_code == 201, made.text
    dataset = made.json()
    assert dataset["name"] == "reads.bin" and dataset["size"] == os.path.getsize(big_file)
    digest = hashlib.sha256()
    with server.http.get(f"{server.url}/api/datasets/{dataset['id']}/display", stream=True,
                         timeout=120) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_content(MiB):
            digest.update(chunk)
    with open(big_file, "rb") as fh:
        assert digest.hexdigest() == hashlib.file_digest(fh, "sha256").hexdigest()
    assert not os.path.exists(os.path.join(server.directory, "database", "tus", key))
    again = server.http.post(server.url + "/api/datasets", json={"upload_id": key}, timeout=30)
    assert again.status_code == 404


def test_a_resumable_upload_through_the_shipped_nginx_config(tmp_path, big_file):
    """contrib/nginx/muleteer.conf lets tus chunks (4 MiB) and one-request dataset uploads
    through (its 2m limit is for everything else), and the dataset reads back whole."""
    import hashlib
    from tests.support.nginx_server import serve_stack
    stack = serve_stack(str(tmp_path))
    server, nginx = next(stack)
    try:
        if nginx is None:
            pytest.skip("nginx is not installed (scripts/nginx-install)")
        client = tus_client.TusClient(nginx.url + ENDPOINT, headers={"x-api-key": server.api_key})
        uploader = client.uploader(big_file, chunk_size=4 * MiB)
        uploader.upload()
        made = server.http.post(nginx.url + "/api/datasets", timeout=120,
                                json={"upload_id": upload_id(uploader.url), "format": "data"})
        assert made.status_code == 201, made.text
        three_mib = server.http.post(nginx.url + "/api/datasets", timeout=60,
                                     files={"file": ("three.bin", os.urandom(3 * MiB))},
                                     data={"format": "data"})
        assert three_mib.status_code == 201, three_mib.text
        too_big = server.http.post(nginx.url + "/api/jobs", data=b"x" * (3 * MiB), timeout=30,
                                   headers={"Content-Type": "application/json"})
        assert too_big.status_code == 413  # everything else keeps nginx's 2m limit
        with server.http.get(f"{nginx.url}/api/datasets/{made.json()['id']}/display",
                             timeout=120) as answer:
            digest = hashlib.sha256(answer.content).hexdigest()
        with open(big_file, "rb") as fh:
            assert digest == hashlib.file_digest(fh, "sha256").hexdigest()
    finally:
        stack.close()
