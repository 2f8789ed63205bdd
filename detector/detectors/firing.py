"""What a detector says when a signal is anomalous: one ``signals`` entry of SPEC section 2.

>>> f = Firing(route="r", signal="latency_p95", incident_type="performance", detector="RobustZ",
...            observed=900.0, baseline=300.0, threshold=600.0, score=0.999,
...            window_start=0, window_end=60_000)
>>> f.entry()["window_end"]
'1970-01-01T00:01:00Z'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Firing", "iso"]


def iso(ts_ms: int) -> str:
    """RFC 3339 UTC text for epoch milliseconds (whole seconds unless needed).

    >>> iso(1767225600250)
    '2026-01-01T00:00:00.250Z'
    """
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    if ts_ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Firing:
    """A signal judged anomalous on one route in one window.

    ``incident_type`` is the SPEC section 2 type the signal makes;
    ``subject`` names what is failing when the signal is about one thing
    (the tool of a ``tool_error`` burst, the trace of a runaway loop).
    ``magnitude`` is observed / baseline (or how far past a guardrail),
    used by triage, as is ``weak``.
    """

    route: str
    signal: str
    incident_type: str
    detector: str
    observed: float
    baseline: float
    threshold: float
    score: float
    window_start: int
    window_end: int
    subject: str | None = None
    magnitude: float = 1.0
    #: A weak signal (a traffic drop judged without history of its hour on its kind of day): an
    #: incident made of weak signals only is of low severity.
    weak: bool = False
    #: The rollback this signal itself names, (kind, version): a canary comparison's old version.
    rollback: tuple[str, str] | None = None
    #: Whether this window itself was judged anomalous; False while the alarm only holds on (hysteresis:
    #: the windows after the excess ended, which add nothing to the blast radius).
    hit: bool = True

    def entry(self) -> dict[str, Any]:
        """The SPEC ``signals`` entry (no route or subject: they live elsewhere)."""
        return {
            "signal": self.signal,
            "detector": self.detector,
            "observed": _num(self.observed),
            "baseline": _num(self.baseline),
            "threshold": _num(self.threshold),
            "score": _num(self.score),
            "window_start": iso(self.window_start),
            "window_end": iso(self.window_end),
        }


def _num(x: float) -> float:
    if x != x or x in (float("inf"), float("-inf")):
        return 0.0
    return round(float(x), 6)
