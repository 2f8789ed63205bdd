"""Process wiring for `detector run`: logging, metrics registry, HTTP endpoints, signals, the loop, and the
delivery to alert receivers (a thread of its own, when receivers are configured).

Log lines are one line each, on stderr; the Kafka client's own logging is
kept to critical errors (it can be chatty and multi-line while a broker is
away; the service logs one line per reconnection attempt instead).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
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


def run_service(config: Config, host: str = "0.0.0.0", loader: Callable[[], Config] | None = None,
                watch: Path | None = None) -> int:
    """Run until SIGTERM or SIGINT; returns the exit status (0 after a clean stop). With ``loader``, SIGHUP and
    (with ``watch``) a change of the config file reload the config (see ``Service.reload``)."""
    from detector.metrics import Metrics
    from detector.service.http import Health, start
    from detector.service.loop import Service

    setup_logging()
    log = logging.getLogger("detector.service")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    health = Health()
    delivery = None
    if config.receivers:
        from detector.delivery.consumer import Delivery
        from detector.metrics import DeliveryMetrics
        from detector.service.clients import SecretError

        try:
            delivery = Delivery(config, DeliveryMetrics(registry, [r.name for r in config.receivers]))
        except SecretError as err:
            print(f"config error: {err}", file=sys.stderr)
            return 2
    service = Service(config, metrics, health, loader=loader, watch=watch)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: checkpointing and leaving the group", signum)
        service.stop()
        if delivery is not None:
            delivery.stop()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        service.request_reload()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if loader is not None:
            signal.signal(signal.SIGHUP, on_hup)
    # the handlers are in place before the port is announced: a signal sent on that line is handled (a SIGHUP
    # before them ended the process: its default action)
    server = start(config.metrics.port, registry=registry, health=health, host=host,
                   routes=service.routes_inventory)
    log.info("metrics and health on port %d", server.port)
    thread = None
    if delivery is not None:
        thread = threading.Thread(target=delivery.run, name="delivery", daemon=True)
        thread.start()
    try:
        return service.run()
    finally:
        if delivery is not None and thread is not None:
            delivery.stop()
            thread.join(30)
        server.close()
        log.info("stopped")
