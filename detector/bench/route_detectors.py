"""Per-window cost and state size of the detector stage (every signal of a route).

``python -m detector.bench.route_detectors [--seed 1] [--repeat 3]``

Replays one labelled scenario's closed windows through ``RouteDetectors`` and
reports the median time of one ``on_window`` call (all signals of one route
for one window), and the snapshot size per route and per signal (JSON bytes),
after two days of history. Windows are collected first, so only detector work
is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from detector.bench.scenarios.generate import generate_scenario
from detector.config import Config
from detector.detectors.firing import Firing
from detector.detectors.routes import RouteDetectors
from detector.pipeline import NullIncidents, Pipeline
from detector.windows.aggregate import WindowAggregate
from detector.windows.windower import EmptyRun


class _Keep:
    """A detector stage (:class:`~detector.pipeline.DetectorStage`) that keeps the closed windows."""

    def __init__(self) -> None:
        self.windows: list[WindowAggregate] = []

    def on_window(self, window: WindowAggregate) -> list[Firing]:
        self.windows.append(window)
        return []

    def on_evict(self, route: str) -> None:
        return None

    def quiet(self, route: str) -> bool:
        return False  # every window is kept, empty ones too

    def on_empty_run(self, run: EmptyRun) -> None:
        return None

    def heighten(self, route: str, until_ms: int, incident_type: str | None = None,
                 signals: Sequence[str] = ()) -> None:
        return None

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, snap: dict[str, Any]) -> None:
        return None

    def route_state(self, route: str) -> dict[str, Any] | None:
        return None

    def restore_routes(self, routes: dict[str, dict[str, Any]]) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    keep = _Keep()
    pipe = Pipeline(Config(), detectors=keep, incidents=NullIncidents())
    for ev in generate_scenario(args.seed).events:
        pipe.process(json.dumps(ev).encode())
    pipe.flush()
    windows = keep.windows
    per_call: list[float] = []
    det = RouteDetectors(Config())
    for _ in range(args.repeat):
        det = RouteDetectors(Config())
        clock = time.perf_counter_ns
        for w in windows:
            t0 = clock()
            det.on_window(w)
            per_call.append(clock() - t0)
    routes = det.routes
    print(f"windows: {len(windows):,} over {len(routes)} routes, {args.repeat} runs")
    print(f"on_window (all signals of one route, one window): median {statistics.median(per_call) / 1000:.1f} µs, "
          f"p99 {sorted(per_call)[int(0.99 * len(per_call))] / 1000:.1f} µs")
    sizes: dict[str, list[int]] = {}
    route_sizes = []
    for st in routes.values():
        snap = st.snapshot()
        route_sizes.append(len(json.dumps(snap)))
        for name, s in snap["dets"].items():
            sizes.setdefault(name, []).append(len(json.dumps(s)) + len(json.dumps(snap["alarms"].get(name, {}))))
    print(f"state per route: median {statistics.median(route_sizes):,.0f} B, max {max(route_sizes):,} B")
    print("state per signal (detector + alarm, JSON bytes, max over routes):")
    for name in sorted(sizes):
        print(f"  {name:24s} {max(sizes[name]):6,d}")


if __name__ == "__main__":
    main()
