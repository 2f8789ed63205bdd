"""NAB v1.1 scoring, restated from ``../shared/nab/SCORING.md``.

Pure functions: row weights for one file, the raw score at one threshold, and
an efficient corpus-wide threshold sweep (sort once, cumulative sums in
numpy), plus normalisation against the null and perfect detectors.

>>> p = Profile("standard", a_tp=1.0, a_fp=0.11, a_fn=1.0)
>>> n = 200
>>> windows = [(100, 119)]
>>> never = FileScores(scores=np.zeros(n), windows=windows)
>>> perfect = FileScores(scores=(np.arange(n) == 100).astype(float), windows=windows)
>>> round(sweep([never], p).normalised, 6)
0.0
>>> round(sweep([perfect], p).normalised, 6)
100.0
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "PROFILE_NAMES",
    "FileScores",
    "Profile",
    "SweepResult",
    "load_profiles",
    "normalise",
    "probation_length",
    "raw_score_at",
    "row_weights",
    "scaled_sigmoid",
    "sweep",
    "window_rows",
]

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Profile:
    """Weights of one scoring profile (``config/profiles.json``)."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


@dataclass(frozen=True)
class FileScores:
    """One file's detector scores and its anomaly windows as inclusive row ranges."""

    scores: FloatArray
    windows: Sequence[tuple[int, int]]


@dataclass(frozen=True)
class SweepResult:
    """Best threshold of a sweep (``inf`` means "no detections") and its scores."""

    threshold: float
    raw: float
    normalised: float


def load_profiles(path: Path) -> dict[str, Profile]:
    """Read ``profiles.json`` into :class:`Profile` values, keyed by name."""
    data = json.loads(Path(path).read_text())
    out: dict[str, Profile] = {}
    for name, body in data.items():
        cm = body["CostMatrix"]
        out[name] = Profile(name, float(cm["tpWeight"]), float(cm["fpWeight"]), float(cm["fnWeight"]))
    return out


def probation_length(n: int) -> int:
    """Rows at the start of an ``n``-row file that are never scored.

    >>> probation_length(4032), probation_length(22695)
    (604, 750)
    """
    return min(math.floor(0.15 * n), 750)


def scaled_sigmoid(y: FloatArray | float) -> FloatArray:
    """NAB's ``A(y) = 2 / (1 + exp(5 y)) - 1`` for ``y <= 3``, else ``-1``.

    >>> [round(float(v), 4) for v in scaled_sigmoid(np.array([-1.0, 0.0, 3.5]))]
    [0.9866, 0.0, -1.0]
    """
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        a = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, a)


def window_rows(
    timestamps: NDArray[np.datetime64], windows: Sequence[tuple[str, str]]
) -> list[tuple[int, int]]:
    """Map ``[start, end]`` timestamp windows (inclusive) to row index ranges.

    ``timestamps`` must be sorted. A window whose rows are missing is an error.

    >>> ts = np.array(["2014-01-01 00:00", "2014-01-01 00:05", "2014-01-01 00:10"], dtype="datetime64[s]")
    >>> window_rows(ts, [("2014-01-01 00:05:00.000000", "2014-01-01 00:10:00.000000")])
    [(1, 2)]
    """
    out: list[tuple[int, int]] = []
    for start, end in windows:
        lo = int(np.searchsorted(timestamps, np.datetime64(start, "s"), side="left"))
        hi = int(np.searchsorted(timestamps, np.datetime64(end, "s"), side="right")) - 1
        if lo > hi:
            raise ValueError(f"window {start}..{end} matches no rows")
        out.append((lo, hi))
    return out


def row_weights(n: int, windows: Sequence[tuple[int, int]], profile: Profile) -> tuple[FloatArray, IntArray]:
    """Weight of each row if detected, and the index of its window (-1 if outside).

    >>> p = Profile("standard", 1.0, 0.11, 1.0)
    >>> w, k = row_weights(6, [(2, 3)], p)
    >>> [round(float(v), 3) for v in w], k.tolist()
    ([-0.11, -0.11, 1.0, 0.86, -0.109, -0.11], [-1, -1, 0, 0, -1, -1])
    """
    weights = np.full(n, -profile.a_fp, dtype=np.float64)
    window_id = np.full(n, -1, dtype=np.int64)
    idx = np.arange(n, dtype=np.float64)
    a_minus1 = float(scaled_sigmoid(-1.0))
    ordered = sorted(windows)
    for k, (left, right) in enumerate(ordered):
        width = right - left + 1
        inside = slice(left, right + 1)
        y = -(right - idx[inside] + 1.0) / width
        weights[inside] = profile.a_tp * scaled_sigmoid(y) / a_minus1
        window_id[inside] = k
        nxt = ordered[k + 1][0] if k + 1 < len(ordered) else n
        after = slice(right + 1, nxt)
        if width > 1:
            y_after = (idx[after] - right) / (width - 1)
        else:  # a one-row window: every later row is "far" after it
            y_after = np.full(max(0, nxt - right - 1), np.inf)
        weights[after] = profile.a_fp * scaled_sigmoid(y_after)
    return weights, window_id


