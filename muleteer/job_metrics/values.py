"""A job metric's value: typed, parsed strictly from what a job wrote, and shown as Galaxy
shows it (a title and a value in words: "1 minute", "1.5 GB").

Everything a job writes is untrusted text: numbers are read only when the whole text is
a plain decimal number within bounds, and text is cut to what Galaxy's job_metric_text
keeps. Anything else is dropped by the caller, with a log line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

# Galaxy's job_metric_text.metric_value is 1023 characters; names fit job_metric_*.metric_name.
MAX_TEXT = 1023
MAX_NAME = 255
# A metric nobody could mean (2**63: past any counter a kernel keeps).
MAX_NUMBER = float(2 ** 63)

_INTEGER = re.compile(r"[0-9]{1,19}")
# A decimal point or a comma: bash writes $EPOCHREALTIME and `times` with the locale's.
_DECIMAL = re.compile(r"([0-9]{1,19})(?:[.,]([0-9]{1,9}))?")


class Safety(IntEnum):
    """Who may see a plugin's metrics, as Galaxy grades them: admins see everything, a
    job's owner SAFE ones (and POTENTIALLY_SENSITIVE ones where the server exposes them:
    Galaxy's expose_potentially_sensitive_job_metrics)."""
    UNSAFE = 2
    POTENTIALLY_SENSITIVE = 4
    SAFE = 6


@dataclass(frozen=True)
class JobMetric:
    """One metric of a job: a number (job_metric_numeric) or text (job_metric_text)."""
    plugin: str
    name: str
    value: float | str

    @property
    def numeric(self) -> bool:
        return not isinstance(self.value, str)


@dataclass(frozen=True)
class ShownMetric:
    """A metric as GET /api/jobs/N/metrics and the job page show it (Galaxy's fields;
    raw_value is a string, as in Galaxy)."""
    plugin: str
    name: str
    raw_value: str
    value: str
    title: str

    def as_dict(self) -> dict:
        return {"plugin": self.plugin, "name": self.name, "raw_value": self.raw_value,
                "value": self.value, "title": self.title}


def parse_int(text: str | None) -> int | None:
    """A whole number written alone (whitespace around it allowed), else None."""
    if text is None:
        return None
    text = text.strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def parse_decimal(text: str | None) -> float | None:
    """A non-negative decimal number (`12`, `12.5`, `12,5`), else None."""
    if text is None:
        return None
    match = _DECIMAL.fullmatch(text.strip())
    if match is None:
        return None
    whole, fraction = match.groups()
    return float(f"{whole}.{fraction or 0}")


def bounded_text(text: str) -> str:
    """Text as a metric keeps it: no NUL (PostgreSQL refuses it), at most MAX_TEXT."""
    return text.replace("\x00", "").strip()[:MAX_TEXT]


def raw_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def seconds_to_str(value: float) -> str:
    """Galaxy's words for a duration: "12 seconds", "3 minutes", "2 hours and 5 minutes";
    under a minute with two decimals when it has them ("0.31 seconds")."""
    if value < 60:
        shown = f"{value:.2f}".rstrip("0").rstrip(".")
        return f"{shown} second{'' if shown == '1' else 's'}"
    minutes, _ = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    if value < 3600:
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    return (f"{hours} hour{'' if hours == 1 else 's'} and "
            f"{minutes} minute{'' if minutes == 1 else 's'}")


def nice_size(size: float) -> str:
    """Galaxy's words for a size in bytes (units of 1024): "512 bytes", "1.5 GB"."""
    units = ("bytes", "KB", "MB", "GB", "TB", "PB", "EB")
    for index, unit in enumerate(units):
        if size < 1024 ** (index + 1) or unit == units[-1]:
            if index == 0:
                return f"{int(size)} bytes"
            return f"{size / 1024 ** index:.1f} {unit}"
    raise AssertionError("unreachable")
