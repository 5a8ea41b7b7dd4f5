"""Running a job as its owner's system account (real_system_username), through the site's
root scripts (scripts/, run through sudo; README, Jobs as the real user).

The server account never becomes anyone: it asks the scripts, which check everything it
passes against their own root-owned configuration, to

- hand the job directory to the user before the job starts (external_chown_script) and
  back to the server before the server reads anything in it;
- run a program as the user in that directory (external_runjob_script): the job script
  (local runner), sbatch or qsub (so the scheduler accounts the job to the user), and
  kill, scancel or qdel to cancel it;
- submit and kill through DRMAA as the user (Galaxy's drmaa_external_runjob_script and
  drmaa_external_killjob_script).

Who a job runs as is decided once, when its directory is handed over; afterwards the
directory's owner says it (so a cancel after a restart, or after the mapping changed,
acts as the account the job really runs as).
"""
from __future__ import annotations

import logging
import os
import pwd
import shlex
import subprocess
from dataclasses import dataclass

from muleteer.system_users import NoSystemAccount, SystemAccount, system_account

log = logging.getLogger(__name__)
SCRIPT_TIMEOUT = 120.0  # a chown of a huge tree is the slowest thing they do


class JobAccountError(Exception):
    """A root script refused or failed; the message is its own, with what was asked.
    `transient`: it did not answer in time (a hung scheduler client behind it)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class JobAccounts:
    chown: tuple[str, ...]
    runjob: tuple[str, ...]
    drmaa_runjob: tuple[str, ...]
    drmaa_killjob: tuple[str, ...]
    method: str
    min_uid: int
    server: SystemAccount

    @classmethod
    def from_config(cls, config) -> "JobAccounts | None":
        """The scripts galaxy.yml names, or None when jobs run as the server account."""
        if not config.real_system_username:
            return None
        entry = pwd.getpwuid(os.geteuid())
        return cls(tuple(shlex.split(config.external_chown_script)),
                   tuple(shlex.split(config.external_runjob_script)),
                   tuple(shlex.split(config.drmaa_external_runjob_script)),
                   tuple(shlex.split(config.drmaa_external_killjob_script)),
                   config.real_system_username, config.real_system_min_uid,
                   SystemAccount(entry.pw_name, entry.pw_uid, entry.pw_gid))

    # -- who ----------------------------------------------------------------------------
    def account_of(self, email: str | None) -> SystemAccount:
        """The account a job of the user `email` runs as (checked again by the scripts)."""
        if not email:
            raise JobAccountError("the job has no owner, so no system account to run as "
                                  "(real_system_username is set)")
        try:
            return system_account(email, self.method, self.min_uid)
        except NoSystemAccount as exc:
            raise JobAccountError(str(exc)) from None

    def owner_of(self, directory: str) -> str | None:
        """The account that owns a job directory now (None: gone, or the server's own)."""
        try:
            uid = os.lstat(directory).st_uid
        except FileNotFoundError:
            return None
        if uid == self.server.uid:
            return None
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)

    # -- the job directory ----------------------------------------------------------------
    def hand_over(self, directory: str, account: SystemAccount) -> None:
        self._run(self.chown + (directory, account.name, str(account.gid)),
                  f"handing {directory} to {account.name}")

    def take_back(self, directory: str) -> None:
        """Hand the directory back to the server if a user owns it (idempotent)."""
        if self.owner_of(directory) is None:
            return
        self._run(self.chown + (directory, self.server.name, str(self.server.gid)),
                  f"taking {directory} back from its job's user")

    # -- running as the user --------------------------------------------------------------
    def as_user(self, username: str, directory: str, argv: list[str]) -> list[str]:
        """The command line that runs `argv` as `username` in job directory `directory`."""
        return [*self.runjob, username, directory, "--", *argv]

    def run_as_user(self, username: str, directory: str, argv: list[str],
                    stdin=subprocess.DEVNULL, what: str = "") -> subprocess.CompletedProcess:
        """Run `argv` as the user and wait; its result (a refusal of the script itself is
        JobAccountError)."""
        return self._run(self.as_user(username, directory, argv), what or argv[0],
                         stdin=stdin, check=False)

    def directory_size(self, username: str, directory: str) -> int:
        """Bytes in a job directory its user owns, measured as that user (du, no links
        followed, one filesystem)."""
        result = self.run_as_user(username, directory, ["/usr/bin/du", "-s", "-b", "-P", "-x",
                                                        "."], what=f"measuring {directory}")
        try:
            return int(result.stdout.split()[0])
        except (IndexError, ValueError):
            raise JobAccountError(f"measuring {directory}: du printed {result.stdout[:80]!r} "
                                  f"({result.stderr.strip()[:200]})") from None

    # -- DRMAA (Galaxy's scripts) -----------------------------------------------------------
    def drmaa_submit(self, username: str, template_file: str, staged: bool = False) -> str:
        """Submit the JSON job template as the user; the DRM's job id. `staged`: a job
        for a node without the shared disk (its script inline, no job directory)."""
        if not self.drmaa_runjob:
            raise JobAccountError("drmaa_external_runjob_script is not set in galaxy.yml: "
                                  "DRMAA jobs cannot run as their users without it")
        options = ("--staged",) if staged else ()
        result = self._run(self.drmaa_runjob + options + (username, template_file),
                           f"submitting as {username}")
        lines = result.stdout.strip().splitlines()
        return lines[-1].strip() if lines else ""

    def drmaa_kill(self, username: str, external_id: str) -> None:
        if not self.drmaa_killjob:
            raise JobAccountError("drmaa_external_killjob_script is not set in galaxy.yml")
        self._run(self.drmaa_killjob + (external_id, username),
                  f"killing DRM job {external_id} as {username}")

    def _run(self, argv, what: str, stdin=subprocess.DEVNULL, check: bool = True):
        try:
            result = subprocess.run(list(argv), capture_output=True, text=True, stdin=stdin,
                                    timeout=SCRIPT_TIMEOUT)
        except FileNotFoundError:
            raise JobAccountError(f"{what}: {argv[0]}: no such program") from None
        except subprocess.TimeoutExpired:
            raise JobAccountError(f"{what}: {os.path.basename(argv[0])} did not finish "
                                  f"within {SCRIPT_TIMEOUT:.0f} s", transient=True) from None
        for line in result.stderr.splitlines():
            if "warning:" in line:
                log.warning("%s: %s", what, line)
        first = result.stderr.partition("\n")[0]
        refused = result.returncode in (1, 2) and (": refused: " in first
                                                   or ": usage error: " in first)
        if refused or check and result.returncode != 0:
            message = result.stderr.strip() or f"exit code {result.returncode}"
            raise JobAccountError(f"{what}: {message}")
        return result
