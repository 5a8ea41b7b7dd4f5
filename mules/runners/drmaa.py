"""The drmaa runner: any DRM through its libdrmaa (drmaa-python), one session per process.

Plugin params: `drmaa_library_path` (else the DRMAA_LIBRARY_PATH environment variable).
Destination params: `nativeSpecification` (e.g. `-q all.q -l h_vmem=1G` for Grid Engine).
The process must start with GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 for
Grid Engine's libdrmaa (it loads libjemalloc); run.sh sets it when DRMAA_LIBRARY_PATH is set.

DRMAA 1.0 has no call that reports on many jobs, and asking jobStatus() for every job
every second is what overloads schedulers (Galaxy's DRMAA runner). So, per interval:
finished jobs of this session are collected with wait(JOB_IDS_SESSION_ANY, NO_WAIT)
(one call per finished job, and one that finds none); a job is running once its job
script has written its pid file (the script's first line), which is a file check, not
a DRM call. jobStatus() is asked only of jobs re-attached from an earlier session,
which wait() cannot see.

A job of this session is finished by wait()'s record of its end, not by its exit-code
file alone: that record is the only place Grid Engine says what the job used and whether
it killed it. Grid Engine enforces h_rt/s_rt by SIGKILL/SIGUSR1, and h_vmem/s_vmem as the
sum of the job's processes' address space, sampled every second (SIGKILL/SIGXCPU), and
per process by setrlimit, where an allocation over it fails and the tool ends with its own
error. So (judge_exit): killed by such a signal with the wallclock at the time limit is
walltime_reached; failed (killed, or a non-zero exit) with the sampled max vmem at 90% or
more of the memory limit is memory_limit_reached. A tool that fails one huge allocation
outright leaves no trace of it: its wrapper's <stdio> fatal_oom rule says so
(docs/schedulers.md).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import shlex
import tempfile
import threading
import time

from muleteer import staging
from muleteer.job_files import SCRIPT, private_directory
from muleteer.containers import CONTAINER_PARAMS
from muleteer.runner_spec import Param, RunnerSpec
from mules.job_account import JobAccountError
from mules.lifecycle import MEMORY, WALLTIME, Usage
from mules.runners.cluster import (ACTIVE, CLUSTER_PARAMS, FINISHED, NATIVE_SPECIFICATION,
                                   PENDING, SCHEDULER_ERR, ClusterRunner, SchedulerError,
                                   Status)

# Data only: the drmaa module (and the DRM's library) is imported when a handler first
# starts this runner (load_drmaa), never by importing this module.
SPEC = RunnerSpec(
    type="drmaa",
    plugin_params=(Param("drmaa_library_path", str, "", "the DRM's libdrmaa (default: the "
                         "DRMAA_LIBRARY_PATH environment variable)"), *CLUSTER_PARAMS),
    destination_params=(*CONTAINER_PARAMS, NATIVE_SPECIFICATION, *staging.STAGING_PARAMS),  # e.g. -q all.q
    url_form=("nativeSpecification",),  # drmaa://-q all.q/
    doc="any DRM through its libdrmaa (drmaa-python)")

_STATES = {"queued_active": PENDING, "system_on_hold": PENDING, "user_on_hold": PENDING,
           "user_system_on_hold": PENDING, "running": ACTIVE, "system_suspended": ACTIVE,
           "user_suspended": ACTIVE, "user_system_suspended": ACTIVE, "done": FINISHED,
           "failed": FINISHED}
_TLS_HINT = ("set GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 in the environment "
             "before the server starts (Grid Engine's libdrmaa needs it)")
# How long wait()'s records of jobs nobody asked for are kept (ended by a cancel).
_INFO_KEPT = 600.0
# wait()'s record comes ~1 s after the job's exit-code file (measured); a DRM that lost the
# job never sends it: past this, the exit-code file alone finishes the job.
_RECORD_WAIT = 30.0
# The sampled max vmem of a failed job at this share of its limit: the limit refused more.
_NEAR_LIMIT = 0.9
_TIME_SIGNALS = ("SIGKILL", "SIGUSR1")  # h_rt kills; s_rt warns with SIGUSR1 (then kills)
_MEMORY_SIGNALS = ("SIGKILL", "SIGXCPU")  # h_vmem kills; s_vmem warns with SIGXCPU


@dataclasses.dataclass(frozen=True)
class GridEngineLimits:
    """The limits a job asked Grid Engine for (`-l` in its native specification): memory in
    bytes per slot, times in seconds, and its slots (`-pe NAME N`; the least of a range)."""
    h_vmem: int | None = None
    s_vmem: int | None = None
    h_rt: float | None = None
    s_rt: float | None = None
    slots: int = 1


def parse_sge_memory(text: str) -> int:
    """A Grid Engine memory_specifier (sge_types(5)): K/M/G are powers of 1024, k/m/g of 1000."""
    text = text.strip()
    factors = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4,
               "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3, "t": 1000 ** 4}
    factor = factors.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in factors else text
    return int(float(number) * factor)


def parse_sge_time(text: str) -> float:
    """A Grid Engine time_specifier: seconds, or [[hours:]minutes:]seconds (empty = 0)."""
    seconds = 0.0
    for part in text.strip().split(":"):
        seconds = seconds * 60 + (float(part) if part else 0.0)
    return seconds


def requested_limits(native: str) -> GridEngineLimits:
    """The limits in a native specification; what cannot be read is left out (Grid
    Engine itself refused a malformed one at submission)."""
    values: dict = {}
    words = shlex.split(native or "")
    for i, word in enumerate(words):
        if word == "-pe" and i + 2 < len(words):
            low = words[i + 2].split("-")[0]
            if low.isdigit() and int(low) > 0:
                values["slots"] = int(low)
        if not word.startswith("-l") or words[i - 1:i] == ["-soft"]:
            continue
        requests = word[2:] or (words[i + 1] if i + 1 < len(words) else "")
        for request in requests.split(","):
            name, _, value = request.partition("=")
            try:
                if name in ("h_vmem", "s_vmem") and value:
                    values[name] = parse_sge_memory(value)
                elif name in ("h_rt", "s_rt") and value:
                    values[name] = parse_sge_time(value)
            except ValueError:
                continue
    return GridEngineLimits(**values)


def usage_of(resources) -> Usage | None:
    """What the job used, from wait()'s resource usage (values are text: '12345.0000')."""
    def number(name):
        try:
            return float(resources[name])
        except (KeyError, TypeError, ValueError):
            return None

    if not resources:
        return None
    rss = number("ru_maxrss")  # KiB, the shepherd's getrusage of the job
    cpu = number("cpu")
    if cpu is None and number("ru_utime") is not None:
        cpu = (number("ru_utime") or 0.0) + (number("ru_stime") or 0.0)
    return Usage(max_rss_bytes=int(rss * 1024) if rss else None, cpu_seconds=cpu)


