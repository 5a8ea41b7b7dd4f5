"""The checks behind the three root scripts that run a job as its real user (Galaxy's
external_chown_script, drmaa_external_runjob_script and drmaa_external_killjob_script).

The scripts run as root through sudo for the server account. Galaxy's own chown script
"accepts a path and does nothing to ensure that this path is a Galaxy working directory",
so whoever can act as the Galaxy user can chown any file. Here the threat is exactly that
account: everything it passes is checked against what root trusts, which is only

- the root-owned configuration (job directory roots, the server account, the minimum uid),
- the password and group databases,
- the file system as seen through descriptors opened without following links.

Stdlib only, and no import of the rest of muleteer: the scripts load this one file by path
under the system python3 (`-I`), without the venv and without muleteer's dependencies.
"""
from __future__ import annotations

import dataclasses
import errno
import grp
import os
import pwd
import re
import stat
import sys
from typing import Callable, NoReturn

DEFAULT_CONFIG = "/etc/muleteer/real-user.conf"
# Honoured only when running as root and only for a root-owned, unwritable file in a
# root-owned, unwritable directory (tests point it at a config they made as root). sudo's
# env_reset drops it anyway unless a sudoers line keeps it.
CONFIG_ENV = "MULETEER_REAL_USER_CONF"
DEFAULT_MIN_UID = 1000
CONFIG_KEYS = {"job_working_directory", "server_user", "min_uid", "drmaa_library_path",
               "drm_environment", "user_programs"}
# What external_runjob.py may start as a job's user: the job script's shell, the
# schedulers' submit and cancel clients, kill (the local runner's cancel) and du (the
# output_size limit of a running job).
DEFAULT_USER_PROGRAMS = ("/bin/bash", "/usr/bin/sbatch", "/usr/bin/scancel", "/usr/bin/qsub",
                         "/usr/bin/qdel", "/bin/kill", "/usr/bin/kill", "/usr/bin/du")
# The environment of a dropped process: nothing from the caller, only what the site set.
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
EXIT_REFUSED = 1
EXIT_USAGE = 2

_USERNAME = re.compile(r"[a-z_][a-z0-9_.-]*\$?", re.IGNORECASE)
_JOB_ID = re.compile(r"[1-9][0-9]*|0")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(Exception):
    """What was refused and why, one line; the script exits 1 having changed nothing."""


class UsageError(Exception):
    """Wrong arguments; the script exits 2."""


# -- configuration ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int  # primary group
    groups: tuple[int, ...]  # every group, the primary one included
    home: str


@dataclasses.dataclass(frozen=True)
class Config:
    path: str
    roots: tuple[str, ...]
    server: Account
    min_uid: int
    drmaa_library_path: str | None
    drm_environment: tuple[tuple[str, str], ...]
    user_programs: tuple[str, ...] = DEFAULT_USER_PROGRAMS


def config_path(environ: dict[str, str] | os._Environ = os.environ) -> str:
    """The default path, or the environment's when root runs us (its file is then checked
    like the default one: root-owned, unwritable by others)."""
    override = environ.get(CONFIG_ENV)
    if override and os.getuid() == 0 and os.geteuid() == 0:
        return override
    return DEFAULT_CONFIG


def check_trusted_file(path: str, what: str) -> None:
    """Refuse unless `path` and its directory are owned by root and writable by nobody else
    (otherwise whoever can write them decides what root does)."""
    for target, kind in ((path, what), (os.path.dirname(path) or "/", f"the directory of {what}")):
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            raise Refused(f"{kind} {target} does not exist") from None
        if stat.S_ISLNK(info.st_mode):
            raise Refused(f"{kind} {target} is a symbolic link: it must be a real root-owned file")
        if info.st_uid != 0:
            raise Refused(f"{kind} {target} is owned by uid {info.st_uid}, not root")
        if info.st_mode & 0o022:
            raise Refused(f"{kind} {target} is writable by group or others "
                          f"(mode {stat.S_IMODE(info.st_mode):04o})")


def parse_config_text(text: str, path: str) -> dict[str, str]:
    """`key = value` lines, `#` comments; an indented line continues the previous value.
    Unknown keys and repeated keys are refused (a typo must not silently mean a default)."""
    values: dict[str, str] = {}
    last: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if raw[:1].isspace() and last is not None:
            values[last] += "\n" + line
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key not in CONFIG_KEYS:
            raise Refused(f"{path} line {number}: expected one of "
                          f"{', '.join(sorted(CONFIG_KEYS))} as `key = value`")
        if key in values:
            raise Refused(f"{path} line {number}: {key} is set twice")
        values[key] = value.strip()
        last = key
    return values


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in re.split(r"[\n,]", value) if item.strip()]


