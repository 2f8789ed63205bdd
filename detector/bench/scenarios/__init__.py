"""Labelled synthetic scenarios: generator, scorer and bench (no Kafka needed).

Two suites: :func:`generate_scenario` (six routes, two days) and :func:`generate_fleet`
(28-30 routes, a week from a Thursday, canaries, provider outages, ramps, late flushes).
"""

from detector.bench.scenarios.fleet_generate import generate_fleet
from detector.bench.scenarios.generate import generate_scenario
from detector.bench.scenarios.model import Label, Scenario, read_labels, write_scenario

__all__ = ["generate_fleet", "generate_scenario", "Label", "Scenario", "read_labels", "write_scenario"]
