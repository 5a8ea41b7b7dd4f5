"""Galaxy's job metrics plugins (core, hostname, uname, cpuinfo, meminfo, env; cgroup has
a module of its own): each gives the shell lines the job script runs before and after the
tool's command, reads back what they wrote, and shows its metrics as Galaxy does.

The lines write one file per plugin, named as Galaxy names them (`__instrument_<plugin>_
<name>`), in the job directory and relative to it: the script runs them there, wherever the
job runs (a node's scratch for a staged job, whose files come back with its outputs). They
are cheap: core needs no process at all (bash's own clock and variables); a plugin that
needs one (uname, cpuinfo, env without a list) costs it only when it is configured.

The job owns its directory and may have written anything in those files: they are read
only through JobFiles (no link followed, size-bounded), and a value that is not what the
line writes is dropped with a log line.
"""
from __future__ import annotations

import datetime
import logging
import re
import shlex
from typing import ClassVar

from muleteer.job_files import JobFiles
from muleteer.job_metrics.conf import PluginConf
from muleteer.job_metrics.values import (MAX_NAME, JobMetric, Safety, bounded_text, nice_size,
                                         parse_decimal, parse_int, seconds_to_str)

log = logging.getLogger(__name__)

PREFIX = "__instrument"  # Galaxy's: every metrics file of a job directory starts with it
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_job_file(files: JobFiles, name: str, limit: int = 4096,
                  keep_nul: bool = False) -> str | None:
    """A metrics file's text, if it is a regular file (no link followed) of at most
    `limit` bytes; None (with a log line when it is too big) otherwise. NUL bytes are
    removed unless `keep_nul` (env's separators)."""
    fh = files.open_regular(name)
    if fh is None:
        return None
    with fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        log.warning("job metrics: %s/%s is over %d bytes: not read", files.directory, name,
                    limit)
        return None
    text = data.decode("utf-8", errors="replace")
    return text if keep_nul else text.replace("\x00", "")


def dropped(files: JobFiles, name: str, text: str, what: str, more: int = 0) -> None:
    log.warning("job metrics: %s/%s: %r is not %s: dropped%s", files.directory, name, text[:60],
                what, f" (and {more} more)" if more else "")


class Dropped:
    """What a plugin drops while reading one file of many lines: the first piece logged
    with why, the others counted (a job may fill the file with garbage: one log line)."""

    def __init__(self, files: JobFiles, name: str):
        self.files, self.name = files, name
        self.first: tuple[str, str] | None = None
        self.count = 0

    def add(self, text: str, what: str) -> None:
        if self.first is None:
            self.first = (text, what)
        self.count += 1

    def log(self) -> None:
        if self.first is not None:
            dropped(self.files, self.name, *self.first, more=self.count - 1)


def as_bool(conf: PluginConf, name: str, default: bool = False) -> bool:
    """A yes/no setting as Galaxy reads them (true/yes/on/1, false/no/off/0)."""
    value = conf.attributes.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    conf.fail("expected true or false", name)


def as_list(conf: PluginConf, name: str) -> list[str] | None:
    """A list setting: a comma-separated string (XML), or a YAML list of strings."""
    value = conf.attributes.get(name)
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    if not all(isinstance(item, str) for item in items):
        conf.fail("expected names separated by commas", name)
    return [item.strip() for item in items if item.strip()]


class Plugin:
    """One configured plugin. Subclasses set `type`, the settings they take, their
    safety, and override the hooks they need."""
    type: ClassVar[str]
    settings: ClassVar[tuple[str, ...]] = ()
    safety: ClassVar[Safety] = Safety.POTENTIALLY_SENSITIVE  # Galaxy's default
    titles: ClassVar[dict[str, str]] = {}

    def __init__(self, conf: PluginConf):
        self.conf = conf
        for name in conf.attributes:
            if name not in self.settings:
                known = ", ".join(self.settings) if self.settings else "none"
                conf.fail(f"unknown setting (this plugin's settings: {known})", name)

    @classmethod
    def file(cls, name: str) -> str:
        return f"{PREFIX}_{cls.type}_{name}"

    def before(self) -> list[str]:
        """Shell lines run in the job directory before the tool's command."""
        return []

    def after(self) -> list[str]:
        """Shell lines run in the job directory after it ($rc: its exit status)."""
        return []

    def read(self, files: JobFiles) -> list[JobMetric]:
        """What the lines wrote, as metrics; garbage dropped."""
        return []

    @classmethod
    def show(cls, name: str, value: float | str) -> tuple[str, str]:
        """(title, value in words) of one of this plugin's metrics."""
        return cls.titles.get(name, name), _plain(value)


