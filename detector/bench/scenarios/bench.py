"""``detector bench scenarios``: generate, replay, score, and hold to the bars.

For each seed: generate the scenario, write ``events.jsonl`` and
``labels.json`` under ``OUT/seed-<n>/``, run the replay pipeline over the
events (same code as the service, no Kafka), write ``incidents.jsonl``,
score it, and print one table row. Then print the aggregate with pass/fail
per bar. Exit status 0 only when every bar passes.

Log records emitted during the replay are captured and checked for canary
leaks along with the incidents.

``--suite fleet`` runs the fleet suite instead (:mod:`detector.bench.scenarios.fleet_generate`:
a week of 28-30 routes from a Thursday, default seeds 101,102,103) against its own bars,
and explains every false incident (:mod:`detector.bench.scenarios.fleet_report`); ``--routes N``
keeps N routes of the fleet for a quick run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from detector.bench.scenarios.generate import generate_scenario
from detector.bench.scenarios.model import Scenario, write_scenario
from detector.bench.scenarios.score import AggregateScore, ScenarioScore, aggregate, score

__all__ = ["main", "run_seed", "run_fleet_seed", "format_row", "format_aggregate"]


class _Capture(logging.Handler):
    """Keeps every formatted log record, to check logs for leaks."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.texts.append(self.format(record) + " " + repr(record.args))
        except Exception:  # noqa: BLE001 - a log that cannot format must not break the bench
            self.texts.append(str(record.msg))


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="detector bench scenarios", description="Generate, replay and score labelled scenarios."
    )
    p.add_argument("--suite", choices=("default", "fleet"), default="default",
                   help="default: 6 routes, 2 days; fleet: 28-30 routes, a week from a Thursday")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 1,2,3; fleet: 101,102,103)")
    p.add_argument("--days", type=int, default=None, help="days per scenario (default 2; fleet: 7)")
    p.add_argument("--routes", type=int, default=None, help="fleet only: keep this many routes (every kind)")
    p.add_argument("--config", default=None, help="detector config file (default: built-in defaults)")
    p.add_argument("--out", default=None, help="directory for events, labels and incidents (default: temp)")
    args = p.parse_args(list(argv))
    fleet = args.suite == "fleet"
    if args.seeds is None:
        args.seeds = "101,102,103" if fleet else "1,2,3"
    if args.days is None:
        args.days = 7 if fleet else 2
    return args


def run_seed(seed: int, days: int, config: Any, out_dir: Path) -> tuple[ScenarioScore, dict[str, float]]:
    """Generate, write, replay and score one seed; returns the score and timings."""
    t0 = time.perf_counter()
    scenario = generate_scenario(seed, days)
    return _replay_and_score(scenario, config, out_dir, t0)


def run_fleet_seed(
    seed: int, days: int, config: Any, out_dir: Path, routes: int | None = None
) -> tuple[ScenarioScore, dict[str, float], Scenario]:
    """As :func:`run_seed` for the fleet suite; also returns the scenario (its events dropped)."""
    from detector.bench.scenarios.fleet_generate import generate_fleet

    t0 = time.perf_counter()
    scenario = generate_fleet(seed, days, routes)
    s, timing = _replay_and_score(scenario, config, out_dir, t0)
    return s, timing, scenario


def _replay_and_score(
    scenario: Scenario, config: Any, out_dir: Path, t0: float
) -> tuple[ScenarioScore, dict[str, float]]:
    from detector.replay import replay_lines  # lazy: the replay pipeline lives elsewhere

    events_path, _ = write_scenario(scenario, out_dir)
    n_events = len(scenario.events)
    scenario.events = []  # written: the replay reads the file, scoring needs only the labels
    t1 = time.perf_counter()
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        with events_path.open("rb") as fh:
            result = replay_lines((line.rstrip(b"\n") for line in fh), config)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    t2 = time.perf_counter()
    incidents: list[dict[str, Any]] = list(result.incidents)
    with (out_dir / "incidents.jsonl").open("w", encoding="utf-8") as fh:
        for inc in incidents:
            fh.write(json.dumps(inc, ensure_ascii=False) + "\n")
    s = score(incidents, scenario, extra_texts=capture.texts)
    return s, {"events": float(n_events), "generate_s": t1 - t0, "replay_s": t2 - t1}


