"""The job configuration as Muleteer uses it, whichever file it came from (job_conf.xml,
job_conf.yml, or `job_config:` inline in galaxy.yml): plugins (runners), handlers,
destinations (Galaxy 21+'s "execution environments"), tool mappings, limits, and the
groups of job resource parameters tools offer."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from muleteer.job_metrics import JobMetrics

ASSIGN_METHODS = ("mem-self", "db-self", "db-preassign", "db-transaction-isolation",
                  "db-skip-locked", "uwsgi-mule-message")
LIMIT_TYPES = ("registered_user_concurrent_jobs", "anonymous_user_concurrent_jobs",
               "destination_user_concurrent_jobs", "destination_total_concurrent_jobs",
               "walltime", "output_size")
RESUBMIT_CONDITIONS = ("walltime_reached", "memory_limit_reached", "any_failure",
                       "unknown_error", "attempt")
TOOL_CLASSES = ("local", "requires_galaxy", "user_defined")  # Galaxy's tool classes
# Galaxy's runner of dynamic destinations: no plugin runs their jobs, a rule picks where
# they run (muleteer/job_rules.py) when a handler starts them.
DYNAMIC = "dynamic"


class JobConfError(Exception):
    """The job configuration is invalid; the message names the file, line and what is wrong
    (the element in XML, the key path in YAML)."""


@dataclass
class Plugin:
    id: str
    type: str  # a runner type of the registry: local, pbs, drmaa, slurm
    workers: int
    params: dict = field(default_factory=dict)  # checked against the runner's spec, typed


@dataclass
class Destination:
    id: str
    runner: str  # a plugin id
    params: dict = field(default_factory=dict)
    env: list = field(default_factory=list)  # dicts: {"name", "value"} | {"file"} | {"exec"}
    resubmit: list = field(default_factory=list)  # dicts: condition, destination, handler, delay
    tags: tuple = ()
    # Galaxy's per-destination job metrics (metrics="false" or a file, a <job_metrics>
    # element, YAML's `metrics:`); None: galaxy.yml's job_metrics_config_file.
    job_metrics: JobMetrics | None = None

    @property
    def dynamic(self) -> bool:
        """A rule picks where its jobs run (params: function, rules_module, the rule's own)."""
        return self.runner == DYNAMIC


@dataclass
class Handler:
    id: str
    tags: tuple = ()


@dataclass
class ToolMapping:
    id: str  # a tool id (or, in JobConfig.tool_classes, a tool class)
    handler: str | None = None
    destination: str | None = None
    resources: str | None = None  # the id of the resource group its form offers


@dataclass
class Limit:
    type: str
    value: object
    id: str | None = None
    tag: str | None = None


@dataclass
class JobConfig:
    path: str = field(compare=False)  # the file it came from (galaxy.yml if inline)
    plugins: dict
    destinations: dict
    default_destination: str
    handlers: dict
    default_handler: str | None
    assign: tuple  # Galaxy's handler assignment methods, in the order given (may be empty)
    tools: dict
    limits: list
    tool_classes: dict = field(default_factory=dict)
    max_grab: int | None = None
    ready_window_size: int | None = None
    warnings: list = field(default_factory=list, compare=False)  # logged at load
    # Galaxy's job resource parameters (job_resource_params_conf.xml): name -> a tool Param,
    # in the file's order; and the `resources` groups of them: id -> names.
    resource_params: dict = field(default_factory=dict)
    resource_groups: dict = field(default_factory=dict)
    default_resource_group: str | None = None

    @property
    def assign_with(self) -> str | None:
        """The first assignment method (job_conf.xml's `assign_with`), None if none is set."""
        return self.assign[0] if self.assign else None

    def handler_for(self, tool_id: str) -> str | None:
        """The handler id or tag this tool's jobs go to; None means "the deployment's default"."""
        mapping = self.tools.get(tool_id)
        if mapping and mapping.handler:
            return mapping.handler
        return self.default_handler

    def destination_for(self, tool_id: str) -> Destination:
        mapping = self.tools.get(tool_id)
        ref = mapping.destination if mapping and mapping.destination else self.default_destination
        return self.resolve_destination(ref)

    def resources_for(self, tool_id: str) -> tuple:
        """The resource params (tool Params) a tool's form offers: its mapping's group, else
        the default group (Galaxy's get_tool_resource_xml); () for none."""
        mapping = self.tools.get(tool_id)
        group = mapping.resources if mapping and mapping.resources else self.default_resource_group
        names = self.resource_groups.get(group, ()) if group else ()
        return tuple(self.resource_params[n] for n in names if n in self.resource_params)

    def destination_of(self, job) -> Destination:
        """The destination a job runs on: its destination_id's, with the params a dynamic
        rule or the job's resource choices set (job.destination_params) over its own.
        KeyError if the destination is no longer configured."""
        destination = self.resolve_destination(job.destination_id)
        if not job.destination_params:
            return destination
        return replace(destination, params={**destination.params, **job.destination_params})

    def resolve_destination(self, ref: str) -> Destination:
        if ref in self.destinations:
            return self.destinations[ref]
        tagged = [d for d in self.destinations.values() if ref in d.tags]
        if tagged:
            return tagged[0]
        raise KeyError(ref)

    def handler_tags(self, handler_id: str) -> tuple:
        handler = self.handlers.get(handler_id)
        return handler.tags if handler else ()
