"""Canary analysis: a new version against the old one while both serve, in the same windows.

When 10-30% of a route's traffic runs a new prompt, model, config, index or
tool version and only that share is bad, the route-wide signals barely move.
An explicit ``change`` event (the authority for which version is new) starts
a comparison on its kind: from then on every window's per-version counters
(``WindowAggregate.versions``) of the new and the old version are pooled,
and four two-sample tests, each safe at low counts, ask whether the new
version is clearly worse:

* errors per request, and bad reviews per review: conditional binomial
  (given the errors of both versions, are too many on the new one for its
  share of the requests?), with an effect size as the rate tests have;
* latency: Welch's t on log latency, and the new version's geometric mean
  at least 1.5x the old one's;
* cost per request: at least 2.5x the old one's, on enough requests each.

The old side starts from the route's own recent traffic before the change
(forgotten over hours; a few thousand requests at most), so a quiet route's
comparison does not wait for the old version to gather errors of its own.
A comparison is judged only while the old version carries at least as much of
the traffic since the change as the new one (a canary, not a full rollout).
A change rolled out to all the traffic (at once, however quiet the route, or
a canary promoted: by a ``change`` repeating its ``from -> to``, or seen as
60 requests of the new version alone) keeps only its reviews compared with
the old version's past, for six hours after the change: reviews come late
and sparse, and counting only the new version's (not the old outputs still
being reviewed) finds a worse prompt sooner than the route's own review
test. The comparison ends when the change is rolled back (a ``change`` back
to the old version), when the new version is withdrawn (60 requests of the
old version alone, a rollout's too), or after a day (six hours for a
rollout). Which version serves the per-window majority plays no part, so a
quiet route whose majority flips back and forth is read right. The rollback
target of a firing is the old version the change named.

>>> from detector.events import ChangeEvent, ErrorEvent, UsageEvent
>>> from detector.windows.aggregate import WindowAggregate
>>> watch = CanaryWatch()
>>> def window(i, change=False):
...     w = WindowAggregate("r", i * 60_000, (i + 1) * 60_000)
...     if change:
...         w.add(ChangeEvent(event_id="c", ts=0.0, route="r", change_kind="prompt",
...                           from_version="p1", to_version="p2"), i * 60_000)
...     for k in range(20):
...         v = "p2" if k < 4 else "p1"
...         w.add(UsageEvent(event_id=f"u{i}.{k}", ts=0.0, route="r", prompt_version=v))
...         if v == "p2" and k % 2:
...             w.add(ErrorEvent(event_id=f"e{i}.{k}", ts=0.0, route="r", prompt_version=v,
...                              error_class="validation_error"))
...     return w
>>> results = [watch.on_window(window(i, change=(i == 0))) for i in range(6)]
>>> [name for name, r in results[-1].items() if r.anomalous]
['canary_errors']
>>> watch.target()
{'kind': 'prompt', 'to_version': 'p1'}
"""

from __future__ import annotations

import math
from typing import Any

from scipy.special import stdtrit

from detector.detectors.proportion import Judgement, binom_sf
from detector.events import CHANGE_KINDS, tool_identity
from detector.windows.aggregate import (
    N_STATS,
    OTHER,
    V_BAD_REVIEWS,
    V_COST,
    V_ERRORS,
    V_LAT_N,
    V_LOG_SQ,
    V_LOG_SUM,
    V_REQUESTS,
    V_REVIEWS,
    WindowAggregate,
)

__all__ = ["CanaryWatch", "CANARY_SIGNALS", "latency_t"]

