"""Per-route, per-window aggregates: everything detectors and evidence need.

One :class:`WindowAggregate` accumulates the events of one route in one
tumbling window. All containers are bounded, so a window's size does not
grow with its traffic beyond fixed caps.

>>> from detector.events import UsageEvent, ErrorEvent
>>> w = WindowAggregate("r", 0, 60_000)
>>> w.add(UsageEvent(event_id="1", ts=1.0, route="r", tenant="t1", trace_id="x", input_tokens=10))
>>> w.add(UsageEvent(event_id="2", ts=2.0, route="r", tenant="t2", trace_id="x"))
>>> w.add(ErrorEvent(event_id="3", ts=3.0, route="r", error_class="timeout", tool="crm"))
>>> w.requests, w.errors, w.error_rate, w.distinct_tenants, w.max_key_share
(2, {'timeout': 1}, 0.5, 2, 1.0)
>>> WindowAggregate.from_dict(w.to_dict()) == w
True
"""

from __future__ import annotations

import math
from math import log as _log
from typing import Any, cast

from detector.events import (
    ChangeEvent,
    CostEvent,
    ErrorEvent,
    LatencyEvent,
    ReviewEvent,
    TelemetryEvent,
    UsageEvent,
)
from detector.windows.readonly import ReadOnlyDict, ReadOnlyList, ReadOnlySet
from detector.windows.sketch import QuantileSketch

__all__ = ["WindowAggregate", "VersionStats", "VERSION_KINDS", "V_EVENTS", "V_REQUESTS", "V_ERRORS",
           "V_REVIEWS", "V_BAD_REVIEWS", "V_LAT_N", "V_LAT_SUM", "V_COST", "V_LOG_SUM", "V_LOG_SQ", "N_STATS"]

#: Version kinds tracked from the context fields of every event.
VERSION_KINDS = (("prompt", "prompt_version"), ("model", "model"), ("config", "config_version"),
                 ("source_index", "source_index"), ("tool", "tool"))
#: The kind names alone, in the order of a context key's fields.
_KIND_NAMES: tuple[str, ...] = tuple(kind for kind, _ in VERSION_KINDS)
# Index of each counter in a version's stats list.
V_EVENTS, V_REQUESTS, V_ERRORS, V_REVIEWS, V_BAD_REVIEWS, V_LAT_N, V_LAT_SUM, V_COST, V_LOG_SUM, V_LOG_SQ = range(10)
N_STATS = 10
#: Per-version counters: [events, requests, errors, reviews, bad_reviews, latency_n, latency_sum_ms, cost_usd,
#: sum of ln(latency ms), sum of its squares] (the last two compare versions' latency side by side; a
#: checkpoint from before them holds only the first eight)
VersionStats = list[float]

SAMPLE_CAP = 20
KEY_CAP = 2048
SET_CAP = 1000
VERSION_CAP = 32
#: Distinct version combinations counted per window; the rest share one overflow entry.
CONTEXT_CAP = 256
CHANGE_CAP = 50
OTHER = "(other)"
_OVERFLOW: tuple[str | None, ...] = (OTHER,) * 5
BAD_OUTCOMES = frozenset(("rejected", "escalated"))
#: Error classes that say the model provider is failing or overloaded.
AVAILABILITY = frozenset(("timeout", "rate_limited", "provider_error"))


#: The containers every window closed with no events shares (see WindowAggregate.closed_empty).
_NO_DICT: dict[Any, Any] = ReadOnlyDict()
_NO_LIST: list[Any] = ReadOnlyList()
_NO_SET: set[Any] = ReadOnlySet()
_NO_SKETCH = QuantileSketch()


