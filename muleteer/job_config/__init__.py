"""The job configuration: which handler and which destination each tool's jobs go to.

Three sources, one model (model.py), one set of rules (build.py):
- job_conf.xml, Galaxy's XML schema, with Galaxy's `<macros>` (xml.py, macros.py);
- job_conf.yml, Galaxy 21+'s YAML (yaml.py);
- the same mapping inline as `job_config:` in galaxy.yml's `galaxy:` section (it wins over
  job_config_file, as in Galaxy).
Runner plugins and destinations are checked against the runners' specs, which the caller
passes (the core never imports mules/). Every error names the file, the line and the
element or key path, and stops start-up: a half-understood job configuration runs jobs in
the wrong place. So are the rules of dynamic destinations (muleteer/job_rules.py: imported
when the configuration loads) and the job resource params its `resources` groups name
(muleteer/job_resources.py).
"""
from __future__ import annotations

from typing import Mapping

from muleteer.job_config.build import (build_job_config, destination_from_url, log_warnings,
                                       parse_size, parse_walltime)
from muleteer.job_config.model import (ASSIGN_METHODS, DYNAMIC, LIMIT_TYPES, RESUBMIT_CONDITIONS,
                                       TOOL_CLASSES, Destination, Handler, JobConfError,
                                       JobConfig, Limit, Plugin, ToolMapping)
from muleteer.job_resources import ResourceParams, ResourceParamsError, load_resource_params
from muleteer.runner_spec import RunnerSpec

__all__ = ["ASSIGN_METHODS", "DYNAMIC", "LIMIT_TYPES", "RESUBMIT_CONDITIONS", "TOOL_CLASSES",
           "Destination", "Handler", "JobConfError", "JobConfig", "Limit", "Plugin", "ToolMapping",
           "destination_from_url", "load_job_conf", "load_inline_job_conf", "load_job_config",
           "parse_size", "parse_walltime"]


def is_yaml(path: str) -> bool:
    if path.endswith((".yml", ".yaml")):
        return True
    if path.endswith(".xml"):
        return False
    try:
        with open(path, "rb") as fh:
            return not fh.read(512).lstrip().startswith(b"<")
    except OSError:
        return False  # the XML reader says it cannot be read


def load_job_conf(path: str, specs: Mapping[str, RunnerSpec],
                  resource_params: ResourceParams | None = None) -> JobConfig:
    """A job configuration file, XML or YAML (by its name: .yml/.yaml, else .xml, else its
    first character), checked against the runners' `specs` {type: RunnerSpec}; its
    `resources` groups name `resource_params` (None: not checked)."""
    if is_yaml(path):
        from muleteer.job_config.yaml import read_yaml
        data, locator = read_yaml(path)
    else:
        from muleteer.job_config.xml import read_xml
        data, locator = read_xml(path)
    conf = build_job_config(data, locator, specs, resource_params)
    log_warnings(conf)
    return conf


def load_inline_job_conf(config_file: str, data: dict, specs: Mapping[str, RunnerSpec],
                         resource_params: ResourceParams | None = None) -> JobConfig:
    """galaxy.yml's `job_config:` mapping; errors name galaxy.yml and `galaxy.job_config.<key>`."""
    from muleteer.config import _galaxy_section
    from muleteer.job_config.yaml import inline_locator
    conf = build_job_config(data, inline_locator(config_file, data, _galaxy_section), specs,
                            resource_params)
    log_warnings(conf)
    return conf


def load_job_config(config, specs: Mapping[str, RunnerSpec]) -> JobConfig:
    """The job configuration galaxy.yml names (inline `job_config`, else job_config_file),
    with galaxy.yml's job resource params (job_resource_params_file; missing: none)."""
    try:
        resource_params = load_resource_params(getattr(config, "job_resource_params_file", ""))
    except ResourceParamsError as exc:
        raise JobConfError(str(exc)) from None
    if config.job_config is not None:
        return load_inline_job_conf(config.config_file, config.job_config, specs, resource_params)
    return load_job_conf(config.job_config_file, specs, resource_params)
