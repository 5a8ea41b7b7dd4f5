"""Staged jobs: a job that runs on a cluster node which cannot see the server's disk
(Pulsar's `default_file_action: remote_transfer`).

The handler writes, next to the job's job.sh, a node wrapper `staged.sh` (bash + curl)
that the scheduler runs instead. On the node it makes a scratch directory of its own,
downloads job.sh, the configfiles, the job's inputs and the tool's files from the server
over HTTP (app/staging_api.py), runs job.sh there, uploads what the job wrote (exit_code
last) and removes the scratch. The node never needs a server path and the server never
reads the node's disk: it only takes uploads, each stored whole or not at all.

Every request carries a per-job token: an HMAC of (job id, lease) under a key only the
server can read. It is honoured only while the job is queued or running under that same
lease, so it dies with the job (ended, cancelled, or adopted by another handler).

This module is the shared part (no flask, no mules): the destination params, the token,
the upload rules and the wrapper's text.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import os
import shlex
from dataclasses import dataclass

from muleteer.job import Job, JobState
from muleteer.job_files import EXIT_CODE, INPUTS, SCRIPT
from muleteer.runner_spec import Param, param_values
from muleteer.secret_files import read_or_create_key

STAGED_SCRIPT = "staged.sh"  # the node wrapper, in the server's job directory
STAGING_LOG = "staging.log"  # the wrapper's own messages, uploaded before exit_code
TOOL = "tool"                # the node's copy of the tool's directory, in the scratch
TMP = "tmp"                  # the node's TMPDIR, in the scratch
CONFIGS = "configs"          # mules/job_command.CONFIG_DIRECTORY (the core cannot import it)
# Temporary names of uploads in progress (app/staging_api.py): never a result.
UPLOAD_PREFIX = ".muleteer-upload-"
# Files of the job directory that only the server writes: an upload never replaces them.
SERVER_FILES = frozenset({SCRIPT, STAGED_SCRIPT, "scheduler.out", "scheduler.err", "job.log"})
SERVER_DIRECTORIES = frozenset({INPUTS, CONFIGS, TOOL, TMP})
MAX_UPLOADS = 10_000         # files a wrapper uploads at most (a job may make millions)
MAX_TOOL_FILES = 500         # files of a tool's directory a node downloads at most
KEY_FILE = "database/staging_key"


class FileAction(str, enum.Enum):
    NONE = "none"                        # the shared filesystem (today's behaviour)
    REMOTE_TRANSFER = "remote_transfer"  # staged over HTTP

    def __str__(self) -> str:
        return self.value


def _file_action(value: str) -> None:
    if value not in {a.value for a in FileAction}:
        raise ValueError(f"{value!r} is not a file action: expected "
                         f"{' or '.join(a.value for a in FileAction)}")


def _absolute(value: str) -> None:
    if not value.startswith("/") or "\n" in value:
        raise ValueError(f"{value!r}: expected an absolute path on the node")


DEFAULT_FILE_ACTION = Param(
    "default_file_action", str, FileAction.NONE.value,
    "none: the node sees the server's disk; remote_transfer: the job's files travel over "
    "HTTP (galaxy_infrastructure_url) and the job runs in a scratch directory on the node",
    check=_file_action)
STAGING_DIRECTORY = Param(
    "staging_directory", str, "/tmp",
    "a staged job's node-local root: its scratch is <this>/muleteer-job-<job id>",
    check=_absolute)
STAGING_RETRY_SECONDS = Param(
    "staging_retry_seconds", int, 300,
    "how long a staged job's transfers are retried (exponential backoff) while the server "
    "cannot be reached, before the job gives up", minimum=1)
# Declared by these runners (their SPEC's destination_params), and honoured only by them.
STAGING_PARAMS = (DEFAULT_FILE_ACTION, STAGING_DIRECTORY, STAGING_RETRY_SECONDS)
RUNNERS = ("slurm", "pbs", "drmaa")


@dataclass(frozen=True)
class Staging:
    """A staged destination's settings."""
    staging_directory: str
    retry_seconds: int

    def scratch(self, job_id: int, token: str) -> str:
        """The job's scratch on the node: named by the job and by a digest of its token, so
        that jobs of several servers (or attempts) sharing a node's directory never meet
        (a stale scratch of another account could not even be removed)."""
        tag = hashlib.sha256(token.encode()).hexdigest()[:12]
        return os.path.join(self.staging_directory, f"muleteer-job-{int(job_id)}-{tag}")


def settings(destination) -> Staging | None:
    """The destination's staging settings; None for the shared filesystem."""
    values = param_values(STAGING_PARAMS, getattr(destination, "params", None) or {})
    if values["default_file_action"] != FileAction.REMOTE_TRANSFER.value:
        return None
    return Staging(values["staging_directory"].rstrip("/") or "/",
                   values["staging_retry_seconds"])