def _roots(value: str, path: str) -> tuple[str, ...]:
    roots = _split_list(value)
    if not roots:
        raise Refused(f"{path}: job_working_directory is not set")
    for root in roots:
        # A root with a link or `..` in it would make "under the root" mean something else.
        if not os.path.isabs(root) or os.path.realpath(root) != root:
            raise Refused(f"{path}: job_working_directory {root} is not an absolute path "
                          f"free of symbolic links and `..`")
        if not os.path.isdir(root):
            raise Refused(f"{path}: job_working_directory {root} is not a directory")
    return tuple(roots)


def _environment(value: str, path: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in _split_list(value):
        name, sep, val = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name.strip()):
            raise Refused(f"{path}: drm_environment item {item!r} is not NAME=VALUE")
        pairs.append((name.strip(), val.strip()))
    return tuple(pairs)


def load_config(path: str | None = None) -> Config:
    path = path or config_path()
    check_trusted_file(path, "the configuration")
    with open(path, encoding="utf-8") as handle:
        values = parse_config_text(handle.read(), path)
    if "server_user" not in values:
        raise Refused(f"{path}: server_user is not set")
    try:
        min_uid = int(values.get("min_uid", DEFAULT_MIN_UID))
    except ValueError:
        raise Refused(f"{path}: min_uid is not a number") from None
    if min_uid < 1:
        raise Refused(f"{path}: min_uid must be at least 1 (root is never a job's user)")
    server = lookup_account(values["server_user"])
    if server.uid == 0:
        raise Refused(f"{path}: server_user must not be root")
    return Config(path=path, roots=_roots(values.get("job_working_directory", ""), path),
                  server=server, min_uid=min_uid,
                  drmaa_library_path=values.get("drmaa_library_path") or None,
                  drm_environment=_environment(values.get("drm_environment", ""), path),
                  user_programs=_programs(values.get("user_programs"), path))


def _programs(value: str | None, path: str) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_USER_PROGRAMS
    programs = tuple(_split_list(value))
    for program in programs:
        if not os.path.isabs(program) or os.path.normpath(program) != program:
            raise Refused(f"{path}: user_programs {program} is not a plain absolute path")
    return programs


# -- accounts -----------------------------------------------------------------------------
def lookup_account(name: str) -> Account:
    if not _USERNAME.fullmatch(name):
        raise Refused(f"user {name!r} is not a valid account name")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise Refused(f"user {name!r} does not exist on this machine") from None
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return Account(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups,
                   home=entry.pw_dir)


def job_user(name: str, config: Config) -> Account:
    """A real user a job may run as: not root, not a system account, not the server."""
    account = lookup_account(name)
    if account.uid == 0:
        raise Refused(f"user {name!r} is root: jobs never run as root")
    if account.uid < config.min_uid:
        raise Refused(f"user {name!r} has uid {account.uid}, below min_uid {config.min_uid} "
                      f"(system accounts are refused)")
    if account.uid == config.server.uid:
        raise Refused(f"user {name!r} is the server account, not a real user")
    return account


