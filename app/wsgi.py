"""The WSGI entry point uWSGI loads: `module: app.wsgi:application` in galaxy.yml."""
import sys

from app import create_app
from app.config import ConfigError
from app.job_conf import JobConfError
from app.tools import ToolError

try:
    application = create_app()
except (ConfigError, JobConfError, ToolError) as exc:
    # A configuration error stops start-up (galaxy.yml sets need-app) with a plain message.
    print(f"muleteer: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
