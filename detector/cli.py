"""Commands only: parse arguments, call the package, print. See SPEC section 3."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detector.config import Config, ConfigError, load_config, with_overrides

__all__ = ["main"]


def _load(path: str | None, label: str = "config error") -> Config | None:
    """A config file (None: the defaults); None after printing each error as ``label: path: message``."""
    try:
        return load_config(path)
    except ConfigError as err:
        for e in err.errors:
            print(f"{label}: {e}", file=sys.stderr)
        return None


def _replay(args: argparse.Namespace) -> int:
    from detector.replay import replay_file

    config = _load(args.config)
    if config is None:
        return 2
    if args.events == "-":  # standard input
        if args.report or args.compare or args.format != "native":
            print("replay: --report, --compare and --format need an events file, not standard input",
                  file=sys.stderr)
            return 2
        return _replay_stdin(args, config)
    events = Path(args.events)
    if not events.is_file():
        what = "is not a file" if events.exists() else "does not exist"
        print(f"replay: the events file {events} {what}", file=sys.stderr)
        return 2
    dead = Path(args.dead_letters) if args.dead_letters else None
    clash = _same_files(events, Path(args.out), dead)
    if clash:
        print(f"replay: {clash}; nothing was written", file=sys.stderr)
        return 2
    other = None
    if args.compare and not args.report:
        print("replay: --compare needs --report", file=sys.stderr)
        return 2
    if args.compare:
        other = _load(args.compare, f"config error ({args.compare})")
        if other is None:
            return 2
    recorder = None
    if args.report:
        from detector.report.record import Recorder

        recorder = Recorder()
    try:
        result = replay_file(events, Path(args.out), config, log=sys.stderr, dead_letters=dead,
                             on_pipeline=None if recorder is None else (lambda p: recorder.attach(p.detectors)),
                             fmt=args.format)
        if recorder is not None:
            _report(args, events, config, recorder, result.stats, other)
    except OSError as err:
        print(f"replay: cannot read or write {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    return 0


def _report(args: argparse.Namespace, events: Path, config: Config, recorder: Any, stats: Any,
            other: Config | None) -> None:
    """Write the HTML report of a replay (and of the same events under ``other``, to compare)."""
    import json

    from detector.replay import read_lines, replay_lines
    from detector.report.html import write_report

    with open(args.out, encoding="utf-8") as fh:
        messages = [json.loads(line) for line in fh if line.strip()]
    other_messages = None
    if other is not None:
        print(f"replay: replaying again under {args.compare} to compare", file=sys.stderr)
        other_messages = replay_lines(read_lines(events, other.windows.max_message_bytes), other).incidents
    path = write_report(Path(args.report), recorder, messages, stats, title=f"Replay report: {events.name}",
                        other=other_messages, other_name=Path(args.compare).name if args.compare else "config B")
    print(f"replay: report written to {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)


def _service_config(args: argparse.Namespace) -> Config | None:
    """The config file (or defaults) with the command-line flags laid over it; None after printing errors."""
    config = _load(args.config)
    if config is None:
        return None
    try:
        return with_overrides(config, _flag_updates(args))
    except ConfigError as err:
        for e in err.errors:
            print(f"config error: {e}", file=sys.stderr)
        return None


def _flag_updates(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config fields the command-line flags set, by section."""
    kafka: dict[str, Any] = {}
    if getattr(args, "bootstrap_servers", None):
        kafka["bootstrap_servers"] = [s.strip() for s in args.bootstrap_servers.split(",") if s.strip()]
    if getattr(args, "telemetry_topic", None):
        kafka["telemetry_topics"] = list(args.telemetry_topic)
    if getattr(args, "incidents_topic", None):
        kafka["incidents_topic"] = args.incidents_topic
    if getattr(args, "group_id", None):
        kafka["group_id"] = args.group_id
    updates: dict[str, dict[str, Any]] = {"kafka": kafka} if kafka else {}
    if getattr(args, "metrics_port", None) is not None:
        updates["metrics"] = {"port": args.metrics_port}
    return updates


def _run(args: argparse.Namespace) -> int:
    config = _service_config(args)
    if config is None:
        return 2
    from detector.service.main import run_service

    updates = _flag_updates(args)

    def loader() -> Config:
        """The config file again, the flags over it (raises ConfigError)."""
        return with_overrides(load_config(args.config), updates)

    return run_service(config, loader=loader, watch=Path(args.config) if args.config else None)


