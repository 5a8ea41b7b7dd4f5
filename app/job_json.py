"""The JSON shape of a job in the API (and the pages' live tables)."""
from __future__ import annotations

import re

from muleteer.job import Job
from muleteer.store import iso


def job_json(job: Job, *, full: bool = False) -> dict:
    d = {
        "id": job.id, "tool_id": job.tool_id, "tool_version": job.tool_version,
        "state": job.state.value, "handler": job.handler or job.handler_tag,
        "handler_tag": job.handler_tag, "destination": job.destination_id,
        "runner": job.runner, "external_id": job.external_id, "exit_code": job.exit_code,
        "user_id": job.user_id, "attempt": job.attempt, "info": job.info,
        "create_time": iso(job.create_time), "queued_time": iso(job.queued_time),
        "start_time": iso(job.start_time), "end_time": iso(job.end_time),
        "update_time": iso(job.update_time), "command_version": job.command_version,
    }
    if full:
        d["params"] = job.params
        d["command_line"] = job.command_line
        # What a dynamic rule or the user's resource choices set on its destination.
        d["destination_params"] = job.destination_params
    return d


def job_datasets_json(store, job: Job, tool=None) -> dict:
    """A job's datasets: {"inputs": {param's flat path: {"id", "name", "format", "size",
    "state"}, or a list of them for a multiple param}, "outputs": {output name: {...}}}
    (provenance)."""
    multiple = [re.compile(re.escape(pattern).replace("%d", r"\d+")) for pattern, param in
                (tool.data_params() if tool else []) if param.multiple]
    result: dict = {"inputs": {}, "outputs": {}}
    for link in store.job_datasets(job_id=job.id):
        dataset = store.get_dataset(link["dataset_id"])
        if dataset is None:
            continue
        entry = {"id": dataset.id, "name": dataset.name, "format": dataset.format,
                 "size": dataset.size, "state": str(dataset.state)}
        if link["role"] == "output":
            result["outputs"][link["name"]] = entry
        elif any(p.fullmatch(link["name"]) for p in multiple):
            result["inputs"].setdefault(link["name"], []).append(entry)
        else:
            result["inputs"][link["name"]] = entry
    return result