#: Signal names of the comparison, one per measure.
CANARY_SIGNALS = ("canary_errors", "canary_reviews", "canary_latency", "canary_cost")
#: Every signal judged, none anomalous: what a route without a running comparison gets (read only).
QUIET: dict[str, Judgement] = dict.fromkeys(CANARY_SIGNALS, Judgement(False, 0.0, 0.0, 0.0, 0.0))
#: Conditional binomial p-value below which the new version holds too many of the bad events (a comparison
#: runs only after an explicit change, for a while: few tests, so a looser level than the rate tests').
ALPHA = 1e-3
#: The route's own traffic before a change stands for the old version's past: forgotten with this
#: half-life (windows), and at most this many requests of it are carried into a comparison.
HISTORY_HALF_LIFE = 360.0
HISTORY_REQUESTS = 5000.0
#: One-sided level of Welch's t on log latency at which the new version is slower, on any number of its samples
#: from MIN_LATENCY_NEW (Student's t quantile of its degrees of freedom, :func:`latency_t`): 7.66 on five
#: samples, 5.0 on eight, 4.2 on twelve, 3.3 on a hundred. A fixed t of 5 from the eighth sample on held a
#: canary of a few dozen requests to a level a hundred times stricter than its first eight.
LATENCY_P = 7.8e-4
MIN_LATENCY_NEW = 5
#: The t on MIN_LATENCY samples; a latency judgement's score is t over twice it.
LATENCY_T = 5.0
#: Effect sizes: rate ratio and difference (errors, reviews), latency and cost ratios.
RATE_RATIO, ERROR_DELTA, REVIEW_DELTA = 2.0, 0.05, 0.1
LATENCY_RATIO, COST_RATIO = 1.5, 2.5
#: Fewest samples per side: bad events on the new version, latency samples, requests for cost (the new
#: side's fewer, down to MIN_COST_FAST, as its cost ratio grows past COST_RATIO: see _cost).
MIN_BAD, MIN_LATENCY, MIN_COST, MIN_COST_FAST = 4, 8, 10, 4
#: Requests served by one side while the other served none, after which the comparison ends (a 15%
#: canary misses 60 requests in a row once in 17,000), and its longest life.
ENDS_AFTER = 60
MAX_LIFE_MS = 86_400_000
#: Comparisons followed per route at once (the oldest go first).
MAX_ACTIVE = 4
#: A change rolled out to all the traffic (the old version stops serving, or never served beside it) keeps
#: its reviews compared with the old version's past for this long after the change: reviews come late and
#: sparse, and a full rollout has no old version beside it. Its other measures are not judged (the route's
#: own tests see a whole route's errors, latency and cost, at their own times of day).
ROLLOUT_REVIEWS_MS = 6 * 3_600_000
#: The count of windows folded into a route's history stops here (only "enough for the warm-up?" is asked).
HISTORY_WINDOWS_MAX = 1_000_000


def _stats() -> list[float]:
    return [0.0] * N_STATS


