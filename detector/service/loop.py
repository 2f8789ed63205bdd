"""`detector run`: the consumer loop, rebalances, checkpoints and recovery.

One :class:`~detector.service.partition.PartitionTask` (one pipeline) per
assigned input partition, fed by a kafka-python consumer group. The order
of operations is what makes a crash (kill -9 at any moment) lose nothing
and contradict nothing:

1. Incident events, dead letters and containment records are produced as
   the records that cause them are processed.
2. A checkpoint produces the changelog records (changed routes, new
   duplicate ids, then the partition record holding the next input offset),
   **flushes the producer**, and only when every send since the previous
   flush succeeded **commits the input offsets**. A failed send raises, the
   session is torn down and rebuilt from the changelog: the records after
   the last checkpoint are processed again, and since the pipeline is
   deterministic it makes the same messages again (same incident_id and
   seq, same content), which receivers drop as redeliveries.
3. On assignment a partition is paused; its state is restored from the
   changelog (a unique marker record is written and the changelog read
   until the marker comes back, so no end offset is needed) before any of
   its records is processed, and consumption resumes right after the
   offset the restored state covers (kept inside the state, not in the
   commit metadata).
4. Work that does not follow from the input records alone (operator
   commands from the control topic, a wall-clock watermark advance of an
   idle partition) is written ahead into the partition record, flushed,
   then applied; a restore applies a pending entry again.
5. On revocation and on shutdown (SIGTERM) every task checkpoints and
   commits before the partition is let go.

Any Kafka error tears the session down (clients closed, tasks dropped) and
a new one starts after a capped exponential backoff; readiness is off
until partitions are assigned and restored again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from detector.config import Config, ConfigError
from detector.incidents.commands import Command, decode_command
from detector.incidents.groups import GroupBook, ProviderBoard
from detector.ingest.decode import Rejection
from detector.metrics import Metrics
from detector.service.clients import client_kwargs
from detector.service.http import Health
from detector.service.partition import CommandRecord, PartitionTask, Record
from detector.service.topics import ensure_topics
from detector.sinks.kafka import Outputs, ProduceFailed
from detector.state.changelog import RestoreError, read_changelog
from detector.state.records import Restored, tp_name

__all__ = ["Service", "RestoreError"]

#: Config sections a reload does not change: they need new clients or a new listener (a restart).
_RESTART_ONLY = ("kafka", "metrics", "receivers", "delivery")
#: Window settings a reload does not change: the windows held would no longer fit them.
_RESTART_WINDOWS = ("size_s", "allowed_lateness_s")


def _stamp(path: Path | None) -> tuple[int, int] | None:
    """The file's size and modification time (None when there is no file to watch, or it cannot be read)."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns

log = logging.getLogger("detector.service")
TP = tuple[str, int]


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python ships no types
    """Runs on the consumer's IO thread (kafka-python 3), where blocking consumer calls are refused:
    assignment only pauses the partitions (the loop restores them after ``poll`` returns); revocation
    checkpoints (the producer has its own IO thread) and commits with the coordinator's awaitable commit."""

    def __init__(self, service: Service):
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        offsets = self.service._on_revoked({(tp.topic, tp.partition) for tp in revoked})
        consumer = self.service._consumer
        if offsets and consumer is not None:
            try:
                await consumer._coordinator._commit_offsets_sync_async(offsets)
            except Exception as err:  # noqa: BLE001 - the changelog holds the offset; the commit is for lag
                log.warning("kafka: commit on revoke failed: %s", describe(err))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.service._on_assigned({(tp.topic, tp.partition) for tp in assigned})


def describe(err: BaseException) -> str:
    """A one-line description of a client error: its kind, never a configured value."""
    name = err.__class__.__name__
    text = {
        "NoBrokersAvailable": "no broker reachable",
        "KafkaTimeoutError": "the broker did not answer in time",
        "ProduceFailed": "messages could not be delivered",
        "RestoreError": "the changelog could not be read back",
        "ConnectionRefusedError": "connection refused",
    }.get(name)
    if text is None:
        text = "kafka error" if isinstance(err, KafkaError) else "connection error"
    if isinstance(err, ProduceFailed):
        return f"{err} ({name})"
    return f"{text} ({name})"


