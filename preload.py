"""Imported once by the uWSGI master before it forks the web workers and mules
(galaxy.yml: `shared-import: preload`): the libraries every one of them loads, so each
starts in a fraction of the time and shares their pages copy-on-write. Only imports: no
app, no database connection, no thread may start here (the master forks afterwards; the
app itself is loaded in each worker, lazy-apps). Not Galaxy's tool parser: under uWSGI the
toolbox is parsed by a child process (muleteer/tools/toolbox_apart.py), so no web worker
or mule carries it."""
import Cheetah.Template  # noqa: F401
import flask  # noqa: F401
import lxml.etree  # noqa: F401
import sqlalchemy  # noqa: F401
import yaml  # noqa: F401
