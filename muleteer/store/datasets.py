"""Datasets in the store: write one (with its bytes put in place in the same transaction),
read, list, mark deleted, disk usage for quotas, and which jobs use a dataset."""
from __future__ import annotations

from sqlalchemy import and_, func, select, update

from muleteer.dataset import ROLES, Dataset, DatasetSource, DatasetState, metadata_json
from muleteer.job import ACTIVE
from muleteer.models import dataset, galaxy_user, job, job_dataset
from muleteer.store.database import utcnow


class QuotaExceeded(Exception):
    """The new dataset would take its owner over user_quota; nothing was written."""

    def __init__(self, usage: int, size: int, quota: int):
        super().__init__(f"this dataset ({size} bytes) would exceed your disk quota: "
                         f"{usage} of {quota} bytes used")
        self.usage, self.size, self.quota = usage, size, quota


class Datasets:
    def create_dataset(self, *, user_id: int, name: str, format: str, size: int, sha256: str,
                       source: str = "upload", job_id: int | None = None,
                       output_name: str | None = None, peek: str | None = None,
                       metadata: dict | None = None, quota: int | None = None,
                       place=None) -> Dataset:
        """Write a dataset's row. `place(dataset_id)` (dataset_files: rename the staged
        bytes to their final name) runs inside the transaction, so the row is committed only
        with its bytes in place, and a failing `place` writes no row. With a `quota`, the
        owner's usage is checked in the same transaction: QuotaExceeded."""
        now = utcnow()
        values = dict(user_id=user_id, name=name, format=format, size=size, sha256=sha256,
                      state=str(DatasetState.OK), source=str(DatasetSource(source)),
                      job_id=job_id, output_name=output_name, peek=peek,
                      metadata=metadata_json(metadata or {}), create_time=now, update_time=now)
        with self.engine.begin() as conn:
            if quota is not None:
                self._hold_owner(conn, user_id)
                usage = self._usage(conn, user_id)
                if usage + size > quota:
                    raise QuotaExceeded(usage, size, quota)
            dataset_id = conn.execute(dataset.insert().values(**values)).inserted_primary_key[0]
            if job_id is not None and output_name is not None:
                conn.execute(job_dataset.insert().values(job_id=job_id, dataset_id=dataset_id,
                                                         role="output", name=output_name,
                                                         position=0))
            if place is not None:
                place(dataset_id)
        return Dataset.from_row({**values, "id": dataset_id})

    def get_dataset(self, dataset_id: int) -> Dataset | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(dataset).where(dataset.c.id == dataset_id)).mappings().first()
        return Dataset.from_row(row) if row else None

    def list_datasets(self, *, user_id: int, format: str | None = None, name: str | None = None,
                      state: str | None = str(DatasetState.OK), limit: int = 50,
                      offset: int = 0) -> tuple[list[Dataset], int]:
        """A user's datasets, newest first, and how many match in all. `name` matches a
        part of the name (case-insensitive); state None: every state."""
        conditions = [dataset.c.user_id == user_id]
        if format:
            conditions.append(dataset.c.format == format)
        if state:
            conditions.append(dataset.c.state == state)
        if name:
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(func.lower(dataset.c.name).like(f"%{escaped.lower()}%", escape="\\"))
        where = and_(*conditions)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(dataset).where(where)).scalar_one()
            rows = conn.execute(select(dataset).where(where).order_by(dataset.c.id.desc())
                                .limit(limit).offset(offset)).mappings().all()
        return [Dataset.from_row(r) for r in rows], total

    def delete_dataset(self, dataset_id: int) -> tuple[bool, list[int]]:
        """Mark a dataset deleted unless an active job (new, queued, running, deleting)
        uses it. Returns (deleted now, the ids of the active jobs that prevented it); a
        dataset already deleted gives (False, [])."""
        with self.engine.begin() as conn:
            users = self._active_jobs(conn, dataset_id)
            if users:
                return False, users
            changed = conn.execute(
                update(dataset).where(dataset.c.id == dataset_id,
                                      dataset.c.state == str(DatasetState.OK))
                .values(state=str(DatasetState.DELETED), update_time=utcnow())).rowcount
        return changed == 1, []

    def active_jobs_using(self, dataset_id: int) -> list[int]:
        with self.engine.connect() as conn:
            return self._active_jobs(conn, dataset_id)

    def disk_usage(self, user_id: int) -> int:
        """Bytes of the user's datasets that are not deleted (what user_quota counts)."""
        with self.engine.connect() as conn:
            return self._usage(conn, user_id)

    def link_job_dataset(self, job_id: int, dataset_id: int, role: str, name: str,
                         position: int = 0) -> None:
        """Record that a job reads (input) or wrote (output) a dataset as parameter `name`."""
        if role not in ROLES:
            raise ValueError(f"role {role!r}: expected one of {ROLES}")
        with self.engine.begin() as conn:
            conn.execute(job_dataset.insert().values(job_id=job_id, dataset_id=dataset_id,
                                                     role=role, name=name, position=position))

    def job_datasets(self, *, job_id: int | None = None,
                     dataset_id: int | None = None) -> list[dict]:
        """Provenance rows (job_id, dataset_id, role, name, position) of a job or a dataset."""
        query = select(job_dataset)
        if job_id is not None:
            query = query.where(job_dataset.c.job_id == job_id)
        if dataset_id is not None:
            query = query.where(job_dataset.c.dataset_id == dataset_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(job_dataset.c.id)).mappings().all()
        return [{k: r[k] for k in ("job_id", "dataset_id", "role", "name", "position")}
                for r in rows]

    @staticmethod
    def _hold_owner(conn, user_id: int) -> None:
        """Serialise quota checks of one user: a write to their row first (PostgreSQL locks
        the row until commit; SQLite takes its write lock at once), so two uploads at once
        cannot both pass the same remaining quota."""
        conn.execute(update(galaxy_user).where(galaxy_user.c.id == user_id)
                     .values(id=galaxy_user.c.id))

    @staticmethod
    def _usage(conn, user_id: int) -> int:
        return int(conn.execute(select(func.coalesce(func.sum(dataset.c.size), 0))
                                .where(dataset.c.user_id == user_id,
                                       dataset.c.state == str(DatasetState.OK))).scalar_one())

    @staticmethod
    def _active_jobs(conn, dataset_id: int) -> list[int]:
        rows = conn.execute(
            select(job.c.id).select_from(job_dataset.join(job, job.c.id == job_dataset.c.job_id))
            .where(job_dataset.c.dataset_id == dataset_id, job_dataset.c.role == "input",
                   job.c.state.in_([str(s) for s in ACTIVE])).distinct().order_by(job.c.id)
        ).scalars().all()
        return list(rows)
