"""Users, their API keys (hashed), login attempts (for rate limiting), and job owners.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"


def upgrade():
    op.create_table(
        "galaxy_user",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(255), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("create_time", sa.DateTime, nullable=False),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("galaxy_user.id"), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("create_time", sa.DateTime, nullable=False),
        sa.Column("last_used", sa.DateTime),
    )
    op.create_table(
        "login_attempt",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("create_time", sa.DateTime, nullable=False),
    )
    op.create_index("ix_login_attempt_time", "login_attempt", ["create_time"])
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer, nullable=True))
        batch.create_index("ix_job_user_state", ["user_id", "state"])


def downgrade():
    with op.batch_alter_table("job") as batch:
        batch.drop_index("ix_job_user_state")
        batch.drop_column("user_id")
    op.drop_table("login_attempt")
    op.drop_table("api_key")
    op.drop_table("galaxy_user")
