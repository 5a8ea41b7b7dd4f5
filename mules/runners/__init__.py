"""Runners: how a job script is started, watched and stopped on one kind of system.

The registry: one line per runner, its module's SPEC (a RunnerSpec, declared as data at
the module's top: type, plugin and destination params, legacy URL form) and its class. A
new runner is one module here plus one line below. Importing a runner module is cheap (the
drmaa module and the DRM's library load when a handler first starts the drmaa runner).

RUNNER_SPECS is what a composition root (wsgi.py, check.py, mules/handler.py,
mules/webless.py) passes to build_context: the job configuration is checked against it at
load, so a bad plugin param stops start-up instead of failing a job.
"""
from mules.runners import drmaa, local, pbs, slurm

RUNNERS = {spec.type: (spec, cls) for spec, cls in (
    (local.SPEC, local.LocalRunner),
    (pbs.SPEC, pbs.PbsRunner),
    (drmaa.SPEC, drmaa.DrmaaRunner),
    (slurm.SPEC, slurm.SlurmRunner),
)}
RUNNER_SPECS = {runner_type: spec for runner_type, (spec, _) in RUNNERS.items()}


def load_runner(ctx, plugin, handler_name):
    """An instance of the runner a job configuration's plugin names."""
    _, cls = RUNNERS[plugin.type]
    return cls(ctx, plugin, handler_name)
