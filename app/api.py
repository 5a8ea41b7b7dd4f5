"""The JSON API under /api. Errors are JSON: {"error": message, "field": where}."""
from __future__ import annotations

import json
import os

from flask import (Blueprint, Response, current_app, g, jsonify, redirect, request, send_file,
                   url_for)

from app import submission
from muleteer.job import ACTIVE, JobState
from app.accounts import AccountError
from app.auth import accounts, current_owner, is_admin, unauthorized_json, visible_job
from app.job_json import job_datasets_json, job_json
from muleteer.store import iso
from muleteer.job_outputs import relative_path
from muleteer.tools.errors import ParamError
from muleteer.tools.params import check_params
from app.tool_json import tool_json, tool_summary
from muleteer.job_files import STDERR, STDOUT, JobFiles
from app.job_metrics_shown import shown_metrics

api = Blueprint("api", __name__, url_prefix="/api")


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@api.errorhandler(ApiError)
def _api_error(exc: ApiError):
    body = {"error": exc.message}
    if exc.field:
        body["field"] = exc.field
        if not exc.message.startswith(exc.field):
            body["error"] = f"{exc.field}: {exc.message}"
    return jsonify(body), exc.status


PUBLIC = {"api.openapi", "api.version"}


@api.before_request
def _authenticate():
    if request.endpoint in PUBLIC:
        return None
    if g.bad_key or (g.user is None and _ctx().config.require_login):
        return unauthorized_json()
    return None


def _ctx():
    return current_app.extensions["muleteer"]


def _dispatcher():
    return current_app.extensions["muleteer.dispatcher"]


def _job_or_404(job_id: int) -> dict:
    job = visible_job(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    return job


# -- request bodies -------------------------------------------------------------------
# Every JSON body is read here: a body the API cannot use is a 400 saying what and where,
# never a 500. Bodies are small documents (a submission is two levels deep).
MAX_JSON_DEPTH = 32


class _NonFinite:
    """NaN, Infinity or -Infinity in a body: Python's json accepts them, JSON does not."""

    def __init__(self, text: str):
        self.text = text


def _body_bytes() -> bytes:
    """The request body. A chunked one (`Transfer-Encoding: chunked`, no Content-Length
    from the client) is read only behind nginx, which reads it whole and passes its length
    as CONTENT_LENGTH (werkzeug, seeing `chunked`, would read nothing). uWSGI's own http
    router passes no chunked body on (it drops it): 411, not a misleading "not JSON"."""
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return request.get_data(cache=True)
    from werkzeug.exceptions import RequestEntityTooLarge
    declared = request.environ.get("CONTENT_LENGTH") or ""
    if not (declared.isascii() and declared.isdigit()):
        raise ApiError(411, "send the body with a Content-Length header (a chunked body "
                            "is not accepted here)", "body")
    if int(declared) > current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    return request.environ["wsgi.input"].read(int(declared))


def _json_body():
    """The request body parsed as JSON (any type: the caller checks it), or ApiError 400:
    malformed JSON, nesting deeper than MAX_JSON_DEPTH, or NaN/Infinity (named by where
    they are, e.g. params.ratio). Over max_request_body: 413, before any parsing."""
    data = _body_bytes()
    try:
        value = json.loads(data, parse_constant=_NonFinite)
    except RecursionError:
        raise ApiError(400, f"the request body is JSON nested too deeply (at most "
                            f"{MAX_JSON_DEPTH} levels)", "body") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc.msg} at line "
                            f"{exc.lineno}, column {exc.colno}", "body") from None
    except ValueError as exc:  # not UTF-8, or an integer of more than 4,300 digits
        raise ApiError(400, f"the request body is not valid JSON: {exc}", "body") from None
    # Depth first, without recursion: (value, where, depth).
    pending = [(value, "", 1)]
    while pending:
        node, where, depth = pending.pop()
        if isinstance(node, _NonFinite):
            raise ApiError(400, f"must be a finite number ({node.text} is not one)",
                           where or "body")
        if isinstance(node, dict):
            items, prefix = node.items(), f"{where}." if where else ""
        elif isinstance(node, list):
            items, prefix = enumerate(node), None
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"the request body is JSON nested too deeply (at most "
                                f"{MAX_JSON_DEPTH} levels)", "body")
        for k, v in items:  # only containers and NaN/Infinity need a look (and a name)
            if isinstance(v, (dict, list, _NonFinite)):
                name = f"{where or 'body'}[{k}]" if prefix is None else prefix + _short(k)
                pending.append((v, name, depth + 1))
    return value


def _short(key: str) -> str:
    return key if len(key) <= 64 else key[:64] + "..."


