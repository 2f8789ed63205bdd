"""`detector bench scale`: replay of quiet fleets (many routes, few requests each) and memory per route.

Fleets grow by routes that each send little: a feature per team, a tenant per
route. Each route here sends ``--per-hour`` requests an hour (a usage, a
latency and a cost event each) at random minutes, over ``--hours`` hours.
Replay is measured in CPU time against a bare ``json.loads`` loop over the
same lines, alternately, medians of ``--repeat`` pairs. Memory is measured in
a fresh process, the fleet generated an hour at a time: resident bytes held
after the replay (the pipeline alive) less before it, per route, beside the
JSON checkpoint size per route.

>>> lines = quiet_fleet(3, hours=2)
>>> len(lines), sorted({json.loads(x)["type"] for x in lines})
(18, ['cost', 'latency', 'usage'])
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence

from detector.bench.replay import measure
from detector.compiled import describe
from detector.config import Config

__all__ = ["main", "quiet_fleet", "memory"]

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def quiet_fleet(routes: int, hours: int = 24, per_hour: int = 1, seed: int = 5) -> list[bytes]:
    """``routes`` routes each sending ``per_hour`` requests an hour at random minutes, in time order."""
    return [line for hour in fleet_hours(routes, hours, per_hour, seed) for line in hour]


def fleet_hours(routes: int, hours: int = 24, per_hour: int = 1, seed: int = 5) -> Iterator[list[bytes]]:
    """:func:`quiet_fleet` an hour at a time (a fleet of 100,000 routes is never held whole)."""
    rng = random.Random(seed)
    for h in range(hours):
        events: list[tuple[int, bytes]] = []
        for r in range(routes):
            route = f"team{r % 50}.feature{r}"
            for k in range(per_hour):
                ts = T0 + h * 3_600_000 + rng.randrange(3_600_000 - 2)  # its three events inside the hour
                rid = f"{r}-{h}-{k}"
                base = {"route": route, "model": "m1", "provider": "p", "request_id": rid}
                events.append((ts, json.dumps({"event_id": rid + "u", "type": "usage", "ts": ts, **base,
                                               "prompt_version": "v1", "tenant": f"t{r % 7}",
                                               "input_tokens": 500, "output_tokens": 100}).encode()))
                events.append((ts + 1, json.dumps({"event_id": rid + "l", "type": "latency", "ts": ts + 1, **base,
                                                   "latency_ms": round(rng.lognormvariate(6.5, 0.3), 1)}).encode()))
                events.append((ts + 2, json.dumps({"event_id": rid + "c", "type": "cost", "ts": ts + 2, **base,
                                                   "cost_usd": 0.002}).encode()))
        events.sort(key=lambda e: e[0])
        yield [line for _, line in events]


def config_for(routes: int) -> Config:
    """The built-in defaults, with room for every route of the fleet in one pipeline."""
    return Config.model_validate({"windows": {"max_routes": max(routes, 10_000)}})


def _resident() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(routes: int, hours: int, per_hour: int) -> dict[str, float]:
    """Resident bytes per route held by a pipeline after replaying the fleet (run it in a fresh process),
    and its checkpoint's JSON bytes per route."""
    from detector.pipeline import Pipeline

    gc.collect()
    before = _resident()
    pipe = Pipeline(config_for(routes))
    for lines in fleet_hours(routes, hours, per_hour):  # an hour's lines at a time: what is held is the pipeline
        pipe.process_many(lines)
    del lines
    gc.collect()
    held = _resident() - before
    sample = sorted(pipe.windower.routes)[:: max(1, routes // 200)]
    snap = sum(len(json.dumps(pipe.route_state(r))) for r in sample) / max(1, len(sample))
    return {"routes": len(pipe.windower.routes), "bytes_per_route": held / max(1, len(pipe.windower.routes)),
            "resident_mb": _resident() / 1e6, "checkpoint_bytes_per_route": snap}


def _memory_in_subprocess(routes: int, hours: int, per_hour: int) -> dict[str, float]:
    code = ("import json, sys; from detector.bench.scale import memory; "
            f"print(json.dumps(memory({routes}, {hours}, {per_hour})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="detector bench scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--routes", default="2000,10000", help="fleet sizes to replay, comma-separated")
    ap.add_argument("--hours", type=int, default=24, help="hours of traffic (default a day)")
    ap.add_argument("--per-hour", type=int, default=1, help="requests per route and hour")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each; medians are reported")
    ap.add_argument("--memory", default="", help="fleet sizes whose memory per route to measure, in a fresh "
                                                 "process each (e.g. 10000,100000)")
    ap.add_argument("--memory-hours", type=int, default=2, help="hours of traffic for the memory runs")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.routes.split(",") if x.strip()]
        mem_sizes = [int(x) for x in args.memory.split(",") if x.strip()]
    except ValueError:
        print("bench scale: --routes and --memory take comma-separated integers", file=sys.stderr)
        return 2
    if args.repeat < 1 or args.hours < 1 or args.per_hour < 1 or any(n < 1 for n in sizes + mem_sizes):
        print("bench scale: --repeat, --hours, --per-hour and the sizes must be at least 1", file=sys.stderr)
        return 2
    from detector.replay import replay_lines

    print(describe())
    print("| routes | events | json.loads | replay | ratio | replay per day of data |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        lines = quiet_fleet(n, args.hours, args.per_hour)
        config = config_for(n)

        def baseline(lines: list[bytes] = lines, loads: Callable[[bytes], object] = json.loads) -> None:
            for line in lines:
                loads(line)

        def replay(lines: list[bytes] = lines, config: Config = config) -> None:
            replay_lines(lines, config)

        t_json, t_replay, ratio = measure(baseline, replay, args.repeat)
        per_day = t_replay * 24 / args.hours
        print(f"| {n:,} | {len(lines):,} | {len(lines) / t_json:,.0f}/s | {len(lines) / t_replay:,.0f}/s "
              f"| {ratio:.3f} | {per_day:,.1f} s |", flush=True)
    if mem_sizes:
        print()
        print("| routes | resident bytes per route | process resident | checkpoint bytes per route |")
        print("|---|---|---|---|")
    for n in mem_sizes:
        m = _memory_in_subprocess(n, args.memory_hours, args.per_hour)
        print(f"| {int(m['routes']):,} | {m['bytes_per_route']:,.0f} | {m['resident_mb']:,.0f} MB "
              f"| {m['checkpoint_bytes_per_route']:,.0f} |", flush=True)
    return 0
