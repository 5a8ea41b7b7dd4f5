"""Which of a job's metrics the caller may see, for the API and the job page: all of them
for admins; for the job's owner the safe plugins' (core, cgroup) and, where galaxy.yml's
expose_potentially_sensitive_job_metrics says so, those that describe the machine
(hostname, uname, cpuinfo, meminfo), as Galaxy decides."""
from __future__ import annotations

from flask import current_app

from app.auth import is_admin
from muleteer.job_metrics import Safety, ShownMetric


def shown_metrics(job) -> list[ShownMetric]:
    ctx = current_app.extensions["muleteer"]
    if is_admin():
        allowed = Safety.UNSAFE
    elif ctx.config.expose_potentially_sensitive_job_metrics:
        allowed = Safety.POTENTIALLY_SENSITIVE
    else:
        allowed = Safety.SAFE
    return ctx.job_metrics.shown(ctx.store.job_metrics(job.id), allowed)