def _demo(args: argparse.Namespace) -> int:
    if (args.duration is not None and args.duration <= 0) or not 0 < args.speed <= 600:
        print("demo: --duration must be above 0 and --speed in (0, 600]", file=sys.stderr)
        return 2
    from detector.demo.run import Demo

    return Demo(duration_s=args.duration, speed=args.speed, seed=args.seed).run()


def _routes(args: argparse.Namespace) -> int:
    """`detector routes`: the inventory from a replay of a file, or from running instances' ``/routes``."""
    import json
    import urllib.request

    from detector.operate.inventory import render, route_rows

    rows: list[dict[str, Any]] = []
    if args.events:
        config = _load(args.config)
        if config is None:
            return 2
        from detector.incidents.mode import ContainmentTracker
        from detector.replay import read_lines, replay_lines

        events = Path(args.events)
        if not events.is_file():
            print(f"routes: the events file {events} is not a readable file", file=sys.stderr)
            return 2
        containment = ContainmentTracker()

        def follow(incident: dict[str, Any]) -> None:
            containment.observe(incident)

        result = replay_lines(read_lines(events, config.windows.max_message_bytes), config, on_incident=follow)
        assert result.pipeline is not None
        rows = route_rows(result.pipeline, config, containment)
    elif args.bootstrap_servers:
        config2 = _service_config(args)
        if config2 is None:
            return 2
        import time

        from detector.operate.topic import read_inventory

        try:
            rows = read_inventory(config2, time.time(), max_age_s=args.max_age)
        except Exception as err:  # noqa: BLE001 - any client failure is reported in one line
            from detector.service.loop import describe

            print(f"routes: cannot read the inventory topic: {describe(err)}", file=sys.stderr)
            return 1
    else:
        for url in args.service:
            try:
                with urllib.request.urlopen(url.rstrip("/") + "/routes", timeout=10) as resp:
                    rows += json.load(resp).get("routes", [])
            except (OSError, ValueError) as err:
                print(f"routes: {url}/routes did not answer with the inventory ({err.__class__.__name__})",
                      file=sys.stderr)
                return 1
        rows.sort(key=lambda r: str(r.get("route")))
    print(json.dumps({"routes": rows}, indent=2) if args.json else render(rows))
    return 0


