#!/usr/bin/python3 -I
"""Kill a DRM job as the user who owns it (Galaxy's drmaa_external_killjob_script, same
argv). Runs as root through sudo for the server account.

    drmaa_external_killjob.py [--dry-run] JOBID USERNAME

JOBID is a scheduler job id (digits, optionally .host); USERNAME a real user (uid >=
min_uid in the root-owned configuration, not root, not the server account). The script
becomes that user for good (groups, gid, uid, checked) before it touches the DRM, so it can
kill only what the user could kill. --dry-run stops there and prints `id -un` of a child.
Exit 0 done, 1 refused or the DRM failed, 2 usage.
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
USAGE = "[--dry-run] JOBID USERNAME"


def main(argv: list[str]) -> int:
    dry_run = bool(argv) and argv[0] == "--dry-run"
    args = argv[1:] if dry_run else argv
    if len(args) != 2 or any(arg.startswith("-") for arg in args):
        raise ru.UsageError(f"expected {USAGE}")
    job_id = ru.scheduler_job_id(args[0])
    config = ru.load_config()
    user = ru.job_user(args[1], config)
    env = ru.user_environment(user, config)
    ru.drop_privileges(user)
    if dry_run:
        print(f"would kill {job_id} as {ru.whoami(env)}")
        return 0
    ru.continue_as_user(os.path.realpath(__file__), env, job_id)


def kill_as_user(job_id: str) -> int:
    kill(ru.import_drmaa(), ru.scheduler_job_id(job_id))
    return 0


def kill(drmaa, job_id: str) -> None:
    try:
        with drmaa.Session() as session:
            session.control(job_id, drmaa.JobControlAction.TERMINATE)
    except drmaa.errors.DrmaaException as error:
        raise ru.Refused(f"the DRM did not kill job {job_id}: {error}") from None


if __name__ == "__main__":
    if sys.argv[1:2] == [ru.AS_USER]:
        ru.run_as_user("drmaa_external_killjob.py", kill_as_user, sys.argv[2:])
    ru.run("drmaa_external_killjob.py", main, sys.argv[1:])
