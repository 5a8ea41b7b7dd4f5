"""Users, API keys and login attempts, in the same database as the jobs."""
from __future__ import annotations

import hashlib
import os
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from muleteer.models import (ANONYMOUS_EMAIL_DOMAIN, api_key, galaxy_user, login_attempt,
                             user_session)
from muleteer.store import utcnow

# Compared against when the email is unknown, so that a wrong email and a wrong password
# take the same time and say the same thing.
_DUMMY_HASH = generate_password_hash("not a password")
MIN_PASSWORD = 8


class AccountError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def normalize_email(email) -> str:
    """The one form of an email address that is stored and compared: stripped of
    surrounding whitespace and lowercased, so " A@x.org" and "a@x.org" are one account
    (and one login rate limit). Anything but a string is ""."""
    return email.strip().lower() if isinstance(email, str) else ""


class Accounts:
    def __init__(self, engine, admin_emails=()):
        self.engine = engine
        self.admin_emails = {normalize_email(e) for e in admin_emails} - {""}

    def is_admin(self, user: dict | None) -> bool:
        return bool(user) and (user["is_admin"] or normalize_email(user["email"]) in self.admin_emails)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(galaxy_user)).scalar_one()

    def create_user(self, email: str, password: str, is_admin: bool = False) -> dict:
        if not isinstance(email, str):
            raise AccountError("email", "expected an email address")
        email = normalize_email(email)
        if "@" not in email or len(email) > 255 or any(c.isspace() for c in email):
            raise AccountError("email", "expected an email address")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 1024:
            raise AccountError("password", f"at least {MIN_PASSWORD} characters")
        row = dict(email=email, password_hash=generate_password_hash(password),
                   is_admin=is_admin, create_time=utcnow())
        try:
            with self.engine.begin() as conn:
                row["id"] = conn.execute(insert(galaxy_user).values(**row)).inserted_primary_key[0]
        except IntegrityError:
            raise AccountError("email", "a user with this email exists") from None
        return row

    ANONYMOUS_DOMAIN = ANONYMOUS_EMAIL_DOMAIN

    def create_anonymous(self) -> dict:
        return self.create_user(f"anonymous-{secrets.token_hex(8)}{self.ANONYMOUS_DOMAIN}",
                                secrets.token_urlsafe(24))

    def is_anonymous(self, user: dict | None) -> bool:
        return bool(user) and user["email"].endswith(self.ANONYMOUS_DOMAIN)

    def first_admin(self) -> dict | None:
        """The admin the bootstrap key acts as: the first admin user."""
        for user in self.users():
            if self.is_admin(user):
                return user
        return None

    def get(self, user_id: int) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(galaxy_user).where(galaxy_user.c.id == user_id)).mappings().first()
        return dict(row) if row else None

    def users(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(galaxy_user).order_by(galaxy_user.c.id)).mappings()]

    def set_password(self, email: str, password: str) -> dict:
        """A new password for an existing user (`python -m app.users set-password`).
        Their browser sessions end (a session opened with the old password opens nothing
        any more) and failed logins for the email are forgotten; API keys stay."""
        email = normalize_email(email)
        if not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 1024:
            raise AccountError("password", f"at least {MIN_PASSWORD} characters")
        with self.engine.begin() as conn:
            row = conn.execute(select(galaxy_user).where(galaxy_user.c.email == email)).mappings().first()
            if row is None:
                raise AccountError("email", f"no user {email}")
            conn.execute(update(galaxy_user).where(galaxy_user.c.id == row["id"])
                         .values(password_hash=generate_password_hash(password)))
            conn.execute(delete(user_session).where(user_session.c.user_id == row["id"]))
            conn.execute(delete(login_attempt).where(login_attempt.c.email == email))
        return dict(row)

    def check_password(self, email: str, password: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(galaxy_user).where(
                galaxy_user.c.email == normalize_email(email))).mappings().first()
        ok = check_password_hash(row["password_hash"] if row else _DUMMY_HASH, password or "")
        return dict(row) if row and ok else None

    # -- API keys ---------------------------------------------------------------------
    def new_key(self, user_id: int) -> str:
        """A new API key for the user; only its hash is kept, so it is shown once."""
        key = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(insert(api_key).values(user_id=user_id, key_hash=_key_hash(key),
                                                prefix=key[:8], create_time=utcnow()))
        return key

    def keys(self, user_id: int) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_key.c.id, api_key.c.prefix, api_key.c.create_time,
                                       api_key.c.last_used)
                                .where(api_key.c.user_id == user_id).order_by(api_key.c.id)).mappings()
            return [dict(r) for r in rows]

    def delete_key(self, user_id: int, key_id: int) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(api_key).where(api_key.c.id == key_id,
                                                      api_key.c.user_id == user_id)).rowcount > 0

    def user_for_key(self, key: str) -> dict | None:
        if not key or len(key) > 256:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(galaxy_user).join(api_key, api_key.c.user_id == galaxy_user.c.id)
                               .where(api_key.c.key_hash == _key_hash(key))).mappings().first()
        return dict(row) if row else None

    # -- login attempts -----------------------------------------------------------------
    def failed_recently(self, ip: str, email: str, window: timedelta) -> int:
        """Failed logins in the window from this address or for this email (the larger)."""
        since = utcnow() - window
        with self.engine.connect() as conn:
            by_ip = conn.execute(select(func.count()).select_from(login_attempt).where(
                login_attempt.c.ip == ip, login_attempt.c.create_time > since)).scalar_one()
            by_email = conn.execute(select(func.count()).select_from(login_attempt).where(
                login_attempt.c.email == normalize_email(email)[:255],
                login_attempt.c.create_time > since)).scalar_one()
        return max(by_ip, by_email)

    def record_failure(self, ip: str, email: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(login_attempt).values(ip=ip[:64], email=normalize_email(email)[:255],
                                                      create_time=utcnow()))
            # Old attempts mean nothing any more.
            conn.execute(delete(login_attempt).where(
                login_attempt.c.create_time < utcnow() - timedelta(days=1)))

    # -- browser sessions -----------------------------------------------------------------
    def start_session(self, user_id: int, max_age: float, idle_timeout: float) -> str:
        """A new session for the user: returns its id (for the cookie); only its SHA-256 is
        stored. Sessions that have expired are swept away on the way."""
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(insert(user_session).values(session_hash=_key_hash(session_id),
                                                     user_id=user_id, create_time=now, last_used=now))
            conn.execute(delete(user_session).where(or_(
                user_session.c.create_time < now - timedelta(seconds=max_age),
                user_session.c.last_used < now - timedelta(seconds=idle_timeout))))
        return session_id

    def user_for_session(self, session_id: str, max_age: float, idle_timeout: float) -> dict | None:
        """The user of a live session, or None (unknown, ended, or expired: an expired
        session is deleted). last_used is written at most once a minute (less for short
        idle timeouts), not on every request."""
        if not session_id or not isinstance(session_id, str) or len(session_id) > 256:
            return None
        digest, now = _key_hash(session_id), utcnow()
        with self.engine.connect() as conn:
            row = conn.execute(select(user_session.c.id.label("session_row"),
                                      user_session.c.create_time.label("session_start"),
                                      user_session.c.last_used.label("session_used"), galaxy_user)
                               .join(galaxy_user, galaxy_user.c.id == user_session.c.user_id)
                               .where(user_session.c.session_hash == digest)).mappings().first()
        if row is None:
            return None
        if (now - row["session_start"] > timedelta(seconds=max_age)
                or now - row["session_used"] > timedelta(seconds=idle_timeout)):
            self.end_session(session_id)
            return None
        if now - row["session_used"] >= timedelta(seconds=min(60.0, idle_timeout / 10)):
            with self.engine.begin() as conn:
                conn.execute(update(user_session).where(user_session.c.id == row["session_row"])
                             .values(last_used=now))
        return {c.name: row[c.name] for c in galaxy_user.c}

    def end_session(self, session_id: str) -> None:
        if session_id and isinstance(session_id, str):
            with self.engine.begin() as conn:
                conn.execute(delete(user_session).where(
                    user_session.c.session_hash == _key_hash(session_id)))


