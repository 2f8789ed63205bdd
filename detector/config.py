"""Validated configuration: one loader for `detector config check`, replay and the service.

Config files are TOML or JSON. Unknown keys are errors (a typo must not be
silently ignored), and every error names the path of the bad field.

>>> cfg = Config.model_validate({"windows": {"size_s": 60}})
>>> cfg.windows.allowed_lateness_s
120
>>> errs = config_errors({"windows": {"size_s": -5}, "routes": {"a.*": {"tier": 9}}})
>>> [e.split(":")[0] for e in errs]
['routes.a.*.tier', 'windows.size_s']
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from detector.events import Action, IncidentType

__all__ = ["Config", "RouteConfig", "ConfigError", "load_config", "config_errors", "parse_config"]

ActionName = Action  # one list of containment actions, in events.py
IncidentTypeName = IncidentType


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Model):
    """Where the service reads telemetry and writes incidents."""

    bootstrap_servers: list[str] = ["localhost:9092"]
    telemetry_topics: list[str] = Field(default_factory=lambda: ["ai.telemetry"], min_length=1)
    incidents_topic: str = "ai.incidents"
    dlq_topic: str = "ai.telemetry.dlq"
    changelog_topic: str = "detector.changelog"
    control_topic: str = "detector.control"
    group_id: str = "detector"


class MetricsConfig(_Model):
    port: int = Field(9108, ge=0, le=65535)


class WindowsConfig(_Model):
    """Event-time windowing: tumbling windows closed by a watermark."""

    size_s: int = Field(60, ge=1, le=3600)
    allowed_lateness_s: int = Field(120, ge=0, le=86400)
    #: Routes that send nothing for this long are evicted (their incidents resolved).
    idle_evict_s: int = Field(86400, ge=60)
    #: A timestamp this far ahead of the watermark is rejected as absurd.
    max_future_s: int = Field(3600, ge=1)
    #: How many recent event_ids are remembered to drop duplicates.
    dedup_capacity: int = Field(200_000, ge=0, le=50_000_000)
    #: Hard cap on routes tracked at once; the least recently seen is evicted.
    max_routes: int = Field(10_000, ge=1)
    #: Largest message accepted, bytes.
    max_message_bytes: int = Field(65536, ge=256)

    @model_validator(mode="after")
    def _idle_after_windows(self) -> WindowsConfig:
        if self.idle_evict_s < 10 * self.size_s:
            raise ValueError("idle_evict_s must be at least 10 windows (size_s), or routes are forgotten "
                             "before their detectors can learn")
        return self


class DetectorsConfig(_Model):
    """Defaults for the per-route detectors."""

    #: Windows of history before any alarm.
    warmup_windows: int = Field(60, ge=0)
    #: Consecutive anomalous windows before firing.
    persistence: int = Field(2, ge=1)
    #: Consecutive healthy windows before a signal clears.
    clear_after: int = Field(5, ge=1)
    #: Minimum requests in a window for per-window totals (spend, tokens, the busiest trace) and
    #: static rate guardrails to be judged.
    min_requests: int = Field(5, ge=1)


class SLO(_Model):
    """An availability objective; enables multi-window burn-rate alerts."""

    error_rate: float = Field(..., gt=0, lt=1, description="allowed error ratio, e.g. 0.01 for 99%")


class Guardrails(_Model):
    """Static limits set by operators; a breach fires regardless of baselines."""

    max_p95_ms: float | None = Field(None, gt=0)
    max_error_rate: float | None = Field(None, gt=0, le=1)
    max_spend_per_hour: float | None = Field(None, gt=0)
    max_rejection_rate: float | None = Field(None, gt=0, le=1)


class RouteConfig(_Model):
    """What a route is and what it has: drives triage and containment."""

    owner: str | None = None
    escalation: str | None = None
    tier: int = Field(2, ge=1, le=3, description="1 = most critical")
    customer_facing: bool = False
    write_tools: list[str] = []
    sensitive_sources: bool = False
    fallback_route: str | None = None
    auto_actions: list[ActionName] = []
    containment: dict[IncidentTypeName, list[ActionName]] = {}
    slo: SLO | None = None
    guardrails: Guardrails = Guardrails()


class IncidentsConfig(_Model):
    """Incident lifecycle settings."""

    #: Healthy time before an incident resolves.
    resolve_after_s: int = Field(900, ge=60)
    #: Changes this long before an incident's start are candidates for its cause.
    change_lookback_s: int = Field(7200, ge=0)
    #: Minimum time between two `updated` messages of one incident.
    update_interval_s: int = Field(900, ge=0)
    #: Heightened monitoring after an incident resolves.
    heightened_s: int = Field(3600, ge=0)


class Silence(_Model):
    """Suppress notification (not tracking) for routes matching a glob."""

    route: str
    start: datetime
    end: datetime
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Silence:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a timezone (e.g. 2026-01-01T00:00:00Z)")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Config(_Model):
    """The whole configuration. Every section has working defaults."""

    kafka: KafkaConfig = KafkaConfig()
    metrics: MetricsConfig = MetricsConfig()
    windows: WindowsConfig = WindowsConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    #: Route glob -> settings; the first matching glob (in file order) wins.
    routes: dict[str, RouteConfig] = {}
    silences: list[Silence] = []

    def route(self, name: str) -> RouteConfig:
        """Settings for a route: the first matching glob, else the defaults."""
        for pattern, rc in self.routes.items():
            if fnmatch.fnmatchcase(name, pattern):
                return rc
        return _DEFAULT_ROUTE


_DEFAULT_ROUTE = RouteConfig()


class ConfigError(Exception):
    """The config is invalid; ``errors`` lists each problem with its field path."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def _format(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        out.append(f"{path}: {e['msg']}")
    return sorted(out)


def config_errors(data: Any) -> list[str]:
    """Problems with a parsed config document, each as ``path: message``."""
    try:
        Config.model_validate(data)
    except ValidationError as err:
        return _format(err)
    return []


def parse_config(text: str, fmt: Literal["toml", "json"]) -> Config:
    """Parse and validate config text; raises :class:`ConfigError`."""
    try:
        data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ConfigError([f"(file): not valid {fmt.upper()}: {err}"]) from None
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def load_config(path: str | Path | None) -> Config:
    """Load a TOML or JSON config file; ``None`` gives the built-in defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"(file): cannot read {p}: {err.__class__.__name__}"]) from None
    return parse_config(text, "json" if p.suffix.lower() == ".json" else "toml")
