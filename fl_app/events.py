"""The server's event log: versioned JSON lines, one event per line, and a reader for it.

Every event carries ``v`` (schema version), ``event`` (type), ``run_id``, ``t`` (seconds on the
server's monotonic clock since the run started) and ``wall`` (Unix time, for correlating with
other logs). The per-type fields are listed in ``REQUIRED`` and documented in docs/events.md.
Lines that are not JSON objects (e.g. a runtime's own log lines interleaved on stdout) are
skipped by the reader and counted, never silently turned into events.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SCHEMA = "ztfl.fl/1"

# Failure classes the workload itself can tell apart. The harness may refine a ``disconnect`` or
# ``timeout`` into netpol / resource / netem when it has the evidence (pod status, probes).
FAILURE_CLASSES = ("disconnect", "timeout", "invalid_update", "protocol", "mtls", "client_error")

REQUIRED: dict[str, tuple[str, ...]] = {
    "run_start": ("config", "partition", "model_params", "update_bytes", "data_source"),
    "server_ready": ("port",),
    "client_joined": ("client", "peer", "identity"),
    "client_left": ("client", "reason"),
    "round_hold": ("round",),
    "round_start": ("round", "selected"),
    "client_update": (
        "round",
        "client",
        "bytes_down",
        "bytes_up",
        "train_seconds",
        "num_samples",
        "identity",
    ),
    "failure": ("round", "client", "class", "reason", "detail"),
    "round_end": (
        "round",
        "ok",
        "participants",
        "failed",
        "duration",
        "aggregation_seconds",
    ),
    "eval": ("round", "accuracy", "loss", "seconds"),
    "target_reached": ("round", "accuracy", "target", "tta_seconds"),
    "run_end": ("ok", "rounds_completed", "reason", "final_accuracy"),
}


class EventLogError(ValueError):
    """A line of an event log is not a valid event; the message names file and line."""


class EventLog:
    """Thread-safe writer of events to a stream (stdout by default) and optionally a file."""

    def __init__(self, run_id: str, stream: IO[str] | None = sys.stdout, path: Path | None = None):
        self.run_id = run_id
        self._stream = stream
        self._file = open(path, "a", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if event not in REQUIRED:
            raise ValueError(f"unknown event type {event!r}")
        missing = [k for k in REQUIRED[event] if k not in fields]
        if missing:
            raise ValueError(f"event {event}: missing fields {missing}")
        record = {
            "v": SCHEMA,
            "event": event,
            "run_id": self.run_id,
            "t": round(self.now(), 6),
            "wall": round(time.time(), 6),
            **fields,
        }
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            for out in (self._stream, self._file):
                if out is not None:
                    out.write(line)
                    out.flush()
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class ParsedLog:
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped_lines: int = 0

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


def parse_events(lines: Iterable[str], source: str = "<events>") -> ParsedLog:
    """Parse and validate an event log; raise EventLogError naming the first bad line."""
    log = ParsedLog()
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text.startswith("{"):
            log.skipped_lines += bool(text)
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EventLogError(f"{source}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or "event" not in rec:
            raise EventLogError(f"{source}:{n}: a JSON object without an 'event' field")
        if rec.get("v") != SCHEMA:
            raise EventLogError(
                f"{source}:{n}: schema {rec.get('v')!r}, this reader knows {SCHEMA}"
            )
        kind = rec["event"]
        if kind not in REQUIRED:
            raise EventLogError(f"{source}:{n}: unknown event type {kind!r}")
        missing = [k for k in (*REQUIRED[kind], "t", "wall", "run_id") if k not in rec]
        if missing:
            raise EventLogError(f"{source}:{n}: {kind} event lacks {', '.join(missing)}")
        log.events.append(rec)
    return log


def read_events(path: Path | str) -> ParsedLog:
    p = Path(path)
    with p.open(encoding="utf-8") as fh:
        return parse_events(fh, str(p))
