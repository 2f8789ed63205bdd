"""Evidence and redaction: allow-listed, bounded, no secrets, no personal data, no free text."""

from __future__ import annotations

import json

import msgspec
import pytest

from detector.events import ChangeEvent, ErrorEvent, Evidence, ReviewEvent, UsageEvent
from detector.incidents.evidence import ID_CAP, build_evidence
from detector.incidents.redact import MAX_ID_LEN, redact_id
from detector.windows.aggregate import WindowAggregate

CANARY = "CANARY-7c1e-free-text"


@pytest.mark.parametrize(
    ("value", "marker"),
    [
        ("alice.smith@example.co.uk", "email"),
        ("user:bob+tag@corp.example.com", "email"),
        ("sk-proj-abcdefghijklmnop1234567890", "api_key"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key"),
        ("ghp_0123456789abcdefghijklmnopqrstuvwxyz", "api_key"),
        ("xoxb-123456789012-abcdefghijkl", "api_key"),
        ("AIzaSyA1234567890abcdefghijklmnopqrstu", "api_key"),
        ("Bearer 8f7d6e5c4b3a29181716151413121110", "bearer"),
        (
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
            "jwt",
        ),
        ("AKIAIOSFODNN7EXAMPLE", "aws_key"),
        ("ASIAY34FZKBOKMUTVV7A", "aws_key"),
        ("api_key=abc123", "secret"),
        ("password: hunter2", "secret"),
        ("Zk9mQ2xLp0Rw8sTn4VbYc6HdJ1eFgA7uX3", "secret"),
        ("+1 415 555 0123", "phone"),
        ("+447946095812", "phone"),
        ("(415) 555-0123", "phone"),
    ],
)
def test_secret_and_pii_patterns_are_masked(value: str, marker: str) -> None:
    """Each secret or personal-data shape is replaced whole by its marker."""
    assert redact_id(value) == f"[redacted:{marker}]"


@pytest.mark.parametrize(
    "value",
    [
        "req-000123",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "550e8400-e29b-41d4-a716-446655440000",
        "01HQZ3X8J6K9ABCDEFGHJKMNPQ",
        "gpt-4o-2024-08-06",
        "prompt-v12",
        "kb-2024-06-01",
        "1700000000000",
        "ch_3MmlLrLkdIwHu7ix0snN0B15",
        "support.draft",
        "crm.update_ticket",
    ],
)
def test_ordinary_ids_are_kept(value: str) -> None:
    """Ordinary identifiers (ids, uuids, trace ids, versions, numbers) pass unchanged."""
    assert redact_id(value) == value


def test_ids_are_bounded_and_control_characters_dropped() -> None:
    """Identifiers are cut to MAX_ID_LEN and lose control characters."""
    assert len(redact_id("a" * 1000)) == MAX_ID_LEN
    assert redact_id("id\x00\x1b[31m-1") == "id[31m-1"


def _window(start: int = 0, route: str = "r") -> WindowAggregate:
    return WindowAggregate(route, start, start + 60_000)


def test_free_text_never_reaches_evidence() -> None:
    """A canary in review reasons and change actors never appears in the evidence."""
    w = _window()
    w.add(
        ReviewEvent(
            event_id="rv1",
            ts=0.0,
            route="r",
            outcome="rejected",
            reason=CANARY,
            request_id="q1",
            prompt_version="p2",
        )
    )
    w.add(
        ChangeEvent(
            event_id="c1",
            ts=0.0,
            route="r",
            change_kind="prompt",
            from_version="p1",
            to_version="p2",
            actor=CANARY,
        ),
        10,
    )
    w.add(ErrorEvent(event_id="e1", ts=0.0, route="r", error_class="validation_error", trace_id="t1"))
    # Even if a client smuggles a secret or an email into an id field, it is masked.
    w.add(
        UsageEvent(
            event_id="u1",
            ts=0.0,
            route="r",
            request_id="carol@example.com",
            model="sk-live-abcdefghijklmnopqrstuv",
        )
    )
    ev = build_evidence([w], [], [])
    text = json.dumps(ev)
    assert CANARY not in text
    assert "example.com" not in text and "abcdefghijklmnop" not in text
    assert ev["changes"] == [
        {
            "at": "1970-01-01T00:00:00.010Z",
            "kind": "prompt",
            "from_version": "p1",
            "to_version": "p2",
            "event_id": "c1",
        }
    ]
    msgspec.convert(ev, Evidence)  # matches the wire struct


def test_ids_bounded_with_flagged_first() -> None:
    """At most ID_CAP request and trace ids, those of failing events first."""
    windows = []
    for i in range(3):
        w = _window(i * 60_000)
        for k in range(30):
            w.add(
                UsageEvent(
                    event_id=f"u{i}.{k}", ts=0.0, route="r", request_id=f"ok-{i}-{k}", trace_id=f"tok-{i}-{k}"
                )
            )
        w.add(
            ErrorEvent(
                event_id=f"e{i}",
                ts=0.0,
                route="r",
                request_id=f"bad-{i}",
                trace_id=f"tbad-{i}",
                error_class="timeout",
            )
        )
        windows.append(w)
    ev = build_evidence(windows, [], [])
    assert len(ev["request_ids"]) == ID_CAP and len(ev["trace_ids"]) == ID_CAP
    assert ev["request_ids"][:3] == ["bad-0", "bad-1", "bad-2"]
    assert ev["trace_ids"][:3] == ["tbad-0", "tbad-1", "tbad-2"]
    assert ev["error_classes"] == {"timeout": 3}


def test_version_counts_and_versions_before() -> None:
    """Version counts per kind in the anomalous windows; versions seen before, from windows or a dict."""
    before = _window(0)
    for k in range(5):
        before.add(UsageEvent(event_id=f"b{k}", ts=0.0, route="r", model="m1", prompt_version="p1"))
    w = _window(60_000)
    for k in range(4):
        w.add(
            UsageEvent(
                event_id=f"a{k}",
                ts=0.0,
                route="r",
                model="m2",
                prompt_version="p1",
                config_version="c1",
                source_index="idx-7",
                tool="crm",
            )
        )
    ev = build_evidence([w], [before], [])
    assert ev["models"] == {"m2": 4} and ev["prompt_versions"] == {"p1": 4}
    assert (
        ev["config_versions"] == {"c1": 4}
        and ev["source_indexes"] == {"idx-7": 4}
        and ev["tools"] == {"crm": 4}
    )
    assert ev["versions_before"] == {"prompt": ["p1"], "model": ["m1"]}
    ev2 = build_evidence([w], {"model": ["m1", "dave@example.org"]}, [])
    assert ev2["versions_before"] == {"model": ["m1", "[redacted:email]"]}


def test_version_counts_are_bounded() -> None:
    """Many versions collapse into at most 20 keys, the rest under (other)."""
    w = _window()
    for k in range(40):
        for _ in range(40 - k):
            w.add(UsageEvent(event_id=f"u{k}.{_}", ts=0.0, route="r", tool=f"tool-{k}"))
    ev = build_evidence([w], [], [])
    assert len(ev["tools"]) == 20 and "(other)" in ev["tools"]
    assert sum(ev["tools"].values()) == w.events


def test_changes_filtered_to_lookback_and_inferred_have_empty_id() -> None:
    """Changes outside start - lookback are dropped; inferred ones carry event_id ''; no extra keys."""
    w = _window(3_600_000)
    changes = [
        {"at": 0, "kind": "model", "from_version": "m0", "to_version": "m1", "event_id": "old"},
        {
            "at": 3_000_000,
            "kind": "model",
            "from_version": "m1",
            "to_version": "m2",
            "event_id": None,
            "actor": CANARY,
            "note": CANARY,
        },
        {"at": 3_100_000, "kind": "bogus", "from_version": "a", "to_version": "b", "event_id": "x"},
    ]
    ev = build_evidence([w], {}, changes, start_ms=3_600_000, lookback_ms=1_000_000)
    assert ev["changes"] == [
        {
            "at": "1970-01-01T00:50:00Z",
            "kind": "model",
            "from_version": "m1",
            "to_version": "m2",
            "event_id": "",
        }
    ]
    assert CANARY not in json.dumps(ev)
    msgspec.convert(ev, Evidence)
