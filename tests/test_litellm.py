"""LiteLLM's StandardLoggingPayload as input (SPEC 2c), captured from the library itself: an offline
`litellm.completion(..., mock_response=...)` with a custom logger callback, a successful call and a
rate-limited one. Larger traffic is made from those captured payloads (new ids, times and tokens; the
structure is LiteLLM's own).

What these protect: a payload becomes usage, latency, cost (+ error with its class and status) events,
the route and tenant from configurable keys; no free text (messages, responses, error text) reaches an
event; one object, a JSON array or NDJSON per message; a payload without the route key is rejected with
its path; rate limiting injected into such traffic opens the right incident through `detector replay
--format litellm` and through `detector run` on a litellm topic.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no price map download
litellm = pytest.importorskip("litellm", reason="litellm (dev extra) is not installed")

from detector.config import InputConfig  # noqa: E402
from detector.ingest.litellm import LiteLLMTranslator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CANARY = "CANARY-PROMPT-9931"


@pytest.fixture(scope="module")
def captured() -> dict[str, dict[str, Any]]:
    from litellm.integrations.custom_logger import CustomLogger

    got: list[dict[str, Any]] = []

    class Capture(CustomLogger):  # type: ignore[misc]
        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            got.append(kwargs["standard_logging_object"])

        def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            got.append(kwargs["standard_logging_object"])

    before = litellm.callbacks
    litellm.callbacks = [Capture()]
    try:
        litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": CANARY}],
                           mock_response=f"reply {CANARY}", metadata={"user_api_key_team_id": "team-a"})
        with pytest.raises(litellm.RateLimitError):
            litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": CANARY}],
                               mock_response=litellm.RateLimitError(f"slow down {CANARY}", llm_provider="openai",
                                                                    model="gpt-4o-mini"))
        deadline = time.monotonic() + 30  # LiteLLM runs success callbacks on a thread of its own
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        litellm.callbacks = before
    by = {p["status"]: json.loads(json.dumps(p, default=str)) for p in got}
    assert set(by) == {"success", "failure"}
    return by


def routed(p: dict[str, Any], route: str = "support.reply") -> dict[str, Any]:
    return {**p, "model_group": route}


def test_a_real_payload_becomes_events_without_free_text(captured: dict[str, dict[str, Any]]) -> None:
    ok, bad = routed(captured["success"]), routed(captured["failure"])
    out = LiteLLMTranslator().translate(json.dumps([ok, bad]).encode())
    assert out.rejection is None and out.rejected == []
    kinds = [(e["type"], e.get("error_class"), e.get("status_code")) for e in out.events]
    assert kinds == [("usage", None, None), ("latency", None, None), ("cost", None, None),
                     ("usage", None, None), ("latency", None, None), ("error", "rate_limited", 429)]
    u = out.events[0]
    assert (u["route"], u["tenant"], u["model"], u["provider"]) == ("support.reply", "team-a", "gpt-4o-mini", "openai")
    assert (u["input_tokens"], u["output_tokens"]) == (ok["prompt_tokens"], ok["completion_tokens"])
    assert u["request_id"] == ok["id"] and u["trace_id"] == ok["trace_id"]
    assert out.events[2]["cost_usd"] == ok["response_cost"] > 0
    assert CANARY in json.dumps([ok, bad]) and CANARY not in json.dumps(out.events)
    ndjson = LiteLLMTranslator().translate((json.dumps(ok) + "\n" + json.dumps(bad) + "\n").encode())
    assert [e["event_id"] for e in ndjson.events] == [e["event_id"] for e in out.events]


def test_the_route_key_is_configurable_and_required(captured: dict[str, dict[str, Any]]) -> None:
    p = {**captured["success"], "metadata": {**captured["success"]["metadata"], "feature": "claims.summary"}}
    cfg = InputConfig.model_validate({"litellm": {"route_key": "metadata.feature"}})
    assert LiteLLMTranslator(cfg).translate(json.dumps(p).encode()).events[0]["route"] == "claims.summary"
    none = LiteLLMTranslator().translate(json.dumps(captured["success"]).encode())  # model_group is ""
    assert none.rejection is not None and none.rejection.detail == "$.model_group: the route, required"
    absurd = LiteLLMTranslator().translate(json.dumps(routed({**captured["success"], "prompt_tokens": 1e15})).encode())
    assert absurd.rejection is not None and absurd.rejection.reason == "invalid_field"


def traffic(captured: dict[str, dict[str, Any]], minutes: int, bad_from: int, seed: int = 3) -> list[dict[str, Any]]:
    """LiteLLM payloads (the captured ones, with new ids, times and tokens) for three routes; from
    ``bad_from`` a third of chat.assistant's calls are rate limited."""
    rng = random.Random(seed)
    t0 = 1_767_225_600.0
    out = []
    for m in range(minutes):
        for route, rpm in (("chat.assistant", 30), ("docs.search", 20), ("claims.summary", 8)):
            for _ in range(rpm):
                fail = route == "chat.assistant" and m >= bad_from and rng.random() < 0.35
                p = copy.deepcopy(captured["failure" if fail else "success"])
                start = t0 + m * 60 + rng.uniform(0, 55)
                p.update(id=str(uuid.UUID(int=rng.getrandbits(128))), model_group=route, startTime=start,
                         endTime=start + rng.lognormvariate(-0.5, 0.3))
                if not fail:
                    p.update(prompt_tokens=rng.randrange(500, 1500), completion_tokens=rng.randrange(50, 400))
                out.append(p)
    out.sort(key=lambda p: p["endTime"])
    return out


def test_replay_reads_litellm_payloads_and_finds_the_injected_incident(
        captured: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    payloads = traffic(captured, 100, bad_from=80)
    ndjson = tmp_path / "litellm.ndjson"
    ndjson.write_text("".join(json.dumps(p) + "\n" for p in payloads), encoding="utf-8")
    out = tmp_path / "inc.jsonl"
    res = subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--format", "litellm", "--events",
                          str(ndjson), "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    incs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(m["route"], m["incident_type"]) for m in incs if m["event"] == "opened"] == [
        ("chat.assistant", "performance")]
    assert CANARY not in out.read_text(encoding="utf-8")
    array = tmp_path / "litellm.json"  # the same as one JSON array
    array.write_text(json.dumps(payloads), encoding="utf-8")
    out2 = tmp_path / "inc2.jsonl"
    res = subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--format", "litellm", "--events",
                          str(array), "--out", str(out2)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert out2.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_detector_run_reads_a_litellm_topic(captured: dict[str, dict[str, Any]], broker: Any) -> None:
    from tests.kafka_util import run_format_topic

    payloads = traffic(captured, 100, bad_from=80)
    # batches of 50 payloads as a JSON array, as a logging callback may send them; then one that is not JSON
    messages = [json.dumps(payloads[i:i + 50]).encode() for i in range(0, len(payloads), 50)] + [b"{not json"]
    published, dead = run_format_topic(broker.bootstrap, "litellm.logs", "litellm", messages)
    opened = [(m["route"], m["incident_type"]) for m in published if m["event"] == "opened"]
    assert opened == [("chat.assistant", "performance")]
    assert [dict(m.headers)["detector.reason"] for m in dead] == [b"not_json"]