def _plain(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# -- core -----------------------------------------------------------------------------
# The clock without a process: bash 5's $EPOCHREALTIME (microseconds), else bash 4.2's
# printf %(%s)T (seconds).
_NOW = '__mt_now=$EPOCHREALTIME; [ -n "$__mt_now" ] || printf -v __mt_now \'%(%s)T\' -1'
# An epoch from before 2001 or past 2100 is not a clock reading.
_EPOCH_RANGE = (978307200.0, 4102444800.0)
_CORE_KEYS = ("galaxy_slots", "galaxy_memory_mb", "epoch_start", "epoch_end")


class Core(Plugin):
    """Cores and memory granted (GALAXY_SLOTS, GALAXY_MEMORY_MB), start and end times,
    and the wall-clock runtime of the tool's command.

    Galaxy writes four files; here one, `key value` lines, made before the command and
    appended to after it: creating a file is most of what these lines cost a job (about
    0.75 ms of kernel time each on these VMs' ext4)."""
    type = "core"
    safety = Safety.SAFE
    titles = {"galaxy_slots": "Cores Allocated", "galaxy_memory_mb": "Memory Allocated (MB)",
              "start_epoch": "Job Start Time", "end_epoch": "Job End Time",
              "runtime_seconds": "Job Runtime (Wall Clock)"}

    def before(self) -> list[str]:
        return [_NOW, "printf 'galaxy_slots %s\\ngalaxy_memory_mb %s\\nepoch_start %s\\n' "
                f'"$GALAXY_SLOTS" "$GALAXY_MEMORY_MB" "$__mt_now" > {self.file("metrics")}']

    def after(self) -> list[str]:
        return [_NOW, f'echo "epoch_end $__mt_now" >> {self.file("metrics")}']

    def read(self, files: JobFiles) -> list[JobMetric]:
        name = self.file("metrics")
        values, garbage = {}, Dropped(files, name)
        for line in (read_job_file(files, name, limit=512) or "").splitlines():
            key, _, value = line.partition(" ")
            if key not in _CORE_KEYS:
                garbage.add(line, "a core metric")
            elif value.strip():  # GALAXY_MEMORY_MB is often not set
                values[key] = value  # the last: the script appends the end after the tool
        garbage.log()
        found = []
        for key, low, high in (("galaxy_slots", 1, 10 ** 6), ("galaxy_memory_mb", 1, 10 ** 12)):
            if key not in values:
                continue
            number = parse_int(values[key])
            if number is None or not low <= number <= high:
                dropped(files, name, values[key], f"a whole number from {low} to {high} ({key})")
                continue
            found.append(JobMetric(self.type, key, float(number)))
        start, end = (self._epoch(files, name, values.get(key)) for key in _CORE_KEYS[2:])
        if start is not None and end is not None:
            if end < start:
                log.warning("job metrics: %s: the end (%s) is before the start (%s): dropped",
                            files.directory, end, start)
            else:
                found += [JobMetric(self.type, "start_epoch", start),
                          JobMetric(self.type, "end_epoch", end),
                          JobMetric(self.type, "runtime_seconds", round(end - start, 6))]
        return found

    @staticmethod
    def _epoch(files: JobFiles, name: str, text: str | None) -> float | None:
        if text is None:
            return None
        value = parse_decimal(text)
        if value is None or not _EPOCH_RANGE[0] <= value <= _EPOCH_RANGE[1]:
            dropped(files, name, text, "a time in seconds since the epoch")
            return None
        return value

    @classmethod
    def show(cls, name: str, value: float | str) -> tuple[str, str]:
        title = cls.titles.get(name, name)
        if isinstance(value, str):
            return title, value
        if name == "runtime_seconds":
            return title, seconds_to_str(value)
        if name in ("start_epoch", "end_epoch"):
            # Galaxy's: the server's local time.
            moment = datetime.datetime.fromtimestamp(value)
            return title, moment.strftime("%Y-%m-%d %H:%M:%S")
        return title, str(int(value))


# -- hostname, uname ------------------------------------------------------------------
class Hostname(Plugin):
    """The name of the machine the job ran on (bash's $HOSTNAME, the kernel's name for
    it: no process, no DNS lookup; Galaxy's runs `hostname -f`)."""
    type = "hostname"

    def before(self) -> list[str]:
        return [f'echo "$HOSTNAME" > {self.file("hostname")}']

    def read(self, files: JobFiles) -> list[JobMetric]:
        text = read_job_file(files, self.file("hostname"), limit=1024)
        if text is None or not text.strip():
            return []
        return [JobMetric(self.type, "hostname", bounded_text(text))]


_UNAME_ARGS = re.compile(r"-[a-zA-Z]+(?:\s+-[a-zA-Z]+)*")


class Uname(Plugin):
    """The operating system the job ran on: `uname -a` (setting `args`: other options)."""
    type = "uname"
    settings = ("args",)

    def __init__(self, conf: PluginConf):
        super().__init__(conf)
        self.args = str(conf.attributes.get("args", "-a")).strip()
        if not _UNAME_ARGS.fullmatch(self.args):
            conf.fail("expected uname's options, e.g. -a or -s -r -m", "args")

    def before(self) -> list[str]:
        return [f"uname {self.args} > {self.file('uname')} 2>/dev/null"]

    def read(self, files: JobFiles) -> list[JobMetric]:
        text = read_job_file(files, self.file("uname"), limit=4096)
        if text is None or not text.strip():
            return []
        return [JobMetric(self.type, "uname", bounded_text(text))]

    @classmethod
    def show(cls, name: str, value: float | str) -> tuple[str, str]:
        return "Operating System", _plain(value)


# -- cpuinfo, meminfo -----------------------------------------------------------------
class CpuInfo(Plugin):
    """How many processors the machine has (the `processor` entries of /proc/cpuinfo)."""
    type = "cpuinfo"
    settings = ("verbose",)  # accepted as Galaxy does; Galaxy stores nothing more with it
    titles = {"processor_count": "Processor Count"}

    def __init__(self, conf: PluginConf):
        super().__init__(conf)
        as_bool(conf, "verbose")

    def before(self) -> list[str]:
        return [f"grep -c '^processor' /proc/cpuinfo > {self.file('cpuinfo')} 2>/dev/null"]

    def read(self, files: JobFiles) -> list[JobMetric]:
        name = self.file("cpuinfo")
        text = read_job_file(files, name, limit=64)
        if text is None:
            return []
        count = parse_int(text)
        if count is None or not 1 <= count <= 10 ** 6:
            dropped(files, name, text, "a processor count")
            return []
        return [JobMetric(self.type, "processor_count", float(count))]


_MEMINFO_LINE = re.compile(r"([A-Za-z0-9_()]{1,64}) ([0-9]{1,19})")


class MemInfo(Plugin):
    """The machine's memory and swap (/proc/meminfo's MemTotal and SwapTotal, in kB;
    `verbose`: every entry), read by bash itself."""
    type = "meminfo"
    settings = ("verbose",)
    titles = {"memtotal": "Total System Memory", "swaptotal": "Total System Swap"}

    def __init__(self, conf: PluginConf):
        super().__init__(conf)
        self.verbose = as_bool(conf, "verbose")

    def before(self) -> list[str]:
        keep = "*" if self.verbose else "MemTotal:|SwapTotal:"
        return ["while read -r __mt_key __mt_kb __mt_unit; do case $__mt_key in "
                f'{keep}) echo "${{__mt_key%:}} $__mt_kb" ;; esac; done < /proc/meminfo '
                f"> {self.file('meminfo')} 2>/dev/null"]

    def read(self, files: JobFiles) -> list[JobMetric]:
        name = self.file("meminfo")
        text = read_job_file(files, name, limit=16384)
        found, garbage = [], Dropped(files, name)
        for line in (text or "").splitlines():
            match = _MEMINFO_LINE.fullmatch(line.strip())
            if match is None:
                garbage.add(line, "a meminfo entry")
                continue
            key = match.group(1).lower()
            if self.verbose or key in self.titles:
                found.append(JobMetric(self.type, key, float(match.group(2))))
        garbage.log()
        return found

    @classmethod
    def show(cls, name: str, value: float | str) -> tuple[str, str]:
        if isinstance(value, str):
            return cls.titles.get(name, name), value
        return cls.titles.get(name, name), nice_size(value * 1024)  # meminfo's kB are KiB


# -- env ------------------------------------------------------------------------------
class Env(Plugin):
    """The job's environment: the variables named by `variables` (bash prints them: no
    process), or all of it (`env`). Admins only, as in Galaxy: it may hold secrets."""
    type = "env"
    settings = ("variables",)
    safety = Safety.UNSAFE

    def __init__(self, conf: PluginConf):
        super().__init__(conf)
        self.variables = as_list(conf, "variables")
        for variable in self.variables or ():
            if not _SHELL_NAME.fullmatch(variable) or len(variable) > MAX_NAME:
                conf.fail(f"{variable!r} is not an environment variable name", "variables")

    def before(self) -> list[str]:
        if self.variables is None:
            return [f"env -0 > {self.file('vars')} 2>/dev/null"]
        names = " ".join(shlex.quote(v) for v in self.variables)
        return [f"for __mt_var in {names}; do "
                '[ -n "${!__mt_var+set}" ] && printf \'%s=%s\\0\' "$__mt_var" "${!__mt_var}"; '
                f"done > {self.file('vars')}"]

    def read(self, files: JobFiles) -> list[JobMetric]:
        name = self.file("vars")
        text = read_job_file(files, name, limit=256 * 1024, keep_nul=True)
        found, garbage = [], Dropped(files, name)
        for entry in (text or "").split("\x00"):
            if not entry:
                continue
            variable, equals, value = entry.partition("=")
            if not equals:
                garbage.add(entry, "NAME=value")
                continue
            if not _SHELL_NAME.fullmatch(variable) or len(variable) > MAX_NAME:
                continue  # e.g. bash's exported functions (BASH_FUNC_f%%): no variable
            if self.variables is None or variable in self.variables:
                found.append(JobMetric(self.type, variable, bounded_text(value)))
        garbage.log()
        return found

