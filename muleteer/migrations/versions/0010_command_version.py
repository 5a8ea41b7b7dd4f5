"""What a tool's <version_command> printed for a job (Galaxy's job.command_version), kept
in its row when it ends.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"


def upgrade():
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("command_version", sa.Text, nullable=True))


def downgrade():
    with op.batch_alter_table("job") as batch:
        batch.drop_column("command_version")