# -- the token ------------------------------------------------------------------------
def key(config) -> bytes:
    """The token key: made once at first start beside the database (mode 0600, like the
    session key of app/auth.py, but its own file: a leaked session key forges no token)."""
    return read_or_create_key(config.resolve(KEY_FILE))


def token(secret: bytes, job_id: int, lease: int) -> str:
    message = f"muleteer-staging:{int(job_id)}:{int(lease)}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def token_valid(secret: bytes, job: Job | None, given: str | None) -> bool:
    """Whether `given` is the token of `job` as it is now (queued or running, same lease)."""
    if job is None or not given or job.state not in (JobState.QUEUED, JobState.RUNNING):
        return False
    return hmac.compare_digest(token(secret, job.id, job.lease).encode(),
                               given.encode("utf-8", "replace"))


# -- what may travel ------------------------------------------------------------------
def path_parts(relative: str) -> list[str] | None:
    """The components of a relative path from a URL; None if it is absolute, climbs out,
    or names nothing."""
    if not relative or relative.startswith("/") or "\\" in relative or "\0" in relative:
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def upload_allowed(relative: str) -> bool:
    """Whether a node may upload `relative` into the job directory: anything the job wrote
    (outputs/..., stdout, stderr, COMMAND_VERSION, exit_code, files outputs are taken
    from), never a file only the server writes, nor into what it downloaded."""
    parts = path_parts(relative)
    if parts is None:
        return False
    if len(parts) == 1 and parts[0] in SERVER_FILES:
        return False
    if len(parts) > 1 and parts[0] in SERVER_DIRECTORIES:
        return False
    return not any(p.startswith(UPLOAD_PREFIX) for p in parts)


def uses_tool_directory(tool) -> bool:
    """Whether the tool's templates name its directory (then its files go to the node)."""
    texts = [tool.command or "", getattr(tool, "version_command", None) or ""]
    texts += [c.text or "" for c in tool.configfiles] + [e.text or "" for e in tool.environment]
    return any("__tool_directory__" in t for t in texts)


def tool_files(regular_files: list[str]) -> list[str]:
    """Of a tool directory's regular files (relative), those a node downloads: not the
    wrappers' test data, nor hidden files; at most MAX_TOOL_FILES."""
    chosen = [f for f in sorted(regular_files)
              if path_parts(f) and not f.startswith("test-data/")
              and not any(p.startswith(".") for p in f.split("/"))]
    return chosen[:MAX_TOOL_FILES]


# -- the node wrapper -----------------------------------------------------------------
@dataclass(frozen=True)
class WrapperPlan:
    job_id: int
    url: str                # galaxy_infrastructure_url
    token: str
    staging: Staging
    configfiles: tuple = ()  # relative paths under the job directory (configs/...)
    inputs: tuple = ()       # input file names (dataset_<id>.dat)
    tool_files: tuple = ()   # relative paths under the tool's directory


