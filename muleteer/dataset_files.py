"""Where a dataset's bytes live, and every access the server makes to them.

Galaxy's layout under `file_path` (default database/files): dataset 123 is
`000/dataset_123.dat`, at most 1,000 datasets per directory; directories 0700, files 0600,
the server account's alone. This is the one module that knows it: the API, the store's
callers and (later) the job staging go through DatasetFiles, so the transport can change
here alone.

Nothing half-made: new bytes stream into a temporary file (O_EXCL, O_NOFOLLOW) in
`file_path/incoming/` while their size and SHA-256 are computed, are fsync'ed, and only
then renamed to their final name, in the same transaction that writes the dataset's row
(store.create_dataset's `place` callback). A failed or interrupted write (a full disk
included) leaves no file under a dataset's name and no row; its temporary file is removed.
Reading opens each path component without following links and refuses anything but a
regular file.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time

from muleteer.dataset_metadata import LineScanner, Scan, metadata_for
from muleteer.job_files import JobDirectoryError, private_directory

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
INCOMING = "incoming"
PEEK_LINES = 5
PEEK_BYTES = 1024
HEAD_BYTES = 64 * 1024  # kept from the first bytes, for the format sniffers and the peek

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class DatasetFileError(Exception):
    """A dataset's bytes could not be written or read; the message says why."""


class DiskFull(DatasetFileError):
    """No space left under file_path: nothing was kept."""


class TooLarge(DatasetFileError):
    """The content passed the size limit while it was written: nothing was kept."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


def relative_path(dataset_id: int) -> str:
    """Galaxy's layout: `000/dataset_123.dat` (1,000 datasets per directory)."""
    return os.path.join(f"{dataset_id // 1000:03d}", f"dataset_{dataset_id}.dat")


def peek(head: bytes) -> str | None:
    """The first PEEK_LINES lines (at most PEEK_BYTES) of text content; None for binary."""
    from muleteer.formats import is_text
    if not is_text(head[:HEAD_BYTES]):
        return None
    cut = head[:PEEK_BYTES]
    lines = cut.split(b"\n")[:PEEK_LINES]
    return b"\n".join(lines).decode("utf-8", errors="ignore")


class Staged:
    """New bytes, complete and fsync'ed under a temporary name, not yet a dataset."""

    def __init__(self, files: "DatasetFiles", path: str, size: int, sha256: str, head: bytes,
                 origin: str | None = None, scan: Scan | None = None):
        self.files, self.path, self.size, self.sha256, self.head = files, path, size, sha256, head
        self.origin = origin  # where adopted bytes came from: they go back there if refused
        # Lines and columns, for the metadata its format keeps (dataset_metadata.metadata_for).
        self.scan = scan

    @property
    def peek(self) -> str | None:
        return peek(self.head)

    def discard(self) -> None:
        try:
            if self.origin is not None:
                os.rename(self.path, self.origin)  # a refused upload stays an upload
            else:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, *exc) -> None:
        # Committed, the temporary name is gone; otherwise nothing is left behind.
        self.discard()


