"""The slurm runner: sbatch to submit, one squeue per interval for all jobs, scancel.

Destination params: `nativeSpecification` (sbatch options, e.g. `-p debug -c 2 --mem=512`).
Plugin params: `bin_dir` (where sbatch/squeue/scancel are; default: PATH), and the
cluster-runner params (submit_retries, submit_retry_delay). The scheduler's state is a
cross-check: the exit code comes from the job script's exit-code file.

Limits: a job past its time limit ends TIMEOUT, killed whole, with no exit code. A job over
its --mem under task/cgroup loses its biggest process to the cgroup's OOM killer while the
job script lives on and writes that process's death (137) as its exit code; squeue then
says OUT_OF_MEMORY. So a job that failed is asked about once more (settle) before its end
is recorded, and slurmstepd's own line in scheduler.err is the fallback once squeue has
forgotten it (docs/schedulers.md).
"""
from __future__ import annotations

import shlex

from muleteer import staging
from muleteer.job_files import SCRIPT
from muleteer.containers import CONTAINER_PARAMS
from muleteer.runner_spec import RunnerSpec
from mules.runners import cli
from mules.runners.cluster import (ACTIVE, CLUSTER_PARAMS, FINISHED, NATIVE_SPECIFICATION,
                                   PENDING, SCHEDULER_ERR, ClusterRunner, SchedulerError,
                                   Status)

SPEC = RunnerSpec(
    type="slurm",
    plugin_params=(cli.BIN_DIR, *CLUSTER_PARAMS),
    destination_params=(*CONTAINER_PARAMS, NATIVE_SPECIFICATION, *staging.STAGING_PARAMS),  # sbatch options
    url_form=("nativeSpecification",),  # slurm://-p debug -c 2/
    doc="Slurm's sbatch, squeue, scancel")

_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
            "SUSPENDED", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
_ACTIVE = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
_REASONS = {"TIMEOUT": "walltime_reached", "DEADLINE": "walltime_reached",
            "OUT_OF_MEMORY": "memory_limit_reached", "CANCELLED": "cancelled"}
SQUEUE_FORMAT = "%i|%T|%r"


def parse_squeue(text: str) -> dict[str, Status]:
    """`squeue -h -t all -o '%i|%T|%r'` output as {job id: Status}."""
    found = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        job_id, state = parts[0], parts[1].upper()
        reason = parts[2] if len(parts) > 2 else ""
        detail = state if reason in ("", "None") else f"{state} ({reason})"
        if state in _PENDING:
            found[job_id] = Status(PENDING, detail)
        elif state in _ACTIVE:
            found[job_id] = Status(ACTIVE, detail)
        else:  # COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...
            found[job_id] = Status(FINISHED, detail, _REASONS.get(state))
    return found


def parse_sbatch(text: str) -> str:
    """`sbatch --parsable` prints `id` or `id;cluster`."""
    job_id = text.strip().split(";")[0]
    if not job_id.isdigit():
        raise SchedulerError(f"sbatch printed {text.strip()!r}, not a job id")
    return job_id


class SlurmRunner(ClusterRunner):
    name = "slurm"

    def __init__(self, ctx, plugin, handler_name):
        self.bin_dir = SPEC.plugin_values(plugin.params)["bin_dir"]
        super().__init__(ctx, plugin, handler_name)

    def submit_script(self, job, files, destination):
        native = shlex.split(destination.params.get("nativeSpecification", ""))
        argv = [cli.command(self.bin_dir, "sbatch"), "--parsable", "-J", f"muleteer-{job.id}",
                "-D", files.directory, "-o", files.path("scheduler.out"),
                "-e", files.path(SCHEDULER_ERR), *native, files.path(SCRIPT)]
        staged = staging.settings(destination)
        if staged is not None:  # the node sees none of the server's paths (sbatch ships the script)
            argv = [argv[0], "--parsable", "-J", f"muleteer-{job.id}", "-D",
                    staged.staging_directory, "-o", "/dev/null", "-e", "/dev/null", *native]
            result = self.run_staged_client(argv, job, files)
        else:
            result = self.run_client(argv, job)
        if result.returncode != 0:
            raise cli.failure(result, argv)
        return parse_sbatch(result.stdout)

    def statuses(self, external_ids):
        self.status_calls += 1
        argv = [cli.command(self.bin_dir, "squeue"), "-h", "-t", "all", "-o", SQUEUE_FORMAT,
                "-j", ",".join(external_ids)]
        result = cli.run(argv)
        if result.returncode != 0:
            if "invalid job id" in result.stderr.lower():
                return {}  # none of them is known any more
            raise cli.failure(result, argv)
        return parse_squeue(result.stdout)

    def settle(self, job, files, status, exit_code):
        """A job that failed: squeue's final state says whether Slurm killed it (TIMEOUT,
        OUT_OF_MEMORY), once Slurm has recorded its end (a moment after its script's);
        slurmstepd's line in scheduler.err when squeue no longer knows it."""
        if status.reason or exit_code == 0 or not job.external_id:
            return status
        found = self.poll_until(lambda: self.statuses([job.external_id]).get(job.external_id),
                                lambda seen: seen is None or seen.state == FINISHED)
        if found is not None and found.reason:
            return found
        said = self.scheduler_message(files)
        if said is not None:
            return Status(FINISHED, said[1], said[0])
        return found if found is not None and found.state == FINISHED else status

    def kill(self, external_id, job=None):
        argv = [cli.command(self.bin_dir, "scancel"), external_id]
        result = self.run_client(argv, job)
        if result.returncode != 0 and "already completing or completed" not in result.stderr \
                and "invalid job id" not in result.stderr.lower():
            raise cli.failure(result, argv)
