"""One matrix run inside a pytest session: settings, results, the cluster, gates and summary.

The plugin's hooks and fixtures delegate here; this module owns the order of things:
validate everything (usage errors) before a cluster exists, create the cluster once, run or
resume each cell, store its row durably, judge its SLOs, and tear everything down.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_ztfl import matrix as mx
from pytest_ztfl import options
from pytest_ztfl.replay import ReplayClock
from pytest_ztfl.results import ResultsError, ResultStore, atomic_write, check_writable


def _net_profile_names(config: pytest.Config) -> list[str] | None:
    from k8s_fixtures.netem import profiles

    path = options._get(config, "net-profiles")
    try:
        return sorted(profiles.load_profiles(path).keys())
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--ztfl-net-profiles={path}: {exc}") from None


class ZtflCalibrationWarning(UserWarning):
    """A network profile, measured on this machine, misses its calibration targets."""


NOT_CALIBRATED = (
    "not measured: on kind/kube each client pod's tc netem applies the profile, and a "
    "calibration here would measure this machine's links, not the cluster's"
)


class ZtflRoundBudgetWarning(UserWarning):
    """A network profile's rates cannot move the model down and up within the round deadline."""


def round_budget_warnings(cells: list[mx.Cell], profiles_path: str | Path | None) -> list[str]:
    """One line per (NET, model, deadline) of the matrix whose round cannot fit: the minimum
    transfer time (delay + serialisation at the profile's rates, each way) beats the deadline."""
    from fl_app.model_sizes import model_bytes
    from k8s_fixtures.netem import load_profiles, round_budget_warning

    table = load_profiles(profiles_path)
    by_key: dict[tuple[str, str, float], int] = {}
    for c in cells:
        key = (c.net, c.workload.model, c.workload.round_deadline)
        by_key[key] = by_key.get(key, 0) + 1
    out = []
    for (net, model, deadline), n in sorted(by_key.items()):
        line = round_budget_warning(table[net], model_bytes(model), deadline)
        if line is not None:
            out.append(f"{line}: {n} cell(s) with model {model} will miss it in every round")
    return out


