"""Which system account a user's jobs run as (Galaxy's real_system_username), decided at
submission so that a user without a usable account is refused then, not failed later.

- `user_email`: the email's local part (Galaxy's default method): alice@example.org ->
  alice;
- a mapping file: one `email account` pair a line, `#` comments (sites whose accounts are
  not the local parts); an email it does not list has no account.

The account must exist and its uid be at least real_system_min_uid (root and the system
accounts never run jobs). The site scripts that act as root check the same again against
their own root-owned configuration (muleteer/real_user.py): this is the early, friendly
answer, not the safeguard.
"""
from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass

USER_EMAIL = "user_email"
NOBODY_UID = 65534
# POSIX-ish account names, as useradd accepts them by default.
_ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class NoSystemAccount(Exception):
    """The user has no system account jobs may run as; the message says why."""


@dataclass(frozen=True)
class SystemAccount:
    name: str
    uid: int
    gid: int


def account_name(email: str, method: str) -> str:
    """The account name `method` gives an email (NoSystemAccount if none)."""
    if method == USER_EMAIL:
        local = email.rpartition("@")[0] if "@" in email else email
        name = local.lower()
    else:
        name = _mapping(method).get(email.strip().lower(), "")
        if not name:
            raise NoSystemAccount(f"{email} is not in the account mapping "
                                  f"(real_system_username: {method})")
    if not _ACCOUNT.fullmatch(name):
        raise NoSystemAccount(f"{email}: {name!r} is not a system account name")
    return name


def system_account(email: str, method: str, min_uid: int) -> SystemAccount:
    """The system account `email`'s jobs run as; NoSystemAccount saying why not."""
    name = account_name(email, method)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NoSystemAccount(f"there is no system account {name!r} for {email} on this "
                              "server (real_system_username)") from None
    if entry.pw_uid == NOBODY_UID:
        raise NoSystemAccount(f"system account {name!r} is the unprivileged `nobody` "
                              "(uid 65534): jobs never run as it, since others' processes do")
    if entry.pw_uid < min_uid:
        raise NoSystemAccount(f"system account {name!r} (uid {entry.pw_uid}) is below "
                              f"real_system_min_uid ({min_uid}): jobs never run as root or "
                              "system accounts")
    return SystemAccount(name, entry.pw_uid, entry.pw_gid)


_cache: dict[str, tuple[float, dict[str, str]]] = {}


def _mapping(path: str) -> dict[str, str]:
    """The mapping file's pairs (email lowercased), re-read when the file changes."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise NoSystemAccount(f"the account mapping {path} cannot be read: {exc.strerror}") from None
    cached = _cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        pairs = parse_mapping(path)
    except ValueError as exc:
        raise NoSystemAccount(str(exc)) from None
    _cache[path] = (mtime, pairs)
    return pairs


def parse_mapping(path: str) -> dict[str, str]:
    """`email account` pairs, one a line (`#` comments, blank lines); ValueError naming the
    file and line of anything else, an account name that is not one, or an email twice."""
    pairs: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the account mapping: {exc}") from None
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or "@" not in words[0] or not _ACCOUNT.fullmatch(words[1]):
            raise ValueError(f"{path}, line {number}: expected `email account` (an email, then "
                             f"a system account name), got {line.strip()[:80]!r}")
        email = words[0].lower()
        if email in pairs:
            raise ValueError(f"{path}, line {number}: {email} is mapped twice")
        pairs[email] = words[1]
    return pairs