def _review(args: argparse.Namespace) -> int:
    """`detector incident review ID`: a Markdown draft from the incident's messages (a file or the topic)."""
    import json

    from detector.operate.review import pick, review

    messages: list[Any] = []
    if args.incidents:
        try:
            with open(args.incidents, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            messages.append(json.loads(line))
                        except ValueError:
                            print(f"review: {args.incidents}:{n} is not JSON; skipped", file=sys.stderr)
        except OSError as err:
            print(f"review: cannot read {args.incidents}: {err.strerror}", file=sys.stderr)
            return 2
    else:
        config = _service_config(args)
        if config is None:
            return 2
        from detector.operate.topic import read_incident

        try:
            messages = read_incident(config, args.incident_id)
        except Exception as err:  # noqa: BLE001 - any client failure is reported in one line
            from detector.service.loop import describe

            print(f"review: cannot read the incidents topic: {describe(err)}", file=sys.stderr)
            return 1
    mine = pick((m for m in messages if isinstance(m, dict)), args.incident_id)
    if not mine:
        print(f"review: no message of incident {args.incident_id}", file=sys.stderr)
        return 1
    text = review(mine)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _command(args: argparse.Namespace) -> int:
    """`detector incident acknowledge|contain|resolve ID` and `detector silence GLOB`: write to the control topic."""
    config = _service_config(args)
    if config is None:
        return 2
    from detector.incidents.commands import build_command, encode_command
    from detector.sinks.control import send_command

    try:
        if args.command == "silence":
            cmd = build_command("silence", route=args.route, until=args.until, by=args.by, note=args.note)
            key = args.route
        else:
            cmd = build_command(args.action, incident_id=args.incident_id, by=args.by, note=args.note)
            key = args.incident_id
    except ValueError as err:
        print(f"{args.command}: {err}", file=sys.stderr)
        return 2
    try:
        where = send_command(config, key.encode(), encode_command(cmd))
    except Exception as err:  # noqa: BLE001 - any client failure is reported in one line
        from detector.service.loop import describe

        print(f"{args.command}: not sent: {describe(err)}", file=sys.stderr)
        return 1
    print(f"{args.command}: sent to {where}")
    return 0


def _replay_stdin(args: argparse.Namespace, config: Config) -> int:
    import tempfile

    from detector.replay import replay_file

    # The input is spooled to a temporary file, so standard input is read like any events file.
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "stdin.jsonl"
        with spool.open("wb") as fh:
            while chunk := sys.stdin.buffer.read(1 << 20):
                fh.write(chunk)
        clash = _same_files(spool, Path(args.out), Path(args.dead_letters) if args.dead_letters else None)
        if clash:
            print(f"replay: {clash}; nothing was written", file=sys.stderr)
            return 2
        try:
            replay_file(spool, Path(args.out), config, log=sys.stderr,
                        dead_letters=Path(args.dead_letters) if args.dead_letters else None)
        except OSError as err:
            print(f"replay: cannot write {err.filename}: {err.strerror}", file=sys.stderr)
            return 2
    return 0


def _same_files(events: Path, out: Path, dead: Path | None) -> str | None:
    """Why the outputs would destroy the input or each other (also under another name), or None."""
    def same(a: Path, b: Path) -> bool:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()

    if same(events, out):
        return f"--out {out} is the events file"
    if dead is not None and same(events, dead):
        return f"--dead-letters {dead} is the events file"
    if dead is not None and same(out, dead):
        return "--out and --dead-letters are the same file"
    return None


def _config_check(args: argparse.Namespace) -> int:
    if _load(args.file, args.file) is None:
        return 2
    print(f"{args.file}: valid")
    return 0


def _config_explain(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from detector.operate.explain import explain, render

    config = _load(args.config, str(args.config))
    if config is None:
        return 2
    flagged = _service_config(args)  # the flags, validated as `detector run` would
    if flagged is None:
        return 2
    flags = {f"{section}.{name}": getattr(getattr(flagged, section), name)
             for section, fields in _flag_updates(args).items() for name in fields}
    ex = explain(config, args.route, flags)
    print(json.dumps(dataclasses.asdict(ex), indent=2) if args.json else render(ex))
    return 0


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    if args.what == "nab":
        from detector.bench.nab.runner import main as nab_main

        return nab_main(rest)
    if args.what == "kafka":
        from detector.bench.kafka import main as kafka_main

        return kafka_main(rest)
    if args.what == "scenarios":
        from detector.bench.scenarios.bench import main as scen_main

        return scen_main(rest)
    if args.what == "scale":
        from detector.bench.scale import main as scale_main

        return scale_main(rest)
    from detector.bench.replay import main as replay_main

    return replay_main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description="Streaming anomaly detector for AI integrations.",
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("replay", allow_abbrev=False, help="run detection over a JSONL file of telemetry events")
    rp.add_argument("--config", help="config file (TOML or JSON); built-in defaults if omitted")
    rp.add_argument("--events", required=True, help="telemetry events, one JSON object a line ('-': stdin)")
    rp.add_argument("--out", required=True, help="where to write incident events (JSONL)")
    rp.add_argument("--dead-letters", help="keep rejected lines here (JSONL: reason, detail, message)")
    rp.add_argument("--format", choices=["native", "otlp_json", "otlp_proto", "litellm"], default="native",
                    help="the events file's format (SPEC 2c): native (section 1, one object a line), otlp_json "
                         "(one OTLP TracesData message a line), otlp_proto (length-delimited TracesData messages), "
                         "litellm (StandardLoggingPayload NDJSON, or one JSON array)")
    rp.add_argument("--report", metavar="DIR", help="also write DIR/report.html: per-route plots of signals, "
                    "baselines, thresholds, incident spans and changes; the incidents; a summary")
    rp.add_argument("--compare", metavar="CONFIG_B",
                    help="with --report: replay again under this config and show the incidents it adds or removes")

    def kafka_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="config file (TOML or JSON); built-in defaults if omitted")
        p.add_argument("--bootstrap-servers", help="HOST:PORT[,HOST:PORT...] (overrides kafka.bootstrap_servers)")

    run = sub.add_parser("run", allow_abbrev=False,
                         help="the service: consume telemetry from Kafka, publish incidents")
    kafka_flags(run)
    run.add_argument("--telemetry-topic", action="append", help="telemetry topic (repeatable)")
    run.add_argument("--incidents-topic", help="incidents topic")
    run.add_argument("--group-id", help="consumer group id")
    run.add_argument("--metrics-port", type=int, help="port for /metrics, /healthz, /readyz (0: any free port)")

    inc = sub.add_parser("incident", allow_abbrev=False,
                         help="operator commands on an incident (written to the control topic), or `review`: "
                              "a Markdown draft of its post-incident review")
    inc.add_argument("action", choices=["acknowledge", "contain", "resolve", "review"])
    inc.add_argument("incident_id")
    inc.add_argument("--by", help="who gives the command (required for acknowledge, contain, resolve)")
    inc.add_argument("--incidents", help="review: an incidents JSONL file (default: the incidents topic)")
    inc.add_argument("--out", help="review: write the draft here (default: stdout)")
    inc.add_argument("--note", help="a note kept with the incident (at most 500 characters)")
    kafka_flags(inc)

    sil = sub.add_parser("silence", allow_abbrev=False,
                         help="silence notifications for routes matching a glob until a time")
    sil.add_argument("route", help="route glob, e.g. 'support.*'")
    sil.add_argument("--until", required=True, help="RFC 3339 time, e.g. 2026-12-01T18:00:00Z")
    sil.add_argument("--by", required=True, help="who gives the command")
    sil.add_argument("--note", help="a note (at most 500 characters)")
    kafka_flags(sil)

    dm = sub.add_parser("demo", allow_abbrev=False,
                        help="the whole service on this machine: embedded broker, synthetic telemetry with "
                             "injected incidents, the detector, and incidents as they arrive")
    dm.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    dm.add_argument("--speed", type=float, default=20.0,
                    help="event-time seconds per wall-clock second of the live traffic (default 20)")
    dm.add_argument("--seed", type=int, default=1, help="seed of the synthetic traffic (default 1)")

    ro = sub.add_parser("routes", allow_abbrev=False,
                        help="the route inventory: every AI route seen, versions in use, owner, mode, open incidents")
    src = ro.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", help="a telemetry JSONL file: replayed, then the routes it held")
    src.add_argument("--service", action="append",
                     help="a running instance's metrics URL (http://host:9108; repeat for each instance)")
    src.add_argument("--bootstrap-servers", help="read the inventory the running instances write to Kafka "
                     "(kafka.inventory_topic, every kafka.inventory_interval_s)")
    ro.add_argument("--max-age", type=float, default=600.0,
                    help="with --bootstrap-servers: ignore rows older than this many seconds (default 600)")
    ro.add_argument("--config", help="config file (TOML or JSON); built-in defaults if omitted")
    ro.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cp = sub.add_parser("config", allow_abbrev=False, help="config tools")
    csub = cp.add_subparsers(dest="config_command", required=True)
    cc = csub.add_parser("check", allow_abbrev=False, help="validate a config file; exit 0 only when valid")
    cc.add_argument("file")
    ce = csub.add_parser("explain", allow_abbrev=False,
                         help="the settings that apply to a route, their values and where each comes from")
    ce.add_argument("route")
    kafka_flags(ce)
    ce.add_argument("--telemetry-topic", action="append", help="as for `detector run`")
    ce.add_argument("--incidents-topic", help="as for `detector run`")
    ce.add_argument("--group-id", help="as for `detector run`")
    ce.add_argument("--metrics-port", type=int, help="as for `detector run`")
    ce.add_argument("--json", action="store_true", help="print JSON instead of a table")

    bp = sub.add_parser("bench", allow_abbrev=False,
                        help="benchmarks: nab, scenarios, replay, scale, kafka (see `detector bench WHAT -h`)")
    bp.add_argument("what", choices=["nab", "scenarios", "replay", "scale", "kafka"])
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
        return _config_explain(args) if args.config_command == "explain" else _config_check(args)
    if args.command == "run":
        return _run(args)
    if args.command == "incident" and args.action == "review":
        return _review(args)
    if args.command in ("incident", "silence"):
        if args.by is None:
            parser.error(f"{args.command}: --by is required (who gives the command)")
        return _command(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "routes":
        return _routes(args)
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
