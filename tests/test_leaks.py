"""No free text, secret or personal data leaves the detector: not in incidents, logs, stderr or counters.

End to end through the replay pipeline (the service's data path) on a
generated scenario (canary strings in every free-text field) plus
hand-made events that put a canary into every free-text and unknown field,
and put emails and keys where identifiers belong.
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detector.bench.scenarios.generate import START_MS, generate_scenario
from detector.cli import main
from detector.config import Config
from detector.ingest.decode import Rejection, parse_ts
from detector.pipeline import Pipeline
from detector.replay import replay_lines

CANARY = re.compile(r"canary", re.IGNORECASE)
#: The detector's own names that hold the word (its canary comparison's signals and detector), removed from a
#: text before it is searched for the canaries planted in the events.
OWN_NAMES = re.compile(r"canary_(errors|reviews|latency|cost)|CanaryComparison")
ROUTE = "leak.route"
EMAIL = "alice@example.com"
API_KEY = "sk-live-4eC39HqLyjWDarjtT1zdp7dc"
TENANT_EMAIL = "bob@example.com"
ACCOUNT_KEY = "AKIAIOSFODNN7EXAMPLE"
CHANGE_ID = "carol@example.com"
VERSION_PHONE = "+44 20 7946 0958"
#: Sensitive identifiers and the marker each may appear as, if at all.
SECRETS = {EMAIL: "[redacted:email]", API_KEY: "[redacted:api_key]", TENANT_EMAIL: None,
           ACCOUNT_KEY: None, CHANGE_ID: "[redacted:email]", VERSION_PHONE: "[redacted:phone]"}
BASE_MS = START_MS + 20 * 3_600_000  # inside the scenario, after its clean first hours
MIN = 60_000


class _Canaries:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"CANARY-H-{self.n}"


def _free_text(c: _Canaries) -> dict[str, Any]:
    """Unknown fields a client might send: free text, personal data, nested objects and lists."""
    return {
        "prompt": f"Summarise the contract for {c()}",
        "output": f"Here is the summary {c()}",
        "user_email": f"{c()}@example.com",
        "message": f"upstream said {c()}",
        "completion": {"text": c(), "choices": [{"message": {"content": c()}}]},
        "metadata": {"note": c(), "tags": [c(), c()], "deep": {"deeper": {"deepest": c()}}},
        "headers": {"authorization": f"Bearer {c()}"},
        "user": {"name": c(), "email": f"{c()}@corp.example"},
    }


def handmade_events() -> list[dict[str, Any]]:
    """A route with 90 healthy minutes, a prompt change, then 20 minutes of failures and rejections.

    Every event carries canaries in unknown fields; review reasons and change actors are canaries;
    the failing traffic carries an email as request_id and an API key as trace_id.
    """
    rng = random.Random(7)
    c = _Canaries()
    out: list[dict[str, Any]] = []
    n = 0

    def ev(kind: str, t: int, **fields: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        e = {"event_id": f"leak-{n}", "type": kind, "ts": t, "route": ROUTE, "model": "gpt-x",
             "provider": "acme", "workflow": "contracts", "tenant": f"tenant-{n % 12}",
             "service_account": "svc-contracts", **_free_text(c), **fields}
        out.append(e)
        return e

    for m in range(110):
        bad = m >= 90
        prompt = "p2" if m >= 90 else "p1"
        if m == 90:
            ev("change", BASE_MS + m * MIN, change_kind="prompt", from_version="p1", to_version=VERSION_PHONE,
               actor=f"deploy-bot {c()}", event_id=CHANGE_ID, description=c(), diff={"before": c()})
        for k in range(20):
            t = BASE_MS + m * MIN + k * 2_500 + rng.randint(0, 500)
            ids = {"request_id": EMAIL, "trace_id": API_KEY, "tenant": TENANT_EMAIL,
                   "service_account": ACCOUNT_KEY} if bad else {"request_id": f"req-{m}-{k}",
                                                                "trace_id": f"tr-{m}-{k}"}
            ctx = {"prompt_version": prompt, **ids}
            ev("usage", t, input_tokens=400 + rng.randint(0, 50), output_tokens=200, **ctx)
            ev("latency", t, latency_ms=(9000.0 if bad and k % 2 else 800.0) + rng.randint(0, 100), **ctx)
            ev("cost", t, cost_usd=0.004, **ctx)
            if (bad and k % 2) or rng.random() < 0.01:
                ev("error", t, error_class="timeout", status_code=504, stack=f"Traceback {c()}", **ctx)
            if k % 4 == 0:
                outcome = ("rejected" if k % 8 == 0 else "escalated") if bad else rng.choice(
                    ["accepted", "accepted", "accepted", "edited"])
                ev("review", t + 1_000, outcome=outcome, reason=f"made up a clause {c()}", **ctx)
    return out


def invalid_lines() -> list[bytes]:
    """Messages that are rejected, each with a canary (or secret) in the offending value."""
    base = {"event_id": "bad", "ts": BASE_MS, "route": ROUTE}
    cases: list[dict[str, Any] | bytes] = [
        {**base, "type": "review", "outcome": "CANARY-R-1", "reason": "CANARY-R-2"},
        {**base, "type": "change", "change_kind": "CANARY-R-3", "actor": "CANARY-R-4"},
        {**base, "type": "CANARY-R-5", "prompt": "CANARY-R-6"},
        {**base, "type": "latency", "latency_ms": "CANARY-R-7"},
        {**base, "type": "usage", "ts": "CANARY-R-8"},
        {**base, "type": "usage", "requests": "CANARY-R-9"},
        {**base, "type": "usage", "route": "CANARY-R-10" * 40},
        {**base, "type": "usage", "tenant": f"{EMAIL} " * 60},
        {**base, "type": "usage", "event_id": API_KEY * 10},
        {**base, "type": "error", "status_code": "CANARY-R-11"},
        {"type": "usage", "CANARY-R-12": "CANARY-R-13"},
        {**base, "type": "usage", "CANARY-R-14": 1, "requests": -1},
        b'{"event_id": "CANARY-R-15", "type": "usage", ',
        b"CANARY-R-16 not json at all",
        b'["CANARY-R-17"]',
        json.dumps({**base, "type": "usage", "prompt": "CANARY-R-18" * 10_000}).encode(),
    ]
    return [x if isinstance(x, bytes) else json.dumps(x).encode() for x in cases]


def _lines(events: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e, ensure_ascii=False).encode() for e in events]


def _merged(scenario_events: list[dict[str, Any]], extra: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    def key(e: dict[str, Any]) -> int:
        return parse_ts(e["ts"]) or 0

    return heapq.merge(scenario_events, extra, key=key)


def assert_clean(texts: list[str], where: str) -> None:
    """No canary anywhere, and every sensitive identifier at most as its redaction marker."""
    for text in texts:
        clean = OWN_NAMES.sub("", text)
        m = CANARY.search(clean)
        assert m is None, f"canary leaked into {where}: ...{clean[max(0, m.start() - 80):m.end() + 40]}..."
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {where}"
    # pieces of the secrets must not survive either (a partial mask is a leak)
    joined = "\n".join(texts)
    for fragment in ("alice@", "4eC39HqLyjWD", "bob@", "IOSFODNN7", "carol@", "7946 0958"):
        assert fragment not in joined, f"part of a secret ({fragment!r}) leaked into {where}"


@pytest.fixture(scope="module")
def scenario() -> Any:
    return generate_scenario(1, days=2)


def test_handmade_route_leaks_nothing_and_redacts_ids(caplog: pytest.LogCaptureFixture) -> None:
    """The failing hand-made route opens incidents whose evidence holds its secret ids only redacted."""
    caplog.set_level(logging.DEBUG)
    res = replay_lines(_lines(handmade_events()), Config())
    texts = [json.dumps(i, ensure_ascii=False) for i in res.incidents]
    assert_clean(texts, "incidents")
    assert_clean([r.getMessage() + repr(r.args) for r in caplog.records] + [caplog.text], "logs")
    assert_clean([json.dumps(res.stats.as_dict())], "stats")
    ours = [i for i in res.incidents if i["route"] == ROUTE]
    assert any(i["event"] == "opened" for i in ours), "the hand-made failure burst opened no incident"
    ev = [i["evidence"] for i in ours]
    assert any("[redacted:email]" in e["request_ids"] for e in ev)
    assert any("[redacted:api_key]" in e["trace_ids"] for e in ev)
    for e in ev:
        for c in e["changes"]:
            assert c["event_id"] in ("", "[redacted:email]") or c["event_id"].startswith("leak-")
            assert c["to_version"] in (None, "p1", "p2", "[redacted:phone]")


def test_rejections_say_where_not_what() -> None:
    """Rejected messages are counted and described by field path, never by the value that was sent."""
    rejections: list[Rejection] = []
    pipe = Pipeline(Config(), on_reject=lambda raw, rej: rejections.append(rej))
    good = _lines(handmade_events()[:5])
    for raw in good + invalid_lines():
        assert pipe.process(raw) == []
    assert len(rejections) == len(invalid_lines())
    details = [f"{r.reason} {r.detail}" for r in rejections]
    assert_clean(details, "rejection details")
    assert_clean([json.dumps(pipe.stats.as_dict()), repr(pipe.stats)], "stats")


def test_replay_cli_on_scenario_leaks_nothing(scenario: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`detector replay` over a generated scenario + hand-made events: no canary in output, stderr or logs."""
    assert scenario.canaries and all(CANARY.search(c) for c in scenario.canaries)
    events = tmp_path / "events.jsonl"
    with events.open("w", encoding="utf-8") as fh:
        for e in _merged(scenario.events, handmade_events()):
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
        for raw in invalid_lines():
            fh.write(raw.decode() + "\n")
    out = tmp_path / "incidents.jsonl"
    caplog.set_level(logging.DEBUG)
    assert main(["replay", "--events", str(events), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    incidents = out.read_text(encoding="utf-8").splitlines()
    assert incidents, "the scenario produced no incidents at all"
    assert_clean(incidents, "incidents")
    assert_clean([captured.err, captured.out], "stderr/stdout")
    assert_clean([r.getMessage() + repr(r.args) for r in caplog.records] + [caplog.text], "logs")
    assert "rejected: " in captured.err
    found = [json.loads(line) for line in incidents]
    ours = [i for i in found if i["route"] == ROUTE]
    assert any("[redacted:email]" in i["evidence"]["request_ids"] for i in ours)
    # the scenario's own routes were processed too
    assert {i["route"] for i in found} - {ROUTE}
