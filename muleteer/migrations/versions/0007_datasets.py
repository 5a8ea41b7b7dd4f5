"""Datasets: files in and out of jobs (issue 11), and which jobs read or wrote them.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"


def upgrade():
    op.create_table(
        "dataset",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("galaxy_user.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("create_time", sa.DateTime, nullable=False),
        sa.Column("update_time", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("job.id")),
        sa.Column("output_name", sa.String(255)),
        sa.Column("peek", sa.Text),
    )
    op.create_index("ix_dataset_user_state", "dataset", ["user_id", "state"])
    op.create_table(
        "job_dataset",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("job.id"), nullable=False),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("dataset.id"), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_job_dataset_job_id", "job_dataset", ["job_id"])
    op.create_index("ix_job_dataset_dataset_id", "job_dataset", ["dataset_id"])


def downgrade():
    op.drop_index("ix_job_dataset_dataset_id", "job_dataset")
    op.drop_index("ix_job_dataset_job_id", "job_dataset")
    op.drop_table("job_dataset")
    op.drop_index("ix_dataset_user_state", "dataset")
    op.drop_table("dataset")
