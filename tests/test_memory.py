"""Memory per route (issue 11, item 4).

What these protect: the per-signal histories are plain lists (a deque's first block alone is about 600
bytes, and every signal of every route has histories), an alarm keeps its fields in slots; a checkpoint
written before (histories as deques) still restores, as lists, and goes on exactly as the live detector does.
"""

from __future__ import annotations

import random
from typing import Any

from detector.detectors.base import Stateful
from detector.detectors.proportion import CountTest, ProportionTest
from detector.detectors.robust_likelihood import RobustLikelihood
from detector.detectors.signals import Alarm


def as_before(snap: Any, field: str, maxlen: int) -> Any:
    """The snapshot as the code before wrote it: ``field`` held as a deque."""
    snap = {**snap, "state": dict(snap["state"])}
    state = snap["state"]["__dict"] if "__dict" in snap["state"] else snap["state"]
    state[field] = {"__deque": state[field], "maxlen": maxlen}
    return snap


def test_histories_restored_from_deques_go_on_like_the_live_detectors() -> None:
    rng = random.Random(4)
    prop, count, core = ProportionTest(), CountTest(), RobustLikelihood()
    for m in range(300):
        prop.update(rng.randrange(3), 40)
        count.update(rng.randrange(20, 40), m * 60_000)
        core.learn_one(rng.gauss(5.0, 1.0))
    old = [Stateful.from_snapshot(as_before(prop.snapshot(), "recent", prop.max_span)),
           Stateful.from_snapshot(as_before(count.snapshot(), "recent", count.max_span)),
           Stateful.from_snapshot(as_before(core.snapshot(), "raws", core.short_window))]
    assert type(old[0].recent) is list  # the old shape (a deque) is read as the list it is now
    for m in range(300, 400):
        k, c, x = (9 if 350 <= m < 360 else rng.randrange(3)), rng.randrange(0, 40), rng.gauss(5.0, 1.0)
        assert old[0].update(k, 40) == prop.update(k, 40)
        assert old[1].update(c, m * 60_000) == count.update(c, m * 60_000)
        assert old[2].score_one(x) == core.score_one(x)
        old[2].learn_one(x)
        core.learn_one(x)
    assert list(old[0].recent) == prop.recent and old[0].recent_k == prop.recent_k
    assert list(old[1].recent) == count.recent and list(old[2].raws) == core.raws


def test_histories_stay_bounded() -> None:
    prop, count, core = ProportionTest(), CountTest(), RobustLikelihood()
    for m in range(500):
        prop.update(1, 50)
        count.update(30, m * 60_000)
        core.learn_one(float(m % 7))
    assert len(prop.recent) == prop.max_span and len(count.recent) == count.max_span
    assert len(core.raws) == core.short_window


def test_an_alarm_has_no_instance_dict_and_round_trips() -> None:
    a = Alarm(warmup=0, persistence=2, clear_after=3)
    a.step(True)
    a.step(True)
    assert not hasattr(a, "__dict__")
    b = Alarm.from_snapshot(a.snapshot())
    assert b.snapshot() == a.snapshot() and b.firing
    old = a.snapshot()
    old["state"] = {"__dict": {**old["state"]["__dict"], "retired_field": 1}}  # a field an older version had
    assert Alarm.from_snapshot(old).snapshot() == a.snapshot()


def test_a_core_checkpoint_from_before_the_short_mean_goes_on_without_false_novelty() -> None:
    """A snapshot written before the short mean's range existed restores: the mean starts afresh and its
    range is watched only after ``short_window`` values, so the restored core raises no alarm on ordinary values."""
    rng = random.Random(5)
    core = RobustLikelihood()
    for _ in range(1500):
        core.update(rng.gauss(50.0, 2.0))
    snap = core.snapshot()
    state = dict(snap["state"]["__dict"])
    for field in ("mean_n", "mean", "mean_lo", "mean_hi"):
        del state[field]
    old = RobustLikelihood.from_snapshot({**snap, "state": {"__dict": state}})
    assert old.mean_n == 0
    assert max(old.update(rng.gauss(50.0, 2.0)) for _ in range(200)) < old.threshold
    assert old.mean_n == old.short_window and old.mean_lo < 50.0 < old.mean_hi
    assert old.update(90.0) >= old.threshold  # and still finds a new extreme
