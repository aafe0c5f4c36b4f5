"""The report of a matrix run: ``report.md`` plus PNG figures, from a results directory alone
(no cluster), so it can be made during a run (``--ztfl-report=DIR``) or afterwards
(``ztfl report RESULTS_DIR``).

A damaged results directory gives a partial report: unreadable files are named in a note at
the top and their cells left out. Input with nothing to report raises :class:`ReportError`
(one line naming the cause), which ``main_report`` turns into exit status 2.

The package is split by job, in layers (import-linter contracts "report: ..."): ``model`` (a
stored row as a typed ``Run``) and ``study`` (the seed study's quantitative claims, the data
file ``study_claims.toml``); ``load`` (files -> validated rows), ``fmt`` (numbers and
intervals as text) and ``arms`` (which arm compares with which, by pytest_ztfl.analysis.compare);
``calc`` (the numbers behind tables and figures: pytest_ztfl.analysis for one sample, ``arms``
for two; check arms kept apart); ``measures`` (what a run measures of the study's claims beyond
a ratio, and the study's own definitions), ``verdicts`` (the verdict rule and the claims that
are not ratios); ``claims`` (a verdict on every claim) and ``plot`` (the figures' canvas);
``figures`` and ``md`` (report.md, one module per group of sections, assembled by
``md.document``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pytest_ztfl import environment
from pytest_ztfl.report import load
from pytest_ztfl.report.calc import analyse
from pytest_ztfl.report.figures import draw
from pytest_ztfl.report.load import ReportError
from pytest_ztfl.report.md.document import document
from pytest_ztfl.report.study import ClaimsError
from pytest_ztfl.results import ResultsError, atomic_write

__all__ = ["ReportError", "main_report", "write"]


def write(results_dir: Path, report_dir: Path) -> Path:
    """Write ``report_dir/report.md`` and its figures from ``results_dir``; return its path."""
    loaded = load.load(Path(results_dir))
    report_dir = Path(report_dir)
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(
            f"{report_dir}: cannot create the report directory ({exc.strerror})"
        ) from None
    analysis = analyse(loaded)
    # every figure is of the cells proper: a directory holding only check arms has none
    try:
        figures = draw(analysis, report_dir) if analysis.cells else []
    except OSError as exc:
        raise ReportError(f"{report_dir}: cannot write a figure ({exc.strerror})") from None
    path = report_dir / "report.md"
    version = environment.package_version("pytest-ztfl") or "(not installed)"
    text = document(analysis, figures, loaded.notes, version)
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise ReportError(f"{path}: cannot write ({exc.strerror})") from None
    return path


def main_report(results_dir: str, out: str | None) -> int:
    """``ztfl report RESULTS_DIR [--out DIR]`` (default DIR: RESULTS_DIR/report).

    Prints the report's path and returns 0; on bad input prints one error line to stderr
    and returns 2.
    """
    report_dir = Path(out) if out else Path(results_dir) / "report"
    try:
        path = write(Path(results_dir), report_dir)
    except (ResultsError, ClaimsError) as exc:
        print(f"ztfl report: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0
