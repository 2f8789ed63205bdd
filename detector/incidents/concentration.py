"""Is an incident's bad measure concentrated on a change's new version?

The pure comparisons behind :meth:`ChangeTracker.explain
<detector.incidents.changes.ChangeTracker.explain>`: per incident type, a
"bad measure" (errors per request, bad reviews per review, mean latency,
cost per request), and a test of whether the new version's figure is
clearly worse than the old versions'.

>>> new = [100, 100, 30, 0, 0, 0, 0.0, 0.0]   # 30 errors in 100 requests
>>> old = [1000, 1000, 10, 0, 0, 0, 0.0, 0.0]  # 10 in 1000
>>> worse("errors", new, old)
True
>>> worse("errors", [100, 100, 2, 0, 0, 0, 0.0, 0.0], old)
False

A hint (``hint=True``) is a looser reading: 4 errors in 100 against 1% is not clearly worse (3 points more,
p about 0.02), but it is a hint of worse.

>>> few = [100, 100, 4, 0, 0, 0, 0.0, 0.0]
>>> worse("errors", few, old), worse("errors", few, old, hint=True)
(False, True)
"""

from __future__ import annotations

import math

from detector.detectors.proportion import binom_sf
from detector.windows.aggregate import (
    V_BAD_REVIEWS,
    V_COST,
    V_ERRORS,
    V_EVENTS,
    V_LAT_N,
    V_LAT_SUM,
    V_REQUESTS,
    V_REVIEWS,
)

__all__ = ["TYPE_MEASURES", "CANARY_SHARE", "P_VALUE", "LONGER_RATIO", "worse", "enough", "share", "longer", "sudden"]

#: The "bad measure" of each incident type, tried in order.
TYPE_MEASURES: dict[str, tuple[str, ...]] = {
    "bad_output": ("bad_reviews", "errors"),
    "retrieval_failure": ("errors",),
    "tool_failure": ("errors",),
    "access_privacy": ("errors",),
    "performance": ("latency", "errors"),
    "cost": ("cost",),
}
# measure -> (numerator index, denominator index, ratio, absolute margin, counts bad events)
_MEASURES: dict[str, tuple[int, int, float, float, bool]] = {
    "errors": (V_ERRORS, V_REQUESTS, 2.0, 0.05, True),
    "bad_reviews": (V_BAD_REVIEWS, V_REVIEWS, 2.0, 0.05, True),
    "latency": (V_LAT_SUM, V_LAT_N, 1.5, 0.0, False),
    "cost": (V_COST, V_REQUESTS, 1.5, 0.0, False),
}
#: Share of the traffic since a change that the old versions must still carry to be compared
#: side by side with the new one (a canary); below it the rollout counts as complete.
CANARY_SHARE = 0.2
#: One-sided Poisson p-value below which a count of bad events is "clearly more".
P_VALUE = 0.01
#: The looser reading of :func:`worse` (``hint``): ratio, absolute margin and p-value for counts, and the
#: ratio of means (latency, cost).
HINT_RATIO, HINT_MARGIN, HINT_P = 1.5, 0.02, 0.1
HINT_MEAN_RATIO = 1.2
#: Cost per request a prompt's new version must reach, times the old one's, to have made requests longer.
LONGER_RATIO = 1.2


def _den(name: str, new: list[float], old: list[float]) -> tuple[int, int]:
    num_i, den_i, *_ = _MEASURES[name]
    if den_i == V_REQUESTS and (new[V_REQUESTS] <= 0 or old[V_REQUESTS] <= 0):
        den_i = V_EVENTS
    return num_i, den_i


def share(name: str, old: list[float], new: list[float]) -> float:
    """The old versions' share of the traffic since the change, on measure ``name``'s denominator."""
    _, den_i = _den(name, new, old)
    total = old[den_i] + new[den_i]
    return old[den_i] / total if total else 0.0


def enough(name: str, old: list[float]) -> bool:
    """True when ``old`` carries enough traffic for a comparison of ``name``."""
    _, den_i = _den(name, old, old)
    return old[den_i] >= (10 if _MEASURES[name][4] else 3)


