"""The bench commands refuse bad arguments with a message and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "nab", "--data", "no/such/folder", "--out", "{tmp}/o"],  # not a NAB folder
        ["bench", "nab", "--data", "{tmp}", "--out", "{tmp}/o"],  # a folder, but no labels
        ["bench", "replay", "--repeat", "0"],  # nothing to take a median of
        ["bench", "replay", "--n", "0"],  # no events
        ["bench", "replay", "--events", "{tmp}"],  # a directory
        ["bench", "replay", "--events", "{tmp}/empty.jsonl"],  # an empty file
        ["bench", "scale", "--routes", "many"],  # not a number
        ["bench", "scale", "--routes", "0"],  # no fleet
        ["bench", "scale", "--memory", "10,x"],  # not numbers
        ["bench", "scale", "--hours", "0"],  # no traffic
    ],
)
def test_bench_bad_arguments(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each bad argument gives exit 2 and a line saying what is wrong."""
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert capsys.readouterr().err.startswith("bench ")


def test_bench_replay_reports_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    """A small replay benchmark runs and prints both rates and their ratio (the figure is not asserted)."""
    assert main(["bench", "replay", "--n", "2000", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "json.loads loop:" in out and "detector replay:" in out and "ratio replay / json.loads:" in out


def test_bench_scale_reports_ratio_and_memory(capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny quiet fleet replays and is measured in a fresh process (the figures are not asserted)."""
    assert main(["bench", "scale", "--routes", "20", "--hours", "2", "--repeat", "1",
                 "--memory", "20", "--memory-hours", "1"]) == 0
    out = capsys.readouterr().out
    assert "| 20 | 120 |" in out  # 20 routes, a request an hour each for 2 hours, 3 events a request
    assert "resident bytes per route" in out and out.rstrip().splitlines()[-1].startswith("| 20 |")
