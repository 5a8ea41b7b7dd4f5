"""Galaxy's job resource parameters: what a user may ask of a job's resources (cores, memory,
walltime...) in the tool form and the API, and how the answers reach the destination.

- job_resource_params_conf.xml (galaxy.yml's job_resource_params_file) declares the params,
  as tool params: `<parameters><param name="cores" type="integer" min="1" max="16" .../>`.
- The job configuration's `resources` groups pick some of them per tool (JobConfig.resources_for).
- A tool with a group gets Galaxy's conditional `__job_resource` last in its inputs (a select
  `__job_resource__select`: no = the destination's defaults, yes = the group's params), so
  the form, the tool JSON and the params check treat it as any other input.
- When the handler starts a job, what was asked goes to a dynamic rule as `resource_params`
  and is mapped onto the destination's params by its runner type (destination_changes).

Only numbers reach a destination: cores (`cores`, Galaxy's `processors`), memory in GB
(`memory`) and walltime in hours (`time`, `walltime`), each checked again here; every other
param (a project, a priority) is for rules only. A user's text never reaches a scheduler.
"""
from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, replace

from lxml import etree

from muleteer.tools.model import Conditional, Option, Param, ParamType, When

CONDITIONAL = "__job_resource"
SELECT = "__job_resource__select"
_YES = ("yes", "true", "1")  # Galaxy reads the select this leniently
TYPES = (ParamType.INTEGER, ParamType.FLOAT, ParamType.SELECT, ParamType.TEXT, ParamType.BOOLEAN)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

CORES = ("cores", "processors")
MEMORY_GB = ("memory",)
WALLTIME_HOURS = ("time", "walltime")
# Past these a value is no request a scheduler could meet (and a float too large to print).
_MAX_CORES, _MAX_MEMORY_MB, _MAX_SECONDS = 1_000_000, 2 ** 40, 100 * 365 * 24 * 3600


class ResourceParamsError(ValueError):
    """job_resource_params_conf.xml is invalid; the message names the file and line."""


@dataclass(frozen=True)
class ResourceParams:
    path: str
    params: dict  # name -> Param, in the file's order
    found: bool   # False: the file does not exist (no params, as in Galaxy)


def load_resource_params(path: str) -> ResourceParams:
    """The params of a job_resource_params_conf.xml; none if the file does not exist."""
    if not path or not os.path.exists(path):
        return ResourceParams(path or "", {}, False)
    try:
        root = etree.parse(path, etree.XMLParser(remove_comments=True)).getroot()
    except OSError as exc:
        raise ResourceParamsError(f"{path}: cannot read: {exc}") from exc
    except etree.XMLSyntaxError as exc:
        raise ResourceParamsError(f"{path}, line {exc.lineno}: not well-formed XML: {exc.msg}") \
            from exc
    reader = _Reader(path)
    if root.tag != "parameters":
        reader.fail(root, "the root element must be <parameters>")
    params = {}
    for element in root:
        if not isinstance(element.tag, str):
            continue
        if element.tag != "param":
            reader.fail(element, "only <param> elements belong in <parameters>")
        param = reader.param(element)
        if param.name in params:
            reader.fail(element, f"param {param.name!r} is defined twice")
        params[param.name] = param
    return ResourceParams(path, params, True)


class _Reader:
    def __init__(self, path: str):
        self.path = path

    def fail(self, element, message: str):
        line = getattr(element, "sourceline", None)
        where = f"{self.path}, line {line}" if line else self.path
        raise ResourceParamsError(f"{where}: <{element.tag}>: {message}")

    def number(self, element, attr: str, integer: bool) -> float | None:
        raw = (element.get(attr) or "").strip()
        if not raw:
            return None
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            self.fail(element, f"{attr}={raw!r} is not {'a whole number' if integer else 'a number'}")
        if not math.isfinite(value):
            self.fail(element, f"{attr}={raw!r} is not a finite number")
        return value

    def param(self, element) -> Param:
        name = (element.get("name") or "").strip()
        if not _NAME.match(name):
            self.fail(element, f"name={name!r}: a name is a letter, then letters, digits, '_'")
        try:
            kind = ParamType(element.get("type"))
        except ValueError:
            kind = None
        if kind not in TYPES:
            self.fail(element, f"param {name!r}: type {element.get('type')!r} is not a job "
                               f"resource type (one of {', '.join(t.value for t in TYPES)})")
        integer = kind == ParamType.INTEGER
        # Galaxy's sample: "Leave blank to use default value": a number or text left blank
        # is the destination's own; a select or boolean always has a value.
        blank = "true" if kind in (ParamType.INTEGER, ParamType.FLOAT, ParamType.TEXT) else "false"
        fields = dict(name=name, type=kind, label=element.get("label") or name,
                      help=element.get("help") or "", value=element.get("value"),
                      optional=(element.get("optional") or blank).strip().lower() in _YES)
        if kind in (ParamType.INTEGER, ParamType.FLOAT):
            low, high = self.number(element, "min", False), self.number(element, "max", False)
            if low is not None and high is not None and low > high:
                self.fail(element, f"param {name!r}: min {low:g} is above max {high:g}")
            self.number(element, "value", integer)
            fields.update(min=low, max=high)
        elif kind == ParamType.SELECT:
            options = []
            for option in element.findall("option"):
                value = option.get("value")
                if value is None:
                    self.fail(option, f"param {name!r}: <option> has no value")
                options.append(Option(value=value, label=(option.text or value).strip() or value,
                                      selected=option.get("selected", "").lower() in _YES))
            if not options:
                self.fail(element, f"param {name!r}: a select needs <option> elements")
            default = element.get("value")
            if default is not None and not any(o.selected for o in options):
                # Galaxy's sample gives a select's default as value="..."; the params check
                # reads `selected` (as Galaxy's does), the form either: one answer for both.
                if default not in {o.value for o in options}:
                    self.fail(element, f"param {name!r}: value={default!r} is not one of its "
                                       "options")
                options = [replace(o, selected=o.value == default) for o in options]
            fields["options"] = tuple(options)
        elif kind == ParamType.BOOLEAN:
            fields["checked"] = (element.get("checked") or element.get("value") or "").lower() in _YES
        return Param(**fields)


