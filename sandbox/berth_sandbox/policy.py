"""Resource policies as AWS evaluates them for a caller from another account
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html):
a cross-account call is allowed only when the resource's policy has a
statement that allows the caller's principal the action on the resource, and
none that denies it. The sandbox reads `Effect`, `Principal`, `Action`,
`NotAction` and `Resource` with their wildcards. A statement with a
`Condition` never allows (the sandbox cannot tell that the condition holds)
and always denies: never kinder than AWS. The caller's own account needs no
resource policy; IAM's identity policies are not modelled.
"""

from __future__ import annotations

import fnmatch
import json


def _listed(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str) -> bool:
    # IAM's wildcards are `*` and `?`, case-insensitive for actions.
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def _principal(statement: dict, account: str, caller: str) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for name in _listed(principal.get("AWS")):
        if name in ("*", account, f"arn:aws:iam::{account}:root", caller):
            return True
    return False


def _action(statement: dict, action: str) -> bool:
    if "NotAction" in statement:
        return not any(_matches(p, action) for p in _listed(statement["NotAction"]))
    return any(_matches(p, action) for p in _listed(statement.get("Action")))


def _resource(statement: dict, resource: str) -> bool:
    # A repository policy may leave `Resource` out: it is the repository.
    if "Resource" not in statement:
        return True
    return any(fnmatch.fnmatchcase(resource, p) for p in _listed(statement["Resource"]))


def allows(policy: str | None, account: str, caller: str, action: str, resource: str) -> bool:
    """Whether `policy` lets `caller` (of `account`) do `action` on `resource`."""
    if not policy:
        return False
    try:
        statements = _listed(json.loads(policy).get("Statement"))
    except (ValueError, AttributeError):
        return False
    allowed = False
    for statement in statements:
        if not isinstance(statement, dict):
            continue
        applies = _principal(statement, account, caller) and _action(statement, action)
        if not applies or not _resource(statement, resource):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow" and "Condition" not in statement:
            allowed = True
    return allowed
