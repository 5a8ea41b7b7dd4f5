"""A job's command, built by its handler when it prepares the job (Galaxy's way: the
handler knows the job's directory, its datasets' paths and its destination; a staging
runner can give other paths).

The web side stores only the tool id, version and checked values; here the tool's
templates (muleteer/tools/evaluation.py) turn them into the command, the configfiles and
the environment, with each input dataset's path and metadata and each output's path in
the job's directory. A job whose tool is no longer loaded runs the command recorded with
it, if any (a job written by an admin script or a test), and fails otherwise.
"""
from __future__ import annotations

import functools
import os
import shutil
import types
from dataclasses import dataclass, field

from Cheetah.Template import Template

from muleteer import containers
from muleteer.dataset_files import DatasetFiles
from muleteer.job import Job
from muleteer.job_files import COMMAND_VERSION, INPUTS, JobFiles
from muleteer.job_outputs import relative_path
from muleteer.staging import uses_tool_directory
from muleteer.tools import evaluation, outputs as tool_outputs
from muleteer.tools.errors import ToolError
from muleteer.tools.model import DatasetInfo, Tool

CONFIG_DIRECTORY = "configs"


class JobSetupError(Exception):
    """The job cannot be started as its tool says (a template error, a missing program):
    the job fails with this message."""


@dataclass(frozen=True)
class JobLayout:
    """Where the job finds its directory and its inputs, as the machine running it sees
    them: the server's job directory and the datasets' own files (one shared disk), or a
    directory of the job's own with copies of its inputs in it (a job running as its real
    user, which cannot read the server's datasets; a node without the shared disk)."""
    directory: str
    own_inputs: bool = False
    # A node without the shared disk (muleteer/staging.py): its copy of the tool's
    # directory, and its own temporary directory; None: the server's.
    tool_directory: str | None = None
    new_file_path: str | None = None

    def input_path(self, dataset_id: int) -> str | None:
        """The path the job reads an input from; None: the dataset's own file."""
        if not self.own_inputs:
            return None
        return os.path.join(self.directory, INPUTS, input_name(dataset_id))


def input_name(dataset_id: int) -> str:
    return f"dataset_{dataset_id}.dat"  # Galaxy's file name for a dataset


@dataclass(frozen=True)
class JobCommand:
    command: str
    configfiles: dict = field(default_factory=dict)   # relative path -> text
    environment: dict = field(default_factory=dict)   # name -> value
    version_command: str | None = None
    input_ids: tuple = ()   # the input datasets the command reads, by id


def tool_of(ctx, job: Job) -> Tool | None:
    return ctx.tools.get(job.tool_id, job.tool_version)


@dataclass(frozen=True)
class JobInput:
    name: str          # the data param's flat path
    position: int
    dataset: object    # muleteer.dataset.Dataset, or None when its row is gone


def job_inputs(ctx, job: Job, tool: Tool) -> list[JobInput]:
    """The job's input datasets in param order, read once (none for a tool without data
    params: no query at all, as most jobs of a busy server are such)."""
    if not tool.data_params():
        return []
    links = sorted((link for link in ctx.store.job_datasets(job_id=job.id)
                    if link["role"] == "input"), key=lambda r: (r["name"], r["position"]))
    rows = {}
    for link in links:
        if link["dataset_id"] not in rows:
            rows[link["dataset_id"]] = ctx.store.get_dataset(link["dataset_id"])
    return [JobInput(link["name"], link["position"], rows[link["dataset_id"]]) for link in links]


def input_datasets(ctx, inputs: list[JobInput], layout: JobLayout | None = None
                   ) -> dict[int, DatasetInfo]:
    """The input datasets by id, with the paths the command sees."""
    files = DatasetFiles(ctx.config.file_path)
    found = {}
    for item in inputs:
        dataset = item.dataset
        if dataset is None or dataset.deleted:
            raise JobSetupError(f"input {item.name}: its dataset is gone (deleted after the "
                                "job was submitted)")
        found[dataset.id] = DatasetInfo(
            id=dataset.id, path=(layout and layout.input_path(dataset.id)) or files.path(dataset.id),
            format=dataset.format,
            name=dataset.name, size=dataset.size, metadata=dataset.metadata or {})
    return found


