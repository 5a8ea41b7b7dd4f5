"""The datasets API: /api/datasets (routes of the `api` blueprint, so its authentication,
JSON errors and CSRF rules apply). Files: muleteer/dataset_files.py; formats:
muleteer/formats.py; rows: muleteer/store/datasets.py.

Uploads in one request (multipart `file`, or JSON `content` for pasted text) are limited
by max_upload_size, not max_request_body: `upload_limit` raises this one request's limit
before anything reads the body. A resumable upload (tus) is finished by the same POST with
an `upload_id` (finish_resumable_upload).
"""
from __future__ import annotations

import io

from flask import Response, current_app, g, jsonify, request, send_file, url_for

from app.api import ApiError, _ctx, _int_arg, _json_body, api
from app.auth import current_owner, is_admin
from app.tus_store import UploadError, finished_upload, remove_upload
from muleteer import formats
from muleteer.dataset import Dataset, DatasetState
from muleteer.dataset_files import (DatasetFileError, DatasetFiles, DiskFull, Staged, TooLarge,
                                    create_dataset)
from muleteer.store import iso
from muleteer.store.datasets import QuotaExceeded

RESUMABLE = "/api/upload/resumable_upload/"
PASTED_NAME = "Pasted Text"  # Galaxy's name for pasted content
PREVIEW_BYTES = 1024
# A multipart body is the file plus its part headers and the small fields around it.
MULTIPART_OVERHEAD = 64 * 1024
MAX_NAME = 255


def upload_limit() -> None:
    """(app.before_request, registered before load_user) A multipart upload to
    POST /api/datasets may be up to max_upload_size; every other request keeps
    MAX_CONTENT_LENGTH (max_request_body)."""
    if request.endpoint == "api.create_dataset" and request.mimetype == "multipart/form-data":
        request.max_content_length = _ctx().config.max_upload_size + MULTIPART_OVERHEAD


def files() -> DatasetFiles:
    return DatasetFiles(_ctx().config.file_path)


def visible_dataset(dataset_id: int) -> Dataset:
    """The dataset if the caller may see it (its owner, or an admin); otherwise a 404
    exactly like a dataset that does not exist."""
    ds = _ctx().store.get_dataset(dataset_id)
    if ds is None or not (is_admin() or (g.get("user") and ds.user_id == g.user["id"])):
        raise ApiError(404, f"no dataset {dataset_id}")
    return ds


def dataset_json(ds: Dataset, full: bool = False) -> dict:
    d = {"id": ds.id, "name": ds.name, "format": ds.format, "size": ds.size,
         "sha256": ds.sha256, "state": str(ds.state), "source": str(ds.source),
         "job_id": ds.job_id, "output_name": ds.output_name, "peek": ds.peek,
         "metadata": ds.metadata,
         "create_time": iso(ds.create_time), "update_time": iso(ds.update_time),
         "url": url_for("api.show_dataset", dataset_id=ds.id),
         "display_url": url_for("api.display_dataset", dataset_id=ds.id)}
    if full:
        rows = _ctx().store.job_datasets(dataset_id=ds.id)
        d["provenance"] = {
            "created_by": ({"job_id": ds.job_id, "output_name": ds.output_name}
                           if ds.job_id is not None else None),
            "used_by": [{"job_id": r["job_id"], "name": r["name"]} for r in rows
                        if r["role"] == "input"],
        }
    return d


# -- uploads --------------------------------------------------------------------------
@api.post("/datasets", endpoint="create_dataset")
def create_dataset_route():
    config = _ctx().config
    owner = current_owner()
    if config.user_quota is not None:
        usage = _ctx().store.disk_usage(owner["id"])
        if usage >= config.user_quota:
            raise ApiError(403, f"your disk quota is used up ({usage} of {config.user_quota} "
                                "bytes): delete datasets to upload more", "quota")
    if request.mimetype == "multipart/form-data":
        ds = _multipart_upload(owner)
    else:
        body = _json_body()
        if not isinstance(body, dict):
            raise ApiError(400, 'expected multipart/form-data with a `file`, or JSON '
                                '{"content": ..., "name": ..., "format": ...}', "body")
        if "upload_id" in body:
            ds = finish_resumable_upload(_ctx(), owner, body)
        else:
            ds = _pasted_upload(owner, body)
    response = jsonify(dataset_json(ds, full=True))
    response.status_code = 201
    response.headers["Location"] = url_for("api.show_dataset", dataset_id=ds.id)
    return response


