"""The first schema: jobs, their state history, handlers.

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "job",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tool_id", sa.String(255), nullable=False),
        sa.Column("tool_version", sa.String(64), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("command_line", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("handler_tag", sa.String(255), nullable=False),
        sa.Column("handler", sa.String(255)),
        sa.Column("destination_id", sa.String(255), nullable=False),
        sa.Column("runner", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(255)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("info", sa.Text),
        sa.Column("working_directory", sa.Text),
        sa.Column("create_time", sa.DateTime, nullable=False),
        sa.Column("queued_time", sa.DateTime),
        sa.Column("start_time", sa.DateTime),
        sa.Column("end_time", sa.DateTime),
        sa.Column("update_time", sa.DateTime, nullable=False),
    )
    op.create_index("ix_job_state_handler_tag", "job", ["state", "handler_tag"])
    op.create_index("ix_job_handler_state", "job", ["handler", "state"])
    op.create_index("ix_job_tool_id", "job", ["tool_id"])
    op.create_table(
        "job_state_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("job.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("handler", sa.String(255)),
        sa.Column("info", sa.Text),
        sa.Column("create_time", sa.DateTime, nullable=False),
    )
    op.create_index("ix_job_state_history_job_id", "job_state_history", ["job_id"])
    op.create_table(
        "handler",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", sa.DateTime, nullable=False),
        sa.Column("last_seen", sa.DateTime, nullable=False),
        sa.Column("messages_failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sweep_seconds", sa.Float),
    )


def downgrade():
    op.drop_table("handler")
    op.drop_table("job_state_history")
    op.drop_table("job")
