"""Indexes that serve the job list's queries: one owner's jobs newest first, alone or by
state or by tool, and everyone's by state. Each one gives the rows already in id order, so a
page (`WHERE ... AND id < :before ORDER BY id DESC LIMIT n`) reads n index entries, not
every job the owner ever ran. The last one lets /metrics count runner errors without a
scan. Building them on a million jobs is a single index build each
(seconds); no table is copied.

Revision ID: 0013
Revises: 0012
"""
from alembic import op

revision = "0013"
down_revision = "0012"

INDEXES = {
    "ix_job_user_id_id": ["user_id", "id"],
    "ix_job_user_state_id": ["user_id", "state", "id"],
    "ix_job_user_tool_id": ["user_id", "tool_id", "id"],
    "ix_job_state_id": ["state", "id"],
    # /metrics' runner errors (error, no exit code) by destination, read from the index alone.
    "ix_job_state_exit_code_destination": ["state", "exit_code", "destination_id"],
}


def upgrade():
    for name, columns in INDEXES.items():
        op.create_index(name, "job", columns)


def downgrade():
    for name in INDEXES:
        op.drop_index(name, "job")
