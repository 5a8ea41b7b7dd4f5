"""scripts/tool-test: run Galaxy tool wrappers' own <tests> against a Muleteer server over
HTTP, as planemo does against Galaxy.

For every tool XML under a folder: upload each test's inputs from the tool's test-data/,
submit the job with the test's params in Galaxy's flat form, wait for it, and check it the
way Galaxy's test framework does. The parsing and the comparisons are Galaxy's own
(galaxy-tool-util): tests are read with `parse_tool_test_descriptions` (which knows the
tool's inputs, so it tells data values from text and expands conditionals and repeats),
outputs are compared with `verify()` and stdout/stderr with `verify_job_metadata()`.

Part of the core package: it imports requests and galaxy.tool_util, never flask, app/ or
mules/.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Protocol, TextIO

DEFAULT_JOBS = 4
DEFAULT_TIMEOUT = 300.0
POLL_SECONDS = 0.5
REQUEST_TIMEOUT = 60.0
TERMINAL_STATES = frozenset({"ok", "error", "deleted"})
DETAIL_LINES = 15  # lines of a failure's detail (a diff, stderr) printed under FAIL


class UsageError(Exception):
    """A bad command line, a folder without tools, or a server that cannot be used: exit 2."""


# -- what a test needs, from the wrapper ------------------------------------------------
@dataclass(frozen=True)
class Upload:
    """One test-data file to upload: once per (file, format, name) per run."""
    fname: str              # as the test names it, relative to test-data/
    ftype: str | None       # the test's ftype="..."; None: the server guesses
    name: str               # the dataset's name (the file's, or an edit_attributes rename)


@dataclass(frozen=True)
class DataRef:
    """A data value in a test's params, before its upload has an id."""
    upload: Upload


@dataclass
class TestCase:
    tool_id: str
    tool_version: str
    number: int                          # from 1, like planemo
    test_dir: Path                       # the tool's test-data/
    description: Any                     # galaxy's ToolTestDescription
    uploads: tuple[Upload, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)  # flat; data values are DataRef
    skip_reason: str | None = None       # uses what the server cannot do
    problem: str | None = None           # the test itself is broken: it fails unrun

    @property
    def label(self) -> str:
        return f"{self.tool_id} test {self.number}"


def find_tool_files(tool_dir: Path) -> list[Path]:
    """Tool XML files under tool_dir, recursively, sorted; macro files (root not <tool>)
    and everything under a test-data/ folder are left out."""
    found = []
    for path in sorted(Path(tool_dir).rglob("*.xml")):
        if "test-data" in path.relative_to(tool_dir).parts[:-1] or not path.is_file():
            continue
        if _root_tag(path) == "tool":
            found.append(path)
    return found


def _root_tag(path: Path) -> str | None:
    try:
        for _event, elem in ET.iterparse(path, events=("start",)):
            return elem.tag
    except (ET.ParseError, OSError):
        return None  # not XML we can read: not a tool (get_tool_source would fail too)
    return None


def load_cases(tool_path: Path) -> list[TestCase]:
    """The tests of one tool XML, ready to run (or marked to skip or fail)."""
    from galaxy.tool_util.parser import get_tool_source
    from galaxy.tool_util.verify.parse import parse_tool_test_descriptions

    tool_source = get_tool_source(str(tool_path))
    multiple = multiple_shapes(tool_source)
    test_dir = Path(tool_path).parent / "test-data"
    return [plan_case(d, test_dir, multiple) for d in parse_tool_test_descriptions(tool_source)]


def multiple_shapes(tool_source) -> set[str]:
    """Flat names of the tool's params with multiple="true" (data, select, data_column),
    repeat indexes left out ("queries|inputs2" for "queries_0|inputs2"): their values are
    always sent as lists, even of one value."""
    shapes: set[str] = set()
    _walk_inputs(_top_input_sources(tool_source), "", shapes)
    return shapes


def _top_input_sources(tool_source) -> list:
    pages = tool_source.parse_input_pages()
    if not pages.inputs_defined:
        return []
    return [s for page in pages.page_sources for s in page.parse_input_sources()]


def _walk_inputs(sources: Iterable, prefix: str, shapes: set[str]) -> None:
    for source in sources:
        kind = source.parse_input_type()
        name = prefix + source.parse_name()
        if kind == "conditional":
            for _value, case in source.parse_when_input_sources():
                _walk_inputs(case.parse_input_sources(), name + "|", shapes)
        elif kind in ("repeat", "section"):
            _walk_inputs(source.parse_nested_inputs_source().parse_input_sources(),
                         name + "|", shapes)
        elif source.get_bool("multiple", False):
            shapes.add(name)


