"""`detector config explain ROUTE`: every setting that applies to a route, its value, and where it comes from.

Pure: a validated :class:`~detector.config.Config` in, rows out. A setting comes from the built-in
default, from the config file (the section that sets it), from the ``[routes."glob"]`` block that wins
for the route (the first matching glob in file order; the others that match are named too, as losing),
or from a command-line flag laid over the file (``flags``: dotted path -> the flag's value, already
validated by the caller).

>>> from detector.config import Config
>>> cfg = Config.model_validate({"detectors": {"warmup_windows": 30},
...     "routes": {"support.*": {"owner": "support-ai", "tier": 1}, "*": {"owner": "platform"}}})
>>> ex = explain(cfg, "support.reply")
>>> ex.winner, ex.losing
('support.*', ['*'])
>>> {r.setting: (r.value, r.source) for r in ex.rows if r.setting in (
...     "detectors.warmup_windows", "detectors.persistence", "route.owner", "route.customer_facing")}
... # doctest: +NORMALIZE_WHITESPACE
{'detectors.warmup_windows': ('30', 'config file [detectors]'),
 'detectors.persistence': ('2', 'built-in default'),
 'route.owner': ("'support-ai'", 'config file [routes."support.*"]'),
 'route.customer_facing': ('False', 'built-in default (the route block does not set it)')}
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr

from detector.config import Config

__all__ = ["Explained", "Row", "explain", "render"]

#: The sections whose settings apply to every route's detection, then the service's own.
SECTIONS = ("windows", "detectors", "incidents", "kafka", "metrics", "delivery")


@dataclass(frozen=True)
class Row:
    setting: str
    value: str
    source: str


@dataclass
class Explained:
    route: str
    #: The glob whose block applies (None: no block matches, the built-in route settings apply).
    winner: str | None
    #: Other globs that match the route but come later in the file.
    losing: list[str]
    rows: list[Row] = field(default_factory=list)
    #: Silences (config) whose glob matches the route: (glob, start, end).
    silences: list[tuple[str, str, str]] = field(default_factory=list)
    #: Receivers whose globs match the route, and those that do not.
    receivers: list[str] = field(default_factory=list)
    not_receivers: list[str] = field(default_factory=list)


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, BaseModel):
        return repr({k: v for k, v in value.model_dump().items() if v is not None})
    return repr(value)


def _rows(model: BaseModel, prefix: str, source_set: str, source_default: str,
          flags: Mapping[str, Any]) -> list[Row]:
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        path = f"{prefix}.{name}"
        if path in flags:
            value = flags[path]
            src = "command-line flag"
        elif name in model.model_fields_set:
            src = source_set
        else:
            src = source_default
        if isinstance(value, BaseModel) and not isinstance(value, SecretStr):
            out += _rows(value, path, source_set if name in model.model_fields_set else source_default,
                         source_default, flags)
            continue
        out.append(Row(path, _show(value), src))
    return out


def explain(config: Config, route: str, flags: Mapping[str, Any] | None = None) -> Explained:
    """What applies to ``route`` under ``config``."""
    flags = flags or {}
    matching = [g for g in config.routes if fnmatch.fnmatchcase(route, g)]
    winner = matching[0] if matching else None
    ex = Explained(route, winner, matching[1:])
    for section in SECTIONS:
        model = getattr(config, section)
        ex.rows += _rows(model, section, f"config file [{section}]", "built-in default", flags)
    rc = config.route(route)
    if winner is None:
        ex.rows += _rows(rc, "route", "", "built-in default (no [routes] glob matches)", flags)
    else:
        ex.rows += _rows(rc, "route", f'config file [routes."{winner}"]',
                         "built-in default (the route block does not set it)", flags)
    ex.silences = [(s.route, s.start.isoformat(), s.end.isoformat()) for s in config.silences
                   if fnmatch.fnmatchcase(route, s.route)]
    for r in config.receivers:
        (ex.receivers if r.matches(route) else ex.not_receivers).append(f"{r.name} ({r.kind}, {', '.join(r.routes)})")
    return ex


def render(ex: Explained) -> str:
    """The explanation as text for a terminal."""
    lines = [f"route {ex.route}"]
    if ex.winner is None:
        lines.append("  no [routes] glob matches it: the built-in route settings apply")
    else:
        lines.append(f'  its settings come from [routes."{ex.winner}"], the first matching glob in file order')
        if ex.losing:
            lines.append("  also matching, later in the file (not applied): "
                         + ", ".join(f'[routes."{g}"]' for g in ex.losing))
    width = max(len(r.setting) for r in ex.rows)
    vwidth = min(40, max(len(r.value) for r in ex.rows))
    lines.append("")
    lines.append(f"  {'setting':{width}}  {'value':{vwidth}}  from")
    for r in ex.rows:
        lines.append(f"  {r.setting:{width}}  {r.value:{vwidth}}  {r.source}")
    lines.append("")
    if ex.silences:
        lines += [f"  silenced (notifications, not tracking) by [[silences]] {g}: {a} to {b}"
                  for g, a, b in ex.silences]
    else:
        lines.append("  no [[silences]] in the config matches it")
    to = ", ".join(ex.receivers) if ex.receivers else "no receiver (incidents topic only)"
    lines.append("  delivered to: " + to)
    if ex.not_receivers:
        lines.append("  not delivered to: " + ", ".join(ex.not_receivers))
    return "\n".join(lines)
