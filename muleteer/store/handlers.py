"""Handlers: heartbeats, and what each handler holds (for /api/handlers and adoption)."""
from __future__ import annotations

import os
import socket
from datetime import datetime

from sqlalchemy import func, insert, select, union_all, update

from muleteer.job import ACTIVE, JobState
from muleteer.models import handler as handler_table, job
from muleteer.store.database import utcnow


class Heartbeats:
    def heartbeat(self, name: str, tags, strategy: str, messages_failed: int = 0,
                  sweep_seconds: float | None = None, starting: bool = False) -> None:
        """Record that handler `name` is alive; `starting` marks a (re)start of it."""
        now = utcnow()
        values = dict(tags=",".join(tags), strategy=strategy, host=socket.gethostname(),
                      pid=os.getpid(), last_seen=now, messages_failed=messages_failed,
                      sweep_seconds=sweep_seconds)
        if starting:
            values["started"] = now
        with self.engine.begin() as conn:
            updated = conn.execute(update(handler_table).where(handler_table.c.name == name)
                                   .values(**values)).rowcount
            if not updated:
                conn.execute(insert(handler_table).values(**{"started": now, **values, "name": name}))

    def handlers(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(handler_table).order_by(handler_table.c.name)).mappings()]
            # Each handler's load: its active jobs only (its ended ones would be a scan of
            # every job it ever ran), one SELECT per state: SQLite answers `state = ?` from
            # the (handler, state) index by a skip-scan, but reads all of it for `IN`.
            counts = conn.execute(union_all(*(
                select(job.c.handler, job.c.state, func.count())
                .where(job.c.state == state, job.c.handler.is_not(None))
                .group_by(job.c.handler, job.c.state) for state in sorted(ACTIVE)))).all()
            waiting = conn.execute(select(job.c.handler_tag, func.count())
                                   .where(job.c.state == JobState.NEW, job.c.handler.is_(None))
                                   .group_by(job.c.handler_tag)).all()
        by_handler = {}
        for name, state, count in counts:
            by_handler.setdefault(name, {})[state] = count
        unclaimed = dict(waiting)
        for row in rows:
            row["jobs"] = by_handler.get(row["name"], {})
            targets = {row["name"], *row["tags"].split(",")} - {""}
            row["unclaimed"] = sum(unclaimed.get(t, 0) for t in targets)
        return rows

    def handler_heartbeats(self) -> dict[str, tuple[datetime, tuple[str, ...]]]:
        """Every handler's last heartbeat and tags: name -> (last_seen, tags)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(handler_table.c.name, handler_table.c.last_seen,
                                       handler_table.c.tags)).all()
        return {name: (seen, tuple(t for t in tags.split(",") if t)) for name, seen, tags in rows}
