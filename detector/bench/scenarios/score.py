"""Scoring incident events (SPEC section 2) against a scenario's labels.

Rules, per scenario:

* an incident is the set of messages sharing an ``incident_id``; its type is
  the one on its latest message (the detector may retype), its start is the
  earliest ``started_at``, its detection time the ``detected_at`` of its
  ``opened`` message (else the earliest seen);
* a label is *found* when an incident of the same route and type has
  ``[started_at, detected_at]`` overlapping ``[start - 5 min, end + 15 min]``;
  its detection delay is ``detected_at - label start`` in minutes;
* an incident matching no label is *false*; a false incident that overlaps a
  label window of its route with another type is also counted as *wrong type*;
* a label with a rollback target is *rollback-right* when a matched incident
  recommends ``rollback`` with exactly that ``kind`` and ``to_version``; a
  ``rollback`` recommended for a label without a target is *rollback-wrong*;
* a *leak* is any canary string (``CANARY-<seed>-<n>``) anywhere in the
  serialized incident messages or in extra texts (e.g. captured logs).

Added for the fleet suite (none of it changes the figures above):

* a label with ``details["optional"]`` (a provider outage on a route with too
  little traffic to expect a detection) counts neither as found nor as missed,
  but an incident matching it is not false;
* a false incident is *critical* when its highest severity was ``critical``;
* a label with ``details["group"]`` is *group-right* when a matched incident's
  latest message has ``group.cause`` with the same ``kind`` and ``value``;
* a *canary* label (variant ``canary_*``) is found like any other;
* the p90 delay is the nearest-rank 90th percentile of the delays.

>>> from detector.bench.scenarios.model import Label, Scenario
>>> lb = Label("r", "cost", 3_600_000, 7_200_000, None, "d")
>>> sc = Scenario(1, 1, 0, [], [lb], ["r"], ["CANARY-1-0"])
>>> inc = {"incident_id": "i1", "event": "opened", "seq": 1, "route": "r", "incident_type": "cost",
...        "started_at": "1970-01-01T01:00:00Z", "detected_at": "1970-01-01T01:04:00Z",
...        "recommendations": []}
>>> s = score([inc], sc)
>>> s.found, s.false_incidents, s.delays_min, s.leaks
(1, 0, [4.0], 0)
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detector.bench.scenarios.model import Label, Scenario

__all__ = [
    "IncidentView",
    "LabelResult",
    "ScenarioScore",
    "AggregateScore",
    "score",
    "aggregate",
    "group",
    "p90",
    "is_optional",
]

BEFORE_MS = 5 * 60_000
AFTER_MS = 15 * 60_000
CANARY_RE = re.compile(r"CANARY-\d+-\d+")
BARS = {"found_pct": 95.0, "false_per_route_day": 0.2, "median_delay_min": 10.0}
FLEET_BARS = {
    "found_pct": 95.0,
    "false_per_route_day": 0.1,
    "median_delay_min": 5.0,
    "p90_delay_min": 20.0,
    "rollback_pct": 95.0,
}
SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}


def p90(values: list[float]) -> float | None:
    """Nearest-rank 90th percentile (None for no values).

    >>> p90([1.0, 2.0, 3.0]), p90([float(i) for i in range(1, 21)]), p90([])
    (3.0, 18.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def is_optional(label: Label) -> bool:
    """True for a label that counts neither as found nor as missed."""
    return bool(label.details.get("optional"))


def to_ms(value: Any) -> int | None:
    """RFC 3339 string or epoch milliseconds to epoch ms (None if absent or unreadable).

    >>> to_ms("2025-03-03T00:00:01.5Z"), to_ms(5), to_ms(None)
    (1740960001500, 5, None)
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    try:
        return int(round(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000))
    except ValueError:
        return None


@dataclass
class IncidentView:
    """One incident rebuilt from its messages."""

    incident_id: str
    route: str
    incident_type: str
    started_ms: int
    detected_ms: int
    opened: bool
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    severity: str = ""  # the highest severity over its messages
    signal: str = ""  # signals[0].signal of its first message
    group_cause: dict[str, Any] | None = None  # group.cause of its latest message

    def overlaps(self, label: Label) -> bool:
        """True when [started, detected] meets the label's tolerance window."""
        lo = min(self.started_ms, self.detected_ms)
        return lo <= label.end_ms + AFTER_MS and self.detected_ms >= label.start_ms - BEFORE_MS

    def recommends(self, target: dict[str, str]) -> bool:
        """True when a ``rollback`` with exactly this kind and to_version was recommended."""
        return any(
            t.get("kind") == target["kind"] and t.get("to_version") == target["to_version"]
            for t in self.rollbacks
        )


def group(messages: Iterable[dict[str, Any]]) -> list[IncidentView]:
    """Rebuild incidents from their messages (any order), sorted by detection time."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        by_id.setdefault(str(m.get("incident_id")), []).append(m)
    views: list[IncidentView] = []
    for iid, msgs in by_id.items():
        msgs.sort(key=lambda m: int(m.get("seq") or 0))
        opened = [m for m in msgs if m.get("event") == "opened"]
        det = [to_ms(m.get("detected_at")) for m in (opened or msgs)]
        det_ms = min((d for d in det if d is not None), default=None)
        starts = [s for s in (to_ms(m.get("started_at")) for m in msgs) if s is not None]
        if det_ms is None:
            det_ms = min((a for a in (to_ms(m.get("at")) for m in msgs) if a is not None), default=0)
        rollbacks: list[dict[str, Any]] = [  # a rollback without a usable target counts as {}
            r["target"] if isinstance(r.get("target"), dict) else {}
            for m in msgs
            for r in (m.get("recommendations") or [])
            if isinstance(r, dict) and r.get("action") == "rollback"
        ]
        sevs = [str(m.get("severity") or "") for m in msgs]
        sigs = msgs[0].get("signals") or []
        grp = msgs[-1].get("group")
        cause = grp.get("cause") if isinstance(grp, dict) else None
        views.append(
            IncidentView(
                incident_id=iid,
                route=str(msgs[-1].get("route")),
                incident_type=str(msgs[-1].get("incident_type")),
                started_ms=min(starts) if starts else det_ms,
                detected_ms=det_ms,
                opened=bool(opened),
                rollbacks=rollbacks,
                severity=max(sevs, key=lambda x: SEVERITY_RANK.get(x, 0), default=""),
                signal=str(sigs[0].get("signal") or "") if sigs and isinstance(sigs[0], dict) else "",
                group_cause=cause if isinstance(cause, dict) else None,
            )
        )
    views.sort(key=lambda v: (v.detected_ms, v.incident_id))
    return views


@dataclass
class LabelResult:
    """What happened to one label."""

    label: Label
    incident_id: str | None
    delay_min: float | None
    rollback_ok: bool | None  # None when the label has no rollback target
    rollback_wrong: bool  # a rollback was recommended though the label has no target
    group_ok: bool | None = None  # None when the label has no group

    @property
    def required(self) -> bool:
        return not is_optional(self.label)


@dataclass
class ScenarioScore:
    """The figures of one scenario."""

    seed: int
    route_days: float
    incidents: int
    results: list[LabelResult]
    false_ids: list[str]
    wrong_type_ids: list[str]
    leaked: list[str]
    false_views: list[IncidentView] = field(default_factory=list)

    @property
    def labels(self) -> int:
        return sum(r.required for r in self.results)

    @property
    def found(self) -> int:
        return sum(r.incident_id is not None for r in self.results if r.required)

    @property
    def delays_min(self) -> list[float]:
        return [r.delay_min for r in self.results if r.delay_min is not None and r.required]

    @property
    def p90_delay_min(self) -> float | None:
        return p90(self.delays_min)

    @property
    def false_critical(self) -> int:
        return sum(v.severity == "critical" for v in self.false_views)

    @property
    def group_expected(self) -> int:
        return sum(r.group_ok is not None for r in self.results if r.required)

    @property
    def group_right(self) -> int:
        return sum(r.group_ok is True for r in self.results if r.required)

    @property
    def canary_expected(self) -> int:
        return sum(r.label.variant.startswith("canary_") for r in self.results if r.required)

    @property
    def canary_found(self) -> int:
        return sum(
            r.label.variant.startswith("canary_") and r.incident_id is not None for r in self.results if r.required
        )

    @property
    def rollback_accuracy(self) -> float:
        exp = self.rollback_expected
        return 100.0 * self.rollback_right / exp if exp else 100.0

    @property
    def false_incidents(self) -> int:
        return len(self.false_ids)

    @property
    def wrong_type(self) -> int:
        return len(self.wrong_type_ids)

    @property
    def rollback_expected(self) -> int:
        return sum(r.rollback_ok is not None for r in self.results)

    @property
    def rollback_right(self) -> int:
        return sum(r.rollback_ok is True for r in self.results)

    @property
    def rollback_wrong(self) -> int:
        return sum(r.rollback_wrong for r in self.results)

    @property
    def leaks(self) -> int:
        return len(self.leaked)

    @property
    def found_pct(self) -> float:
        return 100.0 * self.found / self.labels if self.labels else 100.0

    @property
    def false_per_route_day(self) -> float:
        return self.false_incidents / self.route_days if self.route_days else 0.0

    @property
    def median_delay_min(self) -> float | None:
        return statistics.median(self.delays_min) if self.delays_min else None


def find_leaks(texts: Iterable[str], canaries: Iterable[str] = ()) -> list[str]:
    """Distinct canary strings found in ``texts`` (any ``CANARY-<seed>-<n>``, plus ``canaries``).

    >>> find_leaks(['{"summary": "x CANARY-3-14 y"}', "log: CANARY-3-14"])
    ['CANARY-3-14']
    """
    wanted = set(canaries)
    found: set[str] = set()
    for text in texts:
        found.update(CANARY_RE.findall(text))
        found.update(c for c in wanted if not CANARY_RE.fullmatch(c) and c in text)
    return sorted(found)


def score(
    incidents: list[dict[str, Any]], scenario: Scenario, extra_texts: Iterable[str] = ()
) -> ScenarioScore:
    """Score incident messages against ``scenario``; ``extra_texts`` are also checked for leaks."""
    views = [v for v in group(incidents)]
    matched: set[str] = set()
    results: list[LabelResult] = []
    for lb in scenario.labels:
        hits = [
            v for v in views if v.route == lb.route and v.incident_type == lb.incident_type and v.overlaps(lb)
        ]
        matched.update(v.incident_id for v in hits)
        first = min(hits, key=lambda v: v.detected_ms) if hits else None
        has_rollback = any(v.rollbacks for v in hits)
        want = lb.details.get("group")
        group_ok = None
        if isinstance(want, dict):
            group_ok = any(
                (v.group_cause or {}).get("kind") == want.get("kind")
                and (v.group_cause or {}).get("value") == want.get("value")
                for v in hits
            )
        results.append(
            LabelResult(
                label=lb,
                incident_id=first.incident_id if first else None,
                delay_min=(first.detected_ms - lb.start_ms) / 60_000.0 if first else None,
                rollback_ok=None if lb.rollback is None else any(v.recommends(lb.rollback) for v in hits),
                rollback_wrong=lb.rollback is None and has_rollback,
                group_ok=group_ok,
            )
        )
    false = [v for v in views if v.incident_id not in matched]
    wrong_type = [
        v
        for v in false
        if any(
            v.route == lb.route and v.incident_type != lb.incident_type and v.overlaps(lb)
            for lb in scenario.labels
        )
    ]
    texts = [json.dumps(m, sort_keys=True, ensure_ascii=False, default=str) for m in incidents]
    return ScenarioScore(
        seed=scenario.seed,
        route_days=scenario.route_days,
        incidents=len(views),
        results=results,
        false_ids=[v.incident_id for v in false],
        wrong_type_ids=[v.incident_id for v in wrong_type],
        leaked=find_leaks([*texts, *extra_texts], scenario.canaries),
        false_views=false,
    )


@dataclass
class AggregateScore:
    """Pooled figures over several scenarios, with the pass/fail bars."""

    scores: list[ScenarioScore]
    suite: str = "default"  # "fleet": the fleet suite's bars

    @property
    def found_pct(self) -> float:
        labels = sum(s.labels for s in self.scores)
        return 100.0 * sum(s.found for s in self.scores) / labels if labels else 100.0

    @property
    def false_per_route_day(self) -> float:
        days = sum(s.route_days for s in self.scores)
        return sum(s.false_incidents for s in self.scores) / days if days else 0.0

    @property
    def median_delay_min(self) -> float | None:
        delays = [d for s in self.scores for d in s.delays_min]
        return statistics.median(delays) if delays else None

    @property
    def rollback_expected(self) -> int:
        return sum(s.rollback_expected for s in self.scores)

    @property
    def rollback_right(self) -> int:
        return sum(s.rollback_right for s in self.scores)

    @property
    def rollback_wrong(self) -> int:
        return sum(s.rollback_wrong for s in self.scores)

    @property
    def rollback_accuracy(self) -> float:
        exp = self.rollback_expected
        return 100.0 * self.rollback_right / exp if exp else 100.0

    @property
    def leaks(self) -> int:
        return sum(s.leaks for s in self.scores)

    @property
    def p90_delay_min(self) -> float | None:
        return p90([d for s in self.scores for d in s.delays_min])

    @property
    def false_critical(self) -> int:
        return sum(s.false_critical for s in self.scores)

    @property
    def group_expected(self) -> int:
        return sum(s.group_expected for s in self.scores)

    @property
    def group_right(self) -> int:
        return sum(s.group_right for s in self.scores)

    @property
    def canary_expected(self) -> int:
        return sum(s.canary_expected for s in self.scores)

    @property
    def canary_found(self) -> int:
        return sum(s.canary_found for s in self.scores)

    def bars(self) -> list[tuple[str, str, str, bool]]:
        """(name, value, bar, passed) for each quality bar of the suite."""
        if self.suite == "fleet":
            return self.fleet_bars()
        delay = self.median_delay_min
        return [
            (
                "found with right type",
                f"{self.found_pct:.1f}%",
                ">= 95%",
                self.found_pct >= BARS["found_pct"],
            ),
            (
                "false incidents / route-day",
                f"{self.false_per_route_day:.3f}",
                "<= 0.2",
                self.false_per_route_day <= BARS["false_per_route_day"],
            ),
            (
                "median detection delay",
                "n/a" if delay is None else f"{delay:.1f} min",
                "<= 10 min",
                delay is not None and delay <= BARS["median_delay_min"],
            ),
            (
                "rollback targets right",
                f"{self.rollback_right}/{self.rollback_expected}, {self.rollback_wrong} wrong",
                "all, 0 wrong",
                self.rollback_right == self.rollback_expected and self.rollback_wrong == 0,
            ),
            ("leaks", str(self.leaks), "0", self.leaks == 0),
        ]

    def fleet_bars(self) -> list[tuple[str, str, str, bool]]:
        """The fleet suite's bars: stricter on false alarms and delay, plus canaries and groups."""
        b = FLEET_BARS
        med, late = self.median_delay_min, self.p90_delay_min
        fpd = self.false_per_route_day
        rb = self.rollback_accuracy
        return [
            ("found with right type", f"{self.found_pct:.1f}%", ">= 95%", self.found_pct >= b["found_pct"]),
            (
                "false incidents / route-day",
                f"{fpd:.3f}, {self.false_critical} critical",
                "<= 0.1, 0 crit",
                fpd <= b["false_per_route_day"] and self.false_critical == 0,
            ),
            (
                "median detection delay",
                "n/a" if med is None else f"{med:.1f} min",
                "<= 5 min",
                med is not None and med <= b["median_delay_min"],
            ),
            (
                "p90 detection delay",
                "n/a" if late is None else f"{late:.1f} min",
                "<= 20 min",
                late is not None and late <= b["p90_delay_min"],
            ),
            (
                "rollback targets right",
                f"{rb:.1f}% ({self.rollback_right}/{self.rollback_expected}), {self.rollback_wrong} wrong",
                ">= 95%, 0 wrong",
                rb >= b["rollback_pct"] and self.rollback_wrong == 0,
            ),
            (
                "canary regressions found",
                f"{self.canary_found}/{self.canary_expected}",
                "all",
                self.canary_found == self.canary_expected,
            ),
            (
                "group right",
                f"{self.group_right}/{self.group_expected}",
                "all",
                self.group_right == self.group_expected,
            ),
            ("leaks", str(self.leaks), "0", self.leaks == 0),
        ]

    @property
    def passed(self) -> bool:
        return all(ok for *_, ok in self.bars())


def aggregate(scores: list[ScenarioScore], suite: str = "default") -> AggregateScore:
    """Pool several scenario scores (``suite`` picks the bars)."""
    return AggregateScore(list(scores), suite)
