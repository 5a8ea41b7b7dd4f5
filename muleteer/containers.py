"""Running a tool's command in its container (Galaxy's docker destination params).

The params are declared here once; every runner declares them (its SPEC), because the job
script itself runs the container, so local, slurm, pbs and drmaa jobs all can. This module
decides which image a tool gets, which directories the container sees, and the shell lines
that run the tool's command in it: `docker run` (or podman, sudo in front if asked) as an
argv whose every word is quoted, so that an image name, a path or an argument from a tool
or a param is data, never shell.

What the container sees (Galaxy's `$defaults`): the job's working directory read-write (its
outputs, configfiles, and HOME and TMPDIR made in it), the tool's directory read-only, the
input datasets read-only (the datasets' own files under file_path, or the job's own copies
under its inputs/ mounted read-only over the read-write directory). The working directory
and the job directory are the same directory here. Nothing else of the host.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Union

from muleteer.runner_spec import Param, param_values

# Galaxy's default shell in a container ("Galaxy assumes bash, but containers are usually
# thinner"); the tool's command is its one argument.
SHELL = "/bin/sh"
HOME = "home"  # the container's HOME and TMPDIR, made in the working directory
TMP = "tmp"
# $UID (Galaxy's default docker_set_user): the job's own account, asked when it runs (the
# server's, or the real user's for jobs as their real user).
JOB_USER = "$UID"
# docker_cgroup_parent's value for the job's own cgroup, read when the job runs: a
# scheduler's memory limit (Slurm's task/cgroup) then covers the container, which the
# engine would otherwise put in a cgroup of its own, outside the job's.
JOB_CGROUP = "$job_cgroup"
# The job's cgroup: cgroup v1's memory controller, else cgroup v2's one; none for "/".
_JOB_CGROUP_LINES = (
    "job_cgroup=",
    "while IFS=: read -r _ controllers path; do case \",$controllers,\" in "
    "*,memory,*) job_cgroup=$path; break ;; ,,) job_cgroup=$path ;; esac; "
    "done < /proc/self/cgroup",
    '[ "$job_cgroup" = / ] && job_cgroup=')
# Variables a tool reads in its container as it would outside (Galaxy passes the same).
PASSED_ENVIRONMENT = ("GALAXY_SLOTS", "GALAXY_SLOTS_CONFIGURED", "GALAXY_MEMORY_MB",
                      "GALAXY_MEMORY_MB_PER_SLOT", "MULETEER_JOB_ID")

# The watchdog's script (see ContainerRun.script): $1 the pid to outlive, then the kill
# command's words.
WATCHDOG = ('trap "" HUP INT TERM USR1 USR2; pid=$1; shift; '
            'tail --pid="$pid" -f /dev/null; exec "$@"')

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A Docker image reference: [host[:port]/]path[:tag][@algorithm:hex]. Nothing else, in
# particular nothing starting with "-" (an option to docker run) or holding a space.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
_DIGEST = r"(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?"
_IMAGE = re.compile(rf"{_HOST}{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?")
_NET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_MEMORY = re.compile(r"[0-9]+[bkmgBKMG]?")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a named volume, not a path
_CGROUP = re.compile(r"[A-Za-z0-9_./@-]+")  # a cgroup path, or a systemd slice
# Galaxy's volume modes: default_ro is ro for Docker; z and Z relabel for SELinux.
MODES = {"ro": "ro", "rw": "rw", "default_ro": "ro", "z": "z", "Z": "Z"}
VARIABLES = ("working_directory", "job_directory", "tool_directory", "default_file_path",
             "galaxy_root", "home_directory", "tmp_directory")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class ContainerError(ValueError):
    """A container setting, image or volume that cannot be used: the message says which."""


# -- the params, each checked when the job configuration loads ----------------------------
def check_image(reference: str) -> str:
    """`reference` if it is a plain image reference (registry/name:tag or @digest)."""
    if not _IMAGE.fullmatch(reference or ""):
        raise ContainerError(f"{reference!r} is not a plain image reference (such as "
                             "quay.io/biocontainers/samtools:1.17--h00cdaf9_0 or "
                             "debian:bookworm, optionally @sha256:...)")
    return reference


def _image_or_empty(value: str) -> None:
    if value:
        check_image(value)


def _words(value: str) -> list[str]:
    """An admin's command or arguments as words (quotes honoured, nothing expanded)."""
    if "\n" in value or "\0" in value:
        raise ContainerError("a newline is not allowed here")
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise ContainerError(f"{value!r} cannot be split into words: {exc}") from None


