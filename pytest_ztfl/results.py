"""Durable results of a matrix run: one file per finished cell, and derived tables.

Layout of ``--ztfl-out=DIR``::

    matrix.json            the matrix being run (resume refuses a different one)
    cells/<cell-id>.json   one row per finished cell: parameters, metrics, environment, proofs
    events/<cell-id>.jsonl the server's raw event log of that cell (numbers trace back here)
    runs.jsonl             all cell rows, one per line (derived from cells/)
    rounds.csv             one row per round of every cell (derived from cells/)

Every file is written to a temporary name, fsynced and renamed, so a harness killed at any
moment leaves only whole files: at most the cell in flight is lost, and ``--ztfl-resume``
runs exactly the cells that have no file yet.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pytest_ztfl.rows import calibration_of

ROUND_COLUMNS = (
    "cell",
    "sec",
    "net",
    "data",
    "seed",
    "mtls",
    "round",
    "ok",
    "duration",
    "participants",
    "selected",
    "failures",
    "bytes_down",
    "bytes_up",
    "max_train_seconds",
    "aggregation_seconds",
    "compute_seconds",
    "comm_seconds",
    "path_seconds",
    "injected_delay_seconds",
    "check",
    "block_run",
    "position",
    "cpu_seconds",
    "cpu_proxy_seconds",
    "cpu_delayline_seconds",
    "cpu_other_seconds",
    "steal_seconds",
)
DERIVED = ("runs.jsonl", "rounds.csv")
# what a run writes in its --ztfl-out (a report or other files the user keeps there are not ours)
OWNED = ("matrix.json", "design.json", "cells", "events", "calibration", "attempts", *DERIVED)
TRANSIENT = ("resumed",)  # in-memory markers of one session, never stored


class ResultsError(RuntimeError):
    """The output directory cannot be used; the message names it and why."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not readable as JSON ({exc})") from None


