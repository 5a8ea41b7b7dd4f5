"""Was a finished job an error? Judged by the tool's <stdio> rules as Galaxy judges it.

Galaxy's semantics (galaxy.tool_util.output_checker.check_output), kept exactly:
- exit-code rules are checked in order, then regex rules in order; each matching rule
  is noted at its level; fatal_oom stops the checking; fatal does not (later rules are
  still noted);
- a regex is searched (not anchored) case-insensitively, in stderr before stdout;
- the job failed when the highest level noted is fatal or fatal_oom (oom for the latter);
- with no rules at all Galaxy fails a job on any stderr, whatever its exit code. Tools of
  profile >= 16.04 without <stdio> get the rules "exit code != 0 is fatal" from the
  parser, so only legacy tools (Stdio.legacy_stderr) reach that case; a Stdio without
  rules and without legacy_stderr is read as those default rules.

We reimplement rather than call check_output: it needs Galaxy's ToolStdio objects, its
messages do not say which rule matched (we must, in `reason`), and it swallows an
invalid regex by calling the whole job a success; here such a rule is skipped and noted.
The tests compare both on a matrix of cases.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from muleteer.tools.model import ExitCodeRule, Level, RegexRule, Stdio

# Galaxy's StdioErrorLevel values: the order of severity.
_SEVERITY = {Level.LOG: 1.0, Level.QC: 1.1, Level.WARNING: 2.0, Level.FATAL: 3.0,
             Level.FATAL_OOM: 4.0}
_MATCH_SHOWN = 256      # Galaxy shows at most this much of a regex's match


@dataclass(frozen=True)
class Verdict:
    failed: bool
    reason: str | None = None          # the rule that failed the job, None when it did not
    oom: bool = False                  # failed by a fatal_oom rule
    warnings: tuple = ()               # (str, ...) what warning/log/qc rules noted


@dataclass(frozen=True)
class _Note:
    level: Level
    text: str


def default_rules() -> tuple:
    """Galaxy's rules for a tool of profile >= 16.04 without <stdio>: any exit code but 0."""
    return (ExitCodeRule(-math.inf, -1, Level.FATAL), ExitCodeRule(1, math.inf, Level.FATAL))


def check_rules(stdio: Stdio) -> None:
    """Raise ValueError (saying which) unless every regex rule compiles; for load time."""
    for number, rule in enumerate(stdio.regexes, 1):
        try:
            re.compile(rule.match, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"<stdio> regex {number} {rule.match!r} is not a valid regular "
                             f"expression: {exc}") from None
    for number, rule in enumerate(stdio.exit_codes, 1):
        if rule.low > rule.high:
            raise ValueError(f"<stdio> exit_code {number}: range {_range_text(rule)!r} is empty")


def judge(stdio: Stdio, exit_code: int | None, stdout: str, stderr: str) -> Verdict:
    """The verdict on a finished job; `exit_code` None (unknown) skips the exit-code rules,
    as Galaxy does."""
    exit_rules, regex_rules = stdio.exit_codes, stdio.regexes
    if not exit_rules and not regex_rules:
        if stdio.legacy_stderr:
            return _legacy(stderr)
        exit_rules = default_rules()

    notes: list[_Note] = []
    skipped: list[str] = []
    highest = 0.0
    if exit_code is not None:
        for rule in exit_rules:
            if rule.low <= exit_code <= rule.high:
                notes.append(_Note(rule.level, _exit_text(rule, exit_code)))
                highest = max(highest, _SEVERITY[rule.level])
                if highest >= _SEVERITY[Level.FATAL_OOM]:
                    break
    if highest < _SEVERITY[Level.FATAL_OOM]:
        for rule in regex_rules:
            highest = _check_regex(rule, stdout, stderr, notes, skipped, highest)
            if highest >= _SEVERITY[Level.FATAL_OOM]:
                break

    noted = tuple(skipped) + tuple(n.text for n in notes
                                   if _SEVERITY[n.level] < _SEVERITY[Level.FATAL])
    if highest < _SEVERITY[Level.FATAL]:
        return Verdict(failed=False, warnings=noted)
    # The first rule at the highest level noted is the one that decided.
    decisive = next(n for n in notes if _SEVERITY[n.level] == highest)
    return Verdict(failed=True, reason=decisive.text, oom=decisive.level == Level.FATAL_OOM,
                   warnings=noted)


def _legacy(stderr: str) -> Verdict:
    # Galaxy's legacy rule ignores the exit code, and counts whitespace as content.
    if stderr:
        first_line = stderr.strip().splitlines()[0][:_MATCH_SHOWN] if stderr.strip() else ""
        return Verdict(failed=True, reason="stderr is not empty (legacy tool: profile < 16.04 "
                       f"without <stdio>, any stderr is fatal): {first_line!r}")
    return Verdict(failed=False)


def _check_regex(rule: RegexRule, stdout: str, stderr: str, notes: list, skipped: list,
                 highest: float) -> float:
    for stream_name, stream, wanted in (("stderr", stderr, rule.stderr),
                                        ("stdout", stdout, rule.stdout)):
        if not wanted:
            continue
        try:
            found = re.search(rule.match, stream, re.IGNORECASE)
        except re.error as exc:
            skipped.append(f"<stdio> regex {rule.match!r} is invalid and was skipped: {exc}")
            return highest
        if found:
            notes.append(_Note(rule.level, _regex_text(rule, found, stream_name)))
            highest = max(highest, _SEVERITY[rule.level])
            if highest >= _SEVERITY[Level.FATAL_OOM]:
                return highest
    return highest


def _exit_text(rule: ExitCodeRule, exit_code: int) -> str:
    description = f": {rule.description}" if rule.description else ""
    return (f"exit code {exit_code} (rule: {_range_text(rule)} is "
            f"{rule.level.value}{description})")


def _regex_text(rule: RegexRule, found: re.Match, stream_name: str) -> str:
    description = rule.description
    if description:
        try:
            # Galaxy lets a description use the match's groups (\1, \g<name>).
            description = found.expand(description)
        except (re.error, IndexError):
            pass
    shown = found.group(0)
    shown = shown if len(shown) <= _MATCH_SHOWN else shown[:_MATCH_SHOWN] + "..."
    detail = f": {description}" if description else ""
    return f"{stream_name} matched {rule.match!r} ({rule.level.value}{detail}): {shown!r}"


def _range_text(rule: ExitCodeRule) -> str:
    low, high = rule.low, rule.high
    if math.isinf(low) and math.isinf(high):
        return "any exit code"
    if math.isinf(high):
        return f"exit code {_number(low)} and above"
    if math.isinf(low):
        return f"exit code {_number(high)} and below"
    if low == high:
        return f"exit code {_number(low)}"
    return f"exit codes {_number(low)} to {_number(high)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
