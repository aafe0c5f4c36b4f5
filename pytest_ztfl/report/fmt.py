"""Text formatting shared by the report's tables: numbers with CIs, and Markdown tables.

A dagger marks an estimate whose CI stats flags as unreliable (too few rounds for that
quantile, or no CI at all); the report explains the mark once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pytest_ztfl.analysis.paired import DiffCI
from pytest_ztfl.analysis.quantiles import QuantileCI
from pytest_ztfl.analysis.ratios import RatioCI
from pytest_ztfl.analysis.tta import TTAEstimate

UNRELIABLE = "\u2020"  # dagger: unambiguous in Markdown, unlike *


def num(v: float | None, fmt: str = "{:.3g}") -> str:
    return "n/a" if v is None or not math.isfinite(v) else fmt.format(v)


def ci_text(lo: float, hi: float, fmt: str = "{:.3g}") -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "[no CI]"
    return f"[{fmt.format(lo)}, {fmt.format(hi)}]"


def q_text(q: QuantileCI) -> str:
    mark = "" if q.reliable else UNRELIABLE
    return f"{num(q.estimate)} {ci_text(q.ci_low, q.ci_high)}{mark}"


def mde_text(mde: float, unit: str = "%") -> str:
    """``(MDE 2.6%)``: the smallest change the comparison detects (80% power); "" if unknown."""
    if not math.isfinite(mde):
        return ""
    return f" (MDE {mde:.1%})" if unit == "%" else f" (MDE {mde * 1000:.1f} ms)"


def ratio_text(r: RatioCI, mde: bool = True) -> str:
    """``1.021x [0.995, 1.046] (MDE 2.6%)``; a dagger after the interval when unreliable."""
    mark = "" if r.reliable else UNRELIABLE
    f = "{:.3f}"
    text = f"{num(r.estimate, f)}x {ci_text(r.ci_low, r.ci_high, f)}{mark}"
    return text + (mde_text(r.mde) if mde else "")


def ms_text(d: DiffCI, mde: bool = False) -> str:
    """A difference in seconds shown in ms: ``+50.0 ms [+49.1, +50.8]``."""
    mark = "" if d.reliable else UNRELIABLE
    f = "{:+.1f}"
    text = f"{num(d.estimate * 1000, f)} ms {ci_text(d.ci_low * 1000, d.ci_high * 1000, f)}{mark}"
    return text + (mde_text(d.mde, "s") if mde else "")


def tta_text(t: TTAEstimate | None) -> str:
    if t is None:
        return "n/a"
    if not math.isfinite(t.estimate):
        return f"not reached (> {num(t.tau)} s, {t.n_censored}/{t.n} censored)"
    bound = ">= " if t.restricted and t.n_censored else ""
    cens = f", {t.n_censored}/{t.n} censored" if t.n_censored else ""
    return f"{bound}{num(t.estimate)} {ci_text(t.ci_low, t.ci_high)}{cens}"


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v) or "none"


def escape(text: str) -> str:
    """Make ``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(escape(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return lines