def _size(size: float) -> str:
    return f"{size / 1024 ** 2:.0f}M"


def load_drmaa(library_path: str | None):
    if library_path:
        os.environ["DRMAA_LIBRARY_PATH"] = library_path
    if not os.environ.get("DRMAA_LIBRARY_PATH"):
        raise SchedulerError("no DRMAA library: set the drmaa plugin's drmaa_library_path "
                             "param or DRMAA_LIBRARY_PATH")
    try:
        import drmaa
    except OSError as exc:  # the library is there but cannot be loaded
        hint = _TLS_HINT if "static TLS" in str(exc) else "check DRMAA_LIBRARY_PATH"
        raise SchedulerError(f"cannot load {os.environ['DRMAA_LIBRARY_PATH']}: {exc}; {hint}") from None
    except RuntimeError as exc:
        raise SchedulerError(f"cannot load the DRMAA library: {exc}") from None
    return drmaa


def describe_exit(info) -> Status:
    """A JobInfo from wait() as a finished Status."""
    if info.wasAborted:
        return Status(FINISHED, "aborted before it ran (deleted or failed to start)", "cancelled")
    if info.hasSignal:
        return Status(FINISHED, f"killed by signal {info.terminatedSignal}")
    return Status(FINISHED, f"exit status {info.exitStatus}")


def judge_exit(info, limits: GridEngineLimits, exit_code: int | None = None) -> Status:
    """A JobInfo from wait() and the limits the job asked for: whether Grid Engine killed it
    for its walltime or its memory, and what it used. `exit_code`: the job script's."""
    seen = dataclasses.replace(describe_exit(info), usage=usage_of(info.resourceUsage))
    if seen.reason:
        return seen
    resources = info.resourceUsage or {}
    try:
        wallclock = float(resources.get("ru_wallclock", 0))
        maxvmem = float(resources.get("maxvmem", 0))
    except (TypeError, ValueError):
        return seen
    signal = info.terminatedSignal if info.hasSignal else ""
    # Wallclock is whole seconds between whole-second stamps: one second of slack.
    for name, limit in (("h_rt", limits.h_rt), ("s_rt", limits.s_rt)):
        if limit and signal in _TIME_SIGNALS and wallclock >= limit - 1:
            return dataclasses.replace(seen, reason=WALLTIME, detail=(
                f"{seen.detail} after {wallclock:g} s, {name} {limit:g} s"))
    failed = bool(signal) or exit_code not in (None, 0) or (
        info.hasExited and info.exitStatus not in (0, None))
    for name, limit in (("h_vmem", limits.h_vmem), ("s_vmem", limits.s_vmem)):
        if not limit or not failed:
            continue
        granted = limit * limits.slots
        if maxvmem >= _NEAR_LIMIT * granted and (not signal or signal in _MEMORY_SIGNALS):
            return dataclasses.replace(seen, reason=MEMORY, detail=(
                f"{seen.detail}; max vmem {_size(maxvmem)} of {name} {_size(granted)}"))
    return seen


