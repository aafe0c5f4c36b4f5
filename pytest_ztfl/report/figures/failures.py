"""The report's failure events by class (the harness's taxonomy), per 100 planned rounds, one
panel per NET x data split; not drawn when no failure event of any class was recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.plot import Figure, failure_colour, new_figure, omitted, save, title

FAILURES = "failures_by_class.png"


def failures(a: Analysis, out: Path) -> Figure:
    label = "Failure events by class"
    name = FAILURES
    classes = sorted({k for g in a.groups.values() for k, v in g.failures.items() if v})
    if not classes:
        rounds = sum(g.rounds_total for g in a.groups.values())
        return omitted(name, label, f"no failure event of any class in {rounds} planned rounds "
                       f"of {len(a.cells)} cells.")
    nrow, ncol = len(a.datas), len(a.nets)
    rotate = len(a.secs) > 4
    fig = new_figure(max(0.75 * len(a.secs), 3.4) * ncol + 2.2, 3.3 * nrow + 1.4)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True)
    top = max(
        (100 * sum(g.failures.values()) / max(g.rounds_total, 1) for g in a.groups.values()),
        default=0.0,
    )
    xs = np.arange(len(a.secs))
    for r, data in enumerate(a.datas):
        for c, net in enumerate(a.nets):
            ax = axes[r, c]
            groups = [a.groups.get((sec, net, data)) for sec in a.secs]
            bottom = np.zeros(len(a.secs))
            for i, cls in enumerate(classes):
                per100 = np.array(
                    [
                        100 * g.failures.get(cls, 0) / max(g.rounds_total, 1) if g else 0.0
                        for g in groups
                    ]
                )
                ax.bar(
                    xs,
                    per100,
                    bottom=bottom,
                    color=failure_colour(cls, i),
                    width=0.7,
                    label=cls if (r, c) == (0, 0) else None,
                )
                bottom += per100
            for x, g, b in zip(xs, groups, bottom, strict=True):
                text = f"{g.failed_rounds}/{g.rounds_total}" if g else "no data"
                ax.annotate(
                    text,
                    (x, b),
                    fontsize=7,
                    ha="center",
                    va="bottom",
                    xytext=(0, 2),
                    textcoords="offset points",
                )
            if not bottom.any():
                ax.text(
                    0.5, 0.5, "no failures", ha="center", color="#666666", transform=ax.transAxes
                )
            ax.set_xticks(
                xs,
                a.secs,
                rotation=30 if rotate else 0,
                ha="right" if rotate else "center",
                fontsize=8,
            )
            ax.set_xlim(-0.6, len(a.secs) - 0.4)
            ax.set_ylim(0, max(top * 1.25, 1.0))
            ax.set_title(f"{net}, {data}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            if c == 0:
                ax.set_ylabel("failure events\nper 100 planned rounds")
    fig.legend(loc="outside right upper", title="class", fontsize=8)
    rounds = sum(g.rounds_total for g in a.groups.values())
    title(
        fig,
        "Failures by class per cell group (pooled over seeds; above bars: failed / planned rounds)",
        [c.run for c in a.cells],
        f"n={rounds} planned rounds in {len(a.cells)} cells",
    )
    save(fig, out / name)
    return Figure(name, label, (
        "Failure events by class (the harness taxonomy) per 100 planned rounds, "
        "stacked, one panel per NET x data; above each bar: failed rounds / planned "
        "rounds of that group."
    ))


