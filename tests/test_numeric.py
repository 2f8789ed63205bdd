"""round_to stands in for round(x, digits) in the detectors' state: any difference, even the sign of a zero,
would change a checkpoint's bytes and, near a threshold, a decision."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from detector.detectors.numeric import round_to


def _same(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b) or (math.isnan(a) and math.isnan(b))


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, 2, 4, 6, 9, 15, 16, 20]))
@example(2.675, 2)
@example(0.00005, 4)
@example(-0.00001, 4)
@example(0.5, 0)
@example(1.5, 0)
@example(2.5, 0)
@example(1e300, 4)
@example(4.0e11 + 0.00005, 4)
def test_round_to_is_round(x: float, digits: int) -> None:
    assert _same(round_to(x, digits), round(x, digits))


@settings(max_examples=3000, deadline=None)
@given(st.integers(-10**12, 10**12), st.sampled_from([4, 6]), st.floats(-1e-9, 1e-9))
def test_round_to_near_ties(n: int, digits: int, nudge: float) -> None:
    """Values at or a hair off a decimal tie (n + 0.5) / 10**digits: where a shortcut would go wrong."""
    x = (n + 0.5) / 10**digits + nudge
    assert _same(round_to(x, digits), round(x, digits))
