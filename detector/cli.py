"""Commands only: parse arguments, call the package, print. See SPEC section 3."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from pathlib import Path

from detector.config import ConfigError, load_config

__all__ = ["main"]


def _replay(args: argparse.Namespace) -> int:
    from detector.replay import replay_file

    try:
        config = load_config(args.config)
    except ConfigError as err:
        for e in err.errors:
            print(f"config error: {e}", file=sys.stderr)
        return 2
    events = Path(args.events)
    if not events.is_file():
        what = "is not a file" if events.exists() else "does not exist"
        print(f"replay: the events file {events} {what}", file=sys.stderr)
        return 2
    dead = Path(args.dead_letters) if args.dead_letters else None
    try:
        replay_file(events, Path(args.out), config, log=sys.stderr, dead_letters=dead)
    except OSError as err:
        print(f"replay: cannot read or write {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    return 0


def _config_check(args: argparse.Namespace) -> int:
    try:
        load_config(args.file)
    except ConfigError as err:
        for e in err.errors:
            print(f"{args.file}: {e}", file=sys.stderr)
        return 1
    print(f"{args.file}: valid")
    return 0


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    if args.what == "nab":
        from detector.nab.runner import main as nab_main

        return nab_main(rest)
    if args.what == "scenarios":
        from detector.scenarios.bench import main as scen_main

        return scen_main(rest)
    from detector.bench_replay import main as replay_main

    return replay_main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description="Streaming anomaly detector for AI integrations.")
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("replay", help="run detection over a JSONL file of telemetry events")
    rp.add_argument("--config", help="config file (TOML or JSON); built-in defaults if omitted")
    rp.add_argument("--events", required=True, help="telemetry events, one JSON object a line")
    rp.add_argument("--out", required=True, help="where to write incident events (JSONL)")
    rp.add_argument("--dead-letters", help="keep rejected lines here (JSONL: reason, detail, message)")

    cp = sub.add_parser("config", help="config tools")
    csub = cp.add_subparsers(dest="config_command", required=True)
    cc = csub.add_parser("check", help="validate a config file; exit 0 only when valid")
    cc.add_argument("file")

    bp = sub.add_parser("bench", help="benchmarks: nab, scenarios, replay (see `detector bench WHAT -h`)")
    bp.add_argument("what", choices=["nab", "scenarios", "replay"])
    return parser


def tune_gc() -> None:
    """Collect cyclic garbage less often: this process keeps many small, long-lived containers
    (window aggregates, detector state) that have no cycles, and CPython's default thresholds
    would traverse them again and again (about a fifth of replay time, measured). Reference
    counting still frees everything at once; cycles are still collected, just in bigger batches."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    tune_gc()
    parser = build_parser()
    if len(argv) >= 2 and argv[0] == "bench":
        args = parser.parse_args(argv[:2])
        return _bench(args, argv[2:])
    args = parser.parse_args(argv)
    if args.command == "replay":
        return _replay(args)
    if args.command == "config":
        return _config_check(args)
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
