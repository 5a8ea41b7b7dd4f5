"""Keys the server makes once and keeps beside its database (the session key, the staging
token key): created by whichever process or thread needs one first, the same for all."""
from __future__ import annotations

import os
import secrets
import tempfile


def read_or_create_key(path: str) -> bytes:
    """The key in `path` (mode 0600), made on first use. Several processes and threads may
    ask at once: each writes a candidate to a temporary file of its own and links it into
    place; link() fails for all but the first, and everyone returns the file's key."""
    try:
        with open(path, "rb") as fh:
            found = fh.read().strip()
        if len(found) >= 32:
            return found
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, candidate = tempfile.mkstemp(prefix=".key-", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(32).encode())
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(candidate)
    with open(path, "rb") as fh:
        return fh.read().strip()
