"""Whether the single-node test clusters (scripts/cluster/up) are reachable.

run_tests.sh brings them up and sets MULETEER_REQUIRE_CLUSTERS=1, so a cluster that
is missing there FAILS the run; a developer running pytest alone without them gets
a skip that says how to start them.
"""
import os
import subprocess
import time
import warnings

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CHECKS = {
    "slurm": ["sinfo", "-h"],
    "pbs": [os.path.join(os.environ.get("MULETEER_TORQUE_BIN", "/opt/muleteer-cluster/torque/bin"),
                         "qstat")],
    "drmaa": ["qstat", "-help"],
}


def require_cluster(runner: str) -> None:
    # TORQUE's qstat exits 153 when no job at all is known: the server answered.
    answered = (0, 153) if runner == "pbs" else (0,)
    try:
        ok = subprocess.run(_CHECKS[runner], capture_output=True, timeout=20).returncode in answered
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if ok and runner == "drmaa" and not _sge_execd_up():
        # sge_execd gone while sge_qmaster runs (the queue instance shows state u): seen
        # when it shared the session of the shell that started it, ended with that session
        # (sge-up now starts it with setsid). Its jobs would wait forever: bring it back
        # with the project's own script, and say so in the run's warnings.
        warnings.warn("Grid Engine's sge_execd was down (queue all.q@* in state u): "
                      "restarted by scripts/cluster/sge-up")
        subprocess.run([os.path.join(REPO, "scripts", "cluster", "sge-up")],
                       capture_output=True, timeout=120)
        deadline = time.monotonic() + 30  # the new execd's first load report
        while not (ok := _sge_execd_up()) and time.monotonic() < deadline:
            time.sleep(0.5)
    if ok:
        return
    message = (f"the {runner} test cluster is not reachable: run scripts/cluster/up and "
               ". scripts/cluster/env.sh first")
    if os.environ.get("MULETEER_REQUIRE_CLUSTERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _sge_execd_up() -> bool:
    """Whether all.q's queue instance answers (its execd is up): no `u` in its states."""
    out = subprocess.run(["qstat", "-f", "-q", "all.q"], capture_output=True, text=True,
                         timeout=20).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("all.q@")]
    return bool(rows) and all(len(row) < 6 or "u" not in row[5] for row in rows)
