"""Operator commands (SPEC 2b): the control-topic format, the CLI builder, and the engine applying them."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from detector.detectors.firing import iso
from detector.incidents import engine as engine_mod
from detector.incidents.commands import COMMANDS, Command, build_command, decode_command, encode_command
from detector.incidents.engine import IncidentEngine, incident_id
from detector.incidents.triage import bump
from detector.ingest.decode import Rejection
from tests.test_incident_engine import Step, cfg, check_stream, feed, firing_run, healthy_run, ts

AT = "2026-01-01T00:03:00Z"
CANARY = "CANARY-note-5e1f0a"
IID = incident_id("r", "performance", ts(0))


def raw(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def cmd(command: str, at: float, **kw: Any) -> Command:
    kw.setdefault("by", "sam")
    if command in ("acknowledge", "contain", "resolve"):
        kw.setdefault("incident_id", IID)
    return Command(command=command, at=iso(ts(at)), **kw)  # type: ignore[arg-type]


# -- decoding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"command": "acknowledge", "incident_id": "inc-1", "by": "sam", "at": AT},
        {"command": "contain", "incident_id": "inc-1", "by": "sam", "at": AT, "note": "draft-only on"},
        {"command": "resolve", "incident_id": "inc-1", "by": "sam", "at": "2026-01-01T01:03:00+01:00"},
        {"command": "silence", "route": "batch.*", "until": "2026-01-02T00:00:00Z", "by": "ops", "at": AT},
        {"command": "unsilence", "route": "batch.*", "by": "ops", "at": AT},
        # unknown fields are ignored, as on the telemetry topic
        {"command": "acknowledge", "incident_id": "inc-1", "by": "sam", "at": AT, "ticket": "OPS-1"},
        # limits are inclusive
        {"command": "acknowledge", "incident_id": "inc-1", "by": "b" * 128, "at": AT, "note": "n" * 500},
    ],
)
def test_good_commands_decode_and_round_trip(fields: dict[str, Any]) -> None:
    """Every well-formed command decodes, and encoding it gives the same command back."""
    got = decode_command(raw(**fields))
    assert isinstance(got, Command), got
    assert got.command == fields["command"] and got.by == fields["by"] and got.at == fields["at"]
    assert got.note == fields.get("note")
    assert decode_command(encode_command(got)) == got
    assert b"null" not in encode_command(got)  # unset fields are left out


OK = {"command": "acknowledge", "incident_id": "inc-1", "by": "sam", "at": AT}
SIL = {"command": "silence", "route": "batch.*", "until": "2026-01-02T00:00:00Z", "by": "ops", "at": AT}


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"{not json", "not_json", "$"),
        (b"\xff\xfe{}", "not_json", "$"),  # not UTF-8
        (b"", "not_json", "$"),
        (b"[1, 2]", "not_object", "$"),
        (b"null", "not_object", "$"),
        (b"{" + b'"x":' * 100_000, "too_large", "$"),
        (raw(**_without(OK, "command")), "missing_field", "$.command"),
        (raw(**_without(OK, "by")), "missing_field", "$.by"),
        (raw(**_without(OK, "at")), "missing_field", "$.at"),
        (raw(**_without(OK, "incident_id")), "missing_field", "$.incident_id"),  # acknowledge needs it
        (raw(**{**_without(OK, "incident_id"), "command": "resolve"}), "missing_field", "$.incident_id"),
        (raw(**_without(SIL, "route")), "missing_field", "$.route"),  # silence needs a glob
        (raw(**_without(SIL, "until")), "missing_field", "$.until"),  # ...and an end
        (raw(**{**_without(SIL, "route"), "command": "unsilence"}), "missing_field", "$.route"),
        (raw(**{**OK, "command": "pause"}), "invalid_field", "$.command"),  # not a command
        (raw(**{**OK, "by": ""}), "invalid_field", "$.by"),  # who is required
        (raw(**{**OK, "by": "b" * 129}), "invalid_field", "$.by"),
        (raw(**{**OK, "by": 7}), "invalid_field", "$.by"),
        (raw(**{**OK, "note": "n" * 501}), "invalid_field", "$.note"),  # at most 500 characters
        (raw(**{**OK, "incident_id": 42}), "invalid_field", "$.incident_id"),
        (raw(**{**SIL, "until": AT}), "invalid_field", "$.until"),  # an empty silence
        (raw(**{**SIL, "until": "2025-12-31T00:00:00Z"}), "invalid_field", "$.until"),  # ends before it starts
        (raw(**{**OK, "at": "yesterday"}), "bad_timestamp", "$.at"),
        (raw(**{**OK, "at": "2026-01-01T00:03:00"}), "bad_timestamp", "$.at"),  # no offset
        (raw(**{**OK, "at": "1970-01-01T00:00:00Z"}), "bad_timestamp", "$.at"),  # outside 2000-2200
        (raw(**{**OK, "at": 1767225780000}), "bad_timestamp", "$.at"),  # commands are RFC 3339 only
        (raw(**{**SIL, "until": "soon"}), "bad_timestamp", "$.until"),
    ],
)
def test_bad_commands_are_rejected_with_reason_and_path(data: bytes, reason: str, detail: str) -> None:
    """A malformed command is a Rejection (never an exception) naming the field by its path."""
    got = decode_command(data)
    assert isinstance(got, Rejection), got
    assert got.reason == reason
    assert got.detail.split(":")[0] == detail


@pytest.mark.parametrize(
    "fields",
    [
        {**OK, "note": CANARY * 40},  # too long
        {**OK, "note": [CANARY]},  # wrong type
        {**OK, "by": CANARY * 10},
        {**OK, "command": CANARY},
        {**OK, "at": CANARY},
        {**OK, "incident_id": {"x": CANARY}},
        {**SIL, "until": CANARY, "note": CANARY},
        {**_without(SIL, "route"), "note": CANARY},
    ],
)
def test_a_rejection_never_holds_the_value(fields: dict[str, Any]) -> None:
    """The detail names the field only: a canary value is never in it (it goes to a dead-letter header)."""
    got = decode_command(raw(**fields))
    assert isinstance(got, Rejection)
    assert CANARY not in got.detail and CANARY not in got.reason


# -- the CLI builder -----------------------------------------------------------------------------------


def noon() -> datetime:
    return datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_build_command_stamps_and_validates() -> None:
    """`at` defaults to now (whole seconds, UTC); a duration `until` becomes a time; the result decodes."""
    c = build_command("acknowledge", incident_id="inc-1", by="sam", note="on it", now=noon)
    assert (c.command, c.incident_id, c.by, c.note, c.at) == ("acknowledge", "inc-1", "sam", "on it",
                                                              "2026-12-01T12:00:00Z")
    s = build_command("silence", route="batch.*", until="90m", by="ops", now=noon)
    assert s.until == "2026-12-01T13:30:00Z"
    s = build_command("silence", route="batch.*", until="2026-12-03T00:00:00+01:00", by="ops", now=noon)
    assert s.until == "2026-12-03T00:00:00+01:00"  # a time is kept as given
    for c in (build_command(name, incident_id="i", route="r*", until="1d", by="x", now=noon) for name in COMMANDS):
        assert decode_command(encode_command(c)) == c
    assert build_command("resolve", incident_id="i", by="x", at="2026-12-01T00:00:00Z").at == "2026-12-01T00:00:00Z"


@pytest.mark.parametrize(
    ("kw", "starts"),
    [
        ({"command": "acknowledge", "incident_id": "i", "by": ""}, "--by:"),
        ({"command": "acknowledge", "incident_id": "i", "by": "x" * 129}, "--by:"),
        ({"command": "contain", "incident_id": "i", "by": "x", "note": CANARY * 30}, "--note:"),
        ({"command": "resolve", "by": "x"}, "the incident id:"),
        ({"command": "pause", "incident_id": "i", "by": "x"}, "the command:"),
        ({"command": "silence", "route": "r*", "by": "x"}, "--until:"),
        ({"command": "silence", "route": "r*", "until": "tomorrow", "by": "x"}, "--until:"),
        ({"command": "silence", "route": "r*", "until": "2026-12-01T18:00:00", "by": "x"}, "--until:"),
        ({"command": "silence", "route": "r*", "until": "2026-11-30T00:00:00Z", "by": "x"}, "--until:"),
        ({"command": "silence", "until": "1h", "by": "x"}, "the route glob:"),
    ],
)
def test_build_command_errors_are_one_line(kw: dict[str, Any], starts: str) -> None:
    """A bad CLI command is refused before it is sent, with one line naming the flag, never the note."""
    with pytest.raises(ValueError) as err:
        build_command(now=noon, **kw)
    msg = str(err.value)
    assert msg.startswith(starts) and "\n" not in msg and CANARY not in msg


# -- the engine ----------------------------------------------------------------------------------------


def test_acknowledge_contain_resolve_emit_messages_with_by_and_note() -> None:
    """Each command is one message with the next seq and the status it names, by and (masked) note;
    other messages carry null by and note; resolve is a resolve (resolved_at = its time, heightened)."""
    engine = IncidentEngine(cfg())
    out = feed(engine, firing_run(1, 2))
    assert [m["event"] for m in out] == ["opened"] and out[0]["incident_id"] == IID
    steps: list[Step] = [
        cmd("acknowledge", 3, by="alice", note="looking, ping alice@example.com"),
        cmd("contain", 4, by="bob", note="draft-only on the gateway"),
    ]
    got = feed(engine, steps)
    got += feed(engine, firing_run(5, 6, mag=8.0))  # escalates: not a command's message
    got += engine.on_command(cmd("resolve", 7, by="carol", note="rolled back, verified on 20 cases"))
    out += got
    check_stream(out)
    assert [(m["event"], m["status"], m["seq"]) for m in out] == [
        ("opened", "open", 1), ("acknowledged", "acknowledged", 2), ("contained", "contained", 3),
        ("escalated", "contained", 4), ("resolved", "resolved", 5)]
    assert [(m["by"], m["note"]) for m in out] == [
        (None, None), ("alice", "looking, ping [redacted:email]"), ("bob", "draft-only on the gateway"),
        (None, None), ("carol", "rolled back, verified on 20 cases")]
    assert all(m["group"] is None for m in out)
    res = out[-1]
    assert res["resolved_at"] == res["at"] == iso(ts(7))
    assert engine.open == {}
    key = "r\x1fperformance"
    assert engine.heightened[key] == ts(7) + engine.heightened_ms  # watched harder, like any resolve
    # a recurrence during heightened monitoring is one severity level higher
    again = feed(engine, firing_run(9, 10))
    plain = feed(IncidentEngine(cfg()), firing_run(9, 10))
    assert again[0]["event"] == "opened" and again[0]["incident_id"] != IID
    assert again[0]["severity"] == bump(plain[0]["severity"]) != plain[0]["severity"]
    assert again[0]["by"] is None and again[0]["note"] is None


def test_command_messages_never_go_back_in_time_or_status() -> None:
    """An operator clock behind event time stamps the message at the last one; repeats change nothing."""
    engine = IncidentEngine(cfg())
    out = feed(engine, firing_run(1, 4))
    (ack,) = engine.on_command(cmd("acknowledge", 1))  # before the opened message (window 2's end)
    assert ack["at"] == out[-1]["at"]
    assert engine.on_command(cmd("acknowledge", 5)) == []  # already acknowledged
    (con,) = engine.on_command(cmd("contain", 5))
    assert engine.on_command(cmd("acknowledge", 6)) == []  # never back from contained
    assert engine.on_command(cmd("contain", 6)) == []
    assert (con["seq"], con["status"]) == (3, "contained")


def test_unknown_incident_is_not_known_and_changes_nothing() -> None:
    """A command for an incident never seen emits nothing; knows() says so, so the service dead-letters it."""
    engine = IncidentEngine(cfg())
    feed(engine, firing_run(1, 2))
    before = engine.snapshot()
    for name in ("acknowledge", "contain", "resolve"):
        assert engine.on_command(cmd(name, 3, incident_id="inc-0000000000000000")) == []
    assert not engine.knows("inc-0000000000000000") and engine.route_of("inc-0000000000000000") is None
    assert engine.knows(IID) and engine.route_of(IID) == "r"
    assert engine.snapshot() == before


def test_resolved_incidents_are_remembered_boundedly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A recently resolved incident is still known (a late command is not dead-lettered), but only the
    last RESOLVED_MEMORY of them; a command on one emits nothing."""
    monkeypatch.setattr(engine_mod, "RESOLVED_MEMORY", 2)
    engine = IncidentEngine(cfg())
    ids = []
    for k, route in enumerate(("a", "b", "c")):
        out = feed(engine, firing_run(30 * k + 1, 30 * k + 2, route=route) + healthy_run(30 * k + 3, 30 * k + 20,
                                                                                      route=route))
        assert [m["event"] for m in out] == ["opened", "resolved"]
        ids.append(out[0]["incident_id"])
    assert [engine.knows(i) for i in ids] == [False, True, True]
    assert [engine.route_of(i) for i in ids] == [None, "b", "c"]
    assert engine.on_command(cmd("acknowledge", 100, incident_id=ids[2])) == []
    fresh = IncidentEngine(cfg())
    fresh.restore(engine.snapshot())
    assert [fresh.knows(i) for i in ids] == [False, True, True]