# run.sh names a private file here (0600, in the pid file's directory): the first admin's
# login goes there instead of to the terminal at once, and run.sh prints it as its last
# line once the server answers (after uWSGI's start-up banner), and appends it to the log.
FIRST_ADMIN_NOTE = "MULETEER_FIRST_ADMIN_NOTE"


def ensure_first_admin(accounts: Accounts, config) -> str | None:
    """A fresh install gets an admin; returns how to log in (one line), or None.

    run.sh's configuration check (python -m check) does this before uWSGI starts; create_app does
    it too for servers started some other way (it logs the line). With MULETEER_FIRST_ADMIN_NOTE
    set (by run.sh) the line is written to that file instead, and None is returned.
    """
    if accounts.count():
        return None
    email = next((normalize_email(e) for e in config.admin_users.split(",") if e.strip()),
                 "admin@localhost")
    password = secrets.token_urlsafe(12)
    try:
        user = accounts.create_user(email, password, is_admin=True)
    except AccountError:
        return None  # another process starting at the same moment made it
    key = accounts.new_key(user["id"])
    message = (f"muleteer: created the first admin user. Log in as {email} with password "
               f"{password}, or use the API key {key} (header x-api-key). Missed it? "
               f"./run.sh --reset-password {email} sets a new password.")
    note = os.environ.get(FIRST_ADMIN_NOTE)
    if note:
        fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (message + "\n").encode())
        finally:
            os.close(fd)
        return None
    return message


