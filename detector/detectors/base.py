"""The detector contract, in the style of river.

Every detector stores its constructor arguments unchanged, under the same
names, and builds all derived (learned) state in ``_reset()``. That makes
``clone()``, ``repr`` and parameter listing automatic, and lets state be
snapshotted as plain JSON-able values so that the service can checkpoint it
to a changelog topic (no pickle: a changelog must never execute code).

Two shapes of detector share the contract:

* :class:`UnivariateDetector` scores a stream of floats
  (``score_one(x)`` reads, ``learn_one(x)`` updates, higher is more
  anomalous, scores in [0, 1]);
* rate detectors (see ``detectors/proportion.py``) score counts
  ``(k, n)`` so that low-volume routes are judged with a proportion test,
  not a raw ratio.

>>> class Mean(UnivariateDetector):
...     def __init__(self, alpha: float = 0.5):
...         self.alpha = alpha
...         super().__init__()
...     def _reset(self) -> None:
...         self.mean = 0.0
...     def learn_one(self, x: float) -> None:
...         self.mean += self.alpha * (x - self.mean)
...     def score_one(self, x: float) -> float:
...         return min(1.0, abs(x - self.mean) / 100.0)
>>> d = Mean(alpha=0.5)
>>> d.learn_one(10.0)
>>> d.mean
5.0
>>> restored = Mean.from_snapshot(d.snapshot())
>>> restored.mean, restored.alpha
(5.0, 0.5)
>>> d.clone().mean
0.0
>>> d
Mean(alpha=0.5)
"""

from __future__ import annotations
import __future__

import abc
import ast
import inspect
import math
import sys
from collections import deque
from typing import Any, ClassVar, TypeVar

import numpy as np

from detector.compiled import source_path
from detector.detectors.numeric import ew_weight

__all__ = ["Stateful", "UnivariateDetector", "encode_state", "decode_state", "ew_weight", "is_abstract"]

T = TypeVar("T", bound="Stateful")

_REGISTRY: dict[str, type[Stateful]] = {}


