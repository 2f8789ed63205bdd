"""The detectors' small numeric helpers: weights of exponential averages, and rounding to a few decimals. Compiled
with the per-window path (every learning step of a count, level or proportion test calls them), so a call
costs no Python frame.

>>> ew_weight(1.0, 0), ew_weight(1.0, 5), round(ew_weight(100.0, 1000), 5)
(1.0, 0.5, 0.00691)
>>> ew_rate(1.0)
0.5
>>> round_to(2.675, 2), round(2.675, 2)  # 2.675 is stored as 2.67499999...: both round down
(2.67, 2.67)
>>> round_to(0.00005, 4), round(0.00005, 4), round_to(-0.00001, 4)  # 0.00005 * 10**4 is 0.5: round() decides
(0.0001, 0.0001, -0.0)
"""

from __future__ import annotations

import math

__all__ = ["ew_rate", "ew_weight", "round_to"]

#: 10 ** digits for the digits round_to serves fast (each an exact double).
_SCALES: tuple[float, ...] = tuple(float(10 ** d) for d in range(16))

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


def round_to(x: float, digits: int) -> float:
    """``round(x, digits)``, the same double, without the decimal string CPython's ``round`` makes.

    ``x * 10**digits`` is off its exact value by at most half a unit in its last place; unless that leaves
    it within reach of a half (a tie or nearly one, or too large a number), the nearest integer ``n`` is
    certain, and ``n / 10**digits`` is the double nearest the decimal ``n``e-``digits`` (an IEEE division of
    exact operands is correctly rounded), which is what ``round`` returns. Anything else goes to ``round``.
    """
    if 0 <= digits < 16:
        scale = _SCALES[digits]
        y = x * scale
        if -4.0e15 < y < 4.0e15:
            fl = math.floor(y)
            frac = y - fl  # exact
            margin = 4.5e-16 * abs(y) + 1e-300
            if abs(frac - 0.5) > margin:
                n = fl + 1.0 if frac > 0.5 else fl
                if n != 0.0:
                    return n / scale
                return math.copysign(0.0, x)
    return round(x, digits)
