"""Security headers on every response (pages, API, static files, errors).

The pages load only the app's own scripts and stylesheet (app/static): no inline
script, no inline event handler, no style attribute, so a strict Content-Security-Policy
costs nothing, and the pages cannot be framed (clickjacking).
"""
from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Full URLs only to this site (Flask-WTF checks the Referer of https form posts);
    # other sites learn nothing, not even the origin.
    "Referrer-Policy": "same-origin",
}


def security_headers(response):
    """after_request: add the headers a view has not set itself."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
