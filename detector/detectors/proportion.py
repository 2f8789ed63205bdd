"""Count-based tests: a rate against its baseline, and traffic against what time of day predicts.

Both judge counts, not ratios, so a route with two requests a minute does
not fire on one error: the evidence is pooled over a span of recent windows
until it holds enough trials, and the test asks how surprising the count is
under the baseline.

>>> d = ProportionTest()
>>> for _ in range(200):
...     _ = d.update(1, 100)        # 1% errors, learned
>>> d.update(1, 2).anomalous         # one error out of two requests: not evidence
False
>>> for _ in range(4):
...     r = d.update(30, 100)       # 30% errors
>>> r.anomalous, round(r.baseline, 3)
(True, 0.01)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from itertools import islice
from typing import Any, final

from scipy.special import betainc, gammaincc

from detector.detectors.base import Stateful
from detector.detectors.numeric import ew_rate, ew_weight, round_to

__all__ = ["ProportionTest", "CountTest", "Judgement", "binom_sf", "poisson_cdf", "poisson_sf"]


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p).

    >>> round(binom_sf(1, 2, 0.01), 4)
    0.0199
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(betainc(k, n - k + 1, min(max(p, 1e-12), 1.0)))


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam).

    >>> round(poisson_cdf(0, 10.0), 6)
    4.5e-05
    """
    if k < 0:
        return 0.0
    return float(gammaincc(k + 1, max(lam, 1e-12)))


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    return 1.0 - poisson_cdf(k - 1, lam)


@final
class Judgement:
    """One evaluation: observed vs baseline, the critical value, a score in [0, 1]. A plain class: compiled, it
    is made by a direct call (a NamedTuple is made through a Python-level ``__new__``; a route's window makes
    a dozen of them). Compared field by field, as the tuple it was.

    >>> Judgement(True, 3.0, 1.0, 2.0, 0.99)
    Judgement(anomalous=True, observed=3.0, baseline=1.0, threshold=2.0, score=0.99, judged=True)
    >>> Judgement(False, 1.0, 1.0, 2.0, 0.0) == Judgement(False, 1.0, 1.0, 2.0, 0.0, judged=True)
    True
    """

    __slots__ = ("anomalous", "observed", "baseline", "threshold", "score", "judged")

    def __init__(self, anomalous: bool, observed: float, baseline: float, threshold: float, score: float,
                 judged: bool = True) -> None:
        self.anomalous = anomalous
        self.observed = observed
        self.baseline = baseline
        self.threshold = threshold
        self.score = score
        self.judged = judged

    def _key(self) -> tuple[bool, float, float, float, float, bool]:
        return self.anomalous, self.observed, self.baseline, self.threshold, self.score, self.judged

    def __eq__(self, other: object) -> bool:
        return self is other or isinstance(other, Judgement) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Judgement(anomalous={self.anomalous!r}, observed={self.observed!r}, baseline={self.baseline!r}, "
                f"threshold={self.threshold!r}, score={self.score!r}, judged={self.judged!r})")


_FLOOR = operator.itemgetter(1)
#: One shared [events, trials] list for each common small window (never mutated: histories only read their
#: entries), so the span histories of quiet routes hold pointers, not a list per window.
_PAIRS: dict[tuple[int, int], list[int]] = {(k, n): [k, n] for k in range(4) for n in range(k, 65)}
#: The same for a volume test's [count, floor] of quiet windows (floors are kept to 1e-4), made as met.
_QUIET_ENTRIES: dict[tuple[int, float], list[float]] = {}


def _entry(count: int, floor: float) -> list[float]:
    """A volume test's history entry; shared (read only) when the window is quiet."""
    floor = round_to(floor, 4)
    if count > 3 or floor >= 1.0:
        return [count, floor]
    key = (count, floor)
    entry = _QUIET_ENTRIES.get(key)
    if entry is None:
        entry = _QUIET_ENTRIES[key] = [count, floor]  # at most 4 x 10,000 of them
    return entry


_SKIP = Judgement(False, math.nan, math.nan, math.nan, 0.0, judged=False)


