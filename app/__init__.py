"""Muleteer's web side: create_app() builds the Flask app that takes job submissions."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from app import uwsgi_env
from app.context import AppContext, build_context
from app.dispatch import Dispatcher

log = logging.getLogger(__name__)


def create_app(config_file: str | None = None, ctx: AppContext | None = None) -> Flask:
    ctx = ctx or build_context(config_file or uwsgi_env.config_file())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = ctx.config.max_request_body
    dispatcher = Dispatcher(ctx.job_conf)
    app.extensions["muleteer"] = ctx
    app.extensions["muleteer.dispatcher"] = dispatcher

    from app.api import api
    app.register_blueprint(api)
    _register_error_pages(app)

    def after_fork():
        # Pooled connections must not cross a fork; then web worker N runs handler main.web.N.
        from mules.embedded import start_web_handler
        ctx.store.after_fork()
        start_web_handler(ctx, dispatcher)

    uwsgi_env.on_post_fork(after_fork)
    return app


def _register_error_pages(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            message = (f"request body too large (at most {app.config['MAX_CONTENT_LENGTH']} bytes; "
                       "galaxy.max_request_body)")
        else:
            message = exc.description
        return jsonify({"error": message, "path": request.path}), exc.code

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": "internal server error; the server log has the details"}), 500
