"""The report's SEC x NET heatmaps (the seed study's Figs. 2-4), one panel per data split: the
overhead each SEC level costs over its block's SEC0 arm (the study's question), p99 round
duration, time to target accuracy, the per-round failure rate, and (pooled) cells successful.

Every tile prints the numbers of the report's tables (report.calc, formatted by report.fmt);
a figure with nothing to show is not drawn, and says why in one line instead.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_ztfl.report.calc import Analysis, GroupStats, failure_rate
from pytest_ztfl.report.fmt import UNRELIABLE, ci_text, mde_text, num, ratio_text
from pytest_ztfl.report.plot import (
    Figure,
    Panel,
    Tile,
    grid,
    grid_figure,
    omitted,
    save,
    title,
)
from pytest_ztfl.sec import Sec

OVERHEAD = "overhead_heatmap.png"
P99 = "p99_heatmap.png"
TTA = "tta.png"
FAILURE_RATE = "failure_rate_heatmap.png"
SUCCESS = "success_counts.png"


def _wrap(text: str) -> str:
    return textwrap.fill(text, 24)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def compared(a: Analysis) -> tuple[str, ...]:
    """The SEC levels compared with SEC0 (every level but SEC0 itself)."""
    return tuple(s for s in a.secs if s.split("-", 1)[0] != Sec.SEC0)


def panels(a: Analysis, tile: Callable[[GroupStats], Tile], secs: Sequence[str]) -> list[Panel]:
    """One panel per data split: the tile of every group (SEC in ``secs``) by (NET, SEC)."""
    return [
        (
            f"data: {data}",
            {
                (net, sec): tile(g)
                for net in a.nets
                for sec in secs
                if (g := a.groups.get((sec, net, data))) is not None
            },
        )
        for data in a.datas
    ]


def _finite(ps: Sequence[Panel]) -> list[float]:
    return [t.value for _, tiles in ps for t in tiles.values() if math.isfinite(t.value)]


def _norm(values: Sequence[float]) -> Any:
    from matplotlib.colors import Normalize

    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo * 0.9, hi * 1.1 + 1e-9
    return Normalize(lo, hi)


def _rounds(a: Analysis) -> int:
    return sum(len(g.durations) for g in a.groups.values())


def overhead_tile(g: GroupStats) -> Tile:
    """The group's median ratio to SEC0 as *Cell groups* prints it, its interval on a line of
    its own, then the blocks and the MDE."""
    if not g.ratios:
        return Tile(math.nan, "n/a\n" + _wrap(g.ratio_note))
    r = g.ratios[0]
    value, _, interval = ratio_text(r, mde=False).partition(" ")
    mde = mde_text(r.mde).strip()
    return Tile(r.estimate, f"{value}\n{interval}\n{_plural(r.blocks, 'block')}"
                + (f" {mde}" if mde else ""))


def overhead(a: Analysis, out: Path) -> Figure:
    label = "Overhead of each SEC level over SEC0"
    secs = compared(a)
    if not secs:
        return omitted(OVERHEAD, label, "only SEC0 was measured: there is no overhead to show.")
    ps = panels(a, overhead_tile, secs)
    found = _finite(ps)
    if not found:
        why = sorted({g.ratio_note for g in a.groups.values() if g.key[0] in secs})
        return omitted(
            OVERHEAD, label, f"no SEC level has a ratio to its SEC0 arm ({'; '.join(why)})."
        )
    from matplotlib.colors import CenteredNorm

    fig = grid_figure(len(ps), len(a.nets), len(secs))
    # the scale spans the intervals, not the estimates alone: an effect they cannot resolve
    # stays pale instead of taking the scale's full colour
    bounds = [b for g in a.groups.values() if g.key[0] in secs and g.ratios
              for b in (g.ratios[0].ci_low, g.ratios[0].ci_high) if math.isfinite(b)]
    half = max(max(abs(v - 1.0) for v in (*found, *bounds)), 0.01)
    grid(fig, ps, a.nets, secs, cmap="RdBu_r", norm=CenteredNorm(1.0, half),
         label="median round duration / its SEC0 arm's")
    n = sum(len(g.ratios) > 0 for g in a.groups.values())
    title(
        fig,
        f"Median round duration vs the block's SEC0 arm (95% CI; {UNRELIABLE} unreliable CI)",
        [c.run for c in a.cells],
        f"n={n} comparisons of {len(a.cells)} cells",
    )
    save(fig, out / OVERHEAD)
    return Figure(OVERHEAD, label, (
        "Median round duration of each SEC level over its block's SEC0 arm (same NET, data "
        "split and seed; rounds paired within a block run), averaged over blocks, with the 95% "
        "interval (the run's instance noise and the paired rounds) and the MDE: the 'p50 vs "
        "SEC0' column of Cell groups. "
        "Red: slower than SEC0, blue: faster; the colour scale spans the intervals, so an "
        f"effect they cannot resolve stays pale; {UNRELIABLE}: interval unreliable."
    ))


def p99_tile(g: GroupStats) -> Tile:
    if g.summary is None:
        return Tile(math.nan, "no completed\nrounds")
    q = g.summary.get(0.99)
    mark = "" if q.reliable else UNRELIABLE
    return Tile(q.estimate, f"{num(q.estimate)} s{mark}\n{ci_text(q.ci_low, q.ci_high)}\n"
                f"n={q.n} rounds, {_plural(g.seeds, 'seed')}")


def p99(a: Analysis, out: Path) -> Figure:
    label = "p99 round duration"
    ps = panels(a, p99_tile, a.secs)
    found = _finite(ps)
    if not found:
        return omitted(P99, label, "no cell completed a round: no round duration to show.")
    fig = grid_figure(len(ps), len(a.nets), len(a.secs))
    grid(fig, ps, a.nets, a.secs, cmap="viridis", norm=_norm(found),
         label="p99 round duration (s)")
    title(
        fig,
        f"p99 round duration by NET x SEC (95% bootstrap CI; {UNRELIABLE} unreliable CI)",
        [c.run for c in a.cells],
        f"n={len(a.cells)} cells, {_rounds(a)} completed rounds",
    )
    save(fig, out / P99)
    return Figure(P99, label, (
        "p99 of completed-round durations per NET x SEC, pooled over seeds; "
        f"brackets: 95% bootstrap CI; {UNRELIABLE} = CI unreliable for this n."
    ))


def tta_tile(g: GroupStats) -> Tile:
    t = g.tta
    if t is None:
        return Tile(math.nan, "no TTA\n" + _wrap(g.tta_note))
    if not math.isfinite(t.estimate):
        return Tile(math.nan, f"not reached\n> {num(t.tau)} s\nn={t.n}")
    bound = ">= " if t.restricted and t.n_censored else ""
    cens = f", {t.n_censored} censored" if t.n_censored else ""
    return Tile(t.estimate,
                f"{bound}{num(t.estimate)} s\n{ci_text(t.ci_low, t.ci_high)}\nn={t.n}{cens}")


def _targets(a: Analysis) -> str:
    found = {g.target for g in a.groups.values() if g.target is not None}
    return f"{found.pop():.0%}" if len(found) == 1 else "its target"


def tta(a: Analysis, out: Path) -> Figure:
    label = "Time to target accuracy"
    ps = panels(a, tta_tile, a.secs)
    found = _finite(ps)
    if not found:
        if all(g.tta is None for g in a.groups.values()):
            notes = "; ".join(sorted({g.tta_note for g in a.groups.values() if g.tta_note}))
            why = f"no time to target accuracy is estimable ({notes or 'no runs'})."
        else:
            why = (f"no run reached {_targets(a)} accuracy within its rounds: every time to "
                   "target is censored (*Cell groups* gives the lower bounds).")
        return omitted(TTA, label, why)
    fig = grid_figure(len(ps), len(a.nets), len(a.secs))
    grid(fig, ps, a.nets, a.secs, cmap="viridis", norm=_norm(found),
         label="time to target accuracy (s)")
    title(
        fig,
        f"Time to {_targets(a)} accuracy by NET x SEC (mean over seeds, 95% CI)",
        [c.run for c in a.cells],
        f"n={len(a.cells)} runs",
    )
    save(fig, out / TTA)
    return Figure(TTA, label, (
        "Kaplan-Meier restricted mean time to target accuracy over seeds with its 95% CI "
        "(the 'mean TTA' column of Cell groups); '>=': some runs censored (a lower bound); "
        "grey 'not reached': no run got there within its rounds."
    ))


def rate_tile(g: GroupStats) -> Tile:
    r = g.rate
    if r.total == 0:
        return Tile(math.nan, "no rounds\nplanned")
    return Tile(100 * r.estimate, f"{r.failed}/{r.total} rounds\n{100 * r.estimate:.3g}%\n"
                f"{ci_text(100 * r.ci_low, 100 * r.ci_high, '{:.3g}%')}")


def failure_rates(a: Analysis, out: Path) -> Figure:
    label = "Per-round failure rate"
    failed = sum(g.failed_rounds for g in a.groups.values())
    total = sum(g.rounds_total for g in a.groups.values())
    if not failed:
        r = failure_rate(0, total)
        bound = (f" (95% Clopper-Pearson upper bound {100 * r.ci_high:.3g}%)"
                 if total else "")
        return omitted(FAILURE_RATE, label, f"no round failed: 0 of {total} planned rounds in "
                       f"{_plural(len(a.cells), 'cell')}{bound}.")
    from matplotlib.colors import Normalize

    ps = panels(a, rate_tile, a.secs)
    fig = grid_figure(len(ps), len(a.nets), len(a.secs))
    grid(fig, ps, a.nets, a.secs, cmap="Reds", norm=Normalize(0.0, max(*_finite(ps), 2.0)),
         label="failed rounds per 100 planned")
    title(
        fig,
        "Per-round failure rate by NET x SEC (95% Clopper-Pearson CI)",
        [c.run for c in a.cells],
        f"n={total} planned rounds in {len(a.cells)} cells, {failed} failed",
    )
    save(fig, out / FAILURE_RATE)
    return Figure(FAILURE_RATE, label, (
        "Failed plus never-run rounds over planned rounds per NET x SEC, pooled over seeds, "
        "with the 95% Clopper-Pearson interval (the failure-rate gate's; its default limit "
        "is 2%)."
    ))


def success_tiles(a: Analysis) -> dict[tuple[str, str], Tile]:
    """(NET, SEC) -> cells successful of cells, pooled over data splits and seeds."""
    out = {}
    for net in a.nets:
        for sec in a.secs:
            runs = [c.run for c in a.cells if c.sec == sec and c.run.net == net]
            if runs:
                ok = sum(r.success for r in runs)
                out[net, sec] = Tile(ok / len(runs), f"{ok}/{len(runs)} cells\nsuccessful")
    return out


def success(a: Analysis, out: Path) -> Figure:
    label = "Cells successful"
    tiles = success_tiles(a)
    ok = sum(r.success for r in (c.run for c in a.cells))
    if ok == len(a.cells):
        sizes = sorted({len([c for c in a.cells if (c.run.net, c.sec) == k]) for k in tiles})
        each = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
        return omitted(SUCCESS, label, f"every cell succeeded: {ok} of {len(a.cells)} "
                       f"({each} per SEC x NET).")
    from matplotlib.colors import Normalize

    fig = grid_figure(1, len(a.nets), len(a.secs))
    grid(fig, [("pooled over data splits and seeds", tiles)], a.nets, a.secs, cmap="RdYlGn",
         norm=Normalize(0.0, 1.0), label="fraction of cells successful")
    title(fig, "Cells successful by NET x SEC", [c.run for c in a.cells],
          f"n={len(a.cells)} cells, {ok} successful")
    save(fig, out / SUCCESS)
    return Figure(SUCCESS, label, (
        "Successful cells of measured cells per NET x SEC (successful: every round completed "
        "with enough participants, no pod restart, no timed-out update). The seed study counted "
        "successful attempts among retries; this run measures each cell once."
    ))