def _command(value: str) -> None:
    if not _words(value):
        raise ContainerError("expected a command")


def _user(value: str) -> None:
    if value and value != JOB_USER and not _USER.fullmatch(value):
        raise ContainerError(f"{value!r}: expected $UID, a user or uid, optionally :group")


def _net(value: str) -> None:
    if value and not _NET.fullmatch(value):
        raise ContainerError(f"{value!r}: expected a network name such as none or host")


def _memory(value: str) -> None:
    if value and not _MEMORY.fullmatch(value):
        raise ContainerError(f"{value!r}: expected a size such as 512m or 2g")


def _cgroup_parent(value: str) -> None:
    if value and value != JOB_CGROUP and not _CGROUP.fullmatch(value):
        raise ContainerError(f"{value!r}: expected {JOB_CGROUP}, a cgroup path or a "
                             "systemd slice")


def _volumes(value: str) -> None:
    parse_volumes(value)


CONTAINER_PARAMS = (
    Param("docker_enabled", bool, False, "run tools that name a container in it"),
    Param("docker_cmd", str, "docker", "the container command (podman works: it takes "
          "docker's arguments)", check=_command),
    Param("docker_sudo", bool, False, "run the container command through docker_sudo_cmd"),
    Param("docker_sudo_cmd", str, "sudo", "the sudo command for docker_sudo", check=_command),
    Param("docker_volumes", str, "$defaults", "volumes as SOURCE:TARGET[:ro|rw], comma "
          "separated, with $working_directory, $job_directory, $tool_directory, "
          "$default_file_path; $defaults: Galaxy's default set", check=_volumes),
    Param("docker_net", str, "none", "the container's network (--net)", check=_net),
    Param("docker_memory", str, "", "the container's memory limit (--memory)", check=_memory),
    Param("docker_auto_rm", bool, True, "remove the container when the job ends (--rm)"),
    Param("docker_set_user", str, JOB_USER, "run as this user in the container (--user); "
          "$UID: the job's own; empty: the image's", check=_user),
    Param("docker_run_extra_arguments", str, "", "more arguments for `run`", check=_words),
    Param("docker_default_container_id", str, "", "the image for tools that name none",
          check=_image_or_empty),
    Param("docker_container_id_override", str, "", "the image for every tool",
          check=_image_or_empty),
    Param("require_container", bool, False, "refuse tools that have no container to run in"),
    # Not Galaxy's (Galaxy has no such setting).
    Param("docker_cgroup_parent", str, "", "the containers' parent cgroup (--cgroup-parent); "
          f"{JOB_CGROUP}: the job's own, so that the scheduler's limits cover the container "
          "(needs the engine's cgroupfs manager); empty: the engine's choice",
          check=_cgroup_parent),
)


@dataclass(frozen=True)
class ContainerSettings:
    """A destination's container params, typed."""
    enabled: bool = False
    cmd: tuple[str, ...] = ("docker",)
    sudo: bool = False
    sudo_cmd: tuple[str, ...] = ("sudo",)
    volumes: str = "$defaults"
    net: str = "none"
    memory: str = ""
    auto_rm: bool = True
    set_user: str = JOB_USER
    run_extra_arguments: tuple[str, ...] = ()
    default_container_id: str = ""
    container_id_override: str = ""
    require_container: bool = False
    cgroup_parent: str = ""

    def prefix(self) -> list[str]:
        """The container command's words, sudo first if asked."""
        return [*(self.sudo_cmd if self.sudo else ()), *self.cmd]


_ASKED = tuple(p for p in CONTAINER_PARAMS if p.name in ("docker_enabled", "require_container"))


def asked_for(destination) -> bool:
    """Whether the destination runs or requires containers at all: the one question every
    job of every destination asks, kept cheap."""
    values = param_values(_ASKED, getattr(destination, "params", None) or {})
    return values["docker_enabled"] or values["require_container"]