def _idempotency_key(body: dict) -> str | None:
    """The client's key for this submission: the Idempotency-Key header or the body's
    client_request_id (the same value if both), or None. Empty, over 255 characters or
    with control characters: 400."""
    keys = []
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        keys.append(("Idempotency-Key", header))
    if body.get("client_request_id") is not None:
        keys.append(("client_request_id", body["client_request_id"]))
    for where, key in keys:
        if not isinstance(key, str):
            raise ApiError(400, "must be text (a key of 1 to 255 characters)", where)
        if not key.strip() or len(key) > 255:
            raise ApiError(400, f"must be 1 to 255 characters, not {len(key)}"
                                f"{' blank' if key and not key.strip() else ''}", where)
        if not key.isprintable():
            raise ApiError(400, "must be printable text (no control characters)", where)
    if len(keys) == 2 and keys[0][1] != keys[1][1]:
        raise ApiError(400, "the Idempotency-Key header and client_request_id differ: "
                            "send one key", "client_request_id")
    return keys[0][1] if keys else None


# -- jobs -------------------------------------------------------------------------
@api.post("/jobs")
def submit_job():
    body = _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object such as "
                            '{"tool_id": "cat_lines", "params": {...}}, not '
                            f"{'null' if body is None else type(body).__name__}", "body")
    unknown = sorted(set(body) - {"tool_id", "tool_version", "params", "inputs",
                                  "client_request_id"})
    if unknown:
        names = ", ".join(_short(k) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ApiError(400, f"unknown field(s) {names} (expected tool_id, tool_version, params "
                            "and client_request_id)", _short(unknown[0]))
    if "params" in body and "inputs" in body:
        raise ApiError(400, "send params or inputs (Galaxy's name for them), not both", "inputs")
    idempotency_key = _idempotency_key(body)
    tool_id = body.get("tool_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise ApiError(400, "tool_id is required and must be a tool id (see GET /api/tools)", "tool_id")
    version = body.get("tool_version")
    if version is not None and (not isinstance(version, str) or not version):
        raise ApiError(400, "tool_version must be a version of the tool, as text", "tool_version")
    ctx = _ctx()
    tool = ctx.tools.get(tool_id, version)
    if tool is None:
        if version is not None and tool_id in ctx.tools:
            raise ApiError(400, f"tool {tool_id!r} has no version {_short(version)!r} (its "
                                f"versions: {', '.join(ctx.tools.versions(tool_id))})", "tool_version")
        raise ApiError(400, f"no tool {tool_id!r} (see GET /api/tools)", "tool_id")
    try:
        values = check_params(tool, body.get("params", body.get("inputs")))
        job, created = submission.submit(ctx, _dispatcher(), tool, values,
                                         current_owner()["id"], idempotency_key=idempotency_key)
    except ParamError as exc:
        raise ApiError(400, str(exc), exc.field) from None
    except submission.Refused as exc:
        raise ApiError(403, str(exc), "user") from None
    if created:
        response = jsonify(job_json(job))
        response.status_code = 201
    else:
        # A retry of a submission already written (same user, same key, within 24 h): the
        # first job as it is now, and no second one.
        response = jsonify(job_json(job))
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = url_for("api.show_job", job_id=job.id)
    return response


@api.get("/jobs")
def list_jobs():
    """A page of jobs, newest first. `next` is the URL of the following page (keyset: `before`
    the last job shown, so every page costs the same), or null on the last one. `total`
    counts at most JobRecords.LIST_COUNT_CAP jobs; `total_exact` says whether it is all."""
    state = request.args.get("state") or None
    if state and state not in tuple(JobState):
        raise ApiError(400, f"{state!r}: expected one of {', '.join(tuple(JobState))}", "state")
    limit = _int_arg("limit", 50, 1, 1000)
    offset = _int_arg("offset", 0, 0, 10**12)
    before = _int_arg("before", None, 1, 2**63 - 1)
    if g.user is None:
        return jsonify({"jobs": [], "total": 0, "total_exact": True, "limit": limit,
                        "offset": offset, "next": None})
    everyone = is_admin() and request.args.get("all") in ("1", "true")
    page = _ctx().store.list_jobs(state=state, tool_id=request.args.get("tool_id") or None,
                                  limit=limit, offset=offset, before=before,
                                  user_id=None if everyone else g.user["id"])
    return jsonify({"jobs": [job_json(r) for r in page.jobs], "total": page.total,
                    "total_exact": page.total_exact, "limit": limit, "offset": offset,
                    "next": _next_page(page.jobs[-1].id) if page.more else None})


def _next_page(last_id: int) -> str:
    """This request's URL with `before` the last job shown and no `offset` (the cursor
    replaces it)."""
    args = request.args.to_dict()
    args.pop("offset", None)
    args["before"] = str(last_id)
    return url_for("api.list_jobs", **args)


def _int_arg(name, default, low, high):
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(400, f"{raw!r}: expected a whole number from {low} to {high}", name)
    return int(raw)


@api.get("/jobs/<id:job_id>")
def show_job(job_id):
    job = _job_or_404(job_id)
    d = job_json(job, full=True)
    if not is_admin():
        d.pop("command_line")  # admins only: it shows paths of the server
    d["history"] = [{"state": h["state"], "handler": h["handler"], "info": h["info"],
                     "time": iso(h["create_time"])} for h in _ctx().store.history(job_id)]
    d.update(job_datasets_json(_ctx().store, job, _ctx().tools.get(job.tool_id, job.tool_version)))
    return jsonify(d)


@api.get("/jobs/<id:job_id>/stdout")
def job_stdout(job_id):
    return _job_text(job_id, STDOUT)


@api.get("/jobs/<id:job_id>/stderr")
def job_stderr(job_id):
    return _job_text(job_id, STDERR)


def _job_text(job_id, name):
    job = _job_or_404(job_id)
    fh = _inside(job, name)
    if fh is None:
        # The job directory may be gone (cleanup_job): the end of it was kept in the row.
        kept = job.stdout if name == STDOUT else job.stderr
        return Response(kept or "", mimetype="text/plain")
    return _send(job, name, fh, mimetype="text/plain")


@api.get("/jobs/<id:job_id>/outputs/<name>")
def job_output(job_id, name):
    job = _job_or_404(job_id)
    tool = _ctx().tools.get(job.tool_id, job.tool_version)
    output = tool.output(name) if tool else None
    if output is None:
        raise ApiError(404, f"job {job_id} has no output {name!r}", "name")
    fh = _inside(job, relative_path(output))
    if fh is None:
        # The job directory may be gone (cleanup_job): the output lives on as a dataset.
        stored = job_datasets_json(_ctx().store, job)["outputs"].get(name)
        if stored is not None:
            return redirect(url_for("api.display_dataset", dataset_id=stored["id"]))
        raise ApiError(404, f"output {name!r} of job {job_id} does not exist (job state: {job.state})")
    return _send(job, relative_path(output), fh, as_attachment=True)


@api.get("/jobs/<id:job_id>/metrics")
def job_metrics(job_id):
    """The job's metrics as Galaxy's API lists them: [{plugin, name, raw_value, value,
    title}], those the caller may see."""
    return jsonify([m.as_dict() for m in shown_metrics(_job_or_404(job_id))])


def _send(job, relative: str, fh, mimetype: str | None = None, as_attachment: bool = False):
    """A job's file, already opened by _inside (a regular file reached without following a
    link). Behind nginx (nginx_x_accel_redirect_base set) nginx sends it itself, so a web
    worker is not tied up streaming a large output: the path handed to nginx is the
    directory's real path (no link in it, as the server made it) and the file's own name,
    and nginx's `disable_symlinks on` refuses a link the job may put there meanwhile."""
    relative = os.path.normpath(relative)  # _inside refused "..": this only drops "." and "//"
    name = os.path.basename(relative)
    base = _ctx().config.nginx_x_accel_redirect_base
    if base:
        fh.close()
        path = os.path.join(os.path.realpath(job.working_directory), relative)
        response = Response(mimetype=mimetype or "application/octet-stream")
        response.headers["X-Accel-Redirect"] = base.rstrip("/") + path
        if as_attachment:
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    response = send_file(fh, mimetype=mimetype, as_attachment=as_attachment,
                         download_name=name, max_age=0, conditional=False, etag=False)
    if job.state not in ACTIVE:
        # An ended job's file no longer grows (a running job's stdout may grow while it is
        # sent: then no length, and the end of the body is the end of the connection).
        response.content_length = os.fstat(fh.fileno()).st_size
    if not as_attachment:
        # Shown inline; a page's download link names the file itself.
        response.headers.pop("Content-Disposition", None)
    return response


def _inside(job, relative: str):
    """The job's file `relative`, open for reading, if it is a regular file reached without
    following any link; None if it is missing, a link (to anywhere), a FIFO, a device, or
    names a way out of the directory. The job controls its directory: nothing it put there
    is followed."""
    if not job.working_directory:
        return None
    return JobFiles(job.working_directory).open_regular(relative)


@api.delete("/jobs/<id:job_id>")
def cancel_job(job_id):
    ctx = _ctx()
    job = _job_or_404(job_id)
    if submission.cancel(ctx, _dispatcher(), job) is None:
        job = ctx.store.get_job(job_id)
        raise ApiError(409, f"job {job_id} has already ended ({job.state}); nothing to cancel")
    return jsonify(job_json(ctx.store.get_job(job_id)))


# -- tools and handlers -------------------------------------------------------------
@api.get("/tools")
def list_tools():
    return jsonify([tool_summary(t) for t in sorted(_ctx().tools.values(), key=lambda t: t.id)])


@api.get("/tools/<tool_id>")
def show_tool(tool_id):
    version = request.args.get("tool_version") or None
    tools = _ctx().tools
    tool = tools.get(tool_id, version)
    if tool is None:
        raise ApiError(404, f"no tool {tool_id!r}" + (f" of version {version!r}" if version else ""))
    return jsonify(tool_json(tool, tools.versions(tool_id)))


@api.get("/handlers")
def list_handlers():
    if not is_admin():
        raise ApiError(403, "admins only")
    ctx = _ctx()
    interval = ctx.config.job_handler_monitor_sleep
    handlers = []
    for row in ctx.store.handlers():
        handlers.append({
            "name": row["name"], "strategy": row["strategy"], "host": row["host"], "pid": row["pid"],
            "tags": [t for t in row["tags"].split(",") if t], "started": iso(row["started"]),
            "last_seen": iso(row["last_seen"]), "jobs": row["jobs"], "unclaimed": row["unclaimed"],
            "sweep_seconds": row["sweep_seconds"], "messages_failed": row["messages_failed"],
        })
    dispatcher = _dispatcher()
    return jsonify({"handlers": handlers, "sweep_interval": interval,
                    "this_worker": {"messages_sent": dispatcher.sent,
                                    "messages_failed": dispatcher.failed}})


# -- users and API keys -------------------------------------------------------------------
def _user_dict(user: dict) -> dict:
    return {"id": user["id"], "email": user["email"], "is_admin": accounts().is_admin(user),
            "create_time": iso(user["create_time"])}


def _user_or_404(user_id: int) -> dict:
    user = accounts().get(user_id)
    if user is None or not (is_admin() or g.user["id"] == user_id):
        raise ApiError(404, f"no user {user_id}")
    return user


@api.get("/users/current")
def current_user():
    if not g.user:
        return jsonify({"error": "anonymous"}), 404
    # Datasets' disk usage (bytes, deleted ones not counted) and user_quota (null: none).
    usage = {"disk_usage": _ctx().store.disk_usage(g.user["id"]), "quota": _ctx().config.user_quota}
    return jsonify({**_user_dict(g.user), **usage})


@api.get("/users")
def list_users():
    if not is_admin():
        raise ApiError(403, "admins only")
    return jsonify([_user_dict(u) for u in accounts().users()])


@api.post("/users")
def create_user():
    if not is_admin():
        raise ApiError(403, "admins only")
    body = _json_body()
    if not isinstance(body, dict):
        raise ApiError(400, 'expected {"email": ..., "password": ...}', "body")
    try:
        user = accounts().create_user(body.get("email"), body.get("password"),
                                      is_admin=bool(body.get("is_admin")))
    except AccountError as exc:
        raise ApiError(400, exc.message, exc.field) from None
    return jsonify(_user_dict(user)), 201


@api.post("/users/<id:user_id>/api_keys")
def create_api_key(user_id):
    user = _user_or_404(user_id)
    if accounts().is_anonymous(user):
        raise ApiError(403, "anonymous users cannot have API keys")
    key = accounts().new_key(user["id"])
    return jsonify({"key": key, "note": "shown once: only its hash is stored"}), 201


@api.get("/users/<id:user_id>/api_keys")
def list_api_keys(user_id):
    user = _user_or_404(user_id)
    return jsonify([{"id": k["id"], "prefix": k["prefix"], "create_time": iso(k["create_time"])}
                    for k in accounts().keys(user["id"])])


@api.delete("/users/<id:user_id>/api_keys/<id:key_id>")
def delete_api_key(user_id, key_id):
    user = _user_or_404(user_id)
    if not accounts().delete_key(user["id"], key_id):
        raise ApiError(404, f"no key {key_id}")
    return jsonify({"deleted": key_id})


@api.get("/version")
def version():
    """Public: for load balancers and run.sh to see that the server answers."""
    return jsonify({"version": "1.0.0", "name": "muleteer"})


@api.get("/openapi.json")
def openapi():
    from app.openapi import spec
    return jsonify(spec())
