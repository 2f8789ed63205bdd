"""`detector bench replay`: replay throughput against a bare ``json.loads`` loop.

Both are measured in the same run over the same lines, several times, in
CPU time of this process, and the medians are compared, so the ratio holds
on a noisy shared machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from detector.compiled import describe
from detector.config import load_config
from detector.replay import read_lines, replay_lines

__all__ = ["main", "synthetic_lines"]


def synthetic_lines(n: int, routes: int = 20, seed: int = 7, rate: float = 20.0) -> list[bytes]:
    """``n`` realistic telemetry lines over ``routes`` routes, ``rate`` events per second of event time."""
    rng = random.Random(seed)
    t0 = 1_767_225_600_000
    out = []
    kinds = ["usage"] * 40 + ["latency"] * 30 + ["cost"] * 25 + ["error"] * 3 + ["review"] * 2
    for i in range(n):
        kind = rng.choice(kinds)
        r = rng.randrange(routes)
        ev: dict[str, object] = {
            "event_id": f"ev-{i}",
            "type": kind,
            "ts": _iso(t0 + int(i * 1000 / rate)) if i % 2 else t0 + int(i * 1000 / rate),
            "route": f"team{r % 5}.feature{r}",
            "model": "gpt-x-mini" if r % 3 else "claude-y",
            "provider": "prov",
            "prompt_version": f"p{r % 4}",
            "tenant": f"tenant-{rng.randrange(50)}",
            "request_id": f"req-{i // 3}",
            "trace_id": f"tr-{i // 6}",
        }
        if kind == "usage":
            ev.update(input_tokens=rng.randrange(100, 2000), output_tokens=rng.randrange(10, 500))
        elif kind == "latency":
            ev["latency_ms"] = round(rng.lognormvariate(6.5, 0.4), 1)
        elif kind == "cost":
            ev["cost_usd"] = round(rng.uniform(0.0001, 0.02), 6)
        elif kind == "error":
            ev["error_class"] = rng.choice(["timeout", "rate_limited", "tool_error"])
        else:
            ev["outcome"] = rng.choice(["accepted", "edited", "rejected"])
        out.append(json.dumps(ev).encode())
    return out


def _iso(ms: int) -> str:
    from detector.detectors.firing import iso

    return iso(ms)


def _cpu(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def measure(baseline: Callable[[], object], replay: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Median CPU seconds of each, and the median of the per-pair ratios baseline / replay.

    The two are run alternately, so each pair shares the machine's conditions of the moment;
    CPU time of this process leaves out time spent descheduled on a shared machine.
    """
    tb, tr = [], []
    for _ in range(repeat):
        tb.append(_cpu(baseline))
        tr.append(_cpu(replay))
    ratios = [b / r for b, r in zip(tb, tr, strict=True)]
    return statistics.median(tb), statistics.median(tr), statistics.median(ratios)


def _formats(args: argparse.Namespace) -> int:
    """Replay of another input format against a bare decode loop of the same library, per span or payload."""
    from detector.replay import read_delimited, read_json_array

    if not args.events or not Path(args.events).is_file():
        print("bench replay: --format needs --events FILE (a readable file)", file=sys.stderr)
        return 2
    path = Path(args.events)
    if args.format == "otlp_proto":
        from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

        messages = list(read_delimited(path))
        decode: Callable[[bytes], object] = TracesData.FromString
        units = sum(len(ss.spans) for m in messages for rs in TracesData.FromString(m).resource_spans
                    for ss in rs.scope_spans)
        what = "spans"
    elif args.format == "otlp_json":
        messages = list(read_lines(path, 64 << 20))
        decode = json.loads
        units = sum(len(ss.get("spans", [])) for m in messages for rs in json.loads(m).get("resourceSpans", [])
                    for ss in rs.get("scopeSpans", []))
        what = "spans"
    else:
        with path.open("rb") as fh:
            array = fh.read(4096).lstrip().startswith(b"[")
        messages = list(read_json_array(path)) if array else list(read_lines(path, 64 << 20))
        decode = json.loads
        units = sum(len(d) if isinstance(d, list) else 1 for d in map(json.loads, messages))
        what = "payloads"
    if not messages or not units:
        print("bench replay: nothing to replay", file=sys.stderr)
        return 2
    config = load_config(args.config)

    def baseline() -> None:
        for m in messages:
            decode(m)

    def replay() -> None:
        replay_lines(messages, config, fmt=args.format)

    replay()
    t_base, t_replay, ratio = measure(baseline, replay, args.repeat)
    name = "protobuf FromString" if args.format == "otlp_proto" else "json.loads"
    print(f"{what}: {units:,} in {len(messages):,} messages  (medians of {args.repeat} alternating runs, CPU time)")
    print(f"{name} loop: {units / t_base:,.0f} {what}/s")
    print(f"detector replay --format {args.format}: {units / t_replay:,.0f} {what}/s")
    print(f"ratio replay / {name}: {ratio:.2f} (median of per-pair ratios)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="detector bench replay", description=__doc__)
    ap.add_argument("--events", help="JSONL file to replay (default: synthetic events)")
    ap.add_argument("--n", type=int, default=200_000, help="synthetic events when no file is given")
    ap.add_argument("--rate", type=float, default=100.0,
                    help="synthetic events per second of event time, over 20 routes (default 100: about 11 "
                         "requests a second in all, each with usage, latency and cost events). Sparser "
                         "streams spend more of their time in per-window detector work: see README")
    ap.add_argument("--repeat", type=int, default=7, help="alternating runs of each; medians are reported")
    ap.add_argument("--config", help="config file; built-in defaults if omitted")
    ap.add_argument("--format", choices=["native", "otlp_json", "otlp_proto", "litellm"], default="native",
                    help="the file's format (SPEC 2c; needs --events): replay against a bare decode loop of the "
                         "same library (protobuf FromString for otlp_proto, json.loads otherwise), in spans or "
                         "payloads a second")
    args = ap.parse_args(argv)
    if args.format != "native":
        return _formats(args)
    if args.repeat < 1 or args.n < 1 or args.rate <= 0:
        print("bench replay: --repeat and --n must be at least 1, --rate above 0", file=sys.stderr)
        return 2
    if args.events and not Path(args.events).is_file():
        print(f"bench replay: the events file {args.events} is not a readable file", file=sys.stderr)
        return 2
    lines = list(read_lines(Path(args.events))) if args.events else synthetic_lines(args.n, rate=args.rate)
    if not lines:
        print("bench replay: no events to replay", file=sys.stderr)
        return 2
    config = load_config(args.config)
    loads = json.loads

    def baseline() -> None:
        for line in lines:
            loads(line)

    def replay() -> None:
        replay_lines(lines, config)

    replay()  # warm-up: imports, caches
    t_json, t_replay, ratio = measure(baseline, replay, args.repeat)
    n = len(lines)
    print(f"events: {n:,}  (medians of {args.repeat} alternating runs, CPU time; {describe()})")
    print(f"json.loads loop: {n / t_json:,.0f} events/s")
    print(f"detector replay: {n / t_replay:,.0f} events/s")
    print(f"ratio replay / json.loads: {ratio:.2f} (median of per-pair ratios)")
    return 0