def settings(destination) -> ContainerSettings:
    """The destination's container settings (a rule's params over its own, typed; ValueError
    saying what if a rule set a bad one)."""
    values = param_values(CONTAINER_PARAMS, getattr(destination, "params", None) or {})
    for param in CONTAINER_PARAMS:  # a rule's values were not checked when the file loaded
        if param.check is not None and values[param.name] != param.default:
            param.check(values[param.name])
    return ContainerSettings(
        enabled=values["docker_enabled"], cmd=tuple(_words(values["docker_cmd"])),
        sudo=values["docker_sudo"], sudo_cmd=tuple(_words(values["docker_sudo_cmd"])),
        volumes=values["docker_volumes"], net=values["docker_net"],
        memory=values["docker_memory"], auto_rm=values["docker_auto_rm"],
        set_user=values["docker_set_user"],
        run_extra_arguments=tuple(_words(values["docker_run_extra_arguments"])),
        default_container_id=values["docker_default_container_id"],
        container_id_override=values["docker_container_id_override"],
        require_container=values["require_container"],
        cgroup_parent=values["docker_cgroup_parent"])


# -- which image ------------------------------------------------------------------------
def tool_image(containers, options: ContainerSettings) -> str | None:
    """The image a tool runs in on a destination with these settings, Galaxy's order: the
    destination's override, the tool's first docker <container>, the destination's default;
    None: on the host. `containers`: the tool's (muleteer.tools.model.Container, ...)."""
    if not options.enabled:
        return None
    own = next((c.identifier for c in containers if c.type == "docker"), None)
    image = options.container_id_override or own or options.default_container_id or None
    return check_image(image) if image is not None else None


# -- volumes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class VolumeSpec:
    """One volume as configured, variables not yet filled in."""
    source: str
    target: str
    mode: str


@dataclass(frozen=True)
class Volume:
    source: str
    target: str
    mode: str

    def spec(self) -> str:
        return f"{self.source}:{self.target}:{self.mode}"


def parse_volumes(text: str) -> tuple[VolumeSpec, ...]:
    """Galaxy's docker_volumes: comma-separated SOURCE[:TARGET][:MODE] (TARGET defaults to
    SOURCE, MODE to rw), with $variables (VARIABLES, and $defaults). ContainerError naming
    the volume for anything else."""
    if "\n" in text or "\0" in text:
        raise ContainerError("docker_volumes: a newline is not allowed in a volume")
    found = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue  # "a,,b" and a trailing comma, as Galaxy skips them
        if item in ("$defaults", "${defaults}"):
            found.append(VolumeSpec("$defaults", "$defaults", "rw"))
            continue
        parts = [p.strip() for p in item.split(":")]
        if len(parts) == 1:
            source, target, mode = parts[0], parts[0], "rw"
        elif len(parts) == 2 and parts[1] in MODES:
            source, target, mode = parts[0], parts[0], parts[1]
        elif len(parts) == 2:
            source, target, mode = parts[0], parts[1], "rw"
        elif len(parts) == 3:
            source, target, mode = parts
        else:
            raise ContainerError(f"volume {item!r}: expected SOURCE[:TARGET][:MODE]")
        if mode not in MODES:
            raise ContainerError(f"volume {item!r}: mode {mode!r} is not one of "
                                 f"{', '.join(MODES)}")
        for side in (source, target):
            if not side:
                raise ContainerError(f"volume {item!r}: an empty path")
            for match in _VARIABLE.finditer(side):
                name = match.group(1) or match.group(2)
                if name not in VARIABLES:
                    raise ContainerError(f"volume {item!r}: unknown variable ${name} (known: "
                                         f"{', '.join('$' + v for v in VARIABLES)}, $defaults)")
        found.append(VolumeSpec(source, target, mode))
    return tuple(found)


@dataclass(frozen=True)
class JobPaths:
    """The directories of one job as the machine running it sees them (absolute paths);
    None: the job has no such directory (a tool without a directory of its own, a job
    that reads no dataset from file_path)."""
    working_directory: str
    tool_directory: str | None = None
    default_file_path: str | None = None
    galaxy_root: str | None = None
    # The job's own copies of its inputs (jobs as their real users, staged jobs): read-only
    # inside the read-write working directory.
    inputs: str | None = None

    def variables(self) -> dict[str, str | None]:
        return {"working_directory": self.working_directory,
                "job_directory": self.working_directory,  # one directory here
                "tool_directory": self.tool_directory,
                "default_file_path": self.default_file_path,
                "galaxy_root": self.galaxy_root,
                "home_directory": os.path.join(self.working_directory, HOME),
                "tmp_directory": os.path.join(self.working_directory, TMP)}


