"""Who is asking: an API key (`x-api-key` header or `?key=`), or a logged-in browser session.

A wrong or missing key gets the same 401 whether or not the user exists. Requests
authenticated by the session cookie must carry the CSRF token for anything but reads;
requests with an API key need none (a browser never adds the key on its own).

Browser sessions live on the server (accounts.user_session): the signed cookie carries
only a random session id, and a session counts only while its row exists and is within
session_idle_timeout and session_max_age. Logging out deletes the row, so a copy of the
old cookie (and its CSRF token) is worth nothing.

An API key's user is looked up once per KEY_CACHE_SECONDS per process (KeyCache), not once
per request: a key deleted (or a user changed) is refused by every web worker within that
time, as no handler looks keys up. Unknown keys are never cached: a new key works at once.
"""
from __future__ import annotations

import hmac
import threading
import time
from functools import wraps
from urllib.parse import unquote_plus

from flask import abort, current_app, g, jsonify, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from muleteer import uwsgi_env
from muleteer.secret_files import read_or_create_key

csrf = CSRFProtect()
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Under a second: issue 15 allows a revoked key to be refused "everywhere within a second".
KEY_CACHE_SECONDS = 0.5


class KeyCache:
    """API key -> its user's row, each entry kept for at most `ttl` seconds in this process.
    Only found users are kept (a refused key costs its lookup every time, as before), and
    at most `size` keys (full: emptied, then filled again by the keys in use)."""

    def __init__(self, ttl: float = KEY_CACHE_SECONDS, size: int = 1024, clock=time.monotonic):
        self.ttl, self.size, self.clock = ttl, size, clock
        self._entries: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def user(self, key: str, lookup) -> dict | None:
        """The user for `key`: from the cache while fresh, else `lookup(key)`."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.ttl:
            return dict(entry[1])  # a copy: a request never changes another's user
        found = lookup(key)
        with self._lock:
            if found is None:
                self._entries.pop(key, None)
            else:
                if len(self._entries) >= self.size:
                    self._entries.clear()
                # Stamped with the time before the lookup: never fresh for longer than ttl
                # counted from when the database said so.
                self._entries[key] = (now, dict(found))
        return found


def key_cache() -> KeyCache:
    return current_app.extensions.setdefault("muleteer.key_cache", KeyCache())


def accounts():
    return current_app.extensions["muleteer.accounts"]


def _user_for_key(key: str) -> dict | None:
    """The key's user, or the first admin for galaxy.yml's bootstrap_admin_api_key (cached
    like any key: it was a scan of every user on each request)."""
    user = accounts().user_for_key(key)
    bootstrap = current_app.extensions["muleteer"].config.bootstrap_admin_api_key
    if user is None and bootstrap and hmac.compare_digest(key.encode(), bootstrap.encode()):
        user = accounts().first_admin()
    return user


def load_user() -> None:
    """Resolve the caller once per request into g.user (None: anonymous) and g.auth."""
    g.user, g.auth, g.bad_key = None, None, False
    if request.endpoint == "static":
        return  # a stylesheet needs no user: no database query per static file
    key = request.headers.get("x-api-key") or request.args.get("key")
    if key:
        g.auth = "key"
        g.user = key_cache().user(key, _user_for_key)
        g.bad_key = g.user is None
        return
    if "user_id" in session:
        session.clear()  # a cookie from before server-side sessions: not honoured
    session_id = session.get("sid")
    if session_id is not None:
        g.user = accounts().user_for_session(session_id, *_session_limits())
        g.auth = "session" if g.user else None
        if g.user is None:
            session.clear()  # ended or expired: its CSRF token goes with it
    if g.auth == "session" and request.method not in SAFE_METHODS:
        csrf.protect()


def _session_limits() -> tuple[int, int]:
    config = current_app.extensions["muleteer"].config
    return config.session_max_age, config.session_idle_timeout


def start_session(user: dict) -> None:
    """Log this browser in as the user: a new server-side session, and a new cookie (a new
    CSRF token with it), so nothing from before the login carries over."""
    session.clear()
    session["sid"] = accounts().start_session(user["id"], *_session_limits())


def end_session() -> None:
    """Log out: the session's row is deleted, so the cookie is dead even if kept."""
    accounts().end_session(session.get("sid"))
    session.clear()


