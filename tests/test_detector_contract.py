"""One contract test for every Stateful subclass in detector/detectors/ (river style).

Every concrete :class:`~detector.detectors.base.Stateful` class defined in a
module of ``detector.detectors`` is found by walking the package; each needs
an entry in :data:`DRIVERS` (sample inputs and how to feed one), so a new
detector cannot silently escape the contract.
"""

from __future__ import annotations

import inspect
import json
import math
from collections import deque
from collections.abc import Callable
from dataclasses import astuple, is_dataclass
from typing import Any

import numpy as np
import pytest

from detector.detectors import detector_classes
from detector.detectors.base import Stateful, UnivariateDetector
from detector.windows.sketch import QuantileSketch

# Classes exempt from the contract, with the reason. (None so far.)
EXCEPTIONS: dict[str, str] = {}
SNAPSHOT_LIMIT = 2048  # bytes of JSON for the default configuration
MINUTE = 60_000


def stateful_classes() -> list[type[Stateful]]:
    """Every concrete Stateful subclass defined in a module of detector.detectors."""
    return [c for c in detector_classes(Stateful) if c.__qualname__ not in EXCEPTIONS]


CLASSES = stateful_classes()
UNIVARIATE = [c for c in CLASSES if issubclass(c, UnivariateDetector)]


# -- per-class sample inputs ----------------------------------------------------------


