"""The `galaxy:` section of galaxy.yml: the application's settings.

uWSGI reads the `uwsgi:` section of the same file with its own parser; this
module reads only `galaxy:`. Setting names follow Galaxy's where the concept is
the same, so an admin who knows Galaxy's documentation finds their way.
Relative paths are resolved against the directory that holds galaxy.yml.
"""
from __future__ import annotations

import math
import os
import shlex
import shutil
from dataclasses import dataclass, field, fields

import yaml

from muleteer.system_users import parse_mapping


class ConfigError(Exception):
    """galaxy.yml is unreadable or holds a bad setting; the message says where."""


# name -> (type, default). Paths are marked so they can be made absolute.
_SETTINGS = {
    "database_connection": (str, "sqlite:///database/universe.sqlite"),
    "database_engine_options": (dict, {}),
    "job_config_file": (str, "job_conf.xml"),
    # Galaxy's inline job configuration (job_conf.yml's mapping); it replaces job_config_file.
    "job_config": (dict, None),
    "tool_path": (str, "tools"),
    # Galaxy's tool_conf.xml (sections, labels); none: every tool XML under tool_path.
    "tool_config_file": (str, None),
    "job_working_directory": (str, "database/jobs_directory"),
    "new_file_path": (str, "database/tmp"),
    "environment_setup_file": (str, ""),
    "job_handler_monitor_sleep": (float, 1.0),
    "job_runner_monitor_sleep": (float, 1.0),
    "handler_heartbeat_timeout": (float, 60.0),
    "exit_code_file_wait": (float, 5.0),
    "max_request_body": (int, 1024 * 1024),
    "nginx_x_accel_redirect_base": (str, ""),
    "admin_users": (str, ""),
    "require_login": (bool, True),
    "bootstrap_admin_api_key": (str, ""),
    "login_attempts_per_10_minutes": (int, 10),
    "metrics_allowed_addresses": (str, ""),
    "session_idle_timeout": (int, 8 * 3600),
    "session_max_age": (int, 7 * 24 * 3600),
    "trusted_proxies": (str, ""),
    "log_level": (str, "INFO"),
    # Every file the server and its jobs create: 077 keeps them from other local accounts.
    "umask": (int, 0o077),
    # Resumable uploads (tus, app/tus.py): Galaxy's tus_upload_store; the rest are ours.
    "tus_upload_store": (str, "database/tus"),
    "tus_upload_expiry": (int, 24 * 3600),
    "tus_max_chunk": (int, 8 * 1024 * 1024),
    "tus_max_size": (int, 100 * 1024 ** 3),
    # Datasets (muleteer/dataset_files.py): Galaxy's file_path, the largest one-request
    # upload (larger: the resumable upload), and each user's disk quota (none by default).
    "file_path": (str, "database/files"),
    "max_upload_size": (int, 100 * 1024 * 1024),
    "user_quota": (int, None),
    # Galaxy's cleanup_job: remove a finished job's directory always, onsuccess (when it
    # ended ok) or never; its outputs live on as datasets, stdout/stderr in its row.
    "cleanup_job": (str, "onsuccess"),
    # Jobs as the real user (muleteer/system_users.py): Galaxy's real_system_username
    # (none: every job is the server account's; user_email: the email's local part; or a
    # mapping file of `email account` lines), and the lowest uid a job may run as.
    "real_system_username": (str, ""),
    "real_system_min_uid": (int, 1000),
    # Galaxy's: jobs always write their outputs in their working directory and the server
    # collects them (a real user cannot write the server's files); false is refused.
    "outputs_to_working_directory": (bool, True),
    # The site scripts that act as root for the server (through sudo), as command lines:
    # Galaxy's three, and ours for the local, slurm and pbs runners (mules/job_account.py).
    "external_chown_script": (str, ""),
    "external_runjob_script": (str, ""),
    "drmaa_external_runjob_script": (str, ""),
    "drmaa_external_killjob_script": (str, ""),
    # Galaxy's: the server's URL as cluster nodes reach it (staged jobs, muleteer/staging.py).
    "galaxy_infrastructure_url": (str, ""),
    # Galaxy's job metrics plugins file (muleteer/job_metrics); missing: the core plugin only.
    "job_metrics_config_file": (str, "job_metrics_conf.xml"),
    # Galaxy's job resource parameters (the form's "Job Resource Parameters" and the
    # `resources` groups of the job configuration); missing: none.
    "job_resource_params_file": (str, "job_resource_params_conf.xml"),
    # Galaxy's: show a job's owner the metrics of plugins that describe the machine
    # (hostname, uname, cpuinfo, meminfo); admins always see them.
    "expose_potentially_sensitive_job_metrics": (bool, False),
}
REAL_USER_SCRIPTS = ("external_chown_script", "external_runjob_script",
                     "drmaa_external_runjob_script", "drmaa_external_killjob_script")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PATHS = {"job_config_file", "tool_path", "tool_config_file", "job_working_directory",
          "new_file_path", "environment_setup_file", "tus_upload_store",
          "file_path", "job_metrics_config_file", "job_resource_params_file"}