class ProportionTest(Stateful):
    """One-sided binomial test of a rate (errors / requests) against its learned baseline.

    Parameters
    ----------
    alpha
        p-value below which the pooled span is anomalous.
    min_trials
        Trials the span pools before it is judged (spans grow up to ``max_span`` windows).
    min_span, max_span
        Windows pooled per evaluation.
    min_count
        Fewest events (errors) that can ever be anomalous.
    min_ratio, min_delta
        Effect size: the observed rate must exceed ``baseline * min_ratio`` and ``baseline + min_delta``.
    half_life
        Windows for the baseline's exponential forgetting.
    prior_rate, prior_trials
        Pseudo-counts that keep a new baseline sensible.
    min_hot, recent_hot
        Windows whose own rate clears the effect size that a span needs, and
        how recent the newest of them must be.
    hold
        p-value below which a window that is not anomalous is held back from
        the baseline (its span's, or its own when it clears the effect size):
        the first windows of an excess whose evidence is still pooling would
        raise the very baseline it is judged against (a route of a request or
        two a minute doubled its error baseline in a quarter of an hour of an
        outage). Held windows are learned, in order, at the next window that
        is not suspect; an anomalous one drops them (they were its start);
        past ``max_span`` of them the oldest is learned. A baseline that has
        learned fewer than ``half_life`` windows holds nothing back: it is
        still finding the route's rate (a new route's first errors would
        otherwise be judged against the prior for good).
    """

    #: No instance dict: a route holds one per error group and tool (its fields in a few machine words).
    __slots__ = ("alpha", "min_trials", "min_span", "max_span", "min_count", "min_ratio", "min_delta", "half_life",
                 "prior_rate", "prior_trials", "min_hot", "recent_hot", "hold",
                 "k_sum", "n_sum", "recent", "recent_k", "recent_n", "learned", "was_anomalous", "calm", "onset",
                 "held")

    def __init__(
        self,
        alpha: float = 1e-5,
        min_trials: int = 20,
        min_span: int = 3,
        max_span: int = 30,
        min_count: int = 3,
        min_ratio: float = 2.0,
        min_delta: float = 0.05,
        half_life: float = 720.0,
        prior_rate: float = 0.01,
        prior_trials: float = 50.0,
        min_hot: int = 3,
        recent_hot: int = 5,
        hold: float = 1e-3,
    ):
        self.alpha = alpha
        self.min_trials = min_trials
        self.min_span = min_span
        self.max_span = max_span
        self.min_count = min_count
        self.min_ratio = min_ratio
        self.min_delta = min_delta
        self.half_life = half_life
        self.prior_rate = prior_rate
        self.prior_trials = prior_trials
        self.min_hot = min_hot
        self.recent_hot = recent_hot
        self.hold = hold
        super().__init__()

    def _reset(self) -> None:
        self.k_sum = 0.0
        self.n_sum = 0.0
        #: [events, trials] of the last max_span windows (a list: a deque's first block alone is ~600 bytes)
        self.recent: list[list[int]] = []
        self.recent_k = 0  # events (errors) held in ``recent``
        self.recent_n = 0  # trials held in ``recent``
        self.learned = 0
        self.was_anomalous = False
        self.calm = 0  # judged windows since the last anomalous one
        #: Age in windows (1: the newest) where the excess of the last anomalous span began (:meth:`_onset`),
        #: however long the evidence took to pool.
        self.onset = 1
        #: [events, trials] of the windows held back from the baseline while suspect (see ``hold``); None: none
        self.held: list[list[int]] | None = None

    @property
    def baseline(self) -> float:
        return (self.k_sum + self.prior_rate * self.prior_trials) / (self.n_sum + self.prior_trials)

    def evaluate(self, k: int, n: int, alpha: float = 0.0) -> Judgement:
        """Judge the spans ending with this window's ``k`` of ``n``; does not learn.

        Spans of ``min_span`` .. ``max_span`` recent windows holding at least
        ``min_trials`` trials are tested (the shortest such span, then
        lengths growing by about a quarter each) and the most surprising one
        kept: short spans react fast on busy routes, long spans give quiet
        routes enough evidence. A span only counts when the excess is spread
        over at least ``min_hot`` windows (a window is hot when its own rate
        clears the effect size) and one of them is among the last
        ``recent_hot``: a one-minute burst that has passed is not an incident.
        ``alpha`` (when > 0) judges this window at another level than the test's own.
        """
        if alpha <= 0.0:
            alpha = self.alpha
        p0 = self.baseline
        effect = max(p0 * self.min_ratio, p0 + self.min_delta)
        if k + self.recent_k < self.min_count:  # no span can hold enough events
            if n + self.recent_n < self.min_trials:
                return _SKIP
            return Judgement(False, k / n if n else 0.0, p0, effect, 0.0)
        hot = 1 if k > 0 and k >= effect * n else 0
        if not hot and not any(kh > 0 and kh >= effect * nh for kh, nh in islice(reversed(self.recent),
                                                                             self.recent_hot - 1)):
            # no recent window clears the effect size: no span can count (see min_hot), skip the scan
            return Judgement(False, k / n if n else 0.0, p0, effect, 0.0)
        best: tuple[float, int, int, int] | None = None
        ks, ns, spans = k, n, 1
        newest_hot = 1 if hot else 0  # 1-based age of the newest hot window; 0: none yet
        hist = self.recent
        i = len(hist) - 1
        next_test = self.min_span
        while True:
            if spans >= next_test and ns >= self.min_trials:
                next_test = spans + 1 + spans // 4
                kk = ks if ks < ns else ns
                spread = hot >= self.min_hot and 0 < newest_hot <= self.recent_hot
                # the exact tail only where a normal approximation says it could matter (binomial
                # tails of small rates are heavier than normal ones, so 2.5 sigma is a safe gate)
                if (kk >= self.min_count and kk / ns >= effect and spread
                        and kk - ns * p0 > 2.5 * math.sqrt(ns * p0 * (1.0 - p0))):
                    pval = binom_sf(kk, ns, p0)
                    if best is None or pval < best[0]:
                        best = (pval, kk, ns, spans)
                elif best is None:
                    best = (1.0, kk, ns, spans)
            if spans >= self.max_span or i < 0:
                break
            kh, nh = hist[i]
            ks += kh
            ns += nh
            spans += 1
            i -= 1
            if kh > 0 and kh >= effect * nh:
                hot += 1
                if not newest_hot:
                    newest_hot = spans
        if best is None:
            return _SKIP
        pval, ks, ns, span = best
        if pval < alpha:
            self.onset = self._onset(k, n, span, ks / ns, p0)
        crit = self._critical(ns, p0, alpha) if pval < 0.01 else effect
        return Judgement(pval < alpha, ks / ns, p0, crit, 1.0 - pval)

    def _onset(self, k: int, n: int, span: int, p1: float, p0: float) -> int:
        """Where the excess of an anomalous span began: the age (1: this window) that maximises the summed
        log-likelihood ratio of the span's rate ``p1`` against the baseline ``p0`` from this window back
        (the CUSUM change-point estimate). A window at the baseline rate counts against an earlier start,
        so a chance hot window among calm ones before the excess (sparse reviews) does not move it back.

        >>> t = ProportionTest()
        >>> t.recent = [[1, 3]] + [[0, 3]] * 6 + [[2, 3]] * 3  # a chance hit, calm, then the excess
        >>> t._onset(2, 3, 11, 9 / 33, 0.02)
        4
        """
        if p1 >= 1.0:
            p1 = 1.0 - 1e-9
        if p1 <= p0:
            return 1
        hit, miss = math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))
        total = best = k * hit + (n - k) * miss
        age = at = 1
        hist = self.recent
        i = len(hist) - 1
        while age < span and i >= 0:
            kh, nh = hist[i]
            total += kh * hit + (nh - kh) * miss
            age += 1
            i -= 1
            if total > best:
                best, at = total, age
        return at

    def _critical(self, n: int, p0: float, alpha: float) -> float:
        lo, hi = 0, n + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if binom_sf(mid, n, p0) < alpha:
                hi = mid
            else:
                lo = mid + 1
        crit = lo / n if n else math.nan
        return max(crit, p0 * self.min_ratio, p0 + self.min_delta)

    def learn(self, k: int, n: int, weight: float = 1.0) -> None:
        """Add this window to the span history and (with ``weight``) to the baseline."""
        if len(self.recent) >= self.max_span:
            self.recent_k -= self.recent[0][0]
            self.recent_n -= self.recent[0][1]
            del self.recent[0]  # (a checkpoint from before holds a deque: the same operations)
        self.recent.append(_PAIRS.get((k, n)) or [k, n])
        self.recent_k += k
        self.recent_n += n
        if weight > 0:
            self._fold(k, n, weight)

    def _fold(self, k: int, n: int, weight: float = 1.0) -> None:
        """Learn ``k`` events of ``n`` trials into the baseline (an empty window teaches nothing)."""
        if n <= 0:
            return
        decay = 0.5 ** (weight / self.half_life)
        self.k_sum = self.k_sum * decay + min(k, n) * weight
        self.n_sum = self.n_sum * decay + n * weight
        self.learned += 1

    def update(self, k: int, n: int, alpha: float = 0.0) -> Judgement:
        """Evaluate (at ``alpha``, when > 0), then learn unless anomalous, or anomalous on its own (a burst, or
        an incident's first windows before it has spread over ``min_hot`` windows); a suspect window is held
        back (see ``hold``)."""
        r = self.evaluate(k, n, alpha)
        # the window's own tail, where it matters: a burst (min_count events), or a hot window that may be held
        hot, own = False, 1.0
        if k >= 2:
            p0 = self.baseline
            hot = k >= max(p0 * self.min_ratio, p0 + self.min_delta) * n
            if k >= self.min_count or hot:
                own = binom_sf(k, max(n, k), p0)
        held = self.held
        if r.anomalous or (k >= self.min_count and own < self.alpha):
            self.learn(k, n, 0.0)
            self.held = None  # the start of this excess: never learned
        elif self.learned >= self.half_life and (1.0 - r.score < self.hold or hot and own < self.hold):
            self.learn(k, n, 0.0)
            if held is None:
                held = self.held = []
            held.append(self.recent[-1])  # the pair learn just added to the span history
            if len(held) > self.max_span:
                self._fold(held[0][0], held[0][1])
                del held[0]
        else:
            if held is not None:
                for kh, nh in held:
                    self._fold(kh, nh)
                self.held = None
            self.learn(k, n, 1.0)
        if r.anomalous:
            self.calm = 0
            # an excess at the test's own level; one found only at a looser ``alpha`` may be the first sign
            # of a slow one, whose evidence must not be forgotten when it pauses
            if 1.0 - r.score < self.alpha:
                self.was_anomalous = True
        elif r.judged:
            self.calm += 1
            if self.was_anomalous and self.calm >= self.recent_hot:
                self._forget_before(self.calm)  # a passed excess is no evidence for the next one
                self.was_anomalous = False
        return r

    def _forget_before(self, keep: int) -> None:
        """Drop all but the last ``keep`` windows from the span history."""
        while len(self.recent) > keep:
            k, n = self.recent[0]
            del self.recent[0]  # (a list, or the deque of a checkpoint from before)
            self.recent_k -= k
            self.recent_n -= n


