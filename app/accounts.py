"""Users, API keys and login attempts, in the same database as the jobs."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from muleteer.models import api_key, galaxy_user, login_attempt, user_session
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

    ANONYMOUS_DOMAIN = "@anonymous.invalid"

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


def ensure_first_admin(accounts: Accounts, config) -> str | None:
    """A fresh install gets an admin; returns how to log in (shown once), or None.

    run.sh's configuration check (app.check) does this before uWSGI starts, so the message
    reaches the terminal; create_app does it too for servers started some other way.
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
    return (f"muleteer: created the first admin user. Log in as {email} with password {password}, "
            f"or use the API key {key} (header x-api-key). Both are shown only this once.")