class ZtflSession:
    def __init__(
        self,
        settings: options.Settings,
        store: ResultStore,
        progress: Callable[[str], None] = lambda _: None,
        backend: tuple[str, str] | None = None,  # (name, why) when already resolved
    ) -> None:
        self.progress = progress
        self.settings = settings
        self.store = store
        self.cells = settings.matrix.cells()
        self.planned: list[mx.Cell] = []  # the cells the collected tests use, in test order
        self.rows: dict[str, dict[str, Any]] = {}
        self._prefetch: Any = None  # pytest_ztfl.prefetch.Prefetcher with --ztfl-parallel > 1
        self._calibrated: dict[str, dict[str, Any]] = {}  # NET -> its calibration reference
        self._clocks: dict[str, ReplayClock] = {}
        self._cluster: Any = None
        self._backend_note = ""
        self._platform: Any = None
        from pytest_ztfl import backends

        name, why = backend or backends.choose(settings.backend, settings.kube_context)
        self.backend_name, self.backend_why = name, why
        self.unavailable = backends.unavailable(name, settings.kube_context)
        self.broken: str | None = None  # why the cluster could not be created (cells fail)

    @classmethod
    def from_config(cls, config: pytest.Config) -> ZtflSession:
        s = options.settings(config, _net_profile_names(config))
        assert s is not None
        from pytest_ztfl import backends

        cells = s.matrix.cells()
        refused = backends.matrix_unsupported(s.backend, cells)
        if refused is not None:
            raise pytest.UsageError(refused)
        backend = backends.choose(s.backend, s.kube_context)
        shaped = sorted({c.net for c in cells if c.net != "NET0"})
        if s.parallel > 1 and backend[0] == "local" and shaped:
            raise pytest.UsageError(
                f"--ztfl-parallel={s.parallel}: the local backend shapes one cell's network at a "
                f"time (one delay line per node), and this matrix has {', '.join(shaped)}; use "
                "--ztfl-parallel=1 or a Kubernetes backend"
            )
        if s.net_profiles is not None and backend[0] != "local" and shaped:
            raise pytest.UsageError(
                f"--ztfl-net-profiles={s.net_profiles}: on the {backend[0]} backend each client "
                "pod's tc init container applies the profiles shipped in the image, not this "
                "file; use it with --ztfl-backend=local"
            )
        _ensure_data(s.data)  # before results are touched: a usage error wipes nothing
        store = ResultStore(s.out)
        try:
            # --collect-only runs nothing: it must not clear the previous run's results
            store.prepare(s.matrix.to_dict(), s.resume, check_only=config.option.collectonly)
        except ResultsError as exc:
            raise pytest.UsageError(str(exc)) from None
        try:
            if s.report is not None:  # found out now, not after the whole matrix has run
                check_writable(s.report, "--ztfl-report")
        except ResultsError as exc:
            raise pytest.UsageError(str(exc)) from None
        for line in round_budget_warnings(cells, s.net_profiles):
            config.issue_config_time_warning(ZtflRoundBudgetWarning(line), stacklevel=2)

        lock = threading.Lock()

        def progress(line: str) -> None:
            """Live lines while a cell runs, past pytest's output capture (as live logging)."""
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            capman = config.pluginmanager.get_plugin("capturemanager")
            if reporter is None or capman is None:
                return
            with lock, capman.global_and_fixture_disabled():
                reporter.write_line(line)

        return cls(s, store, progress, backend)

    # ---- collection -------------------------------------------------------------------
    def select(self, filters: Mapping[str, Any]) -> list[mx.Cell]:
        def wanted(cell: mx.Cell) -> bool:
            for key, value in filters.items():
                allowed = value if isinstance(value, list | tuple | set) else [value]
                if getattr(cell, key) not in allowed:
                    return False
            return True

        return [c for c in self.cells if wanted(c)]

    def clock_for(self, cell: mx.Cell) -> ReplayClock:
        return self._clocks.setdefault(cell.id, ReplayClock())

    @staticmethod
    def group_of(cell: mx.Cell) -> str:
        """Benchmark group: one per NET x data, so SEC levels sit side by side."""
        return f"{cell.net}-{cell.data_label}"

    # ---- running ----------------------------------------------------------------------
    def cluster(self) -> Any:
        if self._cluster is None:
            from pytest_ztfl import backends

            try:
                self._cluster, self._backend_note, self._platform = backends.create(
                    self.settings.backend,
                    data_dir=self.settings.data,
                    image=self.settings.image,
                    context=self.settings.kube_context,
                    net_profiles=self.settings.net_profiles,
                )
            except backends.BackendError as exc:
                # The machine can run this backend (else `unavailable` skipped the cells), but
                # the cluster could not be made or reached: a failure, once, for every cell.
                self.broken = str(exc)
                pytest.fail(self.broken, pytrace=False)
        return self._cluster

    def plan(self, cells: list[mx.Cell]) -> None:
        """The cells of the collected (and not deselected) tests, in the order they run."""
        self.planned = list({c.id: c for c in cells}.values())

    def result(self, cell: mx.Cell) -> dict[str, Any]:
        """The cell's row: from disk on --ztfl-resume, else measured now and stored."""
        if cell.id in self.rows:  # another test of this session already has it
            return self.rows[cell.id]
        row = self.store.done(cell.id) if self.settings.resume else None
        if row is None:
            if self.unavailable:
                pytest.skip(self.unavailable)
            if self.broken:
                pytest.fail(self.broken, pytrace=False)
            from pytest_ztfl import backends

            refused = backends.cell_unsupported(self.backend_name, cell)
            if refused is not None:
                pytest.skip(refused)
            self.cluster()
            if self.settings.parallel > 1:
                row = self._ahead(cell)
            else:
                row = self._measure(cell, self.progress)
        else:
            row["resumed"] = True
        self.rows[cell.id] = row
        return row

    def _ahead(self, cell: mx.Cell) -> dict[str, Any]:
        """Wait for a cell measured by the pool; on first use, start the pool with every
        planned cell still to measure."""
        from pytest_ztfl import backends
        from pytest_ztfl.prefetch import Prefetcher

        if self._prefetch is None:
            todo = [
                c
                for c in self.planned or [cell]
                if c.id not in self.rows
                and not (self.settings.resume and self.store.done(c.id))
                and backends.cell_unsupported(self.backend_name, c) is None
            ]
            # Calibrate first: calibrating while cells run would measure their load too.
            for net in dict.fromkeys(c.net for c in [cell, *todo]):
                self.calibration(net)
            self._prefetch = Prefetcher(self.settings.parallel, self._measure_tagged)
            self._prefetch.submit([cell, *todo])
        elif not self._prefetch.has(cell):  # a cell no collected test announced
            self.calibration(cell.net)
            self._prefetch.submit([cell])
        row: dict[str, Any] = self._prefetch.result(cell)
        return row

    def _measure_tagged(self, cell: mx.Cell) -> dict[str, Any]:
        """Measure in a pool thread; its live lines carry the cell's id (cells interleave)."""

        def progress(line: str) -> None:
            self.progress(line if line.startswith(cell.id) else f"{cell.id}: {line.strip()}")

        return self._measure(cell, progress)

    def _measure(self, cell: mx.Cell, progress: Callable[[str], None]) -> dict[str, Any]:
        """Run one cell on the session's cluster and store its row (events first)."""
        from pytest_ztfl import runner

        calibration = self.calibration(cell.net)
        row, events = runner.run_cell(
            self._cluster, cell, self._platform, self._backend_note, progress
        )
        row["finished_wall"] = time.time()
        row["backend"]["parallel"] = self.settings.parallel
        row["overlays"]["net"]["calibration"] = calibration
        row["extra_info"]["calibration"] = calibration
        self.store.save(row, events)
        return row

    def calibration(self, net: str) -> dict[str, Any]:
        """Calibrate profile ``net`` once per results directory (``calibration/<NET>.json``)
        on a private link of this machine; every cell of that NET references it."""
        if net in self._calibrated:
            return self._calibrated[net]
        if self.backend_name != "local":
            # the pods' own tc netem shapes these links; a link on this machine says nothing
            self._calibrated[net] = {"ref": None, "passed": None, "note": NOT_CALIBRATED}
            return self._calibrated[net]
        ref = f"calibration/{net}.json"
        path = self.store.out / ref
        if not path.exists():
            from k8s_fixtures.netem import load_profiles
            from k8s_fixtures.netem.calibrate import calibrate

            profiles = load_profiles(self.settings.net_profiles)
            self.progress(f"calibrating {net} (once per run, stored in {ref})")
            result = calibrate(profiles[net])
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, result.to_json().encode())
            if not result.passed:
                failed = [f.name for f in result.figures if f.passed is False]
                warnings.warn(
                    ZtflCalibrationWarning(
                        f"{net}: calibration misses its targets ({', '.join(failed)}); see {path}"
                    ),
                    stacklevel=1,
                )
        passed = bool(json.loads(path.read_text()).get("passed"))
        self._calibrated[net] = {"ref": ref, "passed": passed}
        return self._calibrated[net]

    def baseline(self, cell: mx.Cell) -> dict[str, Any] | None:
        """The row of the cell's SEC0 baseline (``Cell.baseline``), if this run has it."""
        c = cell.baseline(self.cells)
        return None if c is None else self.rows.get(c.id) or self.store.done(c.id)

    def gates(self, cell: mx.Cell, row: dict[str, Any]) -> list[Any]:
        """The cell's SLO verdicts, also stored in its row (``slo``) for reports."""
        from pytest_ztfl import slo

        verdicts = slo.evaluate(cell, row, self.baseline(cell), self.settings)
        row["slo"] = [v.to_dict() for v in verdicts]
        self.store.update(row)
        return verdicts

    # ---- reporting --------------------------------------------------------------------
    def summary(self, write_line: Callable[[str], None]) -> None:
        if not self.rows:
            return
        from pytest_ztfl import summary_table

        write_line("")
        for line in summary_table.render(list(self.rows.values())):
            write_line(line)
        if self._backend_note:
            write_line(f"backend: {self._backend_note}")
        write_line(f"results: {self.store.out}/runs.jsonl, rounds.csv, events/")

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()  # before the cluster goes: running cells finish and store
            self._prefetch = None
        try:
            if self.settings.report is not None and self.rows:
                from pytest_ztfl import report

                try:
                    path = report.write(self.store.out, self.settings.report)
                    self.progress(f"report: {path}")
                except report.ReportError as exc:
                    # the run asked for a report: its absence fails the session's teardown
                    pytest.fail(f"ztfl report: error: {exc}", pytrace=False)
        finally:
            if self._cluster is not None and not self.settings.keep_cluster:
                self._cluster.teardown()
                self._cluster = None
            elif self._cluster is not None and hasattr(self._cluster, "detach"):
                # a local cluster is owned by this process: hand it over, or the next start
                # would purge it as stale
                self._cluster.detach()
                self.progress(
                    f"kept cluster {self._cluster.name}: remove it with "
                    f"`ztfl cluster down {self._cluster.name}`"
                )


def _ensure_data(path: str) -> None:
    """Make sure MNIST is in ``path`` (downloading it when absent); a usage error otherwise."""
    import os

    from fl_app.data import DataError, check_mnist

    try:
        os.makedirs(path, exist_ok=True)
        check_mnist(path, download=True)
    except (OSError, DataError) as exc:
        raise pytest.UsageError(f"--ztfl-data={path}: {exc}") from None
    except Exception as exc:  # torchvision raises URLError/RuntimeError when offline
        raise pytest.UsageError(
            f"--ztfl-data={path}: no MNIST there and the download failed ({exc}); "
            "point --ztfl-data or ZTFL_DATA_DIR at a directory holding MNIST/raw/*.gz"
        ) from None
