"""pytest entry point (``pytest11``): options, collection of the matrix, fixtures, summary.

Glue only. Heavy modules (torch, the cluster backends, scipy, matplotlib) are imported inside
the hooks that need them, so ``pytest --help`` and ordinary test runs stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_ztfl import options
from pytest_ztfl.matrix import Cell

if TYPE_CHECKING:
    from k8s_fixtures.cluster import Cluster
    from pytest_ztfl.session import ZtflSession

MATRIX_TESTS = Path(__file__).with_name("matrix_tests.py")
SESSION_KEY = pytest.StashKey["ZtflSession | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ztfl_cells(sec=None, net=None, data=None, seed=None): run this test once per matrix "
        "cell that matches (values are lists or single values)",
    )
    if options._get(config, "matrix") is None:
        config.stash[SESSION_KEY] = None
        return
    from pytest_ztfl.session import ZtflSession

    session = ZtflSession.from_config(config)  # raises UsageError before any cluster exists
    config.stash[SESSION_KEY] = session
    # With a matrix and no explicit test paths, run just the matrix; with paths, add it.
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [str(MATRIX_TESTS)]
    elif str(MATRIX_TESTS) not in config.args:
        config.args.append(str(MATRIX_TESTS))


NO_MATRIX = "needs a matrix: pass --ztfl-matrix=NAME|PATH"
MATRIX_NODEID = "ztfl"  # the matrix tests' module, wherever the plugin is installed


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    """The matrix tests' node ids do not depend on where the plugin lives (a dev checkout's
    ``pytest_ztfl/matrix_tests.py`` vs site-packages, outside the rootdir): they read
    ``ztfl::test_fl[SEC3-NET2-iid-s0]`` everywhere, so ``--lf`` and pytest-benchmark's
    comparisons (keyed by node id) match runs made from different places."""
    if module_path == MATRIX_TESTS:
        return pytest.Module.from_parent(parent, path=module_path, nodeid=MATRIX_NODEID)
    return None


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    """A matrix without check arms has no instrument-check test at all (an always-skipped
    item would be noise in every run)."""
    if name == "test_instrument_checks" and collector.nodeid == MATRIX_NODEID:
        ztfl = collector.config.stash.get(SESSION_KEY, None)
        if ztfl is None or not ztfl.all_checks():
            return []
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ztfl_check" in metafunc.fixturenames:
        ztfl = metafunc.config.stash.get(SESSION_KEY, None)
        checks = ztfl.all_checks() if ztfl is not None else []
        metafunc.parametrize("ztfl_check", checks, ids=checks, scope="function")
        return
    if "ztfl_group" in metafunc.fixturenames:
        ztfl = metafunc.config.stash.get(SESSION_KEY, None)
        groups = ztfl.all_groups() if ztfl is not None else []
        metafunc.parametrize("ztfl_group", groups, ids=groups, scope="function")
        return
    if "ztfl_cell" not in metafunc.fixturenames:
        return
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if session is None:
        # A plain run of a project that also has matrix tests: skip them, run everything else.
        metafunc.parametrize(
            "ztfl_cell",
            [pytest.param(None, marks=pytest.mark.skip(reason=NO_MATRIX))],
            ids=["no-matrix"],
        )
        return
    marker = metafunc.definition.get_closest_marker("ztfl_cells")
    cells = session.select(marker.kwargs if marker else {})
    metafunc.parametrize("ztfl_cell", cells, ids=[c.id for c in cells], scope="function")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    for item in items:
        if not isinstance(item, pytest.Function) or not hasattr(item, "callspec"):
            continue
        cell = item.callspec.params.get("ztfl_cell")
        if isinstance(cell, Cell):
            item.add_marker(
                pytest.mark.benchmark(timer=session.clock_for(cell), group=session.group_of(cell))
            )


def _cell_of(item: pytest.Item) -> Cell | None:
    if isinstance(item, pytest.Function) and hasattr(item, "callspec"):
        cell = item.callspec.params.get("ztfl_cell")
        return cell if isinstance(cell, Cell) else None
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tell the matrix run which cells the selected (final) tests need; it groups them into
    blocks and draws their order (pytest_ztfl.design), and the cells' tests run in that order
    (other tests keep their places)."""
    ztfl = session.config.stash.get(SESSION_KEY, None)
    if ztfl is None:
        return
    cells = [c for item in session.items if (c := _cell_of(item)) is not None]
    order = {c.id: i for i, c in enumerate(ztfl.plan(cells))}
    slots = [i for i, item in enumerate(session.items) if _cell_of(item) is not None]

    def position(item: pytest.Item) -> int:
        cell = _cell_of(item)
        assert cell is not None
        return order[cell.id]

    ordered = sorted((session.items[i] for i in slots), key=position)
    for i, item in zip(slots, ordered, strict=True):
        session.items[i] = item


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """The tests are about to run: only now may the matrix run touch its results and data
    (--collect-only, --setup-plan, a collection error and every command that only informs
    never get here, or stop here)."""
    ztfl = session.config.stash.get(SESSION_KEY, None)
    opt = session.config.option
    if ztfl is None or opt.collectonly or getattr(opt, "setupplan", False):
        return
    if session.testsfailed and not opt.continue_on_collection_errors:
        return  # pytest stops for the collection errors
    ztfl.begin([c for item in session.items if (c := _cell_of(item)) is not None])


@pytest.fixture(scope="session")
def ztfl_session(pytestconfig: pytest.Config) -> Iterator[ZtflSession]:
    """The matrix run: settings, results store, and the session-scoped cluster."""
    session = pytestconfig.stash.get(SESSION_KEY, None)
    if session is None:
        pytest.skip(NO_MATRIX)
    yield session
    session.close()


@pytest.fixture(scope="session")
def ztfl_cluster(ztfl_session: ZtflSession) -> Cluster:
    """The session's cluster (created on first use, reused by every cell)."""
    return ztfl_session.cluster()


@pytest.fixture
def ztfl_result(ztfl_session: ZtflSession, ztfl_cell: Any) -> Any:
    """The measured outcome of this test's cell (runs it, or loads it on --ztfl-resume)."""
    return ztfl_session.result(ztfl_cell)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    return session.header(probe=not config.option.collectonly)


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        machine_info["ztfl"] = session.machine_info()


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]
) -> None:
    """A cell parameter as its fields (JSON), not pytest-benchmark's ``UNSERIALIZABLE[...]``."""
    for bench in output_json.get("benchmarks", []):
        params = bench.get("params")
        if isinstance(params, dict) and isinstance(params.get("ztfl_cell"), Cell):
            params["ztfl_cell"] = params["ztfl_cell"].to_dict()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None and session.rows:
        terminalreporter.section("ztfl", sep="=")
        session.summary(terminalreporter.write_line)
