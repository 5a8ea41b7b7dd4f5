"""Fuzz the JSON API from its own OpenAPI description (/api/openapi.json) with schemathesis.

A real uWSGI server, every request authenticated as the admin (the server's
bootstrap_admin_api_key in the x-api-key header); the one check is schemathesis's
`not_a_server_error`: whatever a client sends, the answer is never a 5xx. Bounded: at most
MAX_EXAMPLES cases per operation, a fixed seed, no shrinking, and a hard time limit.

schemathesis 4.x CLI (`schemathesis run`), from requirements-test.txt. Without it this test
skips, unless MULETEER_REQUIRE_FUZZ=1 (then it fails).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.uwsgi_server import UwsgiServer

MAX_EXAMPLES = 30
TIME_LIMIT = 120  # seconds; a run takes about 10 on two cores


def schemathesis_cli() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    return here if os.access(here, os.X_OK) else shutil.which("schemathesis")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with the request limits of the shipped galaxy.yml: uWSGI's default
    buffer-size (4 KiB) closes the connection, without an answer, on the long query strings
    the fuzzer sends; galaxy.yml raises it to 16 KiB."""
    srv = UwsgiServer(str(tmp_path_factory.mktemp("fuzz")),
                      uwsgi={"buffer-size": 16384, "post-buffering": 65536, "harakiri": 60}).start()
    yield srv
    srv.stop()


def test_no_request_gets_a_server_error(server, tmp_path):
    cli = schemathesis_cli()
    if cli is None:
        if os.environ.get("MULETEER_REQUIRE_FUZZ") == "1":
            pytest.fail("schemathesis is not installed (MULETEER_REQUIRE_FUZZ=1)", pytrace=False)
        pytest.skip("schemathesis is not installed in .venv (pip install -r requirements-test.txt)")
    report = tmp_path / "report"
    command = [
        cli, "run", f"{server.url}/api/openapi.json",
        "--checks", "not_a_server_error",
        "--header", f"x-api-key: {server.api_key}",
        # The key is sent by us, not generated (a generated ?key= would only test the 401).
        "--generation-with-security-parameters", "false",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "20240601", "--no-shrink",
        "--generation-database", "none",
        # One worker: with threads, Hypothesis's ast.parse of lambdas trips CPython 3.11.7's
        # "AST constructor recursion depth mismatch" (gh-106905, fixed in 3.11.8) now and then.
        "--workers", "1",
        "--request-timeout", "20",
        "--continue-on-failure",
        "--report", "ndjson", "--report-dir", str(report),
        "--output-sanitize", "false",
        "--no-color",
    ]
    try:
        # cwd: anything schemathesis writes (its cache, a config file lookup) stays out of the repo.
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                timeout=TIME_LIMIT, env=dict(os.environ, NO_COLOR="1"))
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"schemathesis ran longer than {TIME_LIMIT} s:\n{partial[-4000:]}")
    output = result.stdout + result.stderr
    # The failures and errors, each with its request as a curl command line.
    start = min([i for i in (output.find("= ERRORS ="), output.find("= FAILURES =")) if i >= 0],
                default=max(0, len(output) - 6000))
    end = output.find("= WARNINGS =", start)
    details = output[start:end if end > 0 else None][:20000]
    tracebacks = sorted({line for line in server.log_tail(2000).splitlines()
                         if "unhandled error on" in line})
    assert result.returncode == 0, (
        f"schemathesis found problems (exit {result.returncode}):\n{details}\n"
        f"{output[output.find('= SUMMARY ='):]}\nunhandled errors in the server log:\n"
        + "\n".join(tracebacks[:40]))
    # Every operation of the description was selected and tested.
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert counts and counts.group(1) == counts.group(2) == counts.group(3) != "0", output[-4000:]
