"""The browser pages: log in, the tools and their forms, my jobs, one job, admin pages.

Server-rendered (Jinja templates) with a little plain JavaScript that refreshes job
tables and pages from the JSON API; every form carries a CSRF token.
"""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   url_for)

from app import submission
from muleteer.job import JobState
from app.accounts import AccountError, normalize_email
from app.auth import (accounts, admin_required, current_owner, end_session, is_admin,
                      login_required, start_session, visible_job)
from muleteer.store import iso
from muleteer.tools import ParamError
from muleteer.job_files import STDERR, STDOUT, JobFiles

pages = Blueprint("pages", __name__)
TAIL_BYTES = 16 * 1024


def _ctx():
    return current_app.extensions["muleteer"]


@pages.app_context_processor
def _template_globals():
    return {"current_user": g.get("user"), "user_is_admin": is_admin() if g.get("user") else False,
            "states": tuple(JobState)}


@pages.app_template_filter("when")
def _when(value):
    """A time (naive UTC, as the store keeps them) in the one format of every page,
    "2026-11-29 14:03:07 UTC", as a <time>; app/static/muleteer.js (Muleteer.when) writes
    the same for what the pages' scripts refresh."""
    if value is None:
        return ""
    from markupsafe import Markup
    return Markup('<time datetime="{}"><span>{}</span> <span>{} UTC</span></time>').format(
        iso(value), value.strftime("%Y-%m-%d"), value.strftime("%H:%M:%S"))


@pages.get("/metrics")
def metrics():
    """Prometheus metrics (app/metrics.py): admins, or the configured local addresses."""
    from app.metrics import render
    allowed = {a.strip() for a in _ctx().config.metrics_allowed_addresses.split(",") if a.strip()}
    if not (is_admin() or request.remote_addr in allowed):
        if g.user is None:
            from app.auth import unauthorized_json
            return unauthorized_json()
        abort(403, "admins only (or an address in metrics_allowed_addresses)")
    return render(_ctx().store), 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}


@pages.get("/")
def index():
    return redirect(url_for("pages.jobs") if g.user else url_for("pages.login"))


# -- logging in -------------------------------------------------------------------------
@pages.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next=next_url)
    # One spelling per account: " A@x.org" is a@x.org for the password and the rate limit.
    email = normalize_email(request.form.get("email", ""))
    ip = request.remote_addr or "unknown"
    limit = _ctx().config.login_attempts_per_10_minutes
    if accounts().failed_recently(ip, email, timedelta(minutes=10)) >= limit:
        return render_template("login.html", next=next_url, email=email,
                               error="Too many failed attempts. Wait a few minutes and try again."), 429
    user = accounts().check_password(email, request.form.get("password", ""))
    if user is None:
        accounts().record_failure(ip, email)
        # The same answer for an unknown email and a wrong password.
        return render_template("login.html", next=next_url, email=email,
                               error="Wrong email or password."), 401
    start_session(user)
    return redirect(next_url or url_for("pages.jobs"))


@pages.post("/logout")
def logout():
    end_session()
    return redirect(url_for("pages.login"))


def _safe_next(value: str | None) -> str | None:
    """Only local paths: a login link must not send people to another site."""
    if not value:
        return None
    parsed = urlparse(value)
    if parsed.scheme or parsed.netloc or not value.startswith("/") or value.startswith("//"):
        return None
    return value


# -- tools ------------------------------------------------------------------------------
@pages.get("/tools")
@login_required
def tools():
    return render_template("tools.html", tools=sorted(_ctx().tools.values(), key=lambda t: t.name.lower()))


