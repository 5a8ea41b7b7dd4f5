#!/usr/bin/python3 -I
"""Run one program as a job's real user, in its job directory (ours: the local, slurm and
pbs runners' counterpart of Galaxy's drmaa_external_runjob_script). Runs as root through
sudo for the server account.

    external_runjob.py USERNAME JOB_DIRECTORY -- PROGRAM [ARG...]

USERNAME is a real user (uid >= min_uid, not root, not the server account). JOB_DIRECTORY
is a job directory as external_chown_script.py checks it, owned by USERNAME (the program
then runs in it) or still by the server account (a staged job, whose script reaches the
scheduler on stdin: the program runs in /). PROGRAM is an absolute path listed in the
configuration's user_programs (default: bash for the job script, sbatch, scancel, qsub,
qdel, kill and du). The script becomes the user for good (all their groups), with a clean
environment, and replaces itself with the program: stdin, stdout, stderr and the exit
status are the program's (the local runner's gate arrives on stdin).
Exit 1 refused (nothing run), 2 usage; otherwise the program's own status.
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
USAGE = "USERNAME JOB_DIRECTORY -- PROGRAM [ARG...]"


def parse_argv(argv: list[str]) -> tuple[str, str, list[str]]:
    if len(argv) < 4 or argv[2] != "--":
        raise ru.UsageError(f"expected {USAGE}")
    return argv[0], argv[1], argv[3:]


def main(argv: list[str]) -> int:
    username, directory, command = parse_argv(argv)
    config = ru.load_config()
    if command[0] not in config.user_programs:
        raise ru.Refused(f"{command[0]} is not one of the configuration's user_programs "
                         f"({', '.join(config.user_programs)})")
    user = ru.job_user(username, config)
    job, fd = ru.open_job_directory(directory, config)
    try:
        if job.owner_uid == user.uid:
            os.fchdir(fd)
        elif job.owner_uid == config.server.uid:
            os.chdir("/")
        else:
            raise ru.Refused(f"job directory {job.path} is owned by another user, "
                             f"{ru.owner_name(job.owner_uid)}, not {user.name}")
    finally:
        os.close(fd)
    env = ru.user_environment(user, config)
    ru.drop_privileges(user)
    try:
        os.execve(command[0], command, env)
    except OSError as error:
        raise ru.Refused(f"cannot run {command[0]} as {user.name}: {error.strerror}") from None


if __name__ == "__main__":
    ru.run("external_runjob.py", main, sys.argv[1:])
