"""Bytes in, a telemetry event or a rejection out. Never raises to its caller.

>>> d = Decoder()
>>> ok = d.decode(b'{"event_id":"a","type":"usage","ts":"2026-01-01T00:00:00Z","route":"r"}')
>>> ok.ts_ms, ok.event.route
(1767225600000, 'r')
>>> d.decode(b'{"event_id":"a","type":"usage"').reason
'not_json'
>>> rej = d.decode(b'{"event_id":"a","type":"latency","ts":1,"route":"r","latency_ms":3}')
>>> rej.reason, rej.detail
('bad_timestamp', '$.ts: outside 2000-01-01..2200-01-01')
>>> d.decode(b'{"event_id":"a","type":"latency","ts":1767225600000,"route":"r","latency_ms":-3}').detail
'$.latency_ms: Expected `float` >= 0.0'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, final, get_args

import msgspec

from detector.events import ERROR_CLASSES, ErrorEvent, TelemetryEvent

__all__ = ["Decoder", "Decoded", "Rejection", "RejectReason", "REJECT_REASONS", "parse_ts", "event_time_ms"]

RejectReason = Literal[
    "too_large",
    "not_json",
    "not_object",
    "missing_field",
    "invalid_field",
    "bad_timestamp",
    "future_timestamp",
    "late",
    "unknown_incident",  # an operator command naming no incident held by the service
    "not_otlp",  # a message of an OTLP topic (or file) that is not an OTLP TracesData message
]
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)

MIN_TS_MS = 946_684_800_000  # 2000-01-01
MAX_TS_MS = 7_258_118_400_000  # 2200-01-01

_ERROR_CLASSES = frozenset(ERROR_CLASSES)
_LEAP = re.compile(rb'("ts"\s*:\s*"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d):60(\.\d+)?([^"]*")')


def _colonless_offset(raw: bytes) -> bool:
    """Whether the ``ts`` string ends in an offset like ``+0530`` (msgspec reads it; RFC 3339 does not allow
    it). Byte searches in C, no regex: this runs for every event with a text timestamp.

    >>> _colonless_offset(b'{"ts":"2026-01-01T00:00:00+0530"}'), _colonless_offset(b'{"ts": "2026-01-01T00:00:00Z"}')
    (True, False)
    """
    i = raw.find(b'"ts"')
    if i < 0:
        return False
    q, n = i + 4, len(raw)
    while q < n and raw[q] != 34:  # to the opening quote, past the colon (a step or two: no search call)
        q += 1
    e = raw.find(b'"', q + 1) if q < n else -1
    return e - q > 5 and raw[e - 5] in (43, 45) and raw[e - 4:e].isdigit()
_PATH = re.compile(r" - at `([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]*)`")


@final
class Decoded:
    """A valid telemetry event with its event time in epoch milliseconds. A plain class: compiled, it is made
    by a direct call (a NamedTuple is made through a Python-level ``__new__``, a fifth of decoding's own time).

    >>> Decoded(None, 5)  # type: ignore[arg-type]
    Decoded(event=None, ts_ms=5)
    """

    __slots__ = ("event", "ts_ms")

    def __init__(self, event: TelemetryEvent, ts_ms: int) -> None:
        self.event = event
        self.ts_ms = ts_ms

    def __repr__(self) -> str:
        return f"Decoded(event={self.event!r}, ts_ms={self.ts_ms})"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was not processed. ``detail`` holds a field path, never a value."""

    reason: RejectReason
    detail: str


def parse_ts(value: str | float | datetime) -> int | None:
    """Epoch milliseconds from RFC 3339 text, a datetime, or epoch milliseconds; None if unusable.

    >>> parse_ts("2026-01-01T00:00:00.250+01:00")
    1767222000250
    >>> parse_ts("2026-01-01T00:00:00") is None  # RFC 3339 needs an offset
    True
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return None
        return int(value.timestamp() * 1000)
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value)


def event_time_ms(value: object) -> int | None:
    """Epoch milliseconds of an RFC 3339 time from an incident event; None for anything else (missing, not
    text, no offset, not a date): for the tools that read incident events back. Never raises.

    >>> event_time_ms("2026-01-01T00:00:00Z"), event_time_ms(None), event_time_ms("2026-01-01T00:00:00")
    (1767225600000, None, None)
    """
    if not isinstance(value, str):
        return None
    try:
        return parse_ts(value)
    except (OverflowError, ValueError):
        return None


class Decoder:
    """Validates messages against SPEC section 1. Stateless; safe to share."""

    def __init__(self, max_bytes: int = 65536):
        self.max_bytes = max_bytes
        self._decoder = msgspec.json.Decoder(TelemetryEvent)
        #: Its bound method, kept: compiled, calling it skips a method lookup per message.
        self._decode_json: Callable[[bytes], TelemetryEvent] = self._decoder.decode

    def decode(self, raw: bytes) -> Decoded | Rejection:
        """Decode one message. Every failure becomes a :class:`Rejection`."""
        if len(raw) > self.max_bytes:
            return Rejection("too_large", f"{len(raw)} bytes > {self.max_bytes}")
        if not raw.isascii():  # msgspec does not check the UTF-8 of fields it skips
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return Rejection("not_json", "not valid UTF-8")
        try:
            event = self._decode_json(raw)
        except msgspec.ValidationError as err:
            rej = _classify(str(err))
            if rej.reason == "bad_timestamp" and b":60" in raw:
                leap = _LEAP.sub(rb"\1:59.999\3", raw, count=1)  # a leap second: the last instant before it
                if leap != raw:
                    return self.decode(leap)
            return rej
        except RecursionError:
            return Rejection("not_json", "nested too deeply")
        except (msgspec.DecodeError, UnicodeDecodeError):
            return Rejection("not_json", "not valid JSON")
        if event.ts.__class__ is datetime and _colonless_offset(raw):
            return Rejection("bad_timestamp", "$.ts: the UTC offset needs a colon (RFC 3339: +05:30)")
        ts_ms = parse_ts(event.ts)
        if ts_ms is None:
            return Rejection("bad_timestamp", "$.ts: not RFC 3339 with offset, nor epoch milliseconds")
        if not MIN_TS_MS <= ts_ms < MAX_TS_MS:
            return Rejection("bad_timestamp", "$.ts: outside 2000-01-01..2200-01-01")
        if type(event) is ErrorEvent and event.error_class not in _ERROR_CLASSES:
            event = msgspec.structs.replace(event, error_class="other")
        return Decoded(event, ts_ms)


def _without_values(text: str) -> str:
    r"""The message up to the first quoted value (msgspec quotes values with ' or "), never a value.

    >>> _without_values("Invalid enum value \"it's a secret\"")
    'Invalid enum value …'
    >>> _without_values("Expected `int`, got `float`")
    'Expected `int`, got `float`'
    """
    cut = min((i for i in (text.find("'"), text.find('"')) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut].rstrip() + " …"


def _classify(message: str) -> Rejection:
    missing = _MISSING.search(message)
    if missing:
        return Rejection("missing_field", f"$.{missing.group(1)}: required")
    m = _PATH.search(message)
    path = m.group(1) if m else "$"
    text = _without_values(message[: m.start()] if m else message)
    if path == "$":
        if text.startswith("Expected `object`"):
            return Rejection("not_object", text)
        return Rejection("invalid_field", f"$: {text}")
    if path == "$.ts":
        return Rejection("bad_timestamp", f"$.ts: {text}")
    return Rejection("invalid_field", f"{path}: {text}")
