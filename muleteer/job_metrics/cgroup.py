"""Peak memory and CPU time of a job: Galaxy's `cgroup` plugin, and what stands in for it
when the job has no cgroup of its own.

The job script reads its cgroup's counters after the tool's command (bash builtins only:
no process), v1 (memory.max_usage_in_bytes, cpuacct.usage) or v2 (memory.peak, cpu.stat),
into `__instrument_cgroup__metrics`, in the format Galaxy's plugin writes (`__name__`
then the file's lines), and bash's `times` after them (`__times__`): one file.

Only a cgroup of the job's own counts: its path names the Slurm job
(`.../job_$SLURM_JOB_ID/...`, read at the job's level, so every step counts), or the
runner put the job in one and said so (MULETEER_JOB_CGROUP=1, for the cgroup holding the
memory controller). A shared cgroup (a machine's, a login session's, the server's own)
would report everything else running beside the job, so it is never read.

Without one, the runner's own view stands in (Outcome.usage: the local runner's wait4,
a DRM's accounting), stored under the cgroup plugin as `memory.peak` (bytes; for wait4,
the largest single process's peak) and `cpu_seconds`; and for CPU time, bash's `times`
(the tool's processes the script waited for). A job has at most one peak-memory metric:
PEAK_MEMORY_NAMES are the names that mean it.
"""
from __future__ import annotations

import logging
import re
import shlex

from muleteer.job_files import JobFiles
from muleteer.job_metrics.conf import PluginConf
from muleteer.job_metrics.plugins import (Dropped, Plugin, as_bool, as_list, dropped,
                                          read_job_file)
from muleteer.job_metrics.values import (JobMetric, Safety, nice_size, parse_decimal,
                                         parse_int, seconds_to_str)

log = logging.getLogger(__name__)

PLUGIN = "cgroup"
# Every metric_name that means "the job's peak memory, in bytes" (the admin's charts
# select by these): cgroup v1's, and v2's (also the name of the runner's figure).
PEAK_MEMORY_NAMES = ("memory.peak", "memory.max_usage_in_bytes")
# metric_name -> what to divide by for seconds: the job's CPU time, however it was measured.
CPU_TIME_NAMES = {"cpuacct.usage": 1e9, "cpu.stat.usage_usec": 1e6, "cpu_seconds": 1.0}
RUNNER_CPU = "cpu_seconds"

# The cgroup files the script reads: v1 memory, v1 cpuacct, v2.
_V1_MEMORY = ("memory.max_usage_in_bytes", "memory.memsw.max_usage_in_bytes",
              "memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
              "memory.soft_limit_in_bytes", "memory.failcnt", "memory.oom_control")
_V1_CPU = ("cpuacct.usage",)
_V2 = ("memory.peak", "memory.max", "memory.events", "cpu.stat")
_FILES = _V1_MEMORY + _V1_CPU + _V2
# Galaxy's default params: what is kept unless `params` or `verbose` says otherwise.
DEFAULT_PARAMS = (
    "memory.memsw.max_usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.failcnt",
    "memory.oom_control.oom_kill_disable", "memory.oom_control.under_oom", "cpuacct.usage",
    "memory.events.oom_kill", "memory.peak", "cpu.stat.system_usec", "cpu.stat.usage_usec",
    "cpu.stat.user_usec")
_SUBKEY = re.compile(r"[a-z0-9_]{1,64}")

TITLES = {
    "memory.memsw.max_usage_in_bytes": "Max memory usage (MEM+SWP)",
    "memory.max_usage_in_bytes": "Max memory usage (MEM)",
    "memory.limit_in_bytes": "Memory limit on cgroup (MEM)",
    "memory.memsw.limit_in_bytes": "Memory limit on cgroup (MEM+SWP)",
    "memory.soft_limit_in_bytes": "Memory softlimit on cgroup",
    "memory.failcnt": "Failed to allocate memory count",
    "memory.oom_control.oom_kill_disable": "OOM Control enabled",
    "memory.oom_control.under_oom": "Was OOM Killer active?",
    "cpuacct.usage": "CPU Time",
    "memory.events.oom_kill": "Number of processes belonging to this cgroup killed by any "
                              "kind of OOM killer",
    "memory.max": "Memory usage hard limit",
    "memory.peak": "Max memory usage recorded",
    "cpu.stat.system_usec": "CPU system time",
    "cpu.stat.usage_usec": "CPU usage time",
    "cpu.stat.user_usec": "CPU user time",
    RUNNER_CPU: "CPU Time",
}