def parse_gid(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise UsageError(f"GID {text!r} is not a number")
    return int(text)


def check_group(account: Account, gid: int) -> None:
    if gid not in account.groups:
        name = _group_name(gid)
        raise Refused(f"gid {gid}{name} is not one of user {account.name!r}'s groups")


def _group_name(gid: int) -> str:
    try:
        return f" ({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return ""


# -- job directories ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class JobDirectory:
    path: str
    root: str
    job_id: int
    owner_uid: int


def _plain_absolute(path: str, what: str) -> None:
    """No `..`, `.`, `//` or trailing slash: the path must already be its canonical self, so
    that lexical checks and what the kernel opens agree."""
    if not os.path.isabs(path) or os.path.normpath(path) != path or "/./" in path + "/":
        raise Refused(f"{what} {path!r} is not a plain absolute path (no `..`, `.`, `//`)")


def open_no_links(path: str, what: str, directory: bool = True) -> int:
    """Open `path` component by component from `/`, never following a link (O_NOFOLLOW at
    each step), so a component swapped for a link after any check still cannot redirect
    us. Returns the descriptor; the caller closes it."""
    _plain_absolute(path, what)
    fd = os.open("/", _DIR_FLAGS)
    try:
        parts = [part for part in path.split("/") if part]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = _DIR_FLAGS if (directory or not last) else _FILE_FLAGS
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as error:
                sofar = "/" + "/".join(parts[: index + 1])
                raise Refused(_open_refusal(what, path, sofar, fd, part, error)) from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_refusal(what: str, path: str, sofar: str, parent_fd: int, part: str,
                  error: OSError) -> str:
    try:
        info = os.lstat(part, dir_fd=parent_fd)
    except OSError:
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        return f"{what} {path}: {sofar} is a symbolic link (links are never followed)"
    if error.errno == errno.ENOTDIR:
        return f"{what} {path}: {sofar} is not a directory"
    if error.errno == errno.ENOENT:
        return f"{what} {path}: {sofar} does not exist"
    return f"{what} {path}: cannot open {sofar}: {error.strerror}"


def _mount_points() -> set[str]:
    """Mount points as root sees them: a bind mount on a job directory (same st_dev when the
    source is on the same file system) is caught here instead."""
    points = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4:
                    points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                                      fields[4]))
    except OSError:
        pass
    return points


def _layout(path: str, config: Config) -> tuple[str, int]:
    """The root and job id of `path` if it is exactly `<root>/<NNN>/<job id>`."""
    for root in config.roots:
        prefix = root.rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        if len(rest) != 2 or not _JOB_ID.fullmatch(rest[1]):
            continue
        job_id = int(rest[1])
        if rest[0] == f"{job_id // 1000:03d}":
            return root, job_id
    raise Refused(f"job directory {path}: not <root>/<NNN>/<job id> under a configured "
                  f"job_working_directory ({', '.join(config.roots)})")


def _check_parent(fd: int, path: str, config: Config) -> None:
    info = os.fstat(fd)
    if info.st_uid not in (0, config.server.uid) or info.st_mode & 0o022:
        raise Refused(f"{path} (above the job directory) must be owned by the server "
                      f"account or root and not writable by group or others")


def open_job_directory(path: str, config: Config) -> tuple[JobDirectory, int]:
    """Validate `path` as a job directory and return it with an open descriptor on it (the
    caller acts through the descriptor only, and closes it)."""
    _plain_absolute(path, "job directory")
    if os.path.realpath(path) != path:
        raise Refused(f"job directory {path}: resolves to {os.path.realpath(path)} "
                      f"(symbolic links are refused)")
    root, job_id = _layout(path, config)
    root_fd = open_no_links(root, "job_working_directory")
    try:
        _check_parent(root_fd, root, config)
        root_dev = os.fstat(root_fd).st_dev
        parent = os.path.dirname(path)
        parent_fd = open_no_links(parent, "job directory")
        try:
            _check_parent(parent_fd, parent, config)
        finally:
            os.close(parent_fd)
    finally:
        os.close(root_fd)
    fd = open_no_links(path, "job directory")
    try:
        info = os.fstat(fd)
        if info.st_dev != root_dev or path in _mount_points() or parent in _mount_points():
            raise Refused(f"job directory {path} is on another file system or a mount point "
                          f"than its root {root} (bind mounts are refused)")
        return JobDirectory(path=path, root=root, job_id=job_id, owner_uid=info.st_uid), fd
    except BaseException:
        os.close(fd)
        raise


def job_directory_of(path: str, config: Config) -> str:
    """The job directory that contains `path` (or is it), lexically: `<root>/<NNN>/<id>`."""
    _plain_absolute(path, "path")
    for root in config.roots:
        prefix = root.rstrip("/") + "/"
        if path.startswith(prefix):
            parts = path[len(prefix):].split("/")
            if len(parts) >= 2:
                return prefix + "/".join(parts[:2])
    raise Refused(f"{path} is not inside a job directory under a configured "
                  f"job_working_directory ({', '.join(config.roots)})")


def check_inside(path: str, job_dir: str, what: str) -> None:
    """`path` is the job directory or below it, with no link or `..` on the way."""
    _plain_absolute(path, what)
    if path != job_dir and not path.startswith(job_dir + "/"):
        raise Refused(f"{what} {path} is not inside the job directory {job_dir}")
    if os.path.realpath(path) != path:
        raise Refused(f"{what} {path} resolves to {os.path.realpath(path)} "
                      f"(symbolic links are refused)")


