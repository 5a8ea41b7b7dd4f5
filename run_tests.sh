#!/usr/bin/env bash
# Install what the tests need, start the test services, run every test.
#   ./run_tests.sh                  everything
#   ./run_tests.sh tests/unit -k x  extra arguments go to pytest
# The single-node Slurm (+ TORQUE wrappers) and Grid Engine are installed from Debian's
# packages and started by scripts/cluster/up (seconds when already up); they stay up
# afterwards for the next run; scripts/cluster/down stops them.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-venv requirements-test.txt
scripts/cluster/up
. scripts/cluster/env.sh
# With the clusters brought up here, a cluster test that cannot reach one must fail, not skip.
export MULETEER_REQUIRE_CLUSTERS=1
# pytest exits 5 when it collected no test: that fails this script too (non-zero).
exec .venv/bin/python -m pytest -ra -q "${@:-tests}"
