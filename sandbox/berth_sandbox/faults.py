"""Fault and latency injection, and request counters, per AWS operation."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field

# drop: the connection is closed before the request is applied; lost: the
# request is applied, then the connection is closed without the response.
ERRORS = ("throttle", "500", "503", "drop", "lost", "denied")
# The calls kept per app id for `/_sandbox/trace`.
TRACE_LENGTH = 5000


@dataclass
class FaultRule:
    """Matches calls by service, operation and caller app id (`*` matches any;
    the app id is the caller's `AWS_SDK_UA_APP_ID`, so one test's faults do not
    hit another's calls).

    `body_contains`: match only calls whose request body holds this text (one
    service's `UpdateService` among several: `"service":"web"`).

    `first`: fail only the first k matching calls; `probability`: fail each
    matching call with probability p (seeded, so runs repeat). With neither,
    every matching call is affected. `latency_ms` is added to every matching
    call, whether or not it fails.
    """

    service: str = "*"
    operation: str = "*"
    app: str = "*"
    body_contains: str | None = None
    error: str | None = None
    first: int | None = None
    probability: float | None = None
    latency_ms: int = 0
    seed: int | None = None
    id: int = 0
    matched: int = 0
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.error is not None and self.error not in ERRORS:
            raise ValueError(f"error must be one of {', '.join(ERRORS)}")
        if self.first is not None and self.first < 0:
            raise ValueError("first must be >= 0")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        self._rng = random.Random(self.seed)

    def matches(self, service: str, operation: str, app: str = "", body: bytes = b"") -> bool:
        return (
            self.service in ("*", service)
            and self.operation in ("*", operation)
            and self.app in ("*", app)
            and (self.body_contains is None or self.body_contains.encode() in body)
        )

    def decide(self) -> bool:
        """Count one matching call; true when this call must fail."""
        self.matched += 1
        if self.error is None:
            return False
        if self.first is not None:
            fail = self.matched <= self.first
        elif self.probability is not None:
            fail = self._rng.random() < self.probability
        else:
            fail = True
        if fail:
            self.fired += 1
        return fail

    def public(self) -> dict:
        data = asdict(self)
        data.pop("_rng")
        return data


@dataclass
class Verdict:
    latency_ms: int = 0
    error: str | None = None


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        # (app, "service:Operation") -> calls; app is the caller's
        # `AWS_SDK_UA_APP_ID` (user agent `app/<id>`), "" when it has none.
        self._counters: Counter[tuple[str, str]] = Counter()
        # app -> its last calls, each (service:Operation, started, ended) in seconds since the
        # epoch: the order and overlap of one app's calls (`trace`).
        self._traces: defaultdict[str, deque] = defaultdict(lambda: deque(maxlen=TRACE_LENGTH))

    def add(self, spec: dict) -> FaultRule:
        allowed = {
            "service",
            "operation",
            "app",
            "body_contains",
            "error",
            "first",
            "probability",
            "latency_ms",
            "seed",
        }
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        rule = FaultRule(**spec)
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def rules(self) -> list[dict]:
        with self._lock:
            return [r.public() for r in self._rules]

    def clear(self, app: str | None = None) -> None:
        """Forget every rule, or only those of one app id."""
        with self._lock:
            self._rules = [] if app is None else [r for r in self._rules if r.app != app]

    def count(self, key: str, app: str = "") -> None:
        with self._lock:
            self._counters[(app, key)] += 1

    def judge(
        self, service: str, operation: str, app: str = "", body: bytes = b"", named_only: bool = False
    ) -> Verdict:
        """Count the call and decide its fate. The first matching rule that
        fails the call wins; latencies of all matching rules add up. With
        `named_only` only rules that name the service apply (the registries:
        a rule for every AWS call leaves ECS's image pulls alone)."""
        verdict = Verdict()
        with self._lock:
            self._counters[(app, f"{service}:{operation}")] += 1
            for rule in self._rules:
                if named_only and rule.service == "*":
                    continue
                if not rule.matches(service, operation, app, body):
                    continue
                verdict.latency_ms += rule.latency_ms
                if rule.decide() and verdict.error is None:
                    verdict.error = rule.error
        return verdict

    def traced(self, service: str, operation: str, app: str, started: float) -> None:
        """One call of `app` answered (or refused): when it started and when it ended."""
        with self._lock:
            self._traces[app].append((f"{service}:{operation}", started, time.time()))

    def trace(self, app: str) -> list[dict]:
        """The app's last calls, in the order they ended."""
        with self._lock:
            return [{"call": c, "started": s, "ended": e} for c, s, e in self._traces.get(app, ())]

    def counters(self, app: str | None = None) -> dict[str, int]:
        """All calls, or only those of one app id."""
        totals: Counter[str] = Counter()
        with self._lock:
            for (caller, key), calls in self._counters.items():
                if app is None or caller == app:
                    totals[key] += calls
        return dict(sorted(totals.items()))

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()
            self._traces.clear()