HEADER = (
    f"{'seed':>4} {'events':>8} {'replay s':>8} {'labels':>6} {'found':>5} {'false':>5} {'wrong':>5} "
    f"{'false/rd':>8} {'med delay':>9} {'rollback':>8} {'rb wrong':>8} {'leaks':>5}"
)


def format_row(s: ScenarioScore, timing: dict[str, float]) -> str:
    """One table row for a seed."""
    delay = "n/a" if s.median_delay_min is None else f"{s.median_delay_min:.1f}"
    return (
        f"{s.seed:>4} {int(timing.get('events', 0)):>8} {timing.get('replay_s', 0.0):>8.2f} {s.labels:>6} "
        f"{s.found:>5} {s.false_incidents:>5} {s.wrong_type:>5} {s.false_per_route_day:>8.3f} {delay:>9} "
        f"{s.rollback_right:>3}/{s.rollback_expected:<4} {s.rollback_wrong:>8} {s.leaks:>5}"
    )


def format_misses(s: ScenarioScore) -> list[str]:
    """One line per missed label (what the detector should have found)."""
    return [f"  seed {s.seed} missed: {r.label.description}" for r in s.results if r.incident_id is None] + [
        f"  seed {s.seed} wrong rollback: {r.label.description} (expected {r.label.rollback})"
        for r in s.results
        if r.rollback_ok is False or r.rollback_wrong
    ]


def format_aggregate(agg: AggregateScore, width: int = 20, target_width: int = 14) -> list[str]:
    """The aggregate lines with pass/fail per bar."""
    lines = ["", f"{'bar':<30} {'value':>{width}} {'target':>{target_width}}  result"]
    for name, value, bar, ok in agg.bars():
        lines.append(f"{name:<30} {value:>{width}} {bar:>{target_width}}  {'PASS' if ok else 'FAIL'}")
    lines.append(f"overall: {'PASS' if agg.passed else 'FAIL'}")
    return lines


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``detector bench scenarios``; 0 when every bar passes, 1 otherwise."""
    from detector.config import load_config  # lazy: config lives elsewhere

    stream = out or sys.stdout
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        seeds = [int(x) for x in str(args.seeds).split(",") if x.strip()]
    except ValueError:
        print(f"--seeds: expected comma-separated integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    if not seeds or args.days < 1:
        print("--seeds must name at least one seed and --days must be >= 1", file=sys.stderr)
        return 2
    if args.routes is not None and (args.suite != "fleet" or args.routes < 4):
        print("--routes is for --suite fleet and must be >= 4 (one route of each kind)", file=sys.stderr)
        return 2
    config = load_config(args.config)
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="detector-bench-")
    base = Path(args.out) if args.out else Path(tmp.name)  # type: ignore[union-attr]
    try:
        if args.suite == "fleet":
            return _main_fleet(seeds, args, config, base, stream)
        print(HEADER, file=stream)
        scores: list[ScenarioScore] = []
        for seed in seeds:
            s, timing = run_seed(seed, args.days, config, base / f"seed-{seed}")
            scores.append(s)
            print(format_row(s, timing), file=stream, flush=True)
        for s in scores:
            for line in format_misses(s):
                print(line, file=stream)
        agg = aggregate(scores)
        for line in format_aggregate(agg):
            print(line, file=stream)
        if args.out:
            print(f"files in {base}", file=stream)
        return 0 if agg.passed else 1
    finally:
        if tmp is not None:
            tmp.cleanup()


def _main_fleet(seeds: list[int], args: argparse.Namespace, config: Any, base: Path, stream: TextIO) -> int:
    from detector.bench.scenarios.fleet_report import FLEET_HEADER, false_lines, false_summary, fleet_misses, fleet_row

    print(FLEET_HEADER, file=stream)
    runs: list[tuple[ScenarioScore, Scenario]] = []
    for seed in seeds:
        s, timing, scenario = run_fleet_seed(seed, args.days, config, base / f"seed-{seed}", args.routes)
        runs.append((s, scenario))
        print(fleet_row(s, timing, len(scenario.routes)), file=stream, flush=True)
    for s, _ in runs:
        for line in fleet_misses(s):
            print(line, file=stream)
    for s, scenario in runs:
        for line in false_lines(s, scenario):
            print(line, file=stream)
    for line in false_summary(runs):
        print(line, file=stream)
    agg = aggregate([s for s, _ in runs], suite="fleet")
    for line in format_aggregate(agg, width=28, target_width=16):
        print(line, file=stream)
    if args.out:
        print(f"files in {base}", file=stream)
    return 0 if agg.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
