"""Drop duplicate event_ids with bounded memory.

Two generations of sets: lookups check both, inserts go to the young one,
and when it is full the old one is dropped. Memory stays under
``capacity`` ids while any id seen in the last ``capacity / 2`` distinct
ids is certainly remembered.

>>> d = DuplicateFilter(capacity=4)
>>> [d.seen(x) for x in ["a", "b", "a", "c", "d", "e", "a"]]
[False, False, True, False, False, False, False]
"""

from __future__ import annotations

from typing import Any

__all__ = ["DuplicateFilter"]


class DuplicateFilter:
    """Remembers recent event ids; ``seen(id)`` records it and says if it was known."""

    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._half = max(1, capacity // 2)
        self._young: set[str] = set()
        self._old: set[str] = set()

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` was seen recently; otherwise remember it."""
        if self.capacity <= 0:
            return False
        if event_id in self._young or event_id in self._old:
            return True
        if len(self._young) >= self._half:
            self._old = self._young
            self._young = set()
        self._young.add(event_id)
        return False

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state (oldest generation first)."""
        return {"old": sorted(self._old), "young": sorted(self._young)}

    def restore(self, snap: dict[str, Any]) -> None:
        """Load :meth:`snapshot` output."""
        self._old = set(snap["old"])
        self._young = set(snap["young"])
