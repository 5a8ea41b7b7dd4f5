"""Who is asking: an API key (`x-api-key` header or `?key=`), or a logged-in browser session.

A wrong or missing key gets the same 401 whether or not the user exists. Requests
authenticated by the session cookie must carry the CSRF token for anything but reads;
requests with an API key need none (a browser never adds the key on its own).
"""
from __future__ import annotations

import hmac
import os
import secrets
from functools import wraps

from flask import abort, current_app, g, jsonify, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def accounts():
    return current_app.extensions["muleteer.accounts"]


def load_user() -> None:
    """Resolve the caller once per request into g.user (None: anonymous) and g.auth."""
    g.user, g.auth, g.bad_key = None, None, False
    if request.endpoint == "static":
        return  # a stylesheet needs no user: no database query per static file
    key = request.headers.get("x-api-key") or request.args.get("key")
    if key:
        g.auth = "key"
        g.user = accounts().user_for_key(key)
        bootstrap = current_app.extensions["muleteer"].config.bootstrap_admin_api_key
        if g.user is None and bootstrap and hmac.compare_digest(key.encode(), bootstrap.encode()):
            g.user = accounts().first_admin()
        g.bad_key = g.user is None
        return
    user_id = session.get("user_id")
    if user_id is not None:
        g.user = accounts().get(user_id)
        g.auth = "session" if g.user else None
        if g.user is None:
            session.clear()
    if g.auth == "session" and request.method not in SAFE_METHODS:
        csrf.protect()


def is_admin() -> bool:
    return accounts().is_admin(g.get("user"))


def visible_job(job_id: int) -> dict | None:
    """The job if the caller may see it (its owner, or an admin), else None: another
    user's job must look exactly like a missing one, so ids tell nothing about others."""
    job = current_app.extensions["muleteer"].store.get_job(job_id)
    if job is None or not (is_admin() or (g.get("user") and job["user_id"] == g.user["id"])):
        return None
    return job


def current_owner() -> dict:
    """The user a submission belongs to. An anonymous visitor (anonymous access on) gets a
    user of their own, kept in their session, so they too see only their own jobs."""
    if g.get("user") is None:
        g.user = accounts().create_anonymous()
        session["user_id"] = g.user["id"]
    return g.user


def unauthorized_json():
    response = jsonify({"error": "authentication required: send a valid API key in the "
                                 "x-api-key header (or ?key=), or log in"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'ApiKey header="x-api-key"'
    return response


def login_required(view):
    """Pages: anonymous visitors go to the login page (unless anonymous access is on)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None and current_app.extensions["muleteer"].config.require_login:
            return redirect(url_for("pages.login", next=request.full_path))
        return view(*args, **kwargs)
    return wrapped


def admin_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None:
            return redirect(url_for("pages.login", next=request.full_path))
        if not is_admin():
            abort(403)
        return view(*args, **kwargs)
    return wrapped


def secret_key(path: str) -> bytes:
    """The session-signing key: made once at first start, kept beside the database
    (mode 0600), never in the repository."""
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    try:
        os.link(path + ".tmp", path)  # the first process to start wins; the rest read its key
    except FileExistsError:
        pass
    os.unlink(path + ".tmp")
    return secret_key(path)
