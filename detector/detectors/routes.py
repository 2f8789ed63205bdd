"""The detector stage: every signal of every route, judged once per closed window.

Which signal makes which incident type follows SPEC section 2. Each signal
has its own detector and its own :class:`~detector.detectors.signals.Alarm`
(warm-up, persistence, hysteresis); while an alarm is on, the signal yields
a :class:`~detector.detectors.firing.Firing` every window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from detector.config import Config, RouteConfig
from detector.detectors.base import Stateful, decode_state, encode_state
from detector.detectors.canary import CANARY_SIGNALS, QUIET, CanaryWatch
from detector.detectors.firing import Firing
from detector.detectors.guard import BurnRate, SpendGuard
from detector.detectors.logmean import LogMeanShift
from detector.detectors.proportion import CountTest, Judgement, ProportionTest
from detector.detectors.signals import Alarm, LevelShift
from detector.events import tool_identity
from detector.windows.aggregate import V_REQUESTS, WindowAggregate
from detector.windows.sketch import QuantileSketch
from detector.windows.windower import EmptyRun

__all__ = ["RouteDetectors", "ERROR_GROUPS", "MIN_LATENCY_SAMPLES"]

#: signal name -> (error classes, incident type)
ERROR_GROUPS: dict[str, tuple[tuple[str, ...], str]] = {
    "errors_performance": (("timeout", "rate_limited", "provider_error"), "performance"),
    "errors_tool": (("tool_error",), "tool_failure"),
    "errors_access": (("access_denied",), "access_privacy"),
    "errors_retrieval": (("retrieval_empty", "retrieval_stale"), "retrieval_failure"),
    "errors_validation": (("validation_error",), "bad_output"),
}
MIN_LATENCY_SAMPLES = 5
#: Requests pooled before cost per request is judged.
MIN_COST_REQUESTS = 5
#: Fewest latency samples for each quantile to be judged: a tail quantile must rest on several
#: requests beyond it (5 for p95, 10 for p99), or a few ordinary timeouts move it.
LATENCY_MIN_SAMPLES = {"latency_p50": 5, "latency_p95": 100, "latency_p99": 1000}
AVAILABILITY_CLASSES = ("timeout", "rate_limited", "provider_error")
COST_SIGNALS = frozenset(("spend", "cost_per_request", "tokens", "runaway_key"))
#: Tools followed per route with their own error-rate test.
MAX_TOOLS = 8
#: Requests an error-rate span pools at the least before it is judged (the exact binomial tail, three errors
#: over three windows at least, is what guards a quiet route: twenty requests made a route of three a minute
#: wait seven windows for an outage that its first three had shown).
ERROR_MIN_TRIALS = 10
#: Windows whose own rate clears the effect size that an error span needs at the least: two (an outage on a
#: route of a few requests a minute shows in every other window, and three errors at the exact tail's level
#: are still needed); three for tool errors, whose failures come in bursts (an agent retrying a failing call).
ERROR_MIN_HOT, TOOL_MIN_HOT = 2, 3
#: A count test's score (1 - p) at which one anomalous window fires without waiting for persistence.
OVERWHELMING = 1.0 - 1e-10
#: A rate test's score at which one anomalous window fires: its span already holds the excess in at least
#: ``min_hot`` windows (its own persistence), so at the error tests' own level (p < 1e-5) a second window
#: adds a minute (more on a quiet route, whose next window may be empty), not confidence. A span found only
#: at a looser level (reviews, errors just after a change) still waits for a second window.
RATE_SURE = 1.0 - 1e-5
#: For this long after a ``change`` on a route, its reviews are judged at ``REVIEW_ALPHA_AFTER_CHANGE``, the canary
#: comparison's level, not the review test's own (1e-4): a change is the usual cause of worse outputs, and a
#: full rollout has no old version beside it to compare with. Reviews are sparse, so the evidence of a slow
#: regression gathers over hours; a tenfold looser level for a few hours after a change costs few false alarms.
AFTER_CHANGE_MS = 6 * 3_600_000
REVIEW_ALPHA_AFTER_CHANGE = 1e-3
#: For this long after a ``change``, the route's error rates are judged at ``ERRORS_ALPHA_AFTER_CHANGE``, a
#: tenfold looser level than their own (1e-5): a bad prompt, config, tool or index shows in its errors from the
#: first requests it serves, so two hours cover it (a shorter exposure than the reviews', which come late).
ERRORS_AFTER_CHANGE_MS = 2 * 3_600_000
ERRORS_ALPHA_AFTER_CHANGE = 1e-4
#: A route whose latency batches usually take this long to gather their samples (a quiet route: a request a
#: minute or fewer) has them judged by the mean of its log latencies with the last few batches (:class:`LogMeanShift`),
#: which reports as ``latency_p50`` and fires at once: a second pooled median (persistence) is a quarter of
#: an hour away and a ramp stays under the median's threshold for long. Quicker batches have a log-mean
#: test of their own (``BUSY_LOGMEAN``): a median of five is as noisy on a route of three requests a minute.
QUIET_BATCH_MS = 5 * 60_000
#: Which of the two tests a route's batches go to follows the route's usual batch time (exponentially
#: averaged with weight ``BATCH_TIME_WEIGHT``), not each batch's own, with a margin each way
#: (``BATCH_TIME_BAND``): a route of about a request a minute, whose batches take four to seven minutes,
#: fed both tests by turns and each saw half of a ramp's evidence.
BATCH_TIME_WEIGHT = 0.25
BATCH_TIME_BAND = (0.8, 1.2)
#: The log-mean test of a busier route's batches (usually gathered in under ``QUIET_BATCH_MS``, one every minute
#: or few), a test of its own with its own baseline: spans of up to eight batches within twenty minutes (a
#: ramp's first quarter hour), and a span must pass on two batches in a row (a blip of two batches reaches
#: any z now and then over a fleet's week; a ramp keeps passing).
BUSY_LOGMEAN: dict[str, int] = {"spans": 8, "horizon_ms": 20 * 60_000, "confirm": 2}
#: Latency signals whose pooled value (several quiet windows) fires at once when far past its threshold.
POOLED_LATENCY = frozenset(("latency_p50", "latency_p95"))
#: Key of one signal in a route's heightened periods (beside its types' keys and "*").
SIGNAL_KEY = "signal:"


@dataclass(frozen=True)
class _Spec:
    name: str
    incident_type: str
    make: Callable[[RouteConfig], Stateful]


def _level(**kw: Any) -> Callable[[RouteConfig], Stateful]:
    return lambda rc: LevelShift(**kw)


def _errors(min_hot: int) -> Callable[[RouteConfig], Stateful]:
    return lambda rc: ProportionTest(min_trials=ERROR_MIN_TRIALS, min_hot=min_hot)


SIGNALS: tuple[_Spec, ...] = (
    # p50 and p95 also sum their excess (CUSUM): a slowdown that creeps up is found before it is a step
    _Spec("latency_p50", "performance", _level(min_ratio=1.6, z=3.0, cusum_h=12.0, cusum_k=2.0)),
    _Spec("latency_p95", "performance", _level(min_ratio=1.6, z=4.0, cusum_h=16.0, cusum_k=2.0)),
    _Spec("latency_p99", "performance", _level(min_ratio=2.0, z=5.0)),
    *(_Spec(name, itype, _errors(TOOL_MIN_HOT if name == "errors_tool" else ERROR_MIN_HOT))
      for name, (_, itype) in ERROR_GROUPS.items()),
    _Spec("review_rejection_rate", "bad_output",
          # reviews are sparse (a few per cent of requests) and judged only when present: pool up to an
          # hour of them, at a looser alpha
          lambda rc: ProportionTest(alpha=1e-4, prior_rate=0.05, min_delta=0.1, min_trials=8, min_count=3,
                                    max_span=60)),
    _Spec("request_volume", "performance", lambda rc: CountTest()),
    _Spec("spend", "cost", _level(min_ratio=2.5, z=5.0, min_value=0.01, floor=1e-4)),
    _Spec("cost_per_request", "cost", _level(min_ratio=2.0, z=5.0, floor=1e-6)),
    _Spec("tokens", "cost", _level(min_ratio=2.5, z=5.0, min_value=1000.0)),
    _Spec("runaway_key", "cost", _level(min_ratio=4.0, z=5.0, min_value=8.0)),
)


_SPECS = {s.name: s for s in SIGNALS}
_ORDERS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _order(extras: tuple[str, ...]) -> tuple[str, ...]:
    """The alarms of a route in their walking order: the signals, the route's SLO and spend guard, the
    static limits, the canary signals (one shared tuple per shape)."""
    order = _ORDERS.get(extras)
    if order is None:
        order = _ORDERS[extras] = (*_SPECS, *extras, "guardrail_p95", "guardrail_error_rate",
                                   "guardrail_rejection_rate", *CANARY_SIGNALS)
    return order


class _RouteState:
    """All detectors and alarms of one route."""

    def __init__(self, config: Config, rc: RouteConfig):
        self.config, self.rc = config, rc
        #: Detectors and alarms are made when their signal is first judged (:meth:`det`, :meth:`alarm`): a
        #: quiet route never judges a p99, spend or tokens (they need busy windows), and each would hold
        #: about a kilobyte. ``order`` is the order alarms are walked in (as if all had been made at once).
        self.dets: dict[str, Stateful] = {}
        extras: tuple[str, ...] = ()
        if rc.slo is not None:  # the SRE workbook's windows, in windows of this config's size
            per_min = 60 / config.windows.size_s
            self.dets["slo_burn_rate"] = BurnRate(
                slo_error_rate=rc.slo.error_rate,
                fast=(max(1, round(60 * per_min)), max(1, round(5 * per_min)), 14.4),
                slow=(max(1, round(360 * per_min)), max(1, round(30 * per_min)), 6.0),
                bucket=max(1, round(5 * per_min)),
            )
            extras += ("slo_burn_rate",)
        if rc.guardrails.max_spend_per_hour is not None:
            self.dets["guardrail_spend"] = SpendGuard(rc.guardrails.max_spend_per_hour,
                                                      3600 // config.windows.size_s)
            extras += ("guardrail_spend",)
        self.order = _order(extras)
        self.alarms: dict[str, Alarm] = {}
        #: New versions compared side by side with the old ones while both serve.
        self.canary = CanaryWatch()
        #: signal -> the judgement its firing reports: [observed, baseline, threshold, score, start, end],
        #: held only while the signal's alarm is on (a firing reads it; an alarm that is off can only turn
        #: on in a window that judges the signal, which sets it), so a calm route holds none.
        self.last: dict[str, list[float]] = {}
        self.subject: dict[str, str] = {}
        self.pending_latency: QuantileSketch | None = None  # quiet windows' latencies, pooled
        self.pending_since = 0  # start of the first window pooled in pending_latency
        self.pending_cost: list[float] | None = None
        #: tool identity -> its own tool_error rate test (the route-wide rate can hide one tool failing)
        self.tools: dict[str, ProportionTest] = {}
        #: incident type -> until when its signals are watched harder, one anomalous window firing (an
        #: incident of that type resolved; "*": every type, from a checkpoint that kept no types); emptied
        #: once every entry has passed
        self.heightened: dict[str, int] = {}
        #: Creation stamp (set by RouteDetectors): per-route restores sort on it to keep the dict order.
        self.seq = 0
        #: signal -> its last anomalous judgement was weak (see Firing.weak)
        self.weak: dict[str, bool] = {}
        #: The rollback a canary comparison names: (kind, old version).
        self.rollback: tuple[str, str] | None = None
        #: Until this event time the route's reviews are judged at REVIEW_ALPHA_AFTER_CHANGE (a change was made).
        self.changed_until = 0
        #: The route's usual latency batch time in ms (-1: none yet), and whether its batches are judged as
        #: a quiet route's (see BATCH_TIME_BAND).
        self.batch_ms = -1.0
        self.batch_quiet = False

    def snapshot(self) -> dict[str, Any]:
        return {
            "dets": {k: v.snapshot() for k, v in self.dets.items()},
            "alarms": {k: v.snapshot() for k, v in self.alarms.items()},
            "last": self.last,
            "subject": self.subject,
            "pending_latency": None if self.pending_latency is None else self.pending_latency.to_dict(),
            "pending_since": self.pending_since,
            "pending_cost": self.pending_cost,
            "tools": {t: d.snapshot() for t, d in self.tools.items()},
            "heightened": self.heightened,
            "weak": self.weak,
            "canary": self.canary.to_dict(),
            "rollback": list(self.rollback) if self.rollback else None,
            "changed_until": self.changed_until,
            "batch_ms": self.batch_ms,
            "batch_quiet": self.batch_quiet,
        }

    def restore(self, d: dict[str, Any]) -> None:
        fresh = dict(self.dets)  # the SLO and spend guard this config gives the route (made by __init__)
        self.dets = {k: Stateful.from_snapshot(v) for k, v in d["dets"].items()}
        self.alarms = {k: Alarm.from_snapshot(v) for k, v in d["alarms"].items()}
        self._follow_config(fresh)
        self.last = d["last"]
        self.subject = d["subject"]
        pend = d["pending_latency"]
        self.pending_latency = None if pend is None else QuantileSketch.from_dict(pend)
        self.pending_since = int(d.get("pending_since", 0))
        self.pending_cost = d["pending_cost"]
        self.tools = {t: ProportionTest.from_snapshot(v) for t, v in d.get("tools", {}).items()}
        kinds = d.get("heightened")
        until = int(d.get("heightened_until", 0))  # a checkpoint that kept no types: every type
        self.heightened = ({str(k): int(v) for k, v in kinds.items()} if isinstance(kinds, dict)
                           else {"*": until} if until else {})
        self.weak = dict(d.get("weak", {}))
        self.canary = CanaryWatch.from_dict(d.get("canary", {}))
        rb = d.get("rollback")
        self.rollback = (str(rb[0]), str(rb[1])) if rb else None
        self.changed_until = int(d.get("changed_until", 0))
        self.batch_ms = float(d.get("batch_ms", -1.0))
        self.batch_quiet = bool(d.get("batch_quiet", False))

    def _follow_config(self, fresh: dict[str, Stateful]) -> None:
        """State restored under another config (a reload) follows this one: the alarms take its warm-up,
        persistence and clear-after (their counts are kept); an SLO or spend guard the route no longer has
        goes, one it gained or whose limit changed starts from this config's."""
        for name, alarm in self.alarms.items():
            dc = self.config.detectors
            alarm.warmup = 0 if name.startswith(("slo_", "guardrail_")) or name in CANARY_SIGNALS else dc.warmup_windows
            alarm.persistence, alarm.clear_after = dc.persistence, dc.clear_after
        for name in ("slo_burn_rate", "guardrail_spend"):
            want, held = fresh.get(name), self.dets.get(name)
            if want is None:
                self.dets.pop(name, None)
                self.alarms.pop(name, None)
            elif held is None or _settings(held) != _settings(want):
                self.dets[name] = want
                self.alarms.pop(name, None)

    def det(self, name: str) -> Stateful:
        """The signal's detector, made when first needed."""
        det = self.dets.get(name)
        if det is None:
            det = self.dets[name] = _SPECS[name].make(self.rc)
        return det

    def alarm(self, name: str) -> Alarm:
        """The signal's alarm, made when the signal is first judged."""
        alarm = self.alarms.get(name)
        if alarm is None:
            dc = self.config.detectors
            warm = 0 if name.startswith(("slo_", "guardrail_")) or name in CANARY_SIGNALS else dc.warmup_windows
            alarm = self.alarms[name] = Alarm(warm, dc.persistence, dc.clear_after)
        return alarm


