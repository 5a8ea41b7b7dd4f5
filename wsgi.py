"""The WSGI entry point uWSGI loads (`module: wsgi:application` in galaxy.yml): the web side
(app/) with, in each web worker, its embedded job handler main.web.N (mules/embedded.py),
and the runner registry's specs, against which the job configuration is checked. With
check.py (run.sh's configuration check), the only modules that join the two sides; neither
imports the other."""
import sys

from app import create_app
from mules.embedded import start_web_handler
from mules.runners import RUNNER_SPECS
from muleteer.config import ConfigError
from muleteer.job_config import JobConfError
from muleteer.tools import ToolError

try:
    application = create_app(on_worker_start=start_web_handler, runner_specs=RUNNER_SPECS)
except (ConfigError, JobConfError, ToolError) as exc:
    # A configuration error stops start-up (galaxy.yml sets need-app) with a plain message.
    print(f"muleteer: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
