"""How soon could any test have seen each labelled incident? The information floor of the fleet scenarios.

For every required label of an error or review signal, the minutes from its start to its third bad
event on the route (errors of the label's classes, or rejected and escalated reviews): no rate test that
needs three bad events (``ProportionTest.min_count``) can fire before it, whatever its level. Printed
beside the detection delay, slowest first, then the delay percentiles over all labels and over the labels
whose floor is within ``--within`` minutes (latency and cost labels have no such floor and stay in both).

``python benchmarks/label_floor.py DIR/seed-101 DIR/seed-102 [--within 20] [--incidents incidents.jsonl]`` (the folders
``detector bench scenarios --suite fleet --out DIR`` writes)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import msgspec

from detector.ingest.decode import parse_ts
from detector.scenarios.model import read_labels
from detector.scenarios.score import p90, score

BAD_OUTCOMES = frozenset(("rejected", "escalated"))
NEEDED = 3  # bad events a rate test needs (ProportionTest.min_count)


def floors(folder: Path, incidents_file: str = "incidents.jsonl") -> list[tuple[str, str, float | None, float | None]]:
    """(route, variant, minutes to the third bad event or None, detection delay or None) per required label;
    the floor is None for labels of other signals (latency, cost, volume)."""
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
    decode = msgspec.json.Decoder()
    with (folder / "events.jsonl").open("rb") as fh:
        for line in fh:
            if b'"error"' not in line and b'"review"' not in line:
                continue
            ev = decode.decode(line)
            for lb, classes, review, bad in watched.get(ev.get("route"), ()):
                ts = parse_ts(ev["ts"])
                if ts is None or not lb.start_ms <= ts <= lb.end_ms or len(bad) >= NEEDED:
                    continue
                if (ev["type"] == "error" and ev.get("error_class") in classes) or (
                        review and ev["type"] == "review" and ev.get("outcome") in BAD_OUTCOMES):
                    bad.append((ts - lb.start_ms) / 60_000)
    floor_of = {id(lb): (bad[NEEDED - 1] if len(bad) >= NEEDED else None)
                for entries in watched.values() for lb, _, _, bad in entries}
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
        print(f"{seed:>9} {route:24s} {variant:26s} third bad event {f:>6} min  delay {d:>6}")
    delays = [r[4] for r in rows if r[4] is not None]
    late = [r for r in rows if r[3] is not None and r[3] > args.within]
    seen = [r[4] for r in rows if r[4] is not None and not (r[3] is not None and r[3] > args.within)]
    print(f"{len(rows)} labels; {len(late)} have their third bad event after {args.within:g} min")
    if delays:
        print(f"all labels: median {statistics.median(delays):.1f} min, p90 {p90(delays):.1f} min")
    if seen:
        print(f"labels whose floor is within {args.within:g} min: median {statistics.median(seen):.1f} min, "
              f"p90 {p90(seen):.1f} min")


if __name__ == "__main__":
    main()
