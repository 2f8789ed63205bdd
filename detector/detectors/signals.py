"""Level shifts of a continuous signal, and the alarm logic every signal shares.

:class:`LevelShift` judges one value per window (a latency quantile, spend,
cost per request, tokens, a key's request count). Two things must agree
before a value is anomalous:

* **the univariate core** -- :func:`core_detector`, the same
  :class:`~detector.detectors.robust_likelihood.RobustLikelihood` in the
  same configuration that ``detector bench nab`` scores -- run on the
  log-transformed series ``log(max(x, floor))`` must call the value
  surprising (its score before hold-off reaches ``core_threshold``);
* **the effect-size guard** -- against a robust, seasonal baseline on the
  same log scale (an exponentially weighted mean and mean absolute
  deviation, with an hour-of-day profile once a slot has enough history),
  the value must be ``z`` deviations away *and* ``min_ratio`` times the
  baseline (sample-size aware: a quantile of ``n`` samples is judged with
  ``1 / sqrt(n)`` of the spread).

Once a value is anomalous the guard alone keeps the following values
anomalous. Values judged anomalous are learned neither by the guard's
baseline nor by the core, so an incident cannot teach the detector that it
is normal (a core that learned a six-hour incident would not recognise the
same incident two hours later).

:class:`Alarm` adds warm-up, persistence before firing and hysteresis
before clearing.

>>> d = LevelShift()
>>> import random
>>> rng = random.Random(1)
>>> for i in range(1000):
...     _ = d.update(300 * rng.lognormvariate(0, 0.1), i * 60_000)
>>> d.update(310.0, 1000 * 60_000).anomalous
False
>>> r = d.update(1200.0, 1001 * 60_000)
>>> r.anomalous, round(r.baseline, -1), r.score >= d.core_threshold
(True, 300.0, True)
"""

from __future__ import annotations

import math

from detector.detectors.base import Stateful
from detector.detectors.numeric import ew_weight
from detector.detectors.proportion import Judgement
from detector.detectors.robust_likelihood import RobustLikelihood

__all__ = ["LevelShift", "Alarm", "core_detector"]


def core_detector() -> RobustLikelihood:
    """The univariate core every continuous signal runs (and ``detector bench nab`` scores)."""
    return RobustLikelihood()


