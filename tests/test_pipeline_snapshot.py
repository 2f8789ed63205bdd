"""A pipeline restored from a mid-stream snapshot continues exactly like one that never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.config import load_config
from detector.pipeline import Pipeline
from detector.replay import read_lines

ROOT = Path(__file__).resolve().parent.parent
LINES = list(read_lines(ROOT / "examples/events.jsonl"))
CONFIG = load_config(ROOT / "examples/config.toml")


def run_through(lines: list[bytes]) -> list[dict]:
    p = Pipeline(CONFIG)
    return [*p.process_many(lines), *p.flush()]


@pytest.mark.parametrize("split", [0.3, 0.69, 0.75, 0.9])
def test_restore_continues_identically(split: float) -> None:
    """Snapshot (through JSON) at a split point, restore into a fresh pipeline: same incidents, same counters."""
    whole = Pipeline(CONFIG)
    expected = [*whole.process_many(LINES), *whole.flush()]
    assert any(i["event"] == "opened" for i in expected)  # the example does open an incident

    cut = int(len(LINES) * split)
    first = Pipeline(CONFIG)
    got = first.process_many(LINES[:cut])
    second = Pipeline(CONFIG)
    second.restore(json.loads(json.dumps(first.snapshot(), allow_nan=False)))
    second.stats = first.stats
    got += second.process_many(LINES[cut:]) + second.flush()
    assert got == expected
    assert second.stats.as_dict() == whole.stats.as_dict()
