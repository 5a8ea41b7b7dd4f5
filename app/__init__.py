"""Muleteer's web side: create_app() builds the Flask app that takes job submissions."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from app.accounts import Accounts, ensure_first_admin
from app.auth import (SessionInterface, TrustedProxies, csrf, load_user, log_without_key,
                      secret_key)
from app.dispatch import Dispatcher
from app.headers import security_headers
from muleteer import uwsgi_env
from muleteer.context import AppContext, build_context
from muleteer.dataset_files import DatasetFiles

log = logging.getLogger(__name__)


def create_app(config_file: str | None = None, ctx: AppContext | None = None,
               on_worker_start=None, runner_specs=None) -> Flask:
    """The Flask app. `on_worker_start(ctx, dispatcher)` runs in each web worker once it
    exists (wsgi.py passes the embedded job handler of mules/: main.web.N). Without a ctx,
    `runner_specs` (wsgi.py passes the runner registry's) are needed to build one."""
    if ctx is None:
        if runner_specs is None:
            raise TypeError("create_app: give ctx, or runner_specs to build one")
        ctx = build_context(config_file or uwsgi_env.config_file(), runner_specs=runner_specs)
    config = ctx.config
    app = Flask(__name__)
    app.url_map.converters["id"] = IdConverter
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_request_body,
        SECRET_KEY=secret_key(config.resolve("database/secret_key")),
        SESSION_COOKIE_NAME="muleteer_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    # The cookie holds a server-side session's id (auth.py); Secure over https.
    app.session_interface = SessionInterface()
    app.wsgi_app = TrustedProxies(app.wsgi_app, config.trusted_proxies)
    dispatcher = Dispatcher(ctx.job_conf)
    accounts = Accounts(ctx.store.engine, config.admin_users.split(","))
    app.extensions["muleteer"] = ctx
    app.extensions["muleteer.dispatcher"] = dispatcher
    app.extensions["muleteer.accounts"] = accounts

    from app.admin_charts import admin_charts
    from app.api import api
    from app.datasets_api import upload_limit  # the /api/datasets routes, on `api`
    from app.pages import pages
    from app.staging_api import staging_api  # staged jobs' nodes (muleteer/staging.py)
    from app.tus import tus
    # Who is asking comes first: a session that has ended is cleared before the CSRF check,
    # so its token is refused too.
    app.before_request(upload_limit)  # before anything reads a body (CSRF: load_user)
    app.before_request(load_user)
    csrf.init_app(app)
    csrf.exempt(api)  # API writes: an API key needs no token; a session must send one (auth.py)
    csrf.exempt(tus)  # resumable uploads (tus): the API's rule
    app.after_request(security_headers)
    app.after_request(log_without_key)
    app.register_blueprint(api)
    app.register_blueprint(tus)
    app.register_blueprint(pages)
    app.register_blueprint(admin_charts)
    app.register_blueprint(staging_api)
    _register_error_pages(app)
    _first_admin(accounts, config)
    stale = DatasetFiles(config.file_path).remove_stale_incoming()
    if stale:
        log.warning("removed %d unfinished upload file(s) older than a day from %s/incoming",
                    stale, config.file_path)

    def after_fork():
        # Pooled connections must not cross a fork.
        ctx.store.after_fork()
        if on_worker_start is not None:
            on_worker_start(ctx, dispatcher)

    if uwsgi_env.worker_id() > 0:
        after_fork()  # lazy-apps: the app loads in the worker itself, after the fork
    else:
        uwsgi_env.on_post_fork(after_fork)
    return app


class IdConverter(IntegerConverter):
    """A database id in a URL: larger than a 64-bit integer it cannot exist (and SQLite
    would refuse to compare it), so such a URL simply does not match: 404."""

    def __init__(self, map, *args, **kwargs):
        super().__init__(map, min=1, max=2**63 - 1)


def _first_admin(accounts: Accounts, config) -> None:
    message = ensure_first_admin(accounts, config)
    if message:
        log.warning("%s", message)


def _register_error_pages(app: Flask) -> None:
    def wants_json() -> bool:
        # The API and /metrics are for programs: every error there is JSON, whatever the
        # client accepts. Pages answer JSON only to a client that asks for it.
        path = request.path
        return (path == "/api" or path.startswith("/api/") or path == "/metrics"
                or request.accept_mimetypes.best == "application/json")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            message = (f"request body too large (at most {app.config['MAX_CONTENT_LENGTH']} bytes; "
                       "galaxy.max_request_body)")
        elif exc.code == 400 and "CSRF" in (exc.description or ""):
            message = f"{exc.description} Reload the page and try again."
        else:
            message = exc.description
        if wants_json():
            return jsonify({"error": message, "path": request.path}), exc.code
        return render_template("error.html", code=exc.code, message=message), exc.code

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: OperationalError):
        # A locked or unreachable database: nothing was accepted, and saying so lets the
        # client retry (with the same Idempotency-Key, a retry can never make a second job).
        log.warning("database unavailable on %s %s: %s", request.method, request.path,
                    str(exc.orig)[:200])
        message = "the database is busy or unreachable; nothing was changed: retry shortly"
        if wants_json():
            response = jsonify({"error": message})
        else:
            response = app.make_response((render_template("error.html", code=503,
                                                           message=message), 503))
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return jsonify({"error": "internal server error; the server log has the details"}), 500
        return render_template("error.html", code=500,
                               message="Internal server error; the server log has the details."), 500
