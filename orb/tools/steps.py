r"""The `run` steps of one command of a packed orb, with its parameters put in as
CircleCI does: `<< parameters.NAME >>` becomes the value given (NAME=VALUE
arguments) or the parameter's default; booleans become 1 or 0; an escaped
`\<<` becomes `<<`. Prints a JSON
list of {name, environment, command}, for tests that run the orb's steps in a
shell as a CircleCI job would.

Usage: python steps.py ORB_YML COMMAND [NAME=VALUE ...]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

PARAMETER = re.compile(r"<<\s*parameters\.([a-z0-9_]+)\s*>>")


def resolve(orb: dict, command: str, given: dict[str, str]) -> list[dict]:
    body = orb["commands"][command]
    parameters = body.get("parameters") or {}
    unknown = set(given) - set(parameters)
    if unknown:
        raise SystemExit(f"steps: `{command}` has no parameters {sorted(unknown)}")
    values = {}
    for name, spec in parameters.items():
        if name in given:
            value = given[name]
        elif "default" in spec:
            value = spec["default"]
        else:
            raise SystemExit(f"steps: `{command}` needs the parameter `{name}`")
        if spec.get("type") == "boolean":
            value = "1" if str(value).lower() in ("1", "true") else "0"
        if spec.get("type") == "enum" and str(value) not in [
            str(v) for v in spec["enum"]
        ]:
            raise SystemExit(f"steps: `{name}` must be one of {spec['enum']}")
        values[name] = "" if value is None else str(value)

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


def main(argv: list[str]) -> int:
    orb = yaml.safe_load(Path(argv[1]).read_text())
    given = dict(arg.split("=", 1) for arg in argv[3:])
    json.dump(resolve(orb, argv[2], given), sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
