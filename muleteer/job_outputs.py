"""Where a tool's declared output lives in its job's directory: one rule for the handler
(which reads it) and the web side (which serves it while the job's directory exists)."""
from __future__ import annotations

import re

from muleteer.tools.model import Output

OUTPUTS = "outputs"
_EXTENSION = re.compile(r"[A-Za-z0-9_]{1,32}")


def relative_path(output: Output) -> str:
    """`from_work_dir` when the tool names one (the tool writes there; Galaxy collects it),
    else the path `$name` gives the tool's command: outputs/<name>.<format> when the format
    is fixed (a download of it is then named sensibly), outputs/<name>.dat when it comes
    from an input or a <change_format>."""
    if output.from_work_dir:
        return output.from_work_dir
    fixed = not (output.format_source or output.change_format or output.format in ("input", ""))
    extension = output.format if fixed and _EXTENSION.fullmatch(output.format) else "dat"
    return f"{OUTPUTS}/{output.name}.{extension}"
