"""Galaxy's dynamic destinations: Python functions of the admin's (rules) that choose where a
job runs, called by its handler when it starts the job.

A destination with runner="dynamic" names a function (param `function`) of a rules
directory (param `rules_module`, else the `dynamic` plugin's `rules_module`, else `job_rules/`
beside the job configuration). Every `*.py` file there whose name does not start with "_" is
imported once per process, when the job configuration loads, in name order; a function
defined in several files is the last one's (Galaxy's overrides: 000_site.py, 100_local.py).
A file that does not import, a missing function, or a function asking for an argument
nobody gives stops start-up, naming the files and lines.

A rule asks for what it needs by naming its arguments, as in Galaxy (RULE_ARGUMENTS, and
any param of its destination by name) and returns a destination id (or tag) of the job
configuration, or a JobDestination with params over that destination's own. A rule that
raises, returns something else, or does not return within RULE_TIMEOUT fails that job
with its message; the handler goes on. A rule returning another dynamic destination is
followed, at most MAX_CHAIN times.
"""
from __future__ import annotations

import copy
import hashlib
import json
import importlib.util
import inspect
import os
import sys
import threading
import traceback
import types
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

from muleteer.job_resources import chosen_resources

RULE_TIMEOUT = 10.0  # seconds a rule may take; the handler waits for it meanwhile
MAX_CHAIN = 8
MAX_MESSAGE = 2000
# What a rule may ask for by name (besides its destination's params).
RULE_ARGUMENTS = ("job_id", "job", "tool_id", "tool", "params", "user_email", "roles",
                  "input_datasets", "input_size", "resource_params", "referrer")


# -- for rule authors ---------------------------------------------------------------------------
class JobMappingException(Exception):
    """Raise it in a rule to fail the job with `failure_message` (Galaxy's name and form)."""

    def __init__(self, failure_message: str):
        super().__init__(failure_message)
        self.failure_message = failure_message


@dataclass(frozen=True)
class JobDestination:
    """What a rule may return besides a destination id: a destination of the job
    configuration (`id`, or a tag) with `params` set over its own (Galaxy's JobDestination;
    `runner`, if given, must be that destination's)."""
    id: str
    params: dict = field(default_factory=dict)
    runner: str | None = None


@dataclass(frozen=True)
class InputDataset:
    """A dataset the job reads: its param's flat path, id, size in bytes and format."""
    name: str
    id: int
    size: int
    format: str


# -- errors ----------------------------------------------------------------------------------------
class RulesError(ValueError):
    """A rules directory or a rule cannot be used (a start-up error; says file and line)."""


class RuleFailed(Exception):
    """A rule failed for one job; the message is that job's info."""


# -- loading -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    name: str
    function: Callable = field(compare=False, repr=False)
    path: str
    line: int
    arguments: tuple  # the names it can be given
    required: tuple   # those without a default

    def __str__(self) -> str:
        return f"rule {self.name!r} ({self.path}, line {self.line})"


@dataclass(frozen=True)
class RuleSet:
    directory: str
    rules: dict  # name -> Rule

    def get(self, name: str) -> Rule | None:
        return self.rules.get(name)


_loaded: dict[str, RuleSet] = {}
_load_lock = threading.Lock()


def load_rules(directory: str) -> RuleSet:
    """The rules of a directory, imported once per process (later calls get the same)."""
    real = os.path.realpath(directory)
    with _load_lock:
        if real not in _loaded:
            _loaded[real] = _import(directory, real)
        return _loaded[real]


def _import(directory: str, real: str) -> RuleSet:
    if not os.path.isdir(real):
        raise RulesError(f"{directory}: no such directory of rules (.py files)")
    # The directory is a package of its own, so its files may import each other (from . import x).
    package = "_muleteer_rules_" + hashlib.sha256(real.encode()).hexdigest()[:16]
    if package not in sys.modules:
        module = types.ModuleType(package)
        module.__path__ = [real]
        sys.modules[package] = module
    rules: dict[str, Rule] = {}
    for name in sorted(os.listdir(real)):
        if not name.endswith(".py") or name.startswith(("_", ".")):
            continue
        path = os.path.join(real, name)
        module = _import_file(f"{package}.{name[:-3]}", path, real)
        for attr, value in vars(module).items():
            if not attr.startswith("_") and inspect.isfunction(value):
                rules[attr] = _rule(attr, value, path)
    return RuleSet(directory, rules)


def _import_file(module_name: str, path: str, directory: str):
    if module_name in sys.modules:  # imported already by a file before it
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # a rule file's sys.exit() is its error too
        del sys.modules[module_name]
        raise RulesError(f"{_where(exc, directory) or path}: {_describe(exc)}") from None
    return module


def _rule(name: str, function, path: str) -> Rule:
    code = function.__code__
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        parameters = ()
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in parameters
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY,
                                                       p.POSITIONAL_ONLY)]
    return Rule(name=name, function=function, path=code.co_filename or path,
                line=code.co_firstlineno, arguments=tuple(p.name for p in named),
                required=tuple(required))


