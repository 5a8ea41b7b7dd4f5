"""The local runner's per-job limits: what a destination asks for, and the per-job memory
cgroup (cgroup v1) that holds a job to its memory.

Galaxy's local runner has `local_slots` only; the memory and walltime params are ours,
named after it: `local_memory_limit` (a size like sbatch's --mem: a number of MB, or with a
K/M/G/T suffix) and `local_walltime` (HH:MM:SS, MM:SS or seconds, as <limit
type="walltime">).

Memory is the kernel's to enforce, as Slurm's task/cgroup does: each job gets a memory
cgroup of its own with the limit set, the job script moves itself into it before it
enters its directory, and a job over its limit is killed by the kernel's OOM killer in
that cgroup only. After the job ends, the cgroup's own counters say whether that
happened (memory.oom_control's oom_kill), and the cgroup is removed. Job cgroups live
under `muleteer/` at the root of the memory hierarchy (where Slurm puts `slurm_<node>`),
or, for a server that is not root, under the server's own memory cgroup when it has been
delegated to it (writable); otherwise a destination with local_memory_limit is refused at
job setup, saying so: a limit the server cannot enforce is not quietly replaced by
another kind (`ulimit -v` counts address space, not memory, and fails allocations
instead of killing the job).
"""
from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import signal
import time
from dataclasses import dataclass
from typing import Mapping

from muleteer.job_config import parse_walltime

MEMORY_LIMIT = "local_memory_limit"
WALLTIME = "local_walltime"
SLOTS = "local_slots"

_MEMORY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([KMGT])B?)?\s*$", re.IGNORECASE)
_UNITS = {"K": 1, "M": 1024, "G": 1024 ** 2, "T": 1024 ** 3}  # in KiB: Slurm's sizes
# Below this a job cannot even start its shell; a limit under it is a typo (100 for 100G).
_SMALLEST = 4 * 1024 * 1024
_CGROUP_ROOT = "muleteer"
# The memory hierarchy's mount point when /proc/self/mountinfo does not say.
_DEFAULT_MOUNT = "/sys/fs/cgroup/memory"


class CgroupUnavailable(Exception):
    """This server cannot give jobs a memory cgroup: the message says why and what to do."""


def parse_memory(text) -> int:
    """Bytes, from a size like sbatch's --mem: `500` (MB), `500M`, `2G`, `1.5G`, `64K`, `1T`."""
    match = _MEMORY.match(str(text))
    if not match:
        raise ValueError(f"{text!r}: expected a size such as 512 (MB), 512M or 2G")
    kib = float(match.group(1)) * _UNITS[(match.group(2) or "M").upper()]
    size = int(kib * 1024)
    if size < _SMALLEST:
        raise ValueError(f"{text!r}: {size} bytes is too little for a job (at least 4M)")
    return size


def parse_local_walltime(text) -> int:
    """Seconds, from HH:MM:SS, MM:SS or a number of seconds (at least 1)."""
    seconds = parse_walltime(str(text))
    if seconds < 1:
        raise ValueError(f"{text!r}: a walltime is at least 1 second")
    return seconds