def _settings(det: Stateful) -> tuple[Any, ...]:
    """What a config sets on an SLO or spend guard (its state aside)."""
    return tuple(getattr(det, a, None) for a in ("slo_error_rate", "fast", "slow", "bucket", "max_spend_per_hour",
                                                 "windows_per_hour"))


class RouteDetectors:
    """Implements the pipeline's DetectorStage for every route."""

    def __init__(self, config: Config):
        self.config = config
        self.routes: dict[str, _RouteState] = {}
        #: Called with each window and its judgements before they fire (``detector replay --report`` plots
        #: them); None in the service and in plain replay.
        self.trace: Callable[[WindowAggregate, dict[str, Judgement | None]], None] | None = None
        #: Stamp of the newest route state; only the order of stamps matters, so a per-route restore
        #: starts again from the largest restored one.
        self._seq = 0

    def _state(self, route: str) -> _RouteState:
        st = self.routes.get(route)
        if st is None:
            st = self.routes[route] = _RouteState(self.config, self.config.route(route))
            self._seq += 1
            st.seq = self._seq
        return st

    def on_evict(self, route: str) -> None:
        self.routes.pop(route, None)

    def quiet(self, route: str) -> bool:
        """Whether the route's empty windows can wait to be judged in one step (:meth:`on_empty_run`): its
        volume test cannot find a drop in any run of them (:meth:`CountTest.silent`), no alarm is on, no
        canary comparison runs, and it has no SLO or spend guard (which count every window)."""
        st = self.routes.get(route)
        if st is None:
            return False
        vol = st.dets.get("request_volume")
        if not isinstance(vol, CountTest) or st.canary.active or "slo_burn_rate" in st.dets \
                or "guardrail_spend" in st.dets or any(a.firing for a in st.alarms.values()):
            return False
        return vol.silent()  # the costly test last

    def on_empty_run(self, run: EmptyRun) -> None:
        """:meth:`on_window` of each empty window of a :meth:`quiet` route, in one step: the volume test
        learns each (:meth:`CountTest.zeros`), and the alarms of the signals an empty window judges (volume,
        and the canary signals, quiet while no comparison runs) count them as calm."""
        st = self._state(run.route)
        vol = st.det("request_volume")
        assert isinstance(vol, CountTest)
        judged = vol.zeros(run.start, run.end, run.size)[1]
        last = st.last
        if judged:
            _calm(st.alarm("request_volume"), judged)
            if last:
                last.pop("request_volume", None)  # (the alarm is off: see _RouteState.last)
        for name in QUIET:
            _calm(st.alarm(name), run.count)
            if last:
                last.pop(name, None)

    def heighten(self, route: str, until_ms: int, incident_type: str | None = None,
                 signals: Sequence[str] = ()) -> None:
        """Watch a route's ``signals`` (those of the incident that resolved), else its signals of
        ``incident_type`` (None: every signal), harder until ``until_ms``: no persistence. A blip of latency
        after a review incident is no sign of the reviews coming back, nor after a provider's errors (the
        same type, performance): an outage that comes back shows in its own signals."""
        st = self.routes.get(route)
        if st is not None:
            for key in [SIGNAL_KEY + s for s in signals] or [incident_type or "*"]:
                st.heightened[key] = max(st.heightened.get(key, 0), until_ms)

    def snapshot(self) -> dict[str, Any]:
        return {"routes": {r: encode_state(s.snapshot()) for r, s in self.routes.items()}}

    def route_state(self, route: str) -> dict[str, Any] | None:
        """One route's detector state, JSON-able, with its creation stamp (None when it has none)."""
        st = self.routes.get(route)
        return None if st is None else {"seq": st.seq, "state": encode_state(st.snapshot())}

    def restore_route(self, route: str, d: dict[str, Any]) -> None:
        """Load one :meth:`route_state` output (the route goes last in the dict order)."""
        st = _RouteState(self.config, self.config.route(route))
        st.restore(decode_state(d["state"]))
        st.seq = int(d["seq"])
        self._seq = max(self._seq, st.seq)
        self.routes.pop(route, None)
        self.routes[route] = st

    def restore_routes(self, routes: dict[str, dict[str, Any]]) -> None:
        """Replace every route's state with :meth:`route_state` outputs, in their original creation order."""
        self.routes = {}
        self._seq = 0
        for route, d in sorted(routes.items(), key=lambda kv: (int(kv[1]["seq"]), kv[0])):
            self.restore_route(route, d)

    def restore(self, snap: dict[str, Any]) -> None:
        self.routes = {}
        for r, d in snap.get("routes", {}).items():
            st = _RouteState(self.config, self.config.route(r))
            st.restore(decode_state(d))
            self._seq += 1
            st.seq = self._seq
            self.routes[r] = st

    # -- judging ------------------------------------------------------------------
    def on_window(self, w: WindowAggregate) -> list[Firing]:
        st = self._state(w.route)
        rc = self.config.route(w.route)
        results: dict[str, Judgement | None] = {}

        # latency: pool low-volume windows until enough samples
        sketch = w.latency
        pooled = False  # the value sums up several windows (a quiet route)
        since = w.start  # where the batch judged began
        if st.pending_latency is not None:
            since = st.pending_since
            pooled = True
            st.pending_latency.merge(sketch)
            sketch = st.pending_latency
        at_once = False  # latency_p50 was found by the log-mean test (its spans pool batches: no persistence)
        if sketch.count >= MIN_LATENCY_SAMPLES:
            st.pending_latency = None
            for name, q in (("latency_p50", 0.5), ("latency_p95", 0.95), ("latency_p99", 0.99)):
                if sketch.count < LATENCY_MIN_SAMPLES[name]:
                    continue
                det = st.det(name)
                assert isinstance(det, LevelShift)
                results[name] = det.update(sketch.quantile(q), w.start, sketch.count)
            # a batch that waited out a night counts as twice the bound: it says the route is quiet, not how quiet
            took = float(min(w.end - since, 2 * QUIET_BATCH_MS))
            if st.batch_ms < 0:  # the first batch (or a checkpoint from before): its own time
                st.batch_ms, st.batch_quiet = took, took >= QUIET_BATCH_MS
            else:
                st.batch_ms += BATCH_TIME_WEIGHT * (took - st.batch_ms)
                st.batch_quiet = st.batch_ms >= QUIET_BATCH_MS * BATCH_TIME_BAND[0 if st.batch_quiet else 1]
            quiet = st.batch_quiet
            key = "latency_logmean" if quiet else "latency_logmean_busy"
            lm = st.dets.get(key)
            if lm is None:
                lm = st.dets[key] = LogMeanShift() if quiet else LogMeanShift(**BUSY_LOGMEAN)
            assert isinstance(lm, LogMeanShift)
            r50 = results.get("latency_p50")
            rl = lm.update(sketch, since, w.end)
            if rl.anomalous:
                # its spans pool batches, and a busy route's test confirmed itself: no persistence, also
                # when the pooled median agrees (two tests, not a second batch a quarter of an hour away)
                at_once = True
                if r50 is None or not r50.anomalous:
                    results["latency_p50"] = rl
                    st.subject["latency_p50"] = "geometric mean"  # what its observed value is
                else:
                    st.subject.pop("latency_p50", None)
            elif r50 is not None and r50.anomalous:
                st.subject.pop("latency_p50", None)
        elif sketch.count and st.pending_latency is None:
            st.pending_latency = QuantileSketch()  # a copy: the window's own sketch stays as it was
            st.pending_since = w.start
            st.pending_latency.merge(sketch)

        if w.changes:
            st.changed_until = max(st.changed_until, w.end + AFTER_CHANGE_MS)
        n = max(w.requests, w.error_count)
        # changed_until is the last change's window end plus AFTER_CHANGE_MS
        errors_after_change = w.start < st.changed_until - AFTER_CHANGE_MS + ERRORS_AFTER_CHANGE_MS
        ealpha = ERRORS_ALPHA_AFTER_CHANGE if errors_after_change else 0.0
        for name, (classes, _) in ERROR_GROUPS.items():
            if not n:
                results[name] = None
                continue
            det = st.det(name)
            assert isinstance(det, ProportionTest)
            k = sum([w.errors.get(c, 0) for c in classes]) if w.errors else 0
            results[name] = det.update(k, n, ealpha)
        if w.errors_by_tool:
            st.subject["errors_tool"] = max(sorted(w.errors_by_tool), key=w.errors_by_tool.__getitem__)
        per_tool = self._per_tool(st, w)
        if per_tool is not None:
            route_wide = results["errors_tool"]
            if route_wide is None or not route_wide.anomalous or per_tool[1].score > route_wide.score:
                st.subject["errors_tool"] = per_tool[0]
                results["errors_tool"] = per_tool[1]

        reviews = w.review_count
        results["review_rejection_rate"] = None
        if reviews:
            rv = st.det("review_rejection_rate")
            assert isinstance(rv, ProportionTest)
            alpha = REVIEW_ALPHA_AFTER_CHANGE if w.start < st.changed_until else 0.0
            results["review_rejection_rate"] = rv.update(w.bad_reviews, reviews, alpha)

        # A partial window (the end of a replay, which the watermark has not passed) may still be missing
        # events: it is judged for rates, latency and cost per request, never for its volume or totals.
        partial = w.partial
        vol = None if partial else st.det("request_volume")
        assert vol is None or isinstance(vol, CountTest)
        results["request_volume"] = None if vol is None else vol.update(w.requests, w.start)
        if vol is not None and results["request_volume"] is not None and results["request_volume"].anomalous:
            r = results["request_volume"]
            st.subject["request_volume"] = "spike" if r.observed > r.baseline else "drop"
            st.weak["request_volume"] = (not vol.familiar if r.observed < r.baseline
                                            else not vol.hour_known(w.start))

        # per-window totals (spend, tokens, the busiest trace) are noise on a window of a few
        # requests; such routes are judged by cost per request (pooled) instead
        busy = not partial and w.requests >= self.config.detectors.min_requests
        if w.cost_events and busy:
            results["spend"] = _lvl(st.det("spend"), w.cost_usd, w.start)
        # cost per request: pool quiet windows until enough requests
        if w.requests and w.cost_events:
            pc = st.pending_cost or [0.0, 0]
            pc = [pc[0] + w.cost_usd, pc[1] + w.requests]
            if pc[1] >= MIN_COST_REQUESTS:
                results["cost_per_request"] = _lvl(st.det("cost_per_request"), pc[0] / pc[1], w.start, int(pc[1]))
                st.pending_cost = None
            else:
                st.pending_cost = pc
        if busy:
            results["tokens"] = _lvl(st.det("tokens"), float(w.tokens), w.start)
            top = w.top_key()
            count = float(top[2]) if top else 0.0
            r = _lvl(st.det("runaway_key"), count, w.start)
            if r.anomalous and w.max_key_share < 0.2:
                r = Judgement(False, r.observed, r.baseline, r.threshold, r.score)
            results["runaway_key"] = r
            if top is not None and r.anomalous:
                st.subject["runaway_key"] = top[0]
            assert vol is not None  # a busy window is never partial
            for name in ("spend", "tokens"):
                rt = results.get(name)
                if rt is not None and rt.anomalous:
                    # totals follow traffic: in an hour whose traffic is not yet known, weak
                    st.weak[name] = not vol.hour_known(w.start)

        dets = st.dets
        if "slo_burn_rate" in dets:
            br = dets["slo_burn_rate"]
            assert isinstance(br, BurnRate)
            k = sum(w.errors.get(c, 0) for c in AVAILABILITY_CLASSES)
            results["slo_burn_rate"] = br.update(k, w.requests)
        if "guardrail_spend" in dets:
            sg = dets["guardrail_spend"]
            assert isinstance(sg, SpendGuard)
            results["guardrail_spend"] = None if partial else sg.update(w.cost_usd)
        g = rc.guardrails
        if g.max_p95_ms is not None:
            p95 = w.p95
            results["guardrail_p95"] = None if math.isnan(p95) else _limit(p95, g.max_p95_ms)
        if g.max_error_rate is not None and w.requests >= self.config.detectors.min_requests:
            results["guardrail_error_rate"] = _limit(w.error_rate, g.max_error_rate)
        if g.max_rejection_rate is not None and reviews >= self.config.detectors.min_requests:
            results["guardrail_rejection_rate"] = _limit(w.rejection_rate, g.max_rejection_rate)

        canary = st.canary.on_window(w, st.config.detectors.warmup_windows)
        results.update(canary)
        if any(r.anomalous for r in canary.values()):
            st.subject["canary_class"] = st.canary.error_class() or "other"
            target = st.canary.target()
            st.rollback = (target["kind"], target["to_version"]) if target else None

        # More traffic is not an incident by itself (SPEC's types have no "busy" type): a volume
        # spike counts only as a cost signal beside spend, cost per request, tokens or a loop, or
        # when one trace or request holds most of it (a loop on a route too quiet for a baseline).
        vol_r = results.get("request_volume")
        if vol_r is not None and vol_r.anomalous and vol_r.observed > vol_r.baseline:
            costly = w.max_key_share >= 0.5 or any(
                r is not None and r.anomalous for name, r in results.items() if name in COST_SIGNALS)
            if not costly:
                results["request_volume"] = Judgement(False, vol_r.observed, vol_r.baseline, vol_r.threshold,
                                                      vol_r.score)
        if self.trace is not None:
            self.trace(w, results)
        return self._fire(st, w, results, pooled, at_once)

    def _per_tool(self, st: _RouteState, w: WindowAggregate) -> tuple[str, Judgement] | None:
        """Each tool's tool_error rate, against its own calls where usage events name the tool,
        else against the route's requests (its own baseline share of them).

        Returns the most significant anomalous tool, if any. At most ``MAX_TOOLS`` tools per route
        are followed (the first seen).
        """
        calls: dict[str, int] = {}
        for version, stats in w.versions.get("tool", {}).items():
            if stats[V_REQUESTS]:
                ident = tool_identity(version)
                calls[ident] = calls.get(ident, 0) + int(stats[V_REQUESTS])
        errors: dict[str, int] = {}
        for tool, k in w.tool_errors.items():
            ident = tool_identity(tool)
            errors[ident] = errors.get(ident, 0) + k
        if not calls:  # the events do not say which tool each request called
            if not w.requests:
                return None
            calls = {ident: w.requests for ident in (*st.tools, *errors)}
        best: tuple[str, Judgement] | None = None
        for ident in sorted(calls):
            det = st.tools.get(ident)
            if det is None:
                if len(st.tools) >= MAX_TOOLS:
                    continue
                det = st.tools[ident] = ProportionTest(min_trials=ERROR_MIN_TRIALS, min_hot=TOOL_MIN_HOT)
            k = errors.get(ident, 0)
            r = det.update(k, max(calls[ident], k))
            if r.anomalous and (best is None or r.score > best[1].score):
                best = (ident, r)
        return best

    def _fire(self, st: _RouteState, w: WindowAggregate, results: dict[str, Judgement | None],
              pooled: bool = False, at_once: bool = False) -> list[Firing]:
        """Step each signal's alarm with its judgement; a firing for each alarm that is on.

        ``pooled``: the latency values sum up several quiet windows (a second one is a quarter of an hour
        away); one far past its threshold (:func:`_far_beyond`) fires without waiting for it, as does a
        ``latency_p50`` the log-mean test found (``at_once``)."""
        out: list[Firing] = []
        heightened = st.heightened or None
        if heightened is not None and w.end > max(heightened.values()):
            st.heightened = {}  # every period has passed
            heightened = None
        need: int | None = None
        alarms = st.alarms
        last = st.last
        for name in st.order:
            r = results.get(name)
            hit = False
            if r is not None and r.judged:
                hit = r.anomalous
                alarm = alarms.get(name) or st.alarm(name)
                det = st.dets.get(name)
                # a count test's p-value this small is no one-window fluke: no need to wait for a second
                sure = r.anomalous and (r.score >= RATE_SURE if isinstance(det, ProportionTest)
                                        else r.score >= OVERWHELMING and isinstance(det, CountTest)
                                        or pooled and name in POOLED_LATENCY and _far_beyond(r)
                                        or at_once and name == "latency_p50")
                if heightened is not None:  # only the signals (or type) of an incident that resolved lately
                    need = 1 if w.end <= max(heightened.get("*", 0), heightened.get(SIGNAL_KEY + name, 0),
                                             heightened.get(_type_of(name, st, w), 0)) else None
                on = alarm.step(r.anomalous, 1 if sure else need)
                if not on:
                    if last:
                        last.pop(name, None)  # held only while the alarm is on (see _RouteState.last)
                    continue
                start = w.start
                if r.anomalous and isinstance(det, ProportionTest):  # the span began earlier
                    start = w.start - (det.onset - 1) * (w.end - w.start)
                last[name] = [r.observed, r.baseline, r.threshold, r.score, float(start), float(w.end)]
            else:
                idle = alarms.get(name)
                if idle is None:  # never judged: no alarm yet
                    continue
                on = idle.firing  # nothing judged: the alarm stays as it is
            if not on or name not in st.last:
                continue
            obs, base, thr, score, ws, we = st.last[name]
            itype = _type_of(name, st, w)
            subject = st.subject.get(name)
            out.append(Firing(
                route=w.route, signal=name, incident_type=itype, detector=_detector_name(st, name),
                observed=obs, baseline=base, threshold=thr, score=score,
                window_start=int(ws), window_end=int(we), subject=subject,
                magnitude=_magnitude(obs, base, name), weak=st.weak.get(name, False),
                rollback=st.rollback if name in CANARY_SIGNALS else None, hit=hit,
            ))
        return out


