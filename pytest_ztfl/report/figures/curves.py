"""The report's curves: the ECDF of round duration per SEC level, one panel per NET on a shared
x axis with each NET's SEC0 p99 marked (the seed study's Fig. 5), and accuracy by round with a
band over seeds (its Fig. 7), where SEC levels whose curves coincide share one line that says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pytest_ztfl.analysis.base import QUANTILE_METHOD
from pytest_ztfl.report.calc import Analysis, ConvergencePoint
from pytest_ztfl.report.fmt import num
from pytest_ztfl.report.plot import Figure, colour, linestyle, new_figure, omitted, save, title
from pytest_ztfl.sec import Sec

ECDF = "round_duration_ecdf.png"
CONVERGENCE = "convergence.png"


def pooled(a: Analysis, sec: str, net: str) -> list[float]:
    """Completed rounds' durations of one SEC level at one NET, over data splits and seeds."""
    return [
        d for g in a.groups.values() if g.key[0] == sec and g.key[1] == net for d in g.durations
    ]


def sec0_p99(a: Analysis, net: str) -> float | None:
    """The p99 of SEC0's pooled rounds at ``net``, computed as analysis.quantiles does."""
    x = pooled(a, Sec.SEC0, net)
    return float(np.quantile(x, [0.99], method=QUANTILE_METHOD)[0]) if x else None


def ecdf(a: Analysis, out: Path) -> Figure:
    label = "Round duration ECDF"
    n = sum(len(g.durations) for g in a.groups.values())
    if not n:
        return omitted(ECDF, label, "no cell completed a round: no round duration to show.")
    ncol = min(len(a.nets), 3)
    nrow = math.ceil(len(a.nets) / ncol)
    fig = new_figure(4.6 * ncol + 0.6, 3.6 * nrow + 1.0)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharex=True, sharey=True).ravel()
    every = [d for g in a.groups.values() for d in g.durations]
    # one x scale for every panel, so the NETs compare at a glance
    log = min(every) > 0 and max(every) / min(every) > 20
    for ax, net in zip(axes, a.nets, strict=False):
        for i, sec in enumerate(a.secs):
            x = np.sort(np.asarray(pooled(a, sec, net)))
            if x.size == 0:
                continue
            y = np.arange(1, x.size + 1) / x.size
            ax.step(
                np.concatenate(([x[0]], x)),
                np.concatenate(([0.0], y)),
                where="post",
                color=colour(i),
                linestyle=linestyle(sec),
                label=f"{sec} (n={x.size})",
                linewidth=1.6,
            )
        p = sec0_p99(a, net)
        if p is not None:
            ax.axvline(p, color=colour(0), linestyle="--", linewidth=1.1,
                       label=f"SEC0 p99 {num(p)} s")
        if log:
            ax.set_xscale("log")
        ax.set_title(net, fontsize=10)
        ax.set_xlabel("round duration (s)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no completed rounds", ha="center", transform=ax.transAxes)
    for ax in axes[len(a.nets) :]:
        ax.set_visible(False)
    for ax in axes[::ncol]:
        ax.set_ylabel("fraction of rounds <= x")
    title(
        fig,
        "ECDF of round durations per NET (pooled over data splits and seeds)",
        [c.run for c in a.cells],
        f"n={n} completed rounds in {len(a.cells)} cells",
    )
    save(fig, out / ECDF)
    return Figure(ECDF, label, (
        "Empirical CDF of completed-round durations, one panel per NET on a shared x axis, one "
        "curve per SEC level (n in the legend); dashed vertical line: the NET's SEC0 p99."
    ))


Curve = tuple[tuple[int, float, float, float], ...]


def _curve(points: Sequence[ConvergencePoint]) -> Curve:
    return tuple((p.round, p.mean, p.low, p.high) for p in points)


def coinciding(a: Analysis, net: str, data: str) -> list[list[str]]:
    """The SEC levels of one panel grouped by identical accuracy curves, in SEC order."""
    by: dict[Curve, list[str]] = {}
    for sec in a.secs:
        g = a.groups.get((sec, net, data))
        if g is not None and g.convergence:
            by.setdefault(_curve(g.convergence), []).append(sec)
    return list(by.values())


def _same_everywhere(a: Analysis) -> bool:
    """Every panel with two or more SEC levels has one curve for all of them."""
    sets = [coinciding(a, net, data) for net in a.nets for data in a.datas]
    multi = [s for s in sets if sum(map(len, s)) > 1]
    return bool(multi) and all(len(s) == 1 for s in multi)


def convergence(a: Analysis, out: Path) -> Figure:
    label = "Accuracy by round"
    evals = sum(len(c.run.accuracy_by_round) for c in a.cells)
    if not evals:
        return omitted(CONVERGENCE, label, "no run recorded an evaluation: no accuracy to show.")
    nrow, ncol = len(a.datas), len(a.nets)
    fig = new_figure(4.2 * ncol + 2.4, 3.2 * nrow + 1.3)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True)
    legend: dict[str, Any] = {}
    for r, data in enumerate(a.datas):
        for c, net in enumerate(a.nets):
            ax = axes[r, c]
            targets = set()
            for secs in coinciding(a, net, data):
                g = a.groups[secs[0], net, data]
                targets.add(g.target)
                i = a.secs.index(secs[0])
                _draw_curve(ax, g.convergence, colour(i), linestyle(secs[0]),
                            " = ".join(secs), legend)
            for t in targets:
                if t is not None:
                    ax.axhline(t, color="#555555", linestyle=":", linewidth=1.2)
            ax.set_title(f"{net}, {data}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_xlabel("round")
            if c == 0:
                ax.set_ylabel("test accuracy (fraction)")
            if not targets:
                ax.text(0.5, 0.5, "no evaluations recorded", ha="center", transform=ax.transAxes)
    seeds = sorted({g.seeds for g in a.groups.values()})
    fig.legend(
        list(legend.values()),
        list(legend),
        loc="outside right upper",
        fontsize=8,
        title=f"SEC (n={'/'.join(map(str, seeds))} seed{'s' * (seeds != [1])})",
    )
    same = _same_everywhere(a)
    title(
        fig,
        "Accuracy vs round" + (" (identical for every SEC level)" if same else
                               " (mean over seeds; band: 95% t-interval; dotted: target)"),
        [c.run for c in a.cells],
        f"n={evals} evaluations in {len(a.cells)} runs",
    )
    save(fig, out / CONVERGENCE)
    caption = (
        "Test accuracy at each evaluated round, mean over seeds with a 95% Student-t "
        "band (no band with one seed); dotted line: the TTA target."
    )
    if same:
        caption += (
            " In every panel the SEC levels' curves are identical, as they must be: the same "
            "seed gives the same data split, initial model and training, so the same accuracy "
            "whatever the SEC level (a control changes when a round ends, not what it "
            "learns); one line stands for all of them."
        )
    elif any(len(s) > 1 for net in a.nets for data in a.datas for s in coinciding(a, net, data)):
        caption += " SEC levels with identical curves share one line, named 'SEC0 = SEC1'."
    return Figure(CONVERGENCE, label, caption)


def _draw_curve(ax: Any, points: Sequence[ConvergencePoint], c: str, style: str, name: str,
                legend: dict[str, Any]) -> None:
    xs = [p.round for p in points]
    (line,) = ax.plot(xs, [p.mean for p in points], marker="o", markersize=3, color=c,
                      linestyle=style)
    legend.setdefault(name, line)
    lo = [p.low for p in points]
    if any(math.isfinite(v) for v in lo):
        ax.fill_between(xs, lo, [p.high for p in points], color=c, alpha=0.18, linewidth=0)
