"""The four root scripts that run jobs as their real user (scripts/external_chown_script.py,
external_runjob.py, drmaa_external_runjob.py, drmaa_external_killjob.py), run for real: as
root with real system accounts made here by useradd (removed again by the fixtures, also on
failure), real chown, and through sudo with contrib/sudoers.d/muleteer installed for a test
account.

Every refusal is a test, and every refusal checks that nothing changed. The DRM itself is
exercised in tests/integration/test_real_user.py (Grid Engine); here the DRMAA scripts are
tested up to and including the privilege drop (--dry-run prints `id -un` of a child of the
dropped process), and without --dry-run, with no drmaa_library_path configured, they must
refuse, naming drmaa.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
import uuid

import pytest

from tests.conftest import MACHINE
from tests.support.real_user_site import install_scripts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The scripts as an admin installs them (README): in a tree only root can write, from the
# root down, or they refuse to run. Every test skips without root.
SCRIPTS = install_scripts() if os.geteuid() == 0 else os.path.join(REPO, "scripts")
CHOWN = os.path.join(SCRIPTS, "external_chown_script.py")
KILL = os.path.join(SCRIPTS, "drmaa_external_killjob.py")
RUN = os.path.join(SCRIPTS, "drmaa_external_runjob.py")
SUDOERS = os.path.join(REPO, "contrib", "sudoers.d", "muleteer")
CONFIG_ENV = "MULETEER_REAL_USER_CONF"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                       reason="needs root and useradd (real system accounts)"),
    pytest.mark.xdist_group(MACHINE)]  # the test accounts and sudoers


# -- accounts -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def _make_user(name: str, system: bool = False) -> User:
    subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", *(["-r"] if system else []),
                    name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid)


def _remove_user(name: str) -> bool:
    # userdel fails while the account has a process left (a sudo child still exiting) or
    # another useradd/userdel holds the passwd lock: retry briefly.
    for _ in range(50):
        result = subprocess.run(["userdel", name], capture_output=True, text=True)
        if result.returncode == 0 or "does not exist" in result.stderr:
            return True
        time.sleep(0.1)
    print(f"userdel {name}: {result.stderr.strip()}")
    return False


@dataclasses.dataclass(frozen=True)
class Accounts:
    server: User
    alice: User
    bob: User
    system: User


@pytest.fixture
def accounts(request) -> Accounts:
    tag = uuid.uuid4().hex[:6]
    made: list[str] = []

    def remove():
        failed = [name for name in made if not _remove_user(name)]
        assert not failed, f"could not remove test accounts {failed}"

    request.addfinalizer(remove)

    def user(prefix: str, system: bool = False) -> User:
        made.append(f"mt{prefix}{tag}")
        return _make_user(made[-1], system)

    return Accounts(server=user("srv"), alice=user("a"), bob=user("b"),
                    system=user("sys", system=True))


# -- a site: configuration and job directories ----------------------------------------------
@dataclasses.dataclass
class Site:
    base: str
    root: str
    config: str
    accounts: Accounts

    def write_config(self, **values) -> None:
        values = {"job_working_directory": self.root, "server_user": self.accounts.server.name,
                  **values}
        with open(self.config, "w") as handle:
            handle.writelines(f"{key} = {value}\n" for key, value in values.items())
        os.chmod(self.config, 0o644)

    def job(self, job_id: int, owner: User | None = None) -> str:
        """A job directory as the server makes it, with a few files, owned by `owner`."""
        owner = owner or self.accounts.server
        parent = os.path.join(self.root, f"{job_id // 1000:03d}")
        if not os.path.isdir(parent):
            os.mkdir(parent, 0o755)
            os.chown(parent, self.accounts.server.uid, self.accounts.server.gid)
        path = os.path.join(parent, str(job_id))
        os.mkdir(path, 0o700)
        os.mkdir(os.path.join(path, "outputs"), 0o700)
        for name in ("job.sh", "outputs/out1.dat"):
            with open(os.path.join(path, name), "w") as handle:
                handle.write("x\n")
        for dirpath, dirnames, filenames in os.walk(path):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.lchown(name, owner.uid, owner.gid)
        return path

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", CONFIG_ENV: self.config}


@pytest.fixture
def site(accounts) -> Site:
    base = tempfile.mkdtemp(prefix="mt-real-user-", dir="/tmp")
    try:
        os.chmod(base, 0o755)  # traversable by the test accounts, writable by root only
        root = os.path.join(base, "jobs")
        os.mkdir(root, 0o755)
        os.chown(root, accounts.server.uid, accounts.server.gid)
        etc = os.path.join(base, "etc")
        os.mkdir(etc, 0o755)
        made = Site(base, root, os.path.join(etc, "real-user.conf"), accounts)
        made.write_config()
        yield made
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(script: str, *args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=60,
                          **kwargs)


def owners(path: str) -> dict[str, tuple[int, int]]:
    """Every entry's (uid, gid), links themselves included: what a refusal must not change."""
    found = {path: _ids(path)}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            found[os.path.join(dirpath, name)] = _ids(os.path.join(dirpath, name))
    return found


