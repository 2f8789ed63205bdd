"""A change rolled out to all the traffic keeps its reviews compared with the old version's past.

What it protects: a prompt rolled out to every request at once has no old version beside it, so the
canary comparison's sides cannot be split in time; its reviews (late and sparse) are still pooled from
the change on and compared with the route's own reviews before it, and a clearly worse rejection rate
opens the comparison's ``canary_reviews`` firing with the rollback to the old version. A rollout that is
no worse stays quiet (few false calls over its six hours), a rollback ends the watch, and the watch ends
six hours after the change. Only the reviews are judged in a rollout: the route's own tests see its
errors, latency and cost.
"""

from __future__ import annotations

import json
import random

from detector.detectors.canary import ROLLOUT_REVIEWS_MS, CanaryWatch
from detector.events import ChangeEvent, ErrorEvent, ReviewEvent, UsageEvent
from detector.windows.aggregate import WindowAggregate

MIN = 60_000
CHANGE_AT = 600  # minutes of history before the change


def _window(i: int, version: str, reject: float, rng: random.Random, change: tuple[str, str] | None = None,
            requests: int = 4, reviews: float = 0.15, errors: int = 0) -> WindowAggregate:
    w = WindowAggregate("r", i * MIN, (i + 1) * MIN)
    if change is not None:
        w.add(ChangeEvent(event_id=f"c{i}", ts=0.0, route="r", change_kind="prompt",
                          from_version=change[0], to_version=change[1]), i * MIN)
    for k in range(requests):
        w.add(UsageEvent(event_id=f"u{i}.{k}", ts=0.0, route="r", prompt_version=version))
        if k < errors:
            w.add(ErrorEvent(event_id=f"e{i}.{k}", ts=0.0, route="r", prompt_version=version,
                             error_class="validation_error"))
        if rng.random() < reviews:
            outcome = "rejected" if rng.random() < reject else "accepted"
            w.add(ReviewEvent(event_id=f"r{i}.{k}", ts=0.0, route="r", prompt_version=version, outcome=outcome))
    return w


def _rollout(rng: random.Random, reject_after: float, minutes: int, watch: CanaryWatch | None = None,
             errors_after: int = 0, warmup: int = 0) -> tuple[CanaryWatch, int | None]:
    """History on p1 (4% rejected), then p2 on all the traffic; the minute after the change of the first
    anomalous canary judgement, or None."""
    watch = watch or CanaryWatch()
    for i in range(CHANGE_AT):
        watch.on_window(_window(i, "p1", 0.04, rng))
    for i in range(CHANGE_AT, CHANGE_AT + minutes):
        w = _window(i, "p2", reject_after, rng, change=("p1", "p2") if i == CHANGE_AT else None,
                    errors=errors_after)
        out = watch.on_window(w, warmup=warmup)
        if any(r.anomalous for r in out.values()):
            return watch, i - CHANGE_AT
    return watch, None


def test_a_worse_prompt_rolled_out_to_all_the_traffic_is_found_by_its_reviews_with_its_rollback() -> None:
    delays = []
    for seed in range(20):
        watch, found = _rollout(random.Random(seed), 0.4, 120)
        assert found is not None, seed  # 0.6 reviews a minute, 40% rejected against 4%
        delays.append(found)
        assert watch.target() == {"kind": "prompt", "to_version": "p1"}
    assert sorted(delays)[10] <= 30, delays  # the median: a handful of rejections after the change


