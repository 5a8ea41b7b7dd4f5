"""app/tus_store.py alone: upload ids, the sidecar, expiry, metadata, finished_upload; and the
protocol through Flask's test client (the real-server tests: tests/integration/test_tus.py)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
from types import SimpleNamespace

import pytest

from app import tus_store
from app.tus_store import (UploadIncomplete, UploadNotFound, UploadStore, finished_upload,
                           parse_metadata, remove_upload, valid_id)

GOOD = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("upload_id", [
    "", "0123456789ABCDEF0123456789ABCDEF", GOOD[:-1], GOOD + "0", GOOD + "\n", "../" + GOOD[3:],
    GOOD[:31] + "g", GOOD[:16] + "/" + GOOD[17:], "\u0660" * 32, None, 12, GOOD[:31] + "\x00"])
def test_malformed_ids_are_refused_before_any_path_is_built(tmp_path, upload_id):
    assert not valid_id(upload_id)
    store = UploadStore(str(tmp_path / "tus"), 60)
    with pytest.raises(UploadNotFound):
        store.data_path(upload_id)
    with pytest.raises(UploadNotFound):
        store.info(upload_id)


def test_new_ids_are_valid_and_distinct():
    ids = {tus_store.new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(valid_id(i) for i in ids) and valid_id(GOOD)


def test_create_writes_a_private_data_file_and_sidecar(tmp_path):
    store = UploadStore(str(tmp_path / "tus"), 60)
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    info = store.create(7, 10, {"filename": "a.txt"})
    data, sidecar = store.data_path(info["id"]), store.sidecar_path(info["id"])
    for path in (data, sidecar):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    record = json.load(open(sidecar))
    assert record == {"id": info["id"], "owner_id": 7, "length": 10,
                      "metadata": {"filename": "a.txt"}, "created": info["created"]}
    assert sorted(os.listdir(store.directory)) == sorted([info["id"], info["id"] + ".json"])
    # The offset is the data file's size: it survives any restart of the server.
    with open(data, "ab") as fh:
        fh.write(b"abc")
    assert UploadStore(store.directory, 60).info(info["id"])["offset"] == 3


def test_info_checks_the_owner_and_the_record(tmp_path):
    store = UploadStore(str(tmp_path / "tus"), 60)
    info = store.create(1, 5, {})
    assert store.info(info["id"], owner_id=1)["offset"] == 0
    with pytest.raises(UploadNotFound):
        store.info(info["id"], owner_id=2)
    with open(store.sidecar_path(info["id"]), "w") as fh:
        fh.write("{not json")
    with pytest.raises(UploadNotFound, match="damaged"):
        store.info(info["id"])
    # A symbolic link in place of the data file is no upload.
    other = store.create(1, 5, {})
    os.unlink(store.data_path(other["id"]))
    os.symlink("/etc/passwd", store.data_path(other["id"]))
    with pytest.raises(UploadNotFound):
        store.info(other["id"])
    with pytest.raises(UploadNotFound):
        store.open_for_append(other["id"])


def test_expire_removes_idle_uploads_only(tmp_path):
    store = UploadStore(str(tmp_path / "tus"), 100)
    old, fresh = store.create(1, 5, {}), store.create(1, 5, {})
    orphan = tus_store.new_id()
    open(store.data_path(orphan), "w").close()
    past = time.time() - 1000
    os.utime(store.data_path(old["id"]), (past, past))
    os.utime(store.data_path(orphan), (past, past))
    record = json.load(open(store.sidecar_path(old["id"])))
    record["created"] = past
    with open(store.sidecar_path(old["id"]), "w") as fh:
        json.dump(record, fh)
    open(os.path.join(store.directory, "unrelated"), "w").close()
    assert sorted(store.expire()) == sorted([old["id"], orphan])
    assert sorted(os.listdir(store.directory)) == sorted([fresh["id"], fresh["id"] + ".json",
                                                         "unrelated"])


def test_metadata_keeps_filename_and_filetype():
    b64 = lambda s: base64.b64encode(s.encode()).decode()
    header = f"filename {b64('reads é.fastq')},filetype {b64('text/plain')},is_confidential,x {b64('y')}"
    assert parse_metadata(header) == {"filename": "reads é.fastq", "filetype": "text/plain"}
    assert parse_metadata("") == {}
    for bad in ("filename !!!", f"filename {b64('a')} extra", f"filename {b64('a' * 256)}",
                "filename " + b64("a\nb")):
        with pytest.raises(ValueError):
            parse_metadata(bad)


def test_finished_upload_and_remove_upload(tmp_path):
    config = SimpleNamespace(tus_upload_store=str(tmp_path / "tus"), tus_upload_expiry=60)
    ctx = SimpleNamespace(config=config)
    store = tus_store.store_for(ctx)
    info = store.create(3, 4, {"filename": "x.txt"})
    with pytest.raises(UploadIncomplete) as exc:
        finished_upload(ctx, 3, info["id"])
    assert exc.value.status == 409
    with open(store.data_path(info["id"]), "ab") as fh:
        fh.write(b"data")
    path, metadata = finished_upload(ctx, 3, info["id"])
    assert open(path, "rb").read() == b"data"
    assert metadata["filename"] == "x.txt" and metadata["filetype"] is None and metadata["length"] == 4
    for user, upload_id in ((4, info["id"]), (3, tus_store.new_id()), (3, "../../etc/passwd")):
        with pytest.raises(UploadNotFound) as exc:
            finished_upload(ctx, user, upload_id)
        assert exc.value.status == 404
    remove_upload(ctx, info["id"])
    remove_upload(ctx, info["id"])  # already gone: nothing happens
    remove_upload(ctx, "../x")
    assert os.listdir(config.tus_upload_store) == []


# -- the protocol, through Flask's test client ------------------------------------------

@pytest.fixture
def client(tmp_path, repo):
    from app import create_app
    from mules.runners import RUNNER_SPECS
    from muleteer.context import build_context
    config_file = tmp_path / "galaxy.yml"
    config_file.write_text(
        "galaxy:\n  database_connection: sqlite:///database/universe.sqlite\n"
        f"  job_config_file: {repo}/job_conf.xml\n  tool_path: {repo}/tools\n"
        "  bootstrap_admin_api_key: the-admin-key-of-this-test\n  tus_max_chunk: 1000\n")
    ctx = build_context(str(config_file), runner_specs=RUNNER_SPECS)
    app = create_app(ctx=ctx)
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = "the-admin-key-of-this-test"
    client.environ_base["HTTP_TUS_RESUMABLE"] = "1.0.0"
    return client


def test_protocol_round_trip(client):
    options = client.options("/api/upload/resumable_upload/")
    assert options.status_code == 204 and options.headers["Tus-Version"] == "1.0.0"
    assert "creation" in options.headers["Tus-Extension"]
    created = client.post("/api/upload/resumable_upload/", headers={"Upload-Length": "1500"})
    assert created.status_code == 201, created.json
    url = created.headers["Location"]
    assert created.headers["Tus-Resumable"] == "1.0.0" and "Upload-Expires" in created.headers
    patch = {"Content-Type": "application/offset+octet-stream"}
    # over tus_max_chunk (1000 bytes here, far under max_request_body): 413
    assert client.patch(url, data=b"x" * 1001, headers={**patch, "Upload-Offset": "0"}).status_code == 413
    answer = client.patch(url, data=b"a" * 1000, headers={**patch, "Upload-Offset": "0"})
    assert answer.status_code == 204 and answer.headers["Upload-Offset"] == "1000"
    wrong = client.patch(url, data=b"b", headers={**patch, "Upload-Offset": "0"})
    assert wrong.status_code == 409 and wrong.headers["Upload-Offset"] == "1000"
    past = client.patch(url, data=b"b" * 501, headers={**patch, "Upload-Offset": "1000"})
    assert past.status_code == 413
    bad_sum = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    assert client.patch(url, data=b"b" * 500, headers={
        **patch, "Upload-Offset": "1000", "Upload-Checksum": f"sha1 {bad_sum}"}).status_code == 460
    assert client.head(url).headers["Upload-Offset"] == "1000"  # the bad chunk was discarded
    good_sum = base64.b64encode(hashlib.sha1(b"b" * 500).digest()).decode()
    done = client.patch(url, data=b"b" * 500, headers={
        **patch, "Upload-Offset": "1000", "Upload-Checksum": f"sha1 {good_sum}"})
    assert done.status_code == 204 and done.headers["Upload-Offset"] == "1500"
    head = client.head(url)
    assert head.headers["Upload-Length"] == "1500" and "Upload-Expires" not in head.headers
    assert client.head(url, headers={"Tus-Resumable": "0.2.2"}).status_code == 412
    assert client.patch(url, data=b"", headers={"Upload-Offset": "1500"}).status_code == 415
    assert client.head(url, headers={"x-api-key": "wrong"}).status_code == 401
    assert client.delete(url).status_code == 204
    assert client.head(url).status_code == 404
    assert client.head("/api/upload/resumable_upload/..%2f..%2fsecret_key").status_code == 404