def _calm(alarm: Alarm, n: int) -> None:
    """``alarm.step(False)`` ``n`` times (``n`` > 0) on an alarm that is off."""
    alarm.seen += n
    alarm.hits = 0
    alarm.calm += n


def _lvl(det: Stateful, x: float, ts: int, n: int = 1) -> Judgement:
    assert isinstance(det, LevelShift)
    return det.update(x, ts, n)


def _limit(x: float, limit: float) -> Judgement:
    return Judgement(x > limit, x, limit, limit, 1.0 if x > limit else 0.0)


def _detector_name(st: _RouteState, name: str) -> str:
    if name == "latency_p50" and st.subject.get(name) == "geometric mean":
        return "LogMeanShift"
    if name in CANARY_SIGNALS:
        return "CanaryComparison"
    if name.startswith("guardrail_") and name not in st.dets:
        return "StaticLimit"
    return type(st.dets[name]).__name__


def _type_of(name: str, st: _RouteState, w: WindowAggregate) -> str:
    if name in CANARY_SIGNALS:
        if name == "canary_errors":
            cls = st.subject.get("canary_class") or "other"
            return next((itype for classes, itype in ERROR_GROUPS.values() if cls in classes), "performance")
        return {"canary_reviews": "bad_output", "canary_latency": "performance"}.get(name, "cost")
    if name == "request_volume":
        return "cost" if st.subject.get(name) == "spike" else "performance"
    if name in ("guardrail_spend",):
        return "cost"
    if name == "guardrail_rejection_rate":
        return "bad_output"
    if name == "guardrail_error_rate":
        if not w.errors:
            return "performance"
        top = max(sorted(w.errors), key=w.errors.__getitem__)
        for classes, itype in ERROR_GROUPS.values():
            if top in classes:
                return itype
        return "performance"
    for spec in SIGNALS:
        if spec.name == name:
            return spec.incident_type
    return "performance"


def _magnitude(obs: float, base: float, name: str) -> float:
    if not (math.isfinite(obs) and math.isfinite(base)):
        return 1.0
    if name == "request_volume" and obs < base:
        return base / max(obs, 1.0) if base > 0 else 1.0
    if name == "slo_burn_rate":
        return obs / 6.0
    return obs / base if base > 0 else (10.0 if obs > 0 else 1.0)


def _far_beyond(r: Judgement) -> bool:
    """An upward level judgement at least twice as far past its baseline as its threshold is, on the log
    scale the level tests judge (observed x baseline >= threshold squared): for a value pooled from five
    or more samples that is twice the deviations the test asks for.

    >>> [_far_beyond(Judgement(True, x, 1000.0, 1900.0, 1.0)) for x in (4000.0, 3000.0)]
    [True, False]
    """
    return r.baseline > 0 and r.threshold > r.baseline and r.observed * r.baseline >= r.threshold * r.threshold
