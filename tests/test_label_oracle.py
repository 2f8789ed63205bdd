"""The label oracle's tests: what the p90 bound of the fleet scenarios rests on.

What it protects: ``detector.bench.label_oracle`` is cited as the bound no test at a given level beats on
the fleet labels. Its rate test must stay quiet on traffic at the baseline rate, fire on an excess, and
find a ramp's excess from one of its later starts (not only from the label's start, where the calm
first minutes dilute it); the mean test likewise for latency.
"""

from __future__ import annotations

import random

from detector.bench.label_oracle import MIN_MS, _mean_oracle, _rate_oracle
from detector.bench.scenarios.model import Label


def _label(minutes: int) -> Label:
    return Label("r", "performance", 0, minutes * MIN_MS, None, "test label")


def _marks(rate_at: list[float], per_min: int, rng: random.Random) -> list[tuple[int, bool]]:
    """``per_min`` requests a minute, each bad with the minute's rate."""
    out = []
    for m, rate in enumerate(rate_at):
        for j in range(per_min):
            out.append((m * MIN_MS + j * MIN_MS // per_min, rng.random() < rate))
    return out


def test_the_rate_oracle_is_quiet_at_the_baseline_and_fires_on_an_excess() -> None:
    rng = random.Random(1)
    calm = _marks([0.02] * 60, 2, rng)
    assert _rate_oracle(calm, 0.02, _label(60), 1e-5) is None
    bad = _marks([0.3] * 60, 2, rng)
    at = _rate_oracle(bad, 0.02, _label(60), 1e-5)
    assert at is not None and at < 15  # about 0.6 errors a minute against 0.04


def test_the_rate_oracle_finds_a_late_excess_from_a_later_start() -> None:
    """Two calm hours, then an excess: from the label's start alone the calm requests hold the test back
    (about 17 minutes of the excess; from the start nearest it, about 5)."""
    rng = random.Random(2)
    marks = _marks([0.01] * 120 + [0.25] * 40, 4, rng)
    at = _rate_oracle(marks, 0.01, _label(160), 1e-5)
    assert at is not None and 120 < at < 130, at


def test_the_mean_oracle_is_quiet_at_the_baseline_and_fires_on_a_slowdown() -> None:
    rng = random.Random(3)
    calm = [(i * MIN_MS, rng.gauss(0.0, 0.5)) for i in range(60)]
    assert _mean_oracle(calm, 0.0, 0.5, _label(60), 1e-5) is None
    slow = [(i * MIN_MS, rng.gauss(0.7, 0.5)) for i in range(60)]  # twice as slow, a sample a minute
    at = _mean_oracle(slow, 0.0, 0.5, _label(60), 1e-5)
    assert at is not None and at < 20
