"""How soon could any test have seen each labelled incident? The information floor of the fleet scenarios.

For every required label, the minutes from its start until the evidence any test needs has arrived on
the route:

* errors and reviews: the third bad event (errors of the label's classes, or rejected and escalated
  reviews): no rate test that needs three bad events (``ProportionTest.min_count``) can fire before it,
  whatever its level;
* latency: the fifth latency sample of the affected traffic (the canary's new version, else the route)
  once the slowdown has reached 1.5x (a ramp gets there part way; a median or mean of fewer samples is
  noise, and a smaller ratio is no incident by any latency test here);
* cost per request: the fourth request of the affected traffic (the fewest the canary's cost test takes).

Printed beside the detection delay, slowest first, then the delay percentiles over all labels and over the
labels whose floor is within ``--within`` minutes (labels of other signals, such as volume or a runaway
trace, have no floor and stay in both).

``python -m detector.bench.label_floor DIR/seed-101 DIR/seed-102 [--within 20] [--incidents incidents.jsonl]``
(the folders ``detector bench scenarios --suite fleet --out DIR`` writes)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import msgspec

from detector.bench.scenarios.model import read_labels
from detector.bench.scenarios.score import p90, score
from detector.events import VERSION_FIELDS
from detector.ingest.decode import parse_ts

BAD_OUTCOMES = frozenset(("rejected", "escalated"))
NEEDED = 3  # bad events a rate test needs (ProportionTest.min_count)
LATENCY_NEEDED = 5  # latency samples a batch needs (MIN_LATENCY_SAMPLES)
LATENCY_RATIO = 1.5  # the least slowdown any latency test calls an incident (LogMeanShift.min_ratio)
COST_NEEDED = 4  # requests the canary's cost test needs at the least (canary.MIN_COST_FAST)


def floors(folder: Path, incidents_file: str = "incidents.jsonl") -> list[tuple[str, str, float | None, float | None]]:
    """(route, variant, the label's information floor in minutes or None, detection delay or None) per
    required label; the floor is None for labels of other signals (volume, a runaway trace) and where the
    evidence never arrived within the label."""
    scenario = read_labels(folder / "labels.json")
    incidents = [json.loads(line) for line in (folder / incidents_file).open(encoding="utf-8")]
    result = score(incidents, scenario)
    watched: dict[str, list[tuple[Any, frozenset[str], bool, list[float]]]] = {}
    rows: list[tuple[str, str, float | None, float | None]] = []
    labels = [r for r in result.results if r.required]
    for r in labels:
        lb = r.label
        classes = frozenset((lb.details.get("error_rates") or {}).keys())
        if classes or lb.signal == "review_rejection":
            watched.setdefault(lb.route, []).append((lb, classes, lb.signal == "review_rejection", []))
    # latency and cost labels: (label, event type, samples needed, field and version of the affected
    # traffic or None for the whole route, first ms at which its samples count, the samples' times)
    counted: dict[str, list[tuple[Any, str, int, str | None, str | None, int, list[float]]]] = {}
    for r in labels:
        lb = r.label
        if lb.signal not in ("latency", "cost_per_request"):
            continue
        canary = lb.details.get("canary") or {}
        fld = VERSION_FIELDS.get(canary.get("kind", ""))
        ver = canary.get("to_version") if fld else None
        at = lb.start_ms
        if lb.signal == "latency":
            mult, ramp = float(lb.details.get("latency_mult", 0.0)), float(lb.details.get("ramp_min", 0.0))
            if mult < LATENCY_RATIO:
                continue
            at += int(ramp * 60_000 * (LATENCY_RATIO - 1.0) / (mult - 1.0))
        etype, need = ("latency", LATENCY_NEEDED) if lb.signal == "latency" else ("cost", COST_NEEDED)
        counted.setdefault(lb.route, []).append((lb, etype, need, fld, ver, at, []))
    decode = msgspec.json.Decoder()
    with (folder / "events.jsonl").open("rb") as fh:
        for line in fh:
            if b'"error"' not in line and b'"review"' not in line and not (
                    counted and (b'"latency"' in line or b'"cost"' in line)):
                continue
            ev = decode.decode(line)
            for lb, etype, need, fld, ver, at, seen in counted.get(ev.get("route"), ()):
                if ev["type"] != etype or len(seen) >= need or (fld is not None and ev.get(fld) != ver):
                    continue
                ts = parse_ts(ev["ts"])
                if ts is not None and at <= ts <= lb.end_ms:
                    seen.append((ts - lb.start_ms) / 60_000)
            for lb, classes, review, bad in watched.get(ev.get("route"), ()):
                ts = parse_ts(ev["ts"])
                if ts is None or not lb.start_ms <= ts <= lb.end_ms or len(bad) >= NEEDED:
                    continue
                if (ev["type"] == "error" and ev.get("error_class") in classes) or (
                        review and ev["type"] == "review" and ev.get("outcome") in BAD_OUTCOMES):
                    bad.append((ts - lb.start_ms) / 60_000)
    floor_of = {id(lb): (bad[NEEDED - 1] if len(bad) >= NEEDED else None)
                for entries in watched.values() for lb, _, _, bad in entries}
    floor_of.update({id(lb): (seen[need - 1] if len(seen) >= need else None)
                     for entries in counted.values() for lb, _, need, _, _, _, seen in entries})
    for r in labels:
        lb = r.label
        rows.append((lb.route, lb.variant, floor_of.get(id(lb)), r.delay_min))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--within", type=float, default=20.0)
    ap.add_argument("--incidents", default="incidents.jsonl", help="incident file name in each folder")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, float | None, float | None]] = []
    for folder in args.folders:
        rows += [(folder.name, *row) for row in floors(folder, args.incidents)]
    rows.sort(key=lambda r: -(r[4] if r[4] is not None else 1e9))
    for seed, route, variant, floor, delay in rows:
        f = "-" if floor is None else f"{floor:.1f}"
        d = "missed" if delay is None else f"{delay:.0f}"
        print(f"{seed:>9} {route:24s} {variant:26s} floor {f:>6} min  delay {d:>6}")
    delays = [r[4] for r in rows if r[4] is not None]
    late = [r for r in rows if r[3] is not None and r[3] > args.within]
    seen = [r[4] for r in rows if r[4] is not None and not (r[3] is not None and r[3] > args.within)]
    print(f"{len(rows)} labels; {len(late)} have their information floor after {args.within:g} min")
    if delays:
        print(f"all labels: median {statistics.median(delays):.1f} min, p90 {p90(delays):.1f} min")
    if seen:
        print(f"labels whose floor is within {args.within:g} min: median {statistics.median(seen):.1f} min, "
              f"p90 {p90(seen):.1f} min")


if __name__ == "__main__":
    main()
