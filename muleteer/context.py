"""Everything loaded from the configuration, shared by the web side and the handlers."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Mapping

from muleteer import uwsgi_env
from muleteer.config import Config, load_config
from muleteer.job_config import JobConfig, load_job_config
from muleteer.job_metrics import JobMetrics, load_job_metrics
from muleteer.job_resources import with_job_resources
from muleteer.runner_spec import RunnerSpec
from muleteer.store import JobStore
from muleteer.tools.toolbox import Toolbox, load_toolbox
from muleteer.tools.toolbox_apart import load_toolbox_apart

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    config: Config
    job_conf: JobConfig
    tools: Toolbox
    store: JobStore
    # The job metrics plugins (job_metrics_config_file): their lines in every job script
    # (BaseRunner.script_parts), collected at each job's end (mules/lifecycle.py).
    job_metrics: JobMetrics = field(default_factory=JobMetrics.default)

    def metrics_for(self, destination) -> JobMetrics:
        """The plugins of a job at `destination`: its own (Galaxy's per-destination metrics)
        or galaxy.yml's."""
        own = getattr(destination, "job_metrics", None)
        return own if own is not None else self.job_metrics


def build_context(config_file: str | None = None, overrides: dict | None = None,
                  migrate: bool = True, *, runner_specs: Mapping[str, RunnerSpec]) -> AppContext:
    """Load galaxy.yml, the job configuration and the tools; open (and migrate) the store.

    runner_specs ({type: RunnerSpec}, the runner registry's) judge the job configuration's
    runners and destinations: the caller passes them, as the core never imports mules/.
    Any error here is a configuration error and stops start-up with its message.
    """
    config = load_config(config_file, overrides)
    # Before anything is created: the database, the secret key, job directories, logs, and
    # every job process (which inherits it) stay unreadable to other local accounts. The
    # uWSGI master has galaxy.yml's own `umask:` (set before it binds its sockets).
    if config.umask is not None:
        os.umask(config.umask)
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    job_conf = load_job_config(config, runner_specs)
    job_metrics = load_job_metrics(config)
    # A broken wrapper is skipped with its file and line (the toolbox logs it); the rest
    # load. Only a malformed tool_conf.xml, the admin's own file, stops start-up.
    tool_conf = getattr(config, "tool_config_file", None)
    if uwsgi_env.running():  # a web worker or a mule: Galaxy's parser stays out of it
        tools = load_toolbox_apart(config.tool_path, tool_conf, config.resolve("database"))
    else:
        tools = load_toolbox(config.tool_path, tool_conf)
    # Galaxy's "Job Resource Parameters": the tools the job configuration gives a resources
    # group get its conditional as their last input (muleteer/job_resources.py).
    tools = with_job_resources(tools, job_conf)
    for tool_id in job_conf.tools:
        if tool_id not in tools:
            log.warning("%s maps tool %r, which is not under %s", job_conf.path, tool_id,
                        config.tool_path)
    store = JobStore(config.database_connection, config.database_engine_options)
    if migrate:
        store.migrate()
    return AppContext(config=config, job_conf=job_conf, tools=tools, store=store,
                      job_metrics=job_metrics)
