"""Tests for the NAB scorer (rules in ../shared/nab/SCORING.md) and the runner's I/O."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from detector.bench.nab.runner import load_series, run_nab
from detector.bench.nab.scorer import (
    FileScores,
    Profile,
    load_profiles,
    normalise,
    probation_length,
    raw_score_at,
    row_weights,
    scaled_sigmoid,
    sweep,
    window_rows,
)

NAB = Path(__file__).resolve().parents[2] / "shared" / "nab"  # ../shared beside the repo
needs_nab = pytest.mark.skipif(not (NAB / "config" / "profiles.json").is_file(),
                               reason="../shared/nab (the NAB copy beside the repo) is not here")
STANDARD = Profile("standard", a_tp=1.0, a_fp=0.11, a_fn=1.0)
PROFILES = [
    STANDARD,
    Profile("reward_low_FP_rate", a_tp=1.0, a_fp=0.22, a_fn=1.0),
    Profile("reward_low_FN_rate", a_tp=1.0, a_fp=0.11, a_fn=2.0),
]


def _corpus() -> list[tuple[int, list[tuple[int, int]]]]:
    """Small synthetic corpus: (rows, windows) per file, one file without windows."""
    return [(400, [(100, 139), (250, 289)]), (300, [(200, 229)]), (200, [])]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_never_firing_scores_zero(profile: Profile) -> None:
    """A detector that never fires scores exactly 0 on every profile."""
    files = [FileScores(np.zeros(n), w) for n, w in _corpus()]
    assert sweep(files, profile).normalised == pytest.approx(0.0)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_first_row_of_every_window_scores_100(profile: Profile) -> None:
    """Firing exactly on the first row of every window scores 100 on every profile."""
    files = []
    for n, windows in _corpus():
        s = np.zeros(n)
        for left, _ in windows:
            s[left] = 1.0
        files.append(FileScores(s, windows))
    assert sweep(files, profile).normalised == pytest.approx(100.0)


@needs_nab
def test_profiles_file_matches_table() -> None:
    """profiles.json is read into the three documented weight sets."""
    profiles = load_profiles(NAB / "config" / "profiles.json")
    assert [profiles[p.name] for p in PROFILES] == PROFILES


def test_probation_and_sigmoid() -> None:
    """Probation is min(floor(0.15 N), 750); A(y) matches its closed form and is -1 past y = 3."""
    assert probation_length(1000) == 150 and probation_length(9999) == 750
    assert float(scaled_sigmoid(-0.5)) == pytest.approx(2 / (1 + math.exp(-2.5)) - 1)
    assert float(scaled_sigmoid(3.0)) == pytest.approx(2 / (1 + math.exp(15)) - 1)
    assert float(scaled_sigmoid(3.01)) == -1.0


def test_hand_computed_weights() -> None:
    """Window rows, rows before the first window and rows after a window get the documented weights."""
    w, k = row_weights(20, [(10, 13)], STANDARD)
    a1 = 2 / (1 + math.exp(-5)) - 1
    assert w[10] == pytest.approx(1.0)
    assert w[12] == pytest.approx((2 / (1 + math.exp(-2.5)) - 1) / a1)  # y = -2/4
    assert w[5] == pytest.approx(-0.11)
    assert w[14] == pytest.approx(0.11 * (2 / (1 + math.exp(5 / 3)) - 1))  # y = 1/3
    assert w[19] == pytest.approx(0.11 * (2 / (1 + math.exp(10)) - 1))  # y = 6/3 = 2
    w_far, _ = row_weights(40, [(10, 13)], STANDARD)
    assert w_far[30] == pytest.approx(-0.11)  # y > 3: exactly -A_FP
    assert k.tolist() == [-1] * 10 + [0] * 4 + [-1] * 6


def test_hand_computed_raw_scores() -> None:
    """One late TP, an FP before the window, and a detection in probation score as hand-computed."""
    a1 = 2 / (1 + math.exp(-5)) - 1
    tp = (2 / (1 + math.exp(-2.5)) - 1) / a1
    s = np.zeros(20)
    s[12] = 0.9  # TP at y = -0.5
    s[5] = 0.7  # FP before the window
    s[1] = 0.95  # in probation (3 rows): ignored
    f = FileScores(s, [(10, 13)])
    assert raw_score_at(f, STANDARD, 0.9) == pytest.approx(tp)
    assert raw_score_at(f, STANDARD, 0.7) == pytest.approx(tp - 0.11)
    assert raw_score_at(f, STANDARD, 0.95) == pytest.approx(-1.0)
    res = sweep([f], STANDARD)
    assert res.threshold == pytest.approx(0.9)
    assert res.raw == pytest.approx(tp)
    assert res.normalised == pytest.approx(normalise(tp, 1, STANDARD))


def test_ties_go_to_the_higher_threshold() -> None:
    """Equal raw scores at two thresholds choose the higher one (a probation-only score changes nothing)."""
    s = np.zeros(40)
    s[2] = 0.5  # probation row (6 rows): same raw as without it
    s[20] = 0.9
    res = sweep([FileScores(s, [(20, 25)])], STANDARD)
    assert res.threshold == 0.9
    empty = sweep([FileScores(np.full(40, 0.3), [])], STANDARD)
    assert math.isinf(empty.threshold)  # "no detections" beats firing FPs


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_sweep_matches_brute_force(profile: Profile) -> None:
    """The vectorised sweep equals trying every distinct score with the direct definition."""
    rng = np.random.default_rng(3)
    files = [FileScores(np.round(rng.random(n) ** 3, 2), w) for n, w in _corpus()]
    best_t, best = math.inf, -len([1 for f in files for _ in f.windows]) * profile.a_fn
    for t in sorted({float(v) for f in files for v in f.scores}, reverse=True):
        raw = sum(raw_score_at(f, profile, t) for f in files)
        if raw > best + 1e-12:
            best_t, best = t, raw
    res = sweep(files, profile)
    assert res.raw == pytest.approx(best)
    assert res.threshold == best_t


def test_window_rows_match_fractional_label_timestamps() -> None:
    """Label timestamps with .000000 fractions match CSV rows, inclusively."""
    stamps = ["2014-02-14 14:27:00", "2014-02-14 14:32:00", "2014-02-14 14:37:00"]
    ts = np.array(stamps, dtype="datetime64[s]")
    assert window_rows(ts, [("2014-02-14 14:32:00.000000", "2014-02-14 14:37:00.000000")]) == [(1, 2)]
    with pytest.raises(ValueError):
        window_rows(ts, [("2015-01-01 00:00:00.000000", "2015-01-02 00:00:00.000000")])


def test_load_series_reads_crlf(tmp_path: Path) -> None:
    """CSV files with CRLF line endings load like LF ones."""
    p = tmp_path / "x.csv"
    p.write_bytes(b"timestamp,value\r\n2014-01-01 00:00:00,1.5\r\n2014-01-01 00:05:00,2\r\n")
    s = load_series(p, "c/x.csv")
    assert s.timestamps == ["2014-01-01 00:00:00", "2014-01-01 00:05:00"]
    assert s.values.tolist() == [1.5, 2.0]


@needs_nab
def test_run_nab_end_to_end_on_a_small_corpus(tmp_path: Path) -> None:
    """run_nab streams a tiny corpus, writes timestamp,value,anomaly_score and returns three scores."""
    data = tmp_path / "nab"
    (data / "data" / "cat").mkdir(parents=True)
    (data / "labels").mkdir()
    (data / "config").mkdir()
    (data / "config" / "profiles.json").write_text((NAB / "config" / "profiles.json").read_text())
    rng = np.random.default_rng(0)
    start = np.datetime64("2014-01-01T00:00:00")
    values = 10 + rng.normal(0, 1, 1200)
    values[1000:] += 30  # a step inside the window
    stamps = [str(start + np.timedelta64(5 * i, "m")).replace("T", " ") for i in range(1200)]
    rows = "".join(f"{t},{v:.4f}\r\n" for t, v in zip(stamps, values, strict=True))
    (data / "data" / "cat" / "a.csv").write_text("timestamp,value\r\n" + rows)
    window = [f"{stamps[990]}.000000", f"{stamps[1049]}.000000"]
    (data / "labels" / "combined_windows.json").write_text(json.dumps({"cat/a.csv": [window]}))
    out = run_nab(data, tmp_path / "out", verbose=False)
    assert set(out) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert out["standard"] > 50.0
    lines = (tmp_path / "out" / "cat" / "a.csv").read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score" and len(lines) == 1201