def test_silence_then_unsilence() -> None:
    """A runtime silence hides an incident's messages but not the incident; unsilence sends its `opened`
    at the next window, with what was learned meanwhile. Other routes are not affected."""
    engine = IncidentEngine(cfg())
    silence = cmd("silence", 0, route="r*", until=iso(ts(60)), by="ops", note=CANARY)
    assert engine.on_command(silence) == []
    assert engine.runtime_silences == [["r*", ts(0), ts(60)]]
    out = feed(engine, firing_run(1, 4) + firing_run(1, 2, route="other"))
    assert [(m["event"], m["route"]) for m in out] == [("opened", "other")]
    (o,) = [o for o in engine.open.values() if o.route == "r"]
    assert o.status == "open" and not o.notified  # tracked, not sent
    assert engine.knows(IID)
    assert engine.on_command(cmd("acknowledge", 5)) == []  # nobody was told of it: nothing to acknowledge
    assert engine.on_command(cmd("unsilence", 5, route="r*", by="ops")) == []
    assert engine.runtime_silences == []
    late = feed(engine, firing_run(6, 6))
    assert [(m["event"], m["seq"], m["status"]) for m in late] == [("opened", 1, "open")]
    assert late[0]["started_at"] == iso(ts(0)) and late[0]["by"] is None
    check_stream(out + late)