class LevelShift(Stateful):
    """Upward (or downward) shift of a positive signal: the univariate core plus an effect-size guard.

    Parameters
    ----------
    z
        Robust z-score (in log space) a value must also reach (effect-size guard).
    min_ratio
        Effect size: observed must also be at least ``min_ratio`` x baseline.
    min_scale
        Floor of the log-scale deviation (0.05 is about 5% relative spread).
    half_life
        Windows for the overall level's forgetting; slots use ``slot_half_life``.
    slot_min
        Values a time-of-day slot needs before it is trusted.
    direction
        ``"up"``, ``"down"`` or ``"both"``.
    min_value
        Observed values below this are never anomalous upward (noise floor).
    floor
        Values are judged as ``log(max(x, floor))``: relative changes count,
        whatever the unit (milliseconds, dollars per request, tokens).
    core_threshold
        The core's score (before its hold-off) at which a value is surprising.
    cusum_h
        With ``cusum_h > 0``, in hours with history of their own, a one-sided CUSUM (held at most at
        ``cusum_h``) of the guard's z-scores (each capped at 4, less
        ``cusum_k``) also makes a value anomalous once it reaches ``cusum_h``, if the value is at
        least ``cusum_ratio`` x baseline: a ramp that creeps up over half an hour is found before it
        is a level shift. Values adding to the sum are not learned (the baseline would follow the
        ramp); a sum that has been over ``cusum_h`` for ``cusum_accept`` values is reset, so a slower
        level that lasts becomes the new normal instead of an alarm that never ends.
    """

    def __init__(
        self,
        z: float = 5.0,
        min_ratio: float = 1.5,
        min_scale: float = 0.05,
        half_life: float = 360.0,
        slot_half_life: float = 30.0,
        slot_min: int = 30,
        direction: str = "up",
        min_value: float = 0.0,
        floor: float = 1.0,
        core_threshold: float = 0.5,
        cusum_h: float = 0.0,
        cusum_k: float = 1.5,
        cusum_ratio: float = 1.3,
        cusum_accept: int = 90,
    ):
        self.z = z
        self.min_ratio = min_ratio
        self.min_scale = min_scale
        self.half_life = half_life
        self.slot_half_life = slot_half_life
        self.slot_min = slot_min
        self.direction = direction
        self.min_value = min_value
        self.floor = floor
        self.core_threshold = core_threshold
        self.cusum_h = cusum_h
        self.cusum_k = cusum_k
        self.cusum_ratio = cusum_ratio
        self.cusum_accept = cusum_accept
        super().__init__()

    def _reset(self) -> None:
        self.mean = 0.0
        self.dev = 0.0
        self.n = 0
        self.slot_mean = [0.0] * 24
        self.slot_n = [0] * 24
        self.core = core_detector()
        self.active = False  # the last judged value was anomalous
        self.cusum = 0.0  # one-sided CUSUM of the guard's z-scores (see cusum_h)
        self.over = 0  # judged values since the sum last went over cusum_h

    @staticmethod
    def _slot(ts_ms: int) -> int:
        return int(ts_ms // 3_600_000) % 24

    def _expected(self, ts_ms: int) -> float:
        """The expected log value at ``ts_ms``: the hour's own level once it has history, else the overall.

        An upward test expects the highest of the hour and its neighbours with history (a downward test
        the lowest): a value is unusual for its hour only if it is for the hours around it too. An hour
        whose first history was an incident's (latency that fell while a provider failed requests fast)
        is not trusted on its own, and heals from the values its neighbours call normal."""
        s = self._slot(ts_ms)
        slot_n, slot_mean, need = self.slot_n, self.slot_mean, self.slot_min
        if slot_n[s] < need:
            return self.mean
        mu = slot_mean[s]
        if self.direction == "both":
            return mu
        up = self.direction == "up"
        for t in ((s + 23) % 24, (s + 1) % 24):
            if slot_n[t] >= need:
                v = slot_mean[t]
                if (v > mu) if up else (v < mu):
                    mu = v
        return mu

    def evaluate(self, x: float, ts_ms: int, n: int = 1) -> Judgement:
        """Judge ``x`` for the window starting at ``ts_ms``; does not learn.

        ``n`` is how many samples ``x`` summarises (a quantile of ``n``
        latencies): its noise is taken to shrink as ``1 / sqrt(n)``. The
        score is the core's.
        """
        if self.n < 2 or not math.isfinite(x):
            return Judgement(False, x, math.nan, math.nan, 0.0, judged=False)
        return self._judge(x, ts_ms, n, self.core.surprise(math.log(max(x, self.floor))))

    def _z(self, x: float, ts_ms: int, n: int) -> tuple[float, float, float]:
        """(expected log value, the window's scale, z of ``x``) against the guard's baseline."""
        mu = self._expected(ts_ms)
        scale = max(1.25 * self.dev / math.sqrt(n) if n > 1 else 1.25 * self.dev, self.min_scale)
        return mu, scale, (math.log(max(x, self.floor)) - mu) / scale

    def _judge(self, x: float, ts_ms: int, n: int, score: float, cusum: float = 0.0) -> Judgement:
        mu, scale, z = self._z(x, ts_ms, n)
        base = math.exp(mu)
        up_thr = max(math.exp(mu + self.z * scale), base * self.min_ratio)
        up = self.direction != "down" and x >= up_thr and x >= self.min_value
        if self.direction == "up":
            anomalous = (self.active or score >= self.core_threshold) and up
            if not anomalous and self.cusum_h > 0 and cusum >= self.cusum_h and z >= self.cusum_k \
                    and x >= base * self.cusum_ratio and x >= self.min_value:
                return Judgement(True, x, base, base * self.cusum_ratio, min(1.0, cusum / (2 * self.cusum_h)))
            return Judgement(anomalous, x, base, up_thr, score)
        down_thr = min(math.exp(mu - self.z * scale), base / self.min_ratio)
        down = x <= down_thr
        surprising = self.active or score >= self.core_threshold
        return Judgement(surprising and (up or down), x, base, down_thr if down else up_thr, score)

    def learn(self, x: float, ts_ms: int, n: int = 1) -> None:
        """Fold ``x`` (a summary of ``n`` samples) into the guard's overall and time-of-day baselines."""
        if not math.isfinite(x):
            return
        y = math.log(max(x, self.floor))
        if self.n == 0:
            self.mean = y
        else:
            a = ew_weight(self.half_life, self.n)
            err = y - self.mean
            self.mean += a * err
            self.dev += a * (abs(err) * math.sqrt(max(n, 1)) - self.dev)
        self.n += 1
        s = self._slot(ts_ms)
        if self.slot_n[s] == 0:
            self.slot_mean[s] = y
        else:
            sa = ew_weight(self.slot_half_life, self.slot_n[s])
            self.slot_mean[s] += sa * (y - self.slot_mean[s])
        self.slot_n[s] += 1

    def update(self, x: float, ts_ms: int, n: int = 1) -> Judgement:
        """Evaluate, then learn (the guard's baselines and the core) unless anomalous."""
        if not math.isfinite(x):
            return Judgement(False, x, math.nan, math.nan, 0.0, judged=False)
        y = math.log(max(x, self.floor))
        final = self.core.assess(y)  # one evaluation of the core, for both the score and its learning
        drifting = False
        if self.n < 2:
            r = Judgement(False, x, math.nan, math.nan, 0.0, judged=False)
        else:
            if self.cusum_h > 0 and self.slot_n[self._slot(ts_ms)] < self.slot_min:
                self.cusum, self.over = 0.0, 0  # only against the hour's own history (no slow drift of
                # a quantile's bias between quiet and busy hours)
            elif self.cusum_h > 0:
                z = self._z(x, ts_ms, n)[2]
                # capped at the threshold: once the excess ends, one ordinary value takes it back under
                # (an uncapped sum would keep the alarm armed for dozens of windows after an incident)
                self.cusum = min(self.cusum_h, max(0.0, self.cusum + min(z, 4.0) - self.cusum_k))
                drifting = self.cusum > 0 and z > self.cusum_k
                if self.cusum >= self.cusum_h:
                    self.over += 1
                    if self.over > self.cusum_accept:  # it lasts: the new normal, not an alarm
                        self.cusum, self.over, drifting = 0.0, 0, False
                else:
                    self.over = 0
            r = self._judge(x, ts_ms, n, final[0], self.cusum)
            self.active = r.anomalous
        if not r.anomalous and not drifting:
            self.learn(x, ts_ms, n)
            self.core.learn_assessed(y, final)
        return r


class Alarm(Stateful):
    """Warm-up, persistence and hysteresis around a stream of judgements.

    >>> a = Alarm(warmup=0, persistence=2, clear_after=2)
    >>> [a.step(v) for v in [True, True, True, False, True, False, False, False]]
    [False, True, True, True, True, True, False, False]
    """

    __slots__ = ("warmup", "persistence", "clear_after", "seen", "hits", "calm", "firing")

    def __init__(self, warmup: int = 60, persistence: int = 2, clear_after: int = 5):
        self.warmup = warmup
        self.persistence = persistence
        self.clear_after = clear_after
        super().__init__()

    def _reset(self) -> None:
        self.seen = 0
        self.hits = 0
        self.calm = 0
        self.firing = False

    def step(self, anomalous: bool | None, persistence: int | None = None) -> bool:
        """Advance one judged window (None: nothing to judge); returns whether the alarm is on.

        ``persistence`` overrides the parameter for this step (heightened monitoring uses 1).
        """
        if anomalous is None:
            return self.firing
        self.seen += 1
        if anomalous and self.seen > self.warmup:
            self.hits += 1
            self.calm = 0
            if self.hits >= (self.persistence if persistence is None else persistence):
                self.firing = True
        else:
            self.hits = 0
            self.calm += 1
            if self.firing and self.calm >= self.clear_after:
                self.firing = False
        return self.firing
