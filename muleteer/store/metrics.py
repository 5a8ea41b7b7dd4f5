"""A job's metrics (Galaxy's job_metric_numeric and job_metric_text tables)."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import bindparam, delete, insert, select, update

from muleteer.job import JobState
from muleteer.job_metrics.values import MAX_NAME, JobMetric
from muleteer.models import job, job_metric_numeric, job_metric_text

# A job's metrics are written as its end is recorded: while a handler still holds it.
_ENDING = (JobState.QUEUED, JobState.RUNNING, JobState.DELETING)
# Built once (see store/prepared.py): written for every job that ends.
_HOLD_ENDING = update(job).where(
    job.c.id == bindparam("w_id"), job.c.lease == bindparam("w_lease"),
    job.c.state.in_([str(s) for s in _ENDING])).values(lease=job.c.lease)
_FORGET = [delete(table).where(table.c.job_id == bindparam("w_id"))
           for table in (job_metric_numeric, job_metric_text)]
_INSERT_NUMERIC, _INSERT_TEXT = insert(job_metric_numeric), insert(job_metric_text)


class JobMetricRecords:
    def record_metrics(self, job_id: int, lease: int, metrics: Sequence[JobMetric]) -> bool:
        """Replace the job's metrics with `metrics`, in one transaction, while the job is
        still this handler's under `lease` and not ended; False (nothing written) if not.
        Recording a job's end twice (a recovering handler) leaves one set, not two."""
        return self._retrying(self._record_metrics, job_id, lease, list(metrics))

    def _record_metrics(self, job_id, lease, metrics):
        with self.engine.begin() as conn:
            # A write first: it locks the job's row (and SQLite's database), so two
            # handlers recording the same end one after the other never both insert.
            held = conn.execute(_HOLD_ENDING, {"w_id": job_id, "w_lease": lease}).rowcount
            if not held:
                return False
            self._write_metrics(conn, job_id, metrics)
        return True

    @staticmethod
    def _write_metrics(conn, job_id, metrics: Sequence[JobMetric]) -> None:
        """Replace the job's metrics, in `conn`'s transaction, which holds the job (the end
        of a job writes them with its own UPDATE: one transaction, not two)."""
        numeric, text = [], []
        for metric in metrics:
            row = {"job_id": job_id, "plugin": metric.plugin[:MAX_NAME],
                   "metric_name": metric.name[:MAX_NAME], "metric_value": metric.value}
            (numeric if metric.numeric else text).append(row)
        for forget in _FORGET:
            conn.execute(forget, {"w_id": job_id})
        if numeric:
            conn.execute(_INSERT_NUMERIC, numeric)
        if text:
            conn.execute(_INSERT_TEXT, text)

    def job_metrics(self, job_id: int) -> list[JobMetric]:
        """The job's metrics as recorded: numbers, then text, each in the order written."""
        found = []
        with self.engine.connect() as conn:
            for table, kind in ((job_metric_numeric, float), (job_metric_text, str)):
                rows = conn.execute(select(table.c.plugin, table.c.metric_name,
                                           table.c.metric_value)
                                    .where(table.c.job_id == job_id).order_by(table.c.id))
                found += [JobMetric(r.plugin, r.metric_name, kind(r.metric_value)) for r in rows]
        return found