def _multipart_upload(owner) -> Dataset:
    config = _ctx().config
    declared = request.content_length
    if declared is None:
        raise ApiError(411, "send the upload with a Content-Length header", "body")
    if declared > config.max_upload_size + MULTIPART_OVERHEAD:
        _too_large()
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "missing: a multipart upload needs a `file` part", "file")
    name = _name(request.form.get("name") or _client_file_name(upload.filename))
    fmt = _format_name(request.form.get("format"))
    return store_upload(_ctx(), owner, upload.stream, name=name, format=fmt)


def _pasted_upload(owner, body: dict) -> Dataset:
    unknown = sorted(set(body) - {"content", "name", "format"})
    if unknown:
        raise ApiError(400, "unknown field (expected content, name, format, or upload_id "
                            "for a resumable upload)", unknown[0])
    content = body.get("content")
    if not isinstance(content, str):
        raise ApiError(400, "expected the text to store, as a string", "content")
    name = _name(body.get("name") if body.get("name") is not None else PASTED_NAME)
    fmt = _format_name(body.get("format"))
    return store_upload(_ctx(), owner, io.BytesIO(content.encode("utf-8")), name=name, format=fmt)


def finish_resumable_upload(ctx, owner: dict, body: dict) -> Dataset:
    """POST /api/datasets {"upload_id", "name", "format"}: a finished tus upload of this
    owner becomes a dataset (another user's upload_id is a 404 like a missing one); the
    upload's own files go once the dataset is stored."""
    unknown = sorted(set(body) - {"upload_id", "name", "format"})
    if unknown:
        raise ApiError(400, "unknown field (expected upload_id, name, format)", unknown[0])
    upload_id = body.get("upload_id")
    if not isinstance(upload_id, str):
        raise ApiError(400, "expected the last segment of the tus upload's URL", "upload_id")
    try:
        path, metadata = finished_upload(ctx, owner["id"], upload_id)
    except UploadError as exc:
        raise ApiError(exc.status, str(exc), "upload_id") from None
    name = _name(body.get("name") if body.get("name") is not None
                 else metadata.get("filename") or upload_id)
    dataset = store_upload_file(ctx, owner, path, name=name, format=_format_name(body.get("format")))
    remove_upload(ctx, upload_id)
    return dataset


def store_upload(ctx, owner: dict, stream, *, name: str, format: str) -> Dataset:
    """A binary stream (read in chunks, never whole) -> a new dataset of `owner`: bytes
    staged under file_path, checked against `format` (formats.AUTO: guessed), quota
    checked, then row and file committed together. Errors are ApiErrors; on any error
    nothing is kept."""
    try:
        staged = DatasetFiles(ctx.config.file_path).stage(stream, limit=ctx.config.max_upload_size)
    except TooLarge:
        _too_large()
    except DiskFull as exc:
        raise ApiError(507, str(exc), "file") from None
    return _finish(ctx, owner, staged, name=name, format=format)


def store_upload_file(ctx, owner: dict, path: str, *, name: str, format: str) -> Dataset:
    """A finished upload file of the server's (a completed tus upload at `path`) -> a new
    dataset of `owner`, as store_upload (no max_upload_size: resumable uploads are for
    larger files). The file is moved, not copied (it is opened without following a link and
    must be a regular file); refused, it is put back at `path`. Raises ApiError."""
    try:
        staged = DatasetFiles(ctx.config.file_path).adopt_file(path)
    except DiskFull as exc:
        raise ApiError(507, str(exc), "upload_id") from None
    except DatasetFileError as exc:
        raise ApiError(400, str(exc), "upload_id") from None
    return _finish(ctx, owner, staged, name=name, format=format)


def _finish(ctx, owner, staged: Staged, *, name: str, format: str) -> Dataset:
    with staged:  # whatever happens, the temporary file goes
        if format == formats.AUTO:
            format = formats.guess(staged.head)
        else:
            problem = formats.mismatch(format, staged.head)
            if problem:
                raise ApiError(400, problem, "format")
        try:
            return create_dataset(ctx.store, DatasetFiles(ctx.config.file_path), staged,
                                  user_id=owner["id"], name=name, format=format,
                                  quota=ctx.config.user_quota)
        except QuotaExceeded as exc:
            raise ApiError(403, str(exc), "quota") from None
        except DiskFull as exc:
            raise ApiError(507, str(exc), "file") from None


def _too_large():
    limit = _ctx().config.max_upload_size
    raise ApiError(413, f"the upload is larger than max_upload_size ({limit} bytes): send it "
                        f"with the resumable upload at {RESUMABLE} (tus), then POST "
                        '/api/datasets {"upload_id": ...}', "file")


