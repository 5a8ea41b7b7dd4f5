"""Handler names, as Galaxy writes them: web worker N is `main.web.N`, mule N of the farm
`job-handlers` is `main.job-handlers.N`, and the farm `job-handlers.<tag>` serves `<tag>`.
Every module builds and reads these names here, nowhere else."""
from __future__ import annotations

import re

FARM = "job-handlers"
_MULE = re.compile(r"^main\.job-handlers\.(\d+)$")
_WEB = re.compile(r"^main\.web\.(\d+)$")


def mule_name(mule: int) -> str:
    return f"main.{FARM}.{mule}"


def web_name(worker: int) -> str:
    return f"main.web.{worker}"


def mule_number(name: str) -> int | None:
    """N of `main.job-handlers.N`, else None."""
    match = _MULE.match(name or "")
    return int(match.group(1)) if match else None


def web_number(name: str) -> int | None:
    """N of `main.web.N`, else None."""
    match = _WEB.match(name or "")
    return int(match.group(1)) if match else None


def is_farm(name: str) -> bool:
    """The farm `job-handlers` or one of its tag sub-farms `job-handlers.<tag>`."""
    return name == FARM or name.startswith(FARM + ".")


def farm_for_tag(tag: str) -> str:
    """The sub-farm that serves `tag`: `job-handlers.<tag>` (the farm itself for its name)."""
    return tag if is_farm(tag) else f"{FARM}.{tag}"


def tag_of_farm(farm: str) -> str | None:
    """The tag a sub-farm `job-handlers.<tag>` serves; None for the farm itself."""
    return farm[len(FARM) + 1:] if farm.startswith(FARM + ".") else None
