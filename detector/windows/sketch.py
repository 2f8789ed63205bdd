"""A mergeable, serialisable quantile sketch with bounded relative error.

Log-spaced buckets in the manner of DDSketch: a value ``x > 0`` lands in
bucket ``ceil(log(x) / log(gamma))`` with ``gamma = (1 + a) / (1 - a)``,
so every quantile is within a relative error ``a`` of the true one. When
there are more than ``max_buckets`` buckets the lowest ones are collapsed
(tail quantiles, the ones that matter for latency, keep their accuracy).

>>> s = QuantileSketch()
>>> for v in range(1, 1001):
...     s.add(float(v))
>>> abs(s.quantile(0.95) - 950) / 950 < 0.02
True
>>> t = QuantileSketch.from_dict(s.to_dict())
>>> t.quantile(0.5) == s.quantile(0.5)
True
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["QuantileSketch"]


class QuantileSketch:
    """Quantiles of non-negative values within 1% relative error by default."""

    __slots__ = ("rel_acc", "max_buckets", "_gamma_ln", "buckets", "zeros", "count", "total")

    def __init__(self, rel_acc: float = 0.01, max_buckets: int = 512):
        self.rel_acc = rel_acc
        self.max_buckets = max_buckets
        self._gamma_ln = math.log((1 + rel_acc) / (1 - rel_acc))
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.total = 0.0

    def add(self, x: float) -> None:
        """Add one value (negative values are treated as zero)."""
        self.count += 1
        if x <= 1e-9:
            self.zeros += 1
            return
        self.total += x
        k = math.ceil(math.log(x) / self._gamma_ln)
        b = self.buckets
        b[k] = b.get(k, 0) + 1
        if len(b) > self.max_buckets:
            self._collapse()

    def _collapse(self) -> None:
        keys = sorted(self.buckets)
        lowest, second = keys[0], keys[1]
        self.buckets[second] += self.buckets.pop(lowest)

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of ``other`` (same accuracy required)."""
        if other.rel_acc != self.rel_acc:
            raise ValueError("cannot merge sketches of different accuracy")
        for k, n in other.buckets.items():
            self.buckets[k] = self.buckets.get(k, 0) + n
        self.zeros += other.zeros
        self.count += other.count
        self.total += other.total
        while len(self.buckets) > self.max_buckets:
            self._collapse()

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1), or NaN when empty."""
        if self.count == 0:
            return math.nan
        rank = max(0, math.ceil(q * self.count) - 1)  # nearest rank
        if rank < self.zeros:
            return 0.0
        seen = self.zeros
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen > rank:
                return 2.0 * math.exp(k * self._gamma_ln) / (1.0 + math.exp(self._gamma_ln))
        return 2.0 * math.exp(max(self.buckets) * self._gamma_ln) / (1.0 + math.exp(self._gamma_ln))

    def log_values(self) -> list[tuple[float, int]]:
        """(ln of the value :meth:`quantile` gives for the bucket, values in it) of each non-empty bucket;
        zeros are left out.

        >>> s = QuantileSketch()
        >>> s.add(100.0); s.add(100.0)
        >>> [(abs(math.exp(y) / 100.0 - 1.0) < 0.01, c) for y, c in s.log_values()]
        [(True, 2)]
        """
        g = self._gamma_ln
        mid = math.log(2.0 / (1.0 + math.exp(g)))  # the bucket k's value is e^(k g) x 2 / (1 + e^g)
        return [(k * g + mid, c) for k, c in self.buckets.items() if c > 0]

    @property
    def mean(self) -> float:
        """Exact mean of the values added, NaN when empty."""
        return self.total / self.count if self.count else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "rel_acc": self.rel_acc,
            "max_buckets": self.max_buckets,
            "buckets": [[k, n] for k, n in sorted(self.buckets.items())],
            "zeros": self.zeros,
            "count": self.count,
            "total": self.total,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileSketch:
        """Inverse of :meth:`to_dict`."""
        s = cls(d["rel_acc"], d["max_buckets"])
        s.buckets = {int(k): int(n) for k, n in d["buckets"]}
        s.zeros, s.count, s.total = d["zeros"], d["count"], d["total"]
        return s
