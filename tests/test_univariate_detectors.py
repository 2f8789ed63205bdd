"""Detection behaviour of every univariate detector on seeded synthetic 1-minute series."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from detector.detectors import detector_classes
from detector.detectors.base import UnivariateDetector

DAY = 1440  # one value per 1-minute window
CHANGE = 3 * DAY  # changes start on day 4, after three quiet days
DEFAULT_ALARM_THRESHOLD = 0.5

Series = NDArray[np.float64]


CLASSES = detector_classes(UnivariateDetector)


def seasonal(seed: int, days: int = 4) -> Series:
    """Daily sine (amplitude 20 around 100) plus Gaussian noise (sd 3)."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    return 100.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0.0, 3.0, len(t))


def _after(x: Series) -> NDArray[np.bool_]:
    return np.arange(len(x)) >= CHANGE


CHANGES: dict[str, Callable[[Series], Series]] = {
    "step": lambda x: np.where(_after(x), x + 40.0, x),
    "ramp": lambda x: x + 0.5 * np.clip(np.arange(len(x)) - CHANGE, 0, None),
    "spike": lambda x: x + 60.0 * (np.arange(len(x)) == CHANGE),
    "drop_to_zero": lambda x: np.where(_after(x), 0.0, x),
}


def _scores(cls: type[UnivariateDetector], x: Series) -> Series:
    det = cls()
    return np.array([det.update(float(v)) for v in x])


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_change_is_detected(cls: type[UnivariateDetector], change: str) -> None:
    """A step, ramp, spike or drop to zero raises an alarm within 2 hours; nothing fires before it."""
    for seed in (0, 1):
        s = _scores(cls, CHANGES[change](seasonal(seed)))
        before, after = s[DAY:CHANGE].max(), s[CHANGE : CHANGE + 120].max()
        assert after >= DEFAULT_ALARM_THRESHOLD, (seed, after)
        assert before < DEFAULT_ALARM_THRESHOLD, (seed, before)
        assert after - before > 0.3, (seed, before, after)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_seasonal_series_without_anomaly_stays_quiet(cls: type[UnivariateDetector]) -> None:
    """Daily sine plus noise never reaches the default alarm threshold after the first day."""
    for seed in range(4):
        s = _scores(cls, seasonal(seed))
        assert s[DAY:].max() < DEFAULT_ALARM_THRESHOLD, seed


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_flat_series_stays_quiet(cls: type[UnivariateDetector]) -> None:
    """A constant series (zero spread) never alarms: no division-by-zero blow-up."""
    s = _scores(cls, np.full(2000, 7.0))
    assert s.max() < DEFAULT_ALARM_THRESHOLD


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_one_alarm_per_event(cls: type[UnivariateDetector]) -> None:
    """A sustained step raises one alarm, not one per row (each extra alarm is a false positive)."""
    s = _scores(cls, CHANGES["step"](seasonal(2)))
    assert 1 <= int((s[CHANGE : CHANGE + 60] >= DEFAULT_ALARM_THRESHOLD).sum()) <= 1


def test_the_hold_off_ends_when_the_event_is_over() -> None:
    """Two spikes 40 rows apart are two events: the second alarms, though the full hold-off (80) has not
    passed; with ``release=0`` (the hold-off always runs its full length) it does not."""
    from detector.detectors.robust_likelihood import RobustLikelihood

    x = seasonal(3)
    x[CHANGE] += 60.0
    x[CHANGE + 40] += 60.0
    for release, alarms in ((10, [CHANGE, CHANGE + 40]), (0, [CHANGE])):
        det = RobustLikelihood(release=release)
        s = np.array([det.update(float(v)) for v in x])
        near = s[DAY : CHANGE + 120] >= DEFAULT_ALARM_THRESHOLD
        assert [int(i) for i in np.nonzero(near)[0] + DAY] == alarms, release
