"""A dataset as the store returns it: a frozen snapshot of its row (see store/datasets.py).

A row exists only once the dataset's bytes are complete on disk (dataset_files.py writes
them under a temporary name and renames them into place in the transaction that inserts
the row): an upload in progress, or one that failed, has no row at all.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum


class DatasetState(str, Enum):
    OK = "ok"
    DELETED = "deleted"  # its file is removed; the row stays for provenance

    def __str__(self) -> str:
        return self.value


class DatasetSource(str, Enum):
    UPLOAD = "upload"
    JOB = "job"      # job_id's output output_name

    def __str__(self) -> str:
        return self.value


ROLES = ("input", "output")  # job_dataset.role


@dataclass(frozen=True)
class Dataset:
    id: int
    user_id: int
    name: str
    format: str
    size: int
    sha256: str
    state: DatasetState
    source: DatasetSource
    create_time: datetime
    update_time: datetime
    job_id: int | None = None
    output_name: str | None = None
    peek: str | None = None  # the first lines of a text file; None for binary content
    # Galaxy's metadata (columns, data_lines...: muleteer/dataset_metadata.py). Not hashed:
    # a dict cannot be.
    metadata: dict = field(default_factory=dict, hash=False)

    @classmethod
    def from_row(cls, row) -> "Dataset":
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        values["state"] = DatasetState(values["state"])
        values["source"] = DatasetSource(values["source"])
        if "metadata" in values:
            values["metadata"] = json.loads(values["metadata"] or "{}")
        return cls(**values)

    @property
    def deleted(self) -> bool:
        return self.state is DatasetState.DELETED


def metadata_json(metadata: dict) -> str:
    """A dataset's metadata as its row keeps it (the `metadata` column, text)."""
    return json.dumps(metadata, separators=(",", ":"), sort_keys=True)
