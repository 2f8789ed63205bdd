"""Reading a partition's state back from the changelog topic.

The end of a changelog partition is found without asking the broker for end
offsets (some Kafka-compatible brokers answer wrongly): a unique marker
record is written to it and the partition is read from the beginning until
the marker comes back. Every record before the marker is folded by
:class:`~detector.state.records.RestoreFold`; later versions of a key
replace earlier ones, so a broker that never compacts only costs read time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from detector.sinks.kafka import Outputs
from detector.state.records import Restored, RestoreFold, marker_key

__all__ = ["read_changelog", "RestoreError"]


class RestoreError(Exception):
    """The changelog could not be read back to the marker in time."""


def read_changelog(client_kw: dict[str, Any], outputs: Outputs, topic: str, by_partition: dict[int, list[str]], *,
                   beat: Callable[[], None] = lambda: None, timeout_s: float = 120.0,
                   mono: Callable[[], float] = time.monotonic) -> dict[str, Restored]:
    """The state of each input partition named in ``by_partition`` (changelog partition -> names)."""
    from kafka import KafkaConsumer, TopicPartition

    out: dict[str, Restored] = {}
    reader = KafkaConsumer(group_id=None, enable_auto_commit=False, max_poll_records=50_000,
                           fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
                           **client_kw)
    try:
        for cp, names in sorted(by_partition.items()):
            markers = {marker_key(tp): uuid.uuid4().hex.encode() for tp in names}
            for key, value in markers.items():
                outputs.changelog(key, value, cp)
            outputs.flush(timeout=30)
            folds = [RestoreFold(tp) for tp in names]
            part = TopicPartition(topic, cp)
            reader.assign([part])
            reader.seek_to_beginning(part)
            waiting = dict(markers)
            deadline = mono() + timeout_s
            while waiting:
                if mono() > deadline:
                    raise RestoreError(f"changelog partition {cp}: marker not seen in {timeout_s:.0f} s")
                beat()
                for msgs in reader.poll(timeout_ms=200).values():
                    for m in msgs:
                        if m.key in waiting:
                            if m.value == waiting[m.key]:
                                del waiting[m.key]
                            continue
                        for fold in folds:
                            fold.add(m.key, m.value)
            for fold in folds:
                out[fold.tp] = fold.result()
    finally:
        reader.close(autocommit=False)
    return out
