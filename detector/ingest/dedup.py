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

    def __init__(self, capacity: int = 200_000, journaling: bool = False):
        self.capacity = capacity
        self._half = max(1, capacity // 2)
        self._young: set[str] = set()
        self._old: set[str] = set()
        #: How many times the young set became the old one (checkpoints name generations by it).
        self.generation = 0
        #: Keep the ids added since :meth:`take_journal` (the service checkpoints them incrementally).
        self.journaling = journaling
        self._journal: list[tuple[int, list[str]]] = []

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` was seen recently; otherwise remember it."""
        if self.capacity <= 0:
            return False
        if event_id in self._young or event_id in self._old:
            return True
        if len(self._young) >= self._half:
            self._old = self._young
            self._young = set()
            self.generation += 1
        self._young.add(event_id)
        if self.journaling:
            j = self._journal
            if not j or j[-1][0] != self.generation:
                j.append((self.generation, []))
                del j[:-2]  # older generations are no longer held: bounded even if never taken
            j[-1][1].append(event_id)
        return False

    def take_journal(self) -> list[tuple[int, list[str]]]:
        """Ids added since the last call, by the generation they were added in (oldest first).

        >>> d = DuplicateFilter(capacity=4, journaling=True)
        >>> [d.seen(x) for x in "abc"]
        [False, False, False]
        >>> d.take_journal(), d.take_journal()
        ([(0, ['a', 'b']), (1, ['c'])], [])
        """
        out, self._journal = self._journal, []
        return out

    def restore_generations(self, generation: int, young: list[str], old: list[str]) -> None:
        """Load the ids of the current (young) and the previous (old) generation."""
        self.generation = generation
        self._young = set(young)
        self._old = set(old)
        self._journal = []

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state (oldest generation first)."""
        return {"old": sorted(self._old), "young": sorted(self._young)}

    def restore(self, snap: dict[str, Any]) -> None:
        """Load :meth:`snapshot` output."""
        self._old = set(snap["old"])
        self._young = set(snap["young"])
