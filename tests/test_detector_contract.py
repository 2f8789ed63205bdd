"""One contract test for every UnivariateDetector subclass in detector/detectors/ (river style)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from collections import deque

import numpy as np
import pytest

import detector.detectors as detectors_pkg
from detector.detectors.base import UnivariateDetector

# Classes exempt from the contract, with the reason. (None so far.)
EXCEPTIONS: dict[str, str] = {}
SNAPSHOT_LIMIT = 2048  # bytes of JSON for the default configuration


def univariate_classes() -> list[type[UnivariateDetector]]:
    """Every concrete UnivariateDetector subclass defined in a module of detector.detectors."""
    found: dict[str, type[UnivariateDetector]] = {}
    for info in pkgutil.iter_modules(detectors_pkg.__path__):
        module = importlib.import_module(f"{detectors_pkg.__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, UnivariateDetector)
                and not inspect.isabstract(obj)
                and obj.__module__ == module.__name__
                and obj.__qualname__ not in EXCEPTIONS
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


CLASSES = univariate_classes()


def _series(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    x = 50 + 10 * np.sin(np.arange(n) * 2 * np.pi / 300) + rng.normal(0, 2, n)
    x[n // 2] += 80  # one spike, so that alarm and hold-off state is exercised
    return [float(v) for v in x]


def test_there_are_detectors_to_check() -> None:
    """The walk finds the univariate core (a broken import would otherwise silence every test)."""
    assert CLASSES


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_snapshot_json_round_trip_gives_identical_future_scores(cls: type[UnivariateDetector]) -> None:
    """snapshot -> JSON -> from_snapshot resumes exactly: the same scores from then on."""
    xs = _series(1600, 1)
    det = cls()
    for x in xs[:1000]:
        det.update(x)
    restored = UnivariateDetector.from_snapshot(json.loads(json.dumps(det.snapshot())))
    assert type(restored) is cls
    assert [det.update(x) for x in xs[1000:]] == [restored.update(x) for x in xs[1000:]]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_clone_has_no_learned_state(cls: type[UnivariateDetector]) -> None:
    """clone() of a trained detector behaves exactly like a fresh instance."""
    xs = _series(1200, 2)
    det = cls()
    for x in xs[:700]:
        det.update(x)
    clone, fresh = det.clone(), cls()
    assert repr(clone) == repr(det)
    assert [clone.update(x) for x in xs] == [fresh.update(x) for x in xs]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_deterministic_and_in_unit_interval(cls: type[UnivariateDetector]) -> None:
    """Two runs on the same input give the same scores, all in [0, 1]."""
    xs = _series(1200, 3)
    d1, d2 = cls(), cls()
    a = [d1.update(x) for x in xs]
    b = [d2.update(x) for x in xs]
    assert a == b
    assert all(0.0 <= s <= 1.0 for s in a)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
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


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_default_args_are_not_mutable(cls: type[UnivariateDetector]) -> None:
    """No constructor default is a mutable object shared between instances."""
    for p in inspect.signature(cls.__init__).parameters.values():
        assert not isinstance(p.default, (list, dict, set, deque, np.ndarray)), p.name


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_snapshot_is_small(cls: type[UnivariateDetector]) -> None:
    """The default configuration's JSON snapshot stays within 2048 bytes after a long stream."""
    det = cls()
    for x in _series(3000, 5):
        det.update(x)
    assert len(json.dumps(det.snapshot())) <= SNAPSHOT_LIMIT


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_non_finite_values_do_not_poison_state(cls: type[UnivariateDetector]) -> None:
    """NaN and inf inputs score in [0, 1] and leave later scores finite."""
    det = cls()
    xs = _series(800, 6)
    for i, x in enumerate(xs):
        s = det.update(float("nan") if i == 700 else float("inf") if i == 701 else x)
        assert 0.0 <= s <= 1.0
