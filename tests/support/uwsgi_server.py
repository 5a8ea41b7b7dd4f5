"""Start a real uWSGI Muleteer server for a test, from a generated galaxy.yml.

Everything the server writes (database, job directories, pid file, log) lives in
one temporary directory; it listens on a free port of 127.0.0.1; it is stopped by
the pid it wrote, and its process group is killed if it does not stop in time.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UWSGI = os.path.join(REPO, ".venv", "bin", "uwsgi")

DEFAULT_JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins workers="4">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
    </plugins>
    <destinations default="local">
        <destination id="local" runner="local"/>
    </destinations>
    <tools>
        <tool id="checksum" handler="main.job-handlers.2"/>
        <tool id="word_count" handler="main.web.1"/>
    </tools>
</job_conf>
"""


# Only the local runner, no tool mapped to a handler: for servers with any number of mules.
LOCAL_JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins workers="2">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
    </plugins>
    <destinations default="local">
        <destination id="local" runner="local"/>
    </destinations>
</job_conf>
"""


def stop_process(process: subprocess.Popen, sig: int, timeout: float) -> None:
    """Ask a server we started to stop (sig), then kill what is left of its own process
    group (its session: jobs run in sessions of their own and are not touched)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortTaken(Exception):
    """uWSGI could not bind its http port."""


