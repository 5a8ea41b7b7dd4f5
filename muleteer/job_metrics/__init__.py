"""Job metrics as Galaxy's job metrics plugins collect them.

galaxy.yml's `job_metrics_config_file` (job_metrics_conf.xml beside galaxy.yml; a .yml
file in Galaxy's YAML form) lists the plugins; without the file, the core plugin alone,
as in Galaxy. The job script runs each plugin's lines around the tool's command
(JobMetrics.script_before/script_after, in every runner's script); at the job's end the
handler reads what they wrote (collect), adds what its runner saw the job use, and the
store keeps them in Galaxy's tables. The API and the job page show them as Galaxy does
(shown): a title and a value in words, filtered by who is asking.

Plugins: core (cores and memory granted, start, end, runtime), cgroup (peak memory and
CPU time: muleteer/job_metrics/cgroup.py), hostname, uname, cpuinfo, meminfo, env.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Sequence

from muleteer.job_files import JobFiles
from muleteer.job_metrics.cgroup import (CPU_TIME_NAMES, PEAK_MEMORY_NAMES, Cgroup,
                                         with_usage)
from muleteer.job_metrics.conf import JobMetricsConfError, PluginConf, read_conf
from muleteer.job_metrics.plugins import Core, CpuInfo, Env, Hostname, MemInfo, Plugin, Uname
from muleteer.job_metrics.values import JobMetric, Safety, ShownMetric, raw_value

__all__ = ["CPU_TIME_NAMES", "PEAK_MEMORY_NAMES", "JobMetric", "JobMetrics",
           "JobMetricsConfError", "Safety", "ShownMetric", "load_job_metrics"]

log = logging.getLogger(__name__)

PLUGINS: dict[str, type[Plugin]] = {p.type: p for p in (Core, Cgroup, Hostname, Uname, CpuInfo,
                                                         MemInfo, Env)}
DEFAULT_FILE = "job_metrics_conf.xml"


class JobMetrics:
    """The configured plugins, in the file's order."""

    def __init__(self, plugins: Sequence[Plugin] = (), source: str | None = None):
        self.plugins = tuple(plugins)
        self.source = source  # the file they came from; None: the default (core)

    @classmethod
    def default(cls) -> "JobMetrics":
        """Galaxy's without a file: the core plugin alone."""
        return cls([Core(PluginConf("core"))])

    @classmethod
    def disabled(cls) -> "JobMetrics":
        """A destination's `metrics="false"` (Galaxy's): no plugin, no lines, no metrics."""
        return cls([], source="disabled")

    def __eq__(self, other) -> bool:
        # The same plugins with the same settings, wherever they were written: the same
        # setup in job_conf.xml and job_conf.yml loads into equal destinations.
        if not isinstance(other, JobMetrics):
            return NotImplemented
        return self._settings() == other._settings()

    __hash__ = None

    def _settings(self) -> list:
        return [(p.type, p.conf.attributes) for p in self.plugins]

    @classmethod
    def from_confs(cls, confs: Iterable[PluginConf], source: str | None = None) -> "JobMetrics":
        plugins, seen = [], {}
        for conf in confs:
            kind = PLUGINS.get(conf.type)
            if kind is None:
                conf.fail(f"no such job metrics plugin here (available: {', '.join(PLUGINS)})")
            if conf.type in seen:
                conf.fail(f"listed twice (first at line {seen[conf.type]})")
            seen[conf.type] = conf.line
            plugins.append(kind(conf))
        return cls(plugins, source)

    # -- in the job script ------------------------------------------------------------
    def script_before(self) -> list[str]:
        """Lines before the tool's command; core's clock last, so the runtime is the
        command's own."""
        return [line for p in self.plugins if p.type != Core.type for line in p.before()] + \
            [line for p in self.plugins if p.type == Core.type for line in p.before()]

    def script_after(self) -> list[str]:
        """Lines after the tool's command; core's clock first."""
        return [line for p in self.plugins if p.type == Core.type for line in p.after()] + \
            [line for p in self.plugins if p.type != Core.type for line in p.after()]

    # -- at the job's end --------------------------------------------------------------
    def collect(self, files: JobFiles, max_rss_bytes: int | None = None,
                cpu_seconds: float | None = None) -> list[JobMetric]:
        """The job's metrics from its directory, with its runner's figures (peak memory in
        bytes, CPU seconds) where the job's own cgroup gave none; nothing at all with no
        plugin (a destination's metrics="false": Galaxy records none). Never raises:
        metrics never fail a job."""
        if not self.plugins:
            return []
        found: list[JobMetric] = []
        if files.exists():
            for plugin in self.plugins:
                try:
                    found += plugin.read(files)
                except Exception:  # a bug or an odd file: the job's end matters more
                    log.exception("job metrics: plugin %s failed on %s", plugin.type,
                                  files.directory)
        return with_usage(found, max_rss_bytes, cpu_seconds)

    # -- for the API and the job page ----------------------------------------------------
    def shown(self, metrics: Iterable[JobMetric], allowed: Safety) -> list[ShownMetric]:
        """The metrics as Galaxy's API gives them, those of plugins at least as safe as
        `allowed`, grouped in the configured plugins' order. A metric of a plugin no
        longer configured is shown with that plugin's words; of an unknown one, as is."""
        order = {p.type: i for i, p in enumerate(self.plugins)}
        rows = []
        for metric in sorted(metrics, key=lambda m: order.get(m.plugin, len(order))):
            kind = PLUGINS.get(metric.plugin)
            safety = kind.safety if kind else Safety.POTENTIALLY_SENSITIVE
            if safety < allowed:
                continue
            try:
                title, value = (kind or Plugin).show(metric.name, metric.value)
            except (TypeError, ValueError, OverflowError):
                title, value = metric.name, raw_value(metric.value)
            rows.append(ShownMetric(metric.plugin, metric.name, raw_value(metric.value), value,
                                    title))
        return rows


def load_job_metrics(config) -> JobMetrics:
    """The plugins galaxy.yml's job_metrics_config_file lists. A missing file at the
    default place means the core plugin alone (as Galaxy); a file named in galaxy.yml
    that does not exist is an error (a typo would otherwise silently collect less)."""
    path = config.job_metrics_config_file
    if not path or not os.path.exists(path):
        if path and path != config.resolve(DEFAULT_FILE):
            raise JobMetricsConfError(f"{config.config_file}: galaxy.job_metrics_config_file: "
                                      f"{path} does not exist")
        return JobMetrics.default()
    return JobMetrics.from_confs(read_conf(path), source=path)