def _ids(path: str) -> tuple[int, int]:
    info = os.lstat(path)
    return info.st_uid, info.st_gid


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0], result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


# -- external_chown_script.py: the good paths -----------------------------------------------
def test_hand_to_the_user_and_back(site, accounts):
    job = site.job(5)
    result = run(CHOWN, job, accounts.alice.name, str(accounts.alice.gid), env=site.env())
    assert result.returncode == 0, result.stderr
    assert set(owners(job).values()) == {(accounts.alice.uid, accounts.alice.gid)}
    # ... the user's job writes a file of its own, then the server takes everything back.
    new = os.path.join(job, "outputs", "made-by-job")
    open(new, "w").close()
    os.chown(new, accounts.alice.uid, accounts.alice.gid)
    result = run(CHOWN, job, accounts.server.name, str(accounts.server.gid), env=site.env())
    assert result.returncode == 0, result.stderr
    assert set(owners(job).values()) == {(accounts.server.uid, accounts.server.gid)}


def test_running_it_again_is_accepted(site, accounts):
    job = site.job(6)
    args = (job, accounts.alice.name, str(accounts.alice.gid))
    assert run(CHOWN, *args, env=site.env()).returncode == 0
    assert run(CHOWN, *args, env=site.env()).returncode == 0
    assert set(owners(job).values()) == {(accounts.alice.uid, accounts.alice.gid)}


def test_links_the_job_left_are_not_followed(site, accounts):
    job = site.job(7)
    shadow = os.stat("/etc/shadow")
    bait = os.path.join(site.base, "root-file")
    open(bait, "w").close()
    bait_before = os.stat(bait)
    links = {"shadow-link": "/etc/shadow", "outputs/root-link": bait, "dir-link": "/etc"}
    for name, target in links.items():
        os.symlink(target, os.path.join(job, name))
        os.lchown(os.path.join(job, name), accounts.server.uid, accounts.server.gid)
    result = run(CHOWN, job, accounts.alice.name, str(accounts.alice.gid), env=site.env())
    assert result.returncode == 0, result.stderr
    for name, target in links.items():
        assert os.readlink(os.path.join(job, name)) == target
    after = os.stat("/etc/shadow")
    assert (after.st_uid, after.st_gid, after.st_mode, after.st_ctime_ns) == \
        (shadow.st_uid, shadow.st_gid, shadow.st_mode, shadow.st_ctime_ns)
    assert os.stat(bait).st_ctime_ns == bait_before.st_ctime_ns and os.stat(bait).st_uid == 0
    assert os.stat("/etc").st_uid == 0
    assert os.stat(os.path.join(job, "job.sh")).st_uid == accounts.alice.uid


def test_a_hard_linked_file_is_skipped_with_a_warning(site, accounts):
    job = site.job(8)
    outside = os.path.join(site.base, "server-file")
    open(outside, "w").close()
    os.chown(outside, accounts.server.uid, accounts.server.gid)
    os.link(outside, os.path.join(job, "outputs", "linked"))
    result = run(CHOWN, job, accounts.alice.name, str(accounts.alice.gid), env=site.env())
    assert result.returncode == 0, result.stderr
    assert "hard links" in result.stderr and "warning" in result.stderr
    assert os.stat(outside).st_uid == accounts.server.uid
    assert os.stat(os.path.join(job, "job.sh")).st_uid == accounts.alice.uid