def test_silence_of_the_same_glob_replaces_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Silencing a glob again replaces its silence (extend or shorten); unsilence of another glob, or of one
    not silenced, changes nothing; at most MAX_RUNTIME_SILENCES are kept (the oldest go)."""
    engine = IncidentEngine(cfg())
    engine.on_command(cmd("silence", 0, route="a*", until=iso(ts(10))))
    engine.on_command(cmd("silence", 1, route="b", until=iso(ts(10))))
    engine.on_command(cmd("silence", 2, route="a*", until=iso(ts(90))))
    assert engine.runtime_silences == [["b", ts(1), ts(10)], ["a*", ts(2), ts(90)]]
    engine.on_command(cmd("unsilence", 3, route="c"))
    assert len(engine.runtime_silences) == 2
    assert engine._silenced("a1", ts(50)) and not engine._silenced("a1", ts(90)) and not engine._silenced("x", ts(5))
    monkeypatch.setattr(engine_mod, "MAX_RUNTIME_SILENCES", 3)
    for k in range(5):
        engine.on_command(cmd("silence", 4 + k, route=f"g{k}", until=iso(ts(100))))
    assert [s[0] for s in engine.runtime_silences] == ["g2", "g3", "g4"]


def test_snapshot_keeps_runtime_silences() -> None:
    """Runtime silences live in the snapshot (the engine's global state): a restored engine still
    suppresses, and an unsilence after the restore still lifts it."""
    engine = IncidentEngine(cfg())
    engine.on_command(cmd("silence", 0, route="r", until=iso(ts(60))))
    feed(engine, firing_run(1, 3))
    snap = json.loads(json.dumps(engine.snapshot()))  # plain JSON, as checkpointed
    assert snap["globals"]["runtime_silences"] == [["r", ts(0), ts(60)]]
    assert engine.global_state()["runtime_silences"] == engine.runtime_silences
    fresh = IncidentEngine(cfg())
    fresh.restore(snap)
    assert fresh.runtime_silences == engine.runtime_silences
    assert feed(fresh, firing_run(4, 5)) == []  # still silenced
    fresh.on_command(cmd("unsilence", 6, route="r"))
    assert [m["event"] for m in feed(fresh, firing_run(6, 6))] == ["opened"]
    fresh.runtime_silences.append(["x", 0, 1])
    assert len(engine.runtime_silences) == 1  # nothing shared


def test_commands_on_a_restored_engine_continue_seq() -> None:
    """After a restore the next command message takes the next seq."""
    engine = IncidentEngine(cfg())
    feed(engine, firing_run(1, 2))
    engine.on_command(cmd("acknowledge", 3))
    fresh = IncidentEngine(cfg())
    fresh.restore(engine.snapshot())
    (m,) = fresh.on_command(cmd("contain", 4, by="kim"))
    assert (m["seq"], m["status"], m["by"]) == (3, "contained", "kim")


def test_note_never_reaches_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A note goes into the incident message only: decoding and applying it logs nothing that holds it."""
    caplog.set_level(logging.DEBUG)
    engine = IncidentEngine(cfg())
    feed(engine, firing_run(1, 2))
    for data in (raw(command="acknowledge", incident_id=IID, by="sam", at=iso(ts(3)), note=CANARY),
                 raw(command="contain", incident_id=IID, by="sam", at=iso(ts(3)), note=CANARY * 50),
                 raw(command="silence", route="r", by="sam", at=iso(ts(3)), until="bad", note=CANARY)):
        got = decode_command(data)
        if isinstance(got, Command):
            out = engine.on_command(got)
            assert [m["note"] for m in out] == [CANARY]
            msgspec.json.encode(out)
    assert CANARY not in caplog.text
