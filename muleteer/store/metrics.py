"""A job's metrics (Galaxy's job_metric_numeric and job_metric_text tables)."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import bindparam, delete, insert, select

from muleteer.job_metrics.values import MAX_NAME, JobMetric
from muleteer.models import job_metric_numeric, job_metric_text

# Built once (see store/prepared.py): written for every job that ends.
_FORGET = [delete(table).where(table.c.job_id == bindparam("w_id"))
           for table in (job_metric_numeric, job_metric_text)]
_INSERT_NUMERIC, _INSERT_TEXT = insert(job_metric_numeric), insert(job_metric_text)


class JobMetricRecords:
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
