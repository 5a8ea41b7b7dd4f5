#!/usr/bin/python3 -I
"""Hand a job directory to the job's real user, or back to the server account (Galaxy's
external_chown_script, same argv). Runs as root through sudo for the server account.

    external_chown_script.py PATH USERNAME GID

PATH must be exactly a job directory `<root>/<NNN>/<job id>` under a job_working_directory
of the root-owned configuration, reached without any link, not a mount point. USERNAME is a
real user (uid >= min_uid) to hand it to, or the configured server_user to hand it back;
GID is one of that account's groups. The directory must now belong to the server account
(handing to USERNAME, or USERNAME already, for a re-run) or, handing back, to a real user.
Only entries owned by the giving or receiving account change hands; links stay as they are
and are never followed; hard-linked regular files are skipped with a warning.
Exit 0 done, 1 refused (nothing changed), 2 usage.
"""
import importlib.util
import os
import sys


def _load_checks():
    """Load muleteer/real_user.py by its path next to this script, once nothing but root can
    have written it or this script: they run as root, so whoever could edit them would own
    the machine. (-I in the #! line: no PYTHON* variables, no user site, no script dir.)"""
    here = os.path.realpath(__file__)
    module = os.path.join(os.path.dirname(os.path.dirname(here)), "muleteer", "real_user.py")
    for path in (here, module):
        step = path
        while True:
            info = os.lstat(step)
            if info.st_uid != 0 or info.st_mode & 0o022:
                sys.exit(f"{os.path.basename(here)}: refused: {step} must be owned by root and "
                         f"not writable by group or others (this script runs as root)")
            if step == "/":
                break
            step = os.path.dirname(step)
    spec = importlib.util.spec_from_file_location("muleteer_real_user", module)
    checks = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = checks  # dataclasses look their module up there
    spec.loader.exec_module(checks)
    return checks


ru = _load_checks()
USAGE = "PATH USERNAME GID"


def handover(job, username: str, gid: int, config):
    """Who gives the directory to whom, after checking that this hand-over is allowed."""
    server = config.server
    if username == server.name:  # handing back to the server account
        ru.check_group(server, gid)
        if job.owner_uid != server.uid:
            giver = owner_account(job, config)
            return ru.Handover(frozenset({giver.uid, server.uid}), server.uid, gid)
        return ru.Handover(frozenset({server.uid}), server.uid, gid)
    user = ru.job_user(username, config)
    ru.check_group(user, gid)
    if job.owner_uid not in (server.uid, user.uid):
        raise ru.Refused(f"job directory {job.path} is owned by another user, "
                         f"{ru.owner_name(job.owner_uid)}: not handing it to {user.name}")
    return ru.Handover(frozenset({server.uid, user.uid}), user.uid, gid)


def owner_account(job, config):
    """The real user a directory is handed back from: never root or a system account."""
    try:
        name = ru.pwd.getpwuid(job.owner_uid).pw_name
    except KeyError:
        raise ru.Refused(f"job directory {job.path} is owned by uid {job.owner_uid}, "
                         f"which has no account") from None
    try:
        return ru.job_user(name, config)
    except ru.Refused as error:
        raise ru.Refused(f"job directory {job.path} is owned by {name}, not a real "
                         f"user's: {error}") from None


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        raise ru.UsageError(f"expected {USAGE}, got {len(argv)} argument(s)")
    path, username, gid_text = argv
    gid = ru.parse_gid(gid_text)
    config = ru.load_config()
    job, fd = ru.open_job_directory(path, config)
    try:
        plan = handover(job, username, gid, config)
        ru.chown_tree(fd, job.path, plan, warn)
    finally:
        os.close(fd)
    return 0


def warn(message: str) -> None:
    print(f"external_chown_script.py: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    ru.run("external_chown_script.py", main, sys.argv[1:])
