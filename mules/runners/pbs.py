"""The pbs runner: TORQUE/PBS command line, qsub / one qstat per interval / qdel.

Destination params, as Galaxy's PBS runner names them: `Resource_List` (qsub -l, e.g.
`nodes=1:ppn=1,walltime=00:10:00`), `queue` (or `destination`), `server`, any param
whose id starts with `-` (passed to qsub as that option), and `nativeSpecification`
(extra qsub arguments; the legacy URL `pbs://server/queue/options/` fills it).
Plugin params: `bin_dir`, where qsub/qstat/qdel are. Sites often have several clients
installed (Grid Engine's qsub is not TORQUE's), so this is a setting, not PATH.
qstat -f carries no exit status on every PBS flavour (Slurm's wrappers have none): the
exit code always comes from the job script's exit-code file.

Limits (docs/schedulers.md): a job that failed is looked at once more (settle) when the
scheduler has recorded its end. The scheduler's own line in the job's stderr file says a
limit killed it: Slurm's slurmstepd under its TORQUE wrappers ("... DUE TO TIME LIMIT",
"Detected 1 oom-kill event(s)"), TORQUE's and PBS Pro's mom ("=>> PBS: job killed:
walltime 65 exceeded limit 60", "... mem ... exceeded limit"); else TORQUE's exit_status
in `qstat -f` (-10 memory, -11 walltime). The wrappers show a job Slurm ended
OUT_OF_MEMORY (or DEADLINE) in state U, which TORQUE never uses: a finished job.
"""
from __future__ import annotations

import dataclasses
import re
import shlex

from muleteer import staging
from muleteer.job_files import SCRIPT
from muleteer.containers import CONTAINER_PARAMS
from muleteer.runner_spec import Param, RunnerSpec
from mules.runners import cli
from mules.lifecycle import MEMORY, WALLTIME
from mules.runners.cluster import (ACTIVE, CLUSTER_PARAMS, FINISHED, NATIVE_SPECIFICATION,
                                   PENDING, SCHEDULER_ERR, ClusterRunner, SchedulerError,
                                   Status)

# Galaxy's "staged" method asks TORQUE to copy files with `-W stagein=`/`stageout=`. Slurm's
# TORQUE wrappers (the pbs runner's test cluster) accept and silently ignore them: the job
# ran without its file (measured). Refused when the job configuration loads, rather than a
# job that finds nothing.
_IGNORED_ATTRIBUTES = ("stagein", "stageout")


def _no_staging_attributes(text: str) -> None:
    """Refuse stagein/stageout anywhere in -W's comma-separated attribute lists (`-W a=1,
    stagein=...`, `-Wstageout=...`)."""
    words = shlex.split(text) if isinstance(text, str) else []
    for word in words:
        if word[:2].lower() == "-w" and len(word) > 2:
            word = word[2:]
        for attribute in word.split(","):
            name = attribute.split("=", 1)[0].strip().lower()
            if name in _IGNORED_ATTRIBUTES:
                raise ValueError(f"-W {name}: TORQUE file staging is not supported (Slurm's "
                                 "TORQUE wrappers ignore it, so the job would run without its "
                                 "files)")


def _check_prefixed(name: str, value) -> None:
    if name == "-W":
        _no_staging_attributes(value)


SPEC = RunnerSpec(
    type="pbs",
    plugin_params=(cli.BIN_DIR, *CLUSTER_PARAMS),
    destination_params=(*CONTAINER_PARAMS, 
        Param("Resource_List", str, "", "qsub -l, e.g. nodes=1:ppn=1,walltime=00:10:00"),
        Param("queue", str, "", "qsub -q"),
        Param("destination", str, "", "qsub -q (Galaxy's other name for queue)"),
        Param("server", str, "", "the queue's server (queue@server)"),
        dataclasses.replace(NATIVE_SPECIFICATION, check=_no_staging_attributes),
        *staging.STAGING_PARAMS),
    destination_param_prefixes=("-",),  # any `-X` param is that qsub option
    prefix_check=_check_prefixed,
    url_form=("server", "queue", "nativeSpecification"),  # pbs://server/queue/options/
    doc="TORQUE/PBS qsub, qstat, qdel")

# PBS job states: Queued, Held, Waiting, Transit, Running, Exiting, Completed, Suspended,
# Finished (PBS Pro); U: Slurm's TORQUE wrappers' "unknown", a Slurm end state they do not
# map (OUT_OF_MEMORY, DEADLINE).
_STATES = {"Q": PENDING, "H": PENDING, "W": PENDING, "T": PENDING, "S": PENDING,
           "R": ACTIVE, "E": ACTIVE, "C": FINISHED, "F": FINISHED, "U": FINISHED}
QSTAT_UNKNOWN_JOB = 153
# TORQUE's own exit_status for a job its mom killed over a limit (JOB_EXEC_OVERLIMIT_*).
_EXIT_STATUS_REASONS = {-10: MEMORY, -11: WALLTIME}
_EXIT_STATUS = re.compile(r"^\s*exit_status\s*=\s*(-?[0-9]+)\s*$", re.IGNORECASE | re.MULTILINE)