REAL_SYSTEM_USERNAME_METHODS = ("user_email",)


@dataclass
class Config:
    config_file: str
    root: str
    database_connection: str = ""
    database_engine_options: dict = field(default_factory=dict)
    job_config_file: str = ""
    job_config: dict | None = None
    tool_path: str = ""
    tool_config_file: str | None = None
    job_working_directory: str = ""
    new_file_path: str = ""
    environment_setup_file: str = ""
    job_handler_monitor_sleep: float = 1.0
    job_runner_monitor_sleep: float = 1.0
    handler_heartbeat_timeout: float = 60.0
    exit_code_file_wait: float = 5.0
    max_request_body: int = 1024 * 1024
    nginx_x_accel_redirect_base: str = ""
    admin_users: str = ""
    require_login: bool = True
    bootstrap_admin_api_key: str = ""
    login_attempts_per_10_minutes: int = 10
    metrics_allowed_addresses: str = ""
    session_idle_timeout: int = 8 * 3600
    session_max_age: int = 7 * 24 * 3600
    trusted_proxies: str = ""
    log_level: str = "INFO"
    umask: int = 0o077
    cleanup_job: str = "onsuccess"
    tus_upload_store: str = ""
    tus_upload_expiry: int = 24 * 3600
    tus_max_chunk: int = 8 * 1024 * 1024
    tus_max_size: int = 100 * 1024 ** 3
    file_path: str = ""
    max_upload_size: int = 100 * 1024 * 1024
    user_quota: int | None = None  # bytes; None: no quota
    real_system_username: str = ""  # "", "user_email", or a mapping file's path
    real_system_min_uid: int = 1000
    outputs_to_working_directory: bool = True
    external_chown_script: str = ""
    external_runjob_script: str = ""
    drmaa_external_runjob_script: str = ""
    drmaa_external_killjob_script: str = ""
    galaxy_infrastructure_url: str = ""
    job_metrics_config_file: str = ""
    job_resource_params_file: str = ""
    expose_potentially_sensitive_job_metrics: bool = False

    def resolve(self, path: str) -> str:
        return path if not path or os.path.isabs(path) else os.path.join(self.root, path)


def default_config_file() -> str:
    return os.environ.get("MULETEER_CONFIG", "galaxy.yml")


def load_config(config_file: str | None = None, overrides: dict | None = None) -> Config:
    """Read galaxy.yml's `galaxy:` section, check every setting, fill defaults."""
    config_file = os.path.abspath(config_file or default_config_file())
    try:
        with open(config_file) as fh:
            document = yaml.safe_load(_galaxy_section(fh.read())) or {}
    except ValueError as exc:
        if isinstance(exc, UnicodeDecodeError):
            raise ConfigError(f"{config_file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        raise ConfigError(f"{config_file}: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{config_file}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_file}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{config_file}: expected sections `uwsgi:` and `galaxy:`")
    section = document.get("galaxy") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{config_file}: `galaxy:` must be a mapping of settings")
    section = {**section, **(overrides or {})}

    values = {}
    for name, raw in section.items():
        if name not in _SETTINGS:
            known = ", ".join(sorted(_SETTINGS))
            raise ConfigError(f"{config_file}: galaxy.{name}: unknown setting (known: {known})")
        values[name] = _coerce(config_file, name, raw)
    if "job_config" in values and values.get("job_config_file", _SETTINGS["job_config_file"][1]) \
            != _SETTINGS["job_config_file"][1]:
        # Galaxy reads an inline job_config and ignores the file; naming both is a mistake.
        raise ConfigError(f"{config_file}: galaxy.job_config and galaxy.job_config_file: set one "
                          "(job_config, inline, replaces the file)")
    config = Config(config_file=config_file, root=os.path.dirname(config_file))
    for f in fields(Config):
        if f.name in _SETTINGS:
            setattr(config, f.name, values.get(f.name, _SETTINGS[f.name][1]))
    for name in _PATHS:
        setattr(config, name, config.resolve(getattr(config, name)))
    config.database_connection = _resolve_sqlite_url(config, config.database_connection)
    method = config.real_system_username
    if method and method not in REAL_SYSTEM_USERNAME_METHODS:
        if method == "username":
            raise ConfigError(f"{config_file}: galaxy.real_system_username: `username` is not "
                              "available (users here have an email, no separate username): use "
                              "user_email or a mapping file of `email account` lines")
        config.real_system_username = config.resolve(method)  # a mapping file
        if not os.path.isfile(config.real_system_username):
            raise ConfigError(f"{config_file}: galaxy.real_system_username: expected user_email "
                              f"or a mapping file; {config.real_system_username} is not a file")
        try:
            parse_mapping(config.real_system_username)
        except ValueError as exc:
            raise ConfigError(f"{config_file}: galaxy.real_system_username: {exc}") from None
    _check_real_user_settings(config)
    return config


