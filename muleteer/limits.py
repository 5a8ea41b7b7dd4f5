"""job_conf's <limits>, read once into the shape the handlers use.

Concurrency limits are counted by the store inside the claiming UPDATE (a limit checked
outside that one statement lets one user run far past it); walltime and output_size are
enforced by the handler on its running jobs. A limit may name a destination (`id=`) or a
destination tag (`tag=`: all the destinations with that tag count together).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DestinationLimit:
    name: str                      # the destination id or tag the limit names
    destinations: frozenset[str]   # the destinations it counts together
    maximum: int


@dataclass(frozen=True)
class Limits:
    registered_user: int | None = None   # registered_user_concurrent_jobs
    anonymous_user: int | None = None    # anonymous_user_concurrent_jobs
    destination_user: tuple[DestinationLimit, ...] = ()   # per user, on a destination/tag
    destination_total: tuple[DestinationLimit, ...] = ()  # everyone's, on a destination/tag
    walltime: int | None = None          # seconds
    output_size: int | None = None       # bytes

    @property
    def concurrency(self) -> bool:
        """Whether claims must count running jobs at all."""
        return bool(self.registered_user or self.anonymous_user or self.destination_user
                    or self.destination_total)

    @classmethod
    def from_job_conf(cls, job_conf) -> "Limits":
        if job_conf is None:
            return cls()
        values: dict = {}
        per_user, total = [], []
        for limit in job_conf.limits:
            if limit.type == "registered_user_concurrent_jobs":
                values["registered_user"] = limit.value
            elif limit.type == "anonymous_user_concurrent_jobs":
                values["anonymous_user"] = limit.value
            elif limit.type == "walltime":
                values["walltime"] = limit.value
            elif limit.type == "output_size":
                values["output_size"] = limit.value
            elif limit.type in ("destination_user_concurrent_jobs",
                                "destination_total_concurrent_jobs"):
                name = limit.id or limit.tag
                if not name:
                    continue  # the job configuration refuses such a limit at load
                if limit.id:
                    destinations = frozenset({limit.id})
                else:
                    destinations = frozenset(d.id for d in job_conf.destinations.values()
                                             if limit.tag in (d.tags or ()))
                group = DestinationLimit(name, destinations, limit.value)
                (per_user if limit.type.startswith("destination_user") else total).append(group)
        return cls(destination_user=tuple(per_user), destination_total=tuple(total), **values)
