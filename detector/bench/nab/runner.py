"""Run the univariate detector core over the NAB corpus and score it.

Every series is streamed row by row through a fresh copy of one detector
(one configuration for all 58 files, no look-ahead); the scores are written
to ``out_dir/<category>/<file>.csv`` (``timestamp,value,anomaly_score``) and
the corpus is scored with :mod:`detector.bench.nab.scorer` on all three profiles.

``python -m detector.bench.nab.runner --data ../shared/nab --out /tmp/nab``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from detector.bench.nab.scorer import PROFILE_NAMES, FileScores, load_profiles, sweep, window_rows
from detector.detectors.base import UnivariateDetector

__all__ = ["Series", "default_detector", "load_series", "main", "run_nab", "score_series"]

DetectorFactory = Callable[[], UnivariateDetector]


class Series:
    """One NAB file: its key (``<category>/<file>.csv``), raw timestamps and values."""

    __slots__ = ("key", "timestamps", "values")

    def __init__(self, key: str, timestamps: list[str], values: NDArray[np.float64]) -> None:
        self.key = key
        self.timestamps = timestamps
        self.values = values

    def parsed_timestamps(self) -> NDArray[np.datetime64]:
        """Timestamps as ``datetime64[s]``."""
        return np.array(self.timestamps, dtype="datetime64[s]")


def default_detector() -> UnivariateDetector:
    """The univariate core the service runs on every continuous signal, in its default configuration.

    :class:`~detector.detectors.signals.LevelShift` builds its core with the
    same :func:`~detector.detectors.signals.core_detector`; in the service
    the core sees ``log(max(x, floor))`` of a positive signal and its
    score (before the hold-off used here) must agree with an effect-size
    guard. NAB values may be zero or negative, so here it sees the raw value.
    """
    from detector.detectors.signals import core_detector

    return core_detector()


def _csv_root(data_dir: Path) -> Path:
    """``data_dir/data`` when present (the copied NAB layout), else ``data_dir``."""
    return data_dir / "data" if (data_dir / "data").is_dir() else data_dir


def load_series(path: Path, key: str) -> Series:
    """Read a ``timestamp,value`` CSV (LF or CRLF line endings)."""
    lines = path.read_text().splitlines()
    stamps: list[str] = []
    values: list[float] = []
    for line in lines[1:]:
        line = line.strip()
        if not line:
            continue
        ts, val = line.split(",")
        stamps.append(ts)
        values.append(float(val))
    return Series(key, stamps, np.asarray(values, dtype=np.float64))


def score_series(values: NDArray[np.float64], detector: UnivariateDetector) -> NDArray[np.float64]:
    """Stream ``values`` through ``detector`` (score, then learn) and return the scores."""
    update = detector.update
    return np.fromiter((update(float(v)) for v in values), dtype=np.float64, count=len(values))


def _score_file(args: tuple[Path, str, DetectorFactory]) -> tuple[str, Series, NDArray[np.float64]]:
    path, key, factory = args
    series = load_series(path, key)
    return key, series, score_series(series.values, factory())


def run_nab(
    data_dir: Path,
    out_dir: Path,
    detector_factory: DetectorFactory = default_detector,
    jobs: int = 1,
    verbose: bool = True,
) -> dict[str, float]:
    """Score every NAB series with ``detector_factory()`` and return normalised scores per profile.

    ``data_dir`` holds ``data/<category>/<file>.csv`` (or the categories
    directly), ``labels/combined_windows.json`` and ``config/profiles.json``.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    labels = json.loads((data_dir / "labels" / "combined_windows.json").read_text())
    profiles = load_profiles(data_dir / "config" / "profiles.json")
    root = _csv_root(data_dir)
    tasks = [(root / key, key, detector_factory) for key in sorted(labels)]
    t0 = time.perf_counter()
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_score_file, tasks))
    else:
        results = [_score_file(t) for t in tasks]
    elapsed = time.perf_counter() - t0
    files: list[FileScores] = []
    for key, series, scores in results:
        windows = window_rows(series.parsed_timestamps(), [tuple(w) for w in labels[key]])
        files.append(FileScores(scores, windows))
        target = out_dir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w") as fh:
            fh.write("timestamp,value,anomaly_score\n")
            for ts, v, s in zip(series.timestamps, series.values.tolist(), scores.tolist(), strict=True):
                fh.write(f"{ts},{v:.10g},{s:.6f}\n")
    out: dict[str, float] = {}
    for name in PROFILE_NAMES:
        res = sweep(files, profiles[name])
        out[name] = res.normalised
        if verbose:
            print(f"{name:20s} {res.normalised:7.2f}  (threshold {res.threshold:.6f}, raw {res.raw:.3f})")
    if verbose:
        rows = sum(len(f.scores) for f in files)
        print(f"{len(files)} files, {rows} rows, {elapsed:.1f} s detector time ({jobs} job(s))")
    return out


def main(argv: list[str] | None = None) -> int:
    """``--data DIR --out DIR [--jobs N]``: run and print the three normalised scores."""
    ap = argparse.ArgumentParser(prog="detector bench nab", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="NAB folder (data/, labels/, config/)")
    ap.add_argument("--out", type=Path, required=True, help="where to write <category>/<file>.csv scores")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    args = ap.parse_args(argv)
    labels = args.data / "labels" / "combined_windows.json"
    if not labels.is_file():
        print(f"bench nab: {args.data} is not a NAB folder (no labels/combined_windows.json)", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("bench nab: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        run_nab(args.data, args.out, jobs=args.jobs)
    except OSError as err:
        print(f"bench nab: cannot read or write {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