_SCRIPT = r'''__mt_cgroup_file() {
    local line
    [ -f "$1/$2" ] && [ -r "$1/$2" ] || return 0
    echo "__$2__"
    while IFS= read -r line || [ -n "$line" ]; do echo "$line"; done < "$1/$2"
}
__mt_job_cgroup() {
    __mt_p="$1/"
    if [ -n "$SLURM_JOB_ID" ]; then
        case "$__mt_p" in
            */job_"$SLURM_JOB_ID"/*)
                __mt_p="${__mt_p%%/job_"$SLURM_JOB_ID"/*}/job_$SLURM_JOB_ID"; return 0 ;;
        esac
    fi
    __mt_p=$1
    [ "$2" = 1 ] && [ "$MULETEER_JOB_CGROUP" = 1 ] && [ -n "$1" ] && [ "$1" != / ]
}
__mt_cgroup_metrics() {
    local mount=$1 version=$2 id controllers path memory= cpu= unified= dir f vouch
    [ -r /proc/$$/cgroup ] || return 0
    while IFS=: read -r id controllers path; do
        case ",$controllers," in *,memory,*) memory=$path ;; esac
        case ",$controllers," in *,cpuacct,*) cpu=$path ;; esac
        [ "$id" = 0 ] && [ -z "$controllers" ] && unified=$path
    done < /proc/$$/cgroup
    if [ "$version" != 2 ] && [ -n "$memory" ] && __mt_job_cgroup "$memory" 1; then
        for f in V1_MEMORY; do __mt_cgroup_file "$mount/memory$__mt_p" "$f"; done
    fi
    vouch=0; [ -n "$memory" ] && [ "$cpu" = "$memory" ] && vouch=1
    if [ "$version" != 2 ] && [ -n "$cpu" ] && __mt_job_cgroup "$cpu" $vouch; then
        for dir in "$mount/cpuacct" "$mount/cpu,cpuacct" "$mount/cpuacct,cpu"; do
            if [ -f "$dir$__mt_p/cpuacct.usage" ]; then
                __mt_cgroup_file "$dir$__mt_p" cpuacct.usage; break
            fi
        done
    fi
    vouch=0; [ -z "$memory" ] && vouch=1
    if [ "$version" != 1 ] && [ -n "$unified" ] && __mt_job_cgroup "$unified" $vouch; then
        for dir in "$mount" "$mount/unified"; do [ -f "$dir/cgroup.controllers" ] && break; done
        for f in V2; do __mt_cgroup_file "$dir$__mt_p" "$f"; done
    fi
}'''.replace("V1_MEMORY", " ".join(_V1_MEMORY)).replace("V2", " ".join(_V2))

_TIMES_KEY = "__times__"
_TIMES = re.compile(r"([0-9]{1,9})m([0-9]{1,9}(?:[.,][0-9]{1,9})?)s")


class Cgroup(Plugin):
    """Galaxy's cgroup plugin. Settings: `params` (the names to keep; default Galaxy's
    list), `verbose` (keep every value read), `cgroup_mount` (/sys/fs/cgroup), `version`
    (auto, 1 or 2). Safe for the job's owner to see: it is their job's own use."""
    type = PLUGIN
    settings = ("params", "verbose", "cgroup_mount", "version")
    safety = Safety.SAFE
    titles = TITLES

    def __init__(self, conf: PluginConf):
        super().__init__(conf)
        self.verbose = as_bool(conf, "verbose")
        self.params = as_list(conf, "params")
        for param in self.params or ():
            if not _known_name(param):
                conf.fail(f"{param!r} is not a value this plugin reads (e.g. "
                          f"{', '.join(DEFAULT_PARAMS[:3])}, or a file of {', '.join(_FILES)} "
                          f"with its entry)", "params")
        self.mount = str(conf.attributes.get("cgroup_mount", "/sys/fs/cgroup"))
        if not self.mount.startswith("/") or "\n" in self.mount:
            conf.fail("expected an absolute path", "cgroup_mount")
        self.version = str(conf.attributes.get("version", "auto"))
        if self.version not in ("auto", "1", "2"):
            conf.fail("expected auto, 1 or 2", "version")

    def after(self) -> list[str]:
        return [_SCRIPT,
                f"{{ __mt_cgroup_metrics {shlex.quote(self.mount.rstrip('/') or '/')} "
                f"{self.version}; echo {_TIMES_KEY}; times; }} > {self.file('_metrics')} "
                "2>/dev/null"]

    def read(self, files: JobFiles) -> list[JobMetric]:
        name = self.file("_metrics")
        wanted = None if self.verbose else set(self.params or DEFAULT_PARAMS)
        sections = _sections(read_job_file(files, name, limit=16384) or "")
        found, garbage = [], Dropped(files, name)
        for key, text in _entries(sections):
            if not _known_name(key):
                garbage.add(key, "a cgroup value's name")
                continue
            if wanted is not None and key not in wanted:
                continue
            value = parse_int(text)
            if value is None:
                if text.strip() != "max":  # memory.max: no limit
                    garbage.add(text, f"a number ({key})")
                continue
            found.append(JobMetric(self.type, key, float(value)))
        garbage.log()
        cpu = _children_cpu(files, name, sections.pop(_TIMES_KEY[2:-2], None))
        if cpu is not None:
            found.append(JobMetric(self.type, RUNNER_CPU, cpu))
        return found

    @classmethod
    def show(cls, name: str, value: float | str) -> tuple[str, str]:
        title = cls.titles.get(name, name)
        if isinstance(value, str):
            return title, value
        if name == "memory.oom_control.oom_kill_disable":
            return title, "No" if value == 1 else "Yes"
        if name == "memory.oom_control.under_oom":
            return title, "Yes" if value == 1 else "No"
        if name in CPU_TIME_NAMES or name in ("cpu.stat.user_usec", "cpu.stat.system_usec"):
            return title, seconds_to_str(value / CPU_TIME_NAMES.get(name, 1e6))
        if name.endswith("_bytes") or name in ("memory.peak", "memory.max"):
            return title, nice_size(value)
        return title, str(int(value)) if float(value).is_integer() else f"{value:g}"