class Stateful:
    """Constructor arguments as stored parameters; learned state via ``_reset``.

    Subclasses assign every constructor argument to an attribute of the same
    name, then call ``super().__init__()``, which calls ``_reset()``.

    Abstract methods are marked with ``abc.abstractmethod`` as usual, and a class that leaves one undefined
    is abstract (:func:`is_abstract`: never registered, never made), without ``ABCMeta``: every
    ``isinstance`` against a detector class is then a plain type check. (A class compiled by mypyc
    shares its base's ABC cache, so one check could poison the answers for another class.)

    >>> class Half(UnivariateDetector):
    ...     def _reset(self) -> None: ...
    ...     def learn_one(self, x: float) -> None: ...
    >>> is_abstract(Half), sorted(Half._abstract)
    (True, ['score_one'])
    >>> Half()
    Traceback (most recent call last):
    TypeError: Can't instantiate abstract class Half without an implementation for score_one
    """

    _registry_name: ClassVar[str]
    #: The abstract methods the class leaves undefined (worked out for each subclass).
    _abstract: ClassVar[frozenset[str]] = frozenset({"_reset"})
    #: No instance dict of its own: a subclass that declares ``__slots__`` (the small, numerous ones: an alarm
    #: per signal and route) holds its fields in a few machine words; the others get a dict as usual.
    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._abstract = frozenset(name for name in dir(cls)
                                  if getattr(getattr(cls, name, None), "__isabstractmethod__", False))
        if not cls._abstract:
            name = f"{cls.__module__}.{cls.__qualname__}"
            cls._registry_name = name
            _REGISTRY[name] = cls

    def __init__(self) -> None:
        if self._abstract:
            raise TypeError(f"Can't instantiate abstract class {type(self).__name__} without an implementation "
                            f"for {', '.join(sorted(self._abstract))}")
        self._reset()

    @abc.abstractmethod
    def _reset(self) -> None:
        """Build the learned state from the parameters."""

    # -- parameters -----------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = init_signature(cls)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def _get_params(self) -> dict[str, Any]:
        """The constructor arguments, as given."""
        return {name: getattr(self, name) for name in self._param_names()}

    def clone(self: T) -> T:
        """A new detector with the same parameters and no learned state."""
        params = {k: (v.clone() if isinstance(v, Stateful) else v) for k, v in self._get_params().items()}
        return type(self)(**params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"{type(self).__name__}({args})"

    # -- snapshots ------------------------------------------------------
    def _fields(self) -> dict[str, Any]:
        """Every attribute: the slots of the class and its bases, then the instance dict if it has one."""
        out = {name: getattr(self, name) for cls in reversed(type(self).__mro__)
               for name in (*cls.__dict__.get("__slots__", ()), *cls.__dict__.get("__mypyc_attrs__", ()))
               if name != "__dict__" and hasattr(self, name)}
        if hasattr(self, "__dict__"):
            out.update(vars(self))
        return out

    def _state(self) -> dict[str, Any]:
        params = set(self._param_names())
        return {k: v for k, v in self._fields().items() if k not in params}

    def snapshot(self) -> dict[str, Any]:
        """Parameters (those that differ from the defaults) and learned state as JSON-able values."""
        defaults = _defaults(type(self))
        params = {k: v for k, v in self._get_params().items() if k not in defaults or defaults[k] != v}
        return {
            "class": self._registry_name,
            "params": encode_state(params),
            "state": encode_state(self._state()),
        }

    @classmethod
    def from_snapshot(cls: type[T], snap: dict[str, Any]) -> T:
        """Rebuild a detector from :meth:`snapshot` output."""
        klass = _REGISTRY.get(snap["class"])
        if klass is None or not issubclass(klass, cls):
            raise ValueError(f"unknown detector class in snapshot: {snap['class']!r}")
        obj = klass(**decode_state(snap["params"]))
        known = None if hasattr(obj, "__dict__") else set(obj._fields())
        for k, v in decode_state(snap["state"]).items():
            if known is None or k in known:  # a slotted class ignores fields of older versions
                if v.__class__ is deque and isinstance(getattr(obj, k, None), list):
                    v = list(v)  # a history checkpointed as a deque (before they were lists); bounded alike
                setattr(obj, k, v)
        return obj


def is_abstract(cls: type[Stateful]) -> bool:
    """Whether ``cls`` leaves an abstract method undefined (the ``inspect.isabstract`` of a class without
    ``ABCMeta``)."""
    return bool(cls._abstract)


def _defaults(cls: type) -> dict[str, Any]:
    sig = init_signature(cls)
    return {p.name: p.default for p in sig.parameters.values() if p.default is not inspect.Parameter.empty}


_SIGNATURES: dict[type, inspect.Signature] = {}


def init_signature(cls: type) -> inspect.Signature:
    """The signature of ``cls.__init__``: its parameters are a detector's parameters.

    A class compiled by mypyc (detector/compiled.py) shows only ``(*args, **kwargs)``; its signature is then
    read from the source of its ``__init__``: the definition alone, with an empty body, made in the module's
    namespace (so defaults that name constants have their values).

    >>> from detector.detectors.signals import LevelShift
    >>> list(init_signature(LevelShift).parameters)[:3]
    ['self', 'z', 'min_ratio']
    """
    sig = _SIGNATURES.get(cls)
    if sig is None:
        sig = _SIGNATURES[cls] = _read_signature(cls)
    return sig


def _read_signature(cls: type) -> inspect.Signature:
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    if not any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
        return sig
    for klass in cls.__mro__:  # the class that defines __init__
        if "__init__" in klass.__dict__:
            break
    module = sys.modules[klass.__module__]
    try:
        tree = ast.parse(source_path(klass.__module__).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return sig
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == klass.__name__:
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                    bare = ast.FunctionDef(name="__init__", args=fn.args, body=[ast.Pass()], decorator_list=[],
                                           returns=None, type_comment=None)
                    code = compile(ast.fix_missing_locations(ast.Module(body=[bare], type_ignores=[])),
                                   "<signature>", "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True)
                    space = dict(vars(module))
                    exec(code, space)  # only the def: its defaults are evaluated, nothing else runs
                    return inspect.signature(space["__init__"])
    return sig


class UnivariateDetector(Stateful):
    """Scores a stream of floats. Higher is more anomalous; scores in [0, 1]."""

    __slots__ = ()  # a subclass that declares slots has no instance dict (see Stateful)

    @abc.abstractmethod
    def learn_one(self, x: float) -> None:
        """Update the learned state with one value."""

    @abc.abstractmethod
    def score_one(self, x: float) -> float:
        """Anomaly score of ``x`` against the state so far; does not learn."""

    def update(self, x: float) -> float:
        """Score ``x``, then learn it. Returns the score."""
        s = self.score_one(x)
        self.learn_one(x)
        return s


# -- JSON-able encoding of learned state --------------------------------------

def encode_state(value: Any) -> Any:
    """Encode state into JSON-able values (tagged where JSON is ambiguous)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"__f": repr(value)}
    if isinstance(value, np.generic):
        return encode_state(value.item())
    if isinstance(value, Stateful):
        return {"__obj": value.snapshot()}
    if isinstance(value, deque):
        return {"__deque": [encode_state(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, np.ndarray):
        return {"__nd": [encode_state(v) for v in value.ravel().tolist()], "shape": list(value.shape),
                "dtype": str(value.dtype)}
    if isinstance(value, tuple):
        return {"__tuple": [encode_state(v) for v in value]}
    if isinstance(value, list):
        return [encode_state(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict": {k: encode_state(v) for k, v in value.items()}}
        return {"__items": [[encode_state(k), encode_state(v)] for k, v in value.items()]}
    raise TypeError(f"cannot snapshot a {type(value).__name__}")


def decode_state(value: Any) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__f" in value:
        return float(value["__f"])
    if "__obj" in value:
        return Stateful.from_snapshot(value["__obj"])
    if "__deque" in value:
        return deque((decode_state(v) for v in value["__deque"]), maxlen=value["maxlen"])
    if "__nd" in value:
        return np.array([decode_state(v) for v in value["__nd"]], dtype=value["dtype"]).reshape(value["shape"])
    if "__tuple" in value:
        return tuple(decode_state(v) for v in value["__tuple"])
    if "__dict" in value:
        return {k: decode_state(v) for k, v in value["__dict"].items()}
    if "__items" in value:
        return {decode_state(k): decode_state(v) for k, v in value["__items"]}
    raise ValueError(f"unknown state encoding: {sorted(value)}")
