"""A site set up for jobs as their real users, as the README tells an admin to: test
accounts (useradd), the root scripts installed in a root-owned tree, their root-owned
configuration, contrib/sudoers.d/muleteer in /etc/sudoers.d for the test's server
account, and a server directory that account owns. Everything is removed afterwards."""
from __future__ import annotations

import atexit
import dataclasses
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT_NAMES = ("external_chown_script.py", "external_runjob.py", "drmaa_external_killjob.py",
                "drmaa_external_runjob.py")
SUDOERS = os.path.join(REPO, "contrib", "sudoers.d", "muleteer")
CONFIG_ENV = "MULETEER_REAL_USER_CONF"


def install_scripts() -> str:
    """The scripts with muleteer/real_user.py in a tree only root can write, from / down
    (they refuse to run otherwise); removed at exit. Their directory."""
    root = tempfile.mkdtemp(prefix="muleteer-test-scripts-", dir="/opt")
    os.chmod(root, 0o755)
    for sub in ("scripts", "muleteer"):
        os.mkdir(os.path.join(root, sub), 0o755)
    for name in SCRIPT_NAMES:
        shutil.copy(os.path.join(REPO, "scripts", name), os.path.join(root, "scripts", name))
        os.chmod(os.path.join(root, "scripts", name), 0o755)
    shutil.copy(os.path.join(REPO, "muleteer", "real_user.py"), os.path.join(root, "muleteer"))
    os.chmod(os.path.join(root, "muleteer", "real_user.py"), 0o644)
    atexit.register(shutil.rmtree, root, True)
    return os.path.join(root, "scripts")


@dataclasses.dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def make_account(prefix: str) -> Account:
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", name], check=True,
                   capture_output=True)
    entry = pwd.getpwnam(name)
    return Account(name, entry.pw_uid, entry.pw_gid)


def remove_account(account: Account) -> None:
    # userdel fails while a process of the account is still exiting: retry briefly.
    for _ in range(50):
        result = subprocess.run(["userdel", account.name], capture_output=True, text=True)
        if result.returncode == 0 or "does not exist" in result.stderr:
            return
        time.sleep(0.1)


def install_sudoers(server: Account, scripts: str) -> str:
    """contrib/sudoers.d/muleteer for `server` and `scripts`, plus the one test-only line
    that keeps the test configuration's variable; its path (remove it afterwards)."""
    with open(SUDOERS) as handle:
        text = handle.read()
    text = text.replace("User_Alias MULETEER_SERVER = muleteer\n",
                        f"User_Alias MULETEER_SERVER = {server.name}\n")
    text = text.replace("/opt/muleteer/scripts/", scripts + "/")
    text += f'\nDefaults!MULETEER_REAL_USER env_keep += "{CONFIG_ENV}"\n'
    path = f"/etc/sudoers.d/zz-muleteer-test-{uuid.uuid4().hex[:8]}"
    staged = path + ".new"  # sudo ignores names with a dot
    with open(staged, "w") as handle:
        handle.write(text)
    os.chmod(staged, 0o440)
    subprocess.run(["visudo", "-cf", staged], check=True, capture_output=True)
    os.rename(staged, path)
    return path


@dataclasses.dataclass
class Site:
    base: str
    scripts: str
    config: str      # the root-owned real-user.conf
    sudoers: str
    server: Account
    users: list      # [Account, ...]
    server_directory: str
    jobs: str        # job_working_directory

    def galaxy_settings(self, name: str) -> dict:
        """galaxy.yml settings of a server whose job directories go in root `name`."""
        sudo = f"sudo -n {self.scripts}"
        return {"real_system_username": "user_email",
                "job_working_directory": os.path.join(self.jobs, name),
                "external_chown_script": f"{sudo}/external_chown_script.py",
                "external_runjob_script": f"{sudo}/external_runjob.py",
                "drmaa_external_runjob_script": f"{sudo}/drmaa_external_runjob.py",
                "drmaa_external_killjob_script": f"{sudo}/drmaa_external_killjob.py"}

    def env(self) -> dict:
        return {CONFIG_ENV: self.config}

    def remove(self) -> None:
        if os.path.lexists(self.sudoers):
            os.unlink(self.sudoers)
        shutil.rmtree(self.base, ignore_errors=True)
        for account in [self.server, *self.users]:
            remove_account(account)


JOB_ROOTS = ("local", "slurm", "pbs", "drmaa", "staged-slurm", "staged-pbs", "staged-drmaa",
             "refusals", "mapped", "limits")


def make_site(users: int = 2, config: dict | None = None) -> Site:
    """Accounts (a server account and `users` real users), scripts, configuration, sudoers,
    and a server directory of the server account's, with job_working_directory roots (one
    per server of the test, JOB_ROOTS) its jobs' users can traverse (0711) but not list."""
    server = make_account("mtsrv")
    made = [make_account(f"mtu{i}") for i in range(users)]
    base = tempfile.mkdtemp(prefix="mt-real-user-", dir="/tmp")
    os.chmod(base, 0o755)
    server_directory = os.path.join(base, "server")
    jobs = os.path.join(base, "jobs")
    roots = [os.path.join(jobs, name) for name in JOB_ROOTS]
    for path, mode in ((server_directory, 0o700), (jobs, 0o711), *((r, 0o711) for r in roots)):
        os.mkdir(path, mode)
        os.chmod(path, mode)
        os.chown(path, server.uid, server.gid)
    etc = os.path.join(base, "etc")
    os.mkdir(etc, 0o755)
    scripts = install_scripts()
    values = {"job_working_directory": ", ".join(roots), "server_user": server.name,
              **(config or {})}
    conf = os.path.join(etc, "real-user.conf")
    with open(conf, "w") as handle:
        handle.writelines(f"{key} = {value}\n" for key, value in values.items())
    os.chmod(conf, 0o644)
    sudoers = install_sudoers(server, scripts)
    return Site(base, scripts, conf, sudoers, server, made, server_directory, jobs)
