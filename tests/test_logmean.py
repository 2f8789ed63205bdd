"""LogMeanShift restored from a checkpoint written before its spans kept batch times.

What it protects: a service that restarts from such a checkpoint (its ``recent`` entries are
[deviation, samples], without the start time the horizon needs) keeps judging instead of failing on
the first batch; the old spans are dropped and the learned baseline is kept.
"""

from __future__ import annotations

import random

from detector.detectors.base import Stateful, decode_state, encode_state
from detector.detectors.logmean import LogMeanShift
from detector.windows.sketch import QuantileSketch

FIVE = 5 * 60_000


def _batch(rng: random.Random, mult: float) -> QuantileSketch:
    s = QuantileSketch()
    for _ in range(5):
        s.add(800.0 * mult * rng.lognormvariate(0.0, 0.5))
    return s


def test_a_checkpoint_without_batch_times_restores_and_keeps_judging() -> None:
    rng = random.Random(3)
    t = LogMeanShift()
    for i in range(40):
        t.update(_batch(rng, 1.0), i * FIVE, (i + 1) * FIVE)
    snap = t.snapshot()
    state = decode_state(snap["state"])
    assert all(len(e) == 3 for e in state["recent"]) and state["recent"]
    state["recent"] = [e[:2] for e in state["recent"]]  # the older layout
    snap["state"] = encode_state(state)
    old = Stateful.from_snapshot(snap)
    assert isinstance(old, LogMeanShift) and old.mean == t.mean and len(old.recent[0]) == 2
    r = old.update(_batch(rng, 1.0), 40 * FIVE, 41 * FIVE)
    assert r.judged and not r.anomalous
    assert [len(e) for e in old.recent] == [3]  # the old spans dropped, the new batch kept with its time
    found = [old.update(_batch(rng, 3.0), i * FIVE, (i + 1) * FIVE).anomalous for i in range(41, 45)]
    assert any(found), found  # a slowdown after the restore is still found


def _fixed(mult: float, n: int = 20) -> QuantileSketch:
    """``n`` latencies whose logs sit half a unit either side of ln(800 * mult)."""
    s = QuantileSketch()
    for i in range(n):
        s.add(800.0 * mult * (1.6487 if i % 2 else 0.6065))
    return s


def test_a_ramps_recent_batches_are_judged_apart_from_its_slow_start() -> None:
    """A ramp: two batches at 1.25x, then two at 1.7x. Over all four the evidence is strongest but the
    geometric mean is under 1.5x; the last two alone clear both the z and the effect size, and that span is
    the one judged (the span of highest z among those slow enough), so the ramp is found on its fourth
    batch instead of waiting until the whole span is 1.5x."""
    t = LogMeanShift()
    for i in range(40):
        t.update(_fixed(1.0), i * FIVE, (i + 1) * FIVE)
    rs = [t.update(_fixed(m), (40 + i) * FIVE, (41 + i) * FIVE) for i, m in enumerate((1.25, 1.25, 1.7, 1.7))]
    assert [r.anomalous for r in rs] == [False, False, False, True]
    assert rs[-1].observed >= 1.5 * rs[-1].baseline


def test_a_route_near_a_request_a_minute_feeds_one_log_mean_test() -> None:
    """A route whose batches of five latencies take four minutes, then six, by turns (about a request a
    minute) has all of them judged by one log-mean test, chosen by its usual batch time: chosen by each
    batch's own, the busy and the quiet test saw every other batch, and a ramp's evidence was split between
    them. The choice survives a checkpoint."""
    from detector.config import Config
    from detector.detectors.routes import RouteDetectors
    from detector.windows.aggregate import WindowAggregate

    rng = random.Random(3)
    cycle = (2, 1, 1, 1, 1, 1, 1, 1, 0, 1)  # a batch over minutes 0-3, the next over minutes 4-9
    rd = RouteDetectors(Config())
    for i in range(600):
        if i == 306:  # mid-cycle: the batch time and the choice come back with the checkpoint
            before = rd.routes["notes"]
            snap = rd.snapshot()
            rd = RouteDetectors(Config())
            rd.restore(snap)
            after = rd.routes["notes"]
            assert (after.batch_ms, after.batch_quiet) == (before.batch_ms, before.batch_quiet)
            assert after.batch_ms > 0
        w = WindowAggregate("notes", i * 60_000, (i + 1) * 60_000)
        w.requests = w.events = cycle[i % 10]
        for _ in range(w.requests):
            w.latency.add(800.0 * rng.lognormvariate(0.0, 0.4))
        rd.on_window(w)
    dets = rd.routes["notes"].dets
    tests = [dets[k] for k in ("latency_logmean", "latency_logmean_busy") if k in dets]
    assert len(tests) == 1, sorted(dets)
    lm = tests[0]
    assert isinstance(lm, LogMeanShift)
    assert lm.n >= 110  # about every batch of the 120 learned (none is anomalous)