# -- the tool form's conditional ---------------------------------------------------------------
def resource_conditional(params: tuple) -> Conditional:
    """Galaxy's "Job Resource Parameters" conditional over `params`."""
    test = Param(name=SELECT, type=ParamType.SELECT, label="Job Resource Parameters",
                 options=(Option("no", "Use default job resource parameters"),
                          Option("yes", "Specify job resource parameters")))
    return Conditional(name=CONDITIONAL, test=test,
                       whens=(When("no", ()), When("yes", tuple(params))))


def with_job_resources(toolbox, job_conf):
    """`toolbox` with the resource conditional last in the inputs of every tool the job
    configuration gives a resource group (each version); the same toolbox if none has one."""
    from muleteer.tools.toolbox import Toolbox
    offered = {tool.id: job_conf.resources_for(tool.id) for tool in toolbox.values()}
    if not any(offered.values()):
        return toolbox
    result = Toolbox(errors=list(toolbox.errors), sections=list(toolbox.sections))
    for tool_id, params in offered.items():
        for version in toolbox.versions(tool_id):
            tool = toolbox.get(tool_id, version)
            if params and not any(i.name == CONDITIONAL for i in tool.inputs):
                tool = replace(tool, inputs=tool.inputs + (resource_conditional(params),))
            result.add(tool)
    return result


def chosen_resources(job_params: dict) -> dict:
    """What a job's user asked for ({} when "use default"): the group's params that have a
    value, as check_params typed them (a rule's `resource_params`)."""
    chosen = (job_params or {}).get(CONDITIONAL)
    if not isinstance(chosen, dict) or str(chosen.get(SELECT, "")).lower() not in _YES:
        return {}
    return {k: v for k, v in chosen.items() if k != SELECT and v is not None and v != ""}


# -- onto a destination ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Resources:
    """What a job asked for, in schedulers' units; None: not asked (the destination's own)."""
    cores: int | None = None
    memory_mb: int | None = None
    walltime: int | None = None  # seconds

    @classmethod
    def of(cls, chosen: dict) -> "Resources":
        """From chosen_resources(): numbers only, each positive and finite, else ignored."""
        def first(names):
            return next((chosen[n] for n in names if n in chosen), None)
        cores = _number(first(CORES), integer=True)
        gigabytes, hours = _number(first(MEMORY_GB)), _number(first(WALLTIME_HOURS))
        memory = math.ceil(gigabytes * 1024) if gigabytes is not None else None
        seconds = math.ceil(hours * 3600) if hours is not None else None
        return cls(cores=cores if cores is not None and cores <= _MAX_CORES else None,
                   memory_mb=memory if memory is not None and memory <= _MAX_MEMORY_MB else None,
                   walltime=seconds if seconds is not None and seconds <= _MAX_SECONDS else None)

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.cores, self.memory_mb, self.walltime))

    def asked(self) -> list:
        return [n for n, v in (("cores", self.cores), ("memory", self.memory_mb),
                               ("walltime", self.walltime)) if v is not None]


