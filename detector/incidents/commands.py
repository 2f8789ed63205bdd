"""Operator commands on incidents. The service reads them from the control topic.

>>> import msgspec
>>> cmd = msgspec.json.decode(
...     b'{"command":"acknowledge","incident_id":"inc-1","at":"2026-11-27T10:00:00Z","actor":"sam"}',
...     type=Command)
>>> cmd.command
'acknowledge'
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = ["Command"]


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """``acknowledge`` or ``contain`` an open incident at event time ``at``.

    ``actor`` is recorded by the control topic's own audit trail, never copied into incidents.
    ``action`` names the containment applied (one of SPEC's actions), for ``contain``.
    """

    command: Literal["acknowledge", "contain"]
    incident_id: Annotated[str, Meta(min_length=1, max_length=64)]
    at: str
    actor: str | None = None
    action: str | None = None