def _check_real_user_settings(config: Config) -> None:
    where = config.config_file
    if not config.outputs_to_working_directory:
        raise ConfigError(f"{where}: galaxy.outputs_to_working_directory: false is not "
                          "available: jobs always write their outputs in their working "
                          "directory and the server collects them")
    for name in REAL_USER_SCRIPTS:
        value = getattr(config, name)
        if not value:
            continue
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: galaxy.{name}: {exc}") from None
        if not argv or not shutil.which(argv[0]):
            raise ConfigError(f"{where}: galaxy.{name}: {argv[0] if argv else repr(value)} is "
                              "not a program on PATH")
    if config.real_system_username:
        missing = [n for n in ("external_chown_script", "external_runjob_script")
                   if not getattr(config, n)]
        if missing:
            raise ConfigError(f"{where}: galaxy.real_system_username is set, so jobs run as "
                              f"their users: set {' and '.join(missing)} too (README, Jobs as "
                              "the real user)")


def _galaxy_section(text: str) -> str:
    """The file with every top-level section but `galaxy:` blanked out.

    The `uwsgi:` section is written for uWSGI's own YAML parser (repeated keys, values
    such as a log format starting with `%`) and is not always standard YAML. Blank lines
    replace the rest, so YAML errors still give the line numbers of the real file.
    """
    keep, lines = False, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(("---", "...")):
            lines.append(line)  # document markers: YAML itself judges them
            continue
        if line[:1] not in ("", " ", "\t", "#"):
            name, colon, _ = line.partition(":")
            if not colon or not name.strip().replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"line {number}: expected a top-level section such as "
                                 f"`uwsgi:` or `galaxy:`, got {line.strip()[:40]!r}")
            keep = name.strip() == "galaxy"
        lines.append(line if keep else "")
    return "\n".join(lines) + "\n"


def _coerce(config_file, name, raw):
    kind, _ = _SETTINGS[name]
    where = f"{config_file}: galaxy.{name}"
    if name == "umask":
        # YAML reads `umask: 077` as the octal number it is; a string must be octal digits.
        value = raw if isinstance(raw, int) and not isinstance(raw, bool) else \
            int(raw, 8) if isinstance(raw, str) and raw and set(raw) <= set("01234567") else None
        if value is None or not 0 <= value <= 0o777:
            raise ConfigError(f"{where}: expected an octal file mode mask such as 077, got {raw!r}")
        return value
    if kind is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if not math.isfinite(raw) or raw <= 0:
            raise ConfigError(f"{where}: must be a positive number, got {raw!r}")
        return float(raw)
    if kind is int and isinstance(raw, int) and not isinstance(raw, bool):
        if raw <= 0:
            raise ConfigError(f"{where}: must be a positive whole number, got {raw!r}")
        return raw
    if name == "cleanup_job":
        if raw not in ("always", "onsuccess", "never"):
            raise ConfigError(f"{where}: expected always, onsuccess or never, got {raw!r}")
        return raw
    if name == "log_level":
        if not isinstance(raw, str) or raw.upper() not in _LOG_LEVELS:
            raise ConfigError(f"{where}: expected one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
        return raw.upper()
    if kind is bool and isinstance(raw, bool):
        return raw
    if kind is str and isinstance(raw, (str, type(None))):
        return raw or ""
    if kind is dict and isinstance(raw, dict):
        return raw
    raise ConfigError(f"{where}: expected {kind.__name__}, got {type(raw).__name__} {raw!r}")


def _resolve_sqlite_url(config: Config, url: str) -> str:
    # sqlite:///relative/path is relative to galaxy.yml, as every other path here.
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + config.resolve(url[len(prefix):])
    return url