class UwsgiServer:
    def __init__(self, directory: str, *, job_conf: str = DEFAULT_JOB_CONF, mules: int = 3,
                 processes: int = 2, galaxy: dict | None = None, uwsgi: dict | None = None,
                 env: dict | None = None, job_conf_file_name: str = "job_conf.xml",
                 run_as: tuple[int, int] | None = None):
        self.directory = directory
        self.run_as = run_as  # (uid, gid): the server's own account, as a site runs it
        os.makedirs(directory, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_file = os.path.join(directory, "galaxy.yml")
        self.pidfile = os.path.join(directory, "uwsgi.pid")
        self.logfile = os.path.join(directory, "uwsgi.log")
        self.fifo = os.path.join(directory, "uwsgi.fifo")
        self.mules_reload = os.path.join(directory, "reload-mules")
        self.process = None
        self.started_at_least_once = False
        self.processes = processes
        self.env = env or {}
        # Galaxy's bootstrap_admin_api_key: the tests act as the first admin with it.
        self.api_key = secrets.token_urlsafe(24)
        self.http = self.session()
        # job_conf is the file's text; its name (job_conf.yml for Galaxy's YAML) says its format.
        with open(os.path.join(directory, job_conf_file_name), "w") as fh:
            fh.write(job_conf)
        galaxy = {"job_config_file": job_conf_file_name, **(galaxy or {})}
        self.write_config(mules, processes, galaxy, uwsgi or {})

    def write_config(self, mules, processes, galaxy, uwsgi):
        mule_ids = ",".join(str(i) for i in range(1, mules + 1))
        lines = ["uwsgi:", "  module: wsgi:application", f"  pythonpath: {REPO}",
                 "  shared-import: preload",  # as the shipped galaxy.yml
                 "  shared-import: preflight",
                 "  need-app: true", "  master: true", f"  processes: {processes}", "  threads: 4",
                 "  enable-threads: true", f"  http: 127.0.0.1:{self.port}", "  http-keepalive: 1",
                 # As the shipped galaxy.yml: no limit-post (the app answers a body over
                 # max_request_body with a JSON 413); Expect: 100-continue answered at once.
                 "  buffer-size: 16384", "  post-buffering: 65536", "  http-manage-expect: 1",
                 "  mule-msg-size: 65536", f"  pidfile: {self.pidfile}", "  die-on-term: true",
                 "  hook-master-start: unix_signal:2 gracefully_kill_them_all",
                 "  hook-master-start: unix_signal:15 gracefully_kill_them_all",
                 "  py-call-osafterfork: true", "  listen: 1024", "  disable-logging: true",
                 "  lazy-apps: true", f"  master-fifo: {self.fifo}",
                 f"  touch-mules-reload: {self.mules_reload}"]
        # As the shipped galaxy.yml: the http router hands requests to the fastrouter, which
        # reads each body whole before it connects to a web worker (slow clients).
        fastrouter = os.path.join(self.directory, "fastrouter.sock")
        workers = os.path.join(self.directory, "workers.sock")
        lines += [f"  http-to: {fastrouter}", "  http-gracetime: 1", f"  fastrouter: {fastrouter}",
                  "  fastrouter-use-socket: 0", "  fastrouter-post-buffering: 65536",
                  f"  socket: {workers}"]
        lines.append("  umask: 077")  # as the shipped galaxy.yml
        lines += [f"  mule: {REPO}/mules/handler.py"] * mules
        if mules:
            lines.append(f"  farm: job-handlers:{mule_ids}")
        lines += [f"  {k}: {v}" for k, v in uwsgi.items()]
        settings = {"database_connection": "sqlite:///database/universe.sqlite",
                    "job_config_file": "job_conf.xml", "tool_path": os.path.join(REPO, "tools"),
                    "job_working_directory": "database/jobs", "new_file_path": "database/tmp",
                    "log_level": "INFO", "bootstrap_admin_api_key": self.api_key,
                    # Tests look into finished jobs' directories; cleanup_job has tests of
                    # its own (tests/integration/test_job_datasets.py).
                    "cleanup_job": "never", **galaxy}
        lines += ["", "galaxy:"] + [f"  {k}: {v}" for k, v in settings.items()]
        with open(self.config_file, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def start(self, timeout: float = 60.0) -> "UwsgiServer":
        """Start uWSGI and wait until every handler is up. free_port() only found a port
        free a moment ago: on a first start, a port taken meanwhile (by the other test
        process, or an outgoing connection) is given up for another, at most 3 times."""
        for _ in range(3):
            try:
                return self._start(timeout)
            except PortTaken:
                if self.started_at_least_once:
                    raise RuntimeError(f"port {self.port} was taken while the server was "
                                       f"stopped:\n{self.log_tail()}") from None
                # Everywhere in the configuration: a test may have written the server's
                # URL in it too (galaxy_infrastructure_url, for staged jobs).
                old = f"127.0.0.1:{self.port}"
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                with open(self.config_file) as fh:
                    text = fh.read()
                with open(self.config_file, "w") as fh:
                    fh.write(text.replace(old, f"127.0.0.1:{self.port}"))
        raise RuntimeError(f"no free port in 3 tries:\n{self.log_tail()}")

    def _start(self, timeout: float) -> "UwsgiServer":
        # As the API writes times (UTC, ISO 8601, milliseconds, Z), so strings compare.
        self.started_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        env = dict(os.environ, MULETEER_CONFIG=self.config_file, **self.env)
        log = open(self.logfile, "ab")
        log_start = log.tell()
        account = {}
        if self.run_as:
            uid, gid = self.run_as
            for root, dirs, names in os.walk(self.directory):
                for name in [root, *(os.path.join(root, n) for n in dirs + names)]:
                    os.lchown(name, uid, gid)
            account = {"user": uid, "group": gid, "extra_groups": []}
        self.process = subprocess.Popen([UWSGI, "--yaml", self.config_file], cwd=self.directory,
                                        stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True, **account)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with open(self.logfile, "rb") as fh:
                    fh.seek(log_start)
                    if b"Address already in use" in fh.read():
                        raise PortTaken()
                raise RuntimeError(f"uWSGI exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.http.get(self.url + "/api/handlers", timeout=2).ok and self._handlers_up():
                    self.started_at_least_once = True
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"uWSGI did not answer within {timeout} s:\n{self.log_tail()}")

    def _handlers_up(self) -> bool:
        """Every mule and every web worker's handler thread has written its heartbeat (with
        lazy-apps a worker starts its handler only once it has loaded the app)."""
        handlers = self.http.get(self.url + "/api/handlers", timeout=2).json()["handlers"]
        # Heartbeats of this start only: after a restart the old rows are still there.
        names = {h["name"] for h in handlers if h["last_seen"] >= self.started_at}
        expected = [f"main.job-handlers.{i}" for i in range(1, self.mules + 1)]
        expected += [f"main.web.{i}" for i in range(1, self.processes + 1)]
        return all(name in names for name in expected)

    @property
    def mules(self) -> int:
        with open(self.config_file) as fh:
            return sum(1 for line in fh if line.strip().startswith("mule:"))

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        stop_process(self.process, signal.SIGTERM, timeout)
        self.process = None

    def restart(self) -> None:
        """What ./run.sh --restart does: chain-reload the workers, restart the mules."""
        with open(self.fifo, "w") as fifo:
            fifo.write("c")
        with open(self.mules_reload, "a"):
            pass
        os.utime(self.mules_reload)

    def log_tail(self, lines: int = 60) -> str:
        try:
            with open(self.logfile, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- HTTP helpers -----------------------------------------------------------------
    def session(self) -> requests.Session:
        """A new HTTP session that sends the server's admin API key."""
        session = requests.Session()
        session.headers["x-api-key"] = self.api_key
        return session

    def submit(self, tool_id: str, **params) -> dict:
        response = self.http.post(self.url + "/api/jobs", json={"tool_id": tool_id, "params": params},
                                 timeout=30)
        assert response.status_code == 201, response.text
        return response.json()

    def job(self, job_id: int) -> dict:
        return self.http.get(f"{self.url}/api/jobs/{job_id}", timeout=30).json()

    def wait(self, job_id: int, states=("ok", "error", "deleted"), timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}\n"
                                     f"{self.log_tail()}")
            time.sleep(0.1)


MARKER_TOOL = """<tool id="marker" name="Marker" version="1.0.0">
    <description>append this job's id to a file, to count how often each job ran</description>
    <command>echo "\\$MULETEER_JOB_ID" >> {path}; echo "\\$MULETEER_JOB_ID" > $mark; sleep $seconds</command>
    <inputs><param name="seconds" type="float" value="0" min="0" max="600"/></inputs>
    <outputs><data name="mark" format="txt"/></outputs>
</tool>
"""


def tools_with_marker(directory: str) -> tuple[str, str]:
    """A tool_path with the shipped tools plus `marker`; returns (tool_path, markers file)."""
    import shutil
    tool_path = os.path.join(directory, "tools")
    shutil.copytree(os.path.join(REPO, "tools"), tool_path, dirs_exist_ok=True)
    markers = os.path.join(directory, "markers.txt")
    with open(os.path.join(tool_path, "marker.xml"), "w") as fh:
        fh.write(MARKER_TOOL.format(path=markers))
    return tool_path, markers


def runs_per_job(markers: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    try:
        with open(markers) as fh:
            for line in fh:
                if line.strip().isdigit():
                    counts[int(line)] = counts.get(int(line), 0) + 1
    except FileNotFoundError:
        pass
    return counts


class WeblessHandler:
    """scripts/job-handler as a real process, stopped or killed by its pid."""

    def __init__(self, config_file: str, name: str, env: dict | None = None):
        self.config_file, self.name = config_file, name
        self.env = env or {}
        directory = os.path.dirname(config_file)
        self.pid_file = os.path.join(directory, f"{name}.pid")
        self.log_file = os.path.join(directory, f"{name}.log")
        self.process = None

    def start(self) -> "WeblessHandler":
        log = open(self.log_file, "ab")
        self.process = subprocess.Popen(
            [os.path.join(REPO, "scripts", "job-handler"), "-c", self.config_file,
             "--server-name", self.name, "--pid-file", self.pid_file],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, **self.env))
        log.close()
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