# Galaxy's $defaults without $galaxy_root (nothing of the server's code runs in a job, and
# the server's keys live under it) and without $job_directory:ro (the same directory as
# the working directory, which must be writable).
DEFAULTS = (VolumeSpec("$tool_directory", "$tool_directory", "ro"),
            VolumeSpec("$working_directory", "$working_directory", "rw"),
            VolumeSpec("$default_file_path", "$default_file_path", "ro"))


def volumes(text: str, paths: JobPaths) -> list[Volume]:
    """The job's volumes from docker_volumes: variables filled in; a volume naming a
    directory this job does not have is left out (as Galaxy leaves out $tool_directory
    for a tool without one); a later volume on the same target replaces an earlier one;
    the job's own inputs last, read-only. ContainerError for a path docker's -v cannot
    carry."""
    values = paths.variables()
    by_target: dict[str, Volume] = {}
    specs = []
    for spec in parse_volumes(text):
        specs.extend(DEFAULTS if spec.source == "$defaults" else [spec])
    for spec in specs:
        filled = [_fill(side, values) for side in (spec.source, spec.target)]
        if None in filled:
            continue
        source, target = filled
        _check_path(source, spec, named_volume_ok=True)
        _check_path(target, spec)
        by_target.pop(target, None)  # re-inserted last: the later one wins, in its place
        by_target[target] = Volume(source, target, MODES[spec.mode])
    if paths.inputs is not None:
        _check_path(paths.inputs, VolumeSpec("inputs", "inputs", "ro"))
        by_target.pop(paths.inputs, None)
        by_target[paths.inputs] = Volume(paths.inputs, paths.inputs, "ro")
    return list(by_target.values())


def _fill(text: str, values: dict) -> str | None:
    missing = False

    def value(match):
        nonlocal missing
        found = values[match.group(1) or match.group(2)]
        if found is None:
            missing = True
            return ""
        return os.path.abspath(found)
    filled = _VARIABLE.sub(value, text)
    return None if missing else filled


def _check_path(path: str, spec: VolumeSpec, named_volume_ok: bool = False) -> None:
    where = f"volume {spec.source}:{spec.target}:{spec.mode}"
    if any(c in path for c in ":,\n\0"):
        raise ContainerError(f"{where}: the path {path!r} holds a colon, a comma or a "
                             "newline, which docker's -v cannot carry")
    if not path.startswith("/") and not (named_volume_ok and _VOLUME_NAME.fullmatch(path)):
        raise ContainerError(f"{where}: {path!r} is not an absolute path")


# -- the command line ------------------------------------------------------------------
@dataclass(frozen=True)
class Expansion:
    """A word the job's shell expands when the job runs (only this module makes them, from
    fixed text and checked names): everything else in an argv is quoted."""
    text: str


Word = Union[str, Expansion]


def passed_variable(name: str) -> Expansion:
    """--env=NAME=value of the job's variable NAME if it is set, no word if not. The value
    goes on the command line (not `-e NAME` alone) so that it also passes sudo."""
    if not _ENV_NAME.fullmatch(name):
        raise ContainerError(f"environment variable name {name!r} is not a shell name")
    return Expansion(f'${{{name}+"--env={name}=${name}"}}')


