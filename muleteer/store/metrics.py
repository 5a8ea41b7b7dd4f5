"""A job's metrics (Galaxy's job_metric_numeric and job_metric_text tables)."""
from __future__ import annotations


class JobMetricRecords:
    pass