def raw_score_at(file: FileScores, profile: Profile, threshold: float) -> float:
    """Raw score of one file at one threshold (direct, unvectorised definition)."""
    scores = np.asarray(file.scores, dtype=np.float64)
    n = len(scores)
    weights, window_id = row_weights(n, file.windows, profile)
    detected = scores >= threshold
    detected[: probation_length(n)] = False
    total = 0.0
    for k in range(len(file.windows)):
        hits = detected & (window_id == k)
        total += float(weights[hits].max()) if hits.any() else -profile.a_fn
    total += float(weights[detected & (window_id < 0)].sum())
    return total


def normalise(raw: float, n_windows: int, profile: Profile) -> float:
    """``100 (raw - null) / (perfect - null)`` with perfect ``n A_TP`` and null ``-n A_FN``."""
    perfect = n_windows * profile.a_tp
    null = -n_windows * profile.a_fn
    if perfect == null:  # no windows: nothing to find
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


def _events(file: FileScores, profile: Profile) -> tuple[FloatArray, FloatArray]:
    """(score, score change) events for one file, for the sweep.

    Lowering the threshold past a row's score adds its weight if it lies
    outside windows; inside a window it raises the window's value from its
    best detection so far (``-A_FN`` initially) to the row's weight, if higher.
    """
    scores = np.asarray(file.scores, dtype=np.float64)
    n = len(scores)
    p = probation_length(n)
    weights, window_id = row_weights(n, file.windows, profile)
    scores, weights, window_id = scores[p:], weights[p:], window_id[p:]
    out_mask = window_id < 0
    ev_scores = [scores[out_mask]]
    ev_deltas = [weights[out_mask]]
    in_mask = ~out_mask
    if in_mask.any():
        s, w, k = scores[in_mask], weights[in_mask], window_id[in_mask]
        # per window, rows by descending score; running best weight in that order
        order = np.lexsort((-w, -s, k))
        s, w, k = s[order], w[order], k[order]
        offset = 4.0 * (abs(profile.a_tp) + abs(profile.a_fn) + 1.0)
        best = np.maximum.accumulate(w + k * offset) - k * offset
        first = np.ones(len(k), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        prev = np.empty_like(best)
        prev[1:] = best[:-1]
        prev[first] = -profile.a_fn
        ev_scores.append(s)
        ev_deltas.append(best - prev)
    return np.concatenate(ev_scores), np.concatenate(ev_deltas)


def sweep(files: Sequence[FileScores], profile: Profile) -> SweepResult:
    """Best raw score over every distinct score as threshold (and "no detections").

    Ties go to the higher threshold. Vectorised: one sort of all scored rows.
    """
    n_windows = sum(len(f.windows) for f in files)
    base = -n_windows * profile.a_fn
    parts = [_events(f, profile) for f in files]
    if not parts:
        return SweepResult(math.inf, 0.0, 0.0)
    s = np.concatenate([p[0] for p in parts])
    d = np.concatenate([p[1] for p in parts])
    best_t, best_raw = math.inf, base
    if len(s):
        order = np.argsort(-s, kind="stable")
        s, d = s[order], d[order]
        total = base + np.cumsum(d)
        last = np.ones(len(s), dtype=bool)  # last row of each group of equal scores
        last[:-1] = s[:-1] != s[1:]
        cand_t, cand_raw = s[last], total[last]
        i = int(np.argmax(cand_raw))  # first max = highest threshold among ties
        if cand_raw[i] > best_raw + 1e-12:
            best_t, best_raw = float(cand_t[i]), float(cand_raw[i])
    return SweepResult(best_t, best_raw, normalise(best_raw, n_windows, profile))
