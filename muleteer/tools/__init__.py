"""Galaxy tool wrappers: loaded with Galaxy's own parser, checked, and turned into commands.

model.py (the typed tool), load.py (one wrapper) and toolbox.py (the panel), params.py
(a client's values), evaluation.py + wrappers.py + sanitize.py (the command), stdio.py
(was it an error), outputs.py (which outputs, of which format).
"""
from muleteer.tools.errors import ParamError, ToolError  # noqa: F401
