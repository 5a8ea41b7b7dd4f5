"""A resubmitted job waits for its <resubmit delay=...>: it is claimed no sooner than this.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"


def upgrade():
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime, nullable=True))


def downgrade():
    with op.batch_alter_table("job") as batch:
        batch.drop_column("not_before")
