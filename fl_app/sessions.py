"""What the server keeps while a run is on: each client's live Join stream (:class:`Session`)
and the round in progress (:class:`Round`: who was selected, who delivered, who failed)."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from fl_app.proto import fl_pb2
from fl_app.tensors import NDArrays


@dataclass
class Session:
    """One client's live Join stream."""

    client: int
    peer: str
    identity: str | None
    tasks: queue.Queue[fl_pb2.Task] = field(default_factory=queue.Queue)
    closed: threading.Event = field(default_factory=threading.Event)


@dataclass
class Round:
    number: int
    selected: set[int]
    started: float
    bytes_down: dict[int, int] = field(default_factory=dict)
    updates: dict[int, tuple[NDArrays, int, dict[str, Any]]] = field(default_factory=dict)
    failed: dict[int, tuple[str, str]] = field(default_factory=dict)

    def resolved(self) -> bool:
        return self.selected <= set(self.updates) | set(self.failed)
