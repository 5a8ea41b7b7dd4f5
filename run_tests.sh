#!/usr/bin/env bash
# Install what the tests need, start the test services, run every test.
#   ./run_tests.sh                 everything
#   ./run_tests.sh tests/unit -k x extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-venv requirements-test.txt
# pytest exits 5 when it collected no test: that fails this script too (non-zero).
exec .venv/bin/python -m pytest -ra -q "${@:-tests}"
