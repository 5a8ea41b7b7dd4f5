"""What every runner shares: a job's directory and script, and reading how a job ended.

A runner is a scheduler adapter: it starts, watches and stops job scripts, and reports
what it saw to the job's lifecycle (mules/lifecycle.py), which alone changes states.
Every action is made under the job's lease (see mules/handler_loop.py): a runner that
lost a job to another handler touches none of its files.
"""
from __future__ import annotations

import dataclasses
import logging
import os

from muleteer import galaxy_slots, staging
from muleteer.dataset_files import DatasetFiles
from muleteer.job import Job
from muleteer.job_files import GATE_FD, JobFiles, working_directory
from mules import job_command
from mules.job_account import JobAccountError
from mules.job_command import JobLayout, JobSetupError
from mules.lifecycle import Lifecycle, Outcome

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """This handler no longer holds the job: another one adopted it. Drop it, touch nothing."""


class BaseRunner:
    # The local runner runs jobs with the handler's own PATH, so a tool's package
    # requirements can be looked up before the job starts; a cluster node's PATH can't.
    requirements_on_path = False

    def __init__(self, ctx, plugin, handler_name: str):
        self.ctx = ctx
        self.store = ctx.store
        self.plugin = plugin
        self.handler_name = handler_name
        self.lifecycle = Lifecycle(ctx, handler_name)
        # Set when jobs run as their owners' accounts (real_system_username).
        self.accounts = self.lifecycle.accounts

    # -- what a runner implements -------------------------------------------------
    def submit(self, job: Job, destination) -> None:
        raise NotImplementedError

    def cancel(self, job: Job) -> None:
        raise NotImplementedError

    def recover(self, job: Job, destination) -> None:
        raise NotImplementedError

    def stop_over_limit(self, job: Job, reason: str, info: str) -> None:
        """Stop a running job that broke a <limits> limit; report it ended for `reason`."""
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    # -- hooks into the job script (each runner may override) --------------------------
    def granted(self, destination) -> galaxy_slots.Granted:
        """The cores and memory the destination itself grants a job, for GALAXY_SLOTS and
        GALAXY_MEMORY_MB where the scheduler says nothing at run time."""
        return galaxy_slots.Granted()

    def script_setup(self, job: Job, destination) -> list[str]:
        """Shell lines of this runner's own in the job script, before the job enters its
        directory (e.g. the local runner's per-job limits)."""
        return []

    def container_command(self, job: Job, destination, layout: JobLayout, built) -> str:
        """The tool's command as the job script runs it: in the tool's container when the
        destination runs tools in containers, else as built."""
        return job_command.in_container(self.ctx, job, destination, layout, built,
                                        real_user=self.accounts is not None)

    def script_parts(self, job: Job, destination, layout: JobLayout, built) -> dict:
        """write_script's command and the lines around it (see JobFiles.write_script)."""
        metrics_for = getattr(self.ctx, "metrics_for", None)  # a unit test's context may lack it
        metrics = metrics_for(destination) if metrics_for else None
        return dict(
            command=self.container_command(job, destination, layout, built),
            setup=galaxy_slots.statements(self.granted(destination))
            + self.script_setup(job, destination),
            before=metrics.script_before() if metrics else [],
            after=metrics.script_after() if metrics else [])

    def tracked_jobs(self) -> list[Job]:
        """The jobs this runner keeps in memory (queued to start, or watched)."""
        return []

    def forget(self, job_id: int) -> None:
        """Stop tracking a job this handler lost (it is another handler's now)."""

    # -- shared -------------------------------------------------------------------
    def drop_lost_jobs(self) -> None:
        jobs = {j.id: j.lease for j in self.tracked_jobs()}
        held = self.store.held(self.handler_name, jobs)
        for job_id in set(jobs) - held:
            log.warning("job %s: handler %s lost it to another handler; dropping it",
                        job_id, self.handler_name)
            self.forget(job_id)

    def files(self, job: Job) -> JobFiles:
        return self.lifecycle.files(job)

    def check_lease(self, job: Job) -> None:
        """Raise LeaseLost unless this handler still holds the job (asked of the database)."""
        if not self.store.holds(job.id, job.lease, self.handler_name):
            raise LeaseLost(f"job {job.id}: handler {self.handler_name} no longer holds "
                            f"lease {job.lease}")

    def layout(self, job: Job, destination, files: JobFiles) -> JobLayout:
        """Where the job sees its directory and its inputs: the server's job directory, and
        its own copies of its inputs when it runs as its real user (who cannot read the
        server's datasets). A staged job (muleteer/staging.py): the node's scratch, with
        its own inputs, tool files and temporary directory in it."""
        staged = self.staging(destination)
        if staged is not None:
            scratch = staged.scratch(job.id, staging.token(staging.key(self.ctx.config),
                                                           job.id, job.lease))
            return JobLayout(scratch, own_inputs=True,
                             tool_directory=os.path.join(scratch, staging.TOOL),
                             new_file_path=os.path.join(scratch, staging.TMP))
        return JobLayout(files.directory, own_inputs=self.accounts is not None)

    def prepare(self, job: Job, destination, gated: bool = False,
                before_hand_over=None, lease_checked: bool = False) -> JobFiles:
        """A new job directory with the job script, made only while this handler holds the
        job. The directory is recorded before it is made, so a directory that exists but
        that the job never recorded was made by something else: the job fails. A job that
        runs as its real user gets its directory handed over last. `lease_checked`: the
        caller has just read the job back and found it still this handler's."""
        if not lease_checked:
            self.check_lease(job)
        files = JobFiles(working_directory(self.ctx.config.job_working_directory, job.id))
        layout = self.layout(job, destination, files)
        account = None
        if self.accounts is not None:
            try:
                account = self.accounts.account_of(self.store.user_email(job.user_id))
            except JobAccountError as exc:
                raise JobSetupError(str(exc)) from None
        built = job_command.build(self.ctx, job, files, local=self.requirements_on_path,
                                  layout=layout)
        recorded = {}
        if job.working_directory == files.directory:
            self.lifecycle.take_back(job)  # an earlier attempt's, as its user left it
            # An earlier start of this job (a previous attempt, or a handler that stopped or
            # lost it before starting it) made it: keep it aside, start afresh.
            retired = files.retire("previous")
            if retired:
                log.info("job %s: earlier job directory kept as %s", job.id, retired)
        else:
            recorded["working_directory"] = files.directory
        if built.command != job.command_line:
            recorded["command_line"] = built.command
        # One write for both: every write is a turn at the database's lock.
        if recorded and not self.store.update_job(job.id, lease=job.lease, **recorded):
            raise LeaseLost(f"job {job.id}: lost before its directory was made")
        files.create(traversable=account is not None and self.staging(destination) is None)
        files.write_configfiles(built.configfiles)
        if layout.own_inputs and layout.directory == files.directory:
            self.copy_inputs(files, built.input_ids)
        parts = self.script_parts(job, destination, layout, built)
        if parts["command"] != built.command:  # in a container, which runs the version too
            built = dataclasses.replace(built, version_command=None)
        # A job as its real user gets the gate on stdin: sudo passes no other descriptor.
        files.write_script(job, destination, self.ctx.config, gated=gated,
                           environment=built.environment, version_command=built.version_command,
                           gate_fd=0 if account else GATE_FD, directory=layout.directory,
                           private_tmp=layout.own_inputs, **parts)
        staged = self.staging(destination)
        if staged is not None:  # ---- staged: a node without the server's disk ----
            self.write_staged(job, destination, files, layout, built, staged, parts)
        if before_hand_over is not None:
            before_hand_over(files)  # what the server opens in there while it still can
        if account is not None and staged is None:  # a staged job never sees this directory
            try:
                self.accounts.hand_over(files.directory, account)
            except JobAccountError as exc:
                raise JobSetupError(str(exc)) from None
        return files

    def staging(self, destination) -> staging.Staging | None:
        """A staged destination's settings (None: the shared filesystem). Only the runners
        that declare the params stage: on another, the loader warned that none reads them."""
        if getattr(self.plugin, "type", None) not in staging.RUNNERS:
            return None
        return staging.settings(destination)

    def write_staged(self, job: Job, destination, files: JobFiles, layout: JobLayout,
                     built, staged: staging.Staging, parts: dict) -> None:
        """job.sh as the node runs it (its TMPDIR in the scratch, no server path), and the
        node wrapper staged.sh that fetches the job's files, runs it and sends back the
        results (muleteer/staging.py). The inputs are not copied: the node downloads them."""
        config = self.ctx.config
        if not config.galaxy_infrastructure_url:
            raise JobSetupError(f"destination {job.destination_id}: default_file_action "
                                "remote_transfer needs galaxy.galaxy_infrastructure_url (the "
                                f"server's URL as the nodes reach it) in {config.config_file}")
        tmp = layout.new_file_path
        environment = {"TMPDIR": tmp, "TEMP": tmp, "TMP": tmp, **built.environment}
        files.write_script(job, destination, dataclasses.replace(config, new_file_path=""),
                           environment=environment, version_command=built.version_command,
                           directory=layout.directory, **parts)
        tool = job_command.tool_of(self.ctx, job)
        tool_files = ()
        if tool is not None and tool.tool_dir and staging.uses_tool_directory(tool):
            tool_files = staging.tool_files(JobFiles(tool.tool_dir).regular_files(limit=10_000))
        plan = staging.WrapperPlan(
            job_id=job.id, url=config.galaxy_infrastructure_url,
            token=staging.token(staging.key(config), job.id, job.lease), staging=staged,
            configfiles=tuple(sorted(built.configfiles)),
            inputs=tuple(job_command.input_name(i) for i in built.input_ids),
            tool_files=tuple(tool_files))
        files.write_staged_script(staging.STAGED_SCRIPT, staging.wrapper_script(plan))

    def copy_inputs(self, files: JobFiles, dataset_ids) -> None:
        """The job's own copies of its input datasets (its user cannot read the server's)."""
        datasets = DatasetFiles(self.ctx.config.file_path)
        sources = {}
        try:
            for dataset_id in dataset_ids:
                source = datasets.open(dataset_id)
                if source is None:
                    raise JobSetupError(f"input dataset {dataset_id}: its file is missing")
                sources[job_command.input_name(dataset_id)] = source
            files.copy_inputs(sources)
        finally:
            for source in sources.values():
                source.close()

    def job_user(self, job: Job, files: JobFiles) -> str | None:
        """The account the job runs as now (its directory's owner); for a directory the
        server holds, its owner's account as real_system_username maps it now. None: jobs
        run as the server's account."""
        if self.accounts is None:
            return None
        owner = self.accounts.owner_of(files.directory)
        # The server's own directory: a staged job's (the node never sees it), or one taken
        # back already (a cancel that came while the scheduler was still taking the job).
        if owner is None:
            try:
                return self.accounts.account_of(self.store.user_email(job.user_id)).name
            except JobAccountError as exc:
                raise JobSetupError(str(exc)) from None
        return owner

    def outcome(self, job: Job, files: JobFiles, wait: float | None = None) -> Outcome:
        """How the job script ended, from its exit-code file (waited for a bounded time:
        a shared filesystem shows it late; not when a cancel was asked for). A directory
        its real user owns is taken back first."""
        problem = self.lifecycle.take_back(job)
        if problem:
            return Outcome(None, detail=problem)
        code = files.exit_code()
        if code is None and not self.lifecycle.cancel_requested(job):
            code = files.exit_code(wait=self.ctx.config.exit_code_file_wait if wait is None
                                   else wait)
        if code is not None:
            return Outcome(code)
        if files.disk_full():
            return Outcome(None, detail="the job ended without writing an exit code: the disk "
                                        f"holding its job directory ({files.directory}) is full")
        return Outcome(None, detail="the job ended without writing an exit code "
                                    "(killed, or its node lost)")

    def finish(self, job: Job, files: JobFiles, wait: float | None = None) -> Job | None:
        """Report the end of a job whose script has exited (or vanished)."""
        return self.lifecycle.ended(job, self.outcome(job, files, wait))
