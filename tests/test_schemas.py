"""The committed JSON Schemas match the models, and the examples match the schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from detector.config import Config
from detector.events import IncidentEvent, TelemetryEvent
from detector.schemas import SCHEMA_FILES, generate, render

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_committed_schema_is_current(name: str) -> None:
    """A model change without `python -m detector.schemas` fails here."""
    assert (SCHEMAS / name).read_text(encoding="utf-8") == render(generate()[name])


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("telemetry-*.json")), ids=lambda p: p.name)
def test_telemetry_examples_valid(path: Path) -> None:
    """Each shipped telemetry example is valid for the schema and for the decoder."""
    data = path.read_bytes()
    jsonschema.validate(json.loads(data), _schema("telemetry-event.schema.json"))
    msgspec.json.decode(data, type=TelemetryEvent)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("incident-*.json")), ids=lambda p: p.name)
def test_incident_examples_valid(path: Path) -> None:
    """Each shipped incident example is valid for the schema and the model."""
    data = path.read_bytes()
    jsonschema.validate(json.loads(data), _schema("incident-event.schema.json"))
    msgspec.json.decode(data, type=IncidentEvent)


def test_config_example_valid() -> None:
    """The shipped config example passes the same validation `config check` uses."""
    data = json.loads((EXAMPLES / "config.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, _schema("config.schema.json"))
    Config.model_validate(data)


def test_schema_rejects_bad_telemetry() -> None:
    """The schema is not vacuous: a wrong type and an unknown event type are invalid."""
    schema = _schema("telemetry-event.schema.json")
    good = json.loads((EXAMPLES / "telemetry-latency.json").read_text(encoding="utf-8"))
    no_route = {k: v for k, v in good.items() if k != "route"}
    for bad in ({**good, "latency_ms": "slow"}, {**good, "type": "mystery"}, no_route):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