def _series(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    x = 50 + 10 * np.sin(np.arange(n) * 2 * np.pi / 300) + rng.normal(0, 2, n)
    x[n // 2] += 80  # one spike, so that alarm and hold-off state is exercised
    x[n // 2 + 200 : n // 2 + 260] *= 4  # and one sustained shift
    return [float(v) for v in x]


def _values(n: int, seed: int) -> list[Any]:
    return _series(n, seed)


def _timed(n: int, seed: int) -> list[Any]:
    """(positive value, window start, samples) for LevelShift."""
    return [(v, i * MINUTE, 1 + i % 7) for i, v in enumerate(_series(n, seed))]


def _counts(n: int, seed: int) -> list[Any]:
    """(errors, requests): about 2% errors, one burst of 40%, a few quiet windows."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        req = int(rng.poisson(60)) if i % 97 else 0
        p = 0.4 if n // 2 <= i < n // 2 + 40 else 0.02
        out.append((int(rng.binomial(req, p)), req))
    return out


def _traffic(n: int, seed: int) -> list[Any]:
    """(count, window start): Poisson traffic with a stop and a spike."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lam = 40.0 if i % 300 < 280 else 0.0
        lam = lam * 6 if n // 2 <= i < n // 2 + 5 else lam
        out.append((int(rng.poisson(lam)), i * MINUTE))
    return out


def _spend(n: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [(float(rng.gamma(2.0, 1.0)) * (30 if n // 2 <= i < n // 2 + 30 else 1),) for i in range(n)]


def _flags(n: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [(None if r < 0.05 else bool(r > 0.7),) for r in rng.random(n)]


def _batches(n: int, seed: int) -> list[Any]:
    """Latency batches of a quiet route (3-8 log-normal samples), twice as slow in the middle third."""
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    for i in range(n):
        sketch = QuantileSketch()
        slow = 2.0 if n // 3 <= i < 2 * n // 3 else 1.0
        for x in rng.lognormal(math.log(900.0 * slow), 0.5, int(rng.integers(3, 9))):
            sketch.add(float(x))
        out.append((sketch, i * 300_000, (i + 1) * 300_000))
    return out


Feed = Callable[[Any, Any], Any]
#: class name -> (sample inputs (n, seed), feed one input and return the output)
DRIVERS: dict[str, tuple[Callable[[int, int], list[Any]], Feed]] = {
    "RobustLikelihood": (_values, lambda d, x: d.update(x)),
    "LevelShift": (_timed, lambda d, x: d.update(*x)),
    "Alarm": (_flags, lambda d, x: d.step(*x)),
    "ProportionTest": (_counts, lambda d, x: d.update(*x)),
    "BurnRate": (_counts, lambda d, x: d.update(*x)),
    "CountTest": (_traffic, lambda d, x: d.update(*x)),
    "SpendGuard": (_spend, lambda d, x: d.update(*x)),
    "LogMeanShift": (_batches, lambda d, x: d.update(*x)),
}


def _norm(out: Any) -> str:
    """Comparable text of an output (NaN equals NaN; dataclasses by fields)."""
    if is_dataclass(out) and not isinstance(out, type):
        out = astuple(out)
    return json.dumps(out, default=repr)


def _run(cls: type[Stateful], det: Stateful, inputs: list[Any]) -> list[str]:
    feed = DRIVERS[cls.__name__][1]
    return [_norm(feed(det, x)) for x in inputs]


def _inputs(cls: type[Stateful], n: int, seed: int) -> list[Any]:
    return DRIVERS[cls.__name__][0](n, seed)


# -- the contract ----------------------------------------------------------------------


def test_there_are_detectors_to_check() -> None:
    """The walk finds the core, the signal and rate detectors, the guards and the alarm."""
    names = {c.__name__ for c in CLASSES}
    assert {
        "RobustLikelihood",
        "LevelShift",
        "Alarm",
        "ProportionTest",
        "CountTest",
        "BurnRate",
        "SpendGuard",
    } <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_class_has_sample_inputs(cls: type[Stateful]) -> None:
    """Each Stateful class has a driver here, so none escapes the contract."""
    assert cls.__name__ in DRIVERS, f"add sample inputs for {cls.__name__} to DRIVERS"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_snapshot_json_round_trip_gives_identical_future_output(cls: type[Stateful]) -> None:
    """snapshot -> JSON -> from_snapshot resumes exactly: the same outputs from then on."""
    xs = _inputs(cls, 1600, 1)
    det = cls()
    _run(cls, det, xs[:1000])
    restored = Stateful.from_snapshot(json.loads(json.dumps(det.snapshot())))
    assert type(restored) is cls
    assert json.dumps(restored.snapshot()) == json.dumps(det.snapshot())
    assert _run(cls, det, xs[1000:]) == _run(cls, restored, xs[1000:])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_clone_has_no_learned_state(cls: type[Stateful]) -> None:
    """clone() of a trained detector equals a fresh instance: same state, same outputs."""
    xs = _inputs(cls, 1200, 2)
    det = cls()
    _run(cls, det, xs[:700])
    clone, fresh = det.clone(), cls()
    assert repr(clone) == repr(det)
    assert json.dumps(clone.snapshot()) == json.dumps(fresh.snapshot())
    assert _run(cls, clone, xs) == _run(cls, fresh, xs)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_deterministic(cls: type[Stateful]) -> None:
    """Two instances fed the same input give the same outputs and the same state."""
    xs = _inputs(cls, 1200, 3)
    d1, d2 = cls(), cls()
    assert _run(cls, d1, xs) == _run(cls, d2, xs)
    assert json.dumps(d1.snapshot()) == json.dumps(d2.snapshot())


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_default_args_are_not_mutable(cls: type[Stateful]) -> None:
    """No constructor default is a mutable object shared between instances."""
    for p in inspect.signature(cls.__init__).parameters.values():
        assert not isinstance(p.default, (list, dict, set, deque, np.ndarray, Stateful)), p.name


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_snapshot_is_small(cls: type[Stateful]) -> None:
    """The default configuration's JSON snapshot stays within 2048 bytes after a long stream."""
    det = cls()
    _run(cls, det, _inputs(cls, 3000, 5))
    assert len(json.dumps(det.snapshot())) <= SNAPSHOT_LIMIT


# -- univariate detectors: the score contract ------------------------------------------


@pytest.mark.parametrize("cls", UNIVARIATE, ids=lambda c: c.__name__)
def test_univariate_scores_in_unit_interval(cls: type[UnivariateDetector]) -> None:
    """Scores of a univariate detector are all in [0, 1]."""
    det = cls()
    assert all(0.0 <= det.update(x) <= 1.0 for x in _series(1200, 3))


@pytest.mark.parametrize("cls", UNIVARIATE, ids=lambda c: c.__name__)
def test_score_one_does_not_learn_and_matches_update(cls: type[UnivariateDetector]) -> None:
    """score_one reads only; update returns what score_one said, then learns like learn_one."""
    xs = _series(900, 4)
    d1, d2 = cls(), cls()
    for x in xs:
        before = json.dumps(d1.snapshot())
        s = d1.score_one(x)
        assert json.dumps(d1.snapshot()) == before
        d1.learn_one(x)
        assert d2.update(x) == s
    assert json.dumps(d1.snapshot()) == json.dumps(d2.snapshot())


@pytest.mark.parametrize("cls", UNIVARIATE, ids=lambda c: c.__name__)
def test_non_finite_values_do_not_poison_state(cls: type[UnivariateDetector]) -> None:
    """NaN and inf inputs score in [0, 1] and leave later scores finite."""
    det = cls()
    xs = _series(800, 6)
    for i, x in enumerate(xs):
        s = det.update(float("nan") if i == 700 else float("inf") if i == 701 else x)
        assert 0.0 <= s <= 1.0 and math.isfinite(s)