def is_admin() -> bool:
    return accounts().is_admin(g.get("user"))


def visible_job(job_id: int) -> dict | None:
    """The job if the caller may see it (its owner, or an admin), else None: another
    user's job must look exactly like a missing one, so ids tell nothing about others."""
    job = current_app.extensions["muleteer"].store.get_job(job_id)
    if job is None or not (is_admin() or (g.get("user") and job.user_id == g.user["id"])):
        return None
    return job


def current_owner() -> dict:
    """The user a submission belongs to. An anonymous visitor (anonymous access on) gets a
    user of their own, kept in their session, so they too see only their own jobs."""
    if g.get("user") is None:
        g.user = accounts().create_anonymous()
        # Not start_session(): the page's CSRF token stays valid for its next requests.
        session["sid"] = accounts().start_session(g.user["id"], *_session_limits())
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


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, `Secure` whenever the request came over https (directly, or
    from a trusted proxy that says so: TrustedProxies)."""

    def get_cookie_secure(self, app) -> bool:
        return request.is_secure or super().get_cookie_secure(app)


class TrustedProxies:
    """X-Forwarded-For and X-Forwarded-Proto are believed only from the addresses in
    galaxy.yml's trusted_proxies (an http proxy in front of uWSGI's http: port); from
    anyone else they are ignored. Behind nginx's uwsgi_pass nothing needs trusting: nginx
    passes the client's address and the scheme itself (uwsgi_params: HTTPS, UWSGI_SCHEME).

    uWSGI itself makes wsgi.url_scheme "https" for any request that says
    `X-Forwarded-Proto: https`, whoever sends it: from an untrusted peer the scheme is
    taken back from what the connection says (HTTPS / UWSGI_SCHEME), not from the header.
    """

    def __init__(self, wsgi_app, addresses: str):
        self.wsgi_app = wsgi_app
        self.trusted = {a.strip() for a in addresses.split(",") if a.strip()}
        self.fixed = ProxyFix(wsgi_app, x_for=1, x_proto=1)

    def __call__(self, environ, start_response):
        if self.trusted and environ.get("REMOTE_ADDR") in self.trusted:
            return self.fixed(environ, start_response)
        if "HTTP_X_FORWARDED_PROTO" in environ:
            https = (environ.get("HTTPS", "").lower() in ("on", "1", "true")
                     or environ.get("UWSGI_SCHEME", "").lower() == "https")
            environ["wsgi.url_scheme"] = "https" if https else "http"
        return self.wsgi_app(environ, start_response)


def without_key(url: str) -> str:
    """The URL with the value of every `key` query parameter hidden (however it is
    spelled: k%65y= is key= to the app too)."""
    path, question, query = url.partition("?")
    if not question:
        return url
    parts = [f"{name}=[hidden]" if unquote_plus(name) == "key" else part
             for part in query.split("&") for name in [part.partition("=")[0]]]
    return path + "?" + "&".join(parts)


def log_without_key(response):
    """after_request: the request's URI and referer for uWSGI's request log with any API
    key hidden, as the logvars %(uri_without_key) and %(referer_without_key) that
    galaxy.yml's log-format uses instead of %(uri) and %(referer)."""
    uwsgi = uwsgi_env.uwsgi
    if uwsgi is not None:
        try:
            uwsgi.set_logvar("uri_without_key",
                             without_key(request.environ.get("REQUEST_URI") or request.full_path))
            uwsgi.set_logvar("referer_without_key", without_key(request.referrer or "-"))
        except Exception:  # a log line is never worth failing the response
            pass
    return response


def secret_key(path: str) -> bytes:
    """The session-signing key: made once at first start, kept beside the database
    (mode 0600), never in the repository."""
    return read_or_create_key(path)
