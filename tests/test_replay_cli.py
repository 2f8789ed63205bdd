"""`detector replay` and `detector config check` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detector.bench.replay import synthetic_lines
from detector.cli import main
from detector.config import Config
from detector.replay import replay_lines

ROOT = Path(__file__).resolve().parent.parent


def test_replay_survives_every_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad lines are counted and reported by reason; the good ones around them are all processed."""
    good = synthetic_lines(50)
    bad = [b"{oops", b"[]", b'{"type":"usage"}', b'{"event_id":"x","type":"usage","ts":"soon","route":"r"}',
           b"\xff\xff", b'{"event_id":"y","type":"cost","ts":1795770000000,"route":"r","cost_usd":-1}']
    lines = good[:25] + bad + good[25:] + good[:3]  # and three duplicates
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n\n")
    out = tmp_path / "incidents.jsonl"
    assert main(["replay", "--events", str(events), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "events read: 59" in err and "accepted: 50" in err and "duplicates: 3" in err
    assert "rejected: 6 (bad_timestamp 1, invalid_field 1, missing_field 1, not_json 2, not_object 1)" in err
    assert out.exists()


def test_replay_keeps_dead_letters(tmp_path: Path) -> None:
    """With --dead-letters every rejected line is kept with its reason; good lines are not."""
    lines = [*synthetic_lines(5), b"{oops", b'{"event_id":"z","type":"usage","ts":"later","route":"r"}']
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    dead = tmp_path / "dead.jsonl"
    assert main(["replay", "--events", str(events), "--out", str(tmp_path / "o.jsonl"),
                 "--dead-letters", str(dead)]) == 0
    kept = [json.loads(x) for x in dead.read_text(encoding="utf-8").splitlines()]
    assert [(k["reason"], k["message"]) for k in kept] == [
        ("not_json", "{oops"), ("bad_timestamp", lines[-1].decode())]


def test_replay_deterministic() -> None:
    """The same input gives the same incidents and counters, run after run."""
    lines = synthetic_lines(20_000)
    a = replay_lines(lines, Config())
    b = replay_lines(lines, Config())
    assert a.incidents == b.incidents
    assert a.stats.as_dict() == b.stats.as_dict()
    assert a.stats.windows_closed > 0


def test_replay_missing_file_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing events file is a clear error and exit 2, not a traceback."""
    assert main(["replay", "--events", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["replay", "--events", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_replay_unwritable_out_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --out (or --dead-letters) that cannot be written is a clear error and exit 2, before any work."""
    events = ROOT / "examples/events.jsonl"
    assert main(["replay", "--events", str(events), "--out", str(tmp_path)]) == 2
    assert "cannot read or write" in capsys.readouterr().err
    assert main(["replay", "--events", str(events), "--out", str(tmp_path / "o.jsonl"),
                 "--dead-letters", str(tmp_path / "missing" / "d.jsonl")]) == 2
    assert "cannot read or write" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "suffix", "path"),
    [
        ('[windows]\nsize_s = "a minute"\n', ".toml", "windows.size_s"),
        ("[windows]\nallowed_lateness_s = -1\n", ".toml", "windows.allowed_lateness_s"),
        ('[routes."support.*"]\ntier = 7\n', ".toml", "routes.support.*.tier"),
        ('[routes."x"]\nauto_actions = ["launch_missiles"]\n', ".toml", "routes.x.auto_actions.0"),
        ("[windws]\nsize_s = 60\n", ".toml", "windws"),  # a typo is an error, not ignored
        ('{"silences": [{"route": "a", "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}]}',
         ".json", "silences.0"),
        ('{"silences": [{"route": "a", "start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00Z"}]}',
         ".json", "silences.0"),  # a naive time is an error, not a crash
        ("[windows]\nsize_s = 600\nidle_evict_s = 600\n", ".toml", "windows"),  # evicted before learning
        ("[" * 100_000, ".json", "(file)"),  # nested past any sane depth
        ("[windows\n", ".toml", "(file)"),
        ("{", ".json", "(file)"),
    ],
)
def test_config_check_names_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                      suffix: str, path: str) -> None:
    """Each broken config exits non-zero and names the path of the bad field."""
    f = tmp_path / f"bad{suffix}"
    f.write_text(text, encoding="utf-8")
    assert main(["config", "check", str(f)]) == 2
    assert f"{f}: {path}" in capsys.readouterr().err


def test_config_check_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped example configs are valid (exit 0)."""
    for f in [ROOT / "schemas/examples/config.json", ROOT / "examples/config.toml"]:
        assert main(["config", "check", str(f)]) == 0
    assert "valid" in capsys.readouterr().out


def test_replay_rejects_broken_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """replay refuses a broken config with the field path, exit 2."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detectors]\npersistence = 0\n", encoding="utf-8")
    rc = main(["replay", "--config", str(cfg), "--events", str(ROOT / "examples/events.jsonl"),
               "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "detectors.persistence" in capsys.readouterr().err


def test_console_script_runs_example(tmp_path: Path) -> None:
    """README's main job works as a subprocess: the shipped example replays with exit 0."""
    out = tmp_path / "incidents.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "detector.cli", "replay", "--config", str(ROOT / "examples/config.toml"),
         "--events", str(ROOT / "examples/events.jsonl"), "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "events read:" in proc.stderr
    for row in out.read_text(encoding="utf-8").splitlines():
        json.loads(row)


@pytest.mark.parametrize("which", ["out", "dead", "link", "both"])
def test_outputs_never_overwrite_the_input_or_each_other(tmp_path: Path, which: str) -> None:
    """--out or --dead-letters naming the events file (also through a link), or both outputs naming one file:
    exit 2 and the input untouched (it used to be emptied before it was read)."""
    from detector.cli import main

    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"event_id":"1","type":"usage","ts":1767225600000,"route":"r"}\n')
    link = tmp_path / "alias.jsonl"
    link.symlink_to(events)
    out, dead = str(tmp_path / "inc.jsonl"), None
    if which == "out":
        out = str(events)
    elif which == "dead":
        dead = str(events)
    elif which == "link":
        out = str(link)
    else:
        dead = out
    argv = ["replay", "--events", str(events), "--out", out] + (["--dead-letters", dead] if dead else [])
    assert main(argv) == 2
    assert events.read_bytes().startswith(b'{"event_id":"1"')


def test_options_are_not_abbreviated() -> None:
    """`--event` is not silently taken for `--events`."""
    from detector.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["replay", "--event", "x.jsonl", "--out", "y.jsonl"])
    assert exc.value.code == 2
