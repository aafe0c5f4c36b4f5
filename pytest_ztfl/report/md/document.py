"""report.md as one text: the title, the notes on damaged input, the summary a reader starts
with, the figures (or, for one with nothing to show, its one line), every section in order
and the method."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pytest_ztfl.analysis.base import DEFAULT_N_RESAMPLES, min_n_for_quantile_ci
from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.fmt import UNRELIABLE
from pytest_ztfl.report.md.budget import budget
from pytest_ztfl.report.md.cells import cells, time_parts
from pytest_ztfl.report.md.checks import instrument
from pytest_ztfl.report.md.common import utc
from pytest_ztfl.report.md.design import design, emulation
from pytest_ztfl.report.md.meta import metadata
from pytest_ztfl.report.md.outcomes import groups, headline, slo
from pytest_ztfl.report.md.summary import summary
from pytest_ztfl.report.plot import Figure


def document(
    a: Analysis, figures: Sequence[Figure], notes: Sequence[str], version: str
) -> str:
    loaded = a.loaded
    name = (loaded.matrix or {}).get("name", "results")
    lines = [
        f"# ztfl report: {name}",
        "",
        f"Generated {utc(dt.datetime.now(dt.UTC).timestamp())} by pytest-ztfl {version} "
        f"from `{loaded.results_dir.resolve()}` ({len(loaded.runs)} cells read from "
        f"{loaded.source}).",
        "",
    ]
    if notes:
        lines += [
            "> **Partial or qualified report.** Problems found in the results directory "
            "(each affects only what it names):",
            ">",
        ]
        lines += [f"> - {n}" for n in notes]
        lines.append("")
    sections: list[tuple[str, list[str]]] = [
        ("Summary", summary(a)),
        ("Figures", figures_section(figures)),
        ("Run metadata", metadata(a)),
        ("Measurement design", design(a)),
        ("Where the run's time went", budget(a)),
        ("Instrument checks", instrument(a)),
        ("Cells", cells(a)),
        ("Where a round's time goes", time_parts(a)),
        ("Cell groups (pooled over seeds)", groups(a)),
        ("NET emulation during the runs", emulation(a)),
        ("SLO verdicts", slo(a)),
        ("Seed study (ZeroTrust-FLBench) headline claims vs this run", headline(a)),
        ("Method", method()),
    ]
    for title, body in sections:
        lines += [f"## {title}", "", *body, ""]
    return "\n".join(lines).rstrip() + "\n"


def figures_section(figures: Sequence[Figure]) -> list[str]:
    """Each figure with its caption; in its place, a figure with nothing to show says so in
    one line."""
    if not figures:
        return ["No figures: every row read is a check arm (figures show the cells proper)."]
    out = []
    for f in figures:
        if f.drawn:
            out += [f"![{f.label}]({f.name})", "", f"*{f.text}*", ""]
        else:
            out += [f"*{f.label}*: no figure, {f.text}", ""]
    return out[:-1]


def method() -> list[str]:
    return [
        "- Round duration: the server's round_start to round_end of completed rounds "
        "(`ok=true`), as the SLO gates use; failed rounds count in the failure rates.",
        f"- Quantiles p50/p95/p99 of one sample: numpy's linear quantile; 95% CIs from scipy's "
        f"bootstrap (percentile, {DEFAULT_N_RESAMPLES} resamples, seeded: reruns give the "
        "same numbers). A pooled sample concatenates its cells in cell-id order, rounds in "
        "round order (bootstrap seed: the cell's for a cell and a one-cell group, 0 otherwise).",
        "- Comparisons of two arms (a SEC level vs its block's SEC0 arm, a check arm vs it): "
        "analysis.compare, as the SLO gates use it, one pair of arms per block: for the "
        "median each block's ratio (or difference) of medians, averaged over blocks (log "
        "scale); for the p95 the quantile of all rounds of all blocks. Interval: two-level "
        "percentile bootstrap (pytest_ztfl.analysis.paired: blocks drawn with replacement, then "
        "rounds within each, the same round indices for both arms when they ran in one block run; "
        f"{DEFAULT_N_RESAMPLES} resamples; seed: the cell's for one block, 0 pooled). "
        "Recomputing with analysis.compare over the pairs in treatment-id order reproduces "
        "every interval. MDE: the smallest true change detected with 80% power at 95%, from "
        "the bootstrap spread. The interaction contrast stays an independent bootstrap of four "
        "pooled samples (unpaired).",
        f"- {UNRELIABLE} marks a CI that cannot be trusted for its n (e.g. a p95 from fewer than "
        f"{min_n_for_quantile_ci(0.95)} rounds, a p99 from fewer than "
        f"{min_n_for_quantile_ci(0.99)}: the bootstrap cannot reach beyond the sample's "
        "extremes) or that is missing.",
        "- TTA: Kaplan-Meier restricted mean over seeds with runs that never reached the target "
        "censored at their observed span (time held between interleaved rounds left out); "
        "with censoring it is a lower bound.",
        "- Failure rate: failed plus never-run rounds over planned rounds, Clopper-Pearson CI.",
        "- Details: docs/statistics.md.",
    ]
