"""`detector replay`: the service's detection over a file of telemetry events.

>>> lines = [b'{"event_id":"1","type":"usage","ts":1767225600000,"route":"r"}', b'{oops']
>>> res = replay_lines(lines, Config())
>>> res.stats.accepted, dict(res.stats.rejected), res.incidents
(1, {'not_json': 1}, [])
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from detector.config import Config
from detector.ingest.decode import Rejection
from detector.pipeline import Pipeline, Stats

__all__ = ["ReplayResult", "replay_lines", "replay_file", "read_lines", "dump_incident"]


@dataclass
class ReplayResult:
    """Incident events in emission order, the pipeline's counters, and the pipeline itself (what it holds
    at the end: the route inventory reads it)."""

    incidents: list[dict[str, Any]]
    stats: Stats
    pipeline: Pipeline | None = None


def read_lines(path: Path, max_bytes: int = 65536) -> Iterator[bytes]:
    """The non-blank lines of a JSONL file, as bytes without the newline (a CR before it is kept, as the
    line's own byte: JSON allows it as whitespace, and a dead letter keeps the line byte for byte); a
    UTF-8 byte order mark at the start of the file is skipped.

    A line longer than ``max_bytes`` is read only as far as needed to reject it: its first
    ``max_bytes + 1`` bytes are yielded (the decoder rejects it as ``too_large``) and the rest is skipped
    without being held, so memory never grows with the size of a line.
    """
    limit = max_bytes + 1
    with path.open("rb") as fh:
        first = True
        while True:
            line = fh.readline(limit + 1)  # one byte more: a newline right after the limit still fits
            if not line:
                return
            if first:
                first = False
                if line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
            if line.endswith(b"\n"):
                line = line[:-1]
            elif len(line) > limit - 1:  # an oversized line: skip its rest, chunk by chunk
                while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                line = line[:limit]
            if line.strip():
                yield line


def replay_lines(
    lines: Iterable[bytes],
    config: Config,
    progress: Callable[[Stats], None] | None = None,
    progress_every: int = 200_000,
    batch_bytes: int = 16 << 20,
    on_reject: Callable[[bytes, Rejection], None] | None = None,
    on_incident: Callable[[dict[str, Any]], None] | None = None,
    on_pipeline: Callable[[Pipeline], None] | None = None,
    fmt: str = "native",
) -> ReplayResult:
    """Run every line through a fresh pipeline, then flush the open windows.

    ``on_reject`` receives each rejected line with its reason (the service's
    dead-letter path; replay can keep them in a file). With ``on_incident``
    each incident event goes there as it is made, and the result holds none. Lines are processed in
    batches of at most ``progress_every`` lines and ``batch_bytes`` bytes.
    """
    pipe = Pipeline(config) if on_reject is None else Pipeline(config, on_reject=on_reject)
    if on_pipeline is not None:  # e.g. the report's recorder, before any event
        on_pipeline(pipe)
    out: list[dict[str, Any]] = []
    emit = out.extend if on_incident is None else (lambda found: [on_incident(x) for x in found])
    batch: list[bytes] = []
    held = 0
    if fmt != "native":
        lines = _translated(lines, fmt, config, pipe)
    for raw in lines:
        batch.append(raw)
        held += len(raw)
        if len(batch) == progress_every or held >= batch_bytes:  # bounded by lines and by bytes
            held = 0
            emit(pipe.process_many(batch))
            batch.clear()
            if progress is not None:
                progress(pipe.stats)
    emit(pipe.process_many(batch))
    emit(pipe.flush())
    return ReplayResult(out, pipe.stats, pipe)


def _translated(messages: Iterable[bytes], fmt: str, config: Config, pipe: Pipeline) -> Iterator[bytes]:
    """Messages of another input format (SPEC 2c) as SPEC section 1 lines; what cannot be read is rejected
    through the pipeline (counted, and dead-lettered once per message with the first reason)."""
    from detector.ingest.otlp import translator_for

    tr = translator_for(fmt, config.input)
    for raw in messages:
        yield from pipe.translated(raw, tr.translate(raw))


def _starts_array(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4096).lstrip().startswith(b"[")


def read_json_array(path: Path) -> Iterator[bytes]:
    """A file holding one JSON array (LiteLLM payloads), as one message."""
    yield path.read_bytes()


def read_delimited(path: Path, max_bytes: int = 64 << 20) -> Iterator[bytes]:
    r"""Length-delimited messages (a varint length before each, as protobuf's ``writeDelimitedTo`` writes
    them). A truncated last message is yielded as it is (its decoder rejects it).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "m.bin"
    >>> _ = p.write_bytes(b"\x02ab\x81\x01" + b"x" * 129)
    >>> [len(m) for m in read_delimited(p)]
    [2, 129]
    """
    with path.open("rb") as fh:
        while True:
            n = shift = 0
            while True:
                b = fh.read(1)
                if not b:
                    return
                n |= (b[0] & 0x7F) << shift
                shift += 7
                if not b[0] & 0x80 or shift > 63:
                    break
            if n > max_bytes:
                fh.seek(n, 1)
                yield b""
                continue
            yield fh.read(n)


def dump_incident(incident: dict[str, Any]) -> str:
    """One incident event as a JSON line (stable key order)."""
    return json.dumps(incident, ensure_ascii=False, separators=(",", ":"))


def replay_file(events: Path, out: Path, config: Config, log: IO[str] | None = None,
                dead_letters: Path | None = None,
                on_pipeline: Callable[[Pipeline], None] | None = None, fmt: str = "native") -> ReplayResult:
    """Replay ``events`` into ``out``; progress and a summary go to ``log``.

    With ``dead_letters``, every rejected line is kept there as JSON
    ``{"reason", "detail", "message"}`` (the message as received, as a
    dead-letter topic would keep it; it is never logged).
    """
    started = time.monotonic()

    def progress(stats: Stats) -> None:
        if log is not None:
            rate = stats.read / max(time.monotonic() - started, 1e-9)
            print(f"replay: {stats.read:,} events read ({rate:,.0f}/s)", file=log, flush=True)

    with ExitStack() as stack:  # both files open (or fail) before any work
        fh = stack.enter_context(out.open("w", encoding="utf-8"))
        dl = stack.enter_context(dead_letters.open("w", encoding="utf-8")) if dead_letters else None

        def write(incident: dict[str, Any]) -> None:
            fh.write(dump_incident(incident))
            fh.write("\n")

        def keep(raw: bytes, rej: Rejection) -> None:
            assert dl is not None
            try:
                kept: dict[str, Any] = {"message": raw.decode("utf-8")}
            except UnicodeDecodeError:  # not text: kept byte for byte, base64-encoded
                kept = {"message_base64": base64.b64encode(raw).decode("ascii")}
            if rej.reason == "too_large":  # read_lines kept only the start of the line
                kept["truncated"] = True
            dl.write(json.dumps({"reason": rej.reason, "detail": rej.detail, **kept}) + "\n")

        source = (read_delimited(events) if fmt == "otlp_proto" else read_json_array(events) if fmt == "litellm"
                  and _starts_array(events) else read_lines(events, config.windows.max_message_bytes))
        result = replay_lines(source, config, progress, on_reject=keep if dl else None, on_incident=write,
                              on_pipeline=on_pipeline, fmt=fmt)
    if log is not None:
        print(summary(result.stats), file=log)
    return result


def summary(stats: Stats) -> str:
    """A human summary of a run's counters (no event content)."""
    rej = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected.items()) if k != "late") or "none"
    inc = ", ".join(f"{k} {v}" for k, v in sorted(stats.incidents.items())) or "none"
    return (
        f"events read: {stats.read}\n"
        f"accepted: {stats.accepted}\n"
        f"rejected: {sum(v for k, v in stats.rejected.items() if k != 'late')} ({rej})\n"
        f"late: {stats.late}\n"
        f"duplicates: {stats.duplicates}\n"
        f"windows closed: {stats.windows_closed}\n"
        f"routes evicted: {stats.routes_evicted}\n"
        f"firings: {stats.firings}\n"
        f"incident events: {sum(stats.incidents.values())} ({inc})"
        + (f"\nspans: {stats.ignored_spans} without GenAI attributes ignored, {stats.rejected_spans} rejected"
           if stats.ignored_spans or stats.rejected_spans else "")
        + _skew_line(stats)
    )


def _skew_line(stats: Stats) -> str:
    """Producers with skewed clocks, when there were any: the counts and the routes with the most."""
    line = ""
    if stats.skewed_ahead or stats.skewed_behind:
        top = ", ".join(f"{route} {n}" for route, n in stats.skewed_routes.most_common(3))
        line = f"\nskewed clocks: {stats.skewed_ahead} ahead, {stats.skewed_behind} behind (most: {top})"
    if stats.unjudged:
        line += f"\n{stats.unjudged} events beyond stream time at the end were not judged"
    if stats.jumps:
        line += f"\nstream time jumped forward {stats.jumps} times (gaps in the traffic longer than max_future_s)"
    return line
