"""`python -m app.check [galaxy.yml]`: load the whole configuration and create or
migrate the database, printing a plain error (file, line, setting) on failure.
run.sh calls it before starting uWSGI so a bad file never half-starts a server."""
import sys

from app.config import ConfigError
from app.context import build_context
from app.job_conf import JobConfError
from app.tools import ToolError


def main(argv: list[str]) -> int:
    config_file = argv[1] if len(argv) > 1 else None
    try:
        ctx = build_context(config_file)
    except (ConfigError, JobConfError, ToolError) as exc:
        print(f"muleteer: configuration error: {exc}", file=sys.stderr)
        return 1
    conf = ctx.job_conf
    print(f"muleteer: {ctx.config.config_file} OK: {len(ctx.tools)} tools, "
          f"{len(conf.destinations)} destinations (default {conf.default_destination}), "
          f"database {ctx.store.url.render_as_string(hide_password=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
