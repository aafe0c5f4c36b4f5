"""The bytes the wire proof looks for on the wire: the first 48 bytes of a cell's initial
global model, which round 1 sends to every client (plaintext arms must show them, mTLS arms
must not).

Building a model imports torch (~1.5 s): each (model, seed) is built once per session, in a
background thread that the first block starts while its pods deploy and prove
(:func:`warm`), so no arm waits for the import when it starts its capture.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from pytest_ztfl.backends import Backend
from pytest_ztfl.matrix import Cell

_BUILT: dict[tuple[str, int], Future[bytes]] = {}
_LOCK = threading.Lock()
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ztfl-pattern")


def pattern(cell: Cell) -> bytes:
    """48 bytes of the cell's initial global model (waits for its build)."""
    return _building(cell.workload.model, cell.seed).result()


def warm(backend: Backend, cells: list[Cell]) -> None:
    """Start building the patterns the wire proofs of ``cells`` will look for (only where the
    backend captures the wire)."""
    if backend.capture is not None:
        for c in cells:
            _building(c.workload.model, c.seed)


def _building(model: str, seed: int) -> Future[bytes]:
    with _LOCK:
        f = _BUILT.get((model, seed))
        if f is None:
            f = _BUILT[(model, seed)] = _POOL.submit(_model_prefix, model, seed)
        return f


def _model_prefix(model: str, seed: int) -> bytes:
    from fl_app.models import build_model
    from fl_app.tensors import state_to_arrays

    first = next(iter(state_to_arrays(build_model(model, seed).state_dict()).values()))
    return first.tobytes()[:48]
