"""The failure taxonomy's confusion matrix over the live runs of a test session.

The reliability tests record each fault scenario's row (its expected class and the classes the
blind taxonomy assigned); the integration tests record their no-fault runs (scenario
``none``). ``tests/conftest.py`` prints the matrix in the terminal summary and, with
``ZTFL_CONFUSION_OUT=<file>``, writes it as Markdown (README's Reliability section).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from pytest_ztfl.taxonomy import CLASSES


@dataclass
class Record:
    scenario: str  # a fault scenario's name, or "none"
    expect: str | None  # the class its failures must get (None: no failure may be labelled)
    cell: str
    classes: Counter[str]


RECORDS: list[Record] = []


def record(row: dict[str, Any], scenario: str | None = None, expect: str | None = None) -> None:
    RECORDS.append(Record(scenario or "none", expect, row["extra_info"]["cell"],
                          Counter(f["class"] for f in row.get("failures", []))))


def off_diagonal(rec: Record) -> int:
    return sum(n for cls, n in rec.classes.items() if cls != rec.expect)


def markdown() -> str:
    """One line per scenario (runs of it merged): the expected class and the labels
    assigned; the diagonal is the expected column."""
    merged: dict[str, tuple[str | None, Counter[str], int]] = {}
    for r in RECORDS:
        exp, cnt, runs = merged.get(r.scenario, (r.expect, Counter(), 0))
        merged[r.scenario] = (exp, cnt + r.classes, runs + 1)
    head = "| true scenario | runs | expected | " + " | ".join(CLASSES) + " | on diagonal |"
    lines = [head, "|" + "---|" * (len(CLASSES) + 4)]
    total = diag = 0
    for name in sorted(merged, key=lambda n: (n == "none", merged[n][0] or "", n)):
        exp, cnt, runs = merged[name]
        n = sum(cnt.values())
        on = cnt.get(exp, 0) if exp else 0
        total, diag = total + n, diag + on
        cells = [f"**{cnt.get(c, 0)}**" if c == exp else str(cnt.get(c, 0)) for c in CLASSES]
        verdict = ("no failure to classify" if n == 0 else f"{on}/{n}")
        lines.append(f"| {name} | {runs} | {exp or '(none)'} | " + " | ".join(cells)
                     + f" | {verdict} |")
    lines.append("")
    lines.append(f"{diag} of {total} labels on the diagonal; no-fault runs: "
                 f"{sum(sum(r.classes.values()) for r in RECORDS if r.expect is None)} labels.")
    return "\n".join(lines)