def test_a_rollout_no_worse_than_before_stays_quiet_through_its_watch() -> None:
    false_calls = sum(_rollout(random.Random(1000 + seed), 0.04, ROLLOUT_REVIEWS_MS // MIN)[1] is not None
                      for seed in range(100))
    assert false_calls <= 3, false_calls  # the comparison's level is 1e-3, looked at over six hours


def test_only_the_reviews_of_a_rollout_are_judged() -> None:
    """Every request of the new version failing is the route's own error tests' to find (at their own
    times of day), not a comparison with a past that never saw this hour."""
    rng = random.Random(7)
    _, found = _rollout(rng, 0.04, 60, errors_after=4)
    assert found is None


def test_a_rollback_ends_the_watch_and_it_ends_six_hours_after_the_change() -> None:
    rng = random.Random(3)
    watch, found = _rollout(rng, 0.04, 30)
    assert found is None and "prompt" in watch.active and watch.active["prompt"]["rollout"] is True
    watch.on_window(_window(CHANGE_AT + 30, "p1", 0.04, rng, change=("p2", "p1")))
    assert not watch.active
    watch, _ = _rollout(random.Random(4), 0.04, ROLLOUT_REVIEWS_MS // MIN + 5)
    assert not watch.active


def test_a_rollout_watch_restored_from_its_snapshot_judges_as_the_live_one() -> None:
    rng = random.Random(11)
    live, found = _rollout(rng, 0.04, 20)
    assert found is None
    restored = CanaryWatch.from_dict(json.loads(json.dumps(live.to_dict())))
    for i in range(CHANGE_AT + 20, CHANGE_AT + 200):
        w = _window(i, "p2", 0.5, rng)
        a, b = live.on_window(w), restored.on_window(w)
        assert a == b
    assert a["canary_reviews"].anomalous and restored.target() == {"kind": "prompt", "to_version": "p1"}


def test_a_rollout_on_a_route_younger_than_its_warm_up_is_not_judged() -> None:
    """A rollout's old side is nothing but the route's history: with fewer windows of it than the warm-up
    asks of every other test, the comparison waits (a canary's old version serves beside it and does not)."""
    rng = random.Random(5)
    watch = CanaryWatch()
    for i in range(CHANGE_AT, CHANGE_AT + 150):  # 30 windows of history, then the change
        after = i >= CHANGE_AT + 30
        w = _window(i, "p2" if after else "p1", 0.5 if after else 0.04, rng,
                    change=("p1", "p2") if i == CHANGE_AT + 30 else None)
        out = watch.on_window(w, warmup=60)
        assert not any(r.anomalous for r in out.values())
    assert watch.active["prompt"]["rollout"] is True
    _, found = _rollout(random.Random(5), 0.5, 120, watch=CanaryWatch(), warmup=60)
    assert found is not None  # with a history of CHANGE_AT windows before it, the same rollout is found


def _canary_window(i: int, share_new: float, reject_new: float, rng: random.Random,
                   change: tuple[str, str] | None = None) -> WindowAggregate:
    """Four requests; each on p2 with probability ``share_new``; p1's reviews 4% rejected."""
    w = WindowAggregate("r", i * MIN, (i + 1) * MIN)
    if change is not None:
        w.add(ChangeEvent(event_id=f"c{i}", ts=0.0, route="r", change_kind="prompt",
                          from_version=change[0], to_version=change[1]), i * MIN)
    for k in range(4):
        v = "p2" if rng.random() < share_new else "p1"
        w.add(UsageEvent(event_id=f"u{i}.{k}", ts=0.0, route="r", prompt_version=v))
        if rng.random() < 0.15:
            bad = rng.random() < (reject_new if v == "p2" else 0.04)
            w.add(ReviewEvent(event_id=f"r{i}.{k}", ts=0.0, route="r", prompt_version=v,
                              outcome="rejected" if bad else "accepted"))
    return w


def test_a_canary_promoted_by_a_change_event_keeps_its_reviews_watched() -> None:
    """The promotion is announced with the canary's own ``from -> to`` (a change to all the traffic): it
    is no rollback, and the promoted version's reviews are still compared with the old version's past."""
    found = 0
    for seed in range(10):
        rng = random.Random(500 + seed)
        watch = CanaryWatch()
        for i in range(CHANGE_AT):
            watch.on_window(_canary_window(i, 0.0, 0.04, rng))
        for i in range(CHANGE_AT, CHANGE_AT + 60):  # a healthy 25% canary for an hour
            watch.on_window(_canary_window(i, 0.25, 0.04, rng, change=("p1", "p2") if i == CHANGE_AT else None))
        for i in range(CHANGE_AT + 60, CHANGE_AT + 240):  # promoted; its outputs now half rejected
            out = watch.on_window(_canary_window(i, 1.0, 0.5, rng, change=("p1", "p2") if i == CHANGE_AT + 60
                                                 else None))
            if out["canary_reviews"].anomalous:
                found += 1
                assert watch.target() == {"kind": "prompt", "to_version": "p1"}
                break
    assert found == 10, found


def test_a_rollout_withdrawn_without_a_change_event_ends_its_watch_and_its_alarm() -> None:
    rng = random.Random(21)
    watch, found = _rollout(rng, 0.5, 120)
    assert found is not None
    for i in range(CHANGE_AT + found + 1, CHANGE_AT + 30):
        out = watch.on_window(_window(i, "p2", 0.5, rng))
    assert watch.active["prompt"]["rollout"] is True and out["canary_reviews"].anomalous
    for i in range(CHANGE_AT + 30, CHANGE_AT + 60):  # p1 alone again, 4 requests a minute
        out = watch.on_window(_window(i, "p1", 0.04, rng))
    assert not watch.active and not out["canary_reviews"].anomalous


def test_old_outputs_after_a_promotion_do_not_make_the_rollout_a_canary_again() -> None:
    """Once promoted, p1 serving again beside p2 (stragglers, a retry path) leaves only the reviews judged:
    p2's errors stay the route's own tests' to find."""
    rng = random.Random(8)
    watch, found = _rollout(rng, 0.04, 20)
    assert found is None and watch.active["prompt"]["rollout"] is True
    for i in range(CHANGE_AT + 20, CHANGE_AT + 80):
        w = _window(i, "p1", 0.04, rng, requests=6)
        for k in range(2):
            w.add(UsageEvent(event_id=f"n{i}.{k}", ts=0.0, route="r", prompt_version="p2"))
            w.add(ErrorEvent(event_id=f"ne{i}.{k}", ts=0.0, route="r", prompt_version="p2",
                             error_class="validation_error"))
        out = watch.on_window(w)
        assert not out["canary_errors"].anomalous, i


def test_a_rollout_on_a_quiet_route_is_watched_six_hours_and_the_history_is_kept() -> None:
    """A route of four requests an hour never serves 60 requests of the new version alone within the six
    hours; the old version serving none of the traffic since the change is what makes it a rollout."""
    rng = random.Random(9)
    watch = CanaryWatch()

    def quiet(i: int, version: str, change: tuple[str, str] | None = None) -> WindowAggregate:
        return _window(i, version, 0.04, rng, change=change, requests=1 if i % 15 == 0 else 0, reviews=0.5)

    for i in range(0, 6000):
        watch.on_window(quiet(i, "p1"))
    before = watch.history_windows
    start = 6000
    for i in range(start, start + ROLLOUT_REVIEWS_MS // MIN + 30):
        watch.on_window(quiet(i, "p2", change=("p1", "p2") if i == start else None))
        if i == start + 120:
            assert "prompt" in watch.active
    assert not watch.active  # six hours after the change, not a day
    assert watch.history_windows > before + 20  # the rollout's windows are the route's own past


def test_a_snapshot_from_before_the_window_count_still_judges_a_rollout() -> None:
    """Snapshots written before ``history_windows`` existed restore a route with a history as warmed up."""
    rng = random.Random(13)
    live = CanaryWatch()
    for i in range(CHANGE_AT):
        live.on_window(_window(i, "p1", 0.04, rng), warmup=60)
    snap = live.to_dict()
    del snap["history_windows"]
    restored = CanaryWatch.from_dict(json.loads(json.dumps(snap)))
    assert restored.history_windows >= 60
    fired = None
    for i in range(CHANGE_AT, CHANGE_AT + 120):
        w = _window(i, "p2", 0.5, rng, change=("p1", "p2") if i == CHANGE_AT else None)
        a, b = live.on_window(w, warmup=60), restored.on_window(w, warmup=60)
        assert a["canary_reviews"].anomalous == b["canary_reviews"].anomalous
        if b["canary_reviews"].anomalous:
            fired = i
            break
    assert fired is not None