def worse(name: str, new: list[float], old: list[float], hint: bool = False) -> bool | None:
    """True when ``new`` is clearly worse than ``old`` on measure ``name``; None without enough data.

    ``hint``: a looser reading (for counts at least 1.5x, 2 points higher, p-value at most :data:`HINT_P`; for
    means :data:`HINT_MEAN_RATIO`), for whether a version already looked worse on the traffic it served before
    an incident."""
    _, _, ratio, margin, counts = _MEASURES[name]
    num_i, den_i = _den(name, new, old)
    n_new, k_new, n_old, k_old = new[den_i], new[num_i], old[den_i], old[num_i]
    if counts:
        if n_new < 3 or n_old < 10 or k_new + k_old <= 0:
            return None
        p_old = (k_old + 0.5) / (n_old + 1.0)
        r_new = k_new / n_new
        if hint:
            ratio, margin = HINT_RATIO, HINT_MARGIN
        return (k_new >= 2 and r_new >= ratio * p_old and r_new - p_old >= margin
                and _poisson_sf(k_new, n_new * p_old) <= (HINT_P if hint else P_VALUE))
    if n_new < 3 or n_old < 3 or k_old <= 0:
        return None
    return (k_new / n_new) >= (HINT_MEAN_RATIO if hint else ratio) * (k_old / n_old)


#: :func:`sudden`: the lower-tail p-value, the fewest requests (counts) or samples (means) before the incident,
#: and how many times the mean before the incident the incident's must be.
SUDDEN_P, SUDDEN_MIN_COUNTS, SUDDEN_MIN_MEANS, SUDDEN_RATIO = 1e-3, 20, 30, 1.5


def sudden(name: str, before: list[float], during: list[float]) -> bool:
    """Whether a version's traffic before an incident (``before``) rules out that it had the incident's level
    (``during``) from its first requests, on measure ``name``: for counts, even half the incident's rate is
    unlikely to have given so few bad events (lower binomial tail below :data:`SUDDEN_P`); for means, the
    incident's is :data:`SUDDEN_RATIO` times the mean before, on enough samples. A bad prompt, config, model,
    tool or index fails from its first requests: one that served cleanly and then failed, as the provider's
    other routes did, did not cause it. The window of the onset may sit in ``before``; it dilutes, not hides.

    >>> clean, bad = [150, 150, 3, 0, 0, 0, 0.0, 0.0], [60, 60, 14, 0, 0, 0, 0.0, 0.0]
    >>> sudden("errors", clean, bad), sudden("errors", [150, 150, 30, 0, 0, 0, 0.0, 0.0], bad)
    (True, False)
    >>> sudden("errors", [8, 8, 0, 0, 0, 0, 0.0, 0.0], bad)  # eight clean requests prove nothing
    False
    """
    num_i, den_i, _, _, counts = _MEASURES[name]
    n_b, x_b, n_a, x_a = before[den_i], before[num_i], during[den_i], during[num_i]
    if not counts:
        return n_b >= SUDDEN_MIN_MEANS and n_a >= 3 and x_b > 0 and x_a / n_a >= SUDDEN_RATIO * x_b / n_b
    if n_b < SUDDEN_MIN_COUNTS or n_a <= 0 or x_a < 3:
        return False
    rate = min(0.5 * x_a / n_a, 0.5)
    n, k = int(n_b), int(min(x_b, n_b))
    # P(X <= k) for X ~ Binomial(n, rate): the upper tail of the n - X successes of 1 - rate
    return k < rate * n and binom_sf(n - k, n, 1.0 - rate) < SUDDEN_P


def longer(new: list[float], old: list[float]) -> bool | None:
    """Whether requests on ``new`` are longer than on ``old``: a cost per request at least
    :data:`LONGER_RATIO` times as high (cost follows tokens). None when either side has no cost reported.

    A prompt slows requests down, or makes them time out, only by making them longer (more input
    to read, more output to write); the provider's and the model's speed are not the prompt's doing.

    >>> old = [40, 40, 0, 0, 0, 0, 0.0, 0.08, 0.0, 0.0]     # 40 requests, $0.002 each
    >>> longer([20, 20, 0, 0, 0, 0, 0.0, 0.04, 0.0, 0.0], old), longer([20, 20, 0, 0, 0, 0, 0.0, 0.12, 0.0, 0.0], old)
    (False, True)
    >>> longer([20, 20, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0], old) is None  # no cost events on the new version
    True
    """
    n_new, n_old = new[V_REQUESTS], old[V_REQUESTS]
    if n_new < 3 or n_old < 3 or new[V_COST] <= 0 or old[V_COST] <= 0:
        return None
    return new[V_COST] / n_new >= LONGER_RATIO * old[V_COST] / n_old


def _poisson_sf(k: float, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam).

    >>> round(_poisson_sf(5, 1.0), 4), _poisson_sf(0, 3.0)
    (0.0037, 1.0)
    """
    n = int(math.ceil(k))
    if n <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    if lam > 200:
        return 0.5 * math.erfc((n - 0.5 - lam) / math.sqrt(2.0 * lam))
    term = math.exp(-lam)
    cdf = 0.0
    for i in range(n):
        cdf += term
        term *= lam / (i + 1)
    return max(0.0, 1.0 - cdf)