# As the job's user: qsub ARGS... on a private copy of stdin (removed once qsub read it).
_QSUB_FROM_STDIN = ('script=$(mktemp) || exit 1; trap \'rm -f -- "$script"\' EXIT; '
                    'cat > "$script" && "$@" "$script"')


def parse_qstat(text: str) -> dict[str, Status]:
    """Plain `qstat ID...` output (a table) as {job id: Status}."""
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[0] in ("Job", "Job id") or set(fields[0]) <= {"-"}:
            continue
        job_id, state = fields[0], fields[-2]
        if state in _STATES:
            found[job_id] = Status(_STATES[state], f"state {state}")
            short = job_id.split(".")[0]
            found.setdefault(short, found[job_id])  # `33.server` also answers to `33`
    return found


def parse_exit_status(text: str) -> int | None:
    """`exit_status = N` of `qstat -f ID` (TORQUE; PBS Pro's Exit_status); None without one
    (Slurm's wrappers never print it)."""
    match = _EXIT_STATUS.search(text)
    return int(match.group(1)) if match else None


def parse_qsub(text: str) -> str:
    job_id = text.strip().splitlines()[-1].strip() if text.strip() else ""
    if not job_id or not job_id.split(".")[0].isdigit():
        raise SchedulerError(f"qsub printed {text.strip()!r}, not a job id")
    return job_id


def qsub_options(params: dict) -> list[str]:
    options = []
    queue = params.get("queue") or params.get("destination")
    if queue:
        server = params.get("server")
        options += ["-q", f"{queue}@{server}" if server and "@" not in queue else queue]
    if params.get("Resource_List"):
        options += ["-l", params["Resource_List"]]
    for key, value in params.items():
        if key.startswith("-"):
            options += [key] + ([value] if value else [])
    return options + shlex.split(params.get("nativeSpecification", ""))


class PbsRunner(ClusterRunner):
    name = "pbs"

    def __init__(self, ctx, plugin, handler_name):
        self.bin_dir = SPEC.plugin_values(plugin.params)["bin_dir"]
        super().__init__(ctx, plugin, handler_name)

    def submit_script(self, job, files, destination):
        # No workdir option (-d in TORQUE, -wd in Slurm's wrapper): the job script cds itself.
        argv = [cli.command(self.bin_dir, "qsub"), "-N", f"muleteer-{job.id}",
                "-o", files.path("scheduler.out"),
                "-e", files.path(SCHEDULER_ERR), *qsub_options(destination.params),
                files.path(SCRIPT)]
        if staging.settings(destination) is not None:  # qsub ships the script; node paths only
            argv = [argv[0], "-N", f"muleteer-{job.id}", "-o", "/dev/null", "-e", "/dev/null",
                    *qsub_options(destination.params)]
            if self.job_user(job, files) is None:
                result = self.run_client([*argv, files.path(staging.STAGED_SCRIPT)], job)
            else:
                # The user cannot read the server's job directory, and Slurm's qsub wrapper
                # reads no script on stdin: the user's own copy of it, made from stdin.
                result = self.run_staged_client(["/bin/bash", "-c", _QSUB_FROM_STDIN, "qsub",
                                                 *argv], job, files)
        else:
            result = self.run_client(argv, job)
        if result.returncode != 0:
            raise cli.failure(result, argv)
        return parse_qsub(result.stdout)

    def statuses(self, external_ids):
        self.status_calls += 1
        argv = [cli.command(self.bin_dir, "qstat"), *external_ids]
        result = cli.run(argv)
        if result.returncode == QSTAT_UNKNOWN_JOB and not result.stdout.strip():
            return {}  # none of them is known any more
        if result.returncode not in (0, QSTAT_UNKNOWN_JOB):
            raise cli.failure(result, argv)
        return parse_qstat(result.stdout)

    def settle(self, job, files, status, exit_code):
        """A job that failed: once qstat shows it finished, the scheduler's line in its stderr
        file, else TORQUE's exit_status, says whether a limit killed it."""
        if status.reason or exit_code == 0 or not job.external_id:
            return status
        found = self.poll_until(lambda: self.statuses([job.external_id]).get(job.external_id),
                                lambda seen: seen is None or seen.state == FINISHED)
        detail = found.detail if found is not None else ""
        said = self.scheduler_message(files)
        if said is not None:
            return Status(FINISHED, f"{detail}; {said[1]}" if detail else said[1], said[0])
        if found is not None:
            argv = [cli.command(self.bin_dir, "qstat"), "-f", job.external_id]
            result = cli.run(argv)
            code = parse_exit_status(result.stdout) if result.returncode == 0 else None
            if code in _EXIT_STATUS_REASONS:
                return Status(FINISHED, f"{detail}, exit_status {code}",
                              _EXIT_STATUS_REASONS[code])
        return found if found is not None and found.state == FINISHED else status

    def kill(self, external_id, job=None):
        argv = [cli.command(self.bin_dir, "qdel"), external_id]
        result = self.run_client(argv, job)
        # qdel exits 1 for a job that already finished or is unknown: nothing left to kill.
        if result.returncode not in (0, 1):
            raise cli.failure(result, argv)