@pages.route("/tools/<tool_id>", methods=["GET", "POST"])
@login_required
def tool_form(tool_id):
    tool = _ctx().tools.get(tool_id)
    if tool is None:
        abort(404, f"No tool {tool_id!r}.")
    if request.method == "GET":
        return render_template("tool_form.html", tool=tool, values={}, errors={})
    submitted = {}
    for param in tool.params:
        if param.type == "boolean":
            submitted[param.name] = param.name in request.form
        elif param.name in request.form:
            submitted[param.name] = request.form[param.name]
    try:
        values = tool.validate(submitted)
    except ParamError as exc:
        name = exc.field.split(".", 1)[-1]
        return render_template("tool_form.html", tool=tool, values=request.form,
                               errors={name: exc.message}), 400
    job, _ = submission.submit(_ctx(), current_app.extensions["muleteer.dispatcher"], tool,
                               values, current_owner()["id"])
    flash(f"Job {job.id} submitted.")
    return redirect(url_for("pages.job", job_id=job.id))


# -- jobs -------------------------------------------------------------------------------
@pages.get("/jobs")
@login_required
def jobs():
    everyone = is_admin() and request.args.get("all") in ("1", "true")
    return render_template("jobs.html", everyone=everyone)


def _visible_job(job_id: int) -> dict:
    job = visible_job(job_id)
    if job is None:
        abort(404, f"No job {job_id}.")
    return job


@pages.get("/jobs/<id:job_id>")
@login_required
def job(job_id):
    row = _visible_job(job_id)
    tool = _ctx().tools.get(row.tool_id)
    outputs = []
    if tool and row.working_directory:
        files = JobFiles(row.working_directory)
        for output in tool.outputs:
            outputs.append({"name": output.name, "label": output.label or output.name,
                            "size": files.regular_size(output.relative_path())})
    owner = accounts().get(row.user_id) if row.user_id else None
    return render_template(
        "job.html", job=row, tool=tool, params=row.params, outputs=outputs,
        history=_ctx().store.history(job_id), iso=iso, owner=owner,
        stdout=_tail(row, STDOUT), stderr=_tail(row, STDERR), active=row.active)


def _tail(job: dict, name: str) -> str:
    """The end of stdout or stderr; "" unless it is a regular file reached without following
    a link (the job may have put a link to a server file, or a FIFO, in its place)."""
    if not job.working_directory:
        return ""
    try:
        return JobFiles(job.working_directory).tail(name, TAIL_BYTES)
    except OSError:
        return ""


@pages.post("/jobs/<id:job_id>/cancel")
@login_required
def cancel_job(job_id):
    row = _visible_job(job_id)
    state = submission.cancel(_ctx(), current_app.extensions["muleteer.dispatcher"], row)
    flash(f"Job {job_id} is being cancelled." if state else f"Job {job_id} had already ended.")
    return redirect(url_for("pages.job", job_id=job_id))


# -- account and admin ------------------------------------------------------------------
@pages.route("/account", methods=["GET", "POST"])
@login_required
def account():
    new_key = None
    if request.method == "POST" and g.user and not accounts().is_anonymous(g.user):
        new_key = accounts().new_key(g.user["id"])
    keys = accounts().keys(g.user["id"]) if g.user else []
    return render_template("account.html", keys=keys, new_key=new_key, iso=iso)


@pages.get("/admin/handlers")
@admin_required
def admin_handlers():
    return render_template("admin_handlers.html", handlers=_ctx().store.handlers(), iso=iso,
                           interval=_ctx().config.job_handler_monitor_sleep)


@pages.route("/admin/users", methods=["GET", "POST"])
@admin_required
def admin_users():
    errors, created, new_key = {}, None, None
    if request.method == "POST":
        if request.form.get("action") == "key":
            user = accounts().get(int(request.form.get("user_id", "0") or 0))
            if user and not accounts().is_anonymous(user):
                new_key = (user["email"], accounts().new_key(user["id"]))
        else:
            try:
                created = accounts().create_user(request.form.get("email"), request.form.get("password"),
                                                 is_admin="is_admin" in request.form)
            except AccountError as exc:
                errors[exc.field] = exc.message
    users = [u for u in accounts().users() if not accounts().is_anonymous(u)]
    return render_template("admin_users.html", users=users, errors=errors, created=created,
                           new_key=new_key, form=request.form, iso=iso,
                           is_admin_user=accounts().is_admin), (400 if errors else 200)