def output_formats(job: Job, tool: Tool, inputs: list[JobInput]) -> dict[str, str]:
    """The format of each output the job makes (filters applied)."""
    formats = {}
    for item in inputs:  # each data param's flat path -> its first dataset's format
        if item.dataset is not None and item.name not in formats:
            formats[item.name] = item.dataset.format
    return {o.name: tool_outputs.output_format(tool, o, job.params, formats)
            for o in tool_outputs.wanted_outputs(tool, job.params)}


def output_names(job: Job, tool: Tool, formats: dict, inputs: list[JobInput]) -> dict[str, str]:
    """Each output's dataset name: its label rendered as Galaxy does (Cheetah over the
    top-level values, `$on_string` naming the inputs as "data N", `$tool.name`), or
    NAME.FORMAT without a label or when the label cannot be rendered."""
    names = {}
    namespace = None
    for name, fmt in formats.items():
        label = tool.output(name).label
        text = ""
        if label and "$" not in label:
            text = label
        elif label:
            if namespace is None:
                ids = sorted({i.dataset.id for i in inputs if i.dataset is not None})
                namespace = {k: v for k, v in job.params.items() if isinstance(k, str)}
                namespace.update(on_string=" and ".join(f"data {i}" for i in ids),
                                 tool=types.SimpleNamespace(name=tool.name, id=tool.id,
                                                            version=tool.version))
            template = _label_template(label)
            try:
                text = str(template(searchList=[namespace])).strip() if template else ""
            except Exception:  # a label is decoration: a broken one never fails the job
                text = ""
        names[name] = text[:255] or f"{name}.{fmt}"
    return names


@functools.lru_cache(maxsize=1024)
def _label_template(label: str):
    """A label's compiled Cheetah class, once per distinct label (compiling is the costly
    part, and a job's end is the handler's hot path); None if it does not compile."""
    try:
        return Template.compile(source=label)
    except Exception:
        return None


def _wants_email(tool: Tool) -> bool:
    """Whether a template may use the user's email (saves a query per job otherwise)."""
    texts = [tool.command] + [c.text for c in tool.configfiles] + [e.text for e in tool.environment]
    return any("__user_email__" in t or "userEmail" in t for t in texts)


DPKG_STATUS = "/var/lib/dpkg/status"