@dataclass(frozen=True)
class ContainerRun:
    """One job's `docker run`: what runs where, and the container's name (to kill it)."""
    command: str                 # the tool's command, run by SHELL in the container
    image: str
    options: ContainerSettings
    volumes: tuple[Volume, ...]
    working_directory: str
    environment: tuple[str, ...] = ()  # the tool's variables, passed by name
    name: str = ""
    # The job script's umask (galaxy.yml's umask), which the container would not inherit
    # (engines start it with 022): the tool's files stay as private as on the host.
    umask: int | None = None

    def run_argv(self) -> list[Word]:
        argv: list[Word] = [*self.options.prefix(), "run", "--name", self.name]
        for name in (*PASSED_ENVIRONMENT, *self.environment):
            argv.append(passed_variable(name))
        home = os.path.join(self.working_directory, HOME)
        tmp = os.path.join(self.working_directory, TMP)
        argv += [f"--env=HOME={home}", f"--env=TMPDIR={tmp}", f"--env=TMP={tmp}",
                 f"--env=TEMP={tmp}"]
        for volume in self.volumes:
            argv += ["-v", volume.spec()]
        argv += ["-w", self.working_directory]
        if self.options.net:
            argv += ["--net", self.options.net]
        if self.options.memory:
            argv += ["--memory", self.options.memory]
        if self.options.cgroup_parent == JOB_CGROUP:
            argv.append(Expansion('${job_cgroup:+"--cgroup-parent=$job_cgroup"}'))
        elif self.options.cgroup_parent:
            argv += ["--cgroup-parent", self.options.cgroup_parent]
        if self.options.auto_rm:
            argv.append("--rm")
        if self.options.set_user == JOB_USER:
            argv.append(Expansion('--user="$(id -u):$(id -g)"'))
        elif self.options.set_user:
            argv += ["--user", self.options.set_user]
        argv += list(self.options.run_extra_arguments)
        # The image is the last option-like word: a reference never starts with "-".
        command = self.command if self.umask is None else \
            f"umask {self.umask:03o}\n{self.command}"
        argv += [check_image(self.image), SHELL, "-c", command]
        return argv

    def kill_argv(self) -> list[Word]:
        return [*self.options.prefix(), "kill", self.name]

    def script(self) -> str:
        """Shell lines for the job script's command subshell: make HOME and TMPDIR, start
        the watchdog, run the container, stop the watchdog, exit with the container's
        status.

        The container runs under the engine (conmon), outside the job's process group,
        session and scheduler job: killing the job (a cancel, a scheduler's kill, Grid
        Engine's SIGKILL at once) leaves it running. The watchdog, in a session of its own
        and deaf to the signals a scheduler sends first, waits for this subshell to be gone
        (tail --pid: one check a second, no process per check) and then kills the
        container by its name. A job that ends by itself stops its watchdog first."""
        home = os.path.join(self.working_directory, HOME)
        tmp = os.path.join(self.working_directory, TMP)
        cgroup = _JOB_CGROUP_LINES if self.options.cgroup_parent == JOB_CGROUP else ()
        return "\n".join([
            f"mkdir -p -m 700 {shlex.quote(home)} {shlex.quote(tmp)} || exit 1",
            *cgroup,
            "shell=$BASHPID",  # here: inside `&` it would be the watchdog's own pid
            f"setsid /bin/sh -c {shlex.quote(WATCHDOG)} muleteer-watchdog \"$shell\" "
            f"{render(self.kill_argv())} </dev/null >/dev/null 2>&1 &",
            "watchdog=$!",
            # The container starts once the watchdog leads a session of its own: until its
            # setsid() has run it is one of the job's processes, and killing the job then
            # would end it too and leave the container running. Its /proc stat is read by
            # bash itself (no process); 2 s at most, then the container starts anyway.
            "for __mt_try in {1..40}; do",
            '    read -r __mt_stat < "/proc/$watchdog/stat" 2>/dev/null || break',
            '    read -r _ _ _ __mt_sid _ <<< "${__mt_stat##*) }"',  # past (comm): the 4th is the session
            '    [ "$__mt_sid" = "$watchdog" ] && break',
            "    sleep 0.05",
            "done",
            render(self.run_argv()),
            "rc=$?",
            'kill -KILL -- "-$watchdog" 2>/dev/null',
            "exit $rc",
        ])


def container_name(job_id: int) -> str:
    """A new container's name: the job's id, and random so that a retried job's container
    never meets an earlier attempt's."""
    return f"muleteer-job-{int(job_id)}-{secrets.token_hex(4)}"


def render(argv: list[Word]) -> str:
    return " ".join(w.text if isinstance(w, Expansion) else shlex.quote(w) for w in argv)


def run_script(job_id: int, command: str, image: str, options: ContainerSettings,
               paths: JobPaths, environment=(), umask: int | None = None) -> str:
    """The shell lines that run `command` in `image` for job `job_id` (see
    ContainerRun.script). ContainerError if an image, a volume or a name cannot be used."""
    for name in environment:
        if not _ENV_NAME.fullmatch(name):
            raise ContainerError(f"environment variable name {name!r} is not a shell name")
    run = ContainerRun(command=command, image=check_image(image), options=options,
                       volumes=tuple(volumes(options.volumes, paths)),
                       working_directory=paths.working_directory,
                       environment=tuple(environment), name=container_name(job_id),
                       umask=umask)
    return run.script()
