"""A job's stdout and stderr (their last MiB each) kept in its row when it ends, so that
cleanup_job can remove the job directory and they still show.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"


def upgrade():
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("stdout", sa.Text, nullable=True))
        batch.add_column(sa.Column("stderr", sa.Text, nullable=True))


def downgrade():
    with op.batch_alter_table("job") as batch:
        batch.drop_column("stderr")
        batch.drop_column("stdout")
