"""Empty containers that refuse to be written: the ones windows closed with no events share.

Not compiled (mypyc makes no native subclass of ``list`` or ``set``); the compiled aggregate holds them
where it holds a dict, list or set, and a write fails loudly instead of reaching every window that shares
them.

>>> d = ReadOnlyDict()
>>> d.get("x", 0), len(d)
(0, 0)
>>> d["x"] = 1
Traceback (most recent call last):
...
TypeError: a window closed empty is read-only
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReadOnlyDict", "ReadOnlyList", "ReadOnlySet"]


class ReadOnlyDict(dict[Any, Any]):
    """The empty dict every window closed with no events shares (see ``WindowAggregate.closed_empty``): it
    refuses to hold anything, so a write to a closed empty window fails loudly instead of reaching every
    other. A subclass, not a mapping proxy: compiled code checks that a ``dict`` attribute holds a dict."""

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("a window closed empty is read-only")


class ReadOnlyList(list[Any]):
    """The shared empty list of windows closed empty (see :class:`ReadOnlyDict`)."""

    def append(self, value: Any) -> None:
        raise TypeError("a window closed empty is read-only")


class ReadOnlySet(set[Any]):
    """The shared empty set of windows closed empty (see :class:`ReadOnlyDict`)."""

    def add(self, value: Any) -> None:
        raise TypeError("a window closed empty is read-only")
