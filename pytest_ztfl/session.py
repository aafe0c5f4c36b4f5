"""One matrix run inside a pytest session: settings, results, the cluster, gates and summary.

The plugin's hooks and fixtures delegate here; this module owns the order of things:
validate everything (usage errors) before a cluster exists, touch the results directory and
the data only once a cell is about to be measured (so ``--help``, ``--collect-only``, an empty
selection leave them as they were), create the cluster once, run or resume each cell, store
its row durably, judge its SLOs, and tear everything down.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from pytest_ztfl import attempts, backends, calibration, design, options, preflight, rows, slo
from pytest_ztfl import matrix as mx
from pytest_ztfl.analysis import compare
from pytest_ztfl.design import Design
from pytest_ztfl.live import BLOCK, LOG_LEVEL, LOGGER, BlockCount, Progress, silent
from pytest_ztfl.replay import ReplayClock
from pytest_ztfl.results import ResultsError, ResultStore, atomic_write, check_could_write
from pytest_ztfl.warning_types import ZtflRoundBudgetWarning

if TYPE_CHECKING:
    from k8s_fixtures.cluster import Cluster
    from pytest_ztfl.backends import Backend


DESIGN_FILE = "design.json"


class ZtflSession:
    def __init__(
        self,
        settings: options.Settings,
        store: ResultStore,
        progress: Progress = silent,
        backend: tuple[str, str] | None = None,  # (name, why) when already resolved
    ) -> None:
        self.progress = progress
        self.settings = settings
        self.store = store
        self.cells = settings.matrix.cells()
        self.planned: list[mx.Cell] = []  # the cells the collected tests use, in test order
        self.design: Design | None = None  # blocks and orders of the planned cells
        self.rows: dict[str, dict[str, Any]] = {}
        self._stored_baseline: dict[str, dict[str, Any]] | None = None
        self._prefetch: Any = None  # pytest_ztfl.prefetch.Prefetcher with --ztfl-parallel > 1
        self._clocks: dict[str, ReplayClock] = {}
        self.blocks = BlockCount()  # k/N and the time left, for the live lines (begin() sets N)
        self._backend: Backend | None = None
        self.backend_note = ""  # the backend's note, kept for the summary after teardown
        name, why = backend or backends.choose(
            settings.backend, settings.kube_context, settings.image
        )
        self.backend_name, self.backend_why = name, why
        self.calibrations = calibration.Calibrations(store.out, name, settings.profiles, progress)
        self.unavailable = backends.unavailable(name, settings.kube_context)
        self.broken: str | None = None  # why the cluster could not be created (cells fail)

    @classmethod
    def from_config(cls, config: pytest.Config) -> ZtflSession:
        s = options.settings(config, preflight.net_profiles(config))
        assert s is not None
        cells = s.matrix.cells()
        refused = backends.matrix_unsupported(s.backend, cells)
        if refused is not None:
            raise pytest.UsageError(refused)
        backend = backends.choose(s.backend, s.kube_context, s.image)
        shaped = sorted({c.net for c in cells if c.shaped})
        if s.parallel > 1 and backend[0] == "local" and shaped:
            raise pytest.UsageError(
                f"--ztfl-parallel={s.parallel}: on the local backend parallel blocks share one "
                "machine's CPUs with their userspace delay lines, so their rounds would overlap, "
                f"and this matrix has {', '.join(shaped)}; use --ztfl-parallel=1 (a block's arms "
                "already run together) or a Kubernetes backend"
            )
        if s.net_profiles is not None and backend[0] != "local" and shaped:
            raise pytest.UsageError(
                f"--ztfl-net-profiles={s.net_profiles}: on the {backend[0]} backend each client "
                "pod's tc init container applies the profiles shipped in the image, not this "
                "file; use it with --ztfl-backend=local"
            )
        if (
            s.baseline_dir is not None
            and s.baseline_dir.resolve() == s.out.resolve()
            and not s.resume
        ):
            raise pytest.UsageError(
                f"--ztfl-baseline={s.baseline_dir}: the same directory as --ztfl-out, whose "
                "results a new run replaces; store the new run elsewhere"
            )
        preflight.refuse_xdist(config)
        from pytest_ztfl import environment

        store = ResultStore(s.out, code=environment.capture()["git_commit"])
        try:  # checks that write nothing: the results are touched by begin(), if ever
            store.check(s.matrix.to_dict(), s.resume)
            if s.report is not None:  # found out now, not after the whole matrix has run
                check_could_write(s.report, "--ztfl-report")
        except ResultsError as exc:
            raise pytest.UsageError(str(exc)) from None
        for line in preflight.round_budget_warnings(cells, s.profiles):
            config.issue_config_time_warning(ZtflRoundBudgetWarning(line), stacklevel=2)

        lock = threading.Lock()
        verbosity = config.get_verbosity()
        # pytest's live logging on (--log-cli-level, log_cli): the records show the lines
        live_logs = bool(config.getini("log_cli")) or config.getoption("log_cli_level") is not None

        def progress(line: str, level: int = BLOCK) -> None:
            """Live lines while a cell runs, past pytest's output capture (as live logging),
            as verbose as pytest was asked to be (pytest_ztfl.live: -q shows blocks only, the
            default adds each cell's milestones, -v each round); each also a log record."""
            LOGGER.log(LOG_LEVEL.get(level, logging.INFO), line)
            if live_logs or verbosity < level:
                return
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            capman = config.pluginmanager.get_plugin("capturemanager")
            if reporter is None or capman is None:
                return
            with lock, capman.global_and_fixture_disabled():
                reporter.ensure_newline()  # -q's progress dots share the line otherwise
                reporter.write_line(line)

        session = cls(s, store, progress, backend)
        session.project = environment.project(config.rootpath)
        return session

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
        """Benchmark group: one per NET x data (x heterogeneity), so SEC levels sit side by side."""
        return f"{cell.net}-{cell.data_label}{f'-h{cell.hetero.name}' if cell.hetero else ''}"

    # ---- running ----------------------------------------------------------------------
    def begin(self, cells: list[mx.Cell]) -> None:
        """The tests of ``cells`` are about to run (pytest_runtestloop; not for commands that
        only inform): refuse a named backend that cannot run, fetch the data, and make the
        results directory ready for the cells that will be measured (ResultStore.prepare:
        only theirs are replaced). With nothing to measure, the results stay as they are."""
        measuring = [
            c
            for c in dict.fromkeys(cells)
            if not (self.settings.resume and self.store.done(c.id))
            and backends.cell_unsupported(self.backend_name, c) is None
        ]
        if self.unavailable and measuring:
            if self.settings.backend != "auto":
                raise pytest.UsageError(
                    f"--ztfl-backend={self.settings.backend}: {self.unavailable} (the backend "
                    "was asked for by name, so its cells are not skipped; use "
                    "--ztfl-backend=auto to take what this machine has)"
                )
            measuring = []  # auto found nothing that runs here: the cells skip, saying why
        if not measuring:
            self._clean_stale()
            return
        ids = {c.id for c in measuring}
        blocks = self.design.blocks if self.design is not None else ()
        self.blocks.total = sum(any(a.id in ids for a in b.arms) for b in blocks)
        preflight.ensure_data(self.settings.data)
        try:
            self.store.prepare(
                self.settings.matrix.to_dict(),
                self.settings.resume,
                [c.id for c in measuring],
            )
        except ResultsError as exc:
            raise pytest.UsageError(str(exc)) from None

    def _clean_stale(self) -> None:
        """A run that measures nothing still purges what killed harnesses left on this
        machine (a cluster's creation does it otherwise)."""
        if self.backend_name != "local" or self.unavailable:
            return
        from k8s_fixtures.local import state

        for name, removed in state.clean_stale().items():
            self.progress(f"removed stale local cluster {name}: {', '.join(removed)}")

    def backend(self) -> Backend:
        """The session's backend, created on first use."""
        if self._backend is None:
            try:
                self._backend = backends.create(
                    self.settings.backend,
                    data_dir=self.settings.data,
                    image=self.settings.image,
                    context=self.settings.kube_context,
                    profiles=self.settings.profiles,
                )
            except backends.BackendError as exc:
                # The machine can run this backend (else `unavailable` skipped the cells), but
                # the cluster could not be made or reached: a failure, once, for every cell.
                self.broken = str(exc)
                pytest.fail(self.broken, pytrace=False)
            self.backend_note = self._backend.note
        return self._backend

    def cluster(self) -> Cluster:
        return self.backend().cluster

    def plan(self, cells: list[mx.Cell]) -> list[mx.Cell]:
        """The cells of the collected (and not deselected) tests: group them into blocks and
        draw the run order (pytest_ztfl.design); returns the cells in that order."""
        self.planned = list({c.id: c for c in cells}.values())
        self.design = design.plan(self.planned, self.settings.interleave, self._order_seed())
        return self.design.cells()

    def _order_seed(self) -> int:
        """--ztfl-order-seed, else (resuming) the seed the run started with, else a new one."""
        if self.settings.order_seed is not None:
            return self.settings.order_seed
        stored = self.store.out / DESIGN_FILE
        if self.settings.resume and stored.exists():
            seed: int = json.loads(stored.read_text())["order_seed"]
            return seed
        if self._seed is None:
            self._seed = design.new_seed()
        return self._seed

    _seed: int | None = None
    project: dict[str, Any] | None = None  # environment.project of pytest's rootdir

    def result(self, cell: mx.Cell) -> dict[str, Any]:
        """The cell's row: from disk on --ztfl-resume, else measured now (with the rest of its
        block) and stored."""
        if cell.id in self.rows:  # measured with its block, or another test already has it
            return self.rows[cell.id]
        row = self.store.done(cell.id) if self.settings.resume else None
        if row is None:
            if self.unavailable:
                pytest.skip(self.unavailable)
            if self.broken:
                pytest.fail(self.broken, pytrace=False)
            refused = backends.cell_unsupported(self.backend_name, cell)
            if refused is not None:
                pytest.skip(refused)
            self.cluster()
            block = self._todo(self._block(cell))
            if self.settings.parallel > 1:
                self._ahead(block)
            else:
                self._measure(block, self.progress)
            row = self.rows[cell.id]
        else:
            row["resumed"] = True
            self.rows[cell.id] = row
        return row

    def _block(self, cell: mx.Cell) -> design.Block:
        if self.design is None or cell.id not in {c.id for c in self.design.cells()}:
            # a cell no collected test announced: it runs as a block of its own
            self.design = design.plan([*self.planned, cell], self.settings.interleave,
                                      self._order_seed())
            self.planned.append(cell)
        return self.design.block_of(cell)

    def _todo(self, block: design.Block) -> design.Block:
        """The block's arms still to measure (a resumed run keeps what it has stored)."""
        arms = tuple(
            c
            for c in block.arms
            if c.id not in self.rows
            and not (self.settings.resume and self.store.done(c.id))
            and backends.cell_unsupported(self.backend_name, c) is None
        )
        return replace(block, arms=arms)

    def _ahead(self, block: design.Block) -> None:
        """Wait for a block measured by the pool; on first use, start the pool with every
        planned block still to measure."""
        from pytest_ztfl.prefetch import Prefetcher

        if self._prefetch is None:
            assert self.design is not None
            todo = [self._todo(b) for b in self.design.blocks if b.key != block.key]
            todo = [block, *(b for b in todo if b.arms)]
            # Calibrate first: calibrating while cells run would measure their load too.
            for net in dict.fromkeys(c.net for b in todo for c in b.arms):
                self.calibrations.ref(net)
            self._prefetch = Prefetcher(self.settings.parallel, self._measure_tagged)
            self._prefetch.submit(todo)
        elif not self._prefetch.has(block):
            self.calibrations.ref(block.arms[0].net)
            self._prefetch.submit([block])
        self._prefetch.result(block)

    def _measure_tagged(self, block: design.Block) -> None:
        """Measure in a pool thread; its live lines carry the block's key (blocks overlap)."""

        def progress(line: str, level: int = BLOCK) -> None:
            self.progress(f"[{block.key}] {line.strip()}", level)

        self._measure(block, progress)

    def _measure(self, block: design.Block, progress: Progress) -> None:
        """Run one block on the session's cluster and store its rows (events first)."""
        from pytest_ztfl import runner

        if not block.arms:
            return
        # The cluster first (its zygotes import the workload meanwhile); the profile is
        # calibrated aside while the block's pods start and are proven, before its FL runs.
        backend = self.backend()
        calibrated = self.calibrations.aside(block.arms[0].net)
        self._record_design()
        what = "interleaved rounds" if block.mode == "round" else "one after another"
        count, eta = self.blocks.next()
        progress(
            f"block {count} {block.key}: {len(block.arms)} arm(s), {what}: "
            + ", ".join(c.id for c in block.arms)
            + eta
        )

        def context() -> rows.Context:
            return rows.Context(self.project, self.settings.parallel, calibrated())

        # the next block's profile, calibrated aside from when this block's rounds are done
        nxt = self.design.after(block) if self.design is not None else None
        try:
            done = attempts.measure(
                lambda: runner.run_block(backend, block, progress, calibrated=context,
                                         after_rounds=None if nxt is None
                                         else lambda: self._aside(nxt)),
                self.settings.retries,
                lambda n, why: progress(attempts.again(block.key, n, why)),
            )
        finally:  # a block that failed before it waited leaves no calibration running
            self.calibrations.settle(block.arms[0].net)
        for row in done.keep(self.store):
            self.rows[row["cell"]["id"]] = row

    def _aside(self, block: design.Block) -> None:
        if self._todo(block).arms:
            self.calibrations.aside(block.arms[0].net)

    def _record_design(self) -> None:
        """``<out>/design.json``: the order seed and blocks of this run (written when the
        first block is measured, so commands that measure nothing leave results alone)."""
        if self.design is None:
            return
        path = self.store.out / DESIGN_FILE
        data = json.dumps(self.design.to_dict(), indent=1, sort_keys=True).encode()
        if not path.exists() or path.read_bytes() != data:
            atomic_write(path, data)

    def baseline(self, cell: mx.Cell) -> dict[str, Any] | None:
        """The row of the cell's SEC0 baseline (``Cell.baseline``), if this run has it."""
        c = cell.baseline(self.cells)
        return None if c is None else self.rows.get(c.id) or self.store.done(c.id)

    def stored_baseline(self, cell: mx.Cell) -> dict[str, Any] | None:
        """The same cell in the ``--ztfl-baseline`` run, if it has it."""
        if self.settings.baseline_dir is None:
            return None
        if self._stored_baseline is None:
            cells = self.settings.baseline_dir / "cells"
            self._stored_baseline = {p.stem: json.loads(p.read_text())
                                     for p in sorted(cells.glob("*.json"))}
        return self._stored_baseline.get(cell.id)

    def gates(self, cell: mx.Cell, row: dict[str, Any]) -> list[Any]:
        """The cell's SLO verdicts, also stored in its row (``slo``) for reports."""
        verdicts = slo.evaluate(
            cell, row, self.baseline(cell), self.settings, self.stored_baseline(cell),
            self.noise(),
        )
        row["slo"] = [v.to_dict() for v in verdicts]
        self.store.update(row)
        return verdicts

    # ---- pooled gates -----------------------------------------------------------------
    def all_groups(self) -> list[str]:
        """The matrix's pooled comparisons: one per (SEC level [mTLS mode], NET, fault) that
        has a SEC0 baseline, e.g. ``SEC3-NET2``."""
        seen: dict[str, None] = {}
        for c in self.cells:
            if not c.level.baseline and c.check is None and c.baseline(self.cells) is not None:
                seen[slo.group_key(c)] = None
        return list(seen)

    def pooled_gates(self, group: str) -> list[Any]:
        """The group's gates over every block of it (its cells are measured if not yet)."""
        def row(c: mx.Cell) -> dict[str, Any] | None:
            # rows of this run (their tests ran first) or stored: a pooled test measures nothing
            return self.rows.get(c.id) or self.store.done(c.id)

        pairs = []
        for c in self.planned:
            if c.check is None and not c.level.baseline and slo.group_key(c) == group:
                b = c.baseline(self.cells)
                t, base = row(c), None if b is None else row(b)
                if t is not None and base is not None:
                    pairs.append((t, base))
        if not pairs:
            return []  # no measured cell of the group (deselected, skipped or not yet run)
        return slo.pooled(f"{group} / SEC0", pairs, self.settings, noise=self.noise())

    def all_checks(self) -> list[str]:
        """The check kinds (``aa``, ``delay10ms``) of the arms that have a SEC0 arm."""
        return list(dict.fromkeys(c.check for c in self.cells
                                  if c.check is not None and c.baseline(self.cells) is not None))

    def check_arms(self, check: str) -> list[tuple[mx.Cell, dict[str, Any], dict[str, Any] | None]]:
        """One check kind's measured arms, each with its row and its SEC0 arm's (or None)."""
        rows = [(c, self.rows.get(c.id) or self.store.done(c.id)) for c in self.planned
                if c.check == check]
        return [(c, r, self.baseline(c)) for c, r in rows if r is not None]

    def noise(self) -> compare.Noise:
        """The instance noise of every row measured so far, this run's and resumed ones
        (pytest_ztfl.analysis.compare.Noise)."""
        stored = (self.rows.get(c.id) or self.store.done(c.id) for c in self.planned)
        return compare.Noise.of_rows(r for r in stored if r is not None)

    # ---- reporting --------------------------------------------------------------------
    def header(self, probe: bool) -> list[str]:
        """pytest's report header: what this run measures, where, and how its links are
        shaped (``probe``: may ask the kernel whether it has netem, once per process)."""
        s = self.settings
        lines = [
            f"ztfl: matrix {s.matrix.name} ({len(self.cells)} cells), backend "
            f"{self.backend_name} ({self.backend_why}), interleave {s.interleave}, "
            f"out {s.out}{' (resumed)' if s.resume else ''}"
        ]
        shaped = sorted({c.net for c in self.cells if c.shaped})
        if shaped:
            how = backends.net_mechanism(self.backend_name, probe)
            lines.append(f"ztfl: {', '.join(shaped)} shaped by {how}")
        return lines

    def machine_info(self) -> dict[str, str]:
        """pytest-benchmark's ``machine_info`` entry: its ``compare`` warns when two runs'
        machine_info differ, so runs on different backends or NET mechanisms are told apart."""
        shaped = any(c.shaped for c in self.cells)
        how = backends.net_mechanism(self.backend_name, True) if shaped else "none (NET0 only)"
        return {"backend": self.backend_name, "net_mechanism": how}

    def summary(self, write_line: Callable[[str], None]) -> None:
        if not self.rows:
            return
        from pytest_ztfl import summary_table

        for line in summary_table.render(list(self.rows.values())):
            write_line(line)
        if self.backend_note:
            write_line(f"backend: {self.backend_note}")
        write_line(f"results: {self.store.out}/runs.jsonl, rounds.csv, events/")

    def close(self) -> None:
        self.calibrations.settle()  # one started aside for a block that never ran
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
            b = self._backend
            if b is not None and not self.settings.keep_cluster:
                b.cluster.teardown()
                self._backend = None
            elif b is not None and b.detach is not None:
                # a local cluster is owned by this process: hand it over, or the next start
                # would purge it as stale
                b.detach()
                self.progress(
                    f"kept cluster {b.cluster.name}: remove it with "
                    f"`ztfl cluster down {b.cluster.name}`"
                )
