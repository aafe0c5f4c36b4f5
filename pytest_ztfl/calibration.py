"""A NET profile's calibration on a private link of this machine, once per session (sitting)
that measures its cells: ``calibration/<NET>.json``, and ``<NET>.2.json``, ``<NET>.3.json`` ...
for the later sittings of a resumed run, so each is checked on the machine as it was when its
cells ran, and every row references the calibration it was measured against. On kind/kube none
(the pods' own tc netem shapes the links there).

A session's calibrations (:class:`Calibrations`) may run aside, in a thread, while a block's
pods start and are proven; the block waits for its profile's calibration before its FL runs
start, so no calibration overlaps a measured round."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from k8s_fixtures.netem.calibrate import calibrate
from k8s_fixtures.netem.profiles import Profile
from pytest_ztfl.results import atomic_write
from pytest_ztfl.warning_types import ZtflCalibrationWarning

NOT_CALIBRATED = (
    "not measured: on kind/kube each client pod's tc netem applies the profile, and a "
    "calibration here would measure this machine's links, not the cluster's"
)


def measure(
    net: str,
    out: Path,
    backend: str,
    profiles: Mapping[str, Profile],
    progress: Callable[[str], None],
) -> tuple[dict[str, Any], str | None]:
    """``net`` calibrated now, into the first free name in ``out/calibration/``: its reference
    for the rows, and what to warn of when it missed its targets (the caller warns, from the
    test's thread)."""
    if backend != "local":
        return {"ref": None, "passed": None, "note": NOT_CALIBRATED}, None
    path = free_name(out / "calibration", net)
    ref = f"calibration/{path.name}"
    progress(f"calibrating {net} (once per sitting, stored in {ref})")
    result = calibrate(profiles[net])
    path.parent.mkdir(exist_ok=True)
    atomic_write(path, result.to_json().encode())
    missed = None
    if not result.passed:
        failed = [f.name for f in result.figures if f.passed is False]
        missed = f"{net}: calibration misses its targets ({', '.join(failed)}); see {path}"
    return {"ref": ref, "passed": bool(result.passed)}, missed


class Calibrations:
    """A session's calibration of each profile, once: now (:meth:`ref`), or started in a
    thread to be waited for later (:meth:`aside`)."""

    def __init__(
        self,
        out: Path,
        backend: str,
        profiles: Mapping[str, Profile],
        progress: Callable[[str], None],
    ) -> None:
        self._args = (out, backend, profiles, progress)
        self._refs: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, Future[tuple[dict[str, Any], str | None]]] = {}
        self._lock = threading.Lock()

    def ref(self, net: str) -> dict[str, Any]:
        """``net``'s calibration reference, calibrated now unless it was (or is being)."""
        return self.aside(net)()

    def aside(self, net: str) -> Callable[[], dict[str, Any]]:
        """Start ``net``'s calibration in a thread unless it was (or is being) calibrated;
        the call returned waits for it and gives its reference (warns, once, when it missed
        its targets). One that raised raises, and the next ask calibrates again."""
        with self._lock:
            if net in self._refs:
                known = self._refs[net]
                return lambda: known
            fut = self._pending.get(net)
            if fut is None:
                ex = ThreadPoolExecutor(1, thread_name_prefix=f"ztfl-calibrate-{net}")
                fut = self._pending[net] = ex.submit(measure, net, *self._args)
                ex.shutdown(wait=False)

        def wait() -> dict[str, Any]:
            try:
                ref, missed = fut.result()
            except BaseException:
                with self._lock:
                    if self._pending.get(net) is fut:
                        del self._pending[net]
                raise
            with self._lock:
                first = self._pending.pop(net, None) is not None
                self._refs[net] = ref
            if first and missed:
                warnings.warn(ZtflCalibrationWarning(missed), stacklevel=2)
            return ref

        return wait

    def settle(self, net: str | None = None) -> None:
        """Wait for ``net``'s calibration (None: every one) if under way; its error is raised
        to whoever asks for it."""
        with self._lock:
            pending = [f for n, f in self._pending.items() if net in (None, n)]
        for fut in pending:
            fut.exception()


def free_name(where: Path, net: str) -> Path:
    """``<NET>.json`` if no earlier sitting holds it, else ``<NET>.<k>.json`` (k = 2, 3 ...)."""
    path, k = where / f"{net}.json", 1
    while path.exists():
        k += 1
        path = where / f"{net}.{k}.json"
    return path
