"""How soon could a test that knew each label's start and its route's true baseline see it? A bound for the fleet p90.

:mod:`label_floor` counts the third bad event; this oracle also asks that the evidence be
significant against the route's own base rate, as any test that keeps false incidents rare must.
For every required label of an error, review, latency or cost signal, it knows what no online
test knows:

* the route's baseline, measured over the three days before the label (outside every label of the
  route, an hour either side): the share of requests with errors of the label's classes, the share
  of reviews rejected or escalated, or the mean and spread of log latency or log cost per request;
* the label's start, and which traffic is affected (a canary's new version, else the whole route);

and it tests, from the start and from every five minutes after it (a ramp's later stretch), the
events seen so far: a one-sided binomial tail for errors and reviews, a z-test of the summed log
values (each clipped at 3 standard deviations) for latency and cost. The oracle's delay is the first
event at which any of those tests reaches ``--alpha``; no multiplicity correction is made for the
starts, so it is generous.

A test that judges each route's signals every minute at a level alpha opens about
``alpha x 1440 x signals`` false incidents per route-day; the fleet bar (0.1 per route-day, five or
so signals) puts alpha near 1e-5. Labels of other signals (volume, a runaway trace), and those whose
route has too little baseline before them, get 0 (no bound).

Printed: per label the oracle's delay and the detector's, slowest oracle first; then the p90 of the
oracle's delays over all labels (what a single test at that level reaches, even knowing the start),
and the p90 of the better of the oracle and the detector for each label (the detector's own delay
where the oracle has no bound).

``python -m detector.bench.label_oracle DIR/seed-101 DIR/seed-102 [--alpha 1e-5 1e-4] [--incidents incidents.jsonl]``
(the folders ``detector bench scenarios --suite fleet --out DIR`` writes)
"""

from __future__ import annotations

import argparse
import json
import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from scipy.stats import binom, norm

from detector.bench.scenarios.model import Label, read_labels
from detector.bench.scenarios.score import p90, score
from detector.events import VERSION_FIELDS
from detector.ingest.decode import parse_ts

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
BAD_OUTCOMES = frozenset(("rejected", "escalated"))
CLIP = 3.0
STEP_MS = 5 * MIN_MS  # later starts tried, for ramps


@dataclass
class RouteEvents:
    """A route's events, in time order per kind: (ms, versions, value)."""

    requests: list[tuple[int, dict[str, str], str]] = field(default_factory=list)  # ms, versions, request id
    errors: list[tuple[int, str, str, str]] = field(default_factory=list)  # ms, class, tool, request id
    reviews: list[tuple[int, dict[str, str], bool]] = field(default_factory=list)
    latency: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    cost: list[tuple[int, dict[str, str], float]] = field(default_factory=list)


def read_events(folder: Path, routes: set[str]) -> dict[str, RouteEvents]:
    out: dict[str, RouteEvents] = defaultdict(RouteEvents)
    decode = msgspec.json.Decoder()
    fields = tuple(VERSION_FIELDS.values())
    with (folder / "events.jsonl").open("rb") as fh:
        for line in fh:
            ev = decode.decode(line)
            route = ev.get("route")
            if route not in routes:
                continue
            ms = parse_ts(ev["ts"])
            if ms is None:
                continue
            vers = {f: ev[f] for f in fields if f in ev}
            re = out[route]
            t = ev["type"]
            if t == "usage":
                re.requests.append((ms, vers, str(ev.get("request_id", ""))))
            elif t == "error":
                re.errors.append((ms, str(ev.get("error_class", "")), str(ev.get("tool", "")).split("@")[0],
                                  str(ev.get("request_id", ""))))
            elif t == "review":
                re.reviews.append((ms, vers, ev.get("outcome") in BAD_OUTCOMES))
            elif t == "latency" and float(ev.get("latency_ms", 0.0)) > 0:
                re.latency.append((ms, vers, math.log(float(ev["latency_ms"]))))
            elif t == "cost" and float(ev.get("cost_usd", 0.0)) > 0:
                re.cost.append((ms, vers, math.log(float(ev["cost_usd"]))))
    for re in out.values():
        for seq in (re.requests, re.errors, re.reviews, re.latency, re.cost):
            seq.sort(key=lambda x: x[0])
    return out


def _quiet(labels: list[Label], ms: int) -> bool:
    return not any(lb.start_ms - HOUR_MS <= ms <= lb.end_ms + HOUR_MS for lb in labels)


def _affected(lb: Label) -> tuple[str, str] | None:
    canary = lb.details.get("canary") or {}
    fld = VERSION_FIELDS.get(canary.get("kind", ""))
    return (fld, str(canary.get("to_version"))) if fld else None


def _first(xs: list[tuple[int, float]], lb: Label, fires: Callable[[int, float, float], bool]) -> float | None:
    """Minutes from the label's start to the first of ``xs`` (ms, value; in order) at which
    ``fires(n, sum, value)`` holds for the values counted from the start, or from any later start every
    STEP_MS within the label; None if never."""
    best: float | None = None
    times = [m for m, _ in xs]
    s = lb.start_ms
    while s < lb.end_ms:
        n, total = 0, 0.0
        for ms, x in xs[bisect_left(times, s):]:
            if best is not None and (ms - lb.start_ms) / MIN_MS >= best:
                break
            n += 1
            total += x
            if fires(n, total, x):
                best = (ms - lb.start_ms) / MIN_MS
                break
        s += STEP_MS
    return best