#: Empty windows in a row that end a run of traffic (see CountTest.min_run_ms).
RUN_GAP = 30
#: An hour whose level is at most this share of the route's busiest is its night (see expected_floor).
NIGHT_SHARE = 0.1


def _near_weekend_edge(ts_ms: int) -> bool:
    """Within twelve hours of the UTC weekend's start (Saturday 00:00) or end (Monday 00:00).

    >>> fri_noon = 86_400_000 + 12 * 3_600_000  # 1970-01-02 was a Friday
    >>> _near_weekend_edge(fri_noon - 1), _near_weekend_edge(fri_noon), _near_weekend_edge(fri_noon + 86_400_000)
    (False, True, False)
    """
    day = (ts_ms // 86_400_000 + 3) % 7  # 0 Monday .. 6 Sunday
    late = ts_ms // 3_600_000 % 24 >= 12
    return (day in (4, 6) and late) or (day in (5, 0) and not late)



class CountTest(Stateful):
    """Traffic volume against what the time of day predicts (Poisson), both directions.

    The expected count per window is learned per hour-of-day slot, separately
    for weekdays and weekends (UTC), once a slot has history; with no slot
    history, the overall level. A drop or stop is judged on the pooled span of
    recent windows (a route that stops sending gives empty windows); a spike
    must also exceed ``spike_ratio`` times the expectation.

    A kind of day the route has no history of yet (the first weekend of a
    service started on a weekday) is not judged as if it were the other kind:
    a business route at a quarter of its weekday traffic on its first
    Saturday is not a stop. For drops, such an hour expects only the least
    the route has shown at any hour it has history of, so a stop on a route
    with steady traffic around the clock stays detectable. An hour without
    history is judged for drops only after ``min_run_ms`` of unbroken traffic
    (a nightly batch ending its first run is no stop), and learns what it
    sees even when that is judged anomalous, so a schedule (hours with no
    traffic) is learned within days. Within an hour with history, a drop is
    measured against the least of that hour and its neighbours: traffic
    that starts or ends inside the hour does not make a stop; within half a
    day of the UTC weekend's edges, and in the route's night (an hour at most
    a tenth of its busiest), against the lower of the two kinds of day (a
    route whose users live elsewhere keeps its weekend in other UTC hours),
    and a drop at night is weak. :attr:`familiar`
    says whether the last judgement had history of its kind of day (and at
    least a day of history in all); a drop judged without it is a weak
    signal (triage keeps its severity low), and so is a spike in the
    route's first day (:meth:`hour_known`).

    >>> c = CountTest()
    >>> thu = 0  # 1970-01-01 was a Thursday
    >>> for m in range(2 * 1440):  # two weekdays: 40 a minute from 08:00 to 18:00, 2 at night
    ...     _ = c.update(40 if 8 <= m % 1440 // 60 < 18 else 2, thu + m * 60_000)
    >>> sat_noon = (2 * 1440 + 12 * 60) * 60_000
    >>> [c.update(10, sat_noon + i * 60_000).anomalous for i in range(30)].count(True)  # a quiet Saturday
    0
    >>> c.familiar
    False
    """

    def __init__(
        self,
        alpha: float = 1e-5,
        min_expected: float = 10.0,
        max_span: int = 30,
        spike_ratio: float = 4.0,
        drop_ratio: float = 0.1,
        half_life: float = 60.0,
        slot_half_life: float = 30.0,
        slot_min: int = 30,
        slots: int = 24,
        fast_half_life: float = 10.0,
        min_run_ms: int = 6 * 3_600_000,
    ):
        self.alpha = alpha
        self.min_expected = min_expected
        self.max_span = max_span
        self.spike_ratio = spike_ratio
        self.drop_ratio = drop_ratio
        self.half_life = half_life
        self.slot_half_life = slot_half_life
        self.slot_min = slot_min
        self.slots = slots
        self.fast_half_life = fast_half_life
        self.min_run_ms = min_run_ms
        super().__init__()

    def _reset(self) -> None:
        self.level = 0.0
        self.fast = 0.0
        self.n = 0
        # weekday slots first, then weekend slots
        self.slot_level = [0.0] * (2 * self.slots)
        self.slot_n = [0] * (2 * self.slots)
        #: [count, floor] of the last max_span windows (a list: a deque's first block alone is ~600 bytes)
        self.recent: list[list[float]] = []
        #: Start of the first window learned (-1: none yet).
        self.since = -1
        #: Whether the last judgement had history of its hour on its kind of day and a day in all.
        self.familiar = False
        #: Start of the current run of traffic (no RUN_GAP empty windows in a row), and empty windows
        #: since the last with traffic.
        self.run_start = -1
        self.gap = 0
        #: Bit per slot: learned from windows judged anomalous (its level is not yet familiar).
        self.odd = 0
        #: The window size seen (the least step between windows learned, ms), and the last window's start.
        self.size = 3_600_000
        self.last_ts = -1
        #: The busiest slot's level among slots with history (None: to be worked out); not saved.
        self._top: float | None = None


    def _state(self) -> dict[str, Any]:
        state = super()._state()
        del state["_top"]  # derived from the slots
        return state

    def _slot(self, ts_ms: int) -> int:
        hour = int(ts_ms // 3_600_000) % 24 * self.slots // 24
        weekend = (int(ts_ms // 86_400_000) + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        return hour + self.slots if weekend else hour

    def hour_known(self, ts_ms: int) -> bool:
        """Whether the hour of ``ts_ms`` has history on either kind of day, and the route a day of history in
        all: else what a spike is measured against is a level learned at other hours, or this morning (a
        business route's first morning against its first night), and a spike is weak.

        >>> c = CountTest()
        >>> for m in range(25 * 60):
        ...     _ = c.update(5, m * 60_000)
        >>> c.hour_known(0), c.hour_known(86_400_000), c.hour_known(7 * 3_600_000)
        (False, True, False)
        """
        s = self._slot(ts_ms)
        return (0 <= self.since <= ts_ms - 86_400_000
                and (self.slot_n[s] >= self.slot_min
                     or self.slot_n[(s + self.slots) % (2 * self.slots)] >= self.slot_min))

    def expected(self, ts_ms: int) -> float:
        """Expected count in the window starting at ``ts_ms`` (what a spike is measured against)."""
        s = self._slot(ts_ms)
        if self.slot_n[s] >= self.slot_min:
            return self.slot_level[s]
        other = (s + self.slots) % (2 * self.slots)  # the same hour on the other kind of day
        if self.slot_n[other] >= self.slot_min:
            return self.slot_level[other]
        return self._unslotted()

    def _unslotted(self) -> float:
        # no history for this hour yet: the slow level lags a daily decline, so trust the lower
        # of it and a fast level (a real stop still drains both, only less quickly)
        return min(self.level, self.fast)

    def expected_floor(self, ts_ms: int) -> tuple[float, bool]:
        """What a drop is measured against in the window starting at ``ts_ms``, and whether it is
        familiar: the least of the hour's own slot and its neighbours when it has history (a
        neighbour without history of this kind of day is taken from the other kind, else from what the
        route has shown); else :meth:`_shown`, never the other kind of day's same hour (a business
        route's Saturday is not its Friday)."""
        s = self._slot(ts_ms)
        if self.slot_n[s] < self.slot_min:
            return self._shown(ts_ms), False
        # the least of this hour and its neighbours: traffic that starts or ends within the hour (a
        # nightly batch, office hours) runs out before the hour's level says, on an ordinary day
        half = s - s % self.slots  # the first slot of this kind of day
        lam = self.slot_level[s]
        other = (s + self.slots) % (2 * self.slots)
        for i in (half + (s - half - 1) % self.slots, half + (s - half + 1) % self.slots):
            if self.slot_n[i] >= self.slot_min:
                lv = self.slot_level[i]
            else:
                j = (i + self.slots) % (2 * self.slots)  # the other kind of day's shape, at this day's level
                if self.slot_n[j] >= self.slot_min and self.slot_n[other] >= self.slot_min:
                    lv = self.slot_level[j] * min(1.0, self.slot_level[s] / max(self.slot_level[other], 1e-4))
                elif not self._running(ts_ms):
                    lv = 0.0  # a route that has only sent for a while may end its run in the next hour
                else:
                    continue  # nothing known of the next hour; the route has sent without a break
            if lv < lam:
                lam = lv
        # familiar: the hour has been seen on an earlier day of its kind (not only today), ordinary
        per_hour = 3_600_000 // max(self.size, 1) * self.slots // 24
        familiar = (0 <= self.since <= ts_ms - 86_400_000 and self.slot_n[s] >= per_hour + self.slot_min
                    and not self.odd >> s & 1)
        top = self._top
        if top is None:
            top = self._top = max((lv for lv, n in zip(self.slot_level, self.slot_n, strict=True)
                                   if n >= self.slot_min), default=0.0)
        night = self.slot_level[s] <= NIGHT_SHARE * top  # a drop in a trickle is weak
        # within half a day of the UTC weekend's start or end, and in the route's night, a route whose users
        # live elsewhere may already (or still) keep the other kind of day (its Sunday afternoon in
        # California is Monday in UTC): the lower kind of day
        if (night or _near_weekend_edge(ts_ms)) and self.slot_n[other] >= self.slot_min:
            lam = min(lam, self.slot_level[other])
        return lam, familiar and not night

    def _running(self, ts_ms: int) -> bool:
        """Whether the route has sent without a break (RUN_GAP empty windows) for ``min_run_ms``."""
        return 0 <= self.run_start <= ts_ms - self.min_run_ms and self.gap < RUN_GAP

    def _shown(self, ts_ms: int) -> float:
        """An hour without history: nothing without ``min_run_ms`` of unbroken traffic (a route that has
        only ever sent for an hour or two, a nightly batch on its first night, ending its run is no
        stop); else the least of the recent level and what the route has shown at any hour with history
        (an office route's first evening, or its first Saturday)."""
        if not self._running(ts_ms):
            return 0.0
        lam = self._unslotted()
        for lv, n in zip(self.slot_level, self.slot_n, strict=True):
            if n >= self.slot_min and lv < lam:
                lam = lv
        return lam

    def evaluate(self, count: int, ts_ms: int) -> Judgement:
        """Judge this window (pooled with recent ones for drops); does not learn."""
        return self._evaluate(count, ts_ms)[0]

    def _evaluate(self, count: int, ts_ms: int) -> tuple[Judgement, float]:
        """The judgement and the drop floor it used (so :meth:`update` computes the floor once)."""
        floor, self.familiar = self.expected_floor(ts_ms)
        return self._judge(count, ts_ms, floor), floor

    def _judge(self, count: int, ts_ms: int, lam: float) -> Judgement:
        if self.n == 0:
            return _SKIP
        # drop / stop: scan spans of recent windows, keep the most surprising; a window holding
        # more than half of what it should is recovering or normal, and is not scanned
        best: tuple[float, int, float] | None = None
        hist: Sequence[list[float]]
        floors = 0.0  # the floors of the span, summed in order (a loop: compiled, no generic map call)
        for entry in self.recent:
            floors += entry[1]
        if count > 0.5 * lam or lam + floors < self.min_expected * (1 - 1e-9):
            hist = ()  # no span of them could reach min_expected: nothing to scan
        else:
            hist = self.recent
        k_span, lam_span = count, lam
        i = len(hist) - 1
        while True:
            if lam_span >= self.min_expected and k_span <= self.drop_ratio * lam_span:
                p_low = poisson_cdf(k_span, lam_span)
                if best is None or p_low < best[0]:
                    best = (p_low, k_span, lam_span)
            if i < 0:
                break
            k_span += int(hist[i][0])
            lam_span += hist[i][1]
            i -= 1
        if best is not None and best[0] < self.alpha:
            p_low, k_span, lam_span = best
            return Judgement(True, float(k_span), lam_span, self.drop_ratio * lam_span, 1.0 - p_low)
        lam = self.expected(ts_ms)
        spike = self.spike_ratio * max(lam, 1.0)
        if count >= spike and count >= self.min_expected:
            p_high = poisson_sf(count, max(lam, 0.5))
            if p_high < self.alpha:
                return Judgement(True, float(count), lam, spike, 1.0 - p_high)
        return Judgement(False, float(count), lam, spike, 0.0)

    def learn(self, count: int, ts_ms: int, weight: float = 1.0, floor: float | None = None) -> None:
        """Update the overall and slot levels (skipped for weight 0); track the span (``floor``: this
        window's :meth:`expected_floor`, when already known)."""
        if floor is None:
            floor = self.expected_floor(ts_ms)[0]
        self.recent.append(_entry(count, floor))
        if len(self.recent) > self.max_span:
            del self.recent[0]  # (a checkpoint from before holds a deque: the same operations)
        if 0 <= self.last_ts < ts_ms and ts_ms - self.last_ts < self.size:
            self.size = ts_ms - self.last_ts
        self.last_ts = ts_ms
        if count > 0:
            if self.run_start < 0 or self.gap >= RUN_GAP:
                self.run_start = ts_ms
            self.gap = 0
        else:
            self.gap += 1
        if weight <= 0:
            s = self._slot(ts_ms)
            if self.slot_n[s] < self.slot_min:
                # an hour without history learns what it sees, even a stop: else a route whose
                # traffic always ends in this hour (a schedule) would be judged stopped every day;
                # it is not familiar until ordinary traffic has been learned there
                self._learn_slot(s, count)
                self.odd |= 1 << s
            return
        if self.since < 0:
            self.since = ts_ms
        a = ew_weight(self.half_life, self.n)
        self.level += a * (count - self.level)
        fa = ew_weight(self.fast_half_life, self.n)
        self.fast += fa * (count - self.fast)
        self.n += 1
        s = self._slot(ts_ms)
        self._learn_slot(s, count)
        if count > 0:
            self.odd &= ~(1 << s)

    def _learn_slot(self, s: int, count: int) -> None:
        sa = ew_weight(self.slot_half_life, self.slot_n[s])
        # levels kept to 1e-4 of a request: immaterial, and it keeps the snapshot under 2 KB
        level = self.slot_level[s]
        self.slot_level[s] = lv = round_to(level + sa * (count - level), 4)
        self.slot_n[s] += 1
        top = self._top
        if top is not None and (lv > top or level >= top or self.slot_n[s] == self.slot_min):
            self._top = None  # the busiest slot's level is worked out again when next needed

    def update(self, count: int, ts_ms: int) -> Judgement:
        """Evaluate, then learn unless anomalous."""
        r, floor = self._evaluate(count, ts_ms)
        self.learn(count, ts_ms, 0.0 if r.anomalous else 1.0, floor)
        return r

    def silent(self) -> bool:
        """Whether no run of empty windows from here, however long, can be judged anomalous: an empty window
        is no spike, and no span of them can reach ``min_expected`` (while nothing arrives the levels only
        fall, so every drop floor stays at most today's highest level). A route this quiet can then have its
        empty windows learned later, in one step (:meth:`zeros`).

        >>> c = CountTest()
        >>> for m in range(120):
        ...     _ = c.update(1 if m % 60 == 0 else 0, m * 60_000)  # one request an hour
        >>> c.silent()
        True
        >>> for m in range(120, 240):
        ...     _ = c.update(30, m * 60_000)  # half a request a second: a stop would show
        >>> c.silent()
        False
        """
        top = self.level if self.level < self.fast else self.fast  # no floor of an hour without history is above
        if (self.max_span + 1) * top >= self.min_expected:
            return False
        smin = self.slot_min
        for lv, n in zip(self.slot_level, self.slot_n, strict=True):
            if n < smin:  # an hour may gain its history while learning empty windows: it has fallen this far by then
                lv = lv * n / smin + 0.002
            if lv > top:
                top = lv
        top += 1e-4  # floors are kept to 1e-4
        span = self.max_span
        worst = (span + 1) * top
        if self.recent and max(map(_FLOOR, self.recent)) > top:
            # after k more empty windows a span holds at most k + 1 new floors and the newest span - k old ones
            old = [0.0]
            for _, floor in reversed(self.recent):
                old.append(old[-1] + floor)
            worst = max((k + 1) * top + old[min(span - k, len(old) - 1)] for k in range(span + 1))
        return worst < self.min_expected * (1 - 1e-9)

    def zeros(self, start: int, end: int, size: int) -> tuple[Judgement, int]:
        """``update(0, t)`` for each window start ``t`` in ``range(start, end, size)``, when :meth:`silent`
        (none of them can be anomalous): the same state, with the drop floor worked out only for the windows
        that stay in the recent span. Returns the last judgement and how many of them were judged.

        >>> a, b = CountTest(), CountTest()
        >>> for m in range(90):
        ...     _ = a.update(int(m % 45 == 0), m * 60_000), b.update(int(m % 45 == 0), m * 60_000)
        >>> rs = [a.update(0, m * 60_000) for m in range(90, 200)]
        >>> b.zeros(90 * 60_000, 200 * 60_000, 60_000) == (rs[-1], 110), a.snapshot() == b.snapshot()
        (True, True)
        """
        n = (end - start) // size
        tail = n - self.max_span  # from this window on, floors stay in ``recent``
        judged = 0
        last = _SKIP
        i = 0
        fast = self.slots >= 3  # (a slot's neighbours are other slots: see _zeros_kept)
        while i < n:
            t = start + i * size
            if fast and 0 < i < n - 1 and i >= tail:  # floors kept, the last window aside: an hour at a time
                k = min(n - 1 - i, -(-(((t // 3_600_000) + 1) * 3_600_000 - t) // size))
                judged += k if self.n else k - 1
                self._zeros_kept(t, k, size)
                i += k
            elif i == 0 or i >= tail:
                # the first window (its step from the last one learned may set the size), and those whose
                # floors stay in the span: as update(0, t) does it
                if self.n:
                    judged += 1
                floor, self.familiar = self.expected_floor(t)
                if i == n - 1:
                    last = self._judge(0, t, floor)
                self.learn(0, t, 1.0, floor)
                i += 1
            else:  # windows whose floors leave the span: learned an hour at a time, no floor worked out
                k = min(tail - i, -(-(((t // 3_600_000) + 1) * 3_600_000 - t) // size))  # to the hour's end
                judged += k if self.n else k - 1
                self._zeros_in_slot(t, k, size)
                i += k
        return last, judged

    def _zeros_kept(self, t: int, k: int, size: int) -> None:
        """``learn(0, u, 1.0, expected_floor(u)[0])`` for ``k`` windows ``u`` ``size`` apart from ``t``, after
        the first of a run, all in one slot (one clock hour), whose floors stay in the span: :meth:`expected_floor`
        and :meth:`learn`'s arithmetic, step by step, with what stays the same through the hour (the slot's
        neighbours, the weekend's edge, the other slots' top level) worked out once. Needs ``slots >= 3`` (a
        slot's neighbours and its other kind of day are then other slots: only this slot's level moves).

        >>> a, b = CountTest(), CountTest()
        >>> for m in range(3000):
        ...     _ = a.update(int(m % 50 == 0), m * 60_000), b.update(int(m % 50 == 0), m * 60_000)
        >>> for m in range(3000, 3020):
        ...     _ = a.learn(0, m * 60_000, 1.0, a.expected_floor(m * 60_000)[0])
        >>> b._zeros_kept(3000 * 60_000, 20, 60_000)
        >>> a._top = None
        >>> a.snapshot() == b.snapshot(), a.recent == b.recent
        (True, True)
        """
        slots, smin, levels, counts = self.slots, self.slot_min, self.slot_level, self.slot_n
        s = self._slot(t)
        half = s - s % slots
        other = (s + slots) % (2 * slots)
        others_known = counts[other] >= smin
        # each neighbour: its own level (constant here), the other kind of day's shape scaled by this slot's
        # level (j), or nothing known (None: 0.0 unless the route is running, then skipped)
        nbrs: list[tuple[float | None, int]] = []
        for i in (half + (s - half - 1) % slots, half + (s - half + 1) % slots):
            j = (i + slots) % (2 * slots)
            if counts[i] >= smin:
                nbrs.append((levels[i], -1))
            elif counts[j] >= smin and others_known:
                nbrs.append((None, j))
            else:
                nbrs.append((None, -1))
        top_o: float | None = -1.0  # the other slots' top level (-1: not worked out yet)
        edge = _near_weekend_edge(t)
        rl, rf, rs = ew_rate(self.half_life), ew_rate(self.fast_half_life), ew_rate(self.slot_half_life)
        recent, span, shared = self.recent, self.max_span, _QUIET_ENTRIES
        # the state a step changes, as locals (written back at the end, and before _shown reads it)
        last_ts, wsize, gap, since, level, fast, n = (self.last_ts, self.size, self.gap, self.since, self.level,
                                                      self.fast, self.n)
        run_start, run_ms = self.run_start, self.min_run_ms
        for step in range(k):
            u = t + step * size
            # expected_floor(u)[0]
            if counts[s] < smin:  # _shown(u)
                if 0 <= run_start <= u - run_ms and gap < RUN_GAP:  # _running(u)
                    self.level, self.fast, self.gap = level, fast, gap
                    floor = self._shown(u)
                else:
                    floor = 0.0
            else:
                lam = lv_s = levels[s]
                for lv_i, j in nbrs:
                    if lv_i is not None:
                        lv = lv_i
                    elif j >= 0:
                        lv = levels[j] * min(1.0, lv_s / max(levels[other], 1e-4))
                    elif not (0 <= run_start <= u - run_ms and gap < RUN_GAP):  # _running(u)
                        lv = 0.0
                    else:
                        continue
                    if lv < lam:
                        lam = lv
                if top_o is not None and top_o < 0.0:  # (levels are never negative)
                    top_o = max((lv for x, (lv, c) in enumerate(zip(levels, counts, strict=True))
                                 if c >= smin and x != s), default=None)
                top = lv_s if top_o is None or lv_s > top_o else top_o
                if (lv_s <= NIGHT_SHARE * top or edge) and others_known:
                    lam = min(lam, levels[other])
                floor = lam
            # learn(0, u, 1.0, floor)
            floor = round_to(floor, 4)  # (_entry)
            entry = shared.get((0, floor)) if floor < 1.0 else None
            if entry is None:
                entry = [0, floor]
                if floor < 1.0:
                    shared[(0, floor)] = entry
            recent.append(entry)
            if len(recent) > span:
                del recent[0]
            if 0 <= last_ts < u and u - last_ts < wsize:
                wsize = u - last_ts
            last_ts = u
            gap += 1
            if since < 0:
                since = u
            plain = 1.0 / (n + 1)
            a = rl if rl >= plain else plain
            level += a * (0 - level)
            a = rf if rf >= plain else plain
            fast += a * (0 - fast)
            n += 1
            sn = counts[s]
            plain = 1.0 / (sn + 1)
            a = rs if rs >= plain else plain
            lv_old = levels[s]
            levels[s] = round_to(lv_old + a * (0 - lv_old), 4)
            counts[s] = sn + 1
        self.last_ts, self.size, self.gap, self.since, self.level, self.fast, self.n = (last_ts, wsize, gap, since,
                                                                                        level, fast, n)
        self._top = None  # worked out again when next needed (a cache of the busiest slot's level)

    def _zeros_in_slot(self, t: int, k: int, size: int) -> None:
        """``learn(0, ...)`` of ``k`` windows ``size`` apart from ``t``, after the first of a run, all in one
        slot, none of them kept in the span (:meth:`learn`'s arithmetic, step by step, its weights inlined; a
        slot level that no longer moves at its precision stops being stepped)."""
        hl, fhl, shl = (ew_weight(h, 1 << 60) for h in (self.half_life, self.fast_half_life, self.slot_half_life))
        if size < self.size:
            self.size = size
        self.last_ts = t + (k - 1) * size
        self.gap += k
        n, level, fast = self.n, self.level, self.fast
        for _ in range(k):
            plain = 1.0 / (n + 1)
            a = hl if hl >= plain else plain
            level += a * (0 - level)
            a = fhl if fhl >= plain else plain
            fast += a * (0 - fast)
            n += 1
        self.n, self.level, self.fast = n, level, fast
        s = self._slot(t)
        lv = first = self.slot_level[s]
        sn = first_n = self.slot_n[s]
        for left in range(k, 0, -1):
            plain = 1.0 / (sn + 1)
            a = shl if shl >= plain else plain
            new = round_to(lv + a * (0 - lv), 4)
            if new == lv and a == shl:  # rounding holds it here from now on
                sn += left
                break
            lv = new
            sn += 1
        self.slot_level[s], self.slot_n[s] = lv, sn
        top = self._top
        if top is not None and (first >= top or first_n < self.slot_min <= sn):
            self._top = None
