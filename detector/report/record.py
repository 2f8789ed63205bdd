"""What `detector replay --report` plots, recorded while the replay runs (pure: no I/O).

:class:`Recorder` hooks a pipeline's detectors (``RouteDetectors.trace``) and keeps, per route and
signal, each judged window's end, observed value, baseline, threshold and whether it was anomalous;
per route, the changes its windows carried. Storage is compact (``array`` of doubles): a week of 50
routes with eight judged signals each is about 4 million windows, 130 MB while the replay runs.
:meth:`Recorder.series` then puts every series of the report on one grid of at most ``points``
buckets, keeping in each bucket the observed value farthest from its baseline (a spike or a drop stays
visible however long the replay) and every anomalous window's bucket.

>>> from detector.windows.aggregate import WindowAggregate
>>> from detector.detectors.proportion import Judgement
>>> rec = Recorder()
>>> for i in range(10):
...     w = WindowAggregate("r", i * 60_000, (i + 1) * 60_000)
...     rec.observe(w, {"request_volume": Judgement(i == 7, 50.0 if i != 7 else 2.0, 50.0, 20.0, 0.9)})
>>> grid, series = rec.series(points=5)
>>> grid
[120000, 240000, 360000, 480000, 600000]
>>> series["r"]["request_volume"]["observed"], series["r"]["request_volume"]["anomalous"]
([50.0, 50.0, 50.0, 2.0, 50.0], [3])
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any

from detector.detectors.proportion import Judgement
from detector.windows.aggregate import WindowAggregate

__all__ = ["Recorder"]


class _Series:
    __slots__ = ("ends", "observed", "baseline", "threshold", "anomalous")

    def __init__(self) -> None:
        self.ends = array("q")
        self.observed = array("d")
        self.baseline = array("d")
        self.threshold = array("d")
        self.anomalous = array("q")  # indexes of anomalous windows


def _num(x: float) -> float | None:
    """A finite value rounded to 4 significant digits (the report is read, not computed on), else None."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.4g}")


class Recorder:
    """Keeps every judged window of every route and signal, and the changes each route's windows carried."""

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, _Series]] = {}
        #: route -> [(ts_ms, kind, from_version, to_version)]
        self.changes: dict[str, list[tuple[int, str, str | None, str | None]]] = {}
        self.first_ms: int | None = None
        self.last_ms = 0

    def attach(self, detectors: Any) -> None:
        """Start recording a ``RouteDetectors`` (a stage without ``trace`` records nothing)."""
        if hasattr(detectors, "trace"):
            hook: Callable[[WindowAggregate, dict[str, Judgement | None]], None] = self.observe
            detectors.trace = hook

    def observe(self, w: WindowAggregate, results: dict[str, Judgement | None]) -> None:
        per = self.routes.get(w.route)
        if per is None:
            per = self.routes[w.route] = {}
        if self.first_ms is None or w.start < self.first_ms:
            self.first_ms = w.start
        if w.end > self.last_ms:
            self.last_ms = w.end
        for name, r in results.items():
            if r is None or not r.judged:
                continue
            s = per.get(name)
            if s is None:
                s = per[name] = _Series()
            if r.anomalous:
                s.anomalous.append(len(s.ends))
            s.ends.append(w.end)
            s.observed.append(r.observed)
            s.baseline.append(r.baseline)
            s.threshold.append(r.threshold)
        for c in w.changes:
            self.changes.setdefault(w.route, []).append(
                (int(c["ts"]), str(c["kind"]), c.get("from_version"), c.get("to_version")))

    def series(self, points: int = 600) -> tuple[list[int], dict[str, dict[str, dict[str, Any]]]]:
        """One time grid (bucket ends, epoch ms) and, per route and signal, ``observed``, ``baseline``,
        ``threshold`` on it (None where nothing was judged) and ``anomalous`` (bucket indexes)."""
        if self.first_ms is None:
            return [], {}
        span = max(1, self.last_ms - self.first_ms)
        step = max(60_000, math.ceil(span / points / 60_000) * 60_000)
        n = max(1, math.ceil(span / step))
        grid = [self.first_ms + (i + 1) * step for i in range(n)]
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for route, per in sorted(self.routes.items()):
            out[route] = {}
            for name, s in sorted(per.items()):
                obs: list[float | None] = [None] * n
                base: list[float | None] = [None] * n
                thr: list[float | None] = [None] * n
                far = [-1.0] * n
                for i in range(len(s.ends)):
                    b = min(n - 1, (s.ends[i] - 1 - self.first_ms) // step)
                    d = abs(s.observed[i] - s.baseline[i]) if math.isfinite(s.baseline[i]) else 0.0
                    if d >= far[b]:
                        far[b] = d
                        obs[b] = _num(s.observed[i])
                    base[b] = _num(s.baseline[i])
                    thr[b] = _num(s.threshold[i])
                marked: set[int] = set()
                for i in s.anomalous:  # a bucket shows its (last) anomalous window, not a calmer one beside it
                    b = min(n - 1, (s.ends[i] - 1 - self.first_ms) // step)
                    obs[b] = _num(s.observed[i])
                    marked.add(b)
                anomalous = sorted(marked)
                out[route][name] = {"observed": obs, "baseline": base, "threshold": thr, "anomalous": anomalous}
        return grid, out
