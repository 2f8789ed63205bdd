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

A rejection names the field, never its value, like the telemetry decoder's:
``not_json``, ``not_object``, ``too_large``, ``missing_field``,
``invalid_field`` (wrong type, unknown command, ``by`` empty or over 128
characters, ``note`` over 500, ``until`` not after ``at``) and
``bad_timestamp`` (``at`` or ``until`` not RFC 3339 with an offset, or
outside 2000-2200). Unknown fields are ignored; fields a command does not
use (``route`` on ``acknowledge``, ``until`` on ``unsilence``) are kept but
have no effect.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from detector.ingest.decode import MAX_TS_MS, MIN_TS_MS, Rejection, parse_ts

__all__ = ["Command", "decode_command", "encode_command", "build_command", "COMMANDS"]

CommandName = Literal["acknowledge", "contain", "resolve", "silence", "unsilence"]
COMMANDS: tuple[str, ...] = ("acknowledge", "contain", "resolve", "silence", "unsilence")
_ON_INCIDENT = frozenset({"acknowledge", "contain", "resolve"})
_TIME_FIELDS = ("$.at", "$.until")
#: A relative ``--until`` for :func:`build_command`: 90s, 30m, 2h, 1d, 1w.
_DURATION = re.compile(r"\+?(\d{1,5})([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
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
    if message.startswith("Expected `object`") and path == "$":
        return Rejection("not_object", "$: expected a JSON object")
    if path in _TIME_FIELDS:
        return Rejection("bad_timestamp", f"{path}: not an RFC 3339 time with an offset")
    return Rejection("invalid_field", f"{path}: invalid value")


def _time(value: str, path: str) -> int | Rejection:
    """Epoch ms of an RFC 3339 field, or its rejection (unparseable, no offset, outside 2000-2200)."""
    ms = parse_ts(value)
    if ms is None:
        return Rejection("bad_timestamp", f"{path}: not an RFC 3339 time with an offset")
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        return Rejection("bad_timestamp", f"{path}: outside 2000-01-01..2200-01-01")
    return ms


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
    at = _time(cmd.at, "$.at")
    if isinstance(at, Rejection):
        return at
    if cmd.command in _ON_INCIDENT and cmd.incident_id is None:
        return Rejection("missing_field", "$.incident_id")
    if cmd.command in ("silence", "unsilence") and cmd.route is None:
        return Rejection("missing_field", "$.route")
    if cmd.command == "silence":
        if cmd.until is None:
            return Rejection("missing_field", "$.until")
        until = _time(cmd.until, "$.until")
        if isinstance(until, Rejection):
            return until
        if until <= at:
            return Rejection("invalid_field", "$.until: must be after $.at")
    return cmd


def encode_command(cmd: Command) -> bytes:
    """The control-topic message for a command (fields left unset are left out)."""
    return _encoder.encode({k: v for k, v in msgspec.structs.asdict(cmd).items() if v is not None})


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: What to tell the CLI's user about each field a rejection names.
_FLAG_HELP = {
    "command": ("the command", "one of " + ", ".join(COMMANDS)),
    "incident_id": ("the incident id", "required, 1 to 64 characters"),
    "route": ("the route glob", "required, 1 to 256 characters"),
    "until": ("--until", "an RFC 3339 time with an offset or a duration (2h, 30m, 1d)"),
    "at": ("the command time", "an RFC 3339 time with an offset"),
}


def build_command(command: str, *, by: str, incident_id: str | None = None, route: str | None = None,
                  until: str | None = None, note: str | None = None, at: str | None = None,
                  now: Callable[[], datetime] = _now) -> Command:
    """A validated command for the CLI; raises ValueError with a one-line message.

    ``at`` defaults to ``now()``. ``until`` is an RFC 3339 time or, for the CLI's
    convenience, a duration from ``at`` (``90s``, ``30m``, ``2h``, ``1d``, ``1w``); the
    command written always holds an RFC 3339 time. The checks are :func:`decode_command`'s,
    so what the CLI accepts the service accepts.

    >>> at_noon = lambda: datetime(2026, 12, 1, 12, tzinfo=UTC)
    >>> build_command("silence", route="batch.*", until="2026-12-02T00:00:00Z", by="ops", now=at_noon).at
    '2026-12-01T12:00:00Z'
    >>> build_command("silence", route="batch.*", until="2h", by="ops", now=at_noon).until
    '2026-12-01T14:00:00Z'
    >>> build_command("resolve", incident_id="inc-1", by="", now=at_noon)
    Traceback (most recent call last):
    ...
    ValueError: --by: who gives the command is required (1 to 128 characters)
    >>> build_command("silence", route="batch.*", until="tomorrow", by="ops", now=at_noon)
    Traceback (most recent call last):
    ...
    ValueError: --until: bad timestamp: an RFC 3339 time with an offset or a duration (2h, 30m, 1d)
    """
    if not by or len(by) > 128:
        raise ValueError("--by: who gives the command is required (1 to 128 characters)")
    if note is not None and len(note) > 500:
        raise ValueError(f"--note: at most 500 characters (this one has {len(note)})")
    stamp = at if at is not None else _stamp(now())
    if until is not None:
        rel = _DURATION.fullmatch(until.strip())
        start = parse_ts(stamp)
        if rel is not None and start is not None:
            secs = int(rel.group(1)) * _UNIT_S[rel.group(2)]
            until = _stamp(datetime.fromtimestamp(start / 1000, UTC) + timedelta(seconds=secs))
    fields = {"command": command, "at": stamp, "by": by, "incident_id": incident_id, "route": route,
              "until": until, "note": note}
    got = decode_command(_encoder.encode({k: v for k, v in fields.items() if v is not None}))
    if isinstance(got, Rejection):
        field = got.detail.split(":")[0].removeprefix("$.")
        flag, want = _FLAG_HELP.get(field, (field, got.detail.split(": ", 1)[-1]))
        if "outside" in got.detail:
            want = got.detail.split(": ", 1)[1]
        if got.detail.endswith("must be after $.at"):
            raise ValueError(f"{flag}: must be later than the command's time ({stamp})")
        raise ValueError(f"{flag}: {got.reason.replace('_', ' ')}: {want}")
    return got
