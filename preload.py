"""Imported once by the uWSGI master before it forks the web workers and mules
(galaxy.yml: `shared-import: preload`): the libraries every one of them loads, so each
starts in a fraction of the time and shares their pages copy-on-write. Only imports: no
app, no database connection, no thread may start here (the master forks afterwards; the
app itself is loaded in each worker, lazy-apps)."""
import alembic.command  # noqa: F401
import Cheetah.Template  # noqa: F401
import flask  # noqa: F401
import galaxy.tool_util.parser  # noqa: F401  (the largest: ~0.8 s per process)
import lxml.etree  # noqa: F401
import sqlalchemy  # noqa: F401
import yaml  # noqa: F401
