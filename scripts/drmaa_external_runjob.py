#!/usr/bin/python3 -I
"""Submit a job to the DRM as its real user (Galaxy's drmaa_external_runjob_script, same
argv). Runs as root through sudo for the server account.

    drmaa_external_runjob.py [--assign_all_groups] [--dry-run] [--staged] USERNAME JOBTEMPLATE_JSON

USERNAME is a real user (uid >= min_uid, not root, not the server account). The template
file is read as root but only if it is a regular file reached without links, owned by the
server account or USERNAME, with a single link and at most 1 MiB (never a way to read
someone else's file). Its workingDirectory, remoteCommand, outputPath and errorPath must lie
inside one job directory (as external_chown_script.py checks it) that USERNAME owns now.
--staged (a node without the shared disk, README): the template runs `/bin/bash -c SCRIPT`
and its workingDirectory, outputPath and errorPath must lie outside every configured
job_working_directory root (the node's own scratch, /dev/null): no job directory is used.
The script then becomes the user for good (all its groups: --assign_all_groups is always
on, accepted for Galaxy's command line), submits through drmaa and prints the job id.
--dry-run stops before the DRM and prints `id -un` of a child instead.
Exit 0 done, 1 refused or the DRM failed, 2 usage.
"""
import importlib.util
import json
import os
import stat
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
USAGE = "[--assign_all_groups] [--dry-run] [--staged] USERNAME JOBTEMPLATE_JSON"
MAX_TEMPLATE = 1 << 20
# Template attributes Galaxy sets; anything else (inputPath, email, ...) is refused.
STRINGS = {"remoteCommand", "jobName", "workingDirectory", "outputPath", "errorPath",
           "nativeSpecification"}
PATHS = ("workingDirectory", "remoteCommand", "outputPath", "errorPath")


def parse_argv(argv: list[str]) -> tuple[set, str, str]:
    flags = {arg for arg in argv if arg.startswith("-")}
    if not flags <= {"--assign_all_groups", "--dry-run", "--staged"}:
        raise ru.UsageError(f"unknown option(s) {', '.join(sorted(flags))}; expected {USAGE}")
    args = [arg for arg in argv if not arg.startswith("-")]
    if len(args) != 2:
        raise ru.UsageError(f"expected {USAGE}")
    return flags, args[0], args[1]


def read_template(path: str, allowed_uids: set[int]) -> dict:
    fd = ru.open_no_links(path, "job template", directory=False)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ru.Refused(f"job template {path} is not a regular file")
        if info.st_uid not in allowed_uids:
            raise ru.Refused(f"job template {path} is owned by {ru.owner_name(info.st_uid)}, "
                             f"neither the server account nor the job's user")
        if info.st_nlink != 1 or info.st_size > MAX_TEMPLATE:
            raise ru.Refused(f"job template {path} has {info.st_nlink} links or more than "
                             f"{MAX_TEMPLATE} bytes")
        data = os.read(fd, MAX_TEMPLATE + 1)
    finally:
        os.close(fd)
    try:
        template = json.loads(data)
    except ValueError as error:  # the position only: the content is never echoed
        raise ru.Refused(f"job template {path} is not JSON (at byte {getattr(error, 'pos', '?')})") from None
    if not isinstance(template, dict):
        raise ru.Refused(f"job template {path} is not a JSON object")
    return template


def check_types(template: dict) -> None:
    unknown = set(template) - STRINGS - {"args", "jobEnvironment", "joinFiles"}
    if unknown:
        raise ru.Refused(f"job template has attribute(s) {', '.join(sorted(unknown))} that "
                         f"this script does not pass on")
    for key in STRINGS & set(template):
        if not isinstance(template[key], str):
            raise ru.Refused(f"job template {key} is not a string")
    args = template.get("args", [])
    env = template.get("jobEnvironment", {})
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise ru.Refused("job template args is not a list of strings")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ru.Refused("job template jobEnvironment is not an object of strings")
    if not isinstance(template.get("joinFiles", False), bool):
        raise ru.Refused("job template joinFiles is not true or false")
    for key in ("workingDirectory", "remoteCommand"):
        if key not in template:
            raise ru.Refused(f"job template has no {key}")


def template_path(template: dict, key: str) -> str:
    # DRMAA's outputPath and errorPath are `[host]:path`.
    value = template[key]
    if key in ("outputPath", "errorPath"):
        return value.partition(":")[2] if ":" in value else value
    return value


def check_paths(template: dict, user, config) -> None:
    """Everything the job touches lies inside one job directory, which the user owns now."""
    job_dir = ru.job_directory_of(template["workingDirectory"], config)
    job, fd = ru.open_job_directory(job_dir, config)
    os.close(fd)
    if job.owner_uid != user.uid:
        raise ru.Refused(f"job directory {job.path} is owned by another user, "
                         f"{ru.owner_name(job.owner_uid)}, not {user.name}")
    for key in PATHS:
        if key in template:
            ru.check_inside(template_path(template, key), job.path, f"job template {key}")
    try:
        command = os.lstat(template["remoteCommand"])
    except OSError as error:
        raise ru.Refused(f"job template remoteCommand {template['remoteCommand']}: "
                         f"{error.strerror}") from None
    if not stat.S_ISREG(command.st_mode):
        raise ru.Refused(f"job template remoteCommand {template['remoteCommand']} is not a "
                         f"regular file")


def check_staged(template: dict, config) -> None:
    """A staged job's template: its script inline, and nothing in the job directories."""
    args = template.get("args", [])
    if template["remoteCommand"] != "/bin/bash" or len(args) != 2 or args[0] != "-c":
        raise ru.Refused("a staged job template must run /bin/bash -c SCRIPT")
    for key in ("workingDirectory", "outputPath", "errorPath"):
        if key not in template:
            continue
        path = template_path(template, key)
        for root in config.roots:
            if path == root or path.startswith(root + "/") or not os.path.isabs(path):
                raise ru.Refused(f"job template {key} {path} is not a node-local path "
                                 f"(staged jobs use no job directory)")


def main(argv: list[str]) -> int:
    flags, username, template_file = parse_argv(argv)
    config = ru.load_config()
    user = ru.job_user(username, config)
    template = read_template(template_file, {config.server.uid, user.uid})
    check_types(template)
    if "--staged" in flags:
        check_staged(template, config)
    else:
        check_paths(template, user, config)
    env = ru.user_environment(user, config)
    ru.drop_privileges(user)
    if "--dry-run" in flags:
        print(f"would submit {template['remoteCommand']} as {ru.whoami(env)}")
        return 0
    ru.continue_as_user(os.path.realpath(__file__), env, json.dumps(template))


def submit_as_user(payload: str) -> int:
    print(submit(ru.import_drmaa(), json.loads(payload)))
    return 0


def submit(drmaa, template: dict) -> str:
    try:
        with drmaa.Session() as session:
            job_template = session.createJobTemplate()
            for key, value in template.items():
                setattr(job_template, key, value)
            job_id = session.runJob(job_template)
            session.deleteJobTemplate(job_template)
            return job_id
    except drmaa.errors.DrmaaException as error:
        raise ru.Refused(f"the DRM did not accept the job: {error}") from None


if __name__ == "__main__":
    if sys.argv[1:2] == [ru.AS_USER]:
        ru.run_as_user("drmaa_external_runjob.py", submit_as_user, sys.argv[2:])
    ru.run("drmaa_external_runjob.py", main, sys.argv[1:])
