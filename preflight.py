"""Imported by the uWSGI master before it forks (galaxy.yml: `shared-import: preflight`):
galaxy.yml's `galaxy:` section, the job configuration and the job metrics configuration,
loaded as every web worker and mule loads them, and the handlers jobs are sent to, checked
against the mules and workers uWSGI runs. On an error the master prints it (file, line,
setting) and exits 1.

Without this a bad file starts the master anyway: each web worker and mule fails on the
same error, and uWSGI respawns them for ever (need-app does not stop a lazy-apps server).
./run.sh runs the whole check (python -m check, which also opens the database) first; this
covers `uwsgi --yaml galaxy.yml` run by hand or by a service manager. Nothing is opened or
created here (the master forks afterwards): no database, no toolbox, no thread.

A composition root like check.py and wsgi.py: it joins app/ and mules/ without either
importing the other.
"""
import os
import sys

from app.dispatch import Dispatcher
from muleteer import uwsgi_env
from muleteer.config import ConfigError, load_config
from muleteer.job_config import JobConfError, load_job_config
from muleteer.job_metrics import load_job_metrics
from mules.runners import RUNNER_SPECS


def check(config_file: str | None) -> str | None:
    """The first configuration error, or None."""
    try:
        config = load_config(config_file)
        job_conf = load_job_config(config, RUNNER_SPECS)
        load_job_metrics(config)
        Dispatcher(job_conf)  # under uWSGI: every handler named is a mule or worker it runs
    except (ConfigError, JobConfError) as exc:
        return str(exc)
    return None


if uwsgi_env.running():
    error = check(uwsgi_env.config_file())
    if error:
        print(f"muleteer: configuration error: {error}", file=sys.stderr, flush=True)
        # Not sys.exit: the python plugin would print a traceback of it and go on.
        os._exit(1)
