"""The database schema (SQLAlchemy Core). Alembic migrations in muleteer/migrations create it."""
from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData,
                        String, Table, Text)

metadata = MetaData()

# A job's states, and the moves between them, are muleteer.job.JobState/TRANSITIONS.

job = Table(
    "job", metadata,
    Column("id", Integer, primary_key=True),
    Column("tool_id", String(255), nullable=False),
    Column("tool_version", String(64), nullable=False),
    Column("params", Text, nullable=False),  # JSON of the validated values
    Column("command_line", Text, nullable=False),
    Column("state", String(16), nullable=False),
    # Where the job was sent (a handler id or a tag), and the handler that took it.
    Column("handler_tag", String(255), nullable=False),
    Column("handler", String(255)),
    Column("destination_id", String(255), nullable=False),
    Column("runner", String(32), nullable=False),
    Column("external_id", String(255)),
    Column("exit_code", Integer),
    Column("info", Text),
    Column("working_directory", Text),
    Column("create_time", DateTime, nullable=False),
    Column("queued_time", DateTime),
    Column("start_time", DateTime),
    Column("end_time", DateTime),
    Column("update_time", DateTime, nullable=False),
    # Resubmission: which attempt this is, and the <resubmit> rules (JSON) of the
    # destination it is on, kept with the job so later attempts still follow them.
    Column("attempt", Integer, nullable=False, default=1, server_default="1"),
    Column("resubmit", Text, nullable=False, default="[]", server_default="[]"),
    Column("user_id", Integer),  # the owner; only they (and admins) see the job
    # Fencing: every claim or adoption takes the next lease; a handler acts on a job only
    # while the row still carries the lease it was given (migration 0004).
    Column("lease", Integer, nullable=False, default=0, server_default="0"),
    # The client's Idempotency-Key: a retried submission answers with the first job.
    Column("idempotency_key", String(255)),
    # A resubmitted attempt is not claimed before this time (<resubmit delay=>, 0006).
    Column("not_before", DateTime),
    # The end of its stdout and stderr, kept when it ends (cleanup_job may remove its
    # directory; 0008).
    Column("stdout", Text),
    Column("stderr", Text),
    Column("command_version", Text),  # what the tool's <version_command> printed
    # The params a dynamic rule or the job's resource choices gave its destination (JSON,
    # Galaxy's job.destination_params), kept so a restart or a recovery runs it the same.
    Column("destination_params", Text),
    Index("ix_job_state_handler_tag", "state", "handler_tag"),
    Index("ix_job_handler_state", "handler", "state"),
    Index("ix_job_tool_id", "tool_id"),
    Index("ix_job_user_idempotency_key", "user_id", "idempotency_key"),
    # The admin's charts and /metrics read jobs that ended in a window (migration 0012).
    Index("ix_job_end_time", "end_time"),
    # The job list's pages, newest first by id: one owner's, by state, by tool; everyone's
    # by state (migration 0013).
    Index("ix_job_user_id_id", "user_id", "id"),
    Index("ix_job_user_state_id", "user_id", "state", "id"),
    Index("ix_job_user_tool_id", "user_id", "tool_id", "id"),
    Index("ix_job_state_id", "state", "id"),
    Index("ix_job_state_exit_code_destination", "state", "exit_code", "destination_id"),
)

job_state_history = Table(
    "job_state_history", metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("job.id"), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("handler", String(255)),
    Column("info", Text),
    Column("create_time", DateTime, nullable=False),
)

# One row per handler process name; the heartbeat is last_seen.
handler = Table(
    "handler", metadata,
    Column("name", String(255), primary_key=True),
    Column("tags", Text, nullable=False),
    Column("strategy", String(32), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("messages_failed", Integer, nullable=False, default=0),
    Column("sweep_seconds", Float),
)

# An anonymous visitor (require_login: false) is a user of this email domain: the
# anonymous_user_concurrent_jobs limit applies to them instead of the registered one.
ANONYMOUS_EMAIL_DOMAIN = "@anonymous.invalid"

# Galaxy's table name: `user` is a reserved word in PostgreSQL.
galaxy_user = Table(
    "galaxy_user", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(255), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("create_time", DateTime, nullable=False),
)

# Keys are shown once and stored as SHA-256: they are 32 random bytes, so a fast hash is
# enough (unlike passwords, which get werkzeug's salted scrypt).
api_key = Table(
    "api_key", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("galaxy_user.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(8), nullable=False),
    Column("create_time", DateTime, nullable=False),
    Column("last_used", DateTime),
)

login_attempt = Table(
    "login_attempt", metadata,
    Column("id", Integer, primary_key=True),
    Column("ip", String(64), nullable=False),
    Column("email", String(255), nullable=False),
    Column("create_time", DateTime, nullable=False),
)

# Browser sessions, revocable on the server: the cookie carries a random session id and
# only its SHA-256 is kept here. Logging out deletes the row; a row past
# session_idle_timeout (last_used) or session_max_age (create_time) is dead (migration 0005).
user_session = Table(
    "user_session", metadata,
    Column("id", Integer, primary_key=True),
    Column("session_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("galaxy_user.id"), nullable=False, index=True),
    Column("create_time", DateTime, nullable=False),
    Column("last_used", DateTime, nullable=False),
)

# Datasets (migration 0007): files in and out of jobs, Galaxy's HDAs in one table. A row is
# written only once its bytes are complete under file_path (muleteer/dataset_files.py).
dataset = Table(
    "dataset", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("galaxy_user.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("format", String(64), nullable=False),  # Galaxy's extension: txt, tabular, bam...
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # ok | deleted (muleteer.dataset.DatasetState)
    Column("create_time", DateTime, nullable=False),
    Column("update_time", DateTime, nullable=False),
    Column("source", String(16), nullable=False),  # upload | job
    Column("job_id", Integer, ForeignKey("job.id")),  # a job output's provenance
    Column("output_name", String(255)),
    Column("peek", Text),
    # Galaxy's dataset metadata, JSON: columns, data_lines... (muleteer/dataset_metadata.py;
    # migration 0009).
    Column("metadata", Text, nullable=False, default="{}", server_default="{}"),
    Index("ix_dataset_user_state", "user_id", "state"),
)

# Which datasets a job read (role input) and wrote (role output): provenance both ways.
# `position` orders the datasets of a multiple data parameter.
job_dataset = Table(
    "job_dataset", metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("job.id"), nullable=False, index=True),
    Column("dataset_id", Integer, ForeignKey("dataset.id"), nullable=False, index=True),
    Column("role", String(8), nullable=False),
    Column("name", String(255), nullable=False),
    Column("position", Integer, nullable=False, default=0, server_default="0"),
)

# Job metrics as Galaxy keeps them: one row per (plugin, name), numbers and text apart.
job_metric_numeric = Table(
    "job_metric_numeric", metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("job.id"), nullable=False, index=True),
    Column("plugin", String(255), nullable=False),
    Column("metric_name", String(255), nullable=False),
    Column("metric_value", Float, nullable=False),
)

job_metric_text = Table(
    "job_metric_text", metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("job.id"), nullable=False, index=True),
    Column("plugin", String(255), nullable=False),
    Column("metric_name", String(255), nullable=False),
    Column("metric_value", Text, nullable=False),
)
