"""Where the shared Galaxy wrappers written by others are (reference material beside the
checkout, never copied into it): $MULETEER_SHARED_TOOLS, else ../shared/galaxy-tools/ next
to the checkout. Tests that use them skip, saying so, when neither exists."""
from __future__ import annotations

import os

from tests.support.uwsgi_server import REPO


def text_processing_dir() -> str:
    """The text_processing folder's path (it may not exist: callers skip then)."""
    override = os.environ.get("MULETEER_SHARED_TOOLS")
    if override:
        return os.path.realpath(os.path.join(override, "text_processing"))
    return os.path.realpath(os.path.join(REPO, "..", "shared", "galaxy-tools", "text_processing"))
