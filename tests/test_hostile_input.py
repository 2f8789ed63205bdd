"""Decoder strictness and file handling per SPEC section 1 (issue 8 items 6, 7, 9 in part).

What these protect: a message that is not valid JSON text is rejected whatever field the bad bytes sit
in; timestamps are RFC 3339 (a colon in the offset) and a leap second is accepted; files with a byte
order mark or CRLF line ends replay like any other, and their dead letters keep each line byte for byte.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from detector.cli import main
from detector.config import Config
from detector.ingest.decode import Decoded, Decoder
from detector.replay import read_lines, replay_lines

ROOT = Path(__file__).resolve().parent.parent
BASE = b'{"event_id":"a","type":"usage","route":"r","ts":%s%s}'


def decode(ts: bytes, extra: bytes = b"") -> object:
    return Decoder().decode(BASE % (ts, extra))


def test_invalid_utf8_in_an_unknown_field_is_not_json() -> None:
    rej = decode(b"1767225600000", b',"note":"\xff\xfe"')
    assert not isinstance(rej, Decoded) and rej.reason == "not_json"
    ok = decode(b"1767225600000", ',"note":"café ☕"'.encode())
    assert isinstance(ok, Decoded)


@pytest.mark.parametrize("ts", [b'"2026-01-01T00:00:00+0530"', b'"2026-01-01T00:00:00-0800"'])
def test_an_offset_without_a_colon_is_not_rfc3339(ts: bytes) -> None:
    rej = decode(ts)
    assert not isinstance(rej, Decoded) and rej.reason == "bad_timestamp" and "colon" in rej.detail


def test_a_leap_second_is_the_last_millisecond_before_it() -> None:
    got = decode(b'"2016-12-31T23:59:60Z"')
    assert isinstance(got, Decoded) and got.ts_ms == 1483228799999
    fine = decode(b'"2026-01-01T00:00:00+05:30"')
    assert isinstance(fine, Decoded) and fine.ts_ms == 1767205800000


def test_deep_nesting_says_what_it_is() -> None:
    rej = Decoder().decode(b'{"event_id":' + b'{"x":' * 20000 + b"1" + b"}" * 20000 + b"}")
    assert not isinstance(rej, Decoded) and rej.reason in ("not_json", "too_large")
    small = Decoder(max_bytes=1 << 20).decode(b'{"a":' * 30000 + b"1" + b"}" * 30000)
    assert not isinstance(small, Decoded) and small.detail == "nested too deeply"


def test_an_error_without_class_counts_as_other_and_a_change_without_versions_is_kept() -> None:
    """SPEC lists error_class and to_version without marking them required: an error is still an error
    (counted as `other`, so error rates stay honest), a change is still a change (it marks the timeline;
    with no version named it can never be a rollback target)."""
    err = Decoder().decode(b'{"event_id":"e","type":"error","route":"r","ts":1767225600000}')
    assert isinstance(err, Decoded) and err.event.error_class == "other"  # type: ignore[union-attr]
    ch = Decoder().decode(b'{"event_id":"c","type":"change","route":"r","ts":1767225600000,"change_kind":"model"}')
    assert isinstance(ch, Decoded) and ch.event.to_version is None  # type: ignore[union-attr]


def test_a_bom_and_crlf_file_replays_like_a_clean_one(tmp_path: Path) -> None:
    lines = list(read_lines(ROOT / "examples/events.jsonl"))
    clean = replay_lines(lines, Config()).incidents
    dirty = tmp_path / "bom.jsonl"
    dirty.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n")
    got = list(read_lines(dirty))
    assert got[0].startswith(b"{") and all(x.endswith(b"\r") for x in got)
    assert replay_lines(got, Config()).incidents == clean


def test_dead_letters_keep_the_line_byte_for_byte(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    bad_text, bad_bytes = b'{"oops": 1\r', b"\xff\xfenot text"
    events.write_bytes(bad_text + b"\n" + bad_bytes + b"\n")
    out, dead = tmp_path / "i.jsonl", tmp_path / "d.jsonl"
    assert main(["replay", "--events", str(events), "--out", str(out), "--dead-letters", str(dead)]) == 0
    kept = [json.loads(x) for x in dead.read_text().splitlines()]
    assert kept[0]["message"].encode() == bad_text
    assert base64.b64decode(kept[1]["message_base64"]) == bad_bytes and "message" not in kept[1]


def test_events_from_standard_input(tmp_path: Path) -> None:
    out = tmp_path / "i.jsonl"
    data = (ROOT / "examples/events.jsonl").read_bytes()
    res = subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--config", "examples/config.toml",
                          "--events", "-", "--out", str(out)], input=data, cwd=ROOT, capture_output=True, timeout=120)
    assert res.returncode == 0
    want = tmp_path / "w.jsonl"
    assert main(["replay", "--config", str(ROOT / "examples/config.toml"), "--events",
                 str(ROOT / "examples/events.jsonl"), "--out", str(want)]) == 0
    assert out.read_bytes() == want.read_bytes() and out.stat().st_size > 0


def test_config_errors_name_the_problem_not_a_python_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Error" not in err
    assert main(["config", "check", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_true_is_not_a_number_in_a_config() -> None:
    """`size_s = true` is a typo, not 1 second; booleans stay booleans."""
    from detector.config import config_errors

    assert config_errors({"windows": {"size_s": True}}) == [
        "windows.size_s: Value error, expected a number, not true or false"]
    assert config_errors({"routes": {"a.*": {"guardrails": {"max_p95_ms": False}}}})
    assert config_errors({"routes": {"a.*": {"customer_facing": True}}, "kafka": {"create_topics": False}}) == []


def test_an_oversized_line_is_read_only_as_far_as_needed(tmp_path: Path) -> None:
    """A 1 MB line is rejected as too_large from its first bytes; the rest is skipped, not held; the lines
    around it are read whole; its dead letter says it was truncated (issue 8, item 4)."""
    good = b'{"event_id":"a","type":"usage","ts":1767225600000,"route":"r"}'
    huge = b'{"event_id":"h","pad":"' + b"x" * 1_000_000 + b'"}'
    events = tmp_path / "e.jsonl"
    events.write_bytes(good + b"\n" + huge + b"\n" + good.replace(b'"a"', b'"b"') + b"\n")
    got = list(read_lines(events, max_bytes=65536))
    assert [len(x) for x in got] == [len(good), 65537, len(good)]
    out, dead = tmp_path / "i.jsonl", tmp_path / "d.jsonl"
    assert main(["replay", "--events", str(events), "--out", str(out), "--dead-letters", str(dead)]) == 0
    (kept,) = [json.loads(x) for x in dead.read_text().splitlines()]
    assert kept["reason"] == "too_large" and kept["truncated"] is True
    assert kept["message"].encode() == huge[:65537]


def test_a_burst_of_new_routes_cannot_evict_the_learned_ones() -> None:
    """20,000 one-off routes arriving at once over a 10,000-route cap: the routes with learned baselines stay,
    their incident still opens, and the evictions are counted by cause (issue 8, item 5)."""
    from detector.config import load_config
    from detector.pipeline import Pipeline

    config = load_config(ROOT / "examples/config.toml")
    lines = list(read_lines(ROOT / "examples/events.jsonl"))
    clean = Pipeline(config)
    want = clean.process_many(lines)
    assert any(i["event"] == "opened" for i in want)
    cut = len(lines) // 3
    ts = Decoder().decode(lines[cut]).ts_ms  # type: ignore[union-attr]
    burst = [b'{"event_id":"burst-%d","type":"usage","ts":%d,"route":"oneoff.%d"}' % (i, ts, i) for i in range(20_000)]
    pipe = Pipeline(config)
    got = pipe.process_many(lines[:cut] + burst + lines[cut:])
    real = {json.loads(x)["route"] for x in lines}
    assert real <= set(pipe.windower.routes) | {r for r in real if r not in clean.windower.routes}
    assert [i for i in got if i["route"] in real] == want
    assert pipe.stats.evictions["capacity"] >= 10_000 and pipe.stats.routes_evicted >= 10_000
