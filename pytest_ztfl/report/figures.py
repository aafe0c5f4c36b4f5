"""The report's figures (PNG): p99 heatmap, round-duration ECDFs, TTA with CIs, convergence
with CI bands over seeds, and failures by class. Each returns its file name and a caption."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pytest_ztfl.report.calc import Analysis, GroupStats
from pytest_ztfl.report.fmt import UNRELIABLE, num
from pytest_ztfl.report.model import Run
from pytest_ztfl.report.plot import colour, failure_colour, linestyle, new_figure, save, title


def _all_runs(a: Analysis) -> list[Run]:
    return [c.run for c in a.cells]


def _pooled(a: Analysis, sec: str, net: str) -> list[float]:
    return [
        d for g in a.groups.values() if g.key[0] == sec and g.key[1] == net for d in g.durations
    ]


def heatmap(a: Analysis, out: Path) -> tuple[str, str]:
    name = "p99_heatmap.png"
    nsec, nnet = len(a.secs), len(a.nets)
    fig = new_figure(max(7.0, 1.55 * nsec + 2.6), (0.95 * nnet + 0.9) * len(a.datas) + 1.3)
    axes = fig.subplots(len(a.datas), 1, squeeze=False)[:, 0]
    p99s = [g.summary.get(0.99).estimate for g in a.groups.values() if g.summary]
    vmin, vmax = (min(p99s), max(p99s)) if p99s else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin * 0.9, vmax * 1.1 + 1e-9
    image = None
    for ax, data in zip(axes, a.datas, strict=True):
        grid = np.full((nnet, nsec), np.nan)
        for i, net in enumerate(a.nets):
            for j, sec in enumerate(a.secs):
                g = a.groups.get((sec, net, data))
                if g is not None and g.summary is not None:
                    grid[i, j] = g.summary.get(0.99).estimate
        image = ax.imshow(
            np.ma.masked_invalid(grid), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto"
        )
        ax.set_facecolor("#dddddd")
        for i, net in enumerate(a.nets):
            for j, sec in enumerate(a.secs):
                g = a.groups.get((sec, net, data))
                if g is None or g.summary is None:
                    ax.text(j, i, "no data", ha="center", va="center", fontsize=8)
                    continue
                q = g.summary.get(0.99)
                mark = "" if q.reliable else UNRELIABLE
                label = (
                    f"{num(q.estimate)} s{mark}\n[{num(q.ci_low)}, {num(q.ci_high)}]\n"
                    f"n={q.n} rounds, {g.seeds} seed{'s' * (g.seeds != 1)}"
                )
                shade = (q.estimate - vmin) / (vmax - vmin)
                ax.text(
                    j,
                    i,
                    label,
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="black" if shade > 0.6 else "white",
                )
        ax.set_xticks(range(nsec), a.secs)
        ax.set_yticks(range(nnet), a.nets)
        ax.set_title(f"data: {data}", fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="p99 round duration (s)", shrink=0.9)
    n = sum(len(g.durations) for g in a.groups.values())
    title(
        fig,
        f"p99 round duration by NET x SEC (95% bootstrap CI; {UNRELIABLE} unreliable CI)",
        _all_runs(a),
        f"n={len(a.cells)} cells, {n} completed rounds",
    )
    save(fig, out / name)
    return name, (
        "p99 of completed-round durations per NET x SEC, pooled over seeds; "
        f"brackets: 95% bootstrap CI; {UNRELIABLE} = CI unreliable for this n."
    )


def ecdf(a: Analysis, out: Path) -> tuple[str, str]:
    name = "round_duration_ecdf.png"
    ncol = min(len(a.nets), 3)
    nrow = math.ceil(len(a.nets) / ncol)
    fig = new_figure(4.6 * ncol + 0.6, 3.6 * nrow + 1.0)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True).ravel()
    for ax, net in zip(axes, a.nets, strict=False):
        lows, highs = [], []
        for i, sec in enumerate(a.secs):
            x = np.sort(np.asarray(_pooled(a, sec, net)))
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
            lows.append(float(x[0]))
            highs.append(float(x[-1]))
        if lows and min(lows) > 0 and max(highs) / min(lows) > 20:
            ax.set_xscale("log")
        ax.set_title(net, fontsize=10)
        ax.set_xlabel("round duration (s)")
        ax.grid(alpha=0.3)
        if lows:
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no completed rounds", ha="center", transform=ax.transAxes)
    for ax in axes[len(a.nets) :]:
        ax.set_visible(False)
    for ax in axes[::ncol]:
        ax.set_ylabel("fraction of rounds <= x")
    n = sum(len(g.durations) for g in a.groups.values())
    title(
        fig,
        "ECDF of round durations per NET (pooled over data splits and seeds)",
        _all_runs(a),
        f"n={n} completed rounds in {len(a.cells)} cells",
    )
    save(fig, out / name)
    return name, (
        "Empirical CDF of completed-round durations, one panel per NET, one curve "
        "per SEC; n per curve in the legend."
    )


def tta(a: Analysis, out: Path) -> tuple[str, str]:
    name = "tta.png"
    fig = new_figure(max(7.0, 1.4 * len(a.secs) + 4.0), 3.8 * len(a.datas) + 1.2)
    axes = fig.subplots(len(a.datas), 1, squeeze=False)[:, 0]
    width = 0.7 / max(len(a.nets), 1)
    for ax, data in zip(axes, a.datas, strict=True):
        targets, tops = set(), [0.0]
        for k, net in enumerate(a.nets):
            first = True
            for j, sec in enumerate(a.secs):
                g = a.groups.get((sec, net, data))
                if g is None or g.tta is None:
                    continue
                targets.add(g.target)
                tops.append(_tta_point(ax, g, j - 0.35 + width * (k + 0.5), colour(k), net, first))
                first = False
        ax.set_xticks(range(len(a.secs)), a.secs)
        ax.set_xlim(-0.6, len(a.secs) - 0.4)
        # room above the highest point for its annotation
        ax.set_ylim(0, max(tops) * 1.3 or 1.0)
        ax.set_ylabel("time to target accuracy (s)")
        target = next(iter(targets)) if len(targets) == 1 else None
        goal = f"target {target:.0%}" if target is not None else "targets vary"
        ax.set_title(f"data: {data}  ({goal})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="NET")
        else:
            ax.text(0.5, 0.5, "no TTA data", ha="center", transform=ax.transAxes)
    title(
        fig,
        "Time to target accuracy by SEC x NET (mean over seeds, 95% CI)",
        _all_runs(a),
        f"n={len(a.cells)} runs",
    )
    save(fig, out / name)
    return name, (
        "Kaplan-Meier restricted mean TTA over seeds with its 95% CI; hollow markers: "
        "some runs censored (a lower bound); triangles: target never reached "
        "(TTA beyond the plotted time). n and censored runs are printed at each point."
    )


def _tta_point(ax: Any, g: GroupStats, x: float, c: str, net: str, first: bool) -> float:
    """Draw one group's TTA; return the highest y it uses."""
    t = g.tta
    assert t is not None
    label = net if first else None
    if not math.isfinite(t.estimate):
        ax.scatter([x], [t.tau], marker="^", s=60, color=c, label=label)
        ax.annotate(
            f"not reached\n> {num(t.tau)} s, n={t.n}",
            (x, t.tau),
            fontsize=7,
            ha="center",
            va="bottom",
            xytext=(0, 6),
            textcoords="offset points",
        )
        return t.tau
    err = None
    if math.isfinite(t.ci_low) and math.isfinite(t.ci_high):
        err = [[t.estimate - t.ci_low], [t.ci_high - t.estimate]]
    face = "white" if t.n_censored else c
    ax.errorbar([x], [t.estimate], yerr=err, fmt="o", color=c, mfc=face, capsize=4, label=label)
    cens = f"\n{t.n_censored} censored" if t.n_censored else ""
    top = t.ci_high if math.isfinite(t.ci_high) else t.estimate
    ax.annotate(
        f"n={t.n}{cens}",
        (x, top),
        fontsize=7,
        ha="center",
        va="bottom",
        xytext=(0, 4),
        textcoords="offset points",
    )
    return top


