"""Job metrics (Galaxy's job_metric_numeric and job_metric_text tables), and the params a
dynamic rule or the job's resource choices gave its destination (job.destination_params).

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"


def upgrade():
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("destination_params", sa.Text, nullable=True))
    for name, kind in (("job_metric_numeric", sa.Float), ("job_metric_text", sa.Text)):
        op.create_table(
            name,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("job_id", sa.Integer, sa.ForeignKey("job.id"), nullable=False),
            sa.Column("plugin", sa.String(255), nullable=False),
            sa.Column("metric_name", sa.String(255), nullable=False),
            sa.Column("metric_value", kind, nullable=False),
        )
        op.create_index(f"ix_{name}_job_id", name, ["job_id"])


def downgrade():
    for name in ("job_metric_text", "job_metric_numeric"):
        op.drop_index(f"ix_{name}_job_id", name)
        op.drop_table(name)
    with op.batch_alter_table("job") as batch:
        batch.drop_column("destination_params")
