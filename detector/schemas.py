"""JSON Schemas of the wire formats and the config, generated from the models.

``python -m detector.schemas`` rewrites ``schemas/*.schema.json``; a test
fails when the committed files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from detector.config import Config
from detector.events import IncidentEvent, TelemetryEvent

__all__ = ["generate", "write", "SCHEMA_FILES"]

SCHEMA_FILES = ("telemetry-event.schema.json", "incident-event.schema.json", "config.schema.json")


def generate() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every wire format."""
    telemetry = msgspec.json.schema(TelemetryEvent)
    telemetry["title"] = "Telemetry event (SPEC section 1)"
    incident = msgspec.json.schema(IncidentEvent)
    incident["title"] = "Incident event (SPEC section 2)"
    config = Config.model_json_schema()
    config["title"] = "detector config"
    return dict(zip(SCHEMA_FILES, (telemetry, incident, config), strict=True))


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in generate().items():
        (folder / name).write_text(render(schema), encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas"))