class CanaryWatch:
    """The comparisons running on one route; state is JSON-able (see :meth:`to_dict`)."""

    def __init__(self) -> None:
        #: key (change kind, or ``tool:<identity>``) -> comparison state
        self.active: dict[str, dict[str, Any]] = {}
        #: The route's counters while no comparison runs, exponentially forgotten: the old version's past.
        self.history = _stats()
        #: Windows with traffic folded into the history (counted up to HISTORY_WINDOWS_MAX).
        self.history_windows = 0
        #: The comparison behind the last anomalous judgement: its kind and old version.
        self.last: dict[str, str] | None = None

    def on_window(self, w: WindowAggregate, warmup: int = 0) -> dict[str, Judgement]:
        """Pool this window into each comparison and judge them; every canary signal is judged (not
        anomalous while no comparison runs, so an alarm clears once a bad canary is rolled back).

        ``warmup``: the windows of history a rollout's comparison needs at its change (its old side is
        nothing but that history; a canary's old version serves beside it, so a canary needs none)."""
        if not self.active and not w.changes:  # the usual case: no comparison runs
            if w.events:
                self._remember(w)
            return QUIET
        for ch in sorted(w.changes, key=lambda c: (c.get("ts", 0), str(c.get("event_id")))):
            self._change(ch)
        for key in list(self.active):
            if not self._pool(key, self.active[key], w):
                del self.active[key]
        if w.events and all(_rolled_out(c) for c in self.active.values()):
            self._remember(w)  # no canary splits the traffic: the window is the route's own past
        out = dict(QUIET)
        for c in self.active.values():
            if _rolled_out(c):
                # the old version no longer carries most of the traffic: a rollout, not a canary; only its
                # reviews are compared, with the old version's past (a route's, once it has one)
                if c["history_windows"] < warmup:
                    continue
                judged = {"canary_reviews": _reviews(c["n"], c["o"])}
            else:
                judged = _judge(c)
            for name, r in judged.items():
                if r.anomalous and (not out[name].anomalous or r.score > out[name].score):
                    out[name] = r
                    self.last = {"kind": c["kind"], "to_version": c["old"]}
                elif not out[name].anomalous and r.judged and r.score >= out[name].score:
                    out[name] = r
        return out

    def target(self) -> dict[str, str] | None:
        """The rollback target of the last anomalous comparison: its kind and the old version."""
        return None if self.last is None else dict(self.last)

    def _change(self, ch: dict[str, Any]) -> None:
        kind, old, new = ch.get("kind"), ch.get("from_version"), ch.get("to_version")
        if kind not in CHANGE_KINDS or not old or not new or old == new:
            return
        key = f"tool:{tool_identity(str(new))}" if kind == "tool" else str(kind)
        cur = self.active.get(key)
        if cur is not None and new == cur["old"]:
            del self.active[key]  # rolled back: the comparison is over
            return
        if cur is not None and new == cur["new"]:
            cur["rollout"] = True  # promoted to all the traffic: its reviews are still watched
            cur["one_sided"] = 0.0
            return
        self.active.pop(key, None)
        scale = min(1.0, HISTORY_REQUESTS / self.history[V_REQUESTS]) if self.history[V_REQUESTS] > 0 else 1.0
        self.active[key] = {"kind": kind, "old": str(old), "new": str(new), "since": int(ch.get("ts", 0)),
                            "n": _stats(), "o": [x * scale for x in self.history], "errors": {}, "one_sided": 0,
                            "own_old": 0.0, "rollout": False,
                            "history_windows": self.history_windows}
        while len(self.active) > MAX_ACTIVE:
            del self.active[next(iter(self.active))]

    def _pool(self, key: str, c: dict[str, Any], w: WindowAggregate) -> bool:
        """Add the window's counters of both versions; False when the comparison is over."""
        if w.end - c["since"] > (ROLLOUT_REVIEWS_MS if _rolled_out(c) else MAX_LIFE_MS):
            return False
        per = w.versions.get(c["kind"], {})
        new, old = per.get(c["new"]), per.get(c["old"])
        if new is None and old is None:
            return True
        served_new = 0.0 if new is None else new[V_REQUESTS] + new[V_LAT_N] / 2
        served_old = 0.0 if old is None else old[V_REQUESTS] + old[V_LAT_N] / 2
        if c["rollout"]:
            # the new version serves alone; the old one alone again, for a while, is the rollout withdrawn
            c["one_sided"] = c["one_sided"] + served_old if served_new <= 0 else 0.0
            if c["one_sided"] >= ENDS_AFTER:
                return False
        elif served_new <= 0 or served_old <= 0:
            c["one_sided"] += served_new + served_old
            if c["one_sided"] >= ENDS_AFTER:
                if served_old > 0 or w.end - c["since"] > ROLLOUT_REVIEWS_MS:
                    return False  # the new version was withdrawn, or a canary's day is over
                c["rollout"] = True  # promoted to all the traffic: its reviews are still watched
                c["one_sided"] = 0.0
        else:
            c["one_sided"] = 0
        for acc, st in ((c["n"], new), (c["o"], old)):
            if st is not None:
                for i, x in enumerate(st[:N_STATS]):
                    acc[i] += x
        if old is not None:
            c["own_old"] += old[V_REQUESTS] + old[V_LAT_N] / 2
        if new is not None and new[V_ERRORS] > 0 and w.errors:
            errs: dict[str, int] = c["errors"]
            for cls, k in w.errors.items():
                if len(errs) < 16 or cls in errs:
                    errs[cls] = errs.get(cls, 0) + k
        return True

    def _remember(self, w: WindowAggregate) -> None:
        """Fold the window's counters (all versions) into the route's history."""
        h = self.history
        decay = 0.5 ** (1.0 / HISTORY_HALF_LIFE)
        for i in range(N_STATS):
            h[i] *= decay
        for st in w.contexts.values():
            for i, x in enumerate(st[:N_STATS]):
                h[i] += x
        if self.history_windows < HISTORY_WINDOWS_MAX:
            self.history_windows += 1

    def error_class(self) -> str | None:
        """The most frequent error class in the windows of the comparisons running (for the type)."""
        errs: dict[str, int] = {}
        for c in self.active.values():
            for cls, k in c["errors"].items():
                errs[cls] = errs.get(cls, 0) + k
        errs.pop(OTHER, None)
        return max(sorted(errs), key=errs.__getitem__) if errs else None

    def to_dict(self) -> dict[str, Any]:
        return {"active": {k: dict(c, n=list(c["n"]), o=list(c["o"]), errors=dict(c["errors"]))
                           for k, c in self.active.items()}, "last": self.last,
                "history": [round(x, 6) for x in self.history], "history_windows": self.history_windows}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CanaryWatch:
        watch = cls()
        hist = [float(x) for x in d.get("history", [])][:N_STATS]
        # a snapshot from before the count was kept: a route with a history has had its warm-up
        seen = HISTORY_WINDOWS_MAX if len(hist) > V_REQUESTS and hist[V_REQUESTS] > 0 else 0
        for k, c in d.get("active", {}).items():
            watch.active[str(k)] = dict(c, n=[float(x) for x in c["n"]], o=[float(x) for x in c["o"]],
                                        errors={str(e): int(n) for e, n in c["errors"].items()},
                                        own_old=float(c.get("own_old", 0.0)),
                                        rollout=bool(c.get("rollout", False)),
                                        history_windows=int(c.get("history_windows", seen)))
        watch.last = d.get("last")
        watch.history = hist + [0.0] * (N_STATS - len(hist))
        watch.history_windows = int(d.get("history_windows", seen))
        return watch


def _rolled_out(c: dict[str, Any]) -> bool:
    """A rollout, not a canary: promoted, or the old version has carried less of the traffic since the
    change than the new one (a change to all the traffic at once, however quiet the route)."""
    return bool(c["rollout"]) or c["own_old"] < c["n"][V_REQUESTS] + c["n"][V_LAT_N] / 2


