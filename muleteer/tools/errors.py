"""The two ways a tool can be wrong: its file (ToolError, at load) or a client's values for
it (ParamError, at submission)."""
from __future__ import annotations


class ToolError(Exception):
    """A tool file is invalid or uses what Muleteer refuses; the message names the file
    and, where known, the line."""


class ParamError(ValueError):
    """A submitted parameter is bad; `field` names it for the client, as Galaxy's flat
    path ("params.cond|sel", "params.queries_0|input")."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
