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
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from detector.events import Action, IncidentType

__all__ = [
    "Config", "RouteConfig", "Receiver", "DeliveryConfig", "ConfigError", "load_config", "config_errors",
    "parse_config", "with_overrides",
]

ActionName = Action  # one list of containment actions, in events.py
IncidentTypeName = IncidentType


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` is not a number: pydantic would read it as 1 (a typo such as ``size_s = true`` would pass)."""
        if isinstance(value, bool) and info.field_name is not None:
            ann = cls.model_fields[info.field_name].annotation
            kinds = set(get_args(ann)) if get_args(ann) else {ann}
            if bool not in kinds and kinds & {int, float}:
                raise ValueError("expected a number, not true or false")
        return value


class KafkaSecurity(_Model):
    """TLS and SASL settings passed through to the Kafka clients.

    Secrets never sit in the file in clear if you do not want them to: each may
    instead name an environment variable (``*_env``) or a file (``*_file``)
    that holds it. They are kept as :class:`pydantic.SecretStr`, so a repr or
    an error message never shows them.
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_env: str | None = None
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None
    ssl_password_env: str | None = None
    ssl_password_file: str | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        sasl = self.protocol.startswith("SASL")
        if sasl and (self.sasl_mechanism is None or not self.sasl_username):
            raise ValueError("SASL protocols need sasl_mechanism and sasl_username")
        if sum(x is not None for x in (self.sasl_password, self.sasl_password_env, self.sasl_password_file)) > 1:
            raise ValueError("give the SASL password one way: sasl_password, sasl_password_env or sasl_password_file")
        if sum(x is not None for x in (self.ssl_password, self.ssl_password_env, self.ssl_password_file)) > 1:
            raise ValueError("give the key password one way: ssl_password, ssl_password_env or ssl_password_file")
        return self


class KafkaConfig(_Model):
    """Where the service reads telemetry and writes incidents (SPEC sections 2b and 3)."""

    bootstrap_servers: list[str] = Field(default_factory=lambda: ["localhost:9092"], min_length=1)
    telemetry_topics: list[str] = Field(default_factory=lambda: ["ai.telemetry"], min_length=1)
    incidents_topic: str = "ai.incidents"
    dlq_topic: str = "ai.telemetry.dlq"
    control_topic: str = "ai.control"
    containment_topic: str = "ai.containment"
    #: Compacted topic holding each input partition's state (key: input partition and route).
    changelog_topic: str = "detector.changelog"
    #: Compacted topic of the route inventory (key: route), for `detector routes --bootstrap-servers`.
    inventory_topic: str = "detector.inventory"
    #: Each instance writes the inventory of its routes this often (0: never).
    inventory_interval_s: float = Field(60.0, ge=0, le=86400)
    group_id: str = "detector"
    client_id: str = "detector"
    #: Where a partition without checkpointed state or committed offset starts.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(10_000, ge=1000, le=300_000)
    heartbeat_interval_ms: int = Field(1_000, ge=100, le=60_000)
    #: Checkpoint (changelog, then offsets) at most this often; also on revoke and shutdown.
    checkpoint_interval_s: float = Field(5.0, gt=0, le=3600)
    #: A caught-up partition that receives nothing for this long of wall-clock time moves its
    #: watermark with the wall clock (so a route whose whole partition went silent is seen to
    #: stop); 0 turns this off.
    idle_timeout_s: float = Field(300.0, ge=0)
    #: Longest wait between reconnection attempts when the broker is unreachable.
    max_backoff_s: float = Field(30.0, gt=0, le=600)
    #: Create missing topics at start (needs the right to do so).
    create_topics: bool = True
    #: Partitions for the topics the service creates (the changelog gets at least the input's).
    partitions: int = Field(6, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=16)
    security: KafkaSecurity = KafkaSecurity()


class MetricsConfig(_Model):
    port: int = Field(9108, ge=0, le=65535)


class WindowsConfig(_Model):
    """Event-time windowing: tumbling windows closed by a watermark."""

    size_s: int = Field(60, ge=1, le=3600)
    allowed_lateness_s: int = Field(120, ge=0, le=86400)
    #: Routes that send nothing for this long are evicted (their incidents resolved, what was learned
    #: forgotten). Four days: a weekday-only job keeps its learning over a long weekend.
    idle_evict_s: int = Field(345600, ge=60)
    #: A timestamp this far ahead of stream time is rejected as absurd.
    max_future_s: int = Field(3600, ge=1)
    #: An event this far ahead of stream time (or this far behind a closed window) comes from a skewed
    #: clock: it is still accepted up to ``max_future_s`` (or rejected as late), and counted for its route.
    max_skew_s: int = Field(300, ge=0, le=86400)
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


_URL = re.compile(r"^https?://[A-Za-z0-9._~%-]+(:[0-9]{1,5})?(/[^\s]*)?$")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


class Receiver(_Model):
    """Where incident events are delivered besides the incidents topic (``[[receivers]]``).

    ``kind`` says the protocol: ``alertmanager`` (``url`` is Alertmanager's base URL; alerts go to
    ``/api/v2/alerts`` and are re-sent while open), ``pagerduty`` (Events API v2; ``url`` defaults to
    PagerDuty's, the routing key is the secret), ``webhook`` (the incident event as JSON, signed with
    HMAC-SHA256; the signing key is the secret). A secret is given one way: in the file (``secret``),
    an environment variable (``secret_env``) or a file (``secret_file``).

    >>> Receiver.model_validate({"name": "pd", "kind": "pagerduty", "secret_env": "PD_KEY"}).target
    'https://events.pagerduty.com/v2/enqueue'
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal["alertmanager", "pagerduty", "webhook"]
    url: str | None = None
    #: Route globs whose incidents go to this receiver (any one matching is enough).
    routes: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    secret: SecretStr | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    #: Seconds before one HTTP request is given up (and retried).
    timeout_s: float = Field(5.0, gt=0, le=120)
    #: Messages waiting for this receiver at most; more are dropped (and counted) instead of slowing anything.
    queue_size: int = Field(1000, ge=1, le=1_000_000)
    #: Longest wait between two attempts of a message the receiver did not take (5xx, timeout, refused).
    max_backoff_s: float = Field(60.0, gt=0, le=3600)
    #: Alertmanager: open incidents are re-sent this often (an alert not re-sent ends by itself).
    resend_s: float = Field(60.0, ge=1, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not _URL.match(value):
            raise ValueError("not an http:// or https:// URL with a host")
        return value

    @model_validator(mode="after")
    def _needs(self) -> Receiver:
        if self.url is None and self.kind != "pagerduty":
            raise ValueError(f"a {self.kind} receiver needs url")
        given = sum(x is not None for x in (self.secret, self.secret_env, self.secret_file))
        if given > 1:
            raise ValueError("give the secret one way: secret, secret_env or secret_file")
        if given == 0 and self.kind != "alertmanager":
            what = "the routing key" if self.kind == "pagerduty" else "the signing key"
            raise ValueError(f"a {self.kind} receiver needs {what}: secret, secret_env or secret_file")
        return self

    @property
    def target(self) -> str:
        """The URL requests go to."""
        if self.kind == "pagerduty":
            return self.url or PAGERDUTY_URL
        assert self.url is not None
        return self.url.rstrip("/") + "/api/v2/alerts" if self.kind == "alertmanager" else self.url

    def matches(self, route: str) -> bool:
        """Whether incidents on ``route`` go to this receiver.

        >>> pd = Receiver(name="pd", kind="pagerduty", secret="k", routes=["payments.*"])
        >>> pd.matches("payments.refund"), pd.matches("support.reply")
        (True, False)
        """
        return any(fnmatch.fnmatchcase(route, g) for g in self.routes)


class DeliveryConfig(_Model):
    """How the service reads its incidents topic back to deliver them to the receivers."""

    #: Consumer group of the delivery (default: the service's group_id with ``.delivery``).
    group_id: str | None = None
    #: At a (re)start, incidents up to this old are read back to know which are open.
    lookback_s: int = Field(7 * 86400, ge=0)
    #: Delivered positions are committed this often.
    commit_interval_s: float = Field(2.0, gt=0, le=600)


InputFormat = Literal["native", "otlp_proto", "otlp_json", "litellm"]
ErrorClassName = Literal["timeout", "rate_limited", "provider_error", "tool_error", "validation_error",
                         "access_denied", "retrieval_empty", "retrieval_stale", "other"]


class OtlpInput(_Model):
    """How OpenTelemetry GenAI spans map onto telemetry events (SPEC 2c)."""

    #: The attribute naming the route: looked up on the span, then on its resource.
    route_attribute: str = "service.name"
    #: The attribute naming the tenant (span, then resource); none by default.
    tenant_attribute: str | None = None
    #: ``error.type`` values (exact, or an HTTP status code as text) -> SPEC error class; laid over the
    #: built-in table (timeouts, 429 as rate_limited, 401/403 as access_denied, 5xx as provider_error).
    error_types: dict[str, ErrorClassName] = {}


class Price(_Model):
    """A model's price, for spans that carry tokens but no cost (keep it up to date: prices change)."""

    input_per_1k: float = Field(ge=0, le=1000)
    output_per_1k: float = Field(ge=0, le=1000)


class LiteLLMInput(_Model):
    """Where LiteLLM's StandardLoggingPayload carries the route and the tenant (dotted paths)."""

    route_key: str = Field("model_group", min_length=1)
    tenant_key: str = Field("metadata.user_api_key_team_id", min_length=1)


class InputConfig(_Model):
    """Input formats besides SPEC section 1 (SPEC 2c)."""

    #: Telemetry topic -> its format; a topic not named here is ``native``.
    formats: dict[str, InputFormat] = {}
    otlp: OtlpInput = OtlpInput()
    litellm: LiteLLMInput = LiteLLMInput()
    #: Model -> price per 1,000 input and output tokens.
    prices: dict[str, Price] = {}


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
    #: Alert receivers, each for the routes its globs match (several may match one route).
    receivers: list[Receiver] = []
    delivery: DeliveryConfig = DeliveryConfig()
    input: InputConfig = InputConfig()

    @field_validator("receivers")
    @classmethod
    def _unique_receivers(cls, value: list[Receiver]) -> list[Receiver]:
        names = [r.name for r in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"receiver names must be unique: {', '.join(dup)}")
        return value

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
    except ValueError as err:  # a number too long to read, and the like
        raise ConfigError([f"(file): not valid {fmt.upper()}: {str(err).splitlines()[0][:200]}"]) from None
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def with_overrides(config: Config, updates: dict[str, dict[str, Any]]) -> Config:
    """``config`` with some sections' fields replaced (command-line flags), validated again.

    >>> with_overrides(Config(), {"kafka": {"group_id": "g2"}}).kafka.group_id
    'g2'
    """
    data = config.model_dump()  # python mode: secrets stay SecretStr, never turned into text
    for section, fields in updates.items():
        data[section] = {**data.get(section, {}), **fields}
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
    except FileNotFoundError:
        raise ConfigError([f"(file): no such file: {p}"]) from None
    except IsADirectoryError:
        raise ConfigError([f"(file): {p} is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"(file): permission denied: {p}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"(file): {p} is not UTF-8 text"]) from None
    except OSError as err:
        raise ConfigError([f"(file): cannot read {p}: {err.strerror or 'input/output error'}"]) from None
    return parse_config(text, "json" if p.suffix.lower() == ".json" else "toml")