def _judge(c: dict[str, Any]) -> dict[str, Judgement]:
    new, old = c["n"], c["o"]
    return {
        "canary_errors": _rates(new[V_ERRORS], new[V_REQUESTS], old[V_ERRORS], old[V_REQUESTS], ERROR_DELTA),
        "canary_reviews": _reviews(new, old),
        "canary_latency": _latency(new, old),
        "canary_cost": _cost(new, old),
    }


def _reviews(new: list[float], old: list[float]) -> Judgement:
    return _rates(new[V_BAD_REVIEWS], new[V_REVIEWS], old[V_BAD_REVIEWS], old[V_REVIEWS], REVIEW_DELTA)


def _rates(k1: float, n1: float, k0: float, n0: float, delta: float) -> Judgement:
    """Too many bad events on the new version for its share of the trials?

    >>> _rates(12, 40, 8, 400, 0.05).anomalous, _rates(1, 40, 8, 400, 0.05).anomalous
    (True, False)
    """
    if n1 <= 0 or n0 <= 0:
        return Judgement(False, math.nan, math.nan, math.nan, 0.0, judged=False)
    k1, k0 = min(k1, n1), min(k0, n0)
    r1, r0 = k1 / n1, (k0 + 0.5) / (n0 + 1.0)
    effect = max(RATE_RATIO * r0, r0 + delta)
    if k1 < MIN_BAD or r1 < effect:
        return Judgement(False, r1, r0, effect, 0.0)
    p = binom_sf(int(k1), int(k1 + k0), n1 / (n1 + n0))
    return Judgement(p < ALPHA, r1, r0, effect, 1.0 - p)


_T_CACHE: dict[int, float] = {}


def latency_t(n: int) -> float:
    """The t that ``n`` samples of the new version need for the level ``LATENCY_P`` (one-sided; degrees of
    freedom ``n - 1``, at most 999: the old side holds hundreds).

    >>> round(latency_t(5), 2), round(latency_t(8), 2), round(latency_t(100), 2)
    (7.66, 5.0, 3.25)
    """
    n = min(n, 1000)
    t = _T_CACHE.get(n)
    if t is None:
        t = _T_CACHE[n] = float(stdtrit(n - 1, 1.0 - LATENCY_P))
    return t


def _latency(new: list[float], old: list[float]) -> Judgement:
    n1, n0 = new[V_LAT_N], old[V_LAT_N]
    if n1 < MIN_LATENCY_NEW or n0 < MIN_LATENCY:
        return Judgement(False, math.nan, math.nan, math.nan, 0.0, judged=False)
    m1, m0 = new[V_LOG_SUM] / n1, old[V_LOG_SUM] / n0
    v1 = max(new[V_LOG_SQ] / n1 - m1 * m1, 1e-6) * n1 / (n1 - 1)
    v0 = max(old[V_LOG_SQ] / n0 - m0 * m0, 1e-6) * n0 / (n0 - 1)
    t = (m1 - m0) / math.sqrt(v1 / n1 + v0 / n0)
    g1, g0 = math.exp(m1), math.exp(m0)
    # the degrees of freedom of the smaller side (the new one, but for an old side with few latencies)
    anomalous = t >= latency_t(int(min(n1, n0))) and g1 >= LATENCY_RATIO * g0
    return Judgement(anomalous, g1, g0, LATENCY_RATIO * g0, min(1.0, max(0.0, t / (2 * LATENCY_T))))


def _cost(new: list[float], old: list[float]) -> Judgement:
    """The new version's cost per request against the old one's: at least COST_RATIO times, on MIN_COST
    requests of the new version, or fewer the further past that ratio it is (twice: half as many).

    >>> _cost([0, 5, 0, 0, 0, 0, 0, 0.5] + [0, 0], [0, 1000, 0, 0, 0, 0, 0, 10.0] + [0, 0]).anomalous
    True
    >>> _cost([0, 5, 0, 0, 0, 0, 0, 0.15] + [0, 0], [0, 1000, 0, 0, 0, 0, 0, 10.0] + [0, 0]).judged
    False
    """
    n1, n0 = new[V_REQUESTS], old[V_REQUESTS]
    if n1 < MIN_COST_FAST or n0 < MIN_COST or old[V_COST] <= 0:
        return Judgement(False, math.nan, math.nan, math.nan, 0.0, judged=False)
    c1, c0 = new[V_COST] / n1, old[V_COST] / n0
    ratio = c1 / c0
    if n1 < MIN_COST and n1 * ratio < MIN_COST * COST_RATIO:
        return Judgement(False, math.nan, math.nan, math.nan, 0.0, judged=False)
    return Judgement(ratio >= COST_RATIO, c1, c0, COST_RATIO * c0, min(1.0, ratio / (2 * COST_RATIO)))
