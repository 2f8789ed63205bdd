"""Incidents that share a cause across routes (SPEC section 2a).

Two pure parts, fed by the incident engine:

* :class:`ProviderBoard` keeps, for each model provider, what every route's
  recent windows show of availability errors (``timeout``, ``rate_limited``,
  ``provider_error``) against that route's own baseline. When one route's
  incident opens, :meth:`ProviderBoard.elsewhere` says whether *other* routes
  on the same provider show an excess in the same windows: then the
  provider is failing, and a change made on this route shortly before does
  not explain the errors.
* :class:`GroupBook` gathers incidents with the same cause (``provider``,
  ``model``, ``tool`` or ``source_index`` and its value) that began within
  :data:`GROUP_SPAN_MS` of each other into one group with a stable id.
  A group is published (the ``group`` field) once it holds two routes.

Time is event time (epoch ms) passed in; everything is bounded.

>>> from detector.windows.aggregate import WindowAggregate
>>> board = ProviderBoard()
>>> def win(route, i, k, n=50):
...     w = WindowAggregate(route, i * 60_000, (i + 1) * 60_000)
...     w.providers = {"acme-ai": [n, k]}
...     return w
>>> for i in range(100):
...     for r in ("a", "b", "c"):
...         board.observe(win(r, i, 0))
>>> for r in ("a", "b", "c"):
...     board.observe(win(r, 100, 20))
>>> board.elsewhere("acme-ai", "a", 100 * 60_000, 101 * 60_000)
True
>>> board.elsewhere("other-ai", "a", 100 * 60_000, 101 * 60_000)
False
>>> book = GroupBook()
>>> g1 = book.join("inc-1", "a", ("provider", "acme-ai"), 100 * 60_000)
>>> g2 = book.join("inc-2", "b", ("provider", "acme-ai"), 101 * 60_000)
>>> g1 == g2, book.public(g1)["routes"], book.public(g1)["cause"]
(True, ['a', 'b'], {'kind': 'provider', 'value': 'acme-ai'})
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

from detector.detectors.proportion import binom_sf, poisson_sf
from detector.windows.aggregate import OTHER, WindowAggregate

__all__ = ["ProviderBoard", "GroupBook", "GROUP_SPAN_MS", "Cause"]

#: (kind, value): what related incidents share.
Cause = tuple[str, str]
#: Incidents with one cause that began this close together are one group.
GROUP_SPAN_MS = 20 * 60_000
#: Recent windows the board keeps per provider, in event time.
RECENT_MS = 10 * 60_000
#: Entries kept per provider at most (the oldest go first).
RECENT_CAP = 20_000
#: Routes listed in a published group at most.
ROUTES_LISTED = 100
#: Groups remembered at once (the least recently active go first).
GROUP_CAP = 1000
#: Baseline of a route on a provider: exponential forgetting, in windows, and its prior.
HALF_LIFE = 720.0
PRIOR_RATE, PRIOR_TRIALS = 0.01, 50.0
#: A window whose own excess is this surprising is not learned into the baseline.
OUTLIER_P = 1e-4
#: What "the same excess elsewhere" takes: pooled p-value, errors, ratio to what was expected.
ELSEWHERE_P, ELSEWHERE_MIN, ELSEWHERE_RATIO = 1e-5, 5, 3.0
#: A hint of it, enough to hold back a rollback while the other routes' evidence gathers.
HINT_P, HINT_MIN = 1e-3, 3


class ProviderBoard:
    """Availability errors per provider and route, recent windows and each route's baseline."""

    def __init__(self, max_pairs: int = 200_000) -> None:
        self.max_pairs = max_pairs
        #: (provider, route) -> [errors, requests], exponentially forgotten
        self.base: dict[tuple[str, str], list[float]] = {}
        #: provider -> recent windows: (route, start, errors, requests, baseline rate)
        self.recent: dict[str, deque[tuple[str, int, int, int, float]]] = {}

    def rate(self, provider: str, route: str) -> float:
        """The route's baseline availability error rate on the provider."""
        b = self.base.get((provider, route))
        k, n = (b[0], b[1]) if b is not None else (0.0, 0.0)
        return (k + PRIOR_RATE * PRIOR_TRIALS) / (n + PRIOR_TRIALS)

    def observe(self, w: WindowAggregate) -> None:
        """Record one closed window of a route."""
        for provider, (n, k) in w.providers.items():
            if provider == OTHER or (n <= 0 and k <= 0):
                continue
            p0 = self.rate(provider, w.route)
            ring = self.recent.get(provider)
            if ring is None:
                ring = self.recent[provider] = deque(maxlen=RECENT_CAP)
            while ring and ring[0][1] < w.start - RECENT_MS:
                ring.popleft()
            ring.append((w.route, w.start, k, n, p0))
            if k >= 3 and binom_sf(k, max(n, k), p0) < OUTLIER_P:
                continue  # an outage is not the baseline
            key = (provider, w.route)
            b = self.base.get(key)
            if b is None:
                if len(self.base) >= self.max_pairs:
                    del self.base[next(iter(self.base))]
                b = self.base[key] = [0.0, 0.0]
            decay = 0.5 ** (1.0 / HALF_LIFE)
            b[0] = b[0] * decay + min(k, n)
            b[1] = b[1] * decay + max(n, k)

    def elsewhere(self, provider: str, route: str, since_ms: int, until_ms: int, p_value: float = ELSEWHERE_P,
                  min_errors: int = ELSEWHERE_MIN) -> bool:
        """Whether routes other than ``route`` show an excess of availability errors on ``provider``
        in windows starting in ``[since_ms, until_ms)``: pooled, surprising under their own baselines
        (one-sided Poisson, below ``p_value``, at least ``min_errors``), and at least one other route
        with an excess of its own."""
        ring = self.recent.get(provider)
        if not ring:
            return False
        k_all, expected, hot = 0, 0.0, 0
        for r, start, k, n, p0 in ring:
            if r == route or not since_ms <= start < until_ms:
                continue
            e = max(n, k) * p0
            k_all += k
            expected += e
            if k >= 2 and k >= ELSEWHERE_RATIO * e:
                hot += 1
        return (hot >= 1 and k_all >= min_errors and k_all >= ELSEWHERE_RATIO * expected
                and poisson_sf(k_all, max(expected, 1e-6)) < p_value)

    def forget(self, route: str) -> None:
        """Drop a route's baselines (it was evicted)."""
        for key in [k for k in self.base if k[1] == route]:
            del self.base[key]

    def route_state(self, route: str) -> dict[str, list[float]] | None:
        """The route's baselines, JSON-able (None when it has none)."""
        out = {p: [round(v[0], 4), round(v[1], 4)] for (p, r), v in self.base.items() if r == route}
        return out or None

    def restore_route(self, route: str, d: dict[str, list[float]]) -> None:
        for provider, v in d.items():
            self.base[(str(provider), route)] = [float(v[0]), float(v[1])]

    def recent_state(self) -> dict[str, list[list[Any]]]:
        """The recent windows alone, JSON-able (what is not per route)."""
        return {p: [list(e) for e in ring] for p, ring in self.recent.items()}

    def snapshot(self) -> dict[str, Any]:
        return {"base": [[p, r, v[0], v[1]] for (p, r), v in self.base.items()], "recent": self.recent_state()}

    def restore(self, d: dict[str, Any]) -> None:
        """Load :meth:`snapshot` output (added to what a shared board already holds)."""
        for p, r, k, n in d.get("base", []):
            self.base[(str(p), str(r))] = [float(k), float(n)]
        self.restore_recent(d.get("recent", {}))

    def restore_recent(self, d: dict[str, list[list[Any]]]) -> None:
        """Load recent windows; a provider's ring already holding windows (a shared board) is kept."""
        for p, ring in d.items():
            if not self.recent.get(str(p)):
                self.recent[str(p)] = deque(((str(e[0]), int(e[1]), int(e[2]), int(e[3]), float(e[4]))
                                             for e in ring), maxlen=RECENT_CAP)


