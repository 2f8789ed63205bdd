"""Operator-set limits: static guardrails and multi-window SLO burn rate.

Burn rate follows the Google SRE workbook: page when the error budget burns
14.4x too fast over both 1 h and 5 min, or 6x over both 6 h and 30 min,
and only with a minimum volume so that a handful of requests cannot page.

>>> b = BurnRate(slo_error_rate=0.01)
>>> for i in range(120):
...     r = b.update(0, 100)
>>> r.anomalous
False
>>> for i in range(30):
...     r = b.update(40, 100)       # 40% errors: 40x the budget
>>> r.anomalous, round(r.observed, 1)  # the 1 h window holds half an hour of it
(True, 20.0)
"""

from __future__ import annotations

from collections import deque

from detector.detectors.base import Stateful
from detector.detectors.proportion import Judgement

__all__ = ["BurnRate", "SpendGuard"]


class BurnRate(Stateful):
    """Multi-window, multi-burn-rate SLO alert over per-window (errors, requests)."""

    def __init__(
        self,
        slo_error_rate: float = 0.01,
        fast: tuple[int, int, float] = (60, 5, 14.4),
        slow: tuple[int, int, float] = (360, 30, 6.0),
        bucket: int = 5,
        min_requests: int = 50,
    ):
        self.slo_error_rate = slo_error_rate
        self.fast = fast
        self.slow = slow
        self.bucket = bucket
        self.min_requests = min_requests
        super().__init__()

    def _reset(self) -> None:
        # 5-window buckets [errors, requests]; the newest bucket is being filled.
        self.buckets: deque[list[int]] = deque(maxlen=max(self.fast[0], self.slow[0]) // self.bucket + 1)
        self.filled = 0

    def _sum(self, windows: int) -> tuple[int, int]:
        k = n = 0
        for e, r in list(self.buckets)[-max(1, windows // self.bucket):]:
            k += e
            n += r
        return k, n

    def update(self, errors: int, requests: int) -> Judgement:
        """Add one window and judge both alert pairs."""
        if not self.buckets or self.filled >= self.bucket:
            self.buckets.append([0, 0])
            self.filled = 0
        self.buckets[-1][0] += errors
        self.buckets[-1][1] += requests
        self.filled += 1
        worst = Judgement(False, 0.0, 1.0, self.fast[2], 0.0)
        for long_w, short_w, factor in (self.fast, self.slow):
            kl, nl = self._sum(long_w)
            ks, ns = self._sum(short_w)
            if nl < self.min_requests or ns < max(1, self.min_requests // 10):
                continue
            burn_long = kl / nl / self.slo_error_rate
            burn_short = ks / ns / self.slo_error_rate
            burn = min(burn_long, burn_short)
            if burn >= factor:
                return Judgement(True, burn, 1.0, factor, min(1.0, burn / (2 * factor)))
            if burn > worst.observed:
                worst = Judgement(False, burn, 1.0, factor, min(1.0, burn / (2 * factor)))
        return worst


class SpendGuard(Stateful):
    """Spend over the last hour of windows against a fixed limit."""

    def __init__(self, max_spend_per_hour: float = 100.0, windows_per_hour: int = 60):
        self.max_spend_per_hour = max_spend_per_hour
        self.windows_per_hour = windows_per_hour
        super().__init__()

    def _reset(self) -> None:
        self.recent: deque[float] = deque(maxlen=self.windows_per_hour)

    def update(self, spend: float) -> Judgement:
        self.recent.append(round(spend, 6))
        total = sum(self.recent)
        over = total > self.max_spend_per_hour
        return Judgement(over, total, self.max_spend_per_hour, self.max_spend_per_hour, 1.0 if over else 0.0)
