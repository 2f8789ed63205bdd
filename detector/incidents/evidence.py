"""Evidence for an incident: bounded, redacted identifiers and counts, never free text.

:func:`build_evidence` reads only allow-listed fields of the anomalous
windows (sample ids, version counters, error classes, change records) and
passes every identifier through :func:`~detector.incidents.redact.redact_id`.
The result is a plain dict that matches :class:`detector.events.Evidence`.

>>> from detector.events import ErrorEvent, UsageEvent
>>> from detector.windows.aggregate import WindowAggregate
>>> w = WindowAggregate("r", 0, 60_000)
>>> w.add(UsageEvent(event_id="1", ts=0.0, route="r", model="m2", request_id="q1"))
>>> w.add(ErrorEvent(event_id="2", ts=0.0, route="r", model="m2", request_id="bob@example.com",
...                  error_class="timeout"))
>>> ev = build_evidence([w], {"model": ["m1"]}, [])
>>> ev["request_ids"], ev["models"], ev["error_classes"], ev["versions_before"]
(['[redacted:email]', 'q1'], {'m2': 2}, {'timeout': 1}, {'model': ['m1']})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from detector.detectors.firing import iso
from detector.events import CHANGE_KINDS, ERROR_CLASSES
from detector.incidents.redact import redact_id
from detector.windows.aggregate import OTHER, V_EVENTS, WindowAggregate

__all__ = ["build_evidence", "ID_CAP", "VERSION_KEYS"]

#: Most request ids (and trace ids) in one incident's evidence.
ID_CAP = 20
#: Most versions listed per kind (the rest are summed under ``(other)``).
VERSIONS_CAP = 20
#: Most changes listed.
CHANGES_CAP = 20
#: Version kind -> the evidence field holding its counts.
VERSION_KEYS = {
    "model": "models",
    "prompt": "prompt_versions",
    "config": "config_versions",
    "source_index": "source_indexes",
    "tool": "tools",
}


def build_evidence(
    anomalous: Sequence[WindowAggregate],
    before: Sequence[WindowAggregate] | Mapping[str, Iterable[str]],
    changes: Iterable[Mapping[str, Any]],
    *,
    start_ms: int | None = None,
    lookback_ms: int | None = None,
) -> dict[str, Any]:
    """The ``evidence`` object of an incident.

    ``anomalous`` are the incident's windows; ``before`` either windows
    from before the incident or an already built ``versions_before`` dict
    (kind -> versions); ``changes`` are change records (``at`` or ``ts`` in
    epoch ms, ``kind``, ``from_version``, ``to_version``, ``event_id``, as
    :meth:`ChangeTracker.recent_changes` gives them). Explicit changes held
    in the anomalous windows are added. With ``start_ms`` and
    ``lookback_ms``, only changes from ``start - lookback`` to the end of
    the anomalous windows are kept. A change inferred from version fields
    has no event: its ``event_id`` is ``""``.

    >>> build_evidence([], {}, [{"at": 0, "kind": "prompt", "from_version": "a",
    ...                          "to_version": "b", "event_id": None, "actor": "x"}])["changes"]
    [{'at': '1970-01-01T00:00:00Z', 'kind': 'prompt', 'from_version': 'a', 'to_version': 'b', 'event_id': ''}]
    """
    windows = sorted(anomalous, key=lambda w: w.start)
    flagged_req = [i for w in windows for i in w.flagged_request_ids]
    sample_req = [i for w in windows for i in w.request_ids]
    flagged_tr = [i for w in windows for i in w.flagged_trace_ids]
    sample_tr = [i for w in windows for i in w.trace_ids]
    out: dict[str, Any] = {
        "request_ids": _ids(flagged_req + sample_req),
        "trace_ids": _ids(flagged_tr + sample_tr),
    }
    totals = _version_events(windows)
    for kind, key in VERSION_KEYS.items():
        out[key] = _bounded_counts(totals.get(kind, {}))
    errors: dict[str, int] = {}
    for w in windows:
        for cls, n in w.errors.items():
            name = cls if cls in ERROR_CLASSES else "other"
            errors[name] = errors.get(name, 0) + int(n)
    out["error_classes"] = dict(sorted(errors.items()))
    out["changes"] = _changes(windows, changes, start_ms, lookback_ms)
    out["versions_before"] = _versions_before(before)
    return out


def _ids(values: Iterable[str]) -> list[str]:
    """Redacted, de-duplicated, at most :data:`ID_CAP`, first come first kept."""
    out: list[str] = []
    seen: set[str] = set()
    for v in values:
        r = redact_id(v)
        if r and r not in seen:
            seen.add(r)
            out.append(r)
            if len(out) >= ID_CAP:
                break
    return out


def _version_events(windows: Iterable[WindowAggregate]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for w in windows:
        for kind, per in w.versions.items():
            dst = totals.setdefault(kind, {})
            for v, st in per.items():
                dst[v] = dst.get(v, 0) + int(st[V_EVENTS])
    return totals


def _bounded_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Redacted keys, top :data:`VERSIONS_CAP` by count; the rest summed under ``(other)``."""
    merged: dict[str, int] = {}
    for v, n in counts.items():
        key = OTHER if v == OTHER else redact_id(v)
        merged[key] = merged.get(key, 0) + n
    other = merged.pop(OTHER, 0)
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) + (1 if other else 0) > VERSIONS_CAP:
        other += sum(n for _, n in ranked[VERSIONS_CAP - 1:])
        ranked = ranked[: VERSIONS_CAP - 1]
    out = dict(ranked)
    if other:
        out[OTHER] = other
    return out


