"""Runners: how a job script is started, watched and stopped on one kind of system."""
import importlib

_MODULES = {"local": ("mules.runners.local", "LocalRunner"),
            "pbs": ("mules.runners.pbs", "PbsRunner"),
            "drmaa": ("mules.runners.drmaa", "DrmaaRunner"),
            "slurm": ("mules.runners.slurm", "SlurmRunner")}


def load_runner(ctx, plugin, handler_name):
    """An instance of the runner a job_conf.xml plugin names (imported on first use:
    a site without DRMAA never imports drmaa)."""
    module_name, class_name = _MODULES[plugin.type]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(ctx, plugin, handler_name)
