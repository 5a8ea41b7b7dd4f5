"""A job's working directory, the one job script every runner submits, and every access the
server makes to the files in there.

The job controls its directory (and, once jobs run as their real user, so does that user):
anything in it may be a symbolic link, a FIFO, a device or a huge file by the time the
server looks. So the server creates the directory itself, exclusively (a directory that
already exists is an attack or a bug, never reused), under parents only it can write, and
every file it writes or reads in there is opened relative to the directory's descriptor
with O_NOFOLLOW on each path component, checked with fstat after opening, and refused
unless it is a regular file (of bounded size, for the small files it reads whole). The
API, the pages, the runners and the output checks all go through this module.

The script is the same wherever the job runs (this machine, Slurm, PBS, Grid Engine), so
a job behaves the same everywhere: environment from the destination's <env> and
environment_setup_file, TMPDIR from new_file_path, cd to the working directory, the
command in a subshell (an `exit` in a tool ends only the tool), its stdout/stderr to
files, and its exit code written atomically to a file that runners read instead of
trusting a scheduler's accounting.
"""
from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import stat
import time

SCRIPT = "job.sh"
STDOUT = "stdout"
STDERR = "stderr"
EXIT_CODE = "exit_code"
PID = "pid"
NOT_STARTED = "not_started"  # not_started.<session>: that gated script exited before its go
LOG = "job.log"
OUTPUTS = "outputs"
INPUTS = "inputs"  # the job's own copies of its inputs (jobs as the real user, staged jobs)
COMMAND_VERSION = "COMMAND_VERSION"  # what the tool's <version_command> printed (Galaxy's name)

# A file the server reads whole (exit code, pid) is a number: anything bigger is not ours.
SMALL_FILE = 4096
# The descriptor a gated job script waits on for the handler's go (see gate_lines).
GATE_FD = 3
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class JobDirectoryError(Exception):
    """A job directory or a file in it is not what the server made: the message says what."""


def working_directory(root: str, job_id: int) -> str:
    # Galaxy's layout: at most 1000 job directories per parent directory.
    return os.path.join(root, f"{job_id // 1000:03d}", str(job_id))


def private_directory(path: str, traversable: bool = False) -> None:
    """Make `path` (and missing parents) with mode 0700, or check that the existing one is
    a real directory of ours that no other account can write. `traversable`: 0711, so
    that jobs running as their real users reach their own directories below it (they
    still cannot list it)."""
    try:
        os.makedirs(path, mode=0o711 if traversable else 0o700, exist_ok=True)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise JobDirectoryError(f"{path} is not a directory (a symbolic link or a file is in "
                                f"its place): refusing to use it")
    if info.st_uid != os.geteuid():
        raise JobDirectoryError(f"{path} belongs to uid {info.st_uid}, not to the server "
                                f"(uid {os.geteuid()}): refusing to use it")
    if info.st_mode & 0o022:
        raise JobDirectoryError(f"{path} is writable by other accounts (mode "
                                f"{stat.S_IMODE(info.st_mode):04o}): refusing to use it; "
                                f"`chmod go-w` it")
    if traversable and info.st_mode & 0o011 != 0o011:
        os.chmod(path, stat.S_IMODE(info.st_mode) | 0o011)


