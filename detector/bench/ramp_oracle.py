"""How soon could a test that knew each route's true baseline see a latency ramp? An oracle for the fleet scenarios.

For every ``ramp_latency`` label, a one-sided CUSUM of each latency sample's log, standardised by the mean
and spread of the route's own samples over the three days before the label (outside every label's hour
either side), with a reference of half of ln 1.5 (a 1.5x slowdown is the least any latency test calls an
incident) and each sample clipped at 3 standard deviations, as :class:`~detector.detectors.logmean.LogMeanShift`
clips. It knows what no online test knows (the baseline, free of drift and of earlier incidents), and it is
judged without a false-alarm budget of its own: alarms outside labels are counted beside it, over the route's
whole week. Printed per label: the route's samples a day, the oracle's delay at thresholds ``--h`` (in
standard deviations) with its false alarms, and the detector's delay from ``--incidents``.

``python -m detector.bench.ramp_oracle DIR/seed-101 DIR/seed-102 [--h 8 10 12 15] [--incidents incidents.jsonl]``
(the folders ``detector bench scenarios --suite fleet --out DIR`` writes)
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from detector.bench.scenarios.model import read_labels
from detector.bench.scenarios.score import score
from detector.ingest.decode import parse_ts

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
REFERENCE = math.log(1.5) / 2  # half the least slowdown called an incident, in log units
CLIP = 3.0


def _latencies(folder: Path, routes: set[str]) -> dict[str, list[tuple[int, float]]]:
    """(epoch ms, log latency) of every latency event of ``routes``, in time order."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with (folder / "events.jsonl").open("rb") as fh:
        for line in fh:
            if b'"latency"' not in line:
                continue
            ev = json.loads(line)
            if ev.get("type") == "latency" and ev.get("route") in routes and ev.get("latency_ms", 0) > 0:
                ts = parse_ts(ev["ts"])
                if ts is not None:
                    out[ev["route"]].append((ts, math.log(ev["latency_ms"])))
    for xs in out.values():
        xs.sort()
    return out


def oracle(folder: Path, hs: list[float], incidents_file: str) -> list[str]:
    """One line per ramp_latency label of the folder."""
    scenario = read_labels(folder / "labels.json")
    ramps = [lb for lb in scenario.labels if lb.variant == "ramp_latency"]
    if not ramps:
        return []
    incidents = [json.loads(line) for line in (folder / incidents_file).open(encoding="utf-8")]
    delays = {id(r.label): r.delay_min for r in score(incidents, scenario).results}
    lat = _latencies(folder, {lb.route for lb in ramps})
    lines = []
    for lb in ramps:
        xs = lat[lb.route]
        near = [(o.start_ms - HOUR_MS, o.end_ms + HOUR_MS) for o in scenario.labels if o.route == lb.route]

        def labelled(t: int, near: list[tuple[int, int]] = near) -> bool:
            return any(a <= t <= b for a, b in near)

        base = [y for t, y in xs if lb.start_ms - 3 * DAY_MS <= t < lb.start_ms and not labelled(t)]
        head = f"{folder.name:>9} {lb.route:24} {len(xs) / 7:6.0f}/day"
        if len(base) < 30:
            lines.append(f"{head}  no baseline")
            continue
        mu = sum(base) / len(base)
        sd = math.sqrt(sum((y - mu) ** 2 for y in base) / len(base))
        parts = []
        for h in hs:
            s, found, false = 0.0, None, 0
            for t, y in xs:
                s = max(0.0, s + min(max((y - mu) / sd, -CLIP), CLIP) - REFERENCE / sd)
                if s >= h:
                    if lb.start_ms <= t <= lb.end_ms:
                        found = found if found is not None else (t - lb.start_ms) / 60_000
                    elif not labelled(t):
                        false += 1
                    s = 0.0
            parts.append(f"h{h:g} {'-' if found is None else f'{found:.0f}':>3} min ({false} false)")
        got = delays.get(id(lb))
        lines.append(f"{head}  " + "  ".join(parts) + f"  detector {'missed' if got is None else f'{got:.0f} min'}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--h", nargs="+", type=float, default=[8.0, 10.0, 12.0, 15.0])
    ap.add_argument("--incidents", default="incidents.jsonl")
    args = ap.parse_args()
    for folder in args.folders:
        for line in oracle(folder, args.h, args.incidents):
            print(line)


if __name__ == "__main__":
    main()