# -- the command line ---------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`python -m app.users set-password EMAIL [-c galaxy.yml] [--stdin]` (app/users.py)."""
    import argparse
    import sys

    from muleteer.config import ConfigError, load_config
    from muleteer.store import JobStore

    parser = argparse.ArgumentParser(prog="python -m app.users",
                                     description="Muleteer's users, from the server's account.")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "set-password", help="give an existing user (the first admin who missed the login "
                             "run.sh printed, say) a new password, printed once")
    command.add_argument("email")
    command.add_argument("-c", "--config", help="galaxy.yml (default: $MULETEER_CONFIG, else ./galaxy.yml)")
    command.add_argument("--stdin", action="store_true",
                         help="read the new password from the first line of standard input "
                              "instead of generating one")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"muleteer: configuration error: {exc}", file=sys.stderr)
        return 1
    os.umask(config.umask)
    from sqlalchemy.engine import make_url
    url = make_url(config.database_connection)
    if url.get_backend_name() == "sqlite" and not os.path.exists(url.database or ""):
        print(f"muleteer: no database at {url.database} ({config.config_file}): "
              "./run.sh makes it, and the first admin, at its first start", file=sys.stderr)
        return 1
    # Not migrated here: every start of the server (its configuration check) does that.
    accounts = Accounts(JobStore(config.database_connection, config.database_engine_options).engine,
                        config.admin_users.split(","))
    if args.stdin:
        password, generated = sys.stdin.readline().rstrip("\r\n"), False
    else:
        password, generated = secrets.token_urlsafe(12), True
    try:
        user = accounts.set_password(args.email, password)
    except AccountError as exc:
        message = exc.message
        if exc.field == "email":
            admins = [u["email"] for u in accounts.users() if accounts.is_admin(u)]
            message += f" (admins: {', '.join(admins) or 'none yet: ./run.sh makes the first'})"
        print(f"muleteer: {message}", file=sys.stderr)
        return 1
    who = f"{user['email']}{' (admin)' if accounts.is_admin(user) else ''}"
    said = f"new password {password}" if generated else "the password read from standard input"
    print(f"muleteer: {who} now logs in with {said}; their browser sessions were ended.")
    return 0

