"""A job's successful end and its output datasets, in one transaction.

The job moves to `ok` under its lease, and each declared output becomes a dataset of the
job's owner with a provenance row, its bytes renamed into place inside the same
transaction: a handler that lost the job writes nothing, and a job never gets two
datasets for one output of one attempt.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import insert, update

from muleteer.dataset import DatasetSource, DatasetState, metadata_json
from muleteer.dataset_metadata import metadata_for
from muleteer.job import Job, JobState
from muleteer.models import dataset, job, job_dataset, job_state_history
from muleteer.store.database import utcnow
from muleteer.store.datasets import QuotaExceeded


@dataclass
class NewOutput:
    """An output's bytes, staged (muleteer.dataset_files.Staged), and what to call them."""
    name: str          # the tool's output name
    label: str         # the dataset's name
    format: str
    staged: object

    @property
    def metadata(self) -> dict:
        """What a dataset of this format keeps of the scan made while it was staged."""
        return metadata_for(self.format, self.staged.scan)


class JobOutputs:
    def end_with_outputs(self, job_id: int, lease: int, handler: str, owner: int,
                         outputs: list[NewOutput], place, quota: int | None = None,
                         metrics=(), **values) -> Job | None:
        """`ok` with its outputs, or None (and nothing written) when the job is no longer
        this handler's under `lease` or was cancelled meanwhile. `place(staged, dataset_id)`
        renames staged bytes to their dataset's name. QuotaExceeded when the outputs would
        take the owner over `quota`: nothing is written then either."""
        return self._retrying(self._end_with_outputs, job_id, lease, handler, owner, outputs,
                              place, quota, values, metrics)

    def _end_with_outputs(self, job_id, lease, handler, owner, outputs, place, quota, values,
                          metrics=()):
        now = utcnow()
        stmt = (update(job).where(job.c.id == job_id, job.c.lease == lease,
                                  job.c.state.in_([JobState.QUEUED, JobState.RUNNING]))
                .values(**{"state": JobState.OK, "exit_code": 0, "info": None, "end_time": now,
                           "update_time": now, **values}).returning(*job.c))
        placed = []
        try:
            with self.engine.begin() as conn:
                row = conn.execute(stmt).mappings().first()
                if row is None:
                    return None
                if quota is not None:
                    self._hold_owner(conn, owner)
                    usage = self._usage(conn, owner)
                    size = sum(o.staged.size for o in outputs)
                    if usage + size > quota:
                        raise QuotaExceeded(usage, size, quota)
                conn.execute(insert(job_state_history).values(
                    job_id=job_id, state=JobState.OK, handler=handler, create_time=now))
                if metrics:
                    self._write_metrics(conn, job_id, metrics)
                for output in outputs:
                    dataset_id = conn.execute(insert(dataset).values(
                        user_id=owner, name=output.label, format=output.format,
                        size=output.staged.size, sha256=output.staged.sha256,
                        state=str(DatasetState.OK), source=str(DatasetSource.JOB),
                        job_id=job_id, output_name=output.name, peek=output.staged.peek,
                        metadata=metadata_json(output.metadata), create_time=now, update_time=now)).inserted_primary_key[0]
                    conn.execute(insert(job_dataset).values(
                        job_id=job_id, dataset_id=dataset_id, role="output", name=output.name,
                        position=0))
                    placed.append((place(output.staged, dataset_id), output.staged.path))
        except BaseException:
            # Renamed, but the transaction did not commit: put the bytes back where they
            # were staged, so that a retry (a locked database) can place them again.
            for final, staged_path in placed:
                os.rename(final, staged_path)
            raise
        return Job.from_row(row)