def describe_memory(size: int) -> str:
    for unit, factor in (("G", 1024 ** 3), ("M", 1024 ** 2), ("K", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"


def describe_duration(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True)
class LocalLimits:
    """A local destination's limits, typed (the params were checked when the job
    configuration loaded)."""
    slots: int = 1
    memory_bytes: int | None = None
    walltime_seconds: int | None = None

    @classmethod
    def of(cls, params: Mapping) -> "LocalLimits":
        memory, walltime = params.get(MEMORY_LIMIT), params.get(WALLTIME)
        return cls(slots=int(params.get(SLOTS) or 1),
                   memory_bytes=parse_memory(memory) if memory not in (None, "") else None,
                   walltime_seconds=(parse_local_walltime(walltime)
                                     if walltime not in (None, "") else None))


@dataclass(frozen=True)
class MemoryVerdict:
    """What a job's memory cgroup saw: the kernel's OOM kills in it, and the peak of memory
    it charged to the job."""
    limit_bytes: int | None
    oom_kills: int
    peak_bytes: int | None

    @property
    def limit_reached(self) -> bool:
        # Reaching the limit alone is no kill (page cache is reclaimed there, a job writing
        # files touches it): only the OOM killer's own count says the job was killed.
        return self.oom_kills > 0


@functools.lru_cache(maxsize=1)  # asked as every job ends; the mounts do not move under us
def hierarchy_mount() -> str:
    """Where the cgroup v1 memory controller is mounted ('' without one: cgroup v2 only)."""
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                if " - cgroup " in line and "memory" in fields[-1].split(","):
                    return fields[4]
    except OSError:
        pass
    return _DEFAULT_MOUNT if os.path.isfile(os.path.join(_DEFAULT_MOUNT, "cgroup.procs")) else ""


@functools.lru_cache(maxsize=1)
def own_cgroup() -> str:
    """This process's memory cgroup, relative to the hierarchy's root ('/' at the root)."""
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if "memory" in controllers.split(","):
                    return path
    except (OSError, ValueError):
        pass
    return "/"


def _candidate_parents() -> list[str]:
    """Where job cgroups may live, in order: the hierarchy's root, then the server's own
    memory cgroup (when it is not the root, e.g. one delegated to a server that is not root)."""
    mount = hierarchy_mount()
    if not mount:
        return []
    candidates = [os.path.join(mount, _CGROUP_ROOT)]
    own = own_cgroup().strip("/")
    if own:
        candidates.append(os.path.join(mount, own, _CGROUP_ROOT))
    return candidates


def cgroup_parent() -> str:
    """The directory this server's job cgroups go in (made if missing); CgroupUnavailable
    if there is none it may write."""
    candidates = _candidate_parents()
    if not candidates:
        raise CgroupUnavailable(
            "this machine has no cgroup v1 memory controller (/sys/fs/cgroup/memory; a "
            "cgroup v2-only system is not supported): local_memory_limit cannot be enforced")
    for candidate in candidates:
        try:
            os.makedirs(candidate, mode=0o711, exist_ok=True)
            info = os.lstat(candidate)
            # Traversable (not listable) by jobs as their real users, whatever the umask.
            if info.st_uid == os.geteuid() and info.st_mode & 0o777 != 0o711:
                os.chmod(candidate, 0o711)
        except OSError:
            continue
        if os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    raise CgroupUnavailable(
        f"the server (uid {os.geteuid()}) cannot create memory cgroups under "
        f"{' or '.join(os.path.dirname(c) for c in candidates)}: run it as root, or delegate "
        "its own memory cgroup to its account (writable by it); local_memory_limit cannot be "
        "enforced otherwise")


def server_key(job_working_directory: str) -> str:
    """A short name for this server's jobs, stable across its restarts (recovery finds them):
    servers on one machine have overlapping job ids."""
    real = os.path.realpath(job_working_directory)
    return hashlib.sha256(real.encode()).hexdigest()[:12]


def job_cgroup(parent: str, key: str, job_id: int, lease: int) -> "MemoryCgroup":
    """The cgroup of one start of a job: named by its lease too, so a handler that lost the
    job never touches the cgroup of the handler that holds it now."""
    return MemoryCgroup(os.path.join(parent, f"{key}-{int(job_id)}-{int(lease)}"))


def job_cgroups(key: str, job_id: int) -> list["MemoryCgroup"]:
    """Every cgroup of the job that exists (any lease), found without creating anything."""
    prefix = f"{key}-{int(job_id)}-"
    found = []
    for parent in _candidate_parents():
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        found += [MemoryCgroup(os.path.join(parent, name)) for name in sorted(names)
                  if name.startswith(prefix) and name[len(prefix):].isdigit()]
    return found


class MemoryCgroup:
    """One job's memory cgroup: made with the job's limit, joined by its job script, read
    and removed after the job ended."""

    def __init__(self, path: str):
        self.path = path

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def create(self, limit_bytes: int, owner_uid: int | None = None) -> None:
        """A fresh cgroup with the limit (an earlier attempt's is removed first: its counters
        would speak for it). `owner_uid`: the account the job runs as, allowed to move its
        own script in (cgroup v1 checks write access to cgroup.procs)."""
        self.remove()
        os.mkdir(self.path, 0o700)
        try:
            if owner_uid is not None:
                os.chmod(self.path, 0o711)  # the job's account reaches its cgroup.procs
            self._write("memory.limit_in_bytes", limit_bytes)
            # With swap accounting, memory+swap gets the same limit: swapping out is no way
            # past it. (No such file: the kernel does not account swap, nothing to close.)
            if os.path.exists(os.path.join(self.path, "memory.memsw.limit_in_bytes")):
                self._write("memory.memsw.limit_in_bytes", limit_bytes)
            if owner_uid is not None:
                os.chown(os.path.join(self.path, "cgroup.procs"), owner_uid, -1)
        except BaseException:
            self.remove()
            raise

    def script_lines(self) -> list[str]:
        """The job script's move into the cgroup (everything it starts stays in it), and
        MULETEER_JOB_CGROUP=1 for the metrics helper, which reads the cgroup's peak then."""
        procs = os.path.join(self.path, "cgroup.procs")
        quoted = "'" + procs.replace("'", "'\\''") + "'"
        return [f"echo $$ > {quoted} || {{ echo \"muleteer: cannot join the job's memory "
                f"cgroup ({procs}): not started\" >&2; exit 1; }}",
                "export MULETEER_JOB_CGROUP=1"]

    def verdict(self) -> MemoryVerdict | None:
        """What the cgroup saw, or None if it is gone."""
        oom = self._read("memory.oom_control")
        if oom is None:
            return None
        fields = dict(line.split() for line in oom.splitlines() if len(line.split()) == 2)
        return MemoryVerdict(limit_bytes=_number(self._read("memory.limit_in_bytes")),
                             oom_kills=_number(fields.get("oom_kill")) or 0,
                             peak_bytes=_number(self._read("memory.max_usage_in_bytes")))

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what the job left running in the cgroup, then remove it (the kernel refuses
        while a process is in it)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self._pids()
            if pids is None:
                return  # gone
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    # -- internals ------------------------------------------------------------------
    def _pids(self) -> list[int] | None:
        text = self._read("cgroup.procs")
        if text is None:
            return None if not self.exists() else []
        return [int(p) for p in text.split() if p.isdigit()]

    def _read(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.path, name)) as fh:
                return fh.read()
        except OSError:
            return None

    def _write(self, name: str, value) -> None:
        with open(os.path.join(self.path, name), "w") as fh:
            fh.write(str(value))


def _number(text) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None
