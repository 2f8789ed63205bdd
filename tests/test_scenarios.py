"""Labelled scenarios: the generator's contract and the scorer's arithmetic."""

from __future__ import annotations

import gc
import io
import re
import statistics
import sys
import types
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from detector.bench.scenarios.generate import generate_scenario
from detector.bench.scenarios.model import INCIDENT_TYPES, Label, Scenario, read_labels, write_scenario
from detector.bench.scenarios.score import aggregate, score

SEEDS = (1, 2, 3)
MIN = 60_000
TYPES = {"usage", "error", "latency", "cost", "review", "change"}
ERROR_CLASSES = {
    "timeout",
    "rate_limited",
    "provider_error",
    "tool_error",
    "validation_error",
    "access_denied",
    "retrieval_empty",
    "retrieval_stale",
    "other",
}
OUTCOMES = {"accepted", "edited", "rejected", "escalated", "overridden"}
CHANGE_KINDS = {"prompt", "model", "config", "source_index", "tool", "route"}
CONTEXT = (
    "model",
    "provider",
    "prompt_version",
    "config_version",
    "source_index",
    "tool",
    "workflow",
    "tenant",
    "service_account",
    "request_id",
    "trace_id",
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
Index = dict[str, dict[str, list[tuple[int, dict[str, Any]]]]]
VERSION_FIELD = {
    "prompt": "prompt_version",
    "model": "model",
    "config": "config_version",
    "source_index": "source_index",
    "tool": "tool",
}


@pytest.fixture(scope="module")
def scenarios() -> dict[int, Scenario]:
    return {seed: generate_scenario(seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def indexes(scenarios: dict[int, Scenario]) -> dict[int, Index]:
    gc.disable()  # a million small tuples: the cyclic GC would rescan the whole heap many times
    try:
        return {seed: by_route(s) for seed, s in scenarios.items()}
    finally:
        gc.enable()


@pytest.fixture(scope="module")
def one_day() -> Scenario:
    return generate_scenario(4, days=1)


_SECONDS: dict[str, int] = {}


def ts_ms(ev: dict[str, Any]) -> int:
    """Event time in epoch ms (fast path for ``YYYY-MM-DDTHH:MM:SS.mmmZ``)."""
    ts = ev["ts"]
    if isinstance(ts, int):
        return ts
    if len(ts) == 24 and ts[19] == "." and ts[23] == "Z":
        sec = _SECONDS.get(ts[:19])
        if sec is None:
            sec = _SECONDS[ts[:19]] = int(datetime.fromisoformat(ts[:19] + "+00:00").timestamp())
        return sec * 1000 + int(ts[20:23])
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def by_route(s: Scenario) -> Index:
    """type -> route -> [(ts ms, event)] in file order."""
    out: Index = {t: {} for t in TYPES}
    for ev in s.events:
        out[ev["type"]].setdefault(ev["route"], []).append((ts_ms(ev), ev))
    return out


def in_window(rows: Iterable[tuple[int, dict[str, Any]]], lo: int, hi: int) -> list[dict[str, Any]]:
    return [e for t, e in rows if lo <= t < hi]


def spec_problems(ev: dict[str, Any]) -> list[str]:
    """What breaks the SPEC section 1 field table (empty when valid)."""
    p: list[str] = []
    eid = ev.get("event_id")
    if not (isinstance(eid, str) and 1 <= len(eid) <= 128):
        p.append("event_id")
    if ev.get("type") not in TYPES:
        p.append("type")
    ts = ev.get("ts")
    if isinstance(ts, bool) or not (
        isinstance(ts, int) and ts >= 0 or isinstance(ts, str) and RFC3339.match(ts)
    ):
        p.append("ts")
    route = ev.get("route")
    if not (isinstance(route, str) and 1 <= len(route) <= 256):
        p.append("route")
    p += [f for f in CONTEXT if f in ev and not (isinstance(ev[f], str) and len(ev[f]) <= 256)]

    def nonneg_int(k: str, lo: int = 0) -> bool:
        v = ev.get(k, lo)
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    def nonneg_num(k: str) -> bool:
        v = ev.get(k)
        return isinstance(v, int | float) and not isinstance(v, bool) and v >= 0

    t = ev.get("type")
    if t == "usage" and not (
        nonneg_int("requests", 1) and all(nonneg_int(k) for k in ("input_tokens", "output_tokens", "retries"))
    ):
        p.append("usage fields")
    if t == "error" and (ev.get("error_class") not in ERROR_CLASSES or not nonneg_int("status_code")):
        p.append("error fields")
    if t == "latency" and not (nonneg_num("latency_ms") and ("ttft_ms" not in ev or nonneg_num("ttft_ms"))):
        p.append("latency fields")
    if t == "cost" and not nonneg_num("cost_usd"):
        p.append("cost fields")
    if t == "review" and ev.get("outcome") not in OUTCOMES:
        p.append("review fields")
    if t == "change" and not (
        ev.get("change_kind") in CHANGE_KINDS
        and isinstance(ev.get("from_version"), str)
        and isinstance(ev.get("to_version"), str)
    ):
        p.append("change fields")
    return p


# -- generator ----------------------------------------------------------------------------


def test_same_seed_same_events(one_day: Scenario) -> None:
    """Determinism: a seed always yields identical events, labels and canaries."""
    again = generate_scenario(one_day.seed, days=1)
    assert again.events == one_day.events
    assert again.labels == one_day.labels and again.labels
    assert again.canaries == one_day.canaries


def test_seeds_differ(scenarios: dict[int, Scenario]) -> None:
    """Different seeds give different incident timings, routes and mixes."""
    plans = {seed: [(lb.route, lb.variant, lb.start_ms) for lb in s.labels] for seed, s in scenarios.items()}
    assert len({tuple(p) for p in plans.values()}) == len(SEEDS)
    assert len({tuple(sorted(v for _, v, _ in p)) for p in plans.values()}) == len(SEEDS)


def test_events_valid_per_spec(scenarios: dict[int, Scenario]) -> None:
    """Every generated event satisfies the SPEC section 1 field table; volume stays replayable."""
    for seed, s in scenarios.items():
        assert 100_000 < len(s.events) < 400_000
        assert set(Counter(e["type"] for e in s.events)) == TYPES
        # every event of one seed; of the others, every rare event and a sample of the bulk
        sample = (
            s.events
            if seed == SEEDS[0]
            else [
                e for i, e in enumerate(s.events) if i % 10 == 0 or e["type"] in ("error", "review", "change")
            ]
        )
        bad = [(e, pr) for e in sample if (pr := spec_problems(e))]
        assert not bad, bad[:3]


def test_quirks_present(scenarios: dict[int, Scenario]) -> None:
    """Both ts forms, resent duplicates (same event_id and body) and late events are in the file."""
    s = scenarios[1]
    forms = Counter(type(e["ts"]).__name__ for e in s.events)
    assert forms["str"] > 10 * forms["int"] > 0
    seen: dict[str, dict[str, Any]] = {}
    dups = 0
    for e in s.events:
        if e["event_id"] in seen:
            dups += 1
            assert seen[e["event_id"]] == e
        seen[e["event_id"]] = e
    assert 10 <= dups <= 1000
    high, late = 0, 0
    for e in s.events:
        t = ts_ms(e)
        late += t < high - 2 * MIN + 1
        high = max(high, t)
    assert 5 <= late <= 1000


def test_learning_period_clean_and_routes_vary(scenarios: dict[int, Scenario]) -> None:
    """No incident in the first 18 h; volumes span busy to very quiet routes; a clean route exists."""
    for s in scenarios.values():
        assert all(lb.start_ms >= s.start_ms + 18 * 60 * MIN for lb in s.labels)
        assert all(lb.end_ms <= s.start_ms + s.days * 1440 * MIN - 60 * MIN for lb in s.labels)
        assert all(20 * MIN <= lb.end_ms - lb.start_ms <= 90 * MIN for lb in s.labels)
        assert set(s.routes) - {lb.route for lb in s.labels}, "no clean route"
        requests = Counter(e["route"] for e in s.events if e["type"] == "usage")
        assert max(requests.values()) > 40_000 * s.days and min(requests.values()) < 1_000 * s.days


def test_all_types_and_change_causes_covered(scenarios: dict[int, Scenario]) -> None:
    """The default seeds cover all six incident types and every change kind used for rollbacks."""
    labels = [lb for s in scenarios.values() for lb in s.labels]
    assert {lb.incident_type for lb in labels} == set(INCIDENT_TYPES)
    kinds = {lb.rollback["kind"] for lb in labels if lb.rollback}
    assert {"prompt", "model", "source_index", "tool", "config"} <= kinds
    assert any(lb.rollback is None for lb in labels)
    for s in scenarios.values():
        assert {lb.incident_type for lb in s.labels} == set(INCIDENT_TYPES)


def test_benign_releases_present(scenarios: dict[int, Scenario], indexes: dict[int, Index]) -> None:
    """Releases that cause nothing happen after the learning period, away from any incident."""
    for seed, s in scenarios.items():
        windows = [(lb.route, lb.start_ms - 60 * MIN, lb.end_ms + 60 * MIN) for lb in s.labels]
        benign = [
            e
            for rows in indexes[seed]["change"].values()
            for t, e in rows
            if t > s.start_ms + 18 * 60 * MIN
            and not any(r == e["route"] and lo <= t <= hi for r, lo, hi in windows)
        ]
        assert len(benign) >= 2


def test_change_caused_labels_match_events(scenarios: dict[int, Scenario], indexes: dict[int, Index]) -> None:
    """A change-caused label has its change at the start, a rollback at the end, new version in traffic."""
    for seed, s in scenarios.items():
        changes, usage = indexes[seed]["change"], indexes[seed]["usage"]
        for lb in s.labels:
            if lb.rollback is None:
                assert not any(lb.start_ms == t for t, _ in changes.get(lb.route, []))
                continue
            kind, old = lb.rollback["kind"], lb.rollback["to_version"]
            at_start = [e for t, e in changes[lb.route] if t == lb.start_ms]
            assert len(at_start) == 1 and at_start[0]["change_kind"] == kind
            assert at_start[0]["from_version"] == old
            new = at_start[0]["to_version"]
            at_end = [e for t, e in changes[lb.route] if t == lb.end_ms]
            assert at_end and at_end[0]["from_version"] == new and at_end[0]["to_version"] == old
            field = VERSION_FIELD[kind]
            tool = old.split("@")[0] + "@" if kind == "tool" else ""

            def affected(e: dict[str, Any], field: str = field, tool: str = tool) -> bool:
                return field in e and e[field].startswith(tool)

            win = [e for e in in_window(usage[lb.route], lb.start_ms, lb.end_ms) if affected(e)]
            assert win and all(e[field] == new for e in win)
            before = [
                e for e in in_window(usage[lb.route], lb.start_ms - 30 * MIN, lb.start_ms) if affected(e)
            ]
            assert all(e[field] == old for e in before)


def _rate(num: int, den: int) -> float:
    return num / den if den else 0.0


def check_signal(s: Scenario, lb: Label, idx: Index) -> None:
    r, lo, hi = lb.route, lb.start_ms, lb.end_ms
    base_hi = s.start_ms + 18 * 60 * MIN
    usage, errors = idx["usage"].get(r, []), idx["error"].get(r, [])
    win_u, base_u = in_window(usage, lo, hi), in_window(usage, s.start_ms, base_hi)
    if lb.signal == "error_rate":
        classes = set(lb.details["error_rates"])
        n_win = sum(e["error_class"] in classes for e in in_window(errors, lo, hi))
        n_base = sum(e["error_class"] in classes for e in in_window(errors, s.start_ms, base_hi))
        win, base = _rate(n_win, len(win_u)), _rate(n_base, len(base_u))
        assert win >= 0.1 and win >= 5 * max(base, 0.002), (lb.description, win, base)
    elif lb.signal == "tool_error_rate":
        tool = lb.details["tool"] + "@"  # the tool field is "<name>@<version>"
        calls = [e for e in win_u if e.get("tool", "").startswith(tool)]
        fails = [
            e
            for e in in_window(errors, lo, hi)
            if e["error_class"] == "tool_error" and e.get("tool", "").startswith(tool)
        ]
        base_calls = sum(e.get("tool", "").startswith(tool) for e in base_u)
        base_fails = sum(
            e["error_class"] == "tool_error" and e.get("tool", "").startswith(tool)
            for e in in_window(errors, s.start_ms, base_hi)
        )
        assert _rate(len(fails), len(calls)) >= 0.3 and _rate(base_fails, base_calls) < 0.03, lb.description
    elif lb.signal == "review_rejection":
        reviews = in_window(idx["review"][r], lo + 5 * MIN, hi + 5 * MIN)
        base = in_window(idx["review"][r], s.start_ms, base_hi)
        bad = sum(e["outcome"] in ("rejected", "escalated") for e in reviews)
        base_bad = sum(e["outcome"] in ("rejected", "escalated") for e in base)
        assert len(reviews) >= 15 and _rate(bad, len(reviews)) >= 0.2, (lb.description, bad, len(reviews))
        assert _rate(base_bad, len(base)) < 0.1
    elif lb.signal == "latency":
        lat_w = sorted(e["latency_ms"] for e in in_window(idx["latency"][r], lo, hi))
        lat_b = sorted(e["latency_ms"] for e in in_window(idx["latency"][r], s.start_ms, base_hi))
        p95 = statistics.quantiles(lat_w, n=20)[-1] / statistics.quantiles(lat_b, n=20)[-1]
        assert 1.8 <= p95 <= 5.5, (lb.description, p95)
    elif lb.signal == "traffic_stop":
        assert not win_u and len(in_window(usage, lo - 60 * MIN, lo)) >= 60, lb.description
        assert in_window(usage, hi, hi + 30 * MIN)
    elif lb.signal == "runaway_trace":
        loop = sum(e["trace_id"] == lb.details["trace_id"] for e in win_u)
        assert loop >= 50 and max(Counter(e["trace_id"] for e in base_u).values()) <= 10, (
            lb.description,
            loop,
        )
    elif lb.signal == "cost_per_request":
        cost_w = [e["cost_usd"] for e in in_window(idx["cost"][r], lo, hi)]
        cost_b = [e["cost_usd"] for e in in_window(idx["cost"][r], s.start_ms, base_hi)]
        assert statistics.mean(cost_w) >= 3 * statistics.mean(cost_b), lb.description
    else:
        raise AssertionError(f"unknown signal {lb.signal}")


def test_each_label_signal_present(scenarios: dict[int, Scenario], indexes: dict[int, Index]) -> None:
    """Each label's injected signal is really in its window, clearly above the learned baseline."""
    for seed, s in scenarios.items():
        for lb in s.labels:
            check_signal(s, lb, indexes[seed])


def test_canaries_in_every_free_text(scenarios: dict[int, Scenario]) -> None:
    """Canaries sit in every free-text field, so a leak into incidents or logs can be caught."""
    s = scenarios[2]
    assert len(s.canaries) > 1000 and len(set(s.canaries)) == len(s.canaries)
    pat = re.compile(rf"CANARY-{s.seed}-\d+")
    texts = Counter()
    for e in s.events:
        for f in ("reason", "actor", "prompt", "output", "user_email", "message"):
            if f in e:
                assert pat.search(e[f]), (f, e[f])
                texts[f] += 1
    assert all(texts[f] > 0 for f in ("reason", "actor", "prompt", "output", "user_email"))


def test_write_and_read_back(tmp_path: Any, one_day: Scenario) -> None:
    """A scenario written to events.jsonl + labels.json reads back with the same labels."""
    s = one_day
    events_path, labels_path = write_scenario(s, tmp_path)
    assert sum(1 for _ in events_path.open("rb")) == len(s.events)
    back = read_labels(labels_path)
    assert back.labels == s.labels and back.canaries == s.canaries and back.routes == s.routes


# -- scorer ---------------------------------------------------------------------------


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def incident(
    iid: str,
    lb: Label,
    delay_min: float,
    itype: str | None = None,
    rollback: dict[str, str] | None = None,
    summary: str = "ok",
) -> list[dict[str, Any]]:
    """An opened + resolved pair of messages for a hand-made incident."""
    det = lb.start_ms + int(delay_min * MIN)
    recs = (
        [{"action": "rollback", "target": rollback, "rationale": "r", "auto_applicable": False}]
        if rollback
        else []
    )
    base = {
        "schema_version": "1",
        "incident_id": iid,
        "route": lb.route,
        "incident_type": itype or lb.incident_type,
        "severity": "high",
        "started_at": iso(lb.start_ms),
        "detected_at": iso(det),
        "recommendations": recs,
        "summary": summary,
        "signals": [],
        "evidence": {},
        "blast_radius": {},
    }
    return [
        {**base, "event": "opened", "seq": 1, "status": "open", "at": iso(det), "resolved_at": None},
        {
            **base,
            "event": "resolved",
            "seq": 2,
            "status": "resolved",
            "at": iso(lb.end_ms),
            "resolved_at": iso(lb.end_ms),
            "recommendations": [],
        },
    ]


def perfect(s: Scenario, delay_min: float = 4.0) -> list[dict[str, Any]]:
    return [
        m for i, lb in enumerate(s.labels) for m in incident(f"inc-{i}", lb, delay_min, rollback=lb.rollback)
    ]


@pytest.fixture(scope="module")
def small() -> Scenario:
    labels = [
        Label("chat", "performance", 100 * MIN, 140 * MIN, None, "timeouts"),
        Label("kb", "bad_output", 200 * MIN, 260 * MIN, {"kind": "prompt", "to_version": "kb-v7"}, "prompt"),
        Label("kb", "cost", 500 * MIN, 530 * MIN, {"kind": "model", "to_version": "m-1"}, "model"),
    ]
    return Scenario(9, 2, 0, [], labels, ["chat", "kb", "quiet"], ["CANARY-9-0", "CANARY-9-1"])


def test_score_perfect(small: Scenario) -> None:
    """A perfect incident set scores 100% found, 0 false, right delays and rollbacks, no leak."""
    sc = score(perfect(small, delay_min=4.0), small)
    assert (sc.found, sc.labels, sc.false_incidents, sc.wrong_type, sc.leaks) == (3, 3, 0, 0, 0)
    assert sc.delays_min == [4.0, 4.0, 4.0] and sc.median_delay_min == 4.0
    assert (sc.rollback_right, sc.rollback_expected, sc.rollback_wrong) == (2, 2, 0)
    agg = aggregate([sc])
    assert agg.passed and all(ok for *_, ok in agg.bars())


def test_score_wrong_type_is_miss_and_false(small: Scenario) -> None:
    """An incident of the wrong type on the right route and time counts as a miss and as false."""
    msgs = perfect(small)
    msgs = [m for m in msgs if m["incident_id"] != "inc-0"] + incident(
        "x", small.labels[0], 3.0, itype="cost"
    )
    sc = score(msgs, small)
    assert sc.found == 2 and sc.false_incidents == 1 and sc.wrong_type == 1
    assert sc.false_per_route_day == pytest.approx(1 / 6)
    assert not aggregate([sc]).passed


def test_score_window_tolerance_and_delay(small: Scenario) -> None:
    """Matching allows 5 min before and 15 min after a label; later or elsewhere is false."""
    lb = small.labels[0]
    early = incident(
        "early", Label(lb.route, lb.incident_type, lb.start_ms - 4 * MIN, lb.start_ms, None, ""), 0.0
    )
    late = incident("late", Label(lb.route, lb.incident_type, lb.end_ms + 20 * MIN, lb.end_ms, None, ""), 0.0)
    other = incident("quiet", Label("quiet", "performance", lb.start_ms, lb.end_ms, None, ""), 1.0)
    sc = score(early + late + other, small)
    assert sc.results[0].incident_id == "early" and sc.results[0].delay_min == pytest.approx(-4.0)
    assert sorted(sc.false_ids) == ["late", "quiet"] and sc.wrong_type == 0


def test_score_rollback_targets(small: Scenario) -> None:
    """Rollback accuracy needs the exact target; a rollback on a label without target is wrong."""
    a, b, c = small.labels
    msgs = (
        incident("a", a, 2, rollback={"kind": "prompt", "to_version": "v0"})
        + incident("b", b, 2, rollback={"kind": "prompt", "to_version": "kb-v8"})
        + incident("c", c, 2, rollback={"kind": "model", "to_version": "m-1"})
    )
    sc = score(msgs, small)
    assert sc.found == 3 and sc.rollback_expected == 2 and sc.rollback_right == 1 and sc.rollback_wrong == 1
    assert [r.rollback_ok for r in sc.results] == [None, False, True]
    assert not aggregate([sc]).passed


def test_score_detects_leaks(small: Scenario) -> None:
    """A canary in any incident field or in captured logs is a leak."""
    msgs = perfect(small)
    msgs[2]["evidence"] = {"note": "reviewer said CANARY-9-1"}
    assert score(msgs, small).leaked == ["CANARY-9-1"]
    clean = perfect(small)
    assert score(clean, small).leaks == 0
    assert score(clean, small, extra_texts=["WARN bad line: CANARY-9-0"]).leaked == ["CANARY-9-0"]


def test_aggregate_pools_seeds(small: Scenario) -> None:
    """The aggregate pools found %, false per route-day and delays over seeds."""
    good = score(perfect(small, 2.0), small)
    half = score(perfect(small, 20.0)[:2] + incident("f", Label("quiet", "cost", 0, MIN, None, ""), 0), small)
    agg = aggregate([good, half])
    assert agg.found_pct == pytest.approx(400 / 6) and agg.false_per_route_day == pytest.approx(1 / 12)
    assert agg.median_delay_min == 2.0 and agg.rollback_expected == 4 and agg.rollback_right == 2
    names = [name for name, *_ in agg.bars()]
    assert len(names) == 5 and not agg.passed


def test_bench_with_oracle_replay(monkeypatch: pytest.MonkeyPatch, one_day: Scenario) -> None:
    """The bench wiring: a replay that finds every label perfectly passes every bar."""
    from detector.bench.scenarios import bench

    seed, days, truth = one_day.seed, one_day.days, one_day
    monkeypatch.setattr(bench, "generate_scenario", lambda s, d: truth if (s, d) == (seed, days) else None)
    fake_replay = types.ModuleType("detector.replay")
    fake_replay.replay_lines = lambda lines, config: types.SimpleNamespace(  # type: ignore[attr-defined]
        incidents=(sum(1 for _ in lines), perfect(truth))[1]
    )
    fake_config = types.ModuleType("detector.config")
    fake_config.load_config = lambda path: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "detector.replay", fake_replay)
    monkeypatch.setitem(sys.modules, "detector.config", fake_config)
    out = io.StringIO()
    rc = bench.main(["--seeds", str(seed), "--days", str(days)], out=out)
    text = out.getvalue()
    assert rc == 0, text
    assert "overall: PASS" in text and text.count("PASS") == 6