def test_a_tree_nested_past_the_depth_limit_is_stopped_with_a_warning(site, accounts):
    """A job may nest directories as deep as it likes (here 300, past the walk's limit of
    128: deep enough to tell, shallow enough for the fixture's rmtree); the walk stops at
    its limit instead of running out of stack or descriptors, and says so."""
    job = site.job(10)
    fd = os.open(job, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(300):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.fchown(child, accounts.server.uid, accounts.server.gid)
        os.close(fd)
        fd = child
    os.close(fd)
    result = run(CHOWN, job, accounts.alice.name, str(accounts.alice.gid), env=site.env())
    assert result.returncode == 0, result.stderr
    assert "deeper than" in result.stderr
    assert os.stat(job).st_uid == accounts.alice.uid
    assert os.stat(os.path.join(job, "d", "d")).st_uid == accounts.alice.uid


def test_a_third_users_file_inside_is_left_alone(site, accounts):
    job = site.job(9)
    planted = os.path.join(job, "outputs", "bobs")
    open(planted, "w").close()
    os.chown(planted, accounts.bob.uid, accounts.bob.gid)
    result = run(CHOWN, job, accounts.alice.name, str(accounts.alice.gid), env=site.env())
    assert result.returncode == 0, result.stderr
    assert "owned by" in result.stderr
    assert os.stat(planted).st_uid == accounts.bob.uid


def test_set_id_bits_do_not_survive_handing_back(site, accounts):
    job = site.job(10, owner=accounts.alice)
    program = os.path.join(job, "outputs", "suid")
    open(program, "w").close()
    os.chown(program, accounts.alice.uid, accounts.alice.gid)
    os.chmod(program, 0o6755)
    result = run(CHOWN, job, accounts.server.name, str(accounts.server.gid), env=site.env())
    assert result.returncode == 0, result.stderr
    assert os.stat(program).st_mode & (stat.S_ISUID | stat.S_ISGID) == 0


# -- external_chown_script.py: refusals (each leaves everything as it was) ---------------------
def _chown_refused(site, path, user, gid, *words, watch=None):
    watch = watch or path
    before = owners(watch) if os.path.lexists(watch) else None
    result = run(CHOWN, path, user, str(gid), env=site.env())
    assert_refused(result, *words)
    if before is not None:
        assert owners(watch) == before


def test_refuses_a_path_outside_the_roots(site, accounts):
    elsewhere = os.path.join(site.base, "elsewhere", "000", "5")
    os.makedirs(elsewhere)
    _chown_refused(site, elsewhere, accounts.alice.name, accounts.alice.gid, "job_working_directory")
    _chown_refused(site, "/etc", accounts.alice.name, accounts.alice.gid, "/etc")


def test_refuses_dot_dot_and_relative_paths(site, accounts):
    job = site.job(11)
    sneaky = os.path.join(site.root, "000", "..", "000", "11")
    _chown_refused(site, sneaky, accounts.alice.name, accounts.alice.gid, "plain absolute", watch=job)
    _chown_refused(site, job + "/", accounts.alice.name, accounts.alice.gid, watch=job)
    _chown_refused(site, os.path.relpath(job), accounts.alice.name, accounts.alice.gid, watch=job)
    escape = os.path.join(site.root, "000", "11", "..", "..", "..", "etc")
    _chown_refused(site, escape, accounts.alice.name, accounts.alice.gid, watch=os.path.join(site.base, "etc"))


def test_refuses_a_symbolic_link_in_the_path(site, accounts):
    real = os.path.join(site.base, "real001")
    os.makedirs(os.path.join(real, "1005"))
    link = os.path.join(site.root, "001")
    os.symlink(real, link)
    _chown_refused(site, os.path.join(link, "1005"), accounts.alice.name, accounts.alice.gid,
                   "symbolic link", watch=real)


def test_refuses_a_symbolic_link_as_the_job_directory(site, accounts):
    site.job(12)
    link = os.path.join(site.root, "000", "13")
    os.symlink("/etc", link)
    etc_owner = _ids("/etc")
    _chown_refused(site, link, accounts.alice.name, accounts.alice.gid, "symbolic link")
    target = os.path.join(site.root, "000", "14")
    os.symlink(os.path.join(site.root, "000", "12"), target)
    _chown_refused(site, target, accounts.alice.name, accounts.alice.gid, "symbolic link",
                   watch=os.path.join(site.root, "000", "12"))
    assert _ids("/etc") == etc_owner


@pytest.mark.parametrize("relative", ["001/15", "000/015", "15", "000/15/outputs", "000/x15",
                                      "000", "0/15"])
def test_refuses_the_wrong_layout(site, accounts, relative):
    job = site.job(15)
    os.makedirs(os.path.join(site.root, relative), exist_ok=True)
    _chown_refused(site, os.path.join(site.root, relative), accounts.alice.name,
                   accounts.alice.gid, "<root>/<NNN>/<job id>", watch=job)


def test_refuses_a_file_instead_of_a_directory(site, accounts):
    site.job(16)
    path = os.path.join(site.root, "000", "17")
    open(path, "w").close()
    os.chown(path, accounts.server.uid, accounts.server.gid)
    _chown_refused(site, path, accounts.alice.name, accounts.alice.gid, "not a directory")
    _chown_refused(site, os.path.join(site.root, "000", "18"), accounts.alice.name,
                   accounts.alice.gid, "does not exist")


def test_refuses_root_system_unknown_users(site, accounts):
    job = site.job(19)
    _chown_refused(site, job, "root", 0, "root")
    _chown_refused(site, job, accounts.system.name, accounts.system.gid, "below min_uid")
    _chown_refused(site, job, "mtnobody" + uuid.uuid4().hex[:6], 1000, "does not exist")
    _chown_refused(site, job, "-rf", 1000, "not a valid account name")


def test_refuses_a_uid_below_a_raised_min_uid(site, accounts):
    job = site.job(20)
    site.write_config(min_uid=accounts.alice.uid + 1)
    _chown_refused(site, job, accounts.alice.name, accounts.alice.gid, "below min_uid")


def test_refuses_the_wrong_gid(site, accounts):
    job = site.job(21)
    _chown_refused(site, job, accounts.alice.name, accounts.bob.gid, "not one of")
    _chown_refused(site, job, accounts.alice.name, 0, "not one of")
    _chown_refused(site, job, accounts.server.name, accounts.alice.gid, "not one of")
    result = run(CHOWN, job, accounts.alice.name, "root", env=site.env())
    assert result.returncode == 2 and "usage" in result.stderr


def test_refuses_a_directory_owned_by_another_user(site, accounts):
    job = site.job(22, owner=accounts.bob)
    _chown_refused(site, job, accounts.alice.name, accounts.alice.gid, "owned by another user")


def test_refuses_to_hand_back_from_root_or_a_system_account(site, accounts):
    job = site.job(23, owner=accounts.system)
    _chown_refused(site, job, accounts.server.name, accounts.server.gid, "not a real user")
    os.chown(job, 0, 0)
    _chown_refused(site, job, accounts.server.name, accounts.server.gid, "not a real user")


def test_refuses_a_bind_mount_on_the_job_directory(site, accounts):
    job = site.job(24)
    mounted = subprocess.run(["mount", "--bind", "/etc", job], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        etc_owner = _ids("/etc")
        _chown_refused(site, job, accounts.alice.name, accounts.alice.gid, "mount")
        assert _ids("/etc") == etc_owner
    finally:
        subprocess.run(["umount", job], check=True)


def test_refuses_a_parent_writable_by_others(site, accounts):
    job = site.job(25)
    os.chmod(os.path.dirname(job), 0o777)
    _chown_refused(site, job, accounts.alice.name, accounts.alice.gid, "not writable")
    os.chmod(os.path.dirname(job), 0o755)
    os.chmod(site.root, 0o775)
    _chown_refused(site, job, accounts.alice.name, accounts.alice.gid, "not writable")


# -- the configuration ----------------------------------------------------------------------
def test_refuses_without_a_trusted_configuration(site, accounts):
    job = site.job(26)
    args = (job, accounts.alice.name, accounts.alice.gid)
    os.chmod(site.config, 0o666)
    _chown_refused(site, *args, "writable by group or others")
    os.chmod(site.config, 0o664)
    _chown_refused(site, *args, "writable by group or others")
    os.chmod(site.config, 0o644)
    os.chown(site.config, accounts.server.uid, accounts.server.gid)
    _chown_refused(site, *args, "not root")
    os.chown(site.config, 0, 0)
    os.chmod(os.path.dirname(site.config), 0o777)
    _chown_refused(site, *args, "directory of the configuration")
    os.chmod(os.path.dirname(site.config), 0o755)
    os.unlink(site.config)
    _chown_refused(site, *args, "does not exist")
    os.symlink(os.path.join(site.base, "elsewhere.conf"), site.config)
    _chown_refused(site, *args, "symbolic link")


def test_refuses_a_configuration_with_unknown_keys_or_roots(site, accounts):
    job = site.job(27)
    args = (job, accounts.alice.name, accounts.alice.gid)
    site.write_config(job_working_drectory="/")
    _chown_refused(site, *args, "expected one of")
    site.write_config(job_working_directory="relative/path")
    _chown_refused(site, *args, "absolute")
    site.write_config(server_user="root")
    _chown_refused(site, *args, "must not be root")


def test_several_roots_and_the_default_path(site, accounts):
    other = os.path.join(site.base, "jobs2")
    os.mkdir(other, 0o755)
    os.chown(other, accounts.server.uid, accounts.server.gid)
    site.write_config(job_working_directory=f"{other}, {site.root}")
    job = site.job(28)
    assert run(CHOWN, job, accounts.alice.name, str(accounts.alice.gid),
               env=site.env()).returncode == 0
    # Without the variable the default /etc/muleteer/real-user.conf is used (absent here).
    if not os.path.exists("/etc/muleteer/real-user.conf"):
        result = run(CHOWN, job, accounts.server.name, str(accounts.server.gid),
                     env={"PATH": "/usr/bin:/bin"})
        assert_refused(result, "/etc/muleteer/real-user.conf")


def test_refuses_to_run_as_anyone_but_root(site, accounts):
    job = site.job(29)
    result = run(CHOWN, job, accounts.alice.name, str(accounts.alice.gid), env=site.env(),
                 user=accounts.server.uid, group=accounts.server.gid, extra_groups=[])
    assert_refused(result, "must run as root")


def test_refuses_to_load_checks_others_could_have_written():
    copy = tempfile.mkdtemp(prefix="mt-real-user-copy-", dir="/tmp")
    try:
        os.chmod(copy, 0o755)
        shutil.copytree(SCRIPTS, os.path.join(copy, "scripts"))
        os.mkdir(os.path.join(copy, "muleteer"))
        shutil.copy(os.path.join(REPO, "muleteer", "real_user.py"), os.path.join(copy, "muleteer"))
        result = run(os.path.join(copy, "scripts", "external_chown_script.py"), "a", "b", "1",
                     env={"PATH": "/usr/bin:/bin"})
        # /tmp itself is world-writable: whoever can write there could swap the module.
        assert_refused(result, "/tmp", "must be owned by root and not writable")
    finally:
        shutil.rmtree(copy)


# -- drmaa_external_killjob.py --------------------------------------------------------------
def test_killjob_drops_to_the_user(site, accounts):
    result = run(KILL, "--dry-run", "1234.head", accounts.alice.name, env=site.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"would kill 1234.head as {accounts.alice.name}"


def test_killjob_refusals(site, accounts):
    for job_id, user, words in [
        ("12;rm -rf /", accounts.alice.name, ("scheduler job id",)),
        ("abc", accounts.alice.name, ("scheduler job id",)),
        ("12", "root", ("root",)),
        ("12", accounts.system.name, ("below min_uid",)),
        ("12", accounts.server.name, ("server account",)),
        ("12", "mtnobody" + uuid.uuid4().hex[:6], ("does not exist",)),
    ]:
        assert_refused(run(KILL, "--dry-run", job_id, user, env=site.env()), *words)
    usage = run(KILL, "12", env=site.env())
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_killjob_without_drmaa_refuses(site, accounts):
    assert_refused(run(KILL, "12", accounts.alice.name, env=site.env()), "drmaa")


# -- drmaa_external_runjob.py ---------------------------------------------------------------
def _template(site, accounts, job, owner=None, **changes) -> str:
    template = {"remoteCommand": os.path.join(job, "job.sh"), "workingDirectory": job,
                "jobName": "g30", "outputPath": ":" + os.path.join(job, "stdout"),
                "errorPath": ":" + os.path.join(job, "stderr"), "args": [],
                "jobEnvironment": {"A": "b"}, "nativeSpecification": "-q all.q"}
    template.update(changes)
    template = {k: v for k, v in template.items() if v is not None}
    path = os.path.join(site.base, f"{uuid.uuid4().hex}.jt_json")
    with open(path, "w") as handle:
        json.dump(template, handle)
    owner = owner or accounts.server
    os.chown(path, owner.uid, owner.gid)
    return path


def test_runjob_drops_to_the_user(site, accounts):
    job = site.job(30, owner=accounts.alice)
    template = _template(site, accounts, job)
    result = run(RUN, "--assign_all_groups", "--dry-run", accounts.alice.name, template,
                 env=site.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == \
        f"would submit {os.path.join(job, 'job.sh')} as {accounts.alice.name}"


def test_runjob_without_drmaa_refuses(site, accounts):
    job = site.job(31, owner=accounts.alice)
    result = run(RUN, accounts.alice.name, _template(site, accounts, job), env=site.env())
    assert_refused(result, "drmaa")


def test_runjob_refusals(site, accounts):
    job = site.job(32, owner=accounts.alice)
    bobs = site.job(33, owner=accounts.bob)
    servers = site.job(34)
    link = os.path.join(site.base, "template-link")
    os.symlink(_template(site, accounts, job), link)
    hard = os.path.join(site.base, "template-hard")
    os.link(_template(site, accounts, job), hard)
    not_json = os.path.join(site.base, "not-json")
    with open(not_json, "w") as handle:
        handle.write("secret-content {")
    os.chown(not_json, accounts.server.uid, accounts.server.gid)
    cases = [
        (_template(site, accounts, job, workingDirectory="/tmp"), "job_working_directory"),
        (_template(site, accounts, job, remoteCommand="/bin/sh"), "not inside the job directory"),
        (_template(site, accounts, job, remoteCommand=os.path.join(job, "outputs", "..", "..",
                                                                   "33", "job.sh")),
         "plain absolute"),
        (_template(site, accounts, job, outputPath=":/etc/cron.d/x"), "not inside"),
        (_template(site, accounts, job, errorPath="host:/root/x"), "not inside"),
        (_template(site, accounts, job, remoteCommand=os.path.join(job, "outputs")),
         "not a regular file"),
        (_template(site, accounts, bobs, remoteCommand=os.path.join(bobs, "job.sh")),
         "owned by another user"),
        (_template(site, accounts, servers, remoteCommand=os.path.join(servers, "job.sh")),
         "owned by another user"),
        (_template(site, accounts, job, inputPath="/etc/shadow"), "inputPath"),
        (_template(site, accounts, job, remoteCommand=None), "no remoteCommand"),
        (_template(site, accounts, job, args="rm -rf"), "args"),
        (_template(site, accounts, job, owner=accounts.bob), "neither the server"),
        (link, "symbolic link"),
        (hard, "links"),
        (not_json, "not JSON"),
        ("/etc/shadow", "owned by root"),
        (os.path.join(site.base, "missing"), "does not exist"),
    ]
    before = owners(site.root)
    for template, words in cases:
        result = run(RUN, "--dry-run", accounts.alice.name, template, env=site.env())
        assert_refused(result, words)
        assert "secret-content" not in result.stderr
    for user, words in [("root", "root"), (accounts.system.name, "below min_uid"),
                        (accounts.server.name, "server account")]:
        assert_refused(run(RUN, "--dry-run", user, _template(site, accounts, job),
                           env=site.env()), words)
    assert owners(site.root) == before
    usage = run(RUN, "--force", accounts.alice.name, "x", env=site.env())
    assert usage.returncode == 2 and "usage" in usage.stderr


# -- through sudo, with the example sudoers file ------------------------------------------------
def test_the_sudoers_example_parses():
    if not shutil.which("visudo"):
        pytest.skip("visudo is not installed (Debian: apt-get install sudo)")
    subprocess.run(["visudo", "-cf", SUDOERS], check=True, capture_output=True)


@pytest.fixture
def sudoers(accounts, request):
    """contrib/sudoers.d/muleteer for the test server account and this checkout's scripts,
    plus one test-only line keeping the test's config variable, in /etc/sudoers.d (removed
    again by the finalizer)."""
    if not shutil.which("sudo") or not shutil.which("visudo"):
        pytest.skip("sudo is not installed (Debian: apt-get install sudo)")
    with open(SUDOERS) as handle:
        text = handle.read()
    assert "User_Alias MULETEER_SERVER = muleteer\n" in text
    text = text.replace("User_Alias MULETEER_SERVER = muleteer\n",
                        f"User_Alias MULETEER_SERVER = {accounts.server.name}\n")
    text = text.replace("/opt/muleteer/scripts/", SCRIPTS + "/")
    text += f'\nDefaults!MULETEER_REAL_USER env_keep += "{CONFIG_ENV}"\n'  # the test's only addition
    path = f"/etc/sudoers.d/zz-muleteer-test-{uuid.uuid4().hex[:8]}"
    staged = path + ".new"  # sudo ignores names with a dot while it is being written
    with open(staged, "w") as handle:
        handle.write(text)
    os.chmod(staged, 0o440)
    request.addfinalizer(lambda: [os.unlink(p) for p in (path, staged) if os.path.lexists(p)])
    subprocess.run(["visudo", "-cf", staged], check=True, capture_output=True)
    os.rename(staged, path)
    return path


def _sudo(site, account: User, *argv: str) -> subprocess.CompletedProcess:
    return run("sudo", "-n", *argv, env=site.env(), user=account.uid, group=account.gid,
               extra_groups=[], cwd="/")


def test_through_sudo_as_the_server_account(site, accounts, sudoers):
    job = site.job(40)
    result = _sudo(site, accounts.server, CHOWN, job, accounts.alice.name, str(accounts.alice.gid))
    assert result.returncode == 0, result.stderr
    assert set(owners(job).values()) == {(accounts.alice.uid, accounts.alice.gid)}
    result = _sudo(site, accounts.server, KILL, "--dry-run", "77", accounts.alice.name)
    assert result.stdout.strip() == f"would kill 77 as {accounts.alice.name}", result.stderr
    template = _template(site, accounts, job)
    result = _sudo(site, accounts.server, RUN, "--dry-run", accounts.alice.name, template)
    assert result.returncode == 0 and accounts.alice.name in result.stdout, result.stderr
    # The scripts' refusals reach the server unchanged through sudo.
    assert_refused(_sudo(site, accounts.server, CHOWN, "/etc", accounts.alice.name,
                         str(accounts.alice.gid)), "job_working_directory")
    result = _sudo(site, accounts.server, CHOWN, job, accounts.server.name,
                   str(accounts.server.gid))
    assert result.returncode == 0, result.stderr
    assert set(owners(job).values()) == {(accounts.server.uid, accounts.server.gid)}


def test_sudo_allows_nothing_else(site, accounts, sudoers):
    job = site.job(41)
    # Another command, another account, a caller-set variable: all refused by sudo itself.
    assert _sudo(site, accounts.server, "/bin/chown", accounts.alice.name, job).returncode != 0
    assert _sudo(site, accounts.server, "/bin/sh", "-c", "id").returncode != 0
    assert _sudo(site, accounts.alice, CHOWN, job, accounts.alice.name,
                 str(accounts.alice.gid)).returncode != 0
    assert _sudo(site, accounts.server, "PYTHONPATH=/tmp", CHOWN, job, accounts.alice.name,
                 str(accounts.alice.gid)).returncode != 0
    assert _sudo(site, accounts.server, "-E", CHOWN, job, accounts.alice.name,
                 str(accounts.alice.gid)).returncode != 0
    assert _sudo(site, accounts.server, "-u", accounts.alice.name, CHOWN, job,
                 accounts.alice.name, str(accounts.alice.gid)).returncode != 0
    assert set(owners(job).values()) == {(accounts.server.uid, accounts.server.gid)}


# -- external_runjob.py ---------------------------------------------------------------------
RUNJOB = os.path.join(SCRIPTS, "external_runjob.py")


def test_external_runjob_runs_the_program_as_the_user_in_the_job_directory(site, accounts):
    job = site.job(60, owner=accounts.alice)
    result = run(RUNJOB, accounts.alice.name, job, "--", "/bin/bash", "-c",
                 'echo "$(id -un) $(id -u) $(id -g) $PWD ${PYTHONPATH:-clean}"; exit 7',
                 env={**site.env(), "PYTHONPATH": "/tmp"})
    assert result.returncode == 7, result.stderr  # the program's own status
    alice = accounts.alice
    assert result.stdout.split() == [alice.name, str(alice.uid), str(alice.gid), job, "clean"]
    # A job directory still the server's (a staged job's): run in /, nothing read from it.
    server_owned = site.job(61)
    result = run(RUNJOB, alice.name, server_owned, "--", "/bin/bash", "-c", "pwd; id -un",
                 env=site.env())
    assert result.stdout.split() == ["/", alice.name], result.stderr


def test_external_runjob_refusals(site, accounts):
    alice, bob = accounts.alice, accounts.bob
    job = site.job(62, owner=alice)
    for args, words in [
        ((alice.name, job, "--", "/usr/bin/env", "id"), ("user_programs",)),
        ((alice.name, job, "--", "bash", "-c", "id"), ("user_programs",)),
        (("root", job, "--", "/bin/bash", "-c", "id"), ("root",)),
        ((accounts.system.name, job, "--", "/bin/bash", "-c", "id"), ("below min_uid",)),
        ((accounts.server.name, job, "--", "/bin/bash", "-c", "id"), ("server account",)),
        ((bob.name, job, "--", "/bin/bash", "-c", "id"), ("owned by another user",)),
        ((alice.name, "/etc", "--", "/bin/bash", "-c", "id"), ("job_working_directory",)),
        ((alice.name, job + "/../62", "--", "/bin/bash", "-c", "id"), ()),
    ]:
        assert_refused(run(RUNJOB, *args, env=site.env()), *words)
    usage = run(RUNJOB, alice.name, job, "/bin/bash", env=site.env())
    assert usage.returncode == 2 and "usage" in usage.stderr
    site.write_config(user_programs="/bin/bash")  # the site's own list
    assert_refused(run(RUNJOB, alice.name, job, "--", "/bin/kill", "-0", "1", env=site.env()),
                   "user_programs")
    site.write_config(user_programs="bin/bash")
    assert_refused(run(RUNJOB, alice.name, job, "--", "/bin/bash", "-c", "id", env=site.env()),
                   "plain absolute path")


def test_runjob_staged_templates(site, accounts):
    """--staged: the script inline, node-local paths only, no job directory."""
    alice = accounts.alice
    job = site.job(63, owner=alice)
    staged = {"remoteCommand": "/bin/bash", "args": ["-c", "echo hi"], "workingDirectory": "/tmp",
              "outputPath": ":/dev/null", "errorPath": ":/dev/null"}
    good = _template(site, accounts, job, **staged)
    result = run(RUN, "--dry-run", "--staged", alice.name, good, env=site.env())
    assert result.returncode == 0 and alice.name in result.stdout, result.stderr
    for changes, words in [
        ({"remoteCommand": os.path.join(job, "job.sh")}, ("/bin/bash -c",)),
        ({"args": ["job.sh"]}, ("/bin/bash -c",)),
        ({"workingDirectory": job}, ("not a node-local path",)),
        ({"outputPath": ":" + os.path.join(site.root, "x")}, ("not a node-local path",)),
        ({"errorPath": ":relative/err"}, ("not a node-local path",)),
    ]:
        template = _template(site, accounts, job, **{**staged, **changes})
        assert_refused(run(RUN, "--dry-run", "--staged", alice.name, template, env=site.env()),
                       *words)
    # Without --staged the same template is refused: its command is not in a job directory.
    assert_refused(run(RUN, "--dry-run", alice.name, good, env=site.env()), "job directory")
