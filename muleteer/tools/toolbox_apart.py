"""The toolbox read by a child Python process, for the uWSGI web workers and mules.

Galaxy's tool parser (galaxy.tool_util.parser, with pydantic and its models) takes ~40 MB
in every process that imports it, and a server process needs only the Toolbox it builds
(our own dataclasses). So under uWSGI the wrappers are parsed by `python -m
muleteer.tools.toolbox_apart`, which sends the Toolbox back pickled, and the result is
kept in database/toolbox.cache with a fingerprint of the files it came from: the other
processes of the same server, and the next start, read it instead of parsing again.

The fingerprint covers the tool_conf file, every file under tool_path and under each
loaded wrapper's directory, and the XML files beside that directory (a `../macros.xml`);
a file changed anywhere in there is parsed again. The cache is the server's own file in its
0700 database directory, written whole (a temporary name, then a rename).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import pickle
import stat
import subprocess
import sys
from dataclasses import dataclass

from muleteer.tools.errors import ToolError
from muleteer.tools.toolbox import Toolbox, load_toolbox

log = logging.getLogger(__name__)
CACHE_NAME = "toolbox.cache"
_FORMAT = 1
# The parse of a large toolbox takes seconds; a child that hangs stops start-up clearly.
TIMEOUT_SECONDS = 600


class _NoChild(Exception):
    """The child python could not be started at all."""


@dataclass
class _Parsed:
    """What the child sends back: the toolbox and the directories its files came from."""
    toolbox: Toolbox | None
    roots: list[str]
    error: str | None = None


def load_toolbox_apart(tool_path: str, tool_config_file: str | None,
                       cache_directory: str) -> Toolbox:
    """The toolbox, from the cache when its files are unchanged, else parsed by a child
    process (one at a time per server: the others wait and read what it wrote).
    ToolError as load_toolbox gives it (a malformed tool_conf.xml)."""
    tool_path = os.path.abspath(tool_path)
    tool_config_file = os.path.abspath(tool_config_file) if tool_config_file else None
    os.makedirs(cache_directory, mode=0o700, exist_ok=True)
    cache = os.path.join(cache_directory, CACHE_NAME)
    # O_NONBLOCK: a FIFO in its place fails the open (ENXIO) instead of hanging start-up.
    lock_fd = os.open(cache + ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                      | os.O_CLOEXEC, 0o600)
    with os.fdopen(lock_fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _read(cache, tool_path, tool_config_file)
        if cached is not None:
            return cached
        try:
            parsed = _parse_in_child(tool_path, tool_config_file)
        except _NoChild as exc:
            # E.g. a server account that may not run this environment's python (a real-user
            # install): parsed here instead, Galaxy's parser and all.
            log.warning("%s; the tools are parsed in this process", exc)
            return load_toolbox(tool_path, tool_config_file)
        if parsed.error is not None:
            raise ToolError(parsed.error)
        _write(cache, tool_path, tool_config_file, parsed)
        return parsed.toolbox


def _read(cache: str, tool_path: str, tool_config_file: str | None) -> Toolbox | None:
    try:
        fd = os.open(cache, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a link in its place
        log.warning("toolbox cache %s not used: %s", cache, exc)
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            # Unpickling runs code: only a file this account wrote and nobody else may change.
            if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()
                    or info.st_mode & 0o022):
                log.warning("toolbox cache %s not used: not this account's own private file",
                            cache)
                return None
            entry = pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a cache from another version, or cut short: parse again
        log.info("toolbox cache %s not used: %s", cache, exc)
        return None
    if not isinstance(entry, dict) or entry.get("format") != _FORMAT:
        return None
    if entry.get("fingerprint") != fingerprint(tool_path, tool_config_file, entry["roots"]):
        return None
    return entry["toolbox"]


def _write(cache: str, tool_path: str, tool_config_file: str | None, parsed: _Parsed) -> None:
    entry = {"format": _FORMAT, "roots": parsed.roots, "toolbox": parsed.toolbox,
             "fingerprint": fingerprint(tool_path, tool_config_file, parsed.roots)}
    partial = f"{cache}.{os.getpid()}.tmp"
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(entry, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, cache)
    except OSError as exc:  # a full disk: this process has its toolbox, the next parses
        log.warning("toolbox cache %s not written: %s", cache, exc)
        try:
            os.unlink(partial)
        except OSError:
            pass


def _python() -> str:
    """This environment's python (under uWSGI, sys.executable is the uwsgi binary)."""
    if os.path.basename(sys.executable).startswith("python"):
        return sys.executable
    return os.path.join(sys.prefix, "bin", "python3")


def _parse_in_child(tool_path: str, tool_config_file: str | None) -> _Parsed:
    argv = [_python(), "-m", "muleteer.tools.toolbox_apart", tool_path]
    if tool_config_file:
        argv.append(tool_config_file)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    try:
        # stderr is the server's: the child logs each broken wrapper there, as before.
        done = subprocess.run(argv, stdout=subprocess.PIPE, env=env, timeout=TIMEOUT_SECONDS,
                              check=False)
    except OSError as exc:
        raise _NoChild(f"no child process could read the tools ({argv[0]}: {exc})") from None
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"the tools under {tool_path} could not be read: {exc}") from None
    if done.returncode != 0:
        raise ToolError(f"the tools under {tool_path} could not be read: {argv[0]} -m "
                        f"muleteer.tools.toolbox_apart exited with {done.returncode} "
                        "(its error is in the log above)")
    return pickle.loads(done.stdout)  # from our own child, over our own pipe


def fingerprint(tool_path: str, tool_config_file: str | None, roots: list[str]) -> str:
    """A hash of every file the toolbox may have read (see the module's docstring), with
    this code's own files and Python's version (a pickle belongs to them)."""
    digest = hashlib.sha256(repr((_FORMAT, sys.version, tool_path, tool_config_file)).encode())
    here = os.path.dirname(os.path.abspath(__file__))
    seen = set()

    def add(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        try:
            info = os.stat(path)
        except OSError:
            digest.update(f"{path}\0-\n".encode())
            return
        digest.update(f"{path}\0{info.st_mtime_ns}\0{info.st_size}\n".encode())

    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            add(os.path.join(here, name))
    if tool_config_file:
        add(tool_config_file)
    for root in sorted(set([tool_path] + list(roots))):
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders
                                   if d != "test-data" and not d.startswith("."))
            for name in sorted(files):
                add(os.path.join(folder, name))
        parent = os.path.dirname(root)
        try:
            beside = sorted(os.listdir(parent))
        except OSError:
            beside = []
        for name in beside:  # XML only: a server's log may well lie beside its tools
            path = os.path.join(parent, name)
            if name.endswith(".xml") and os.path.isfile(path):
                add(path)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    """The child: parse, then write the _Parsed pickle to stdout."""
    # By its importable name: run as __main__, this module's own class would pickle as
    # __main__._Parsed and the parent could not read it.
    from muleteer.tools.toolbox_apart import _Parsed as Parsed
    # Warnings and errors only (a skipped wrapper is an error): Cheetah's lib2to3 says
    # a line per fixer at INFO.
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    tool_path, tool_config_file = argv[0], (argv[1] if len(argv) > 1 else None)
    try:
        toolbox = load_toolbox(tool_path, tool_config_file)
    except ToolError as exc:
        parsed = Parsed(None, [], str(exc))
    else:
        parsed = Parsed(toolbox, sorted({os.path.dirname(p) for p in toolbox.files()}))
    sys.stdout.buffer.write(pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
