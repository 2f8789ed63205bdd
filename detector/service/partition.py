"""One assigned input partition: its pipeline, the offset its state covers, and its checkpoints.

No Kafka client here: records come in as ``(offset, key, value)``, and what
must be written goes out through an :class:`~detector.sinks.kafka.Outputs`.
The service (``detector.service.loop``) owns the clients and the order of
operations; this module owns what a checkpoint holds.

A checkpoint of generation ``g`` (see :mod:`detector.state.records`): the
state of every route that changed since the last one, the duplicate
filter's new ids, then one partition record with the next input offset to
consume. Work whose outcome depends on something other than the input
records (an operator command, a wall-clock watermark advance) is first
written to the partition record as a write-ahead entry (``wal``), the
producer flushed, and only then applied: a restore that finds the entry
applies it again to the same state, so the messages it made are made again
identically instead of differently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from detector.config import Config
from detector.incidents.commands import Command, decode_command
from detector.incidents.engine import IncidentEngine
from detector.incidents.groups import GroupBook, ProviderBoard
from detector.incidents.mode import ContainmentTracker
from detector.ingest.decode import Rejection
from detector.ingest.otlp import translator_for
from detector.pipeline import Pipeline, Stats
from detector.state.records import Restored, dedup_key, encode, partition_key, route_key, tp_name

__all__ = ["PartitionTask", "Record", "CommandRecord"]

Incident = dict[str, Any]
#: Duplicate-filter ids per changelog record: ids are at most 128 bytes, so a chunk stays far below
#: the 1 MB message limit brokers default to.
DEDUP_CHUNK = 4000


@dataclass(frozen=True, slots=True)
class Record:
    """One input message: where it came from and its bytes."""

    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One message of the control topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


class PartitionTask:
    """The state of one input partition and the messages it causes."""

    def __init__(self, config: Config, topic: str, partition: int, restored: Restored,
                 changelog_partition: int,
                 on_reject: Callable[[bytes, bytes | None, Rejection, str], None],
                 causes: tuple[ProviderBoard, GroupBook] | None = None):
        self.config = config
        self.topic = topic
        self.partition = partition
        self.tp = tp_name(topic, partition)
        self.changelog_partition = changelog_partition
        self._on_reject = on_reject
        # the process's partitions share what tells a provider failing on many routes (and its groups)
        engine = IncidentEngine(config, *causes) if causes is not None else None
        self.pipe = Pipeline(config, incidents=engine, on_reject=self._reject)
        if isinstance(self.pipe.incidents, IncidentEngine):
            self.pipe.incidents.feed = self.tp  # routes of this partition going quiet together: one cause
        self.pipe.dedup.journaling = True
        self.containment = ContainmentTracker()
        if restored.partition is not None:
            routes = {r: s["p"] for r, s in restored.routes.items()}
            self.pipe.restore_parts(restored.partition, routes,
                                    (restored.dedup_gen, restored.dedup_young, restored.dedup_old))
            for r, s in restored.routes.items():
                if s.get("c") is not None:
                    self.containment.restore_route(r, s["c"])
        #: Next input offset to consume; None until a record is processed or a checkpoint restored.
        self.offset: int | None = restored.offset
        self.generation = restored.next_generation
        self.control: dict[str, int] = dict(restored.control)
        self._rewrite: set[str] = set(restored.rewrite)
        self._dedup_chunks: dict[int, list[bytes]] = {g: list(ks) for g, ks in restored.dedup_chunks.items()}
        self.pending_wal: dict[str, Any] = dict(restored.wal)
        self.restored_records = restored.records
        self.restored_bytes = restored.bytes
        self.last_checkpoint_bytes = 0
        self.last_checkpoint_records = 0
        #: Containment records to publish (a route's mode or open incidents changed).
        self.containment_out: list[dict[str, Any]] = []
        fmt = config.input.formats.get(topic, "native")
        #: Another input format's translator (SPEC 2c), None for section 1 messages.
        self.translator = None if fmt == "native" else translator_for(fmt, config.input)

    # -- input ----------------------------------------------------------------------------------
    @property
    def stats(self) -> Stats:
        return self.pipe.stats

    def _reject(self, raw: bytes, rejection: Rejection) -> None:
        cur = self.pipe.origin  # the record the message came from (also for an event that waited)
        source = f"{self.topic}/{self.partition}/{cur.offset if cur is not None else -1}"
        self._on_reject(raw, cur.key if cur is not None else None, rejection, source)

    def _values(self, records: Sequence[Record]) -> Iterable[bytes]:
        pipe = self.pipe
        tr = self.translator
        for rec in records:
            pipe.origin = rec
            if tr is None:
                yield rec.value
                continue
            yield from pipe.translated(rec.value, tr.translate(rec.value))  # another format's events

    def process(self, records: Sequence[Record]) -> list[Incident]:
        """Run a poll's records of this partition (in offset order); returns the incident events."""
        if not records:
            return []
        out = self.pipe.process_many(self._values(records))
        self.pipe.origin = None
        self.offset = records[-1].offset + 1
        return self._observe(out)

    def _observe(self, incidents: list[Incident]) -> list[Incident]:
        for inc in incidents:
            rec = self.containment.observe(inc)
            if rec is not None:
                self.containment_out.append(rec)
        return incidents

    def open_by_type(self) -> dict[str, int]:
        """Open incidents held by this partition, by incident type."""
        out: dict[str, int] = {}
        for o in list(getattr(self.pipe.incidents, "open", {}).values()):
            out[o.itype] = out.get(o.itype, 0) + 1
        return out

    def take_containment(self) -> list[dict[str, Any]]:
        out, self.containment_out = self.containment_out, []
        return out

    # -- work that is not a function of the input: write ahead, then apply ------------------------
    def commands_due(self, commands: Sequence[CommandRecord]) -> list[CommandRecord]:
        """The control records this partition has not applied yet, in topic order."""
        return [c for c in commands if c.offset >= self.control.get(str(c.partition), 0)]

    def start_control_at(self, positions: dict[int, int]) -> None:
        """A partition without history applies commands from the control topic's current positions on."""
        for p, off in positions.items():
            self.control.setdefault(str(p), off)

    def apply_wal(self) -> list[Incident]:
        """Apply the pending write-ahead entry (after it was checkpointed); returns the incident events."""
        wal, self.pending_wal = self.pending_wal, {}
        out: list[Incident] = []
        for c in wal.get("commands", []):
            cmd = decode_command(c["value"].encode())
            if isinstance(cmd, Command):
                out.extend(self.pipe.apply_command(cmd))
            self.control[str(c["partition"])] = max(self.control.get(str(c["partition"]), 0), c["offset"] + 1)
        if wal.get("advance_to") is not None:
            out.extend(self.pipe.advance_to(int(wal["advance_to"])))
        return self._observe(out)

    def plan_commands(self, commands: Sequence[CommandRecord]) -> bool:
        """Stage control records as the write-ahead entry; False when there is nothing to apply."""
        due = self.commands_due(commands)
        if not due:
            return False
        self.pending_wal.setdefault("commands", []).extend(
            {"partition": c.partition, "offset": c.offset, "value": c.value.decode("utf-8", "replace")} for c in due)
        return True

    def plan_advance(self, watermark_ms: int) -> bool:
        """Stage a wall-clock watermark advance; False when it would not move anything."""
        wm = self.pipe.windower.watermark
        if wm is not None and watermark_ms <= wm:
            return False
        if not self.pipe.windower.routes and not self.pipe.waiting:
            return False
        self.pending_wal["advance_to"] = watermark_ms
        return True

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint(self, send: Callable[[bytes, bytes | None, int], None]) -> int:
        """Hand every changelog record of a new checkpoint to ``send(key, value, partition)``.

        Order: route records, dedup chunks (and tombstones), then the partition record that commits
        them. Returns the bytes written. The caller flushes the producer before committing offsets.
        """
        g = self.generation
        self.generation += 1
        cp = self.changelog_partition
        written = records = 0
        dirty = self.pipe.take_dirty() | self.containment.take_dirty() | self._rewrite
        self._rewrite = set()
        for route in sorted(dirty):
            st = self.pipe.route_state(route)
            if st is None:
                self.containment.forget(route)
                value = encode({"g": g, "deleted": True})
            else:
                value = encode({"g": g, "s": {"p": st, "c": self.containment.route_state(route)}})
            key = route_key(self.tp, route)
            send(key, value, cp)
            written += len(key) + len(value)
            records += 1
        dedup = self.pipe.dedup
        for dgen, ids in dedup.take_journal():
            for part, i in enumerate(range(0, len(ids), DEDUP_CHUNK)):
                key = dedup_key(self.tp, dgen, g, part)
                value = encode({"g": g, "ids": ids[i:i + DEDUP_CHUNK]})
                send(key, value, cp)
                self._dedup_chunks.setdefault(dgen, []).append(key)
                written += len(key) + len(value)
                records += 1
        for dgen in [d for d in self._dedup_chunks if d < dedup.generation - 1]:
            for key in self._dedup_chunks.pop(dgen):  # a generation the filter no longer holds
                send(key, None, cp)
                records += 1
        pvalue = encode({"g": g, "offset": self.offset, "state": self.pipe.partition_state(),
                         "dedup_gen": dedup.generation, "control": self.control, "wal": self.pending_wal})
        pkey = partition_key(self.tp)
        send(pkey, pvalue, cp)
        written += len(pkey) + len(pvalue)
        records += 1
        self.last_checkpoint_bytes = written
        self.last_checkpoint_records = records
        return written