def _client_file_name(filename: str | None) -> str:
    # A browser may send a full Windows path; keep the last component only.
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return base or "upload"


def _name(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "expected a non-empty string", "name")
    value = value.strip()
    if len(value) > MAX_NAME:
        raise ApiError(400, f"at most {MAX_NAME} characters", "name")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ApiError(400, "control characters are not allowed", "name")
    return value


def _format_name(value) -> str:
    if value is None or value == "":
        return formats.AUTO
    if value == formats.AUTO:
        return value
    try:
        return formats.check_name(value)
    except formats.FormatError as exc:
        raise ApiError(400, str(exc), "format") from None


# -- reading and managing -------------------------------------------------------------
@api.get("/datasets")
def list_datasets():
    state = request.args.get("state") or str(DatasetState.OK)
    if state not in tuple(DatasetState):
        raise ApiError(400, f"{state!r}: expected one of {', '.join(tuple(DatasetState))}", "state")
    fmt = request.args.get("format") or None
    if fmt is not None and not formats.known(fmt):
        raise ApiError(400, f"unknown format {fmt!r}: expected one of {', '.join(formats.KNOWN)}",
                       "format")
    limit = _int_arg("limit", 50, 1, 1000)
    offset = _int_arg("offset", 0, 0, 10**12)
    if g.user is None:
        return jsonify({"datasets": [], "total": 0, "limit": limit, "offset": offset})
    rows, total = _ctx().store.list_datasets(user_id=g.user["id"], format=fmt, state=state,
                                             name=request.args.get("name") or None,
                                             limit=limit, offset=offset)
    return jsonify({"datasets": [dataset_json(r) for r in rows], "total": total,
                    "limit": limit, "offset": offset})


@api.get("/datasets/<id:dataset_id>")
def show_dataset(dataset_id):
    return jsonify(dataset_json(visible_dataset(dataset_id), full=True))


@api.get("/datasets/<id:dataset_id>/display")
def display_dataset(dataset_id):
    ds = visible_dataset(dataset_id)
    if ds.deleted:
        raise ApiError(410, f"dataset {dataset_id} was deleted: its file is gone")
    text = formats.is_subtype(ds.format, "txt")
    mimetype = "text/plain; charset=utf-8" if text else "application/octet-stream"
    fh = files().open(ds.id)
    if fh is None:
        raise ApiError(500, f"dataset {dataset_id}'s file is missing under file_path")
    if request.args.get("preview") in ("1", "true"):
        with fh:
            data = fh.read(PREVIEW_BYTES)
        return Response(data, mimetype=mimetype)
    base = _ctx().config.nginx_x_accel_redirect_base
    if base:
        # nginx sends the file (and answers Range itself); the path has no link in it.
        fh.close()
        response = Response(mimetype=mimetype)
        response.headers["X-Accel-Redirect"] = base.rstrip("/") + files().path(ds.id)
        _disposition(response, ds.name)
        return response
    response = send_file(fh, mimetype=mimetype, as_attachment=True, download_name=ds.name,
                         max_age=0, conditional=False, etag=False)
    response.content_length = ds.size
    response.set_etag(ds.sha256)
    response.last_modified = ds.create_time
    return response.make_conditional(request.environ, accept_ranges=True,
                                     complete_length=ds.size)


def _disposition(response: Response, name: str) -> None:
    from urllib.parse import quote
    try:
        name.encode("ascii")
        response.headers.set("Content-Disposition", "attachment", filename=name)
    except UnicodeEncodeError:
        simple = name.encode("ascii", "ignore").decode("ascii") or "dataset"
        response.headers.set("Content-Disposition", "attachment", filename=simple,
                             **{"filename*": "UTF-8''" + quote(name, safe="!#$&+-.^_`|~")})


@api.delete("/datasets/<id:dataset_id>")
def delete_dataset(dataset_id):
    ds = visible_dataset(dataset_id)
    if ds.deleted:
        return jsonify(dataset_json(ds))
    deleted, jobs = _ctx().store.delete_dataset(ds.id)
    if jobs:
        raise ApiError(409, f"dataset {dataset_id} is in use by job(s) "
                            f"{', '.join(map(str, jobs))} (new, queued or running): cancel them "
                            f"or wait until they end")
    if deleted:
        try:
            files().remove(ds.id)
        except OSError as exc:
            current_app.logger.warning("dataset %s: cannot remove its file: %s", ds.id, exc)
    return jsonify(dataset_json(_ctx().store.get_dataset(ds.id)))
