"""Shared fixtures for the unit tests: temp files, a migrated SQLite job store,
an application context for the local runner, and bounded waiting helpers.

Test modules get everything through fixtures (never `import conftest`: tests/integration
has a conftest.py of its own).
"""
from __future__ import annotations

import os
import shutil
import signal
import textwrap
import time

import pytest

from tests.support.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS_DIR = os.path.join(REPO, "tools")
HANDLER = "test-handler"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def repo() -> str:
    """The repository root (galaxy.yml, job_conf.xml, tools/)."""
    return REPO


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    """wait_for(predicate, timeout=30, what=...) -> predicate's first truthy result."""
    return wait_for


@pytest.fixture(name="group_alive")
def group_alive_fixture():
    """group_alive(pgid) -> whether os.killpg(pgid, 0) still finds the process group."""
    return group_alive


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> absolute path of a file under tmp_path (text is dedented)."""
    def _write(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(path)
    return _write


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The store tests run on both databases: SQLite, and the private PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.sqlite"
    from tests.support.postgres import fresh_database
    return fresh_database(f"unit_{os.getpid()}")


@pytest.fixture
def store(database_url):
    from muleteer.store import JobStore

    store = JobStore(database_url)
    store.migrate()
    yield store
    store.engine.dispose()


@pytest.fixture
def make_job(store):
    """make_job(handler_tag="a", **overrides) -> the new job row."""
    def _make(handler_tag: str = "default", **overrides):
        values = dict(tool_id="noop", tool_version="1.0.0", params={}, command_line="true",
                      handler_tag=handler_tag, destination_id="local", runner="local")
        values.update(overrides)
        return store.create_job(**values)[0]
    return _make


# -- local runner ------------------------------------------------------------------------
# Tools only the runner tests use, next to copies of the shipped ones.
EXTRA_TOOLS = {
    "stubborn.xml": """
        <tool id="stubborn" name="Ignore signals" version="1.0.0">
            <command>trap '' TERM INT HUP; echo \\$BASHPID > ready; sleep 30</command>
        </tool>
    """,
    "signals.xml": """
        <tool id="signals" name="Show signal dispositions" version="1.0.0">
            <command>grep -E '^Sig(Ign|Blk):' /proc/self/status</command>
        </tool>
    """,
    "environment.xml": """
        <tool id="environment" name="Show the job environment" version="1.0.0">
            <command>printf '%s\\n' "\\$MULETEER_JOB_ID" "\\$TMPDIR" "\\$PWD"</command>
        </tool>
    """,
}


@pytest.fixture
def local_ctx(tmp_path):
    """An AppContext whose database, job directories and tools all live in tmp_path."""
    from muleteer.config import load_config
    from muleteer.context import AppContext
    from muleteer.job_config import load_job_conf
    from muleteer.store import JobStore
    from mules.runners import RUNNER_SPECS
    from muleteer.tools.toolbox import load_toolbox

    tool_dir = tmp_path / "tools"
    shutil.copytree(TOOLS_DIR, tool_dir)
    for name, text in EXTRA_TOOLS.items():
        (tool_dir / name).write_text(textwrap.dedent(text).lstrip("\n"))
    config_file = tmp_path / "galaxy.yml"
    config_file.write_text(textwrap.dedent(f"""
        galaxy:
          database_connection: sqlite:///db/jobs.sqlite
          job_config_file: {REPO}/job_conf.xml
          tool_path: tools
          job_working_directory: jobs
          new_file_path: tmp
          job_runner_monitor_sleep: 0.05
          exit_code_file_wait: 0.3
          cleanup_job: never
    """))
    config = load_config(str(config_file))
    store = JobStore(config.database_connection)
    store.migrate()
    ctx = AppContext(config=config, job_conf=load_job_conf(config.job_config_file, RUNNER_SPECS),
                     tools=load_toolbox(config.tool_path), store=store)
    yield ctx
    store.engine.dispose()


@pytest.fixture
def start_runner(local_ctx):
    """start_runner() -> a new LocalRunner on local_ctx; all are shut down at teardown."""
    from muleteer.job_config import Plugin
    from mules.runners.local import LocalRunner

    runners = []

    def _start(workers: int = 2):
        runner = LocalRunner(local_ctx, Plugin(id="local", type="local", workers=workers), HANDLER)
        runners.append(runner)
        return runner

    yield _start
    for runner in runners:
        runner.shutdown()
    for runner in runners:
        for thread in runner._threads:
            thread.join(timeout=5)


@pytest.fixture
def process_groups():
    """A list of process group ids a test started; each is SIGKILLed at teardown."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        kill_group(pgid)


@pytest.fixture
def new_job(local_ctx):
    """new_job(tool_id, params) -> a job claimed by HANDLER (state queued), not yet started."""
    def _new(tool_id: str, params: dict | None = None):
        from muleteer.tools.params import check_params
        tool = local_ctx.tools.get(tool_id)
        values = check_params(tool, params or {})
        job, _ = local_ctx.store.create_job(
            tool_id=tool.id, tool_version=tool.version, params=values,
            command_line="", handler_tag=HANDLER,
            destination_id="local", runner="local")
        claimed = local_ctx.store.claim_job(job.id, HANDLER, [HANDLER])
        assert claimed and claimed.state == "queued"
        return claimed
    return _new


@pytest.fixture
def run_job(local_ctx, new_job, process_groups):
    """run_job(runner, tool_id, params) -> the job, submitted to `runner`.

    Every job's process group (its pid: the runner starts each job in its own
    session) is killed at teardown, whatever the test did.
    """
    job_ids = []

    def _run(runner, tool_id: str, params: dict | None = None) -> dict:
        job = new_job(tool_id, params)
        job_ids.append(job.id)
        runner.submit(job, local_ctx.job_conf.resolve_destination("local"))
        return job

    yield _run
    for job_id in job_ids:
        row = local_ctx.store.get_job(job_id)
        if row and row.external_id:
            kill_group(int(row.external_id))


@pytest.fixture
def wait_state(local_ctx):
    """wait_state(job_id, *states, timeout=30) -> the job row once its state is one of states."""
    def _wait(job_id: int, *states: str, timeout: float = 30.0) -> dict:
        def reached():
            row = local_ctx.store.get_job(job_id)
            return row if row.state in states else None
        return wait_for(reached, timeout=timeout,
                        what=f"job {job_id} to reach {'/'.join(states)}")
    return _wait
