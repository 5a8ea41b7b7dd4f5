"""A job as the store returns it, and the states it moves through.

JobState names Galaxy's states; TRANSITIONS is the one table of moves the store allows
(every state change is checked against it in one conditional UPDATE). A Job is a frozen
snapshot of its row: to learn what changed, ask the store again.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import Enum


class JobState(str, Enum):
    NEW = "new"            # written, not yet taken by a handler
    QUEUED = "queued"      # taken by a handler: being started, or waiting in the scheduler
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    DELETING = "deleting"  # a cancel was asked for; its handler is stopping it
    DELETED = "deleted"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.OK, JobState.ERROR, JobState.DELETED})
ACTIVE = frozenset(set(JobState) - TERMINAL)

# Every move a job may make. NEW <- QUEUED/RUNNING is a resubmission (a new attempt);
# QUEUED <- RUNNING a start that never happened (see mules/runners/local.py);
# a job whose cancel was asked for (DELETING) that ends is DELETED, whatever its end.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.NEW: frozenset({JobState.QUEUED, JobState.DELETED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.OK, JobState.ERROR,
                                JobState.DELETING, JobState.DELETED, JobState.NEW}),
    # RUNNING -> QUEUED: recorded running, but its script never passed its gate (its
    # handler died in between): to be started again.
    JobState.RUNNING: frozenset({JobState.OK, JobState.ERROR, JobState.DELETING,
                                 JobState.DELETED, JobState.NEW, JobState.QUEUED}),
    JobState.DELETING: frozenset({JobState.DELETED}),
    JobState.OK: frozenset(),
    JobState.ERROR: frozenset(),
    JobState.DELETED: frozenset(),
}


def sources(target: JobState) -> frozenset[JobState]:
    """The states from which a job may move to `target`."""
    return frozenset(s for s, moves in TRANSITIONS.items() if target in moves)


@dataclass(frozen=True)
class Job:
    id: int
    tool_id: str
    tool_version: str
    state: JobState
    handler_tag: str
    destination_id: str
    runner: str
    command_line: str
    create_time: datetime
    update_time: datetime
    params: dict = field(default_factory=dict)
    handler: str | None = None
    external_id: str | None = None
    exit_code: int | None = None
    info: str | None = None
    working_directory: str | None = None
    queued_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    attempt: int = 1
    resubmit: list = field(default_factory=list)  # the <resubmit> rules this attempt follows
    user_id: int | None = None
    lease: int = 0
    idempotency_key: str | None = None
    not_before: datetime | None = None  # a resubmitted attempt waits for its delay
    stdout: str | None = None  # the end of its stdout and stderr, kept when it ended
    stderr: str | None = None
    command_version: str | None = None  # what the tool's <version_command> printed
    # What a dynamic rule or the job's resource choices set on its destination's params.
    destination_params: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row) -> "Job":
        """A job from a row of the `job` table (a mapping); JSON columns parsed."""
        if not isinstance(row, dict):
            row = dict(row)  # a RowMapping's lookups cost more than a dict's
        values = {name: row[name] for name in _field_names(cls) if name in row}
        values["state"] = JobState(values["state"])
        values["params"] = json.loads(values.get("params") or "{}")
        values["resubmit"] = json.loads(values.get("resubmit") or "[]")
        values["destination_params"] = json.loads(values.get("destination_params") or "{}")
        return cls(**values)

    def with_(self, **changes) -> "Job":
        return replace(self, **changes)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


@functools.lru_cache(maxsize=None)
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))