def owner_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


# -- the recursive chown ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Handover:
    """Give everything owned by one of `from_uids` to uid:gid; leave the rest alone."""
    from_uids: frozenset[int]
    uid: int
    gid: int


# A job can nest directories as deep as it likes; the walk holds one descriptor and one
# Python frame per level, so it stops (with a warning) well before either runs out.
MAX_DEPTH = 128


def chown_tree(fd: int, path: str, handover: Handover, warn: Callable[[str], None],
               depth: int = 0) -> int:
    """Chown the directory open on `fd` and everything below it, through descriptors only:
    entries are opened with O_NOFOLLOW relative to their parent's descriptor and checked
    with fstat on that descriptor, links are left alone (their targets are never touched),
    nothing crosses to another file system, nothing deeper than MAX_DEPTH levels changes.
    Returns how many entries were changed."""
    dev = os.fstat(fd).st_dev
    changed = 0
    for name in os.listdir(fd):
        changed += _chown_child(fd, name, f"{path}/{name}", dev, handover, warn, depth + 1)
    # The directory itself last: if this is interrupted, the top still has its old owner and
    # running the same command again is accepted and finishes the job.
    return changed + _chown_entry_fd(fd, path, handover, warn)


def _chown_child(parent_fd: int, name: str, path: str, dev: int, handover: Handover,
                 warn: Callable[[str], None], depth: int) -> int:
    info = os.lstat(name, dir_fd=parent_fd)
    if info.st_dev != dev:
        warn(f"skipped {path}: on another file system (a mount point)")
        return 0
    if stat.S_ISLNK(info.st_mode):
        # Links keep their owner: a link's owner grants nothing (the server never follows
        # links in a job directory, and removing one needs only the parent), and chowning it
        # by name would race with the job swapping it for a hard link to someone's file.
        return 0
    if stat.S_ISDIR(info.st_mode):
        if depth > MAX_DEPTH:
            warn(f"skipped {path}: deeper than {MAX_DEPTH} directory levels")
            return 0
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as error:  # replaced by a link or removed since the lstat
            warn(f"skipped {path}: {error.strerror}")
            return 0
        try:
            return chown_tree(child, path, handover, warn, depth)
        finally:
            os.close(child)
    if stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):
        try:
            # O_PATH: a descriptor on the inode itself, without opening a FIFO or reading.
            child = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        except OSError as error:
            warn(f"skipped {path}: {error.strerror}")
            return 0
        try:
            return _chown_entry_fd(child, path, handover, warn)
        finally:
            os.close(child)
    warn(f"skipped {path}: a device node has no place in a job directory")
    return 0


def _not_ours(path: str, info: os.stat_result, warn: Callable[[str], None]) -> int:
    warn(f"skipped {path}: owned by {owner_name(info.st_uid)}, neither the job's user nor "
         f"the server account")
    return 0


def _chown_entry_fd(fd: int, path: str, handover: Handover, warn: Callable[[str], None]) -> int:
    """Chown what `fd` refers to (checked on that same inode: no race with a rename)."""
    info = os.fstat(fd)
    if stat.S_ISLNK(info.st_mode):  # swapped for a link since the lstat: leave it
        return 0
    if info.st_uid not in handover.from_uids:
        return _not_ours(path, info, warn)
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        # The same inode is also somewhere outside the job directory: giving it away here
        # would give away that other file too. Skipped, not refused: the check and the chown
        # are on the same inode so there is no race, and one stray link must not leave the
        # rest of the directory stuck with the wrong owner.
        warn(f"skipped {path}: a regular file with {info.st_nlink} hard links")
        return 0
    _fchown(fd, info, handover)
    if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_ISUID | stat.S_ISGID):
        # Linux clears these on chown already; make sure no set-id program changes hands.
        os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(info.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
    return 1


def _fchown(fd: int, info: os.stat_result, handover: Handover) -> None:
    if stat.S_ISDIR(info.st_mode):
        os.fchown(fd, handover.uid, handover.gid)
    else:
        # An O_PATH descriptor (fchown refuses those): /proc/self/fd/N names exactly the
        # inode that was opened and checked, it does not look the file's name up again.
        os.chown(f"/proc/self/fd/{fd}", handover.uid, handover.gid)


# -- dropping privileges ------------------------------------------------------------------
def drop_privileges(account: Account) -> None:
    """Become `account` for good: groups, then gid, then uid (the other order would leave us
    unable to change groups), then prove it (and that root cannot be regained)."""
    os.setgroups(list(account.groups))
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)
    if os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3:
        raise Refused(f"could not become {account.name}: ids are {os.getresuid()}/{os.getresgid()}")
    if sorted(set(os.getgroups())) != sorted(set(account.groups)):
        raise Refused(f"could not set {account.name}'s groups")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise Refused(f"still able to become root after dropping to {account.name}")
    os.umask(0o077)