_REPEAT_INDEX = re.compile(r"_\d+$")


def param_shape(flat_name: str) -> str:
    """"queries_1|inputs2" -> "queries|inputs2": only the groups lose an index, not the
    param itself (a param may be called "input_1")."""
    *groups, leaf = flat_name.split("|")
    return "|".join([_REPEAT_INDEX.sub("", g) for g in groups] + [leaf])


def plan_case(description, test_dir: Path, multiple_shapes: set[str]) -> TestCase:
    """One parsed test -> what to upload and the flat params to submit."""
    from galaxy.tool_util.parser.interface import TestCollectionDef

    case = TestCase(tool_id=description.tool_id, tool_version=str(description.tool_version or ""),
                    number=description.test_index + 1, test_dir=Path(test_dir),
                    description=description)
    if description.error:
        case.problem = f"invalid test: {_last_line(description.exception) or 'parse failure'}"
        return case
    case.skip_reason = _unsupported(description)
    if case.skip_reason:
        return case

    uploads: dict[str, Upload] = {}  # by fname: a test names each file once
    for fname, extra in description.required_files:
        upload = Upload(fname=fname, ftype=extra.get("ftype") or None,
                        name=_renamed(extra) or Path(fname).name)
        uploads.setdefault(fname, upload)
        missing = _missing_file(test_dir, fname, "input")
        if missing:
            if extra.get("location"):
                case.skip_reason = (f"input {fname} is only at a URL (location=); "
                                    "tool-test does not download inputs")
                return case
            case.problem = missing
            return case
    case.uploads = tuple(dict.fromkeys(uploads.values()))

    for output in description.outputs:
        missing = output.get("value") and _missing_file(test_dir, output["value"], "expected")
        if missing:
            case.problem = f"output {output['name']!r}: {missing}"
            return case

    params: dict[str, Any] = {}
    for key, value in description.inputs.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, TestCollectionDef) for v in values):
            case.skip_reason = f"input {key} is a collection (the server has no collections)"
            return case
        refs = [DataRef(uploads[v]) if isinstance(v, str) and v in uploads else v for v in values]
        if param_shape(key) in multiple_shapes:
            params[key] = refs
        elif len(refs) == 1:
            # Galaxy's own legacy submission flattens single values the same way.
            params[key] = refs[0]
        else:
            params[key] = refs
    case.params = params
    return case


def _unsupported(description) -> str | None:
    """Why the server cannot run this test, or None."""
    if description.output_collections:
        return "it checks output collections (the server has no collections)"
    for fname, extra in description.required_files:
        if extra.get("composite_data"):
            return f"input {fname} is a composite dataset (the server has none)"
        if str(extra.get("class", "File")).lower() == "directory":
            return f"input {fname} is a directory (the server uploads files only)"
    if description.required_data_tables or description.required_loc_files:
        return "it needs reference data (data tables or .loc files)"
    for output in description.outputs:
        attrs = output.get("attributes") or {}
        name = output.get("name")
        if attrs.get("primary_datasets") or any(attrs.get(k) is not None
                                                for k in ("count", "min", "max")):
            return f"output {name} checks discovered datasets (the server has none)"
        if attrs.get("extra_files"):
            return f"output {name} checks extra files of a composite output (the server has none)"
    return None


def _renamed(extra: Mapping) -> str | None:
    for edit in extra.get("edit_attributes") or []:
        if edit.get("type") == "name" and edit.get("value"):
            return edit["value"]
    return None


def _missing_file(test_dir: Path, fname: str, what: str) -> str | None:
    """Why test-data/fname cannot be used, or None."""
    path = (test_dir / fname).resolve()
    if not path.is_relative_to(test_dir.resolve()):
        return f"{what} file {fname!r} is outside {test_dir}"
    if not path.is_file():
        return f"{what} file {test_dir / fname} is missing"
    return None


def resolve_params(params: Mapping[str, Any], ids: Mapping[Upload, int]) -> dict[str, Any]:
    """Flat params with each DataRef replaced by Galaxy's {"src": "hda", "id": N}."""
    def one(value):
        return {"src": "hda", "id": ids[value.upload]} if isinstance(value, DataRef) else value
    return {k: [one(v) for v in value] if isinstance(value, list) else one(value)
            for k, value in params.items()}