class JobFiles:
    """The files of one job directory. Nothing here follows a link the job may have made."""

    def __init__(self, directory: str):
        self.directory = directory

    def path(self, name: str) -> str:
        """A file's path, for what the job script itself opens (never opened by the server)."""
        return os.path.join(self.directory, name)

    # -- the directory ----------------------------------------------------------------
    def create(self, traversable: bool = False) -> None:
        """Make the job directory: parents checked (ours, not writable by others;
        `traversable` by jobs as their real users), the directory itself new (mode 0700).
        An existing one fails the job, never reused."""
        parent = os.path.dirname(self.directory)
        private_directory(os.path.dirname(parent), traversable)
        private_directory(parent, traversable)
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            raise JobDirectoryError(f"job directory {self.directory} already exists: the server "
                                    f"makes each job directory itself and never reuses one "
                                    f"(something else made this one)") from None
        with self._open_dir() as fd:
            os.mkdir(OUTPUTS, 0o700, dir_fd=fd.fd)

    def exists(self) -> bool:
        return os.path.lexists(self.directory)

    def remove(self) -> None:
        """Remove the directory and all the job left in it. shutil.rmtree works through
        directory descriptors here (it is safe against links the job put in its place)."""
        if not shutil.rmtree.avoids_symlink_attacks:
            raise JobDirectoryError("this platform's rmtree may follow links: not removing "
                                    f"{self.directory}")
        shutil.rmtree(self.directory, ignore_errors=True)

    def retire(self, suffix: str) -> str | None:
        """Rename the directory aside (a failed attempt kept for inspection, or one a dead or
        superseded handler left half made) so that a new one can be created. Renaming the
        entry in the server's own parent follows nothing inside it."""
        if not self.exists():
            return None
        target = f"{self.directory}.{suffix}"
        for n in range(1, 100):
            candidate = target if n == 1 else f"{target}.{n}"
            if not os.path.lexists(candidate):
                os.rename(self.directory, candidate)
                return candidate
        raise JobDirectoryError(f"cannot retire {self.directory}: too many retired copies")

    def _open_dir(self) -> "_Fd":
        try:
            return _Fd(os.open(self.directory, _DIR_FLAGS))
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise JobDirectoryError(f"job directory {self.directory} is not a directory "
                                        f"(a symbolic link?): refusing it") from None
            raise

    # -- writing (the server's own files, before the job starts) ----------------------
    def write_script(self, job: dict, destination, config, gated: bool = False,
                     command: str | None = None, environment: dict | None = None,
                     version_command: str | None = None, gate_fd: int = GATE_FD,
                     directory: str | None = None, private_tmp: bool = False,
                     setup=(), before=(), after=()) -> str:
        """Write job.sh running `command` (default: the job's recorded command line) with the
        tool's `environment` exported, and the tool's `version_command` (its output kept in
        COMMAND_VERSION). `gated`: the script first waits for the handler's go on descriptor
        `gate_fd` (the local runner's fence: a handler that lost the job never says go).
        `directory`: the job directory as the machine running the job sees it.
        `private_tmp`: TMPDIR in the job's own directory, not new_file_path (a job as its
        real user cannot write the server's, a node without the shared disk has none).
        `setup`: shell lines after the environment, before entering the directory
        (GALAXY_SLOTS, a runner's own limits); `before` and `after`: lines in the directory
        around the command (job metrics), `after` seeing the command's status in $rc and
        running before the exit-code file is written (the handler reads the job's files
        once that file appears)."""
        where = directory or self.directory
        lines = ["#!/bin/bash",
                 f"# Muleteer job {job.id}: tool {job.tool_id} {job.tool_version}"]
        if gated:
            lines += [
                "# Wait for the handler's go: it gives it only while it still holds the job.",
                "# Without it the tool never runs, and the file named by this process's pid",
                "# tells a recovering handler so.",
                "# (Named by its session: the process the runner started and recorded, this",
                "# script itself or the sudo in front of it for a job as its real user.)",
                f'IFS= read -r -u {gate_fd} go 2>/dev/null && [ "$go" = go ] || '
                f'{{ read -r -a stat < /proc/$$/stat; '
                f': > {shlex.quote(os.path.join(where, NOT_STARTED))}.${{stat[5]}}; exit 75; }}',
                f"exec {gate_fd}<&-" if gate_fd else "exec </dev/null"]
        else:  # a gated job's pid is in the database before its go: no pid file (on some
            # filesystems creating a file costs a job more than all its shell lines)
            lines.append(f"echo $$ > {shlex.quote(os.path.join(where, PID))}")
        if config.umask is not None:
            lines.append(f"umask {config.umask:03o}")
        if private_tmp:
            tmp = shlex.quote(os.path.join(where, "tmp"))
            lines.append(f"mkdir -p -m 700 {tmp} && export TMPDIR={tmp} TEMP={tmp} TMP={tmp}")
        elif config.new_file_path:
            private_directory(config.new_file_path)
            tmp = shlex.quote(config.new_file_path)
            lines.append(f"export TMPDIR={tmp} TEMP={tmp} TMP={tmp}")
        if config.environment_setup_file:
            lines.append(f". {shlex.quote(config.environment_setup_file)}")
        for item in getattr(destination, "env", None) or []:
            if "file" in item:
                lines.append(f". {shlex.quote(item['file'])}")
            elif "exec" in item:
                lines.append(item["exec"])  # admin-written, from job_conf.xml
            else:
                lines.append(f"export {item['name']}={shlex.quote(item['value'])}")
        lines.append(f"export MULETEER_JOB_ID={job.id}")
        for name, value in (environment or {}).items():
            if not _ENV_NAME.fullmatch(name):
                raise JobDirectoryError(f"environment variable name {name!r} is not a shell name")
            lines.append(f"export {name}={shlex.quote(value)}")
        lines += setup
        lines.append(f"cd {shlex.quote(where)} || exit 1")
        lines += before
        if version_command:
            lines.append(f"( {version_command} ) > {COMMAND_VERSION} 2>&1 < /dev/null")
        lines += [
            "(",
            job.command_line if command is None else command,
            f") > {STDOUT} 2> {STDERR} < /dev/null",
            "rc=$?",
            *after,
            # One write of a few bytes: a reader sees the code whole or an empty file, which
            # it takes as not written yet (JobFiles.exit_code). A rename would cost an `mv`
            # process: more than half of a trivial job's script.
            f"echo $rc > {EXIT_CODE}",
            "exit $rc",
            "",
        ]
        with self._open_dir() as fd:
            tmp = SCRIPT + ".tmp"
            try:
                os.unlink(tmp, dir_fd=fd.fd)  # unlinks a link itself, never its target
            except FileNotFoundError:
                pass
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o700, dir_fd=fd.fd)
            with os.fdopen(out, "w") as fh:
                fh.write("\n".join(lines))
            os.replace(tmp, SCRIPT, src_dir_fd=fd.fd, dst_dir_fd=fd.fd)
        return self.path(SCRIPT)

    def write_configfiles(self, files: dict) -> None:
        """The tool's configfiles ({relative path: text}), each in a subdirectory made new
        here (the job has not run yet, but nothing is followed all the same)."""
        with self._open_dir() as fd:
            made = set()
            for relative, text in files.items():
                directory, _, name = relative.rpartition("/")
                if "/" in directory or not name or name in (".", "..") or directory in (".", ".."):
                    raise JobDirectoryError(f"configfile {relative!r}: expected <directory>/<name>")
                if directory and directory not in made:
                    os.mkdir(directory, 0o700, dir_fd=fd.fd)
                    made.add(directory)
                sub = os.open(directory or ".", _DIR_FLAGS, dir_fd=fd.fd)
                try:
                    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, 0o600, dir_fd=sub)
                    with os.fdopen(out, "w", encoding="utf-8") as fh:
                        fh.write(text)
                finally:
                    os.close(sub)

    def copy_inputs(self, sources: dict) -> None:
        """The job's own copies of its inputs ({file name: open binary file}) in INPUTS/, a
        directory made new here (copied in the kernel: sendfile)."""
        with self._open_dir() as fd:
            os.mkdir(INPUTS, 0o700, dir_fd=fd.fd)
            sub = os.open(INPUTS, _DIR_FLAGS, dir_fd=fd.fd)
            try:
                for name, source in sources.items():
                    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, 0o600, dir_fd=sub)
                    try:
                        _copy_fd(source.fileno(), out)
                    finally:
                        os.close(out)
            finally:
                os.close(sub)

    def regular_files(self, limit: int = 10_000) -> list[str]:
        """Paths (relative) of the regular files in the directory, walked by descriptor
        without following links; at most `limit` (a job may make millions)."""
        found = []
        for root, _dirs, names, root_fd in os.fwalk(self.directory, follow_symlinks=False):
            for name in names:
                try:
                    st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append(os.path.relpath(os.path.join(root, name), self.directory))
                    if len(found) >= limit:
                        return found
        return found

    def open_log(self) -> int:
        """A new descriptor for job.log (the job script's own output), opened for writing."""
        with self._open_dir() as fd:
            return os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                           0o600, dir_fd=fd.fd)

    # -- reading (what the job may have tampered with) --------------------------------
    def open_regular(self, relative: str):
        """An open binary file object for `relative` (e.g. "stdout", "outputs/x.txt") if it is
        a regular file reached without following any link, else None."""
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            return None
        try:
            with self._open_dir() as fd:
                current = fd.fd
                opened = []
                try:
                    for part in parts[:-1]:
                        current = os.open(part, _DIR_FLAGS, dir_fd=current)
                        opened.append(current)
                    leaf = os.open(parts[-1], _READ_FLAGS, dir_fd=current)
                finally:
                    for descriptor in opened:
                        os.close(descriptor)
        except (OSError, JobDirectoryError):
            return None
        info = os.fstat(leaf)
        if not stat.S_ISREG(info.st_mode):
            os.close(leaf)  # a FIFO, a device, a socket: never read
            return None
        os.set_blocking(leaf, True)
        return os.fdopen(leaf, "rb")

    def regular_size(self, relative: str) -> int | None:
        """The size of a regular file reached without links; None for anything else."""
        fh = self.open_regular(relative)
        if fh is None:
            return None
        with fh:
            return os.fstat(fh.fileno()).st_size

    def is_regular(self, relative: str) -> bool:
        return self.regular_size(relative) is not None

    def read_small(self, name: str) -> str | None:
        """A small file read whole (exit code, pid); None if missing or not a plain small file."""
        fh = self.open_regular(name)
        if fh is None:
            return None
        with fh:
            data = fh.read(SMALL_FILE + 1)
        if len(data) > SMALL_FILE:
            return None
        return data.decode("utf-8", errors="replace")

    def tail(self, name: str, size: int) -> str:
        """The last `size` bytes of a file, as text ("" if it is missing or not a plain file)."""
        fh = self.open_regular(name)
        if fh is None:
            return ""
        with fh:
            end = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, end - size))
            return fh.read(size).decode("utf-8", errors="replace")

    def exit_code(self, wait: float = 0.0) -> int | None:
        """The exit code the script wrote, waiting up to `wait` seconds for the file:
        a shared filesystem can show it late. An empty file is one being written (or
        whose writer was killed at that moment): not an exit code."""
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            text = self.read_small(EXIT_CODE)
            if text is not None:
                try:
                    return int(text.strip())
                except ValueError:
                    pass
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    def never_started(self, pid) -> bool:
        """Whether the gated script started as process `pid` (its session) exited at its
        gate, its tool not run."""
        return pid is not None and self.is_regular(f"{NOT_STARTED}.{int(pid)}")

    def pid(self) -> int | None:
        text = self.read_small(PID)
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    def missing_outputs(self, paths: dict) -> list[str]:
        """Of the outputs {name: relative path}, those that are not a regular file in the
        directory (a link the job left in an output's place counts as not produced)."""
        return [name for name, relative in paths.items() if not self.is_regular(relative)]

    def size(self) -> int:
        """Bytes in the directory, walked by descriptor without following links."""
        total = 0
        try:
            for _root, _dirs, files, root_fd in os.fwalk(self.directory, follow_symlinks=False):
                for name in files:
                    try:
                        total += os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_size
                    except OSError:
                        pass
        except OSError:
            pass
        return total

    def disk_full(self) -> bool:
        """True when the filesystem holding the directory has no space left for us."""
        try:
            vfs = os.statvfs(self.directory)
        except OSError:
            return False
        return vfs.f_bavail * vfs.f_frsize < 64 * 1024

    # -- staged jobs (muleteer/staging.py, app/staging_api.py) -----------------------
    def write_staged_script(self, name: str, text: str) -> str:
        """Write a staged job's node wrapper `name` (mode 0700: it holds the job's token)."""
        with self._open_dir() as fd:
            tmp = name + ".tmp"
            try:
                os.unlink(tmp, dir_fd=fd.fd)
            except FileNotFoundError:
                pass
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o700, dir_fd=fd.fd)
            with os.fdopen(out, "w") as fh:
                fh.write(text)
            os.replace(tmp, name, src_dir_fd=fd.fd, dst_dir_fd=fd.fd)
        return self.path(name)

    def store_upload(self, parts: list[str], read, limit: int, temp_prefix: str) -> int:
        """Store a file a staged job's node uploads, at the relative path `parts` (checked
        by the caller), from `read(n)` (bytes; b"" at the end), at most `limit` bytes.
        It is written under a temporary name in its directory (made here, mode 0700, if
        missing; no link followed on the way) and renamed into place only once complete:
        a request cut short (a restart, a lost node) leaves no half file under the name.
        Returns the size; JobDirectoryError if the way is not plain directories or the
        file is over `limit`."""
        with self._open_dir() as fd:
            current, opened = fd.fd, []
            try:
                for part in parts[:-1]:
                    try:
                        os.mkdir(part, 0o700, dir_fd=current)
                    except FileExistsError:
                        pass
                    try:
                        current = os.open(part, _DIR_FLAGS, dir_fd=current)
                    except OSError:
                        raise JobDirectoryError(f"{'/'.join(parts)}: {part} is not a directory "
                                                "of the job's") from None
                    opened.append(current)
                temp = f"{temp_prefix}{os.urandom(8).hex()}"
                out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o600, dir_fd=current)
                size = 0
                try:
                    with os.fdopen(out, "wb") as fh:
                        while True:
                            chunk = read(1 << 20)
                            if not chunk:
                                break
                            size += len(chunk)
                            if size > limit:
                                raise JobDirectoryError(f"{'/'.join(parts)}: larger than "
                                                        f"{limit} bytes")
                            fh.write(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
                    leaf = os.lstat(parts[-1], dir_fd=current) if _lexists(parts[-1], current) \
                        else None
                    if leaf is not None and not stat.S_ISREG(leaf.st_mode):
                        raise JobDirectoryError(f"{'/'.join(parts)}: not a regular file in the "
                                                "job directory: not replaced")
                    # rename() replaces the entry itself: a link there is replaced, not followed.
                    os.rename(temp, parts[-1], src_dir_fd=current, dst_dir_fd=current)
                except BaseException:
                    try:
                        os.unlink(temp, dir_fd=current)
                    except OSError:
                        pass
                    raise
                return size
            finally:
                for descriptor in opened:
                    os.close(descriptor)

    def remove_uploads_in_progress(self, temp_prefix: str, limit: int = 10_000) -> int:
        """Remove the temporary files of uploads that never completed (a restart mid-upload)."""
        removed = 0
        for root, _dirs, names, root_fd in os.fwalk(self.directory, follow_symlinks=False):
            for name in names:
                if name.startswith(temp_prefix) and removed < limit:
                    try:
                        os.unlink(name, dir_fd=root_fd)
                        removed += 1
                    except OSError:
                        pass
        return removed


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def _copy_fd(source: int, target: int) -> None:
    size = os.fstat(source).st_size
    offset = 0
    while offset < size:
        sent = os.sendfile(target, source, offset, min(size - offset, 1 << 30))
        if sent == 0:
            break  # the source shrank meanwhile
        offset += sent


class _Fd:
    """A descriptor closed at the end of a with-block."""

    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self) -> "_Fd":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)