class Service:
    """The detector service. ``run()`` blocks until :meth:`stop`; returns the exit status."""

    def __init__(self, config: Config, metrics: Metrics, health: Health, *,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
                 environ: dict[str, str] | None = None, loader: Callable[[], Config] | None = None,
                 watch: Path | None = None, watch_every_s: float = 2.0):
        self.config = config
        #: Loads the config again (the file with the command-line flags over it) for a reload; None: no reload.
        self._loader = loader
        #: The config file watched for changes (its size and modification time), every ``watch_every_s``.
        self._watch = watch
        self._watch_every_s = watch_every_s
        self._watched = _stamp(watch)
        self._last_watch = 0.0
        self._reload = threading.Event()
        self._last_inventory = 0.0
        self._inventory_missing = False
        self.k = config.kafka
        self.metrics = metrics
        self.health = health
        self.wall = wall
        self.mono = mono
        self.environ = environ
        self._stop = threading.Event()
        self.tasks: dict[TP, PartitionTask] = {}
        #: Shared by every partition's incident engine: a provider failing on routes of several partitions
        #: is one cause, one group (SPEC 2a); groups span the partitions of this process.
        self.causes = (ProviderBoard(), GroupBook())
        self._pending: set[TP] = set()
        self._consumer: KafkaConsumer | None = None
        self._control: KafkaConsumer | None = None
        self._outputs: Outputs | None = None
        self._changelog_partitions = 1
        self._last_checkpoint = 0.0
        self._last_input: dict[TP, float] = {}
        self._lateness_ms = config.windows.allowed_lateness_s * 1000
        self._size_ms = config.windows.size_s * 1000
        self._max_step_ms = config.windows.idle_evict_s * 1000 + self._size_ms
        self._control_parts: list[int] = []
        #: control partition -> next offset already looked at (a rewind re-reads; dead letters go once)
        self._control_seen: dict[int, int] = {}
        #: Set once the final checkpoint is written (or after an error): revocation on close skips it.
        self._closing = False
        #: When the first records were processed (monotonic), for `detector bench kafka`.
        self.first_batch_at: float | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def request_reload(self) -> None:
        """Load the config again at the loop's next turn (SIGHUP; safe from a signal handler)."""
        self._reload.set()

    def stop(self) -> None:
        """Ask the loop to checkpoint, commit, leave the group and return (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        backoff = 0.5
        while not self.stopping:
            self.health.beat()
            started = self.mono()
            try:
                self._session()
            except (KafkaError, OSError, ProduceFailed, RestoreError) as err:
                self.health.set_ready(False, describe(err))
                self.metrics.set_ready(False)
                self.metrics.set_connected(False)
                if self.mono() - started > 60:
                    backoff = 0.5  # it ran fine for a while: start the backoff over
                log.warning("kafka: %s; retrying in %.1f s", describe(err), backoff)
                self._teardown()
                until = self.mono() + backoff
                while not self.stopping and self.mono() < until:  # alive while waiting: beat
                    self.health.beat()
                    self._stop.wait(min(1.0, max(0.0, until - self.mono())))
                backoff = min(backoff * 2, self.k.max_backoff_s)
        self._teardown()
        return 0

    def _teardown(self) -> None:
        self._closing = True  # after an error nothing is checkpointed: the changelog holds the last good state
        for tp in self.tasks:
            self.metrics.forget_partition(*tp)
        self.tasks.clear()
        self.metrics.set_open_incidents({})
        for client in (self._consumer, self._control):
            if client is not None:
                try:
                    client.close(autocommit=False)
                except Exception:  # noqa: BLE001 - closing a broken client must not stop recovery
                    pass
        if self._outputs is not None:
            try:
                self._outputs.producer.close(timeout=1)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                pass
        self._consumer = self._control = None
        self._outputs = None
        self.tasks.clear()
        self._pending.clear()
        self.metrics.set_assigned(0)

    # -- one connected session ----------------------------------------------------------------------
    def _session(self) -> None:
        self._closing = False
        kw = client_kwargs(self.k, self.environ)
        if self.k.create_topics:
            ensure_topics(self.k, kw)
        producer = KafkaProducer(acks="all", linger_ms=5, retries=5, delivery_timeout_ms=30_000,
                                 max_block_ms=10_000, request_timeout_ms=10_000, **kw)
        self._outputs = Outputs(producer, incidents=self.k.incidents_topic, dlq=self.k.dlq_topic,
                                containment=self.k.containment_topic, changelog=self.k.changelog_topic)
        self._consumer = KafkaConsumer(
            group_id=self.k.group_id, enable_auto_commit=False, auto_offset_reset=self.k.auto_offset_reset,
            session_timeout_ms=self.k.session_timeout_ms, heartbeat_interval_ms=self.k.heartbeat_interval_ms,
            max_poll_records=5000, max_poll_interval_ms=300_000, request_timeout_ms=max(
                30_000, self.k.session_timeout_ms + 5000), **kw)
        self._control = KafkaConsumer(group_id=None, enable_auto_commit=False, **kw)
        parts = self._control.partitions_for_topic(self.k.control_topic) or {0}
        self._control_parts = sorted(parts)
        self._control.assign([TopicPartition(self.k.control_topic, p) for p in self._control_parts])
        self._control.seek_to_beginning()
        self._control_seen = {}
        cl_parts = self._consumer.partitions_for_topic(self.k.changelog_topic)
        self._changelog_partitions = max(1, len(cl_parts or ()))
        self._consumer.subscribe(self.k.telemetry_topics, listener=_Listener(self))
        self.metrics.set_connected(True)
        self.health.set_ready(False, "joining the consumer group")
        log.info("kafka: connected; joining group %s for %s", self.k.group_id, ",".join(self.k.telemetry_topics))
        self._last_checkpoint = self.mono()
        while not self.stopping:
            self.health.beat()
            self._step()
        self._checkpoint(list(self.tasks))
        self._closing = True
        self._consumer.close(autocommit=False)  # leaves the group
        self._consumer = None
        self.health.set_ready(False, "stopped")
        self.metrics.set_ready(False)

    # -- rebalance ----------------------------------------------------------------------------------
    def _on_assigned(self, assigned: set[TP]) -> None:
        assert self._consumer is not None
        self._pending |= assigned
        self._consumer.pause(*[TopicPartition(t, p) for t, p in assigned])
        self.health.set_ready(False, "restoring partitions")
        self.metrics.set_ready(False)

    def _on_revoked(self, revoked: set[TP]) -> dict[TopicPartition, OffsetAndMetadata]:
        """Checkpoint the revoked partitions and drop them; returns the offsets to commit."""
        self._pending -= revoked
        gone = [tp for tp in revoked if tp in self.tasks]
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        if not self._closing:
            try:
                offsets = self._checkpoint(gone, commit=False)
            except (KafkaError, ProduceFailed) as err:  # the next owner restores the previous checkpoint
                log.warning("kafka: checkpoint on revoke failed: %s", describe(err))
        for tp in gone:
            self.tasks.pop(tp, None)
            self._last_input.pop(tp, None)
            self.metrics.forget_partition(*tp)
        self.metrics.set_assigned(len(self.tasks))
        self._update_open()
        return offsets

    def _restore_pending(self) -> None:
        assert self._consumer is not None and self._outputs is not None
        pending = sorted(self._pending)
        self._pending.clear()
        started = self.mono()
        restored = self.read_state(pending)
        for tp in pending:
            st = restored[tp]
            task = PartitionTask(self.config, tp[0], tp[1], st, self._cl_partition(tp[1]), self._dead_letter,
                                 causes=self.causes)
            self.tasks[tp] = task
            self._last_input[tp] = self.mono()
            if task.offset is not None:
                self._consumer.seek(TopicPartition(*tp), task.offset)
            self._rewind_control(task)
            if task.pending_wal:  # a write-ahead entry the crashed owner may not have finished
                self._emit(task, task.apply_wal())
                self._checkpoint([tp])
        self.metrics.observe_restore(self.mono() - started, sum(r.records for r in restored.values()),
                                     sum(r.bytes for r in restored.values()))
        self._consumer.resume(*[TopicPartition(t, p) for t, p in pending])
        self._update_open()
        self.metrics.set_assigned(len(self.tasks))
        log.info("kafka: %d partition(s) restored in %.2f s", len(pending), self.mono() - started)

    def _rewind_control(self, task: PartitionTask) -> None:
        """Read the control topic again from where this task stopped applying commands."""
        control = self._control
        assert control is not None
        for p in self._control_parts:
            part = TopicPartition(self.k.control_topic, p)
            need = task.control.get(str(p), 0)
            if need < control.position(part):
                control.seek(part, need)

    def _cl_partition(self, partition: int) -> int:
        return partition % self._changelog_partitions

    def read_state(self, tps: list[TP], timeout_s: float = 120.0) -> dict[TP, Restored]:
        """Each partition's state from the changelog, read up to a marker written just before."""
        assert self._outputs is not None
        by_cl: dict[int, list[str]] = {}
        for tp in tps:
            by_cl.setdefault(self._cl_partition(tp[1]), []).append(tp_name(*tp))
        got = read_changelog(client_kwargs(self.k, self.environ), self._outputs, self.k.changelog_topic, by_cl,
                             beat=self.health.beat, timeout_s=timeout_s, mono=self.mono)
        return {tp: got[tp_name(*tp)] for tp in tps}

    # -- the loop's step ----------------------------------------------------------------------------
    def _step(self) -> None:
        consumer, outputs = self._consumer, self._outputs
        assert consumer is not None and outputs is not None
        batch = consumer.poll(timeout_ms=200, max_records=5000)
        if self._pending:
            self._restore_pending()
        now = self.mono()
        for part, msgs in batch.items():
            tp = (part.topic, part.partition)
            task = self.tasks.get(tp)
            if task is None or not msgs:
                continue
            t0 = time.perf_counter()
            if self.first_batch_at is None:
                self.first_batch_at = t0
            before = task.stats.copy()
            found = task.process([Record(m.offset, m.key, m.value) for m in msgs])
            self._emit(task, found)
            self._last_input[tp] = now
            self.metrics.observe_batch(part.topic, part.partition, time.perf_counter() - t0, len(msgs))
            self.metrics.add_stats_delta(part.topic, part.partition, before, task.stats)
            hw = consumer.highwater(part)
            if hw is not None:
                self.metrics.set_lag(part.topic, part.partition, max(0, hw - (task.offset or 0)))
        if self.tasks and not self._pending and not self.health.ready:
            self.health.set_ready(True, "consuming")
            self.metrics.set_ready(True)
        self._control_step()
        self._idle_step(now)
        if now - self._last_checkpoint >= self.k.checkpoint_interval_s:
            self._checkpoint(list(self.tasks))
        self._reload_step(now)
        self._inventory_step(now)

    def _inventory_step(self, now: float) -> None:
        """Write the inventory of this instance's routes to the inventory topic every inventory_interval_s."""
        every = self.k.inventory_interval_s
        if every <= 0 or now - self._last_inventory < every or self._outputs is None:
            return
        self._last_inventory = now
        consumer = self._consumer
        if consumer is None or not consumer.partitions_for_topic(self.k.inventory_topic):
            if not self._inventory_missing:  # topics not created by the service, and this one not made
                log.warning("inventory: the topic %s does not exist; the route inventory is not written "
                            "(detector routes --service still works)", self.k.inventory_topic)
                self._inventory_missing = True
            return
        self._inventory_missing = False
        at = datetime.fromtimestamp(int(self.wall()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for row in self.routes_inventory()["routes"]:
            self._outputs.inventory(self.k.inventory_topic, {**row, "at": at})

    # -- hot reload ---------------------------------------------------------------------------------
    def _reload_step(self, now: float) -> None:
        """Reload the config on request (SIGHUP) or when its file changed; see :meth:`reload`."""
        if self._loader is None:
            return
        asked = self._reload.is_set()
        if not asked and (self._watch is None or now - self._last_watch < self._watch_every_s):
            return
        self._last_watch = now
        stamp = _stamp(self._watch)
        if not asked and stamp == self._watched:
            return
        self._reload.clear()
        self._watched = stamp
        self.reload()

    def reload(self) -> bool:
        """Validate the config again with the same loader as `detector config check`. A valid one applies from
        the next window: every partition checkpoints and is restored from its own state under the new config
        (detector state, incidents and windows are kept). Settings that need a restart keep their running
        values (Kafka, metrics port, window size and lateness, receivers and delivery), and the log says which
        changed. An invalid one keeps the running config, logs the first error with its field path, and sets
        ``detector_config_reload_failed``. Returns whether the new config was accepted."""
        assert self._loader is not None
        try:
            new = self._loader()
        except ConfigError as err:
            more = f" (and {len(err.errors) - 1} more)" if len(err.errors) > 1 else ""
            return self._refused(f"{err.errors[0]}{more}")
        except Exception as err:  # noqa: BLE001 - an unreadable file must not end the service
            return self._refused(f"(file): cannot be loaded ({err.__class__.__name__})")
        kept = {name: getattr(self.config, name) for name in _RESTART_ONLY}
        windows = {**new.windows.model_dump(), **{k: getattr(self.config.windows, k) for k in _RESTART_WINDOWS}}
        changed = [name for name in _RESTART_ONLY if getattr(new, name) != kept[name]]
        changed += [f"windows.{k}" for k in _RESTART_WINDOWS
                    if getattr(new.windows, k) != getattr(self.config.windows, k)]
        try:  # what runs must pass config check too: the kept window size with the new window settings
            new = Config.model_validate({**new.model_dump(), **kept, "windows": windows})
        except ValidationError as err:
            first = err.errors()[0]
            path = ".".join(str(x) for x in first["loc"]) or "(top level)"
            return self._refused(f"{path}: {first['msg']} (with the running window size, which a reload keeps)")
        if changed:
            log.warning("config reload: %s change only at a restart; their running values stay", ", ".join(changed))
        if new == self.config:
            self.metrics.set_reload_failed(False)
            log.info("config reload: nothing to apply")
            return True
        tps = list(self.tasks)
        self.config = new  # first: a checkpoint that fails restarts the session, which restores under it
        self._max_step_ms = new.windows.idle_evict_s * 1000 + self._size_ms
        if tps and self._consumer is not None:
            self._checkpoint(tps)
        for tp in tps:
            self.tasks.pop(tp, None)
        self._pending |= set(tps)
        if tps and self._consumer is not None:
            self._restore_pending()
        self.metrics.set_reload_failed(False)
        log.info("config reload: applied to %d partition(s), from their next window", len(tps))
        return True

    def _refused(self, why: str) -> bool:
        log.warning("config reload refused, the running config stays: %s", why)
        self.metrics.set_reload_failed(True)
        return False

    def _emit(self, task: PartitionTask, incidents: list[dict[str, Any]]) -> None:
        assert self._outputs is not None
        for inc in incidents:
            self._outputs.incident(inc)
            self.metrics.observe_incident(inc)
        for rec in task.take_containment():
            self._outputs.containment(rec)
        if incidents:
            self._update_open()

    def _update_open(self) -> None:
        counts: dict[str, int] = {}
        for task in list(self.tasks.values()):
            for t, n in task.open_by_type().items():
                counts[t] = counts.get(t, 0) + n
        self.metrics.set_open_incidents(counts)

    def _dead_letter(self, raw: bytes, key: bytes | None, rejection: Rejection, source: str) -> None:
        if rejection.reason == "late" or self._outputs is None:
            return  # late events are counted, not dead-lettered: they are valid, only too late
        self._outputs.dead_letter(raw, key, rejection, source)
        self.metrics.observe_dead_letter(rejection.reason)

    def _owns_all(self) -> bool:
        """Whether every partition of every telemetry topic is assigned here (a single instance)."""
        consumer = self._consumer
        if consumer is None or not self.tasks or self._pending:
            return False
        for topic in self.k.telemetry_topics:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts or any((topic, p) not in self.tasks for p in parts):
                return False
        return True

    def _is_leader(self) -> bool:
        """The owner of partition 0 of the first telemetry topic dead-letters bad commands (once per group)."""
        return (self.k.telemetry_topics[0], 0) in self.tasks

    def _control_step(self) -> None:
        control, outputs = self._control, self._outputs
        assert control is not None and outputs is not None
        got = control.poll(timeout_ms=0, max_records=1000)
        if not got:
            return
        cmds: list[CommandRecord] = []
        owns_all = self._owns_all()
        for part, msgs in sorted(got.items(), key=lambda kv: kv[0].partition):
            for m in msgs:
                fresh = m.offset >= self._control_seen.get(part.partition, 0)  # not re-read after a rewind
                self._control_seen[part.partition] = max(self._control_seen.get(part.partition, 0), m.offset + 1)
                source = f"{part.topic}/{part.partition}/{m.offset}"
                dec = decode_command(m.value if m.value is not None else b"")
                if isinstance(dec, Command):
                    cmds.append(CommandRecord(part.partition, m.offset, m.key, m.value))
                    iid = dec.incident_id
                    if fresh and iid is not None and not any(t.pipe.incidents.knows(iid) for t in self.tasks.values()):
                        self.metrics.observe_command(dec.command, "unknown_incident" if owns_all else "not_here")
                        if owns_all:  # this instance holds every partition: no one else can know it
                            outputs.dead_letter(m.value or b"", m.key,
                                                Rejection("unknown_incident", "$.incident_id: no such incident"),
                                                source)
                            self.metrics.observe_dead_letter("unknown_incident")
                    continue
                if not fresh:
                    continue
                self.metrics.observe_command("invalid", dec.reason)
                if self._is_leader():
                    outputs.dead_letter(m.value or b"", m.key, dec, source)
                    self.metrics.observe_dead_letter(dec.reason)
        if not cmds:
            return
        staged = [tp for tp, task in self.tasks.items() if task.plan_commands(cmds)]
        if not staged:
            return
        self._checkpoint(staged)  # write ahead: the commands are in the changelog before they act
        for tp in staged:
            task = self.tasks[tp]
            found = task.apply_wal()
            for inc in found:
                self.metrics.observe_command(inc["event"], "applied")
            self._emit(task, found)
        self._checkpoint(staged)

    def _idle_step(self, now: float) -> None:
        idle_s = self.k.idle_timeout_s
        if idle_s <= 0:
            return
        idle = 0
        staged: list[TP] = []
        target_now = int(self.wall() * 1000) - self._lateness_ms
        for tp, task in self.tasks.items():
            if now - self._last_input.get(tp, now) < idle_s:
                continue
            idle += 1
            wm = task.pipe.windower.watermark
            target = target_now if wm is None else min(target_now, wm + self._max_step_ms)
            if wm is not None and target - wm < self._size_ms:
                continue
            if task.plan_advance(target):
                staged.append(tp)
        self.metrics.set_idle_partitions(idle)
        if not staged:
            return
        self._checkpoint(staged)
        for tp in staged:
            task = self.tasks[tp]
            self._emit(task, task.apply_wal())
        self._checkpoint(staged)

    def routes_inventory(self) -> dict[str, Any]:
        """What ``/routes`` serves: the routes held by this instance (SPEC 3's inventory: versions in use, owner
        and escalation, containment mode, open incidents, last event time), with their partition and the
        events their skewed clocks sent."""
        from detector.operate.inventory import route_rows

        for attempt in range(5):  # the HTTP thread reads what the loop changes: a walk may meet a change
            try:
                out: list[dict[str, Any]] = []
                for (topic, part), task in sorted(list(self.tasks.items())):
                    skewed = dict(task.pipe.stats.skewed_routes)
                    for row in route_rows(task.pipe, self.config, task.containment):
                        out.append({**row, "topic": topic, "partition": part,
                                    "skewed_events": skewed.get(row["route"], 0)})
                return {"routes": out}
            except RuntimeError:  # "dictionary changed size during iteration": walk again
                time.sleep(0.01 * (attempt + 1))
        raise RuntimeError("the route inventory kept changing while it was read")

    # -- checkpoints --------------------------------------------------------------------------------
    def _checkpoint(self, tps: list[TP], commit: bool = True) -> dict[TopicPartition, OffsetAndMetadata]:
        """Changelog records for ``tps``, flush, then commit their offsets (in that order)."""
        outputs, consumer = self._outputs, self._consumer
        if outputs is None:
            return {}
        t0 = time.perf_counter()
        written = records = 0
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in tps:
            task = self.tasks.get(tp)
            if task is None:
                continue
            written += task.checkpoint(lambda k, v, p: outputs.changelog(k, v, p))
            records += task.last_checkpoint_records
            if task.offset is not None:
                offsets[TopicPartition(*tp)] = OffsetAndMetadata(task.offset, "", -1)
        try:
            outputs.flush(timeout=30)  # raises ProduceFailed: then nothing below is committed
        except ProduceFailed:
            self.metrics.observe_produce_errors(1)
            raise
        if commit and offsets and consumer is not None:
            consumer.commit(offsets)
        self._last_checkpoint = self.mono()
        self.metrics.observe_checkpoint(time.perf_counter() - t0, written, records)
        return offsets
