"""The compiled hot path: which modules mypyc compiles, and the guard that runs their source instead when
the extensions do not match it.

``pip install`` compiles :data:`MODULES` with mypyc when it can (``setup.py``; the same code, as C
extensions beside the sources) and records each source's SHA-256 in ``_compiled.json``. At import,
:func:`install` checks those digests: when any source changed since the build (an edit in an editable
checkout), when the record is missing, or when ``DETECTOR_PURE_PYTHON`` is set, every module of the set
loads from its source. All or none: compiled modules call each other directly, so one fresh source among
stale extensions would not be run by its neighbours. Decisions are the same either way (a test compares
the incidents of both on a fleet scenario); only the speed differs.

This module imports only the standard library: ``setup.py`` reads it before the package is installed.

>>> "detector.pipeline" in MODULES, source_path("detector.windows.windower").name
(True, 'windower.py')
>>> len(digest(source_path("detector.pipeline")))
64
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["MODULES", "GROUP", "RECORD", "PURE_ENV", "source_path", "digest", "digests", "fresh", "install",
           "active", "describe", "load_source"]

#: The modules mypyc compiles: the per-event path (decode, duplicate filter, windower, aggregates) and the
#: per-window path (detectors, change tracking, incident engine). Each is typed strictly enough for mypyc,
#: which checks annotations at run time.
MODULES: tuple[str, ...] = (
    "detector.pipeline",
    "detector.ingest.decode",
    "detector.ingest.dedup",
    "detector.windows.windower",
    "detector.windows.aggregate",
    "detector.windows.sketch",
    "detector.detectors.numeric",
    "detector.detectors.routes",
    "detector.detectors.proportion",
    "detector.detectors.robust_likelihood",
    "detector.detectors.signals",
    "detector.detectors.canary",
    "detector.detectors.firing",
    "detector.detectors.guard",
    "detector.detectors.logmean",
    "detector.incidents.engine",
    "detector.incidents.changes",
    "detector.incidents.groups",
)
#: The name of the extension that holds the compiled code of all of them (each module's own is a shim).
GROUP = "detector._native"
#: The file beside this one in which the build records the digest of each source it compiled.
RECORD = "_compiled.json"
#: Set (to anything but empty) to run the sources even where extensions were built.
PURE_ENV = "DETECTOR_PURE_PYTHON"

_PACKAGE = Path(__file__).resolve().parent
_installed = False


def source_path(module: str) -> Path:
    """The source file of a module of the package."""
    parts = module.split(".")
    return _PACKAGE.joinpath(*parts[1:-1], parts[-1] + ".py")


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(modules: Sequence[str] = MODULES) -> dict[str, str]:
    """What the build records: module -> digest of its source."""
    return {m: digest(source_path(m)) for m in modules}


def fresh(package: Path = _PACKAGE) -> bool:
    """Whether the extensions were built from the sources as they are now (False when no build recorded)."""
    try:
        recorded = json.loads((package / RECORD).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or set(recorded) != set(MODULES):
        return False
    try:
        return all(recorded[m] == digest(source_path(m)) for m in MODULES)
    except OSError:
        return False


class _SourceFirst:
    """A meta-path finder that loads the compiled set from source (an extension beside it is ignored)."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(name, source_path(name))


def install() -> None:
    """Run the sources when the extensions are stale or ``DETECTOR_PURE_PYTHON`` is set (see module doc).
    Called once by ``detector/__init__``, before any module of the set is imported."""
    global _installed
    if _installed:
        return
    _installed = True
    built = any(_PACKAGE.glob(GROUP.split(".")[-1] + "__mypyc*"))
    if built and (os.environ.get(PURE_ENV) or not fresh()):
        sys.meta_path.insert(0, _SourceFirst())


def active() -> bool:
    """Whether the compiled set runs in this process (imports :mod:`detector.pipeline` to tell)."""
    import detector.pipeline

    file = detector.pipeline.__file__ or ""
    return file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def describe() -> str:
    """One line for benchmark output: which build ran."""
    if active():
        return f"build: compiled (mypyc, {len(MODULES)} modules)"
    return "build: pure Python (" + (f"{PURE_ENV} set" if os.environ.get(PURE_ENV) else "not compiled, or stale") + ")"


def load_source(module: str) -> ModuleType:
    """A module of the set loaded afresh from its source, under its own name but outside ``sys.modules``
    (the compiled one stays imported): its doctests run on this (mypyc keeps no docstrings)."""
    importlib.import_module(module)  # the imported one stays in sys.modules (dataclasses look there)
    spec = importlib.util.spec_from_file_location(module, source_path(module))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