def check_rule(rule: Rule, destination_params: dict) -> None:
    """RulesError if the rule asks, without a default, for something nobody gives it."""
    # A positional-only argument cannot be given by name: missing whatever it is called.
    missing = [n for n in rule.required if n not in rule.arguments
               or n not in RULE_ARGUMENTS and n not in destination_params]
    if missing:
        raise RulesError(f"{rule} asks for {', '.join(missing)}, which Muleteer does not give "
                         f"(a rule may ask for {', '.join(RULE_ARGUMENTS)}, and for any param "
                         "of its destination)")


def rule_of(destination) -> Rule:
    """The rule a dynamic destination names (its rules were loaded with the configuration)."""
    params = destination.params
    try:
        rule = load_rules(params["rules_module"]).get(params["function"])
    except (KeyError, RulesError) as exc:
        raise RuleFailed(f"dynamic destination {destination.id!r}: {exc}") from None
    if rule is None:
        raise RuleFailed(f"dynamic destination {destination.id!r}: no rule "
                         f"{params['function']!r} in {params['rules_module']}")
    return rule


# -- what a rule is told ------------------------------------------------------------------------------
class JobFacts:
    """What a rule may ask about its job; each read from the store only when a rule asks for
    it (as Galaxy loads the job only for rules that name it)."""

    def __init__(self, job, store=None, tools=None, admin_users: str = ""):
        self.job = job
        self._store, self._tools = store, tools
        self._admins = {e.strip().lower() for e in (admin_users or "").split(",") if e.strip()}

    def value(self, name: str, referrer):
        return referrer if name == "referrer" else getattr(self, name)

    @property
    def job_id(self) -> int:
        return self.job.id

    @property
    def tool_id(self) -> str:
        return self.job.tool_id

    @property
    def params(self) -> dict:
        return copy.deepcopy(self.job.params)  # the rule's to change: the job's stay as sent

    @cached_property
    def tool(self):
        return self._tools.get(self.job.tool_id, self.job.tool_version) if self._tools else None

    @cached_property
    def _owner(self) -> tuple:
        if self._store is None or self.job.user_id is None:
            return None, False
        from sqlalchemy import select
        from muleteer.models import galaxy_user
        with self._store.engine.connect() as conn:
            row = conn.execute(select(galaxy_user.c.email, galaxy_user.c.is_admin)
                               .where(galaxy_user.c.id == self.job.user_id)).first()
        if row is None:
            return None, False
        return row.email, bool(row.is_admin) or row.email.strip().lower() in self._admins

    @property
    def user_email(self) -> str | None:
        from muleteer.models import ANONYMOUS_EMAIL_DOMAIN
        email = self._owner[0]
        # Galaxy gives an anonymous user's rule no user at all.
        return None if email is None or email.endswith(ANONYMOUS_EMAIL_DOMAIN) else email

    @property
    def roles(self) -> list:
        return ["admin"] if self._owner[1] else []

    @cached_property
    def input_datasets(self) -> tuple:
        if self._store is None:
            return ()
        found = []
        for link in self._store.job_datasets(job_id=self.job.id):
            dataset = self._store.get_dataset(link["dataset_id"]) if link["role"] == "input" else None
            if dataset is not None:
                found.append(InputDataset(link["name"], dataset.id, dataset.size, dataset.format))
        return tuple(found)

    @property
    def input_size(self) -> int:
        return sum(d.size for d in self.input_datasets)

    @property
    def resource_params(self) -> dict:
        return chosen_resources(self.job.params)


def arguments(rule: Rule, destination, facts: JobFacts) -> dict:
    """What the rule asked for: its destination's params first (as Galaxy), then facts."""
    given = {}
    for name in rule.arguments:
        if name in destination.params:
            given[name] = destination.params[name]
        elif name in RULE_ARGUMENTS:
            given[name] = facts.value(name, destination)
    return given


# -- calling -------------------------------------------------------------------------------------------
_late: dict[tuple, threading.Thread] = {}  # (file, name) -> the call that did not return in time
_late_lock = threading.Lock()


