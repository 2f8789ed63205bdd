"""Latency of a quiet route: the mean of log latency over its last few batches of requests.

A route of a request or two a minute is judged on a median of five or so
latencies pooled over several windows; a median of five is a noisy
statistic, so the level test's threshold sits at 2-2.5x the baseline and a
slowdown that ramps up to about that (a saturating backend, a degrading
index) can stay under it for an hour. The mean of log latency uses every
sample (for log-normal latencies it is the most efficient estimate of the
median), and summed over the last few batches it gathers the evidence a
ramp spreads over half an hour: a z-test of the summed deviations against
the route's learned mean and spread (the larger of one sample's and what whole batches' means show,
so latency that moves with load is not read as independent evidence), with an effect size (the geometric
mean at least ``min_ratio`` x the baseline; of the spans that clear it, the one of highest z is judged:
a ramp's recent batches, not the longer span its slow start dilutes). Each sample's deviation is
clipped at ``clip`` standard deviations, so one timeout does not make a
slowdown.

Samples are read from the batch's :class:`~detector.windows.sketch.QuantileSketch`
(:meth:`~detector.windows.sketch.QuantileSketch.log_values`: log-spaced buckets, so the log of each
sample is known to 1%).

>>> import random
>>> from detector.windows.sketch import QuantileSketch
>>> rng = random.Random(7)
>>> def batch(mult: float, n: int = 5) -> QuantileSketch:
...     s = QuantileSketch()
...     for _ in range(n):
...         s.add(800.0 * mult * rng.lognormvariate(0.0, 0.5))
...     return s
>>> t = LogMeanShift()
>>> five = 5 * 60_000  # a batch every five minutes
>>> [t.update(batch(1.0), i * five, (i + 1) * five).anomalous for i in range(60)].count(True)
0
>>> [t.update(batch(2.0), i * five, (i + 1) * five).anomalous for i in range(60, 64)]   # twice as slow
[False, False, False, True]

Batches hours apart never make one span (``horizon_ms``), and with ``confirm=2`` a span must pass on
two batches in a row:

>>> u = LogMeanShift(confirm=2)
>>> _ = [u.update(batch(1.0), i * five, (i + 1) * five) for i in range(60)]
>>> hour = 3_600_000
>>> [u.update(batch(3.0), t, t + five).anomalous for t in (10 * hour, 13 * hour, 16 * hour)]
[False, False, False]
>>> [u.update(batch(3.0), 16 * hour + i * five, 16 * hour + (i + 1) * five).anomalous for i in (1, 2)]
[False, True]
"""

from __future__ import annotations

import math

from detector.detectors.base import Stateful
from detector.detectors.numeric import ew_weight
from detector.detectors.proportion import Judgement
from detector.windows.sketch import QuantileSketch

__all__ = ["LogMeanShift"]

_NOT_JUDGED = Judgement(False, math.nan, math.nan, math.nan, 0.0, judged=False)