def _rate_oracle(marks: list[tuple[int, bool]], p0: float, lb: Label, alpha: float) -> float | None:
    """marks: (ms, bad) of the affected traffic within the label, in order; a binomial tail at each bad one."""
    return _first([(ms, 1.0 if bad else 0.0) for ms, bad in marks], lb,
                  lambda n, k, x: x > 0 and float(binom.sf(k - 1, n, p0)) <= alpha)


def _mean_oracle(xs: list[tuple[int, float]], mu: float, sd: float, lb: Label, alpha: float) -> float | None:
    """xs: (ms, log value) of the affected traffic; a z of the summed deviations, each clipped at CLIP."""
    z_need = float(norm.isf(alpha))
    clipped = [(ms, min(max((x - mu) / sd, -CLIP), CLIP)) for ms, x in xs]
    return _first(clipped, lb, lambda n, acc, x: acc / math.sqrt(n) >= z_need)


def oracle(lb: Label, route_labels: list[Label], ev: RouteEvents, alpha: float) -> float | None | str:
    """The oracle's delay in minutes, None if it never fires within the label, "-" for other signals and
    where the route has too little baseline (30 requests or samples, 10 reviews) to judge against."""
    aff = _affected(lb)

    def hit(vers: dict[str, str]) -> bool:
        return aff is None or vers.get(aff[0]) == aff[1]

    lo = lb.start_ms - 3 * DAY_MS

    def base(ms: int) -> bool:
        return lo <= ms < lb.start_ms and _quiet(route_labels, ms)

    def inside(ms: int) -> bool:
        return lb.start_ms <= ms <= lb.end_ms

    classes = frozenset((lb.details.get("error_rates") or {}).keys())
    if classes:
        tool = str(lb.details.get("error_tool") or "")

        def bad_error(cls: str, t: str) -> bool:
            return cls in classes and (not tool or t == tool)

        failed = {rid for ms, c, t, rid in ev.errors if bad_error(c, t) and (base(ms) or inside(ms))}
        nb = sum(1 for ms, _, _ in ev.requests if base(ms))
        kb = sum(1 for ms, _, rid in ev.requests if base(ms) and rid in failed)
        if nb < 30:
            return "-"  # no baseline to judge against: no bound
        p0 = (kb + 0.5) / (nb + 1)
        return _rate_oracle([(ms, rid in failed) for ms, v, rid in ev.requests if inside(ms) and hit(v)], p0, lb, alpha)
    if lb.signal == "review_rejection":
        nb = sum(1 for ms, _, _ in ev.reviews if base(ms))
        kb = sum(1 for ms, _, b in ev.reviews if base(ms) and b)
        if nb < 10:
            return "-"
        p0 = (kb + 0.5) / (nb + 1)
        marks = [(ms, b) for ms, v, b in ev.reviews if inside(ms) and hit(v)]
        return _rate_oracle(marks, p0, lb, alpha)
    if lb.signal in ("latency", "cost_per_request"):
        seq = ev.latency if lb.signal == "latency" else ev.cost
        b = [x for ms, _, x in seq if base(ms)]
        if len(b) < 30:
            return "-"
        mu = sum(b) / len(b)
        sd = math.sqrt(sum((x - mu) ** 2 for x in b) / len(b)) or 1e-9
        return _mean_oracle([(ms, x) for ms, v, x in seq if inside(ms) and hit(v)], mu, sd, lb, alpha)
    return "-"


Row = tuple[str, str, str, list[Any], float | None]  # seed, route, variant, oracle per alpha, detector


def rows_for(folder: Path, incidents_file: str, alphas: list[float]) -> list[Row]:
    scenario = read_labels(folder / "labels.json")
    incidents = [json.loads(line) for line in (folder / incidents_file).open(encoding="utf-8")]
    result = score(incidents, scenario)
    labels = [r for r in result.results if r.required]
    by_route: dict[str, list[Label]] = defaultdict(list)
    for lb in scenario.labels:
        by_route[lb.route].append(lb)
    events = read_events(folder, {r.label.route for r in labels})
    rows = []
    for r in labels:
        lb = r.label
        o = [oracle(lb, by_route[lb.route], events[lb.route], a) for a in alphas]
        rows.append((folder.name, lb.route, lb.variant, o, r.delay_min))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--alpha", nargs="+", type=float, default=[1e-5, 1e-4])
    ap.add_argument("--incidents", default="incidents.jsonl", help="incident file name in each folder")
    args = ap.parse_args()
    rows = []
    for folder in args.folders:
        rows += rows_for(folder, args.incidents, args.alpha)

    def val(o: float | None | str) -> float:
        return 0.0 if o == "-" else math.inf if o is None else float(o)

    rows.sort(key=lambda r: -val(r[3][0]))
    for seed, route, variant, o, delay in rows:
        cells = "  ".join(f"a{a:g} {'never' if x is None else x if x == '-' else f'{x:5.1f}':>6}"
                          for a, x in zip(args.alpha, o, strict=True))
        d = "missed" if delay is None else f"{delay:.0f}"
        print(f"{seed:>9} {route:24s} {variant:26s} {cells}  detector {d:>6}")
    delays = [math.inf if r[4] is None else r[4] for r in rows]
    print(f"{len(rows)} labels; detector p90 {p90(delays):.1f} min, over 20 min: {sum(d > 20 for d in delays)}")
    for i, a in enumerate(args.alpha):
        o = [val(r[3][i]) for r in rows]
        best = [d if r[3][i] == "-" else min(x, d) for r, x, d in zip(rows, o, delays, strict=True)]
        print(f"alpha {a:g}: oracle p90 {p90(o):.1f} min (over 20 min: {sum(x > 20 for x in o)}); "
              f"better of oracle and detector p90 {p90(best):.1f} min (over 20 min: {sum(x > 20 for x in best)})")


if __name__ == "__main__":
    main()
