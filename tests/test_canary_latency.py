"""The canary comparison's latency test on few samples of the new version (a quiet route's canary).

What it protects: a new version much slower than the old is found on its fifth to seventh request (it
waited for the eighth), and one 1.6-2x as slow on its twelfth to twentieth (it waited for t >= 5), at one
one-sided level (p 7.8e-4) whatever the number of samples: a new version as fast as the old one is no more
often called slower on few samples or on many.
"""

from __future__ import annotations

import math
import random

from detector.detectors.canary import MIN_LATENCY, MIN_LATENCY_NEW, _latency
from detector.windows.aggregate import N_STATS, V_LAT_N, V_LOG_SQ, V_LOG_SUM


def _side(latencies: list[float]) -> list[float]:
    st = [0.0] * N_STATS
    for x in latencies:
        y = math.log(x)
        st[V_LAT_N] += 1
        st[V_LOG_SUM] += y
        st[V_LOG_SQ] += y * y
    return st


def _draw(rng: random.Random, n: int, median: float) -> list[float]:
    return [median * rng.lognormvariate(0.0, 0.45) for _ in range(n)]


def test_a_new_version_three_times_as_slow_is_found_before_its_eighth_request() -> None:
    """Over 200 draws of an old version's 400 requests and a new one three times as slow, the test fires on
    the new version's fifth to seventh request in about three of four (it was never judged before the eighth)."""
    rng = random.Random(5)
    first: list[int] = []
    for _ in range(200):
        old = _side(_draw(rng, 400, 800.0))
        new = _draw(rng, MIN_LATENCY, 2400.0)
        hit = next((n for n in range(MIN_LATENCY_NEW, MIN_LATENCY + 1) if _latency(_side(new[:n]), old).anomalous),
                   None)
        first.append(hit if hit is not None else MIN_LATENCY + 1)
    assert sum(n < MIN_LATENCY for n in first) >= 120, sorted(first)


def test_a_new_version_as_fast_as_the_old_is_rarely_called_slower_on_few_samples() -> None:
    """2,000 draws each of 5 to 8, 12, 20 and 50 samples of a new version as fast as the old: the share called
    slower stays near the test's level (7.8e-4 a look) for every count."""
    rng = random.Random(6)
    old = _side(_draw(rng, 400, 800.0))
    for n in (*range(MIN_LATENCY_NEW, MIN_LATENCY + 1), 12, 20, 50):
        false = sum(_latency(_side(_draw(rng, n, 800.0)), old).anomalous for _ in range(2000))
        assert false <= 6, (n, false)


def test_a_new_version_a_little_slower_is_found_on_a_dozen_samples() -> None:
    """Over 200 draws of a new version 1.8x as slow as the old, its first twelve requests find it in at least
    120 (the level's t on eleven degrees of freedom is 4.2; a fixed t of 5 found 76)."""
    rng = random.Random(7)
    found = 0
    for _ in range(200):
        old = _side(_draw(rng, 400, 800.0))
        found += _latency(_side(_draw(rng, 12, 1440.0)), old).anomalous
    assert found >= 120, found
