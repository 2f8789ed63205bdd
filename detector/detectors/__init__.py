"""Online detectors, one per file, on one contract (``base.py``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TypeVar

from detector.detectors.base import Stateful, is_abstract

__all__ = ["detector_classes"]

T = TypeVar("T", bound=Stateful)


def detector_classes(kind: type[T]) -> list[type[T]]:
    """Every concrete subclass of ``kind`` defined in a module of this package, sorted by name.

    Imports each module of the package; the contract tests and benchmarks walk this list.

    >>> from detector.detectors.base import UnivariateDetector
    >>> [c.__name__ for c in detector_classes(UnivariateDetector)]
    ['RobustLikelihood']
    """
    found: dict[str, type[T]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, kind) and not is_abstract(obj) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]
