"""Fresh PostgreSQL databases on the private test server (scripts/postgres-up).

run_tests.sh starts it and sets MULETEER_REQUIRE_POSTGRES=1, so a missing server FAILS
the run there; a developer running pytest alone without it gets a skip saying how.
"""
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fresh_database(name: str) -> str:
    """An empty database NAME (dropped and created again); returns its SQLAlchemy URL."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)[:60]
    try:
        result = subprocess.run([os.path.join(REPO, "scripts", "postgres-createdb"), "--drop", name],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result = None
        error = str(exc)
    if result is not None and result.returncode == 0:
        return result.stdout.strip().splitlines()[-1]
    error = result.stderr.strip() if result is not None else error
    message = f"no PostgreSQL test server ({error}): run scripts/postgres-up first"
    if os.environ.get("MULETEER_REQUIRE_POSTGRES") == "1":
        pytest.fail(message)
    pytest.skip(message)