def check_could_write(path: Path, option: str) -> None:
    """Whether ``path`` could be created and written, creating nothing: it (or the nearest
    of its parents that exists) must be a directory this process may write to."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        if p == path.absolute():
            raise ResultsError(f"{option}={path}: a file, not a directory")
        raise ResultsError(f"{option}={path}: not writable (Not a directory: {p})")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ResultsError(f"{option}={path}: not writable (Permission denied: {p})")


def check_writable(path: Path, option: str) -> None:
    """Create ``path`` if needed and write a probe file there; a one-line error if not."""
    if path.exists() and not path.is_dir():
        raise ResultsError(f"{option}={path}: a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".ztfl-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ResultsError(f"{option}={path}: not writable ({exc.strerror})") from None


class ResultStore:
    def __init__(self, out: Path, code: str | None = None) -> None:
        self.out = out
        self.code = code  # the git commit of the code that would measure (rows' environment)
        self.cells_dir = out / "cells"
        self.events_dir = out / "events"
        # cells saved from parallel workers: one writer at a time keeps the derived tables whole
        self._lock = threading.RLock()
        # the stored rows, read from cells/ once and then kept in step with every write, so
        # refreshing the derived tables after each cell does not re-read every earlier cell
        self._rows: dict[str, dict[str, Any]] | None = None

    def check(self, matrix: dict[str, Any], resume: bool) -> None:
        """What can be known before anything runs, touching nothing: the directory could be
        written, and a resumed run's stored matrix is this one."""
        check_could_write(self.out, "--ztfl-out")
        self._stored_matrix(matrix, resume)

    def _stored_matrix(self, matrix: dict[str, Any], resume: bool) -> Any:
        """The matrix the directory holds (None: none); a resumed run's must be ``matrix``."""
        stored = self.out / "matrix.json"
        previous = _read_json(stored) if stored.is_file() else None
        if resume and previous is not None and previous != matrix:
            name = previous.get("name") if isinstance(previous, dict) else None
            raise ResultsError(
                f"--ztfl-resume: {stored} holds a different matrix ({name}); "
                "use another --ztfl-out or drop --ztfl-resume"
            )
        return previous

    def prepare(
        self,
        matrix: dict[str, Any],
        resume: bool,
        measuring: Collection[str] = (),
    ) -> None:
        """Make the directory ready for a run that is about to measure the cells ``measuring``
        (ids; called just before the first one, never by a command that measures nothing).

        Resumed: the stored matrix must be this one, and so must the code that measured the
        stored cells (:meth:`_same_code`); everything is kept. Fresh, with the same matrix
        stored: the rows and event logs of the cells about to be measured are removed, and
        then every calibration no kept row references (this session calibrates its profiles
        anew, :mod:`pytest_ztfl.calibration`); every other cell's results stay. Fresh, with
        another matrix (or none) stored: the previous results are moved whole to
        ``<out>.prev/`` (replacing an older one), so no run loses another's results by
        accident."""
        check_writable(self.out, "--ztfl-out")
        previous = self._stored_matrix(matrix, resume)
        if resume and measuring:
            self._same_code()
        with self._lock:
            if not resume and previous == matrix:
                for cid in measuring:
                    (self.cells_dir / f"{cid}.json").unlink(missing_ok=True)
                    (self.events_dir / f"{cid}.jsonl").unlink(missing_ok=True)
                    for old in (self.out / "attempts").glob(f"{cid}.*"):
                        old.unlink()
                self._drop_unreferenced_calibrations()
            elif not resume and any((self.out / name).exists() for name in OWNED):
                self._set_aside()
            for d in (self.cells_dir, self.events_dir):
                d.mkdir(exist_ok=True)
            self._rows = None
            text = json.dumps(matrix, indent=1, sort_keys=True)
            atomic_write(self.out / "matrix.json", text.encode())
            if any(self.cells_dir.glob("*.json")) or any(
                (self.out / n).exists() for n in DERIVED
            ):
                self.refresh()  # the derived tables hold exactly the rows kept

    def _drop_unreferenced_calibrations(self) -> None:
        """Remove ``calibration/*.json`` files that no stored row or kept attempt names in
        its ``overlays.net.calibration.ref`` (called with the lock held)."""
        where = self.out / "calibration"
        if not where.is_dir():
            return
        referenced = set()
        for path in [*self.cells_dir.glob("*.json"), *(self.out / "attempts").glob("*.json")]:
            referenced.add(calibration_of(json.loads(path.read_text())).get("ref"))
        for path in where.glob("*.json"):
            if f"calibration/{path.name}" not in referenced:
                path.unlink()

    def _same_code(self) -> None:
        """A resumed run that measures more cells must be the code that measured the stored
        ones (rows' ``environment.git_commit``): else one results directory would mix two
        versions of the instrument."""
        stored = {(r.get("environment") or {}).get("git_commit") for r in self.rows()}
        if stored and stored != {self.code}:
            then = ", ".join(sorted(str(c)[:12] for c in stored))
            raise ResultsError(
                f"--ztfl-resume: {self.cells_dir} holds cells measured by the code at {then}, "
                f"this code is at {str(self.code)[:12]}; resume from a checkout of that commit "
                "(git worktree add DIR COMMIT) or use another --ztfl-out"
            )

    @property
    def previous(self) -> Path:
        """Where a fresh run of another matrix moves the results it replaces."""
        out = self.out.resolve()
        return out.with_name(f"{out.name}.prev")

    def _set_aside(self) -> None:
        prev = self.previous
        if prev.exists():
            shutil.rmtree(prev)
        prev.mkdir()
        for name in OWNED:
            if (self.out / name).exists():
                os.replace(self.out / name, prev / name)

    def done(self, cell_id: str) -> dict[str, Any] | None:
        path = self.cells_dir / f"{cell_id}.json"
        if not path.exists():
            return None
        row: dict[str, Any] = json.loads(path.read_text())
        return row

    def save(self, row: dict[str, Any], events: bytes) -> None:
        """Store one finished cell (events first, then its row), then refresh derived tables."""
        cid = row["cell"]["id"]
        row = {**row, "events_file": f"events/{cid}.jsonl"}
        data = json.dumps(row, sort_keys=True, allow_nan=False).encode()
        with self._lock:
            atomic_write(self.events_dir / f"{cid}.jsonl", events)
            atomic_write(self.cells_dir / f"{cid}.json", data)
            self._stored(cid, data)

    def save_attempt(self, row: dict[str, Any], events: bytes, attempt: int) -> None:
        """Keep an attempt that was measured again (pytest_ztfl.attempts): its row and event
        log under ``attempts/<cell id>.<attempt>.*``, apart from the rows the tables hold."""
        cid = row["cell"]["id"]
        where = self.out / "attempts"
        name = f"{cid}.{attempt}"
        row = {**row, "attempt": attempt, "events_file": f"attempts/{name}.jsonl"}
        data = json.dumps(row, sort_keys=True, allow_nan=False).encode()
        with self._lock:
            where.mkdir(exist_ok=True)
            atomic_write(where / f"{name}.jsonl", events)
            atomic_write(where / f"{name}.json", data)

    def update(self, row: dict[str, Any]) -> None:
        """Rewrite a stored cell's row (e.g. with its SLO verdicts), events untouched.

        The row keeps its ``events_file`` (``save`` adds it to the stored copy only), the
        session-only ``resumed`` marker is not stored, and an unchanged row is not rewritten,
        so ``--ztfl-resume`` leaves the files of finished cells as they were.
        """
        cid = row["cell"]["id"]
        stored = {k: v for k, v in row.items() if k not in TRANSIENT}
        stored.setdefault("events_file", f"events/{cid}.jsonl")
        data = json.dumps(stored, sort_keys=True, allow_nan=False).encode()
        path = self.cells_dir / f"{cid}.json"
        with self._lock:
            if path.exists() and path.read_bytes() == data:
                return
            atomic_write(path, data)
            self._stored(cid, data)

    def _stored(self, cid: str, data: bytes) -> None:
        """Keep the in-memory rows in step with ``cells/<cid>.json`` and refresh the tables."""
        rows = self._loaded()
        rows[cid] = json.loads(data)  # a copy: later changes to the caller's row are not stored
        self.refresh()

    def _loaded(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._rows is None:
                self._rows = {
                    p.stem: json.loads(p.read_text()) for p in sorted(self.cells_dir.glob("*.json"))
                }
            return self._rows

    def rows(self) -> list[dict[str, Any]]:
        """Every stored row, oldest first (``finished_wall``)."""
        return sorted(self._loaded().values(), key=lambda r: r.get("finished_wall", 0.0))

    def refresh(self) -> None:
        rows = self.rows()
        atomic_write(
            self.out / "runs.jsonl",
            "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode(),
        )
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=ROUND_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            cell = r["cell"]
            for rd in r["metrics"]["rounds"]:
                w.writerow(
                    {
                        "cell": cell["id"],
                        "sec": cell["sec"],
                        "net": cell["net"],
                        "data": cell["data"],
                        "seed": cell["seed"],
                        "mtls": cell["mtls"] or "",
                        **{k: rd.get(k) for k in ROUND_COLUMNS[6:] if k != "failures"},
                        "failures": ";".join(f"{k}={v}" for k, v in sorted(rd["failures"].items())),
                        "check": cell.get("check") or "",
                        "block_run": (r.get("design") or {}).get("block_run", ""),
                    }
                )
        atomic_write(self.out / "rounds.csv", buf.getvalue().encode())
