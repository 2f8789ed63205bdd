"""Weights of the detectors' exponential averages. Compiled with the per-window path (every learning step of a
count, level or proportion test asks for one), so a call costs no Python frame.

>>> ew_weight(1.0, 0), ew_weight(1.0, 5), round(ew_weight(100.0, 1000), 5)
(1.0, 0.5, 0.00691)
>>> ew_rate(1.0)
0.5
"""

from __future__ import annotations

__all__ = ["ew_rate", "ew_weight"]

#: half-life -> per-step weight (half-lives come from the config: a handful).
_RATES: dict[float, float] = {}


def ew_rate(half_life: float) -> float:
    """The weight of each new value in an exponential average with this half-life (in steps)."""
    rate = _RATES.get(half_life)
    if rate is None:
        if len(_RATES) >= 256:
            _RATES.clear()
        rate = _RATES[half_life] = float(1.0 - 0.5 ** (1.0 / half_life))
    return rate


def ew_weight(half_life: float, n: int) -> float:
    """Weight of the next value in an exponential average with this half-life (in steps), after ``n``
    values: a plain average until the exponential weight takes over, so early values cannot linger."""
    rate = ew_rate(half_life)
    first = 1.0 / (n + 1)
    return rate if rate >= first else first
