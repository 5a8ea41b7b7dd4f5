"""Server-side browser sessions: logging out (or an expired session) ends them for good.

The session cookie carries a random id; `user_session` keeps only its SHA-256, with the
user, when it started and when it was last used (updated at most once a minute).

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"


def upgrade():
    op.create_table(
        "user_session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("galaxy_user.id"), nullable=False),
        sa.Column("create_time", sa.DateTime, nullable=False),
        sa.Column("last_used", sa.DateTime, nullable=False),
    )
    op.create_index("ix_user_session_user_id", "user_session", ["user_id"])


def downgrade():
    op.drop_index("ix_user_session_user_id", "user_session")
    op.drop_table("user_session")