def user_environment(account: Account, config: Config) -> dict[str, str]:
    """The dropped process's environment: nothing inherited, only the account's basics and
    the site's DRM settings from the root-owned configuration."""
    env = {"PATH": SAFE_PATH, "HOME": account.home, "USER": account.name,
           "LOGNAME": account.name, "LANG": "C.UTF-8"}
    env.update(dict(config.drm_environment))
    if config.drmaa_library_path:
        env["DRMAA_LIBRARY_PATH"] = config.drmaa_library_path
    return env


def import_drmaa():
    try:
        import drmaa  # noqa: PLC0415 - only after dropping privileges, so it runs as the user
    except (ImportError, RuntimeError, OSError) as error:
        # One line, as every refusal: drmaa's own text may span several (when ldconfig
        # finds a libdrmaa that does not load, it prints LD_PRELOAD advice for two shells).
        reason = " ".join(str(error).split())
        raise Refused(f"the python drmaa package is not usable by {sys.executable} "
                      f"({reason}); install it system-wide (Debian: python3-drmaa) and set "
                      f"drmaa_library_path in the configuration") from None
    return drmaa


# -- running a script ---------------------------------------------------------------------
def run(name: str, main: Callable[[list[str]], int], argv: list[str]) -> NoReturn:
    """Run a script's main: a refusal or a usage error is one line on stderr and exit 1 or 2."""
    try:
        if os.geteuid() != 0:
            raise Refused("must run as root (through sudo)")
        code = main(argv)
    except UsageError as error:
        print(f"{name}: usage error: {error}", file=sys.stderr)
        code = EXIT_USAGE
    except Refused as error:
        print(f"{name}: refused: {error}", file=sys.stderr)
        code = EXIT_REFUSED
    sys.exit(code)


AS_USER = "--as-user"  # the second stage of a DRMAA script, already the user


def continue_as_user(script: str, env: dict[str, str], payload: str) -> NoReturn:
    """After drop_privileges: the DRM part in a fresh interpreter of this script, started
    with the user's environment (glibc reads GLIBC_TUNABLES, which Grid Engine's libdrmaa
    needs, only when a process starts)."""
    os.execve(sys.executable, [sys.executable, "-I", script, AS_USER, payload], env)


def run_as_user(name: str, main: Callable[[str], int], argv: list[str]) -> NoReturn:
    """The second stage: never as root (the checks were the first stage's)."""
    try:
        if os.geteuid() == 0 or os.getuid() == 0:
            raise Refused(f"{AS_USER} runs only after dropping privileges")
        if len(argv) != 1:
            raise UsageError(f"{AS_USER} takes one argument")
        code = main(argv[0])
    except (Refused, UsageError) as error:
        print(f"{name}: refused: {error}", file=sys.stderr)
        code = EXIT_REFUSED
    sys.exit(code)


def whoami(env: dict[str, str]) -> str:
    """`id -un` of a child of the dropped process (what --dry-run prints): proof that
    whatever the script would start next runs as the user."""
    import subprocess  # noqa: PLC0415 - only the dry runs need it

    result = subprocess.run(["/usr/bin/id", "-un"], env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise Refused(f"`id -un` failed after dropping privileges: {result.stderr.strip()}")
    return result.stdout.strip()


_SCHEDULER_JOB_ID = re.compile(r"[0-9]+(\.[A-Za-z0-9][A-Za-z0-9.-]*)?")


def scheduler_job_id(text: str) -> str:
    """A DRM job id: digits, optionally `.host` (what Grid Engine, PBS and Slurm hand out)."""
    if not _SCHEDULER_JOB_ID.fullmatch(text):
        raise Refused(f"job id {text!r} is not a scheduler job id (digits, optionally .host)")
    return text
