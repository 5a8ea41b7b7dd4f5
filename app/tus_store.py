"""The resumable uploads on disk (tus_upload_store), without any HTTP: app/tus.py speaks the
protocol over them, and the datasets API takes finished uploads from here.

Each upload is two files in `tus_upload_store` (0700): `<id>`, the bytes received so far,
and `<id>.json`, its sidecar (owner, Upload-Length, metadata, creation time). The id is 32
random hex digits, checked before any path is built. The offset is the data file's size on
disk, so an upload resumes where it stopped, after a restart too.
"""
from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import re
import secrets
import stat
import time

from muleteer.job_files import private_directory

KEPT_METADATA = ("filename", "filetype")
_ID = re.compile(r"[0-9a-f]{32}")
_SIDECAR_MAX = 64 * 1024

class UploadError(Exception):
    """An upload cannot be used: `status` is the HTTP status it maps to."""
    status = 400


class UploadNotFound(UploadError, LookupError):
    """No such upload, or another user's (the same answer: ids tell nothing)."""
    status = 404


class UploadIncomplete(UploadError):
    """The upload has not received all of its Upload-Length bytes yet."""
    status = 409


def valid_id(upload_id) -> bool:
    return isinstance(upload_id, str) and _ID.fullmatch(upload_id) is not None


def new_id() -> str:
    return secrets.token_hex(16)


class UploadStore:
    """The uploads in one directory. Every path is built from a checked id."""

    def __init__(self, directory: str, expiry: float):
        self.directory = directory
        self.expiry = expiry
        private_directory(directory)

    def data_path(self, upload_id: str) -> str:
        if not valid_id(upload_id):
            raise UploadNotFound(f"no upload {upload_id!r}")
        return os.path.join(self.directory, upload_id)

    def sidecar_path(self, upload_id: str) -> str:
        return self.data_path(upload_id) + ".json"

    def create(self, owner_id: int, length: int, metadata: dict) -> dict:
        upload_id = new_id()
        fd = os.open(self.data_path(upload_id),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        info = {"id": upload_id, "owner_id": owner_id, "length": length,
                "metadata": metadata, "created": time.time()}
        self._write_sidecar(upload_id, info)
        return info

    def _write_sidecar(self, upload_id: str, info: dict) -> None:
        path = self.sidecar_path(upload_id)
        tmp = f"{path}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def info(self, upload_id: str, owner_id=None) -> dict:
        """The sidecar of an upload (of this owner, unless owner_id is None), with its
        current `offset`; UploadNotFound otherwise."""
        path = self.sidecar_path(upload_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            raise UploadNotFound(f"no upload {upload_id}") from None
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise UploadNotFound(f"no upload {upload_id}")
            raw = fh.read(_SIDECAR_MAX + 1)
        try:
            info = json.loads(raw)
            ok = (isinstance(info, dict) and info.get("id") == upload_id
                  and isinstance(info.get("length"), int) and isinstance(info.get("created"), float))
        except ValueError:
            ok = False
        if not ok or len(raw) > _SIDECAR_MAX:
            raise UploadNotFound(f"no upload {upload_id} (its record is damaged)")
        if owner_id is not None and info.get("owner_id") != owner_id:
            raise UploadNotFound(f"no upload {upload_id}")
        size = self._size(upload_id)
        if size is None:
            raise UploadNotFound(f"no upload {upload_id}")
        info["offset"] = size
        return info

    def _size(self, upload_id: str) -> int | None:
        try:
            st = os.lstat(self.data_path(upload_id))
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def last_active(self, info: dict) -> float:
        try:
            mtime = os.lstat(self.data_path(info["id"])).st_mtime
        except OSError:
            mtime = 0.0
        return max(info["created"], mtime)

    def expires(self, info: dict) -> float:
        return self.last_active(info) + self.expiry

    def open_for_append(self, upload_id: str) -> int:
        """The data file, opened to append and locked (BlockingIOError while another
        request writes to it)."""
        try:
            fd = os.open(self.data_path(upload_id),
                         os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            raise UploadNotFound(f"no upload {upload_id}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UploadNotFound(f"no upload {upload_id}")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def remove(self, upload_id: str) -> bool:
        """Remove an upload (sidecar first: without it the data is no upload). True if
        there was something to remove."""
        removed = False
        for path in (self.sidecar_path(upload_id), self.data_path(upload_id)):
            try:
                os.unlink(path)
                removed = True
            except FileNotFoundError:
                pass
        return removed

    def expire(self, now: float | None = None) -> list[str]:
        """Remove the uploads idle (no byte received) for longer than the expiry, finished
        or not, and data files left without a sidecar as long. Returns their ids."""
        now = time.time() if now is None else now
        removed = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return removed
        for name in names:
            upload_id = name[:-5] if name.endswith(".json") else name
            if not valid_id(upload_id) or (name != upload_id and name != upload_id + ".json"):
                continue
            if name == upload_id + ".json" or upload_id in removed:
                continue  # each upload once, by its data file (a lone sidecar: below)
            try:
                info = self.info(upload_id)
                stale = self.expires(info) < now
            except UploadNotFound:
                # A data file without its (readable) sidecar: half-created or half-removed.
                try:
                    stale = os.lstat(self.data_path(upload_id)).st_mtime + self.expiry < now
                except OSError:
                    stale = False
            if stale and self.remove(upload_id):
                removed.append(upload_id)
        for name in names:  # sidecars whose data file is gone
            upload_id = name[:-5]
            if name.endswith(".json") and valid_id(upload_id) and self._size(upload_id) is None:
                try:
                    if os.lstat(os.path.join(self.directory, name)).st_mtime + self.expiry < now:
                        os.unlink(os.path.join(self.directory, name))
                except OSError:
                    pass
        return removed


def store_for(ctx) -> UploadStore:
    config = ctx.config
    return UploadStore(config.tus_upload_store, config.tus_upload_expiry)


def finished_upload(ctx, user_id: int, upload_id: str) -> tuple[str, dict]:
    """(path of the uploaded file, metadata) of a complete upload of this user. metadata:
    {"filename": str | None, "filetype": str | None, "length": int, "created": float}.
    Raises UploadNotFound (status 404: unknown, malformed id, or another user's) or
    UploadIncomplete (status 409). The caller may rename or link the file away, then
    calls remove_upload()."""
    store = store_for(ctx)
    info = store.info(upload_id, owner_id=user_id)
    if info["offset"] != info["length"]:
        raise UploadIncomplete(f"upload {upload_id} is not complete: {info['offset']} of "
                               f"{info['length']} bytes received")
    metadata = {name: info["metadata"].get(name) for name in KEPT_METADATA}
    metadata.update(length=info["length"], created=info["created"])
    return store.data_path(upload_id), metadata


def remove_upload(ctx, upload_id: str) -> None:
    """Forget an upload (its file and record); nothing happens if it is already gone."""
    if valid_id(upload_id):
        store_for(ctx).remove(upload_id)


def parse_metadata(header: str) -> dict:
    """Upload-Metadata (`key base64,key base64`, a value may be absent): the kept keys
    (filename, filetype) as text. ValueError on a malformed header."""
    kept = {}
    for pair in header.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        value = value.strip()
        if not key or " " in value:
            raise ValueError(f"malformed pair {pair[:40]!r}")
        try:
            text = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"{key}: not base64 of UTF-8 text") from None
        if key in KEPT_METADATA:
            if len(text) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in text):
                raise ValueError(f"{key}: at most 255 characters, no control characters")
            kept[key] = text
    return kept
