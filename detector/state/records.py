"""Changelog records of one input partition's state: keys, values, and the restore fold.

The service checkpoints each input partition (``topic``/``partition``) to a
compacted changelog topic, in the Kafka Streams / Quix Streams design. A
checkpoint of generation ``g`` writes, in this order:

1. one record per route whose state changed (key ``<tp>\\x1fr\\x1f<route>``,
   value ``{"g": g, "s": state}``, or ``{"g": g, "deleted": true}`` for an
   evicted route);
2. the duplicate filter's new ids since the last checkpoint, in chunks (key
   ``<tp>\\x1fd\\x1f<dedup generation>\\x1f<g>\\x1f<chunk>``), and tombstones for the
   chunks of a dedup generation no longer held;
3. one small partition record (key ``<tp>\\x1fp``): ``{"g": g, "offset": the
   next input offset to consume, "state": stream time and engine globals,
   "dedup_gen": ..., "control": {...}, "wal": {...}}``.

The partition record commits the generation: on restore, a route record
newer than the last partition record (a checkpoint cut short by a crash) is
ignored in favour of the version before it, so route states and the covered
offset always agree. Keys are never parsed from values, and versions of a
key may repeat (a broker that does not compact): the last committed one wins.

>>> fold = RestoreFold("ai.telemetry/0")
>>> for key, value in [
...     (route_key("ai.telemetry/0", "r"), encode({"g": 1, "s": {"x": 1}})),
...     (partition_key("ai.telemetry/0"), encode({"g": 1, "offset": 7, "state": {}, "dedup_gen": 0})),
...     (route_key("ai.telemetry/0", "r"), encode({"g": 2, "s": {"x": 2}})),  # cut short: no partition record
... ]:
...     fold.add(key, value)
>>> got = fold.result()
>>> got.offset, got.routes, got.next_generation
(7, {'r': {'x': 1}}, 3)
>>> sorted(got.rewrite)  # the route whose newer version was dropped is written again
['r']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = [
    "RestoreFold",
    "Restored",
    "route_key",
    "partition_key",
    "dedup_key",
    "marker_key",
    "tp_name",
    "encode",
    "decode",
]

_SEP = "\x1f"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def tp_name(topic: str, partition: int) -> str:
    """The name of an input partition inside changelog keys: ``topic/partition``."""
    return f"{topic}/{partition}"


def route_key(tp: str, route: str) -> bytes:
    return f"{tp}{_SEP}r{_SEP}{route}".encode()


def partition_key(tp: str) -> bytes:
    return f"{tp}{_SEP}p".encode()


def dedup_key(tp: str, dedup_gen: int, gen: int, part: int = 0) -> bytes:
    """Key of one chunk of new duplicate-filter ids (a checkpoint splits them to stay under message limits)."""
    return f"{tp}{_SEP}d{_SEP}{dedup_gen}{_SEP}{gen}{_SEP}{part}".encode()


def marker_key(tp: str) -> bytes:
    """Restores write a unique value under this key and read until they see it again."""
    return f"{tp}{_SEP}m".encode()


def _gen(raw: bytes) -> int:
    """The generation of a record value: values start with ``{"g":<int>`` (written by :func:`encode`)."""
    if raw.startswith(b'{"g":'):
        end = raw.find(b",", 5)
        try:
            return int(raw[5:end if end > 0 else len(raw) - 1])
        except ValueError:
            pass
    return int(decode(raw)["g"])


def encode(value: dict[str, Any]) -> bytes:
    """Values keep their key order, so ``g`` written first stays first."""
    return _encoder.encode(value)


def decode(raw: bytes) -> Any:
    return _decoder.decode(raw)


@dataclass
class Restored:
    """One input partition's state as the changelog holds it."""

    #: Next input offset to consume (None: no checkpoint yet).
    offset: int | None = None
    #: Pipeline state that is not per route (``Pipeline.partition_state``).
    partition: dict[str, Any] | None = None
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Duplicate filter: its generation and the ids of the current and the previous one.
    dedup_gen: int = 0
    dedup_young: list[str] = field(default_factory=list)
    dedup_old: list[str] = field(default_factory=list)
    #: dedup generation -> keys of its chunk records (for tombstones once it is dropped).
    dedup_chunks: dict[int, list[bytes]] = field(default_factory=dict)
    control: dict[str, int] = field(default_factory=dict)
    wal: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Generation number the next checkpoint must use (above anything seen).
    next_generation: int = 1
    #: Routes whose newest record was dropped (uncommitted): write them again at the next checkpoint.
    rewrite: set[str] = field(default_factory=set)
    records: int = 0
    bytes: int = 0


class RestoreFold:
    """Folds a changelog partition's records (oldest first) into one partition's :class:`Restored`.

    Only the records whose key starts with ``tp`` are kept (several input
    partitions may share a changelog partition). Values stay undecoded until
    :meth:`result`, so many versions of a key cost little.
    """

    def __init__(self, tp: str):
        self.tp = tp
        self._prefix = f"{tp}{_SEP}".encode()
        self._route_prefix = route_key(tp, "")
        self._dedup_prefix = f"{tp}{_SEP}d{_SEP}".encode()
        self._pkey = partition_key(tp)
        #: route -> its versions since the newest one that a partition record had committed
        #: when it was read (raw), newest last
        self._routes: dict[bytes, list[bytes]] = {}
        self._committed = 0
        self._dedup: dict[bytes, bytes | None] = {}
        self._partition: bytes | None = None
        self.records = 0
        self.bytes = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or not key.startswith(self._prefix):
            return
        self.records += 1
        self.bytes += len(key) + (len(value) if value else 0)
        if key.startswith(self._route_prefix):
            if value is None:
                self._routes.pop(key, None)
                return
            versions = self._routes.setdefault(key, [])
            for i in range(len(versions) - 1, 0, -1):
                if _gen(versions[i]) <= self._committed:
                    del versions[:i]  # a newer committed version exists: the older ones are never needed
                    break
            versions.append(value)
        elif key.startswith(self._dedup_prefix):
            if value is None:
                self._dedup.pop(key, None)
            else:
                self._dedup[key] = value
        elif key == self._pkey and value is not None:
            self._partition = value
            self._committed = _gen(value)

    def result(self) -> Restored:
        out = Restored(records=self.records, bytes=self.bytes)
        committed = 0
        top = 0
        if self._partition is not None:
            p = decode(self._partition)
            committed = int(p["g"])
            out.offset = p.get("offset")
            out.partition = p.get("state")
            out.dedup_gen = int(p.get("dedup_gen", 0))
            out.control = {str(k): int(v) for k, v in p.get("control", {}).items()}
            out.wal = dict(p.get("wal") or {})
            out.extra = dict(p.get("extra") or {})
        top = committed
        n = len(self._route_prefix)
        for key, versions in self._routes.items():
            route = key[n:].decode()
            chosen: dict[str, Any] | None = None
            for i in range(len(versions) - 1, -1, -1):
                v = decode(versions[i])
                g = int(v["g"])
                top = max(top, g)
                if g <= committed:
                    chosen = v
                    break
                out.rewrite.add(route)
            if chosen is not None and not chosen.get("deleted"):
                out.routes[route] = chosen["s"]
        for key, raw in self._dedup.items():
            if raw is None:
                continue
            _, _, dgen_s, gen_s, _part = key.decode().rsplit(_SEP, 4)
            dgen, gen = int(dgen_s), int(gen_s)
            top = max(top, gen)
            out.dedup_chunks.setdefault(dgen, []).append(key)
            if gen > committed:
                continue
            ids = decode(raw)["ids"]
            if dgen == out.dedup_gen:
                out.dedup_young.extend(ids)
            elif dgen == out.dedup_gen - 1:
                out.dedup_old.extend(ids)
        out.next_generation = top + 1
        return out