def with_usage(found: list[JobMetric], max_rss_bytes: int | None,
               cpu_seconds: float | None) -> list[JobMetric]:
    """`found` (every plugin's metrics) with the runner's usage where the job's cgroup gave
    none: one peak memory at most (the cgroup's, else the runner's), and one CPU time (the
    cgroup's, else the runner's, else bash's `times`)."""
    names = {m.name for m in found if m.plugin == PLUGIN}
    result = list(found)
    if "memory.max_usage_in_bytes" in names and "memory.peak" in names:
        # Both hierarchies gave a figure: keep v1's, whose memory controller it is.
        result = [m for m in result if not (m.plugin == PLUGIN and m.name == "memory.peak")]
    elif not names & set(PEAK_MEMORY_NAMES) and max_rss_bytes is not None and max_rss_bytes > 0:
        result.append(JobMetric(PLUGIN, "memory.peak", float(max_rss_bytes)))
    measured = names & {"cpuacct.usage", "cpu.stat.usage_usec"}
    if measured or (cpu_seconds is not None and cpu_seconds >= 0):
        result = [m for m in result if not (m.plugin == PLUGIN and m.name == RUNNER_CPU)]
        if not measured:
            result.append(JobMetric(PLUGIN, RUNNER_CPU, round(float(cpu_seconds), 6)))
    return result


def _known_name(name: str) -> bool:
    """A cgroup file the script reads, or one of its entries (`cpu.stat.usage_usec`)."""
    if name in _FILES:
        return True
    base, _, subkey = name.rpartition(".")
    return base in ("memory.oom_control", "memory.events", "cpu.stat") and bool(
        _SUBKEY.fullmatch(subkey))


def _sections(text: str) -> dict[str, list[str]]:
    """Galaxy's format: `__file__`, then that file's lines."""
    sections: dict[str, list[str]] = {}
    lines = None
    for line in text.splitlines():
        line = line.strip()
        if len(line) > 4 and line.startswith("__") and line.endswith("__"):
            lines = sections.setdefault(line[2:-2], [])
        elif lines is not None and line:
            lines.append(line)
    return sections


def _entries(sections: dict[str, list[str]]):
    """(name, value text): each line a value, or `entry value` (cpu.stat, memory.events)."""
    for key, lines in sections.items():
        if key == _TIMES_KEY[2:-2]:
            continue
        for line in lines:
            entry, space, value = line.partition(" ")
            yield (f"{key}.{entry}", value) if space else (key, line)


def _children_cpu(files: JobFiles, name: str, lines: list[str] | None) -> float | None:
    """User + system seconds of the processes the job script waited for: the second line
    of bash's `times` (`0m1.250s 0m0.031s`)."""
    if lines is None:
        return None
    found = _TIMES.findall(lines[1]) if len(lines) > 1 else []
    if len(found) != 2:
        dropped(files, name, "\n".join(lines), "the output of bash's times")
        return None
    total = 0.0
    for minutes, seconds in found:
        total += int(minutes) * 60 + (parse_decimal(seconds) or 0.0)
    return round(total, 6)
