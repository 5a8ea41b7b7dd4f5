"""An index on job.end_time: the admin's charts and /metrics read only the jobs that ended
in a window, which without it is a scan of every job ever run.

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade():
    op.create_index("ix_job_end_time", "job", ["end_time"])


def downgrade():
    op.drop_index("ix_job_end_time", "job")
