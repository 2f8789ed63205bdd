"""Median per-update time and snapshot size of every univariate detector (default configuration).

``python -m detector.bench.detectors [--n 20000]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from detector.detectors import detector_classes
from detector.detectors.base import UnivariateDetector


def univariate_classes() -> list[type[UnivariateDetector]]:
    """Concrete UnivariateDetector subclasses defined in detector.detectors."""
    return detector_classes(UnivariateDetector)  # type: ignore[type-abstract]


def bench(cls: type[UnivariateDetector], n: int, seed: int = 0) -> tuple[float, float, int]:
    """(median µs per update, p99 µs, snapshot bytes) on a seeded seasonal series with spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 100 + 20 * np.sin(2 * np.pi * t / 1440) + rng.normal(0, 3, n)
    x[rng.integers(0, n, n // 500)] += 80
    xs = [float(v) for v in x]
    det = cls()
    clock = time.perf_counter_ns
    times = []
    for v in xs:
        t0 = clock()
        det.update(v)
        times.append(clock() - t0)
    times.sort()
    size = len(json.dumps(det.snapshot()))
    return statistics.median(times) / 1000, times[int(0.99 * len(times))] / 1000, size


def main(argv: list[str] | None = None) -> int:
    """Print one line per detector class."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="values per detector")
    args = ap.parse_args(argv)
    print(f"{'detector':24s} {'median µs':>10s} {'p99 µs':>8s} {'snapshot B':>11s}")
    for cls in univariate_classes():
        med, p99, size = bench(cls, args.n)
        print(f"{cls.__name__:24s} {med:10.2f} {p99:8.2f} {size:11d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