def call_rule(rule: Rule, given: dict, timeout: float = RULE_TIMEOUT):
    """The rule's answer; RuleFailed if it raised or took longer than `timeout`. A rule that
    did not return in time is not called again until that call returns: a hung rule costs
    the handler one timeout, not one per job."""
    key = (rule.path, rule.name)
    with _late_lock:
        late = _late.get(key)
        if late is not None and late.is_alive():
            raise RuleFailed(f"{rule} has not returned from an earlier call that took over "
                             f"{timeout:g} s; it is not called until that call returns")
        _late.pop(key, None)
    outcome: dict = {}
    done = threading.Event()

    def run():
        try:
            outcome["value"] = rule.function(**given)
        except BaseException as exc:  # a rule's sys.exit() fails its job, not the handler
            outcome["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, name=f"rule-{rule.name}", daemon=True)
    thread.start()
    if not done.wait(timeout):
        with _late_lock:
            _late[key] = thread
        raise RuleFailed(f"{rule} did not return within {timeout:g} s")
    if "error" in outcome:
        raise RuleFailed(_failure(rule, outcome["error"]))
    return outcome["value"]


def _failure(rule: Rule, exc: BaseException) -> str:
    """The job's info: a JobMappingException's message as it is (Galaxy's); else what failed
    where, with the file named within its rules directory (users read it too)."""
    if isinstance(exc, JobMappingException):
        return _bounded(str(exc.failure_message))
    directory = os.path.dirname(rule.path)
    where = _where(exc, directory, relative=True) or \
        f"{os.path.basename(rule.path)}, line {rule.line}"
    return _bounded(f"rule {rule.name!r} failed ({where}): {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where(exc: BaseException, directory: str, relative: bool = False) -> str | None:
    """"file, line N" of the deepest place in `directory` the exception passed through."""
    if isinstance(exc, SyntaxError) and exc.filename:
        found = (exc.filename, exc.lineno)
    else:
        inside = [f for f in traceback.extract_tb(exc.__traceback__)
                  if os.path.realpath(f.filename).startswith(os.path.realpath(directory) + os.sep)]
        if not inside:
            return None
        found = (inside[-1].filename, inside[-1].lineno)
    name = os.path.relpath(os.path.realpath(found[0]), os.path.realpath(directory)) \
        if relative else found[0]
    return f"{name}, line {found[1]}"


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


# -- choosing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    destination: object  # the job configuration's Destination that runs the job
    params: dict         # the rule's params over that destination's own
    chain: tuple         # the dynamic destinations followed, in order


def choose(job_conf, destination, facts: JobFacts, timeout: float = RULE_TIMEOUT) -> Choice:
    """Follow `destination`'s rule (and any dynamic destination it returns) to the destination
    that runs the job; RuleFailed says why not."""
    chain, current, params = [], destination, {}
    while current.dynamic:
        if len(chain) == MAX_CHAIN:
            raise RuleFailed(f"dynamic destinations chained more than {MAX_CHAIN} times: "
                             f"{' -> '.join(chain + [current.id])}")
        chain.append(current.id)
        rule = rule_of(current)
        ref, params, runner = _answer(rule, call_rule(rule, arguments(rule, current, facts), timeout))
        try:
            target = job_conf.resolve_destination(ref)
        except KeyError:
            raise RuleFailed(f"{rule} returned {ref!r}, which is not a destination id or tag of "
                             f"{job_conf.path}") from None
        if runner is not None and runner != target.runner:
            raise RuleFailed(f"{rule} returned destination {target.id!r} with runner {runner!r}; "
                             f"its runner is {target.runner!r}")
        if params and target.dynamic:
            raise RuleFailed(f"{rule} returned params for {target.id!r}, a dynamic destination: "
                             "params go with the destination that runs the job")
        current = target
    return Choice(current, params, tuple(chain))


def checked_params(choice: Choice, spec) -> dict:
    """The chosen params, typed as the destination's runner (`spec`, its RunnerSpec) declares
    them, as the job configuration's own would be; a param it does not declare is kept, as
    in the job configuration, if it can be stored. RuleFailed names the param at fault."""
    checked = {}
    for name, value in choice.params.items():
        param = spec.destination_param(name) if spec else None
        try:
            checked[name] = param.coerce(value) if param else value
            json.dumps(checked[name])
        except (ValueError, TypeError) as exc:
            shown = repr(value)
            raise RuleFailed(f"dynamic destination {choice.chain[-1]!r} set {name}="
                             f"{shown if len(shown) <= 80 else shown[:77] + '...'} on destination "
                             f"{choice.destination.id!r}: {exc}") from None
    return checked


def _answer(rule: Rule, result) -> tuple:
    """(destination id or tag, params, runner or None) of what a rule returned."""
    if isinstance(result, str) and result.strip():
        if "://" in result:
            raise RuleFailed(f"{rule} returned the runner URL {result[:200]!r}: return the id of "
                             "a destination of the job configuration")
        return result.strip(), {}, None
    if isinstance(result, JobDestination) and isinstance(result.id, str) and result.id.strip():
        if not isinstance(result.params, dict) or not all(isinstance(k, str) for k in result.params):
            raise RuleFailed(f"{rule} returned a JobDestination whose params are not a mapping "
                             "of names to values")
        return result.id.strip(), dict(result.params), result.runner
    shown = repr(result)
    shown = shown if len(shown) <= 100 else shown[:97] + "..."
    raise RuleFailed(f"{rule} returned {shown} ({type(result).__name__}): expected a destination "
                     "id or a JobDestination(id=..., params={...})")
