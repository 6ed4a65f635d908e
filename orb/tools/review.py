"""The orb-tools review rules (RC001-RC012 of CircleCI-Public/orb-tools-orb's
`review.bats`) as checks of our own, plus berth's rules for its orb (BR...).
Each rule reads `orb/src`; a failure prints the rule, the file and what to do.

Differences from orb-tools, all stricter or offline:
- RC004 is checked (orb-tools' version cannot fail);
- RC006/RC007 check that the URLs are https URLs of a host; orb-tools also
  fetches them, which needs the network (the project's CircleCI pipeline runs
  orb-tools' own review job for that);
- RC010 also checks examples and rejects anything but snake_case;
- RC011 compares the examples' `berth@X.Y` with the crate's version, on every
  run, not only on release tags.

Usage: python review.py [SRC] [CARGO_TOML]
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
INCLUDE = re.compile(r"^<<\s*include\(scripts/[^()]+\)\s*>>$")
TYPED_ENV = re.compile(r"^ORB_(STR|BOOL|INT|ENUM)_[A-Z0-9_]+$")
PARAMETER = re.compile(r"<<\s*parameters\.([a-z0-9_]+)\s*>>")
MAX_COMMAND_LENGTH = 64
ORB_NAME = "berth-dev/berth"

Rule = Callable[[Path], Iterator[str]]
RULES: list[tuple[str, str, Rule]] = []


def rule(code: str, title: str):
    def register(check: Rule) -> Rule:
        RULES.append((code, title, check))
        return check

    return register


def load(path: Path):
    return yaml.safe_load(path.read_text()) or {}


def components(src: Path, *folders: str) -> Iterator[tuple[Path, dict]]:
    for folder in folders:
        for path in sorted((src / folder).glob("*.yml")):
            yield path, load(path)


def run_steps(node, where: str = "") -> Iterator[tuple[str, object]]:
    """Every `run` step, nested ones (`when`, `unless`, `steps`) included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run":
                yield f"{where}.run", value
            yield from run_steps(value, f"{where}.{key}")
    elif isinstance(node, list):
        for n, item in enumerate(node):
            yield from run_steps(item, f"{where}[{n}]")