class LogMeanShift(Stateful):
    """Upward shift of the mean of log latency, over spans of the last ``spans`` batches.

    Parameters
    ----------
    z
        z-score of a span's summed (clipped) deviations that is anomalous.
    min_ratio
        Effect size: the span's geometric mean over the baseline's.
    spans
        Batches the longest span holds (each span ends with the newest batch and holds two or more: a
        batch alone is the level test's to judge, and a blip of one batch is no slowdown).
    half_life
        Batches for the baseline's exponential forgetting.
    min_batches
        Batches learned before any is judged.
    clip
        Standard deviations at which one sample's deviation is clipped.
    drift_z
        A batch whose own z reaches this is not learned (the start of a ramp is no baseline).
    horizon_ms
        A span holds only batches that began within this long of the newest batch's end: a route that
        goes quiet for hours (or whose batches alternate between this test and another) must not join
        a batch of this morning to one of this evening.
    confirm
        Consecutive batches whose spans must pass the test before one is anomalous (the last
        ``confirm`` batches each end a span past ``z`` and ``min_ratio``): 2 on a busy route, where a batch
        comes every minute or two and a blip of two batches can reach any z a few times a week.
    """

    __slots__ = ("z", "min_ratio", "spans", "half_life", "min_batches", "clip", "drift_z",
                 "horizon_ms", "confirm", "mean", "var", "bvar", "n", "recent", "streak")

    def __init__(self, z: float = 4.5, min_ratio: float = 1.5, spans: int = 4, half_life: float = 100.0,
                 min_batches: int = 20, clip: float = 3.0, drift_z: float = 2.0, horizon_ms: int = 2 * 3_600_000,
                 confirm: int = 1):
        self.z = z
        self.min_ratio = min_ratio
        self.spans = spans
        self.half_life = half_life
        self.min_batches = min_batches
        self.clip = clip
        self.drift_z = drift_z
        self.horizon_ms = horizon_ms
        self.confirm = confirm
        super().__init__()

    def _reset(self) -> None:
        self.mean = 0.0  # of ln(latency ms)
        self.var = 0.0  # of one sample's ln(latency), about ``mean``
        #: of a batch's mean deviation times its samples: ``var`` when samples are independent, more when
        #: batches differ as wholes (load, time of day), which a sum over samples must not count as evidence
        self.bvar = 0.0
        self.n = 0  # batches learned
        #: [summed clipped deviations from the mean, samples, start ms] of the last ``spans`` batches judged
        self.recent: list[list[float]] = []
        self.streak = 0  # consecutive batches judged whose spans passed the test

    def update(self, sketch: QuantileSketch, start: int, end: int) -> Judgement:
        """Judge a batch of latencies (its sketch; gathered from ``start`` to ``end``, epoch ms), then learn
        it unless it is anomalous or drifting."""
        logs = sketch.log_values()
        count = sum(c for _, c in logs)
        if not count:
            return _NOT_JUDGED
        lim = self.clip * math.sqrt(max(self.var, 1e-4))
        dev = sum(c * min(max(y - self.mean, -lim), lim) for y, c in logs)  # clipped, from the mean
        if self.n < self.min_batches:
            self._learn(logs, count, dev, lim)
            return _NOT_JUDGED
        sd = math.sqrt(max(self.var, self.bvar, 1e-4))
        recent = self.recent
        if recent and len(recent[0]) < 3:
            recent.clear()  # restored from a checkpoint of a version that kept no batch times
        recent.append([dev, float(count), float(start)])
        if len(recent) > self.spans:
            del recent[0]
        while len(recent) > 1 and recent[0][2] < end - self.horizon_ms:
            del recent[0]
        # the span of highest z among those slow enough (a ramp's recent batches), else of highest z
        best_z, best, sized = -math.inf, (dev, float(count)), False
        least = math.log(self.min_ratio)
        s = m = 0.0
        for i, (d, k, _) in enumerate(reversed(recent)):
            s += d
            m += k
            zz = s / (sd * math.sqrt(m))
            big = s / m >= least
            # two batches or more (one batch alone is the level test's to judge); a span slow enough beats one
            # that is not, and of two alike the higher z wins
            if i and (big > sized or big == sized and zz > best_z):
                best_z, best, sized = zz, (s, m), big
        s, m = best
        base = math.exp(self.mean)
        observed = math.exp(self.mean + s / m)
        hit = best_z >= self.z and sized
        self.streak = self.streak + 1 if hit else 0
        anomalous = hit and self.streak >= self.confirm
        threshold = max(math.exp(self.mean + self.z * sd / math.sqrt(m)), base * self.min_ratio)
        score = 1.0 - 0.5 * math.erfc(best_z / math.sqrt(2.0))
        if not hit and dev / (sd * math.sqrt(count)) < self.drift_z:
            self._learn(logs, count, dev, lim)
        return Judgement(anomalous, observed, base, threshold, score)

    def _learn(self, logs: list[tuple[float, int]], count: int, dev: float, lim: float) -> None:
        """Fold a batch in; ``dev`` is its summed deviation from the mean, each clipped at ``lim``."""
        mean = sum(y * c for y, c in logs) / count
        if self.n == 0:
            self.mean = mean
            self.var = self.bvar = sum(c * (y - mean) ** 2 for y, c in logs) / max(count - 1, 1)
        else:
            a = ew_weight(self.half_life, self.n)
            sq = sum(c * min((y - self.mean) ** 2, lim * lim) for y, c in logs) / count
            self.mean += a * (mean - self.mean)
            self.var += a * (sq - self.var)
            self.bvar += a * (dev * dev / count - self.bvar)
        self.n += 1
