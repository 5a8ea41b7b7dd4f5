"""Fencing and retried submissions: a job's lease, and the client's idempotency key.

`lease` counts the claims of a job: every claim and adoption takes the next number, and
every action of a handler on the job is conditional on the number it was given, so a
handler that was paused or cut off past handler_heartbeat_timeout acts on nothing.
`idempotency_key` is the client's `Idempotency-Key` (or `client_request_id`): the same
key from the same user within a day answers with the first job instead of a second one.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"


def upgrade():
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("lease", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("idempotency_key", sa.String(255), nullable=True))
        batch.create_index("ix_job_user_idempotency_key", ["user_id", "idempotency_key"])


def downgrade():
    with op.batch_alter_table("job") as batch:
        batch.drop_index("ix_job_user_idempotency_key")
        batch.drop_column("idempotency_key")
        batch.drop_column("lease")
