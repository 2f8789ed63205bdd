"""Operator commands (SPEC 2b). The service reads them from the control topic.

``acknowledge``, ``contain`` and ``resolve`` name an incident; ``silence``
and ``unsilence`` name a route glob (``silence`` also an ``until`` time).
Every command says who gave it (``by``) and when (``at``), and may carry a
note of at most 500 characters that goes into the incident's message (after
masking emails, keys, tokens and phone numbers), never into a log line.

>>> cmd = decode_command(
...     b'{"command":"acknowledge","incident_id":"inc-1","at":"2026-11-27T10:00:00Z","by":"sam"}')
>>> cmd.command, cmd.by
('acknowledge', 'sam')
>>> rej = decode_command(b'{"command":"silence","route":"a.*","at":"2026-11-27T10:00:00Z","by":"sam"}')
>>> rej.reason, rej.detail
('missing_field', '$.until')
>>> decode_command(b'{"command":"acknowledge","incident_id":"inc-1","at":"yesterday","by":"sam"}').reason
'bad_timestamp'
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from detector.ingest.decode import Rejection, parse_ts

__all__ = ["Command", "decode_command", "encode_command", "build_command", "COMMANDS"]

CommandName = Literal["acknowledge", "contain", "resolve", "silence", "unsilence"]
COMMANDS: tuple[str, ...] = ("acknowledge", "contain", "resolve", "silence", "unsilence")
_ON_INCIDENT = frozenset({"acknowledge", "contain", "resolve"})
MAX_COMMAND_BYTES = 8192


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """One operator command as the control topic holds it."""

    command: CommandName
    at: str
    by: Annotated[str, Meta(min_length=1, max_length=128)]
    incident_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    route: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    until: str | None = None
    note: Annotated[str, Meta(max_length=500)] | None = None


_decoder = msgspec.json.Decoder(Command)
_encoder = msgspec.json.Encoder()


def _rejection(message: str) -> Rejection:
    """A msgspec validation message as a rejection naming the field, never its value."""
    path = "$"
    if " - at `" in message:
        path = message.rsplit(" - at `", 1)[1].rstrip("`")
    if message.startswith("Object missing required field `"):
        field = message.split("`")[1]
        return Rejection("missing_field", f"{path}.{field}" if path != "$" else f"$.{field}")
    if message.startswith("Expected `object`"):
        return Rejection("not_object", "$: expected a JSON object")
    return Rejection("invalid_field", f"{path}: invalid value")


def decode_command(raw: bytes) -> Command | Rejection:
    """Bytes from the control topic -> a valid command, or a rejection with the field's path."""
    if len(raw) > MAX_COMMAND_BYTES:
        return Rejection("too_large", f"$: over {MAX_COMMAND_BYTES} bytes")
    try:
        cmd = _decoder.decode(raw)
    except msgspec.ValidationError as err:
        return _rejection(str(err))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return Rejection("not_json", "$: not valid UTF-8 JSON")
    if parse_ts(cmd.at) is None:
        return Rejection("bad_timestamp", "$.at: not an RFC 3339 time with an offset")
    if cmd.command in _ON_INCIDENT and cmd.incident_id is None:
        return Rejection("missing_field", "$.incident_id")
    if cmd.command in ("silence", "unsilence") and cmd.route is None:
        return Rejection("missing_field", "$.route")
    if cmd.command == "silence":
        if cmd.until is None:
            return Rejection("missing_field", "$.until")
        until = parse_ts(cmd.until)
        if until is None:
            return Rejection("bad_timestamp", "$.until: not an RFC 3339 time with an offset")
        if until <= (parse_ts(cmd.at) or 0):
            return Rejection("invalid_field", "$.until: must be after $.at")
    return cmd


def encode_command(cmd: Command) -> bytes:
    """The control-topic message for a command (fields left unset are left out)."""
    return _encoder.encode({k: v for k, v in msgspec.structs.asdict(cmd).items() if v is not None})


def _now() -> datetime:
    return datetime.now(UTC)


def build_command(command: str, *, by: str, incident_id: str | None = None, route: str | None = None,
                  until: str | None = None, note: str | None = None, at: str | None = None,
                  now: Callable[[], datetime] = _now) -> Command:
    """A validated command for the CLI; raises ValueError with a one-line message.

    >>> build_command("silence", route="batch.*", until="2026-12-02T00:00:00Z", by="ops",
    ...               now=lambda: datetime(2026, 12, 1, tzinfo=UTC)).at
    '2026-12-01T00:00:00Z'
    >>> build_command("resolve", incident_id="inc-1", by="", now=lambda: datetime(2026, 12, 1, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    ValueError: --by: who gives the command is required (1 to 128 characters)
    """
    if not by or len(by) > 128:
        raise ValueError("--by: who gives the command is required (1 to 128 characters)")
    if note is not None and len(note) > 500:
        raise ValueError("--note: at most 500 characters")
    stamp = at or now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"command": command, "at": stamp, "by": by, "incident_id": incident_id, "route": route,
              "until": until, "note": note}
    got = decode_command(_encoder.encode({k: v for k, v in fields.items() if v is not None}))
    if isinstance(got, Rejection):
        field = got.detail.split(":")[0].removeprefix("$.")
        flag = {"until": "--until", "incident_id": "the incident id", "route": "the route glob"}.get(field, field)
        raise ValueError(f"{flag}: {got.reason.replace('_', ' ')}"
                         + (f" ({got.detail.split(': ', 1)[1]})" if ": " in got.detail else ""))
    return got