class DatasetFiles:
    def __init__(self, file_path: str):
        self.root = file_path

    def path(self, dataset_id: int) -> str:
        """The dataset's absolute path (for a job's command line or nginx; never opened
        by the server through it: open() reaches it without links)."""
        return os.path.join(os.path.realpath(self.root), relative_path(dataset_id))

    def remove_stale_incoming(self, older_than: float = 24 * 3600) -> int:
        """Remove staged bytes left by a process that died mid-upload (a day old: no upload
        in progress is); returns how many. Entries are unlinked, never followed."""
        directory = os.path.join(self.root, INCOMING)
        removed, now = 0, time.time()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                    os.unlink(entry.path)
                    removed += 1
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                continue
        return removed

    # -- writing ------------------------------------------------------------------------
    def _incoming(self) -> str:
        private_directory(self.root)
        directory = os.path.join(self.root, INCOMING)
        private_directory(directory)
        return directory

    def stage(self, stream, limit: int | None = None) -> Staged:
        """Copy a binary stream (read in CHUNKs, never whole) into a new temporary file,
        hashing it. Over `limit` bytes: TooLarge; no space: DiskFull; nothing kept."""
        directory = self._incoming()
        fd, path = self._temporary(directory)
        digest, size, head, scanner = hashlib.sha256(), 0, bytearray(), LineScanner()
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise TooLarge(limit)
                    digest.update(chunk)
                    scanner.feed(chunk)
                    if len(head) < HEAD_BYTES:
                        head += chunk[:HEAD_BYTES - len(head)]
                    view = memoryview(chunk)
                    while view:
                        view = view[out.write(view):]
                os.fsync(out.fileno())
        except BaseException as exc:
            _unlink(path)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"no space left on the disk of file_path ({self.root}): "
                               f"the dataset was not stored") from None
            raise
        return Staged(self, path, size, digest.hexdigest(), bytes(head), scan=scanner.finish())

    def adopt_file(self, source: str) -> Staged:
        """A finished file of the server's (a resumable upload) taken over without copying:
        renamed into incoming/ (copied instead from another filesystem) and hashed by
        reading it once. If it is not stored after all, discard() puts it back."""
        try:
            fd = os.open(source, _READ_FLAGS)
        except OSError as exc:
            raise DatasetFileError(f"cannot open {source}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise DatasetFileError(f"{source} is not a regular file")
            os.set_blocking(fd, True)
            directory = self._incoming()
            placeholder, target = self._temporary(directory)
            os.close(placeholder)
            try:
                os.rename(source, target)
            except OSError as exc:
                _unlink(target)
                if exc.errno == errno.EXDEV:
                    return self.stage(fh)
                raise
            moved = os.lstat(target)
            if (moved.st_dev, moved.st_ino) != (opened.st_dev, opened.st_ino):
                os.rename(target, source)
                raise DatasetFileError(f"{source} changed while it was being stored")
            digest, size, head, scanner = hashlib.sha256(), 0, bytearray(), LineScanner()
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                digest.update(chunk)
                scanner.feed(chunk)
                if len(head) < HEAD_BYTES:
                    head += chunk[:HEAD_BYTES - len(head)]
        return Staged(self, target, size, digest.hexdigest(), bytes(head), origin=source,
                      scan=scanner.finish())

    @staticmethod
    def _temporary(directory: str) -> tuple[int, str]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _ in range(100):
            path = os.path.join(directory, f"upload_{os.urandom(12).hex()}.tmp")
            try:
                return os.open(path, flags, 0o600), path
            except FileExistsError:
                continue
        raise DatasetFileError(f"cannot create a temporary file in {directory}")

    def commit(self, staged: Staged, dataset_id: int) -> str:
        """Rename staged bytes to dataset `dataset_id`'s name (atomic; same filesystem).
        Called inside the transaction that inserts the dataset's row, so no committed
        dataset has this id: a file already under its name was left by a transaction that
        died after its rename and before its commit (SQLite then gives the id out again),
        and is replaced."""
        final = os.path.join(self.root, relative_path(dataset_id))
        try:
            private_directory(os.path.dirname(final))
        except JobDirectoryError as exc:
            raise DatasetFileError(str(exc)) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"no space left on the disk of file_path ({self.root}): "
                               f"the dataset was not stored") from None
            raise
        if os.path.lexists(final):
            log.warning("%s was left by a transaction that did not commit: replacing it", final)
        os.replace(staged.path, final)
        _fsync_directory(os.path.dirname(final))
        return final

    def remove(self, dataset_id: int) -> bool:
        """Delete a dataset's file (its disk space is freed); False if it was not there."""
        try:
            os.unlink(os.path.join(self.root, relative_path(dataset_id)))
        except FileNotFoundError:
            return False
        return True

    # -- reading ------------------------------------------------------------------------
    def open(self, dataset_id: int):
        """The dataset's file open for reading (binary), reached without following a link
        below file_path and checked to be a regular file; None if it is not there."""
        directory, name = os.path.split(relative_path(dataset_id))
        try:
            root = os.open(self.root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            sub = os.open(directory, _DIR_FLAGS, dir_fd=root)
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=sub)
            finally:
                os.close(sub)
        except OSError:
            return None
        finally:
            os.close(root)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_dataset(store, files: DatasetFiles, staged: Staged, *, user_id: int, name: str,
                   format: str, quota: int | None = None, source: str = "upload",
                   job_id: int | None = None, output_name: str | None = None):
    """Staged bytes -> a dataset of `user_id` (muleteer.dataset.Dataset): the row (with
    the metadata `format` keeps of the staged scan) and the rename to its final name in
    one transaction. On any failure (QuotaExceeded included)
    there is neither a row nor a file under the dataset's name; the staged file is the
    caller's to discard (`with staged:`)."""
    placed = []

    def place(dataset_id):
        placed.append(files.commit(staged, dataset_id))

    try:
        return store.create_dataset(user_id=user_id, name=name, format=format, size=staged.size,
                                    sha256=staged.sha256, source=source, job_id=job_id,
                                    output_name=output_name, peek=staged.peek,
                                    metadata=metadata_for(format, staged.scan), quota=quota,
                                    place=place)
    except BaseException:
        for path in placed:  # renamed, but the row was not committed
            _unlink(path)
        raise