def _number(value, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value <= 0 or (integer and value != int(value)):
        return None
    return int(value) if integer else float(value)


def hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def destination_changes(runner_type: str, spec, params: dict,
                        resources: Resources) -> tuple[dict, list]:
    """The destination params that give a job `resources` on a destination of `runner_type`
    (its RunnerSpec `spec`, its `params`): (changed params, the names of what this
    destination cannot be given)."""
    if not resources:
        return {}, []
    mapper = _MAPPERS.get(runner_type)
    if mapper is None:
        return {}, resources.asked()
    return mapper(spec, params, resources)


def _local(spec, params, r: Resources):
    changes, unmapped = {}, []
    wanted = (("local_slots", r.cores, r.cores, "cores"),
              ("local_memory_limit", r.memory_mb, f"{r.memory_mb}M", "memory"),
              ("local_walltime", r.walltime, hms(r.walltime or 0), "walltime"))
    for name, number, text, asked in wanted:
        if number is None:
            continue
        param = spec.destination_param(name) if spec else None
        if param is None:
            unmapped.append(asked)
            continue
        try:  # the local runner's param decides its form: a number, or text such as 512M
            changes[name] = param.coerce(text if param.type is str else number)
        except ValueError:
            unmapped.append(asked)
    return changes, unmapped


def _slurm(spec, params, r: Resources):
    tokens = shlex.split(params.get("nativeSpecification") or "")
    added = []
    if r.cores is not None:
        tokens = _without(tokens, ("--cpus-per-task",), ("-c",))
        added.append(f"--cpus-per-task={r.cores}")
    if r.memory_mb is not None:  # sbatch refuses --mem beside --mem-per-cpu/-gpu
        tokens = _without(tokens, ("--mem", "--mem-per-cpu", "--mem-per-gpu"), ())
        added.append(f"--mem={r.memory_mb}")
    if r.walltime is not None:
        tokens = _without(tokens, ("--time",), ("-t",))
        added.append(f"--time={hms(r.walltime)}")
    return {"nativeSpecification": shlex.join(tokens + added)}, []


def _pbs(spec, params, r: Resources):
    # Slurm's qsub wrapper keeps only the last -l it is given: the asked resources are
    # merged into the one resource list (Resource_List, passed as qsub's first -l).
    resources = {}
    for item in (params.get("Resource_List") or "").split(","):
        key, _, value = item.strip().partition("=")
        if key:
            resources[key] = value
    if r.cores is not None:
        resources["nodes"] = f"1:ppn={r.cores}"
    if r.memory_mb is not None:
        resources["mem"] = f"{r.memory_mb}mb"
    if r.walltime is not None:
        resources["walltime"] = hms(r.walltime)
    text = ",".join(f"{k}={v}" if v else k for k, v in resources.items())
    return {"Resource_List": text}, []


def _grid_engine(spec, params, r: Resources):
    tokens = shlex.split(params.get("nativeSpecification") or "")
    unmapped, slots = [], 1
    pe = next((i for i, t in enumerate(tokens[:-2]) if t == "-pe"), None)
    if pe is not None:
        if r.cores is not None:
            tokens[pe + 2] = str(r.cores)
        slots = _slots(tokens[pe + 2])
    elif r.cores is not None:
        unmapped.append("cores")  # slots need a parallel environment the admin named
    requests = []
    if r.memory_mb is not None:  # h_vmem is per slot
        requests.append(f"h_vmem={math.ceil(r.memory_mb / slots)}M")
    if r.walltime is not None:
        requests.append(f"h_rt={hms(r.walltime)}")
    if requests:
        tokens = _without_requests(tokens, {q.split("=")[0] for q in requests})
        tokens += ["-l", ",".join(requests)]
    return {"nativeSpecification": shlex.join(tokens)}, unmapped


def _slots(text: str) -> int:
    """A -pe slot range's upper end ("4", "2-8"); 1 if unreadable."""
    top = text.rsplit("-", 1)[-1]
    return int(top) if top.isdigit() and int(top) > 0 else 1


def _without(tokens: list, long_names: tuple, short_names: tuple) -> list:
    """tokens without these options and their values (--x=v, --x v, -c v, -cv)."""
    out, skip = [], False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token in long_names or token in short_names:
            skip = True
            continue
        if any(token.startswith(n + "=") for n in long_names):
            continue
        if any(token.startswith(n) and len(token) > len(n) for n in short_names):
            continue
        out.append(token)
    return out


def _without_requests(tokens: list, names: set) -> list:
    """tokens with `names` (h_vmem, h_rt) taken out of every `-l a=1,b=2` list."""
    out, i = [], 0
    while i < len(tokens):
        if tokens[i] == "-l" and i + 1 < len(tokens):
            kept = [q for q in tokens[i + 1].split(",") if q.split("=")[0] not in names]
            if kept:
                out += ["-l", ",".join(kept)]
            i += 2
            continue
        out.append(tokens[i])
        i += 1
    return out


_MAPPERS = {"local": _local, "slurm": _slurm, "pbs": _pbs, "drmaa": _grid_engine}