class WindowAggregate:
    """Accumulates one route's events in ``[start, end)`` (epoch ms)."""

    errors: dict[str, int]
    errors_by_tool: dict[str, int]
    tool_errors: dict[str, int]
    reviews: dict[str, int]
    tenants: set[str]
    tenants_by_cause: dict[str, set[str]]
    trace_counts: dict[str, int]
    request_counts: dict[str, int]
    contexts: dict[tuple[str | None, ...], VersionStats]
    _versions: dict[str, dict[str, VersionStats]] | None
    request_ids: list[str]
    trace_ids: list[str]
    flagged_request_ids: list[str]
    flagged_trace_ids: list[str]
    changes: list[dict[str, Any]]
    providers: dict[str, list[int]]

    @classmethod
    def closed_empty(cls, route: str, start: int, end: int) -> WindowAggregate:
        """A window that closed with no events: the same values as ``WindowAggregate(route, start, end)``,
        with shared read-only containers (about a fifth of the memory: routes keep their last windows
        for evidence, and an idle route's are empty).

        >>> e = WindowAggregate.closed_empty("r", 0, 60_000)
        >>> e == WindowAggregate("r", 0, 60_000), e.requests, e.versions, e.top_key()
        (True, 0, {}, None)
        """
        return cls(route, start, end, True)

    def __init__(self, route: str, start: int, end: int, closed_empty: bool = False):
        self.route = route
        self.start = start
        self.end = end
        if closed_empty:  # the attributes in the order below: pure Python then shares the dict's keys
            self.events = self.requests = self.input_tokens = self.output_tokens = self.retries = 0
            self.errors = self.errors_by_tool = self.tool_errors = _NO_DICT
            self.latency = _NO_SKETCH
            self.cost_usd = 0.0
            self.cost_events = 0
            self.reviews = _NO_DICT
            self.tenants = _NO_SET
            self.tenants_by_cause = _NO_DICT
            self._affected = 0
            self.trace_counts = self.request_counts = self.contexts = _NO_DICT
            self._versions = None
            self.request_ids = self.trace_ids = self.flagged_request_ids = self.flagged_trace_ids = _NO_LIST
            self.changes = _NO_LIST
            self.providers = _NO_DICT
            self.partial = False
            return
        self.events = 0
        self.requests = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.retries = 0
        self.errors = {}
        self.errors_by_tool = {}
        self.tool_errors = {}  # tool_error events by tool
        self.latency = QuantileSketch()
        self.cost_usd = 0.0
        self.cost_events = 0
        self.reviews = {}
        self.tenants = set()
        #: error class (or "bad_review") -> tenants it hit; at most SET_CAP tenants in all
        self.tenants_by_cause = {}
        self._affected = 0
        self.trace_counts = {}
        self.request_counts = {}
        #: (prompt, model, config, source_index, tool) -> counters; ``versions`` is derived from it.
        self.contexts = {}
        self._versions = None
        self.request_ids = []
        self.trace_ids = []
        self.flagged_request_ids = []
        self.flagged_trace_ids = []
        self.changes = []
        #: provider -> [requests, availability errors (timeout, rate_limited, provider_error)]: what
        #: tells a provider failing on many routes at once from one route's own fault
        self.providers = {}
        #: Closed before the watermark passed it (the end of a replay): it may lack events, so its volume
        #: and totals are not judged. Never checkpointed (only a replay's flush makes one).
        self.partial = False

    # -- accumulation (hot path) ----------------------------------------------
    def add(self, ev: TelemetryEvent, ts_ms: int | None = None) -> None:
        """Add one event of this route and window."""
        self.events += 1
        # exact types, the commonest first: compiled, each adder is a direct call (a dict of methods would make
        # a Python-level call; isinstance on a msgspec struct that does not match asks its metaclass)
        t = type(ev)
        if t is UsageEvent:
            self._add_usage(cast(UsageEvent, ev), ts_ms)
        elif t is LatencyEvent:
            self._add_latency(cast(LatencyEvent, ev), ts_ms)
        elif t is CostEvent:
            self._add_cost(cast(CostEvent, ev), ts_ms)
        elif t is ErrorEvent:
            self._add_error(cast(ErrorEvent, ev), ts_ms)
        elif t is ReviewEvent:
            self._add_review(cast(ReviewEvent, ev), ts_ms)
        elif t is ChangeEvent:
            self._add_change(cast(ChangeEvent, ev), ts_ms)
        else:
            raise TypeError(f"not a telemetry event: {t.__name__}")

    def _add_usage(self, ev: UsageEvent, ts_ms: int | None) -> None:
        requests = ev.requests
        self.requests += requests
        self.input_tokens += ev.input_tokens
        self.output_tokens += ev.output_tokens
        self.retries += ev.retries
        if ev.trace_id is not None:
            _count(self.trace_counts, ev.trace_id, requests)
        if ev.request_id is not None:
            _count(self.request_counts, ev.request_id, requests)
        if ev.tenant is not None and len(self.tenants) < SET_CAP:
            self.tenants.add(ev.tenant)
        if ev.provider is not None:
            ps = self.providers.get(ev.provider)
            if ps is None:
                ps = self._provider(ev.provider)
            ps[0] += requests
        self._context(ev, False, requests, 0, 0, -1.0, 0.0)

    def _provider(self, name: str) -> list[int]:
        if len(self.providers) >= VERSION_CAP:
            name = OTHER
        ps = self.providers.get(name)
        if ps is None:
            ps = self.providers[name] = [0, 0]
        return ps

    def _add_latency(self, ev: LatencyEvent, ts_ms: int | None) -> None:
        self.latency.add(ev.latency_ms)
        self._context(ev, False, 0, 0, 0, ev.latency_ms, 0.0)

    def _add_cost(self, ev: CostEvent, ts_ms: int | None) -> None:
        self.cost_usd += ev.cost_usd
        self.cost_events += 1
        self._context(ev, False, 0, 0, 0, -1.0, ev.cost_usd)

    def _add_error(self, ev: ErrorEvent, ts_ms: int | None) -> None:
        self.errors[ev.error_class] = self.errors.get(ev.error_class, 0) + 1
        if ev.tool is not None:
            _count_or_other(self.errors_by_tool, ev.tool)
            if ev.error_class == "tool_error":
                _count_or_other(self.tool_errors, ev.tool)
        if ev.tenant is not None:
            self._hit(ev.error_class, ev.tenant)
        if ev.provider is not None and ev.error_class in AVAILABILITY:
            ps = self.providers.get(ev.provider)
            if ps is None:
                ps = self._provider(ev.provider)
            ps[1] += 1
        self._context(ev, True, 0, 1, 0, -1.0, 0.0)

    def _hit(self, cause: str, tenant: str) -> None:
        hit = self.tenants_by_cause.get(cause)
        if hit is None:
            hit = self.tenants_by_cause[cause] = set()
        if tenant not in hit and self._affected < SET_CAP:
            hit.add(tenant)
            self._affected += 1

    def _add_review(self, ev: ReviewEvent, ts_ms: int | None) -> None:
        self.reviews[ev.outcome] = self.reviews.get(ev.outcome, 0) + 1
        bad = ev.outcome in BAD_OUTCOMES
        if bad and ev.tenant is not None:
            self._hit("bad_review", ev.tenant)
        self._context(ev, bad, 0, 0, 1, -1.0, 0.0)

    def _add_change(self, ev: ChangeEvent, ts_ms: int | None) -> None:
        if len(self.changes) < CHANGE_CAP:
            self.changes.append({
                "ts": ts_ms if ts_ms is not None else self.start,
                "kind": ev.change_kind,
                "from_version": ev.from_version,
                "to_version": ev.to_version,
                "event_id": ev.event_id,
            })

    def _context(self, ev: TelemetryEvent, bad: bool, requests: int, errors: int, reviews: int, lat: float,
                 cost: float) -> None:
        """Samples and per-version counters from an event's context fields."""
        if ev.request_id is not None and len(self.request_ids) < SAMPLE_CAP:
            self.request_ids.append(ev.request_id)
        if ev.trace_id is not None and len(self.trace_ids) < SAMPLE_CAP:
            self.trace_ids.append(ev.trace_id)
        if bad:
            if ev.request_id is not None and len(self.flagged_request_ids) < SAMPLE_CAP:
                self.flagged_request_ids.append(ev.request_id)
            if ev.trace_id is not None and len(self.flagged_trace_ids) < SAMPLE_CAP:
                self.flagged_trace_ids.append(ev.trace_id)
        key: tuple[str | None, ...] = (ev.prompt_version, ev.model, ev.config_version, ev.source_index, ev.tool)
        st = self.contexts.get(key)
        if st is None:
            if len(self.contexts) >= CONTEXT_CAP:
                key = _OVERFLOW
                st = self.contexts.get(key)
            if st is None:
                st = self.contexts[key] = [0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0]
        self._versions = None  # the sums per version are worked out again when next read
        st[0] += 1
        if requests:
            st[1] += requests
        elif errors:
            st[2] += 1
        elif reviews:
            st[3] += 1
            if bad:
                st[4] += 1
        elif lat >= 0:
            st[5] += 1
            st[6] += lat
            if len(st) > 8:
                ln = _log(lat if lat > 1.0 else 1.0)
                st[8] += ln
                st[9] += ln * ln
        elif cost:
            st[7] += cost

    @property
    def versions(self) -> dict[str, dict[str, VersionStats]]:
        """Counters per version kind and version: ``versions[kind][version] = [events, requests, ...]``.

        At most ``VERSION_CAP`` versions per kind; the rest are summed under ``(other)``.
        """
        if self._versions is not None:
            return self._versions
        out: dict[str, dict[str, VersionStats]] = {}
        for key, st in self.contexts.items():
            for i in range(len(key)):  # (an index: zip's strict keyword costs a generic call when compiled)
                version = key[i]
                if version is None:
                    continue
                vkind = _KIND_NAMES[i]
                per = out.setdefault(vkind, {})
                acc = per.get(version)
                if acc is None:
                    if len(per) >= VERSION_CAP:
                        version = OTHER
                        acc = per.get(version)
                    if acc is None:
                        acc = per[version] = [0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0]
                for j, v in enumerate(st):
                    acc[j] += v
        self._versions = out
        return out

    # -- derived figures --------------------------------------------------------
    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        """Errors per request (NaN without requests)."""
        return self.error_count / self.requests if self.requests else math.nan

    @property
    def review_count(self) -> int:
        return sum(self.reviews.values())

    @property
    def bad_reviews(self) -> int:
        return sum(n for o, n in self.reviews.items() if o in BAD_OUTCOMES)

    @property
    def rejection_rate(self) -> float:
        """(rejected + escalated) / reviews (NaN without reviews)."""
        n = self.review_count
        return self.bad_reviews / n if n else math.nan

    def affected_tenants_of(self, causes: tuple[str, ...]) -> set[str]:
        """Tenants hit by errors of these classes (or ``"bad_review"``) in this window."""
        out: set[str] = set()
        for c in causes:
            out |= self.tenants_by_cause.get(c, set())
        return out

    @property
    def affected_tenants(self) -> set[str]:
        """Tenants hit by any error or bad review in this window."""
        return self.affected_tenants_of(tuple(self.tenants_by_cause))

    @property
    def distinct_tenants(self) -> int:
        return len(self.tenants)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def quantile(self, q: float) -> float:
        """Latency quantile in ms (NaN without latency events)."""
        return self.latency.quantile(q)

    @property
    def p50(self) -> float:
        return self.latency.quantile(0.5)

    @property
    def p95(self) -> float:
        return self.latency.quantile(0.95)

    @property
    def p99(self) -> float:
        return self.latency.quantile(0.99)

    @property
    def cost_per_request(self) -> float:
        return self.cost_usd / self.requests if self.requests else math.nan

    def top_key(self) -> tuple[str, str, int] | None:
        """The trace_id or request_id holding the most requests: (field, id, count)."""
        best: tuple[str, str, int] | None = None
        for field, counts in (("trace_id", self.trace_counts), ("request_id", self.request_counts)):
            for key, n in counts.items():
                if best is None or n > best[2]:
                    best = (field, key, n)
        return best

    @property
    def max_key_share(self) -> float:
        """Largest share of the window's requests held by one trace_id or request_id."""
        top = self.top_key()
        if top is None or not self.requests:
            return 0.0
        return top[2] / self.requests

    @property
    def is_empty(self) -> bool:
        return self.events == 0

    # -- snapshots ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state, for checkpoints."""
        if self.latency is _NO_SKETCH:  # made by closed_empty
            return WindowAggregate(self.route, self.start, self.end).to_dict()
        d = {k: getattr(self, k) for k in _PLAIN}
        d["latency"] = self.latency.to_dict()
        d["contexts"] = [[list(k), v] for k, v in self.contexts.items()]
        d["tenants"] = sorted(self.tenants)
        d["tenants_by_cause"] = {c: sorted(t) for c, t in sorted(self.tenants_by_cause.items())}
        if self.providers:
            d["providers"] = {p: list(v) for p, v in self.providers.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowAggregate:
        """Inverse of :meth:`to_dict`."""
        w = cls(d["route"], d["start"], d["end"])
        for k in _PLAIN:
            setattr(w, k, d[k])
        w.latency = QuantileSketch.from_dict(d["latency"])
        w.contexts = {tuple(k): v for k, v in d["contexts"]}
        w.tenants = set(d["tenants"])
        w.tenants_by_cause = {c: set(t) for c, t in d["tenants_by_cause"].items()}
        w._affected = sum(len(t) for t in w.tenants_by_cause.values())
        w.providers = {str(p): [int(v[0]), int(v[1])] for p, v in d.get("providers", {}).items()}
        return w

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowAggregate) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"WindowAggregate(route={self.route!r}, start={self.start}, events={self.events})"


_PLAIN = ("route", "start", "end", "events", "requests", "input_tokens", "output_tokens", "retries", "errors",
          "errors_by_tool", "tool_errors", "cost_usd", "cost_events", "reviews", "trace_counts", "request_counts",
          "request_ids", "trace_ids", "flagged_request_ids", "flagged_trace_ids", "changes")




def _count_or_other(counts: dict[str, int], key: str) -> None:
    """Count ``key``; past ``VERSION_CAP`` distinct keys, count it under ``(other)``."""
    if key not in counts and len(counts) >= VERSION_CAP:
        key = OTHER
    counts[key] = counts.get(key, 0) + 1


def _count(counts: dict[str, int], key: str, n: int) -> None:
    if key in counts:
        counts[key] += n
    elif len(counts) < KEY_CAP:
        counts[key] = n
