"""The staging API: what a staged job's node wrapper (muleteer/staging.py) downloads and
uploads, under /api/jobs/<id>/staging/.

No user session and no API key: the caller shows the job's own token
(`Authorization: Bearer <token>`), good for that job's files only while the job is queued
or running under the lease the token was made for. Every refusal is the same 404, so
nobody learns which jobs exist or which names are wrong.

- GET inputs/dataset_<id>.dat: one of the job's input datasets (from the dataset store,
  no link followed).
- GET job/job.sh, GET job/configs/<name>: the job script and configfiles the handler
  wrote in the server's job directory (read without following links).
- GET tool/<relative>: a file of the tool's own directory ($__tool_directory__).
- PUT files/<relative>: a result, stored whole or not at all (a temporary file renamed
  into place when complete); after exit_code, which comes last, nothing more is taken.
"""
from __future__ import annotations

import functools
import logging
import os
import re

from flask import Blueprint, Response, abort, current_app, jsonify, request
from werkzeug.wsgi import wrap_file

from app.auth import csrf
from muleteer import staging
from muleteer.dataset_files import DatasetFiles
from muleteer.job_files import EXIT_CODE, SCRIPT, SMALL_FILE, JobDirectoryError, JobFiles

log = logging.getLogger(__name__)

staging_api = Blueprint("staging_api", __name__, url_prefix="/api/jobs/<id:job_id>/staging")
csrf.exempt(staging_api)  # no session here: the token is the only credential
_INPUT = re.compile(r"dataset_([1-9][0-9]{0,18})\.dat")


def _ctx():
    return current_app.extensions["muleteer"]


@functools.lru_cache(maxsize=4)
def _key(path: str) -> bytes:
    return staging.key(_ctx().config)


def _job(job_id: int):
    """The job, if the request carries its token; otherwise 404."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        abort(404)
    ctx = _ctx()
    job = ctx.store.get_job(job_id)
    if not staging.token_valid(_key(ctx.config.resolve(staging.KEY_FILE)), job, given.strip()):
        abort(404)
    if not job.working_directory:
        abort(404)
    return job


def _send(fh) -> Response:
    size = os.fstat(fh.fileno()).st_size
    response = Response(wrap_file(request.environ, fh), mimetype="application/octet-stream",
                        direct_passthrough=True)
    response.content_length = size
    return response


@staging_api.before_request
def _upload_limit():
    # A result may be as large as a resumable upload (tus_max_size), not max_request_body.
    if request.method == "PUT":
        request.max_content_length = _ctx().config.tus_max_size


@staging_api.get("/inputs/<name>", merge_slashes=False)
def get_input(job_id, name):
    job = _job(job_id)
    match = _INPUT.fullmatch(name)
    if not match:
        abort(404)
    dataset_id = int(match.group(1))
    links = _ctx().store.job_datasets(job_id=job.id)
    if not any(r["role"] == "input" and r["dataset_id"] == dataset_id for r in links):
        abort(404)
    fh = DatasetFiles(_ctx().config.file_path).open(dataset_id)
    if fh is None:
        abort(404)
    return _send(fh)


@staging_api.get("/job/<path:relative>", merge_slashes=False)
def get_job_file(job_id, relative):
    job = _job(job_id)
    parts = staging.path_parts(relative)
    if parts is None or not (parts == [SCRIPT] or (len(parts) == 2
                                                    and parts[0] == staging.CONFIGS)):
        abort(404)
    fh = JobFiles(job.working_directory).open_regular("/".join(parts))
    if fh is None:
        abort(404)
    return _send(fh)


@staging_api.get("/tool/<path:relative>", merge_slashes=False)
def get_tool_file(job_id, relative):
    job = _job(job_id)
    parts = staging.path_parts(relative)
    tool = _ctx().tools.get(job.tool_id, job.tool_version)
    if parts is None or tool is None or not tool.tool_dir:
        abort(404)
    # open_regular walks by descriptor with O_NOFOLLOW: any link on the way is refused.
    fh = JobFiles(tool.tool_dir).open_regular("/".join(parts))
    if fh is None:
        abort(404)
    return _send(fh)


def _whole_body():
    """The request body's read(n), which fails (so nothing is stored) if the body ends
    before its Content-Length: a client cut off mid-upload."""
    stream, expected = request.stream, request.content_length
    got = 0

    def read(n: int) -> bytes:
        nonlocal got
        chunk = stream.read(n)
        got += len(chunk)
        if not chunk and expected is not None and got < expected:
            raise JobDirectoryError(f"the upload ended after {got} of {expected} bytes")
        return chunk
    return read


@staging_api.put("/files/<path:relative>", merge_slashes=False)
def put_file(job_id, relative):
    job = _job(job_id)
    if not staging.upload_allowed(relative):
        abort(404)
    files = JobFiles(job.working_directory)
    if files.exit_code() is not None:
        abort(404)  # the results are complete: the handler may be collecting them already
    parts = staging.path_parts(relative)
    limit = SMALL_FILE if parts == [EXIT_CODE] else _ctx().config.tus_max_size
    if request.content_length is not None and request.content_length > limit:
        abort(413)
    try:
        size = files.store_upload(parts, _whole_body(), limit, staging.UPLOAD_PREFIX)
    except JobDirectoryError as exc:
        log.warning("job %s: staged upload %s refused: %s", job.id, relative, exc)
        abort(404)
    except OSError as exc:
        log.warning("job %s: staged upload %s failed: %s", job.id, relative, exc)
        return jsonify({"error": "could not store the file; retry"}), 503
    if parts == [EXIT_CODE]:
        files.remove_uploads_in_progress(staging.UPLOAD_PREFIX)
    return jsonify({"stored": relative, "size": size}), 201
