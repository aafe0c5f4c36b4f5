"""One matrix run inside a pytest session: settings, results, the cluster, gates and summary.

The plugin's hooks and fixtures delegate here; this module owns the order of things:
validate everything (usage errors) before a cluster exists, create the cluster once, run or
resume each cell, store its row durably, judge its SLOs, and tear everything down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_ztfl import matrix as mx
from pytest_ztfl import options
from pytest_ztfl.replay import ReplayClock
from pytest_ztfl.results import ResultsError, ResultStore


def _net_profile_names(config: pytest.Config) -> list[str] | None:
    from k8s_fixtures.netem import profiles

    path = options._get(config, "net-profiles")
    try:
        return sorted(profiles.load_profiles(path).keys())
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--ztfl-net-profiles={path}: {exc}") from None


class ZtflSession:
    def __init__(self, settings: options.Settings, store: ResultStore) -> None:
        self.settings = settings
        self.store = store
        self.cells = settings.matrix.cells()
        self.rows: dict[str, dict[str, Any]] = {}
        self._clocks: dict[str, ReplayClock] = {}
        self._cluster: Any = None
        self._backend_note = ""

    @classmethod
    def from_config(cls, config: pytest.Config) -> ZtflSession:
        s = options.settings(config, _net_profile_names(config))
        assert s is not None
        store = ResultStore(s.out)
        try:
            store.prepare(s.matrix.to_dict(), s.resume)
        except ResultsError as exc:
            raise pytest.UsageError(str(exc)) from None
        _ensure_data(s.data)
        return cls(s, store)

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

            self._cluster, self._backend_note = backends.create(self.settings.backend)
        return self._cluster

    def result(self, cell: mx.Cell) -> dict[str, Any]:
        """The cell's row: from disk on --ztfl-resume, else measured now and stored."""
        row = self.store.done(cell.id) if self.settings.resume else None
        if row is None:
            from pytest_ztfl import runner

            row, events = runner.run_cell(self.cluster(), cell, self.settings, self._backend_note)
            row["finished_wall"] = time.time()
            self.store.save(row, events)
        else:
            row["resumed"] = True
        self.rows[cell.id] = row
        return row

    def baseline(self, cell: mx.Cell) -> dict[str, Any] | None:
        """The SEC0 row with the same NET, data and seed, if this run has it."""
        for c in self.cells:
            if (c.sec, c.net, c.data, c.seed) == cell.baseline():
                return self.rows.get(c.id) or self.store.done(c.id)
        return None

    def gates(self, cell: mx.Cell, row: dict[str, Any]) -> list[Any]:
        from pytest_ztfl import slo

        return slo.evaluate(cell, row, self.baseline(cell), self.settings)

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
        try:
            if self.settings.report is not None and self.rows:
                from pytest_ztfl import report

                report.write(self.store.out, self.settings.report)
        finally:
            if self._cluster is not None and not self.settings.keep_cluster:
                self._cluster.teardown()
                self._cluster = None


def _ensure_data(path: str) -> None:
    """Make sure MNIST is in ``path`` (downloading it when absent); a usage error otherwise."""
    import os

    from fl_app.data import DataError, load_mnist

    try:
        os.makedirs(path, exist_ok=True)
        load_mnist(path, download=True)
    except (OSError, DataError) as exc:
        raise pytest.UsageError(f"--ztfl-data={path}: {exc}") from None
    except Exception as exc:  # torchvision raises URLError/RuntimeError when offline
        raise pytest.UsageError(
            f"--ztfl-data={path}: no MNIST there and the download failed ({exc}); "
            "point --ztfl-data or ZTFL_DATA_DIR at a directory holding MNIST/raw/*.gz"
        ) from None
