"""<resubmit> rules: whether a failed job goes to another destination instead of `error`,
and how long it waits first.

Conditions are Galaxy's expressions over a few names, e.g. `walltime_reached`,
`memory_limit_reached or unknown_error`, `any_failure and attempt < 3`; a delay is a
number of seconds or an expression such as `attempt * 30`. They are read from the rules
stored WITH the job (not from memory), so the second and third resubmissions follow them
too, across restarts. The job configuration checks every expression at load (check()).
"""
from __future__ import annotations

import ast
import operator

_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv}
# The names a condition may use; a delay may use `attempt` only.
FACTS = ("walltime_reached", "memory_limit_reached", "unknown_error", "any_failure", "attempt")


def evaluate(condition: str, facts: dict) -> bool:
    """Evaluate a condition with only names, numbers, and/or/not and comparisons."""
    return bool(_value(condition, facts))


def _value(condition: str, facts: dict):
    """Names, numbers, and/or/not, comparisons and + - * /, nothing else."""
    def value(node):
        if isinstance(node, ast.BoolOp):
            results = [value(v) for v in node.values]
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not value(node.operand)
        if isinstance(node, ast.Compare):
            left = value(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = value(right_node)
                if type(op) not in _COMPARE or not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Name):
            if node.id not in facts:
                raise ValueError(f"unknown name {node.id!r} in resubmit condition {condition!r}")
            return facts[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise ValueError(f"resubmit expression {condition!r}: only names, numbers, and/or/not, "
                         "comparisons and + - * / are allowed")

    try:
        return value(ast.parse(str(condition), mode="eval").body)
    except SyntaxError as exc:
        raise ValueError(f"resubmit expression {condition!r}: {exc.msg}") from None
    except ZeroDivisionError:
        raise ValueError(f"resubmit expression {condition!r}: division by zero") from None


def check(condition: str, delay=None) -> None:
    """Raise ValueError (saying what) unless the condition and delay can be evaluated."""
    sample = {name: 1 if name == "attempt" else True for name in FACTS}
    _value(condition, sample)
    if delay is not None:
        delay_seconds(delay, attempt=1)


def delay_seconds(delay, attempt: int) -> float:
    """A rule's delay for the attempt that failed: a number, or an expression of `attempt`."""
    if delay in (None, ""):
        return 0.0
    if isinstance(delay, (int, float)) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        seconds = _value(delay, {"attempt": attempt})
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"resubmit delay {delay!r}: not a number of seconds")
    if seconds != seconds or seconds < 0 or seconds > 30 * 86400:
        raise ValueError(f"resubmit delay {delay!r}: {seconds} is not 0 to 30 days in seconds")
    return float(seconds)


def matching_rule(job, reason: str | None) -> dict | None:
    """The first rule stored with the job whose condition holds for this failure, or None."""
    facts = {"walltime_reached": reason == "walltime_reached",
             "memory_limit_reached": reason == "memory_limit_reached",
             "unknown_error": reason is None, "any_failure": True,
             "attempt": job.attempt or 1}
    for rule in job.resubmit:
        try:
            if evaluate(rule["condition"], facts):
                return rule
        except ValueError:
            continue
    return None
