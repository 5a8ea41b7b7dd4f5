"""Datasets keep Galaxy's metadata (columns, data_lines, column_names...), JSON text,
computed when their bytes are stored; rows from before have none ("{}").

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"


def upgrade():
    with op.batch_alter_table("dataset") as batch:
        batch.add_column(sa.Column("metadata", sa.Text, nullable=False, server_default="{}"))


def downgrade():
    with op.batch_alter_table("dataset") as batch:
        batch.drop_column("metadata")