# -- HTTP -----------------------------------------------------------------------------
class ServerError(Exception):
    """An answer other than the expected one; `error` and `field` from the JSON body."""

    def __init__(self, what: str, status: int | None, error: str, field: str | None = None):
        self.what, self.status, self.error, self.field = what, status, error, field
        where = f" (field {field})" if field and field not in error else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{what}: {code}{error}{where}")


class Api(Protocol):
    """What a test run needs from the server; `Client` over HTTP, a fake in unit tests."""

    def check(self) -> None: ...
    def upload(self, path: Path, name: str, ftype: str | None) -> dict: ...
    def submit(self, payload: dict) -> dict: ...
    def job(self, job_id: int) -> dict: ...
    def job_text(self, job_id: int, stream: str) -> str: ...
    def display(self, dataset_id: int) -> bytes: ...
    def dataset(self, dataset_id: int) -> dict: ...


class Client:
    """Muleteer's API over requests; one session per thread (a Session is not thread-safe)."""

    def __init__(self, base_url: str, api_key: str | None, request_timeout: float = REQUEST_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.headers = {"x-api-key": api_key} if api_key else {}
        self.request_timeout = request_timeout
        self._local = threading.local()

    def _session(self):
        import requests
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers.update(self.headers)
        return session

    def _request(self, what: str, method: str, path: str, expect: tuple[int, ...], **kw):
        import requests
        url = f"{self.base_url}/api/{path}"
        try:
            response = self._session().request(method, url, timeout=self.request_timeout, **kw)
        except requests.RequestException as exc:
            raise ServerError(what, None, f"{method} {url} failed: {_network_reason(exc)}") from None
        if response.status_code not in expect:
            error, fld = _error_of(response)
            raise ServerError(what, response.status_code, error, fld)
        return response

    def check(self) -> None:
        """Raise UsageError if the server does not answer or refuses the key."""
        try:
            self._request("server check", "GET", "version", (200,))
            self._request("API key check", "GET", "users/current", (200, 404))
        except ServerError as exc:
            raise UsageError(f"cannot use the server at {self.base_url}: {exc}") from None

    def upload(self, path: Path, name: str, ftype: str | None) -> dict:
        data = {"name": name}
        if ftype:
            data["format"] = ftype
        with open(path, "rb") as fh:
            return self._request(f"upload of {path.name}", "POST", "datasets", (201, 200),
                                 files={"file": (name, fh)}, data=data).json()

    def submit(self, payload: dict) -> dict:
        return self._request("job submission", "POST", "jobs", (201, 200), json=payload).json()

    def job(self, job_id: int) -> dict:
        return self._request(f"job {job_id}", "GET", f"jobs/{job_id}", (200,)).json()

    def job_text(self, job_id: int, stream: str) -> str:
        return self._request(f"job {job_id} {stream}", "GET", f"jobs/{job_id}/{stream}",
                             (200,)).text

    def display(self, dataset_id: int) -> bytes:
        return self._request(f"dataset {dataset_id}", "GET", f"datasets/{dataset_id}/display",
                             (200,)).content

    def dataset(self, dataset_id: int) -> dict:
        return self._request(f"dataset {dataset_id}", "GET", f"datasets/{dataset_id}",
                             (200,)).json()


def _network_reason(exc) -> str:
    """requests' messages nest the cause deep: keep "[Errno 111] Connection refused"."""
    found = re.findall(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return found[-1] if found else f"{type(exc).__name__}: {_last_line(exc)[:200]}"


def _error_of(response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"]), body.get("field")
    text = (response.text or "").strip().splitlines()
    return (text[0][:200] if text else response.reason or "no body"), None


# -- running --------------------------------------------------------------------------
class Outcome(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass
class TestResult:
    tool_id: str
    number: int
    outcome: Outcome
    reason: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.tool_id} test {self.number}"

    def line(self) -> str:
        return f"{self.outcome.value} {self.label}" + (f": {self.reason}" if self.reason else "")


@dataclass
class Summary:
    results: list[TestResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def passed(self) -> int:
        return self.count(Outcome.PASS)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAIL)

    @property
    def skipped(self) -> int:
        return self.count(Outcome.SKIP)

    @property
    def exit_code(self) -> int:
        return 0 if self.failed == 0 else 1

    def line(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed"
        return text + (f", {self.skipped} skipped" if self.skipped else "")


class UploadCache:
    """Each (file, format, name) is uploaded once per run, whichever test asks first; a
    failed upload is remembered too, so every test needing it fails with the same reason."""

    def __init__(self, api: Api):
        self.api = api
        self._lock = threading.Lock()
        self._key_locks: dict[Upload, threading.Lock] = {}
        self._done: dict[Upload, int | ServerError] = {}

    def dataset_id(self, upload: Upload, test_dir: Path) -> int:
        with self._lock:
            key_lock = self._key_locks.setdefault(upload, threading.Lock())
        with key_lock:
            if upload not in self._done:
                try:
                    answer = self.api.upload(test_dir / upload.fname, upload.name, upload.ftype)
                    self._done[upload] = int(answer["id"])
                except ServerError as exc:
                    self._done[upload] = exc
            result = self._done[upload]
        if isinstance(result, ServerError):
            raise result
        return result


class JobTimeout(Exception):
    pass


def wait_for_job(api: Api, job_id: int, timeout: float, poll: float = POLL_SECONDS,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> dict:
    """The job once its state is ok, error or deleted; JobTimeout after `timeout` seconds.
    Bounded twice over: by the clock, and by a count of polls in case the clock stalls."""
    deadline = clock() + timeout
    job: dict = {}
    for _ in range(int(timeout / max(poll, 0.01)) + 2):
        job = api.job(job_id)
        if job.get("state") in TERMINAL_STATES:
            return job
        if clock() >= deadline:
            break
        sleep(poll)
    raise JobTimeout(f"job {job_id} still {job.get('state', '?')} after {timeout:g} s")


def run_case(api: Api, case: TestCase, uploads: UploadCache, timeout: float,
             poll: float = POLL_SECONDS) -> TestResult:
    """Run one test to its result; never raises for what the server or the tool did."""
    def result(outcome: Outcome, reason: str = "", details: list[str] | None = None):
        return TestResult(case.tool_id, case.number, outcome, reason, details or [])

    if case.problem:
        return result(Outcome.FAIL, case.problem)
    if case.skip_reason:
        return result(Outcome.SKIP, case.skip_reason)
    desc = case.description
    try:
        ids = {u: uploads.dataset_id(u, case.test_dir) for u in case.uploads}
    except ServerError as exc:
        return result(Outcome.FAIL, str(exc))
    payload = {"tool_id": case.tool_id, "tool_version": case.tool_version,
               "params": resolve_params(case.params, ids)}
    try:
        submitted = api.submit(payload)
    except ServerError as exc:
        if desc.expect_failure and exc.status is not None and 400 <= exc.status < 500:
            return result(Outcome.PASS)  # refused up front: Galaxy counts that as the failure
        return result(Outcome.FAIL, str(exc))
    job_id = submitted["id"]
    try:
        job = wait_for_job(api, job_id, timeout, poll)
        problems = check_job(api, case, job)
    except JobTimeout as exc:
        return result(Outcome.FAIL, str(exc))
    except ServerError as exc:
        return result(Outcome.FAIL, f"job {job_id}: {exc}")
    if desc.expect_test_failure:
        if problems:
            return result(Outcome.PASS)
        return result(Outcome.FAIL, "expected at least one check to fail, but all passed")
    if problems:
        first = problems[0].splitlines()
        reason = first[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
        details = first[1:] + [line for p in problems[1:] for line in p.splitlines()]
        return result(Outcome.FAIL, reason, details)
    return result(Outcome.PASS)


def check_job(api: Api, case: TestCase, job: dict) -> list[str]:
    """Every way the ended job differs from what the test expects, as Galaxy's
    _verify_outputs checks it (all checks run; each problem is one message)."""
    from galaxy.tool_util.verify import verify_job_metadata

    desc = case.description
    problems: list[str] = []
    state = job.get("state")
    job_id = job.get("id")
    outputs: dict = job.get("outputs") or {}

    if desc.expect_failure:
        if state != "error":
            problems.append(f"expected the job to fail, but it ended {state}")
    elif state != "ok":
        info = f": {job['info']}" if job.get("info") else ""
        stderr = _tail(api.job_text(job_id, "stderr"))
        problems.append(f"job {job_id} ended {state}{info}"
                        + "".join(f"\n  stderr: {line}" for line in stderr))

    if desc.num_outputs is not None and int(desc.num_outputs) != len(outputs):
        problems.append(f"expected {desc.num_outputs} outputs, found {len(outputs)} "
                        f"({', '.join(sorted(outputs)) or 'none'})")

    stdio = {"exit_code": job.get("exit_code"),
             "stdout": api.job_text(job_id, "stdout") if desc.stdout else "",
             "stderr": api.job_text(job_id, "stderr") if desc.stderr else "",
             "command_line": job.get("command_line") or ""}
    if desc.command_line and job.get("command_line") is None:
        problems.append("the test checks the command line, which the server shows only "
                        "with an admin's key")
    try:
        verify_job_metadata(stdio, expect_exit_code=desc.expect_exit_code,
                            stdout_assertions=desc.stdout, stderr_assertions=desc.stderr,
                            command_assertions=desc.command_line if job.get("command_line") else None,
                            command_version_assertions=None)
    except AssertionError as exc:
        problems.append(str(exc).strip() or "stdout/stderr/exit code check failed")

    if state == "ok":
        for output in desc.outputs:
            problem = check_output(api, case, output, outputs)
            if problem:
                problems.append(problem)
    return problems


def check_output(api: Api, case: TestCase, output: Mapping, job_outputs: Mapping) -> str | None:
    """One declared output against the job's dataset: its format, then Galaxy's verify()
    (diff with lines_diff, re_match, sim_size, contains, assertions, checksums...)."""
    from galaxy.tool_util.verify import verify

    name = output["name"]
    attributes = dict(output.get("attributes") or {})
    dataset = job_outputs.get(name)
    if dataset is None:
        return (f"the job has no output {name!r} "
                f"(it has: {', '.join(sorted(job_outputs)) or 'none'})")
    expected_ftype = attributes.get("ftype")
    if expected_ftype and dataset.get("format") != expected_ftype:
        return f"output {name}: format is {dataset.get('format')}, expected {expected_ftype}"
    if attributes.get("metadata"):
        problem = check_metadata(api.dataset(dataset["id"]), attributes)
        if problem:
            return f"output {name}: {problem}"
    content = api.display(dataset["id"])
    test_dir = case.test_dir
    try:
        verify(f"Output {name}", content, attributes=attributes, filename=output.get("value"),
               get_filename=lambda fname: str(test_dir / fname))
    except AssertionError as exc:
        text = str(exc).strip()
        return text if text.startswith("Output") else f"output {name}: {text}"
    return None


def check_metadata(dataset: Mapping, attributes: Mapping) -> str | None:
    """<output><metadata name="columns" value="3"/>: Galaxy's own comparison, over the
    dataset JSON put in the shape of Galaxy's (metadata_<name>, file_ext)."""
    from galaxy.tool_util.verify.interactor import (
        compare_expected_metadata_to_api_response, get_metadata_to_test)

    galaxy_shaped = {"name": dataset.get("name"), "file_ext": dataset.get("format"),
                     **{f"metadata_{k}": v for k, v in (dataset.get("metadata") or {}).items()}}
    try:
        compare_expected_metadata_to_api_response(get_metadata_to_test(attributes), galaxy_shaped)
    except Exception as exc:  # Galaxy raises a bare Exception here
        # Its message ends with the whole dataset JSON: keep what differs.
        return str(exc).split(". Dataset API value was")[0]
    return None


def _tail(text: str, lines: int = 3) -> list[str]:
    return [line for line in (text or "").strip().splitlines()[-lines:] if line.strip()]


def _last_line(text) -> str:
    lines = [line for line in str(text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# -- the run --------------------------------------------------------------------------
def collect_cases(tool_dir: Path, tool_id: str | None = None,
                  only: Collection[tuple[str, int]] | None = None) -> list[TestCase]:
    """Every test of every tool under tool_dir (only tool_id's, if given; only the
    (tool id, test index from 0, Galaxy's test_index) pairs in `only`, if given); a tool
    that cannot be loaded becomes one failing case, so it is reported, not fatal."""
    tool_dir = Path(tool_dir)
    if not tool_dir.is_dir():
        raise UsageError(f"tool folder {tool_dir} does not exist or is not a folder")
    tool_files = find_tool_files(tool_dir)
    if not tool_files:
        raise UsageError(f"no tool XML (root <tool>) under {tool_dir}")
    cases: list[TestCase] = []
    for path in tool_files:
        try:
            loaded = load_cases(path)
        except Exception as exc:  # galaxy's parser raises anything: report the tool
            file_id = _root_id(path) or path.name
            if tool_id is None or tool_id == file_id:
                cases.append(TestCase(tool_id=file_id, tool_version="", number=1,
                                      test_dir=path.parent / "test-data", description=None,
                                      problem=f"cannot load {path}: {_last_line(exc) or type(exc).__name__}"))
            continue
        cases.extend(c for c in loaded if tool_id is None or c.tool_id == tool_id)
    if tool_id is not None and not cases:
        raise UsageError(f"no tool with id {tool_id!r} and tests under {tool_dir}")
    if only is not None:
        wanted = {(t, int(i)) for t, i in only}
        cases = [c for c in cases if (c.tool_id, c.number - 1) in wanted]
        if not cases:
            raise UsageError(f"none of the {len(wanted)} selected tests is under {tool_dir}")
    return cases


def _root_id(path: Path) -> str | None:
    try:
        return ET.parse(path).getroot().get("id")
    except (ET.ParseError, OSError):
        return None


def run_tests(base_url: str, api_key: str | None, tool_dir, tool_id: str | None = None,
              jobs: int = DEFAULT_JOBS, timeout: float = DEFAULT_TIMEOUT, out: TextIO = sys.stdout,
              only: Collection[tuple[str, int]] | None = None, api: Api | None = None,
              poll: float = POLL_SECONDS) -> Summary:
    """Run the tests, printing one line per test as it ends and a final count. `only`:
    just these (tool id, test index from 0) pairs; `api`: another server client (unit
    tests' fake). Raises UsageError for no tools, an unknown tool id, or a server that
    cannot be used. (Galaxy's verify() leaves temp copies of compared files in the temp
    folder: main() gives the process its own; an in-process caller may too.)"""
    if jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {jobs}")
    if timeout <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, not {timeout:g}")
    cases = collect_cases(Path(tool_dir), tool_id, only)
    api = api or Client(base_url, api_key)
    api.check()
    uploads = UploadCache(api)
    summary = Summary()
    print_lock = threading.Lock()

    def report(result: TestResult) -> None:
        with print_lock:
            summary.results.append(result)
            out.write(result.line() + "\n")
            for line in result.details[:DETAIL_LINES]:
                out.write(f"    {line}\n")
            if len(result.details) > DETAIL_LINES:
                out.write(f"    ... ({len(result.details) - DETAIL_LINES} more lines)\n")
            out.flush()

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_case, api, c, uploads, timeout, poll): c for c in cases}
        for future in as_completed(futures):
            case = futures[future]
            try:
                report(future.result())
            except Exception as exc:  # a bug or an unexpected answer: one test fails, not the run
                report(TestResult(case.tool_id, case.number, Outcome.FAIL,
                                  f"{type(exc).__name__}: {_last_line(exc)}"))
    order = {(c.tool_id, c.number): i for i, c in enumerate(cases)}
    summary.results.sort(key=lambda r: order.get((r.tool_id, r.number), 0))
    out.write(summary.line() + "\n")
    out.flush()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tool-test",
        description="Run Galaxy tool wrappers' own <tests> against a Muleteer server.")
    parser.add_argument("url", help="the server, e.g. http://localhost:8080")
    parser.add_argument("tool_dir", type=Path, help="folder of tool XML files (searched recursively)")
    parser.add_argument("--key", default=os.environ.get("MULETEER_API_KEY"),
                        help="API key (default: $MULETEER_API_KEY)")
    parser.add_argument("--tool", dest="tool_id", help="only the tool with this id")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                        help=f"tests run at once (default {DEFAULT_JOBS})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for each test's job (default {DEFAULT_TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        with _own_temp_dir():
            summary = run_tests(args.url, args.key, args.tool_dir, tool_id=args.tool_id,
                                jobs=args.jobs, timeout=args.timeout)
    except UsageError as exc:
        print(f"tool-test: {exc}", file=sys.stderr)
        return 2
    return summary.exit_code


@contextmanager
def _own_temp_dir():
    """Galaxy's verify() leaves a temp copy of every output it compares (and of expected
    files) in the temp folder: the command line points the process's temp folder at one of
    its own and removes it at the end. (Only here, where the process is ours: run_tests,
    called in-process, leaves tempfile alone.)"""
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="tool-test-") as own:
        tempfile.tempdir = own
        try:
            yield
        finally:
            tempfile.tempdir = saved


if __name__ == "__main__":
    sys.exit(main())
