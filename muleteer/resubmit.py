"""<resubmit> rules: whether a failed job goes to another destination instead of `error`.

Conditions are Galaxy's expressions over a few names, e.g. `walltime_reached`,
`memory_limit_reached or unknown_error`, `any_failure and attempt < 3`. They are read
from the rules stored WITH the job (not from memory), so the second and third
resubmissions follow them too, across restarts.
"""
from __future__ import annotations

import ast
import json
import operator

_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}


def evaluate(condition: str, facts: dict) -> bool:
    """Evaluate a condition with only names, numbers, and/or/not and comparisons."""
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
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        raise ValueError(f"resubmit condition {condition!r}: only names, numbers, and/or/not "
                         "and comparisons are allowed")

    return bool(value(ast.parse(condition, mode="eval").body))


def matching_rule(job: dict, reason: str | None) -> dict | None:
    """The first stored rule whose condition holds for this failure, or None."""
    facts = {"walltime_reached": reason == "walltime_reached",
             "memory_limit_reached": reason == "memory_limit_reached",
             "unknown_error": reason is None, "any_failure": True,
             "attempt": job.get("attempt") or 1}
    for rule in json.loads(job.get("resubmit") or "[]"):
        try:
            if evaluate(rule["condition"], facts):
                return rule
        except (ValueError, SyntaxError):
            continue
    return None
