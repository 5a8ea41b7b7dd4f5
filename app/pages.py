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
from app.job_json import job_datasets_json
from app.job_metrics_shown import shown_metrics
from app.auth import (accounts, admin_required, current_owner, end_session, is_admin,
                      login_required, start_session, visible_job)
from muleteer.store import iso
from muleteer.tools import ParamError
from muleteer.job_files import STDERR, STDOUT, JobFiles
from muleteer.job_outputs import relative_path
from app.tool_form import error_path, flat_params, form_view, help_html, job_param_rows
from muleteer.tools.params import check_params

pages = Blueprint("pages", __name__)
TAIL_BYTES = 16 * 1024
DATASET_CHOICES = 500  # the newest datasets a tool form offers for a data param


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
    """A tool's form (app/tool_form.py builds it, app/static/tool_form.js runs it): GET
    shows it (?version= for another version), POST submits it as Galaxy's flat params and
    shows it again, as sent, with the error by its field when check_params refuses."""
    toolbox = _ctx().tools
    version = request.form.get("tool_version") or request.args.get("version") or None
    tool = toolbox.get(tool_id, version)
    if tool is None:
        abort(404, f"No tool {tool_id!r}" + (f" version {version!r}." if version else "."))
    versions = list(toolbox.versions(tool_id))

    def show(form, errors, status=200):
        return render_template("tool_form.html", tool=tool, versions=versions, help=help_html(tool),
                               form=form_view(tool, form, errors, _dataset_choices(tool))), status

    if request.method == "GET":
        return show(None, {})
    try:
        values = check_params(tool, flat_params(tool, request.form))
        job, _ = submission.submit(_ctx(), current_app.extensions["muleteer.dispatcher"], tool,
                                   values, current_owner()["id"])
    except ParamError as exc:
        return show(request.form, {error_path(exc.field): exc.message}, 400)
    except submission.Refused as exc:  # shown above the form: it is about the user
        return show(request.form, {"user": str(exc)}, 403)
    flash(f"Job {job.id} submitted.")
    return redirect(url_for("pages.job", job_id=job.id))


def _dataset_choices(tool) -> dict:
    """For each data param of `tool`, by its flat path pattern (Tool.data_params): the user's
    datasets (ok, newest first) of a format it accepts (or a subclass of one)."""
    params = tool.data_params()
    if not params or not g.user:
        return {}
    from muleteer import formats
    rows, _ = _ctx().store.list_datasets(user_id=g.user["id"], limit=DATASET_CHOICES)
    return {pattern: [d for d in rows if formats.accepts(p.formats, d.format)] for pattern, p in params}


@pages.app_template_filter("bytes")
def _bytes(value):
    """A size for people: "12 bytes", "10.5 MiB" (as app/static/datasets.js writes it)."""
    if value is None:
        return ""
    n, unit = float(value), 0
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    while n >= 1024 and unit < len(units) - 1:
        n, unit = n / 1024, unit + 1
    return f"{int(value)} bytes" if unit == 0 else f"{n:.{1 if n < 100 else 0}f} {units[unit]}"


# -- datasets ---------------------------------------------------------------------------
@pages.get("/datasets")
@login_required
def datasets():
    """Upload (a file, over the resumable protocol: app/static/upload.js; or pasted text)
    and the list of my datasets (app/static/datasets.js, from the JSON API)."""
    from muleteer import formats
    return render_template("datasets.html", formats=formats.KNOWN, auto=formats.AUTO)


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
    tool = _ctx().tools.get(row.tool_id, row.tool_version)
    outputs = []
    if tool and row.working_directory:
        files = JobFiles(row.working_directory)
        for output in tool.outputs:
            outputs.append({"name": output.name, "label": output.name,
                            "size": files.regular_size(relative_path(output))})
    owner = accounts().get(row.user_id) if row.user_id else None
    linked = job_datasets_json(_ctx().store, row, tool)  # {"inputs", "outputs"}: datasets
    for output in outputs:
        output["dataset"] = linked["outputs"].pop(output["name"], None)
    for name, dataset in linked["outputs"].items():  # an output the tool no longer declares
        outputs.append({"name": name, "label": name, "size": dataset["size"], "dataset": dataset})
    inputs = [(name, value if isinstance(value, list) else [value])
              for name, value in linked["inputs"].items()]
    params = job_param_rows(tool, row.params, linked["inputs"])  # the tree, as flat paths
    return render_template(
        "job.html", job=row, tool=tool, params=params, outputs=outputs, inputs=inputs,
        history=_ctx().store.history(job_id), iso=iso, owner=owner,
        stdout=_tail(row, STDOUT), stderr=_tail(row, STDERR), active=row.active,
        metrics=shown_metrics(row))


def _tail(job: dict, name: str) -> str:
    """The end of stdout or stderr; "" unless it is a regular file reached without following
    a link (the job may have put a link to a server file, or a FIFO, in its place)."""
    kept = (job.stdout if name == STDOUT else job.stderr) or ""
    if not job.working_directory:
        return kept[-TAIL_BYTES:]
    files = JobFiles(job.working_directory)
    if not files.exists():  # removed by cleanup_job: the end of it was kept in the row
        return kept[-TAIL_BYTES:]
    try:
        return files.tail(name, TAIL_BYTES)
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
