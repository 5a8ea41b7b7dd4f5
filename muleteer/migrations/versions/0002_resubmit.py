"""Resubmission persisted with the job: its attempt number and the rules it follows.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"


def upgrade():
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("resubmit", sa.Text, nullable=False, server_default="[]"))


def downgrade():
    with op.batch_alter_table("job") as batch:
        batch.drop_column("resubmit")
        batch.drop_column("attempt")
