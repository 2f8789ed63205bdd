"""Labelled synthetic scenarios: generator, scorer and bench (no Kafka needed)."""

from detector.scenarios.generate import generate_scenario
from detector.scenarios.model import Label, Scenario, read_labels, write_scenario

__all__ = ["generate_scenario", "Label", "Scenario", "read_labels", "write_scenario"]
