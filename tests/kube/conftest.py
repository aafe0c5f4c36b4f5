"""The rendered ``full`` preset, written once per session with ``pytest_ztfl.render.render_matrix``
(what ``ztfl render --matrix=full`` writes), shared by the schema and truth-table tests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def rendered_full(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], float]:
    """Every cell folder of the ``full`` preset as ``ztfl render`` writes it (and the seconds
    rendering took)."""
    from pytest_ztfl import matrix
    from pytest_ztfl.render import render_matrix

    out = tmp_path_factory.mktemp("render-full")
    t0 = time.perf_counter()
    folders = render_matrix(matrix.load("full"), out)
    return folders, time.perf_counter() - t0
