"""Process wiring for `detector run`: logging, metrics registry, HTTP endpoints, signals, the loop.

Log lines are one line each, on stderr; the Kafka client's own logging is
kept to critical errors (it can be chatty and multi-line while a broker is
away; the service logs one line per reconnection attempt instead).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from prometheus_client import CollectorRegistry

from detector.config import Config

__all__ = ["run_service", "setup_logging"]


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def run_service(config: Config, host: str = "0.0.0.0") -> int:
    """Run until SIGTERM or SIGINT; returns the exit status (0 after a clean stop)."""
    from detector.metrics import Metrics
    from detector.service.http import Health, start
    from detector.service.loop import Service

    setup_logging()
    log = logging.getLogger("detector.service")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    health = Health()
    service = Service(config, metrics, health)
    server = start(config.metrics.port, registry=registry, health=health, host=host,
                   routes=service.routes_inventory)
    log.info("metrics and health on port %d", server.port)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: checkpointing and leaving the group", signum)
        service.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        return service.run()
    finally:
        server.close()
        log.info("stopped")
