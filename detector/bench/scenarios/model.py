"""Data types shared by the scenario generator, the scorer and the bench.

A :class:`Scenario` is a synthetic telemetry file (SPEC section 1 events, as
plain dicts in file order) plus the ground truth: one :class:`Label` per
injected incident. Scenarios round-trip through ``events.jsonl`` and
``labels.json`` so that a run can be re-scored without regenerating it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Label", "Scenario", "write_scenario", "read_labels", "INCIDENT_TYPES"]

INCIDENT_TYPES: tuple[str, ...] = (
    "bad_output",
    "retrieval_failure",
    "tool_failure",
    "access_privacy",
    "performance",
    "cost",
)


@dataclass(frozen=True)
class Label:
    """One injected incident: where, what type, when, and the expected rollback.

    ``rollback`` is ``{"kind": ..., "to_version": ...}`` for change-caused
    incidents (the version before the change) and ``None`` otherwise.
    ``variant`` names the injection recipe, ``signal`` says which signal was
    moved (e.g. ``"error_rate"``), ``details`` holds its parameters (error
    classes, tool, multipliers) so tests can check the signal is present.
    """

    route: str
    incident_type: str
    start_ms: int
    end_ms: int
    rollback: dict[str, str] | None
    description: str
    variant: str = ""
    signal: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (as written to ``labels.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Label:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Scenario:
    """A generated scenario: events in file order plus ground truth.

    ``route_kinds`` (route -> traffic kind, e.g. ``"batch"``) and ``extra`` (more ground
    truth: releases, late flushes, route profiles) are empty for the default suite and only
    written to ``labels.json`` when set, so older files load with both empty.
    """

    seed: int
    days: int
    start_ms: int
    events: list[dict[str, Any]]
    labels: list[Label]
    routes: list[str]
    canaries: list[str]
    route_kinds: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def route_days(self) -> float:
        """Routes times days: the denominator of false incidents per route-day."""
        return float(len(self.routes) * self.days)

    def meta(self) -> dict[str, Any]:
        """Everything but the events, JSON-able (the content of ``labels.json``)."""
        meta: dict[str, Any] = {
            "seed": self.seed,
            "days": self.days,
            "start_ms": self.start_ms,
            "routes": self.routes,
            "canaries": self.canaries,
            "labels": [lb.to_dict() for lb in self.labels],
        }
        if self.route_kinds:
            meta["route_kinds"] = self.route_kinds
        if self.extra:
            meta["extra"] = self.extra
        return meta

    def event_lines(self) -> list[bytes]:
        """The events as JSON lines (bytes, no trailing newline), in file order."""
        enc = msgspec.json.Encoder()
        return [enc.encode(e) for e in self.events]


def write_scenario(scenario: Scenario, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``events.jsonl`` and ``labels.json`` into ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events_path = out / "events.jsonl"
    labels_path = out / "labels.json"
    enc = msgspec.json.Encoder()
    with events_path.open("wb") as fh:  # one line at a time: a week of a fleet is millions of events
        for ev in scenario.events:
            fh.write(enc.encode(ev))
            fh.write(b"\n")
    labels_path.write_text(json.dumps(scenario.meta(), indent=2) + "\n", encoding="utf-8")
    return events_path, labels_path


def read_labels(labels_path: str | Path) -> Scenario:
    """Load ``labels.json`` as a :class:`Scenario` without events (enough to score)."""
    meta = json.loads(Path(labels_path).read_text(encoding="utf-8"))
    return Scenario(
        seed=int(meta["seed"]),
        days=int(meta["days"]),
        start_ms=int(meta["start_ms"]),
        events=[],
        labels=[Label.from_dict(d) for d in meta["labels"]],
        routes=list(meta["routes"]),
        canaries=list(meta["canaries"]),
        route_kinds=dict(meta.get("route_kinds") or {}),
        extra=dict(meta.get("extra") or {}),
    )