def _changes(windows: Sequence[WindowAggregate], changes: Iterable[Mapping[str, Any]],
             start_ms: int | None, lookback_ms: int | None) -> list[dict[str, Any]]:
    records: list[Mapping[str, Any]] = list(changes)
    records += [c for w in windows for c in w.changes]
    lo = start_ms - lookback_ms if start_ms is not None and lookback_ms is not None else None
    hi = max((w.end for w in windows), default=None)
    picked: dict[tuple[Any, ...], dict[str, Any]] = {}
    for c in records:
        kind = c.get("kind")
        at = c.get("at", c.get("ts"))
        if kind not in CHANGE_KINDS or not isinstance(at, int | float):
            continue
        at = int(at)
        if lo is not None and (at < lo or (hi is not None and at >= hi)):
            continue
        eid = c.get("event_id")
        key = ("id", eid) if eid is not None else ("v", kind, c.get("to_version"), at)
        if key in picked:
            continue
        picked[key] = {
            "at": at,
            "kind": kind,
            "from_version": _opt(c.get("from_version")),
            "to_version": _opt(c.get("to_version")),
            "event_id": redact_id(eid) if eid is not None else "",
        }
    ordered = sorted(picked.values(), key=lambda c: (c["at"], c["kind"], c["event_id"]))[-CHANGES_CAP:]
    for c in ordered:
        c["at"] = iso(c["at"])
    return ordered


def _opt(value: Any) -> str | None:
    return None if value is None else redact_id(value)


def _versions_before(before: Sequence[WindowAggregate] | Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Versions seen before the incident per kind, most used first, redacted and bounded."""
    if isinstance(before, Mapping):
        raw = {k: list(vs) for k, vs in before.items()}
    else:
        totals = _version_events(before)
        raw = {k: sorted(per, key=lambda v: (-per[v], v)) for k, per in totals.items()}
    out: dict[str, list[str]] = {}
    for kind in CHANGE_KINDS:
        versions = raw.get(kind)
        if not versions:
            continue
        vs: list[str] = []
        for v in versions:
            r = redact_id(v)
            if v != OTHER and r and r not in vs:
                vs.append(r)
            if len(vs) >= VERSIONS_CAP:
                break
        if vs:
            out[kind] = vs
    return out