@functools.lru_cache(maxsize=1)
def _installed_packages(status_file: str = DPKG_STATUS) -> frozenset:
    """Debian packages installed on this machine (read once per process)."""
    installed, name = set(), None
    try:
        with open(status_file, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Package: "):
                    name = line[9:].strip()
                elif line.startswith("Status: ") and line.split()[-1] == "installed" and name:
                    installed.add(name)
    except OSError:
        pass
    return frozenset(installed)


def check_requirements(tool: Tool) -> None:
    """Each package requirement must be met on this machine (the local runner runs jobs
    with the handler's environment): by a program of that name on the job's PATH (gzip),
    or an installed Debian package of that name (coreutils, which no program is named
    after). A missing one fails the job before it starts, naming it; versions are not
    compared (the installed one is used, as Galaxy does without a dependency resolver)."""
    missing = [r.name for r in tool.requirements if r.type == "package"
               and shutil.which(r.name) is None and r.name not in _installed_packages()]
    if missing:
        raise JobSetupError(f"tool {tool.id} requires {', '.join(missing)}: no such program on "
                            f"the job's PATH ({os.environ.get('PATH', '')}) and no such Debian "
                            "package installed")


def build(ctx, job: Job, files: JobFiles, *, local: bool,
          layout: JobLayout | None = None) -> JobCommand:
    """The command for `job` in the directory `files` (seen by the job as `layout` says),
    from its tool and values."""
    layout = layout or JobLayout(files.directory)
    tool = tool_of(ctx, job)
    if tool is None:
        if job.command_line:
            return JobCommand(job.command_line)
        raise JobSetupError(f"tool {job.tool_id} {job.tool_version} is no longer loaded")
    # A tool that runs in its container finds its programs there, not on the host.
    if local and _container_of(ctx, job, tool) is None:
        check_requirements(tool)
    inputs = job_inputs(ctx, job, tool)
    outputs = {name: (os.path.join(layout.directory, relative_path(tool.output(name))), fmt)
               for name, fmt in output_formats(job, tool, inputs).items()}
    datasets = input_datasets(ctx, inputs, layout)
    try:
        built = evaluation.build_command(
            tool, job.params, datasets=datasets, outputs=outputs,
            working_directory=layout.directory,
            new_file_path=layout.new_file_path or ctx.config.new_file_path or "",
            user_email=ctx.store.user_email(job.user_id) if _wants_email(tool) else None,
            config_directory=CONFIG_DIRECTORY, tool_directory=layout.tool_directory)
    except (evaluation.BuildError, ToolError) as exc:
        raise JobSetupError(f"the command of tool {tool.id} could not be built: {exc}") from None
    return JobCommand(built.command, dict(built.configfiles), dict(built.environment),
                      built.version_command, tuple(datasets))


# -- containers (muleteer/containers.py) -------------------------------------------------
def _container_of(ctx, job: Job, tool: Tool | None) -> str | None:
    """The image of the job's tool on the job's destination (None: on the host), for a
    caller that is not given the destination."""
    try:
        destination = ctx.job_conf.destination_of(job)
    except (KeyError, AttributeError):
        return None  # the destination is gone: the runner fails the job saying so
    return container_image(job, destination, tool)


def container_image(job: Job, destination, tool: Tool | None) -> str | None:
    """The image the job's tool runs in on `destination`, in Galaxy's order (the
    destination's override, the tool's own docker container, the destination's default);
    None: on the host. A destination with require_container and no image for the tool
    fails the job before it starts."""
    where = f"destination {getattr(destination, 'id', '?')}"
    try:
        if not containers.asked_for(destination):
            return None
        options = containers.settings(destination)
        image = containers.tool_image(tool.containers if tool else (), options)
    except ValueError as exc:
        raise JobSetupError(f"{where}: tool {job.tool_id}'s container: {exc}") from None
    if image is None and options.require_container:
        if not options.enabled:
            raise JobSetupError(f"{where} requires a container (require_container) but does "
                                "not run tools in containers (docker_enabled is false)")
        raise JobSetupError(
            f"{where} requires a container (require_container): tool {job.tool_id} names "
            "none (<requirements><container type=\"docker\">) and the destination sets no "
            "docker_default_container_id")
    return image


def in_container(ctx, job: Job, destination, layout: JobLayout, built: JobCommand,
                 real_user: bool = False) -> str:
    """The job's command as its job script runs it: in its tool's container on a
    destination that runs tools in containers (the same lines on every runner: the job
    script itself runs the container), else as built. `real_user`: the job runs as its
    owner's account, which cannot use a root container engine unless docker_sudo says how."""
    tool = tool_of(ctx, job)
    image = container_image(job, destination, tool)
    if image is None:
        return built.command
    options = containers.settings(destination)
    if real_user and not options.sudo:
        raise JobSetupError(
            f"destination {destination.id} runs tool {job.tool_id} in a container, and jobs "
            "run as their real users (real_system_username), whose accounts cannot use the "
            f"container engine ({' '.join(options.cmd)}: it needs root): set docker_sudo "
            "(with a sudoers rule for it) on that destination, or send the tool elsewhere")
    own_inputs = layout.own_inputs and bool(built.input_ids)
    if layout.tool_directory is not None:  # a node's copy, fetched only if the tool uses it
        tool_directory = layout.tool_directory if tool and uses_tool_directory(tool) else None
    else:
        tool_directory = tool.tool_dir if tool and tool.tool_dir else None
    paths = containers.JobPaths(
        working_directory=layout.directory, tool_directory=tool_directory,
        # The datasets' own files, only for a job that reads them there.
        default_file_path=ctx.config.file_path if built.input_ids and not layout.own_inputs
        else None,
        galaxy_root=ctx.config.root,
        inputs=os.path.join(layout.directory, INPUTS) if own_inputs else None)
    command = built.command
    if built.version_command:
        # The program is in the image: its version too (the job script asks only here).
        command = (f"( {built.version_command} ) > {COMMAND_VERSION} 2>&1 < /dev/null\n"
                   f"{command}")
    try:
        return containers.run_script(job.id, command, image, options, paths,
                                     environment=tuple(built.environment),
                                     umask=ctx.config.umask)
    except ValueError as exc:
        raise JobSetupError(f"destination {destination.id}: tool {job.tool_id}'s container: "
                            f"{exc}") from None
