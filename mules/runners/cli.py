"""Running a scheduler's command-line client (sbatch, squeue, qsub, qstat, ...)."""
from __future__ import annotations

import os
import re
import subprocess

from muleteer.runner_spec import Param
from mules.runners.cluster import SchedulerError

# The plugin param of the runners that run a scheduler's command-line clients (pbs, slurm).
BIN_DIR = Param("bin_dir", str, "", "directory of the scheduler's clients (default: PATH)")

# What clients print when the scheduler cannot be reached: worth retrying, unlike a refusal.
_TRANSIENT = re.compile(r"unable to contact|connect(ion)? (failure|refused|timed out)|"
                        r"socket timed out|timed out|temporarily unavailable|try again|"
                        r"zero bytes were transmitted|slurm_receive_msg|communication",
                        re.IGNORECASE)


def command(bin_dir: str, name: str) -> str:
    """A client by name, from the runner's bin_dir when one is set (sites have several)."""
    return os.path.join(bin_dir, name) if bin_dir else name


def run(argv: list[str], timeout: float = 60.0, stdin=subprocess.DEVNULL
        ) -> subprocess.CompletedProcess:
    """Run a client; a missing program is a configuration error, a hang is transient."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=stdin)
    except FileNotFoundError:
        raise SchedulerError(f"{argv[0]}: no such program (set the plugin's bin_dir "
                             "param, or PATH)") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{os.path.basename(argv[0])} did not answer within {timeout:.0f} s",
                             transient=True) from None


def failure(result: subprocess.CompletedProcess, argv: list[str]) -> SchedulerError:
    """The scheduler's own message for a failed client call, classified."""
    text = (result.stderr.strip() or result.stdout.strip()
            or f"{os.path.basename(argv[0])} exited with {result.returncode}")
    return SchedulerError(text, transient=bool(_TRANSIENT.search(text)))
