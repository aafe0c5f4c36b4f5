"""The report's heterogeneity figure: each completed round's duration against the device class
of its slowest participant (the client whose update the server received last, the one the round
waited for), one panel per heterogeneity distribution, points by SEC level; not drawn when no
cell had heterogeneous clients (then the report says so in one line)."""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.model import Run
from pytest_ztfl.report.plot import Figure, colour, new_figure, omitted, save, title

HETERO = "round_vs_slowest_class.png"


def _rounds(run: Run) -> list[dict[str, Any]]:
    return [r for r in run.heterogeneity.get("rounds", [])
            if r.get("ok") and r.get("slowest_class") is not None]


def hetero(a: Analysis, out: Path) -> Figure:
    label = "Round duration against the slowest participating class"
    runs = [c.run for c in a.cells if c.run.heterogeneity]
    if not runs:
        return omitted(HETERO, label, f"no cell of these {len(a.cells)} had heterogeneous "
                       "clients (matrix key `heterogeneity`).")
    by_dist: dict[str, list[Run]] = {}
    for run in runs:
        by_dist.setdefault(str(run.heterogeneity.get("name")), []).append(run)
    fig = new_figure(max(4.2 * len(by_dist), 5.0) + 1.6, 4.4)
    axes = fig.subplots(1, len(by_dist), squeeze=False)[0]
    n = 0
    notes = []
    for ax, (dist, members) in zip(axes, sorted(by_dist.items()), strict=True):
        classes = [c["name"] for c in members[0].heterogeneity.get("classes", [])]
        secs = sorted({r.sec for r in members})
        for j, sec in enumerate(secs):
            xs, ys = [], []
            for run in (r for r in members if r.sec == sec):
                for rd in _rounds(run):
                    x = classes.index(rd["slowest_class"]) if rd["slowest_class"] in classes else 0
                    xs.append(x + (j - (len(secs) - 1) / 2) * 0.18)
                    ys.append(float(rd["duration"]))
            n += len(ys)
            ax.scatter(xs, ys, s=22, color=colour(j), alpha=0.8, label=sec)
        for i, cls in enumerate(classes):
            d = [float(rd["duration"]) for run in members for rd in _rounds(run)
                 if rd["slowest_class"] == cls]
            if d:
                ax.hlines(median(d), i - 0.35, i + 0.35, color="#333333", linewidth=1.2)
            notes.append(f"{dist}/{cls}: " + (f"median {median(d):.3f} s over {len(d)} rounds"
                                              if d else "never the slowest"))
        ax.set_xticks(range(len(classes)), classes)
        ax.set_xlim(-0.6, len(classes) - 0.4)
        ax.set_xlabel("class of the round's slowest participant")
        ax.set_ylabel("round duration (s)")
        ax.set_title(f"heterogeneity {dist}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, title="SEC", title_fontsize=8)
    title(fig, "Round duration by slowest participating class", runs,
          f"n={n} completed rounds in {len(runs)} cells")
    save(fig, out / HETERO)
    return Figure(HETERO, label, (
        "Each completed round's duration (server-measured) at the device class of the "
        "participant the server heard from last; bars: the median per class. "
        + "; ".join(notes) + "."
    ))
