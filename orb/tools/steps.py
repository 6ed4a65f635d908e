r"""The `run` steps of one command of a packed orb, with its parameters put in as
CircleCI does: `<< parameters.NAME >>` becomes the value given (NAME=VALUE
arguments) or the parameter's default; booleans become 1 or 0; an escaped
`\<<` becomes `<<`. Prints a JSON
list of {name, environment, command}, for tests that run the orb's steps in a
shell as a CircleCI job would.

With `--job`, JOB's shape instead: its executor and its steps in order, each
`when`/`unless` decided as CircleCI decides it (`equal`, `and`, `or`, `not`, a
value that is true unless empty, false or 0), each step as {kind, name or
args}: for the tests of which steps a job runs with which parameters.

Usage: python steps.py ORB_YML COMMAND [NAME=VALUE ...]
       python steps.py ORB_YML --job JOB [NAME=VALUE ...]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

PARAMETER = re.compile(r"<<\s*parameters\.([a-z0-9_]+)\s*>>")


def values_of(owner: str, body: dict, given: dict[str, str]) -> dict[str, str]:
    """The value of each parameter of `owner` (a command or a job), given or default."""
    parameters = body.get("parameters") or {}
    unknown = set(given) - set(parameters)
    if unknown:
        raise SystemExit(f"steps: `{owner}` has no parameters {sorted(unknown)}")
    values = {}
    for name, spec in parameters.items():
        if name in given:
            value = given[name]
        elif "default" in spec:
            value = spec["default"]
        else:
            raise SystemExit(f"steps: `{owner}` needs the parameter `{name}`")
        if spec.get("type") == "boolean":
            value = "1" if str(value).lower() in ("1", "true") else "0"
        if spec.get("type") == "enum" and str(value) not in [
            str(v) for v in spec["enum"]
        ]:
            raise SystemExit(f"steps: `{name}` must be one of {spec['enum']}")
        values[name] = "" if value is None else str(value)
    return values


def resolve(orb: dict, command: str, given: dict[str, str]) -> list[dict]:
    body = orb["commands"][command]
    values = values_of(command, body, given)

    def put(text: str) -> str:
        return PARAMETER.sub(lambda m: values[m.group(1)], text)

    steps = []
    for step in body["steps"]:
        if isinstance(step, dict) and "run" in step:
            run = step["run"]
            steps.append(
                {
                    "name": put(run["name"]),
                    "environment": {
                        put(k): put(str(v))
                        for k, v in (run.get("environment") or {}).items()
                    },
                    "command": put(run["command"]).replace("\\<<", "<<"),
                }
            )
    return steps


def job(orb: dict, name: str, given: dict[str, str]) -> dict:
    body = orb["jobs"][name]
    values = values_of(name, body, given)

    def put(value):
        if isinstance(value, dict):
            return {k: put(v) for k, v in value.items()}
        if isinstance(value, list):
            return [put(v) for v in value]
        return PARAMETER.sub(lambda m: values[m.group(1)], str(value))

    def holds(condition) -> bool:
        if isinstance(condition, dict):
            (key, value), *_ = condition.items()
            if key == "equal":
                return len({put(v) for v in value}) == 1
            if key == "and":
                return all(holds(v) for v in value)
            if key == "or":
                return any(holds(v) for v in value)
            if key == "not":
                return not holds(value)
            raise SystemExit(f"steps: unknown condition `{key}`")
        return put(condition).lower() not in ("", "0", "false")

    def walk(steps) -> list[dict]:
        shape = []
        for step in steps:
            if isinstance(step, str):
                shape.append({"kind": step})
                continue
            (kind, args), *_ = step.items()
            if kind in ("when", "unless"):
                if holds(args["condition"]) == (kind == "when"):
                    shape.extend(walk(args["steps"]))
            elif kind == "run":
                shape.append({"kind": "run", "name": put(args["name"])})
            else:
                shape.append({"kind": kind, "args": put(args or {})})
        return shape

    return {"executor": put(body["executor"]), "steps": walk(body["steps"])}


def main(argv: list[str]) -> int:
    orb = yaml.safe_load(Path(argv[1]).read_text())
    if argv[2] == "--job":
        given = dict(arg.split("=", 1) for arg in argv[4:])
        json.dump(job(orb, argv[3], given), sys.stdout, indent=1)
        return 0
    given = dict(arg.split("=", 1) for arg in argv[3:])
    json.dump(resolve(orb, argv[2], given), sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
