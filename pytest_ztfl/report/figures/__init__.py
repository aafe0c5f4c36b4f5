"""The report's figures (PNG), in the order the report shows them: the overhead of each SEC
level over SEC0 (the study's question), p99 round duration, the round-duration ECDFs, time to
target accuracy, the per-round failure rate, cells successful, failure events by class,
accuracy by round, and round duration against the slowest participating device class.

A figure with nothing to show (no failure at all, every cell successful, no run at its target)
is not drawn: its :class:`~pytest_ztfl.report.plot.Figure` carries the one line the report
says instead, and a file of that name left by an earlier report is removed, so the directory
holds only what report.md shows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.figures.curves import convergence, ecdf
from pytest_ztfl.report.figures.failures import failures
from pytest_ztfl.report.figures.grids import failure_rates, overhead, p99, success, tta
from pytest_ztfl.report.figures.hetero import hetero
from pytest_ztfl.report.plot import Figure

__all__ = ["FIGURES", "draw"]

FIGURES: tuple[Callable[[Analysis, Path], Figure], ...] = (
    overhead,
    p99,
    ecdf,
    tta,
    failure_rates,
    success,
    failures,
    convergence,
    hetero,
)


def draw(a: Analysis, out: Path) -> list[Figure]:
    """Every figure of ``a`` drawn into ``out`` (or its one line when it has nothing to show).
    OSError (``out`` not writable) propagates."""
    made = []
    for make in FIGURES:
        fig = make(a, out)
        if not fig.drawn:
            (out / fig.name).unlink(missing_ok=True)
        made.append(fig)
    return made
