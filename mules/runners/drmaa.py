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
"""
from __future__ import annotations

import base64
import json
import os
import shlex
import tempfile
import threading

from muleteer import staging
from muleteer.job_files import SCRIPT, private_directory
from muleteer.containers import CONTAINER_PARAMS
from muleteer.runner_spec import Param, RunnerSpec
from mules.job_account import JobAccountError
from mules.runners.cluster import (ACTIVE, CLUSTER_PARAMS, FINISHED, NATIVE_SPECIFICATION,
                                   PENDING, ClusterRunner, SchedulerError, Status)

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


class DrmaaRunner(ClusterRunner):
    name = "drmaa"

    def __init__(self, ctx, plugin, handler_name):
        self.drmaa = load_drmaa(SPEC.plugin_values(plugin.params)["drmaa_library_path"])
        self.session = self.drmaa.Session()
        self.session.initialize()
        self._drm_lock = threading.Lock()  # one session, used by several threads
        self._ours: dict[str, object] = {}  # submitted by this session (wait() can reap them) -> files
        self._reaped: dict[str, Status] = {}
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
            "errorPath": ":" + files.path("scheduler.err"),
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
                started = self._ours[external_id].pid() is not None
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
            self._reaped[info.jobId] = describe_exit(info)

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

    def kill(self, external_id, job=None):
        user = self.job_user(job, self.files(job)) if job is not None else None
        if user is not None:
            try:
                self.accounts.drmaa_kill(user, external_id)
            except JobAccountError as exc:
                raise SchedulerError(str(exc)) from None
            return
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
