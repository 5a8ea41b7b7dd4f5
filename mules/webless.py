"""A job handler without uWSGI or a web stack: `scripts/job-handler`.

    scripts/job-handler -c galaxy.yml --server-name handler0 [--daemon] [--pid-file F] [--log-file F]

The name must be a <handler id="..."> of job_conf.xml; the handler takes jobs sent to that
id or to its tags. Nothing is messaged to it: it grabs rows from the database each
job_handler_monitor_sleep (FOR UPDATE SKIP LOCKED on PostgreSQL), so handlers on several
hosts can share one PostgreSQL database. SIGTERM or SIGINT stops it: it takes no new job,
leaves running ones to be re-attached, and exits.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from muleteer.config import ConfigError
from muleteer.context import build_context
from muleteer.job_config import JobConfError
from muleteer.tools import ToolError
from mules.handler_loop import JobHandler
from mules.runners import RUNNER_SPECS


class DatabaseInbox:
    """No messages: wait until the next sweep (or until told to stop)."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def get(self, timeout: float):
        self.stop.wait(timeout)
        return None


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="job-handler", description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", default=os.environ.get("MULETEER_CONFIG", "galaxy.yml"))
    parser.add_argument("--server-name", required=True, help="a <handler id> of job_conf.xml")
    parser.add_argument("--daemon", action="store_true", help="run in the background")
    parser.add_argument("--pid-file", help="default: database/<server-name>.pid")
    parser.add_argument("--log-file", help="default: database/<server-name>.log (with --daemon)")
    return parser.parse_args(argv)


def running_pid(pid_file: str) -> int | None:
    try:
        with open(pid_file) as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def daemonize(log_file: str) -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config_dir = os.path.dirname(os.path.abspath(args.config))
    pid_file = args.pid_file or os.path.join(config_dir, "database", f"{args.server_name}.pid")
    log_file = args.log_file or os.path.join(config_dir, "database", f"{args.server_name}.log")
    try:
        ctx = build_context(args.config, runner_specs=RUNNER_SPECS)
    except (ConfigError, JobConfError, ToolError) as exc:
        print(f"job-handler: configuration error: {exc}", file=sys.stderr)
        return 1
    if args.server_name not in ctx.job_conf.handlers:
        print(f"job-handler: {args.server_name!r} is not a <handler id> in {ctx.job_conf.path} "
              f"(defined: {', '.join(ctx.job_conf.handlers) or 'none'})", file=sys.stderr)
        return 1
    pid = running_pid(pid_file)
    if pid:
        print(f"job-handler: {args.server_name} is already running (pid {pid}, {pid_file})",
              file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(pid_file), exist_ok=True)
    if args.daemon:
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
        daemonize(log_file)
    with open(pid_file, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    ctx.store.after_fork()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    handler = JobHandler(ctx, args.server_name, ctx.job_conf.handler_tags(args.server_name),
                         strategy="webless", inbox=DatabaseInbox(stop))
    try:
        handler.run(stop)
    finally:
        if running_pid(pid_file) == os.getpid():
            os.unlink(pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