def convergence(a: Analysis, out: Path) -> tuple[str, str]:
    name = "convergence.png"
    nrow, ncol = len(a.datas), len(a.nets)
    fig = new_figure(4.2 * ncol + 2.4, 3.2 * nrow + 1.3)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True)
    legend: dict[str, Any] = {}
    for r, data in enumerate(a.datas):
        for c, net in enumerate(a.nets):
            ax = axes[r, c]
            targets = set()
            for i, sec in enumerate(a.secs):
                g = a.groups.get((sec, net, data))
                if g is None or not g.convergence:
                    continue
                targets.add(g.target)
                xs = [p.round for p in g.convergence]
                (line,) = ax.plot(
                    xs,
                    [p.mean for p in g.convergence],
                    marker="o",
                    markersize=3,
                    color=colour(i),
                    linestyle=linestyle(sec),
                )
                legend.setdefault(sec, line)
                lo = [p.low for p in g.convergence]
                if any(math.isfinite(v) for v in lo):
                    ax.fill_between(
                        xs,
                        lo,
                        [p.high for p in g.convergence],
                        color=colour(i),
                        alpha=0.18,
                        linewidth=0,
                    )
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
    if legend:
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="outside right upper",
            fontsize=8,
            title=f"SEC (n={'/'.join(map(str, seeds))} seed{'s' * (seeds != [1])})",
        )
    evals = sum(len(c.run.accuracy_by_round) for c in a.cells)
    title(
        fig,
        "Accuracy vs round (mean over seeds; band: 95% t-interval; dotted: target)",
        _all_runs(a),
        f"n={evals} evaluations in {len(a.cells)} runs",
    )
    save(fig, out / name)
    caption = (
        "Test accuracy at each evaluated round, mean over seeds with a 95% Student-t "
        "band (no band with one seed); dotted line: the TTA target."
    )
    return name, caption if legend else caption + " No run recorded an evaluation."


def failures(a: Analysis, out: Path) -> tuple[str, str]:
    name = "failures_by_class.png"
    classes = sorted({k for g in a.groups.values() for k, v in g.failures.items() if v})
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
    if classes:
        fig.legend(loc="outside right upper", title="class", fontsize=8)
    rounds = sum(g.rounds_total for g in a.groups.values())
    title(
        fig,
        "Failures by class per cell group (pooled over seeds; above bars: failed / planned rounds)",
        _all_runs(a),
        f"n={rounds} planned rounds in {len(a.cells)} cells",
    )
    save(fig, out / name)
    return name, (
        "Failure events by class (the harness taxonomy) per 100 planned rounds, "
        "stacked, one panel per NET x data; above each bar: failed rounds / planned "
        "rounds of that group."
    )


FIGURES = (heatmap, ecdf, tta, convergence, failures)