def strings(node, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for n, item in enumerate(node):
            yield from strings(item, f"{where}[{n}]")
    elif isinstance(node, str):
        yield where, node


def rel(path: Path, src: Path) -> str:
    return str(path.relative_to(src.parent))


def https_url(value) -> bool:
    return (
        isinstance(value, str)
        and re.match(r"^https://[a-z0-9.-]+\.[a-z]{2,}(/\S*)?$", value) is not None
    )


@rule("RC001", "Include source_url in @orb.yml")
def rc001(src: Path):
    if not (load(src / "@orb.yml").get("display") or {}).get("source_url"):
        yield "@orb.yml: set `display.source_url`"


@rule(
    "RC002",
    "All components (jobs, commands, executors, examples) must have descriptions",
)
def rc002(src: Path):
    for path, body in components(src, "jobs", "examples", "commands", "executors"):
        if not str(body.get("description") or "").strip():
            yield f"{rel(path, src)}: add a `description`"


@rule("RC003", "All production-ready orbs should contain at least one usage example")
def rc003(src: Path):
    if not list((src / "examples").glob("*.yml")):
        yield "examples/: add a usage example"


@rule("RC004", "Usage example names should be descriptive")
def rc004(src: Path):
    for path in sorted((src / "examples").glob("*.yml")):
        if "example" in path.stem:
            yield f"{rel(path, src)}: name the example after what it shows, without `example`"


@rule("RC005", "Write a detailed orb description")
def rc005(src: Path):
    if len(str(load(src / "@orb.yml").get("description") or "")) < 64:
        yield "@orb.yml: the description is under 64 characters"


@rule("RC006", "Source URL should be valid")
def rc006(src: Path):
    url = (load(src / "@orb.yml").get("display") or {}).get("source_url")
    if not https_url(url):
        yield f"@orb.yml: `display.source_url` `{url}` is not an https URL"


@rule("RC007", "Home URL should be valid")
def rc007(src: Path):
    url = (load(src / "@orb.yml").get("display") or {}).get("home_url")
    if url is not None and not https_url(url):
        yield f"@orb.yml: `display.home_url` `{url}` is not an https URL"


@rule("RC008", "All Run steps should contain a name")
def rc008(src: Path):
    for path, body in components(src, "jobs", "commands"):
        for where, run in run_steps(body.get("steps")):
            if not isinstance(run, dict):
                yield f"{rel(path, src)} steps{where}: write the run step as a map with `name` and `command`"
            elif not str(run.get("name") or "").strip():
                yield f"{rel(path, src)} steps{where}: give the run step a `name`"


@rule("RC009", "Complex Run step's commands should be imported")
def rc009(src: Path):
    for path, body in components(src, "jobs", "commands"):
        for where, run in run_steps(body.get("steps")):
            command = run.get("command", "") if isinstance(run, dict) else str(run)
            if len(command) > MAX_COMMAND_LENGTH and not INCLUDE.match(command.strip()):
                yield f"{rel(path, src)} steps{where}: move the command to src/scripts/ and `<<include(...)>>` it"


@rule(
    "RC010",
    "All components (jobs, commands, executors, examples) should be snake_cased",
)
def rc010(src: Path):
    for path, body in components(src, "jobs", "commands", "executors", "examples"):
        if not SNAKE.match(path.stem):
            yield f"{rel(path, src)}: name the file in snake_case"
        for name in body.get("parameters") or {}:
            if not SNAKE.match(name):
                yield f"{rel(path, src)}: parameter `{name}` is not snake_case"


@rule("RC011", "Ensure usage examples showcase current major version of the orb")
def rc011(src: Path, cargo: Path | None = None):
    version = crate_version(cargo)
    # 0.x releases break on the minor, as Cargo treats them: the examples pin `0.<minor>`.
    major, minor = version.split(".")[:2]
    wanted = f"{major}.{minor}" if major == "0" else major
    for path in sorted((src / "examples").glob("*.yml")):
        pinned = str(
            ((load(path).get("usage") or {}).get("orbs") or {}).get("berth", "")
        )
        if not pinned.startswith(f"{ORB_NAME}@"):
            yield f"{rel(path, src)}: use the orb as `berth: {ORB_NAME}@{wanted}`"
            continue
        release = pinned.split("@", 1)[1]
        parts = release.split(".")
        shown = ".".join(parts[:2]) if parts[0] == "0" else parts[0]
        if shown != wanted:
            yield f"{rel(path, src)}: shows `{pinned}`, the current release line is `{wanted}` (berth {version})"


@rule(
    "RC012",
    "Incorrect usage of environment variables set as default parameter detected",
)
def rc012(src: Path):
    for path, body in components(src, "jobs", "commands", "executors"):
        for name, spec in (body.get("parameters") or {}).items():
            default = str((spec or {}).get("default", ""))
            if "$" not in default or default.endswith("$"):
                continue
            for where, value in strings(body):
                if name in value and where.endswith("key"):
                    yield f"{rel(path, src)} {where}: `{name}` defaults to an environment variable; keys are not expanded"


@rule("BR001", "The orb installs its own release by default")
def br001(src: Path, cargo: Path | None = None):
    version = crate_version(cargo)
    for path, body in components(src, "jobs", "commands"):
        spec = (body.get("parameters") or {}).get("version")
        if spec is not None and str(spec.get("default")) != version:
            yield f"{rel(path, src)}: `version` defaults to `{spec.get('default')}`, the crate is {version}"


@rule(
    "BR002",
    "Parameters reach scripts only as environment variables with a typed prefix, never evaluated",
)
def br002(src: Path):
    for path, body in components(src, "jobs", "commands"):
        for where, run in run_steps(body.get("steps")):
            if not isinstance(run, dict):
                continue
            if PARAMETER.search(str(run.get("command", ""))):
                yield f"{rel(path, src)} steps{where}: pass parameters through `environment`, not into `command`"
            for variable in run.get("environment") or {}:
                if not TYPED_ENV.match(variable):
                    yield f"{rel(path, src)} steps{where}: `{variable}` lacks a typed prefix (ORB_STR_, ORB_BOOL_, ...)"
    for script in sorted((src / "scripts").glob("*.sh")):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(^|[;&|(\s])(eval|source)\s", code) or re.search(
                r"(^|\s)\.\s+\S", code
            ):
                yield f"{rel(script, src)}:{number}: no `eval` or `source` in the orb's scripts"


@rule("BR003", "Every parameter of a command or job is used")
def br003(src: Path):
    for path, body in components(src, "jobs", "commands", "executors"):
        used = set(
            PARAMETER.findall(
                yaml.safe_dump({k: v for k, v in body.items() if k != "parameters"})
            )
        )
        for name in body.get("parameters") or {}:
            if name not in used and not (name == "executor" and body.get("executor")):
                yield f"{rel(path, src)}: parameter `{name}` is never used"


@rule("BR004", "The job `deploy` runs berth as the command `deploy` does")
def br004(src: Path):
    job = load(src / "jobs" / "deploy.yml")
    command = load(src / "commands" / "deploy.yml")
    job_runs = [run for _, run in run_steps(job.get("steps")) if isinstance(run, dict)]
    command_runs = [
        run for _, run in run_steps(command.get("steps")) if isinstance(run, dict)
    ]
    if job_runs[-1:] != command_runs:
        yield "jobs/deploy.yml: its last run step must be the `deploy` command's, unchanged"
    missing = set(command.get("parameters") or {}) - set(job.get("parameters") or {})
    if missing:
        yield f"jobs/deploy.yml: lacks the `deploy` command's parameters {sorted(missing)}"


def crate_version(cargo: Path | None) -> str:
    cargo = cargo or Path(__file__).resolve().parents[2] / "Cargo.toml"
    match = re.search(r'^version\s*=\s*"([^"]+)"', cargo.read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"review: no version in {cargo}")
    return match.group(1)


def review(src: Path, cargo: Path | None = None) -> list[str]:
    failures = []
    for code, title, check in RULES:
        try:
            found = list(
                check(src, cargo) if check.__code__.co_argcount == 2 else check(src)
            )
        except (OSError, yaml.YAMLError, AttributeError, TypeError) as err:
            found = [f"could not check: {err}"]
        for problem in found:
            failures.append(f"{code} ({title}): {problem}")
    return failures


def main(argv: list[str]) -> int:
    src = (
        Path(argv[1])
        if len(argv) > 1
        else Path(__file__).resolve().parent.parent / "src"
    )
    cargo = Path(argv[2]) if len(argv) > 2 else None
    failures = review(src, cargo)
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"review: {len(RULES)} rules, {len(failures)} problems", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
