"""The job store: the single source of truth for jobs, their history and the handlers.

One class, JobStore, made of one part per concern: the database (engine, migrations,
retried writes), jobs (write, read, cancel, state changes), claims (who takes which job,
adoption, resubmission), heartbeats, datasets, a job's end with its output datasets, its metrics, and the
reports over many jobs (the admin's charts). Every read of a job returns a typed Job.
"""
from muleteer.store.claims import Claims
from muleteer.store.database import Database, iso, utcnow
from muleteer.store.datasets import Datasets
from muleteer.store.handlers import Heartbeats
from muleteer.store.jobs import JobRecords
from muleteer.store.metrics import JobMetricRecords
from muleteer.store.outputs import JobOutputs
from muleteer.store.reports import Reports

__all__ = ["JobStore", "iso", "utcnow"]


class JobStore(Database, JobRecords, Claims, Heartbeats, Datasets, JobOutputs, JobMetricRecords,
               Reports):
    """The store of one database (SQLite or PostgreSQL)."""
