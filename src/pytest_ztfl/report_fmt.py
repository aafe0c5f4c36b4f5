"""Text formatting shared by the report's tables: numbers with CIs, and Markdown tables.

A dagger marks an estimate whose CI stats flags as unreliable (too few rounds for that
quantile, or no CI at all); the report explains the mark once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from pytest_ztfl import stats

UNRELIABLE = "\u2020"  # dagger: unambiguous in Markdown, unlike *


def num(v: float | None, fmt: str = "{:.3g}") -> str:
    return "n/a" if v is None or not math.isfinite(v) else fmt.format(v)


def ci_text(lo: float, hi: float, fmt: str = "{:.3g}") -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "[no CI]"
    return f"[{fmt.format(lo)}, {fmt.format(hi)}]"


def q_text(q: stats.QuantileCI) -> str:
    mark = "" if q.reliable else UNRELIABLE
    return f"{num(q.estimate)} {ci_text(q.ci_low, q.ci_high)}{mark}"


def ratio_text(r: stats.RatioCI) -> str:
    mark = "" if r.reliable else UNRELIABLE
    return f"{num(r.estimate)}x {ci_text(r.ci_low, r.ci_high)}{mark}"


def tta_text(t: stats.TTAEstimate | None) -> str:
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