def wrapper_script(plan: WrapperPlan) -> str:
    """The bash script the node runs: it names only node paths and the server's URL."""
    scratch = plan.staging.scratch(plan.job_id, plan.token)
    base = f"{plan.url.rstrip('/')}/api/jobs/{int(plan.job_id)}/staging"
    downloads = [(f"job/{SCRIPT}", SCRIPT)]
    downloads += [(f"job/{c}", c) for c in plan.configfiles]
    downloads += [(f"inputs/{n}", f"{INPUTS}/{n}") for n in plan.inputs]
    downloads += [(f"tool/{t}", f"{TOOL}/{t}") for t in plan.tool_files]
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# Muleteer staged job {int(plan.job_id)}: runs on a node without the server's disk.",
        "# Downloads the job's files over HTTP, runs job.sh in a scratch directory of its own,",
        "# uploads what the job wrote (exit_code last: the server then knows it is complete)",
        "# and removes the scratch. Without an uploaded exit code the job ends `error`.",
        "set -u",
        "umask 077",
        f"base={q(base)}",
        f"scratch={q(scratch)}",
        f"retry_seconds={int(plan.staging.retry_seconds)}",
        f"max_uploads={MAX_UPLOADS}",
        # Given to curl on its stdin (-K -), never on its command line (ps shows those).
        f"auth={q('header = ' + chr(34) + 'Authorization: Bearer ' + plan.token + chr(34))}",
        "",
        "log() { printf '%s muleteer staging: %s\\n' \"$(date -u +%FT%TZ)\" \"$*\" >&2; }",
        "cleanup() { cd / && rm -rf -- \"$scratch\"; }",
        "elapsed() { awk -v a=\"$1\" -v b=\"$(date +%s.%N)\" 'BEGIN { printf \"%.3f\", b - a }'; }",
        "",
        "urlencode() {  # a relative path, byte by byte",
        "    local LC_ALL=C s=$1 out= c i",
        "    for ((i = 0; i < ${#s}; i++)); do",
        "        c=${s:i:1}",
        "        case $c in [a-zA-Z0-9._~/-]) out+=$c ;; *) printf -v c '%%%02X' \"'$c\"; out+=$c ;; esac",
        "    done",
        "    printf '%s' \"$out\"",
        "}",
        "",
        "# One transfer (curl arguments after the URL suffix), retried with exponential backoff",
        "# while the server cannot be reached or is restarting, for at most retry_seconds. A",
        "# 404 is the server's refusal (the job is over, or the name is not the job's): final.",
        "transfer() {",
        "    local what=$1 code delay=1 deadline=$(( $(date +%s) + retry_seconds ))",
        "    shift",
        "    while :; do",
        "        code=$(curl --silent --show-error --globoff --connect-timeout 10 \\",
        "            --speed-limit 1 --speed-time 60 -w '%{http_code}' -K - \"$base/$what\" \"$@\" \\",
        "            <<<\"$auth\")",
        "        case $code in",
        "            2??) return 0 ;;",
        "            404) log \"$what: refused by the server (404)\"; return 1 ;;",
        "        esac",
        "        if (( $(date +%s) + delay > deadline )); then",
        "            log \"$what: gave up after ${retry_seconds} s (last answer: ${code:-none})\"",
        "            return 1",
        "        fi",
        "        log \"$what: answer ${code:-none}; retrying in ${delay} s\"",
        "        sleep \"$delay\"",
        "        delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))",
        "    done",
        "}",
        "get() { transfer \"$(urlencode \"$1\")\" -o \"$2\"; }",
        "# ./: a file named - would be curl's stdin",
        "put() { transfer \"files/$(urlencode \"$1\")\" -o /dev/null -T \"./$1\"; }",
        "",
        "trap 'cleanup; exit 143' TERM",
        "trap 'cleanup; exit 130' INT",
        "cleanup  # a stale scratch of this attempt (a job the scheduler requeued)",
        "mkdir -m 0700 -- \"$scratch\" && cd -- \"$scratch\" || { log \"cannot make $scratch\"; exit 1; }",
        f"mkdir -m 0700 -p {INPUTS} {TOOL} {TMP} outputs {CONFIGS} || {{ cleanup; exit 1; }}",
        "exec 2>>" + STAGING_LOG,
        "log \"job $scratch on $(hostname)\"",
        "",
        "started=$(date +%s.%N)",
        "downloads=(",
    ]
    for remote, local in downloads:
        lines.append(f"    {q(remote)} {q(local)}")
    lines += [
        ")",
        "for ((i = 0; i < ${#downloads[@]}; i += 2)); do",
        "    local_path=${downloads[i+1]}",
        "    mkdir -p -- \"$(dirname -- \"$local_path\")\" &&",
        "        get \"${downloads[i]}\" \"$local_path\" || { log 'download failed'; cleanup; exit 1; }",
        "done",
        f"chmod -R u+rwX {TOOL}",
        "log \"downloaded $(( ${#downloads[@]} / 2 )) files in $(elapsed \"$started\") s\"",
        "",
        f"bash {SCRIPT}",
        "rc=$?",
        "log \"job.sh exited $rc\"",
        "",
        "# Everything the job wrote except what came from the server; exit_code last.",
        "count=0 status=0 started=$(date +%s.%N)",
        "while IFS= read -r -d '' file; do",
        "    file=${file#./}",
        "    count=$((count + 1))",
        "    if (( count > max_uploads )); then",
        "        log \"more than $max_uploads files: not uploading the rest\"; status=1; break",
        "    fi",
        "    put \"$file\" || { status=1; break; }",
        f"done < <(find . \\( -path ./{INPUTS} -o -path ./{TOOL} -o -path ./{TMP} "
        f"-o -path ./{CONFIGS} \\) -prune -o -type f ! -path ./{EXIT_CODE} "
        f"! -path ./{SCRIPT} ! -path ./pid ! -path ./{STAGING_LOG} -print0)",
        "(( status == 0 )) && log \"uploaded $count files in $(elapsed \"$started\") s\"",
        f"if (( status == 0 )) && [ -f {EXIT_CODE} ]; then",
        f"    put {STAGING_LOG} || status=1",
        f"    (( status == 0 )) && {{ put {EXIT_CODE} || status=1; }}",
        "fi",
        "cleanup",
        "exit $(( status ? 1 : rc ))",
        "",
    ]
    return "\n".join(lines)