class DrmaaRunner(ClusterRunner):
    name = "drmaa"

    def __init__(self, ctx, plugin, handler_name):
        self.drmaa = load_drmaa(SPEC.plugin_values(plugin.params)["drmaa_library_path"])
        self.session = self.drmaa.Session()
        self.session.initialize()
        self._drm_lock = threading.Lock()  # one session, used by several threads
        self._ours: dict[str, object] = {}  # submitted by this session (wait() can reap them) -> files
        self._reaped: dict[str, Status] = {}
        self._infos: dict[str, tuple] = {}  # external id -> (when, wait()'s JobInfo)
        self._exited: dict[str, float] = {}  # external id -> when its exit-code file was seen
        self._killed: set[str] = set()  # deleted by us, still to be reaped by wait()
        super().__init__(ctx, plugin, handler_name)

    def _call(self, fn, *args):
        errors = self.drmaa.errors
        try:
            with self._drm_lock:
                return fn(*args)
        except (errors.DrmCommunicationException, errors.TryLaterException) as exc:
            raise SchedulerError(str(exc).strip(), transient=True) from None
        except errors.DrmaaException as exc:
            raise SchedulerError(str(exc).strip()) from None

    def submit_script(self, job, files, destination):
        values = {
            "remoteCommand": "/bin/bash",
            "args": [files.path(SCRIPT)],
            "jobName": f"muleteer-{job.id}",
            "workingDirectory": files.directory,
            # DRMAA paths start with ':' (an empty host name).
            "outputPath": ":" + files.path("scheduler.out"),
            "errorPath": ":" + files.path(SCHEDULER_ERR),
            # A DRMAA job does not inherit the environment: give it the handler's PATH.
            "jobEnvironment": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        }
        staged = staging.settings(destination)
        if staged is not None:
            # remoteCommand is a path on the node: the wrapper travels in the arguments
            # (base64: no quoting or newline for the DRM to mangle).
            wrapper = files.open_regular(staging.STAGED_SCRIPT)
            if wrapper is None:
                raise SchedulerError(f"{files.path(staging.STAGED_SCRIPT)}: missing")
            with wrapper:
                encoded = base64.b64encode(wrapper.read(1 << 20)).decode()
            values.update(args=["-c", f'exec /bin/bash -c "$(printf %s {encoded} | base64 -d)" '
                                      f"muleteer-staged-{job.id}"],
                          workingDirectory=staged.staging_directory,
                          outputPath=":/dev/null", errorPath=":/dev/null")
        native = destination.params.get("nativeSpecification", "")
        if native:
            values["nativeSpecification"] = " ".join(shlex.split(native))
        user = self.job_user(job, files)
        if user is not None:
            if staged is None:
                # The script itself (executable, its #! line): the runjob script accepts
                # only a command inside the job's directory.
                values["remoteCommand"] = values.pop("args")[0]
            return self._submit_as(user, values, staged=staged is not None)
        template = self.session.createJobTemplate()
        try:
            for key, value in values.items():
                setattr(template, key, value)
            external_id = self._call(self.session.runJob, template)
        finally:
            self.session.deleteJobTemplate(template)
        self._ours[external_id] = files
        return external_id

    def _submit_as(self, user: str, values: dict, staged: bool) -> str:
        """Through Galaxy's drmaa_external_runjob_script, which becomes the user: its own
        DRMAA session, so this one's wait() never sees the job (jobStatus() does)."""
        directory = self.ctx.config.new_file_path or None
        if directory:
            private_directory(directory)
        fd, path = tempfile.mkstemp(prefix="drmaa-template-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(values, fh)
            external_id = self.accounts.drmaa_submit(user, path, staged)
        except JobAccountError as exc:
            raise SchedulerError(str(exc)) from None
        finally:
            os.unlink(path)
        if not external_id:
            raise SchedulerError("drmaa_external_runjob_script printed no job id")
        return external_id

    def statuses(self, external_ids):
        found = {}
        self._reap_finished()
        for external_id in external_ids:
            if external_id in self._reaped:
                found[external_id] = self._reaped.pop(external_id)
            elif external_id in self._ours:
                files = self._ours[external_id]
                if self._record_overdue(external_id, files):
                    found[external_id] = Status(FINISHED, "exit code written; no record of "
                                                "its end from the DRM")
                    continue
                started = files.pid() is not None
                found[external_id] = Status(ACTIVE if started else PENDING,
                                            "running" if started else "queued")
            else:
                status = self._job_status(external_id)
                if status is not None:
                    found[external_id] = status
        self._reaped.clear()  # ends of jobs no longer watched (finished by their exit-code file)
        return found

    def _reap_finished(self):
        """Collect every finished job of this session: one wait() call each, no waiting."""
        errors, session = self.drmaa.errors, self.drmaa.Session
        for _ in range(len(self._ours) + len(self._killed) + 1):  # each call reaps one job
            self.status_calls += 1
            try:
                with self._drm_lock:
                    info = self.session.wait(session.JOB_IDS_SESSION_ANY, session.TIMEOUT_NO_WAIT)
            except (errors.ExitTimeoutException, errors.InvalidJobException):
                return
            except errors.DrmaaException as exc:
                raise SchedulerError(str(exc).strip(), transient=True) from None
            except Exception as exc:
                # drmaa-python raises a bare Exception for DRMAA_ERRNO_NO_RUSAGE (code 24):
                # a job that ended without usage (deleted). That call reaped it; go on.
                if "code 24" not in str(exc):
                    raise SchedulerError(str(exc).strip(), transient=True) from None
                self._killed.clear()
                continue
            self._killed.discard(info.jobId)
            self._ours.pop(info.jobId, None)
            self._exited.pop(info.jobId, None)
            self._reaped[info.jobId] = describe_exit(info)
            now = time.monotonic()
            self._infos[info.jobId] = (now, info)  # for settle(), when the job is finished
            for stale in [k for k, (when, _) in self._infos.items() if now - when > _INFO_KEPT]:
                del self._infos[stale]

    def _record_overdue(self, external_id, files) -> bool:
        """The job wrote its exit code long ago and wait() still has no record of its end."""
        if files.exit_code() is None:
            return False
        first = self._exited.setdefault(external_id, time.monotonic())
        if time.monotonic() - first < _RECORD_WAIT:
            return False
        self._ours.pop(external_id, None)
        self._exited.pop(external_id, None)
        return True

    def _job_status(self, external_id) -> Status | None:
        self.status_calls += 1
        try:
            with self._drm_lock:
                state = self.session.jobStatus(external_id)
        except self.drmaa.errors.InvalidJobException:
            return None  # gone: finished and reaped, or unknown
        except self.drmaa.errors.DrmaaException as exc:
            raise SchedulerError(str(exc).strip(), transient=True) from None
        return Status(_STATES.get(state, PENDING), state)

    def ends_by_exit_code(self, job):
        # This session's jobs end by wait()'s record: their usage and limits are in it.
        return job.external_id not in self._ours

    def settle(self, job, files, status, exit_code):
        """wait()'s record of the job (this session's jobs only), judged against the limits
        its destination asked for."""
        entry = self._infos.pop(job.external_id, None) if job.external_id else None
        if entry is None:
            return status
        try:
            native = self.ctx.job_conf.destination_of(job).params.get("nativeSpecification", "")
        except KeyError:
            native = ""
        judged = judge_exit(entry[1], requested_limits(native), exit_code)
        if status.reason:
            return dataclasses.replace(status, usage=judged.usage)
        return judged

    def kill(self, external_id, job=None):
        user = self.job_user(job, self.files(job)) if job is not None else None
        if user is not None:
            try:
                self.accounts.drmaa_kill(user, external_id)
            except JobAccountError as exc:
                raise SchedulerError(str(exc)) from None
            return
        self._exited.pop(external_id, None)
        if self._ours.pop(external_id, None) is not None:
            self._killed.add(external_id)
        try:
            with self._drm_lock:
                self.session.control(external_id, self.drmaa.JobControlAction.TERMINATE)
        except self.drmaa.errors.InvalidJobException:
            pass  # already finished
        except self.drmaa.errors.DrmaaException as exc:
            raise SchedulerError(str(exc).strip()) from None

    def shutdown(self):
        super().shutdown()
        try:
            self.session.exit()
        except Exception:
            pass
