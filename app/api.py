"""The JSON API under /api. Errors are JSON: {"error": message, "field": where}."""
from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, g, jsonify, request, send_file, url_for

from app import models, submission
from app.accounts import AccountError
from app.auth import accounts, current_owner, is_admin, unauthorized_json, visible_job
from app.store import iso, job_to_dict
from app.tools import ParamError
from mules.job_files import STDERR, STDOUT

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


# -- jobs -------------------------------------------------------------------------
@api.post("/jobs")
def submit_job():
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise ApiError(400, "the request body must be a JSON object such as "
                            '{"tool_id": "cat_lines", "params": {...}}', "body")
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object, not "
                            f"{type(body).__name__}", "body")
    unknown = set(body) - {"tool_id", "params"}
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))} "
                            "(expected tool_id and params)", sorted(unknown)[0])
    tool_id = body.get("tool_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise ApiError(400, "tool_id is required and must be a tool id (see GET /api/tools)", "tool_id")
    ctx = _ctx()
    tool = ctx.tools.get(tool_id)
    if tool is None:
        raise ApiError(400, f"no tool {tool_id!r} (see GET /api/tools)", "tool_id")
    try:
        values = tool.validate(body.get("params"))
    except ParamError as exc:
        raise ApiError(400, str(exc), exc.field) from None

    job = submission.submit(ctx, _dispatcher(), tool, values, current_owner()["id"])
    response = jsonify(job_to_dict({**job, "handler": None, "external_id": None, "exit_code": None,
                                    "info": None, "queued_time": None, "start_time": None,
                                    "end_time": None}))
    response.status_code = 201
    response.headers["Location"] = url_for("api.show_job", job_id=job["id"])
    return response


@api.get("/jobs")
def list_jobs():
    state = request.args.get("state") or None
    if state and state not in models.STATES:
        raise ApiError(400, f"{state!r}: expected one of {', '.join(models.STATES)}", "state")
    limit = _int_arg("limit", 50, 1, 1000)
    offset = _int_arg("offset", 0, 0, 10**12)
    if g.user is None:
        return jsonify({"jobs": [], "total": 0, "limit": limit, "offset": offset})
    everyone = is_admin() and request.args.get("all") in ("1", "true")
    rows, total = _ctx().store.list_jobs(state=state, tool_id=request.args.get("tool_id") or None,
                                         limit=limit, offset=offset,
                                         user_id=None if everyone else g.user["id"])
    return jsonify({"jobs": [job_to_dict(r) for r in rows], "total": total,
                    "limit": limit, "offset": offset})


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
    d = job_to_dict(job, full=True)
    if not is_admin():
        d.pop("command_line")  # admins only: it shows paths of the server
    d["history"] = [{"state": h["state"], "handler": h["handler"], "info": h["info"],
                     "time": iso(h["create_time"])} for h in _ctx().store.history(job_id)]
    tool = _ctx().tools.get(job["tool_id"])
    d["outputs"] = [o.name for o in tool.outputs] if tool else []
    return jsonify(d)


@api.get("/jobs/<id:job_id>/stdout")
def job_stdout(job_id):
    return _job_text(job_id, STDOUT)


@api.get("/jobs/<id:job_id>/stderr")
def job_stderr(job_id):
    return _job_text(job_id, STDERR)


def _job_text(job_id, name):
    job = _job_or_404(job_id)
    path = _inside(job, name)
    if path is None or not os.path.isfile(path):
        return Response("", mimetype="text/plain")
    return _send(path, mimetype="text/plain")


@api.get("/jobs/<id:job_id>/outputs/<name>")
def job_output(job_id, name):
    job = _job_or_404(job_id)
    tool = _ctx().tools.get(job["tool_id"])
    output = tool.output(name) if tool else None
    if output is None:
        raise ApiError(404, f"job {job_id} has no output {name!r}", "name")
    path = _inside(job, output.relative_path())
    if path is None or not os.path.isfile(path):
        raise ApiError(404, f"output {name!r} of job {job_id} does not exist (job state: {job['state']})")
    return _send(path, as_attachment=True)


def _send(path: str, mimetype: str | None = None, as_attachment: bool = False):
    """A file from a job directory; behind nginx (nginx_x_accel_redirect_base set) nginx
    sends it itself, so a web worker is not tied up streaming a large output."""
    base = _ctx().config.nginx_x_accel_redirect_base
    if base:
        response = Response(mimetype=mimetype or "application/octet-stream")
        response.headers["X-Accel-Redirect"] = base.rstrip("/") + path
        if as_attachment:
            response.headers["Content-Disposition"] = f'attachment; filename="{os.path.basename(path)}"'
        return response
    response = send_file(path, mimetype=mimetype, as_attachment=as_attachment,
                         download_name=os.path.basename(path), max_age=0, conditional=False)
    if not as_attachment:
        # Shown inline; a page's download link names the file itself.
        response.headers.pop("Content-Disposition", None)
    return response


def _inside(job, relative: str) -> str | None:
    """The real path of a file in the job's directory, or None if it would leave it."""
    if not job["working_directory"]:
        return None
    root = os.path.realpath(job["working_directory"])
    path = os.path.realpath(os.path.join(root, relative))
    return path if path.startswith(root + os.sep) else None


@api.delete("/jobs/<id:job_id>")
def cancel_job(job_id):
    ctx = _ctx()
    job = _job_or_404(job_id)
    if submission.cancel(ctx, _dispatcher(), job) is None:
        job = ctx.store.get_job(job_id)
        raise ApiError(409, f"job {job_id} has already ended ({job['state']}); nothing to cancel")
    return jsonify(job_to_dict(ctx.store.get_job(job_id)))


# -- tools and handlers -------------------------------------------------------------
@api.get("/tools")
def list_tools():
    return jsonify([t.describe() for t in sorted(_ctx().tools.values(), key=lambda t: t.id)])


@api.get("/tools/<tool_id>")
def show_tool(tool_id):
    tool = _ctx().tools.get(tool_id)
    if tool is None:
        raise ApiError(404, f"no tool {tool_id!r}")
    return jsonify(tool.describe(full=True))


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
    return jsonify(_user_dict(g.user)) if g.user else (jsonify({"error": "anonymous"}), 404)


@api.get("/users")
def list_users():
    if not is_admin():
        raise ApiError(403, "admins only")
    return jsonify([_user_dict(u) for u in accounts().users()])


@api.post("/users")
def create_user():
    if not is_admin():
        raise ApiError(403, "admins only")
    body = request.get_json(force=True, silent=True)
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
