#!/usr/bin/env bash
# Install what the tests need, start the test services, run every test.
#   ./run_tests.sh                  everything
#   ./run_tests.sh tests/unit -k x  extra arguments go to pytest
# The single-node Slurm (+ TORQUE wrappers) and Grid Engine, and a private PostgreSQL, are
# installed from Debian's packages and started by scripts/cluster/up and scripts/postgres-up
# (seconds when already up); they stay up for the next run; scripts/cluster/down and
# scripts/postgres-down stop them.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-venv requirements-test.txt
scripts/cluster/up
. scripts/cluster/env.sh
# PostgreSQL (Debian's package) on a private port and data dir: store and strategy tests
# run on it as well as on SQLite. scripts/postgres-down stops it.
scripts/postgres-up >/dev/null
# nginx for the deployment tests (each test runs its own nginx on a private port), and
# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
scripts/nginx-install
scripts/browser-install
# sudo, for the real-user site scripts' tests (contrib/sudoers.d/muleteer).
scripts/sudo-install
# podman (docker_cmd), runc and mmdebstrap from Debian's packages, and the container tests'
# image built from Debian's packages (no registry is reachable): under a second once made.
scripts/container-install
scripts/container-image
# With the services brought up here, a test that cannot reach one must fail, not skip.
export MULETEER_REQUIRE_CLUSTERS=1 MULETEER_REQUIRE_POSTGRES=1 MULETEER_REQUIRE_NGINX=1 \
    MULETEER_REQUIRE_BROWSER=1 MULETEER_REQUIRE_FUZZ=1 MULETEER_REQUIRE_CONTAINERS=1
# Two test processes (pytest-xdist): most tests wait on servers and schedulers, so two
# share the machine's cores well; tests/conftest.py keeps each integration module in one
# process and the tests of the machine's single things (Grid Engine's slot, the test
# accounts) in one. MULETEER_TEST_PROCESSES=0 runs everything in this process.
# pytest exits 5 when it collected no test: that fails this script too (non-zero).
exec .venv/bin/python -m pytest -ra -q -n "${MULETEER_TEST_PROCESSES:-2}" --dist loadgroup \
    --durations=20 "${@:-tests}"
