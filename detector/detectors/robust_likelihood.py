"""Robust level/difference z-scores, anomaly likelihood, range and dwell novelty, alarm hold-off."""

from __future__ import annotations

import math

from detector.detectors.base import UnivariateDetector
from detector.detectors.numeric import round_to

__all__ = ["RobustLikelihood"]

_SQRT2 = math.sqrt(2.0)
_SQRT_PI_2 = math.sqrt(math.pi) / 2.0


class RobustLikelihood(UnivariateDetector):
    """Streaming univariate anomaly score in [0, 1], comparable across series.

    Four stages, each O(1) per value and bounded in memory:

    1. **Robust baselines.** An exponentially weighted location ``m`` and
       mean absolute deviation ``s`` of the value, and an EW mean absolute
       first difference ``sd``. Updates are clipped at ``clip`` deviations so
       that anomalous points do not drag the baseline. The raw score is
       ``1 - exp(-max(|x - m| / (level_z s), |x - prev| / (diff_z sd)))``.
    2. **Anomaly likelihood** (after Numenta): the mean of the last
       ``short_window`` raw scores is compared with the long-run EW mean and
       variance of that mean; the Gaussian upper tail probability ``q`` is
       mapped to ``-log10(q) / likelihood_scale`` (capped at 1). This makes the
       score a per-series calibrated surprise, so one threshold fits all
       series. The first ``warmup`` values only learn (score 0).
    3. **Range novelty** (after Numenta's "spatial anomaly"): a value outside
       the all-time ``[lo, hi]`` by more than ``range_tolerance (hi - lo)``,
       and at least ``range_z`` scale units from ``m``, scores 1. So does a
       value that takes the *short mean* (an EW mean at rate ``mean_alpha``,
       a few rows' memory) outside that mean's own all-time range by the same
       tolerance and by more than one standard deviation of the short mean
       (estimated from ``sd``): a level the series has never held, even if each value is
       inside the range of single values (a noisy or spiky series whose new
       level sits between its old extremes, a flat-lined or stuck signal).
       A longer EW mean (rate ``long_alpha``) is watched the same way once
       ``2 / long_alpha`` values have been seen (with a margin of two of its
       standard deviations): a level shift too small for the short mean's
       noise margin but held for a few dozen rows.
       **Dwell novelty**: the seen range is cut into ``dwell_bins`` equal
       bins; a value whose bin has held the series for ``dwell_factor``
       times longer than any earlier stay in that bin (and at least
       ``dwell_min`` values) scores 1, once per stay: a level held far
       longer than ever before (a daily peak that does not come, a signal
       stuck mid-range), even though it was reached before.
    4. **Hold-off**: after a score reaches ``threshold``, the next
       ``suppress`` scores are capped just below ``threshold`` (one alarm per
       event instead of one per row). The hold-off ends early once
       ``release`` values in a row have scored below ``threshold``: that
       event is over, and the next one may alarm at once (a second spike a
       few dozen rows after the first is a second event).

    Parameters
    ----------
    level_alpha
        EW rate of the value's location and scale.
    diff_alpha
        EW rate of the first-difference scale.
    clip
        Updates are clipped at this many scale units.
    level_z, diff_z
        Scale units at which the raw level / difference score is ``1 - 1/e``.
    range_tolerance
        Fraction of the seen range a value must exceed it by to be "novel".
    range_z
        ... and its level deviation ``|x - m| / s`` must be at least this
        (noise records at the edge of a wide seasonal swing are not novel).
    mean_alpha
        EW rate of the short mean whose all-time range is also watched
        (0 turns that check off); it is watched once ``short_window`` values
        have been seen.
    long_alpha
        EW rate of the longer mean whose all-time range is also watched (0 turns it off).
    dwell_bins, dwell_factor, dwell_min
        Dwell novelty: bins of the seen range, how many times its longest
        earlier stay a stay in a bin must last, and the shortest stay that
        counts (``dwell_bins`` 0 turns it off); judged once ``warmup``
        values have been seen.
    short_window
        Number of raw scores averaged for the likelihood.
    likelihood_alpha
        EW rate of the long-run raw-score distribution.
    warmup
        Values seen before the likelihood may score.
    likelihood_scale
        ``-log10`` tail probability that maps to score 1 (so score 0.5 is a
        tail probability of ``10 ** (-likelihood_scale / 2)``).
    threshold
        The default alarm threshold; also the level that starts a hold-off.
    suppress
        Hold-off length, in values.
    release
        Values in a row below ``threshold`` that end a hold-off early (0: never).

    Examples
    --------
    >>> import math, random
    >>> rng = random.Random(0)
    >>> det = RobustLikelihood()
    >>> xs = [100 + 20 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 3) for i in range(1500)]
    >>> quiet = [det.update(x) for x in xs]
    >>> max(quiet[600:]) < det.threshold
    True
    >>> det.update(200.0) >= det.threshold
    True
    >>> det.update(201.0) < det.threshold  # hold-off: one alarm per event
    True

    A level never held before, inside the range of single values (spikes to
    100 over a base of 10, then a plateau at 60), is novel through the short mean:

    >>> rng, det = random.Random(0), RobustLikelihood()
    >>> xs = [100.0 if rng.random() < 0.1 else 10 + rng.gauss(0, 1) for i in range(1500)]
    >>> quiet = [det.update(x) for x in xs]
    >>> max(quiet[600:]) < det.threshold
    True
    >>> plateau = [det.update(60.0 + rng.gauss(0, 1)) for i in range(20)]
    >>> max(plateau[:5]) < det.threshold <= max(plateau)
    True

    A level reached every hour but held far longer than ever (a square wave
    that stops at its top) is novel through the dwell, once:

    >>> rng, det = random.Random(0), RobustLikelihood()
    >>> xs = [(10.0 if i % 120 < 60 else 0.0) + rng.gauss(0, 0.1) for i in range(1800)]
    >>> quiet = [det.update(x) for x in xs]
    >>> max(quiet[600:]) < det.threshold
    True
    >>> stuck = [det.update(10.0 + rng.gauss(0, 0.1)) for i in range(300)]
    >>> [i for i, s in enumerate(stuck) if s >= det.threshold]  # its longest stay so far was 60 values
    [180]
    """

    #: Slots, not an instance dict: every continuous signal of every route holds one (a dict of this many
    #: fields is over CPython's shared-key limit and costs about 1.4 KB more per core).
    __slots__ = (
        "level_alpha", "diff_alpha", "clip", "level_z", "diff_z", "range_tolerance", "range_z", "mean_alpha",
        "long_alpha", "dwell_bins", "dwell_factor", "dwell_min",
        "short_window", "likelihood_alpha", "warmup", "likelihood_scale", "threshold", "suppress",
        "n", "loc", "scale", "diff_scale", "prev", "lo", "hi", "mean_n", "mean", "mean_lo", "mean_hi",
        "long_n", "long", "long_lo", "long_hi", "bin", "stay", "longest",
        "release", "raws", "raw_sum", "lik_n", "lik_mean", "lik_var", "cooldown", "calm",
    )

    def __init__(
        self,
        level_alpha: float = 0.005,
        diff_alpha: float = 0.02,
        clip: float = 4.0,
        level_z: float = 8.0,
        diff_z: float = 8.0,
        range_tolerance: float = 0.01,
        range_z: float = 2.0,
        mean_alpha: float = 0.125,
        long_alpha: float = 0.0625,
        dwell_bins: int = 8,
        dwell_factor: float = 3.0,
        dwell_min: int = 50,
        short_window: int = 20,
        likelihood_alpha: float = 0.001,
        warmup: int = 600,
        likelihood_scale: float = 14.0,
        threshold: float = 0.5,
        suppress: int = 80,
        release: int = 10,
    ) -> None:
        self.level_alpha = level_alpha
        self.diff_alpha = diff_alpha
        self.clip = clip
        self.level_z = level_z
        self.diff_z = diff_z
        self.range_tolerance = range_tolerance
        self.range_z = range_z
        self.mean_alpha = mean_alpha
        self.long_alpha = long_alpha
        self.dwell_bins = dwell_bins
        self.dwell_factor = dwell_factor
        self.dwell_min = dwell_min
        self.short_window = short_window
        self.likelihood_alpha = likelihood_alpha
        self.warmup = warmup
        self.likelihood_scale = likelihood_scale
        self.threshold = threshold
        self.suppress = suppress
        self.release = release
        super().__init__()

    def _reset(self) -> None:
        self.n = 0  # values learned
        self.loc = 0.0
        self.scale = 0.0
        self.diff_scale = 0.0
        self.prev = 0.0
        self.lo = 0.0
        self.hi = 0.0
        self.mean_n = 0  # values in the short mean (a checkpoint from before it has none: it starts afresh)
        self.mean = 0.0
        self.mean_lo = 0.0
        self.mean_hi = 0.0
        self.long_n = 0  # values in the longer mean, counted up to max(warmup, 2 / long_alpha)
        self.long = 0.0
        self.long_lo = 0.0
        self.long_hi = 0.0
        self.bin = -1  # dwell: the bin of the last value, how long the series has stayed in it, and the
        self.stay = 0  # longest finished stay in each bin
        self.longest: list[int] = [0] * self.dwell_bins
        # a list, not a deque: a deque's first block alone is ~600 bytes, and every signal of every route has one
        self.raws: list[float] = []
        self.raw_sum = 0.0
        self.lik_n = 0
        self.lik_mean = 0.0
        self.lik_var = 0.0
        self.cooldown = 0
        self.calm = 0  # values in a row below threshold during a hold-off

    # -- the computation shared by score_one and learn_one ----------------
    def _raw(self, x: float) -> tuple[float, bool]:
        """Raw surprise of ``x`` and whether it leaves the seen range."""
        eps = 1e-6 * (abs(self.loc) + 1e-3)
        zl = abs(x - self.loc) / (self.scale + eps)
        zd = abs(x - self.prev) / (self.diff_scale + eps)
        # rounded to 1e-6 (immaterial for a score in [0, 1]) to keep snapshots small
        raw = round_to(1.0 - math.exp(-max(zl / self.level_z, zd / self.diff_z)), 6)
        margin = self.range_tolerance * (self.hi - self.lo)
        novel = self.n > 1 and (x > self.hi + margin or x < self.lo - margin) and zl >= self.range_z
        if not novel and self.mean_alpha > 0.0 and self.mean_n >= self.short_window:
            a = self.mean_alpha
            m = self.mean + a * (x - self.mean)
            # a record by less than the short mean's own noise (one standard deviation: the noise's sigma,
            # sqrt(pi)/2 of the mean absolute first difference, times sqrt(a / (2 - a))) is no new level
            noise = _SQRT_PI_2 * self.diff_scale * math.sqrt(a / (2.0 - a))
            margin = max(self.range_tolerance * (self.mean_hi - self.mean_lo), noise)
            novel = m > self.mean_hi + margin or m < self.mean_lo - margin
        if not novel and self.long_alpha > 0.0 and self.long_n >= 2.0 / self.long_alpha:
            a = self.long_alpha
            m = self.long + a * (x - self.long)
            # two standard deviations of the longer mean: by one, a chance burst of spikes (whose size the
            # clipped first differences do not show) sets records of a mean that averages a dozen of them
            noise = 2.0 * _SQRT_PI_2 * self.diff_scale * math.sqrt(a / (2.0 - a))
            margin = max(self.range_tolerance * (self.long_hi - self.long_lo), noise)
            novel = m > self.long_hi + margin or m < self.long_lo - margin
        if not novel and self.dwell_bins > 0 and self.long_n >= self.warmup:
            b = self._bin(x)
            stay = self.stay + 1 if b == self.bin else 1
            # only the value that first makes the stay too long: once per stay, not on every row after it
            novel = stay >= self.dwell_min and stay > self.dwell_factor * self.longest[b] \
                and not (stay - 1 >= self.dwell_min and stay - 1 > self.dwell_factor * self.longest[b])
        return raw, novel

    def _bin(self, x: float) -> int:
        """Dwell bin of ``x`` in the seen range (before ``x``)."""
        if self.hi <= self.lo:
            return 0
        return max(0, min(self.dwell_bins - 1, int((x - self.lo) / (self.hi - self.lo) * self.dwell_bins)))

    def _avg(self, raw: float) -> float:
        """Mean of the short window once ``raw`` is appended."""
        total, count = self.raw_sum + raw, len(self.raws) + 1
        if count > self.short_window:
            total -= self.raws[0]
            count -= 1
        return total / count

    def _likelihood(self, avg: float) -> float:
        if self.lik_n + 1 < self.warmup:
            return 0.0
        std = math.sqrt(self.lik_var) + 1e-4
        z = (avg - self.lik_mean) / std
        if z <= 0.0:
            return 0.0
        tail = 0.5 * math.erfc(z / _SQRT2)
        return min(1.0, -math.log10(max(tail, 1e-300)) / self.likelihood_scale)

    def _final(self, x: float) -> tuple[float, float, float]:
        """(score before hold-off, raw, short-window mean) of ``x``."""
        if self.n == 0 or not math.isfinite(x):
            return 0.0, 0.0, 0.0
        raw, novel = self._raw(x)
        avg = self._avg(raw)
        score = 1.0 if novel else self._likelihood(avg)
        return score, raw, avg

    def _held(self, score: float) -> float:
        if self.cooldown > 0:
            return min(score, 0.99 * self.threshold)
        return score

    # -- contract ---------------------------------------------------------
    def score_one(self, x: float) -> float:
        """Score of ``x`` against the state so far (does not learn)."""
        return self._held(self._final(x)[0])

    def surprise(self, x: float) -> float:
        """Score of ``x`` before the hold-off (does not learn).

        The hold-off only turns a row-by-row score into one alarm per event;
        a caller with its own persistence and hysteresis (the service's
        :class:`~detector.detectors.signals.LevelShift`) reads this instead.
        """
        return self._final(x)[0]

    def assess(self, x: float) -> tuple[float, float, float]:
        """Everything :meth:`learn_assessed` needs about ``x``; its first item is :meth:`surprise`.

        Lets a caller that scores and then (maybe) learns a value evaluate it once.
        """
        return self._final(x)

    def learn_assessed(self, x: float, assessed: tuple[float, float, float]) -> None:
        """Learn ``x`` given :meth:`assess` output for it (same state); equals ``learn_one(x)``."""
        score, raw, avg = assessed  # (unpacked: a call with *args is a generic call when compiled)
        self._learn(x, score, raw, avg)

    def learn_one(self, x: float) -> None:
        """Update baselines, likelihood statistics and hold-off with ``x``."""
        score, raw, avg = self._final(x)
        self._learn(x, score, raw, avg)

    def update(self, x: float) -> float:
        """Score ``x``, then learn it (one evaluation). Returns the score."""
        score, raw, avg = self._final(x)
        held = self._held(score)
        self._learn(x, score, raw, avg)
        return held

    def _learn(self, x: float, score: float, raw: float, avg: float) -> None:
        if not math.isfinite(x):
            return
        n = self.n
        self.n = n + 1
        if n == 0:
            self.loc = self.prev = self.lo = self.hi = x
            return
        # dwell (against the range before x, as _raw judged it); a stay counts once it is over
        if self.dwell_bins > 0:
            b = self._bin(x)
            if len(self.longest) != self.dwell_bins:  # a checkpoint from before has none: start afresh
                self.longest, self.bin, self.stay = [0] * self.dwell_bins, -1, 0
            if b == self.bin:
                self.stay += 1
            else:
                if self.bin >= 0:
                    self.longest[self.bin] = max(self.longest[self.bin], self.stay)
                self.bin, self.stay = b, 1
        # longer mean; its range only once its start-up has passed
        if self.long_alpha > 0.0:
            if self.long_n == 0:
                self.long = x
            else:
                self.long += self.long_alpha * (x - self.long)
            if self.long_n >= 2.0 / self.long_alpha:
                self.long_hi = max(self.long_hi, self.long)
                self.long_lo = min(self.long_lo, self.long)
            else:
                self.long_lo = self.long_hi = self.long
        start_up = math.ceil(2.0 / self.long_alpha) if self.long_alpha > 0.0 else 0
        self.long_n = min(self.long_n + 1, max(self.warmup, start_up))  # only "enough yet?" is asked of it
        # hold-off (decided on this value's score, as update() returned it); it ends early once the event
        # that started it is over: ``release`` values in a row below threshold
        if self.cooldown > 0:
            self.cooldown -= 1
            self.calm = self.calm + 1 if score < self.threshold else 0
            if self.release > 0 and self.calm >= self.release:
                self.cooldown = 0
        elif score >= self.threshold:
            self.cooldown, self.calm = self.suppress, 0
        # baselines, clipped so that anomalies do not drag them
        a = max(self.level_alpha, 1.0 / (n + 1))
        da = max(self.diff_alpha, 1.0 / (n + 1))
        r = x - self.loc
        d = abs(x - self.prev)
        if n > 2:
            bound = self.clip * self.scale
            r = max(-bound, min(bound, r))
            d = min(self.clip * self.diff_scale, d)
        self.loc += a * r
        self.scale += a * (abs(r) - self.scale)
        self.diff_scale += da * (d - self.diff_scale)
        self.prev = x
        self.hi = max(self.hi, x)
        self.lo = min(self.lo, x)
        if self.mean_n == 0:
            self.mean = self.mean_lo = self.mean_hi = x
        else:
            self.mean += self.mean_alpha * (x - self.mean)
            self.mean_hi = max(self.mean_hi, self.mean)
            self.mean_lo = min(self.mean_lo, self.mean)
        self.mean_n = min(self.mean_n + 1, self.short_window)  # only "enough yet?" is asked of it
        # long-run distribution of the short-window mean raw score
        if len(self.raws) >= self.short_window:
            self.raw_sum -= self.raws[0]
            del self.raws[0]  # (a checkpoint from before holds a deque: the same operations)
        self.raws.append(raw)
        self.raw_sum += raw
        la = max(self.likelihood_alpha, 1.0 / (self.lik_n + 1))
        dev = avg - self.lik_mean
        if self.lik_n + 1 >= self.warmup:
            dev = min(dev, 3.0 * (math.sqrt(self.lik_var) + 1e-4))
        self.lik_n += 1
        self.lik_mean += la * dev
        self.lik_var = (1.0 - la) * (self.lik_var + la * dev * dev)
