"""Whether the single-node test clusters (scripts/cluster/up) are reachable.

run_tests.sh brings them up and sets MULETEER_REQUIRE_CLUSTERS=1, so a cluster that
is missing there FAILS the run; a developer running pytest alone without them gets
a skip that says how to start them.
"""
import os
import subprocess

import pytest

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
    if ok:
        return
    message = (f"the {runner} test cluster is not reachable: run scripts/cluster/up and "
               ". scripts/cluster/env.sh first")
    if os.environ.get("MULETEER_REQUIRE_CLUSTERS") == "1":
        pytest.fail(message)
    pytest.skip(message)
