"""run.sh trusts its pid file only when it names this server's uWSGI master.

A pid file left behind by a crash may name a pid the system has since given to another
process: `--status` must not call that the server, `--stop` must not signal it, `--daemon`
must not answer "already running". Every process here is started by the test and killed
by its pid; nothing is installed (`--daemon` runs against a stand-in venv whose python
stops at the configuration check) and no Muleteer server starts: the real master is a
bare uWSGI (no app) with a configuration of its own.
"""
from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_SH = os.path.join(REPO, "run.sh")
VENV = os.path.join(REPO, ".venv")
UWSGI = os.path.join(VENV, "bin", "uwsgi")


def run_sh(config: str, *args: str, venv: str = VENV, timeout: float = 60):
    env = dict(os.environ, MULETEER_CONFIG=config, MULETEER_VENV=venv,
               MULETEER_LOG=os.path.join(os.path.dirname(config), "uwsgi.log"))
    return subprocess.run([RUN_SH, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)


def write_config(directory, name: str) -> tuple[str, str]:
    """A bare uWSGI configuration (master, one worker, no app); returns (config, pid file)."""
    pidfile = str(directory / f"{name}.pid")
    config = directory / f"{name}.yml"
    config.write_text(textwrap.dedent(f"""\
        uwsgi:
          master: true
          processes: 1
          socket: {directory}/{name}.sock
          pidfile: {pidfile}
          die-on-term: true
        """))
    return str(config), pidfile


@pytest.fixture
def sleeper():
    """An unrelated live process (`sleep 60`), killed by its pid at the end."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    kill(process)


@pytest.fixture
def start_uwsgi():
    """start_uwsgi(config) -> a bare uWSGI master of `config`, killed at the end."""
    processes = []

    def start(config: str, pidfile: str) -> subprocess.Popen:
        if not os.access(UWSGI, os.X_OK):
            pytest.skip(f"{UWSGI} is missing (./run.sh or scripts/setup-venv installs it)")
        log = open(os.path.join(os.path.dirname(config), "bare.log"), "ab")
        process = subprocess.Popen([UWSGI, "--yaml", config], cwd=os.path.dirname(config),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        processes.append(process)
        deadline = time.monotonic() + 20
        while not (os.path.exists(pidfile) and children(process.pid)):
            assert process.poll() is None, "the bare uWSGI exited"
            assert time.monotonic() < deadline, "the bare uWSGI did not start"
            time.sleep(0.05)
        return process

    yield start
    for process in processes:
        kill(process)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        return []


def stand_in_venv(tmp_path) -> str:
    """A venv scripts/setup-venv takes as up to date, whose python fails the configuration
    check at once: `run.sh --daemon` gets as far as preparing to start, no further."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "uwsgi"):
        script = venv / "bin" / name
        script.write_text(f"#!/bin/sh\necho \"stand-in {name} $*\"\nexit 1\n")
        script.chmod(0o755)
    # setup-venv's stamp for requirements.txt, as setup-venv itself computes it.
    stamp = subprocess.run([os.path.join(REPO, "scripts", "setup-venv"), "--stamp",
                            "requirements.txt"], capture_output=True, text=True, check=True)
    (venv / ".installed-requirements.txt").write_text(stamp.stdout)
    return str(venv)


def test_a_pid_file_naming_an_unrelated_process_is_not_trusted(tmp_path, sleeper):
    config, pidfile = write_config(tmp_path, "server")
    with open(pidfile, "w") as fh:
        fh.write(f"{sleeper.pid}\n")

    status = run_sh(config, "--status")
    assert status.returncode == 3, status
    assert "not running" in status.stdout and "stale pid file" in status.stderr

    stop = run_sh(config, "--stop")
    assert stop.returncode == 0 and "not running" in stop.stdout, stop
    restart = run_sh(config, "--restart")
    assert restart.returncode == 1 and "not running" in restart.stderr, restart

    daemon = run_sh(config, "--daemon", venv=stand_in_venv(tmp_path))
    assert "already running" not in daemon.stdout + daemon.stderr, daemon
    assert "stand-in python -m check" in daemon.stdout + daemon.stderr, daemon

    time.sleep(0.2)
    assert alive(sleeper.pid) and sleeper.poll() is None  # never signalled


def test_only_this_configurations_master_is_trusted(tmp_path, start_uwsgi):
    config, pidfile = write_config(tmp_path, "server")
    other_config, other_pidfile = write_config(tmp_path, "other")
    master = start_uwsgi(config, pidfile)
    other = start_uwsgi(other_config, other_pidfile)

    status = run_sh(config, "--status")
    assert status.returncode == 0 and f"running (pid {master.pid})" in status.stdout, status
    daemon = run_sh(config, "--daemon")
    assert daemon.returncode == 0 and f"already running (pid {master.pid})" in daemon.stdout

    # Our uWSGI binary, but another configuration's master; then our master's own worker.
    worker = children(master.pid)[0]
    for impostor in (other.pid, worker):
        with open(pidfile, "w") as fh:
            fh.write(f"{impostor}\n")
        assert run_sh(config, "--status").returncode == 3
        assert run_sh(config, "--stop").stdout.strip() == "muleteer: not running"
        assert alive(impostor)
    assert master.poll() is None and other.poll() is None

    with open(pidfile, "w") as fh:
        fh.write(f"{master.pid}\n")
    stop = run_sh(config, "--stop")
    assert stop.returncode == 0 and f"stopped (pid {master.pid})" in stop.stdout, stop
    master.wait(timeout=10)
    assert other.poll() is None  # the other configuration's server was left alone
