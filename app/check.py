"""The configuration check, run as `python -m check [galaxy.yml] [--handlers]` (check.py
beside wsgi.py passes the runner registry's specs, which the web side does not import):
load the whole configuration and create or migrate the database, printing a plain error
(file, line, setting) on failure. run.sh calls it before starting uWSGI so a bad file never
half-starts a server; with --handlers it lists the handlers and their heartbeats from the
database (run.sh --status)."""
import sys
from typing import Mapping

from app.accounts import Accounts, ensure_first_admin
from muleteer.config import ConfigError
from muleteer.context import build_context
from muleteer.job_config import JobConfError
from muleteer.runner_spec import RunnerSpec
from muleteer.tools import ToolError


def main(argv: list[str], runner_specs: Mapping[str, RunnerSpec]) -> int:
    show_handlers = "--handlers" in argv
    argv = [a for a in argv if a != "--handlers"]
    config_file = argv[1] if len(argv) > 1 else None
    try:
        ctx = build_context(config_file, runner_specs=runner_specs)
    except (ConfigError, JobConfError, ToolError) as exc:
        print(f"muleteer: configuration error: {exc}", file=sys.stderr)
        return 1
    conf = ctx.job_conf
    message = ensure_first_admin(Accounts(ctx.store.engine, ctx.config.admin_users.split(",")),
                                 ctx.config)
    if message:
        print(message)
    if show_handlers:
        for h in ctx.store.handlers():
            jobs = ", ".join(f"{state} {n}" for state, n in sorted(h["jobs"].items())) or "no jobs"
            print(f"  {h['name']:24} {h['strategy']:8} {h['host']}:{h['pid']:<8} "
                  f"last seen {h['last_seen']:%Y-%m-%d %H:%M:%S}  {jobs}")
        return 0
    for error in ctx.tools.errors:  # skipped wrappers: the server starts without them
        print(f"muleteer: tool skipped: {error}", file=sys.stderr)
    print(f"muleteer: {ctx.config.config_file} OK: {len(ctx.tools)} tools"
          f"{f' ({len(ctx.tools.errors)} skipped)' if ctx.tools.errors else ''}, "
          f"{len(conf.destinations)} destinations (default {conf.default_destination}), "
          f"database {ctx.store.url.render_as_string(hide_password=True)}")
    return 0


if __name__ == "__main__":
    sys.exit("muleteer: run `python -m check` (check.py, beside wsgi.py): the check needs the "
             "runner registry, which the web side does not import")
