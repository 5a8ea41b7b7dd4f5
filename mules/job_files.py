"""A job's working directory and the one job script every runner submits.

The script is the same wherever the job runs (this machine, Slurm, PBS, Grid
Engine), so a job behaves the same everywhere: environment from the
destination's <env> and environment_setup_file, TMPDIR from new_file_path, cd to
the working directory, the command in a subshell (an `exit` in a tool ends only
the tool), its stdout/stderr to files, and its exit code written atomically to a
file that runners read instead of trusting a scheduler's accounting.
"""
from __future__ import annotations

import os
import shlex
import time

SCRIPT = "job.sh"
STDOUT = "stdout"
STDERR = "stderr"
EXIT_CODE = "exit_code"
PID = "pid"


def working_directory(root: str, job_id: int) -> str:
    # Galaxy's layout: at most 1000 job directories per parent directory.
    return os.path.join(root, f"{job_id // 1000:03d}", str(job_id))


class JobFiles:
    def __init__(self, directory: str):
        self.directory = directory

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def write_script(self, job: dict, destination, config) -> str:
        os.makedirs(self.path("outputs"), exist_ok=True)
        for stale in (EXIT_CODE, PID):
            try:
                os.unlink(self.path(stale))
            except FileNotFoundError:
                pass
        lines = ["#!/bin/bash",
                 f"# Muleteer job {job['id']}: tool {job['tool_id']} {job['tool_version']}",
                 f"echo $$ > {shlex.quote(self.path(PID))}"]
        if config.new_file_path:
            os.makedirs(config.new_file_path, exist_ok=True)
            tmp = shlex.quote(config.new_file_path)
            lines.append(f"export TMPDIR={tmp} TEMP={tmp} TMP={tmp}")
        if config.environment_setup_file:
            lines.append(f". {shlex.quote(config.environment_setup_file)}")
        for item in getattr(destination, "env", None) or []:
            if "file" in item:
                lines.append(f". {shlex.quote(item['file'])}")
            elif "exec" in item:
                lines.append(item["exec"])  # admin-written, from job_conf.xml
            else:
                lines.append(f"export {item['name']}={shlex.quote(item['value'])}")
        lines += [
            f"export MULETEER_JOB_ID={job['id']}",
            f"cd {shlex.quote(self.directory)} || exit 1",
            "(",
            job["command_line"],
            f") > {STDOUT} 2> {STDERR} < /dev/null",
            "rc=$?",
            f"echo $rc > {EXIT_CODE}.tmp && mv -f {EXIT_CODE}.tmp {EXIT_CODE}",
            "exit $rc",
            "",
        ]
        script = self.path(SCRIPT)
        with open(script + ".tmp", "w") as fh:
            fh.write("\n".join(lines))
        os.chmod(script + ".tmp", 0o755)
        os.replace(script + ".tmp", script)
        return script

    def exit_code(self, wait: float = 0.0) -> int | None:
        """The exit code the script wrote, waiting up to `wait` seconds for the file:
        a shared filesystem can show it late."""
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            try:
                with open(self.path(EXIT_CODE)) as fh:
                    return int(fh.read().strip())
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    def pid(self) -> int | None:
        try:
            with open(self.path(PID)) as fh:
                return int(fh.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def missing_outputs(self, tool) -> list[str]:
        if tool is None:
            return []
        return [o.name for o in tool.outputs if not os.path.exists(self.path(o.relative_path()))]