class GroupBook:
    """Groups of incidents (by incident id) that share a cause."""

    def __init__(self) -> None:
        #: group id -> {"cause": [kind, value], "first": ms, "last": ms, "members": {incident id: route},
        #: "open": [ids of members still open]}
        self.groups: dict[str, dict[str, Any]] = {}

    def join(self, key: str, route: str, cause: Cause, started_ms: int) -> str:
        """Put the incident ``key`` (of ``route``, begun at ``started_ms``) in the group of its cause that
        began within :data:`GROUP_SPAN_MS` of it (a new group if none did); returns the group id."""
        for gid, g in self.groups.items():
            if key in g["members"]:
                return gid
        best: tuple[int, str] | None = None
        for gid, g in self.groups.items():
            if tuple(g["cause"]) == cause:
                gap = max(g["first"] - started_ms, started_ms - g["last"], 0)
                if gap <= GROUP_SPAN_MS and (best is None or gap < best[0]):
                    best = (gap, gid)
        if best is not None:
            g = self.groups.pop(best[1])
            self.groups[best[1]] = g  # most recently active last
            g["members"][key] = route
            g["open"] = sorted({*g["open"], key})
            g["first"] = min(g["first"], started_ms)
            g["last"] = max(g["last"], started_ms)
            return best[1]
        gid = "grp-" + hashlib.sha256(f"{cause[0]}\x1f{cause[1]}\x1f{started_ms}".encode()).hexdigest()[:16]
        self.groups[gid] = {"cause": list(cause), "first": started_ms, "last": started_ms, "members": {key: route},
                            "open": [key]}
        while len(self.groups) > GROUP_CAP:
            del self.groups[next(iter(self.groups))]
        return gid

    def members(self, gid: str) -> dict[str, str]:
        """The group's incident keys and their routes ({} for an unknown group)."""
        g = self.groups.get(gid)
        return dict(g["members"]) if g is not None else {}

    def public(self, gid: str | None) -> dict[str, Any] | None:
        """The SPEC 2a ``group`` value: None unless the group holds incidents on two routes or more."""
        g = self.groups.get(gid) if gid is not None else None
        if g is None:
            return None
        routes = sorted(set(g["members"].values()))
        if len(routes) < 2:
            return None
        return {"group_id": gid, "cause": {"kind": g["cause"][0], "value": g["cause"][1]},
                "routes": routes[:ROUTES_LISTED]}

    def closed(self, key: str) -> None:
        """The incident ``key`` resolved (its group stays listed until :meth:`expire` drops it)."""
        for g in self.groups.values():
            if key in g["open"]:
                g["open"] = [k for k in g["open"] if k != key]

    def expire(self, now_ms: int) -> None:
        """Forget groups with no open member whose last member began long before ``now_ms`` (the book may
        be shared by the engines of several partitions: what is open is kept in the book itself)."""
        for gid in [gid for gid, g in self.groups.items() if g["last"] < now_ms - 2 * GROUP_SPAN_MS and not g["open"]]:
            del self.groups[gid]

    def snapshot(self) -> dict[str, Any]:
        return {gid: {"cause": list(g["cause"]), "first": g["first"], "last": g["last"],
                      "members": dict(g["members"]), "open": list(g["open"])} for gid, g in self.groups.items()}

    def restore(self, d: dict[str, Any]) -> None:
        """Load :meth:`snapshot` output; groups already known (a book shared by several engines, each
        restoring its own, possibly older, copy) are kept as they are."""
        self.groups.update({str(gid): {"cause": [str(x) for x in g["cause"]], "first": int(g["first"]),
                                  "last": int(g["last"]), "members": {str(k): str(r) for k, r in g["members"].items()},
                                  "open": [str(k) for k in g.get("open", g["members"])]}
                            for gid, g in d.items() if gid not in self.groups})
