"""Plumbing shared by the report's figures: what a figure hands the report (:class:`Figure`),
a headless canvas, consistent colours, the SEC x NET heatmap grid, and the provenance line
(n, backend, mechanisms) every figure carries.

matplotlib is imported inside functions so that importing the plugin stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_ztfl.report.model import Run

DPI = 120
FAILURE_COLOURS = {
    "netpol": "#d62728",
    "mtls": "#9467bd",
    "resource": "#8c564b",
    "netem": "#ff7f0e",
    "workload": "#1f77b4",
    "unclassified": "#7f7f7f",
}


@dataclass(frozen=True)
class Figure:
    """One figure of the report: drawn to ``name`` with ``text`` its caption, or, with nothing
    to show (``drawn`` False), not drawn and ``text`` the one line the report says instead."""

    name: str
    label: str  # what it shows, e.g. "Per-round failure rate"
    text: str
    drawn: bool = True


def omitted(name: str, label: str, why: str) -> Figure:
    return Figure(name, label, why, drawn=False)


@dataclass(frozen=True)
class Tile:
    """One SEC x NET square of a heatmap: the value its colour shows (nan: grey, none) and
    the text printed in it."""

    value: float
    text: str


Panel = tuple[str, Mapping[tuple[str, str], Tile]]  # title, (row, column) -> tile


def new_figure(width: float, height: float) -> Any:
    """A Figure on the Agg canvas, independent of pyplot's global state and backend."""
    # deferred on purpose: matplotlib is heavy, and importing the report (the plugin, the CLI)
    # must not import it (tests/report/test_report_write.py checks); only drawing needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI)


def colour(i: int) -> str:
    palette = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
    return palette[i % len(palette)]


def linestyle(sec_label: str) -> str:
    """Dashed for natively terminated mTLS, so the two modes of one SEC level stay apart."""
    return "--" if sec_label.endswith("-native") else "-"


def failure_colour(cls: str, i: int) -> str:
    return FAILURE_COLOURS.get(cls, colour(i + 3))


def grid_figure(panels: int, rows: int, cols: int) -> Any:
    """A figure sized for ``panels`` heatmaps of ``rows`` x ``cols`` tiles, one above another."""
    return new_figure(max(7.0, 1.55 * cols + 2.6), (0.95 * rows + 0.9) * panels + 1.3)


def grid(
    fig: Any,
    panels: Sequence[Panel],
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    cmap: str,
    norm: Any,
    label: str,
) -> None:
    """Draw ``panels`` as heatmaps, one above another: ``rows`` down, ``cols`` across, each
    tile coloured by its value under ``norm`` and printed with its text; a missing tile reads
    "no data". One colour bar labelled ``label`` serves them all."""
    from matplotlib import colormaps

    colours = colormaps[cmap]
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    image = None
    for ax, (name, tiles) in zip(axes, panels, strict=True):
        values = np.full((len(rows), len(cols)), np.nan)
        for (r, c), filled in tiles.items():
            values[rows.index(r), cols.index(c)] = filled.value
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colours, norm=norm, aspect="auto")
        ax.set_facecolor("#dddddd")
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                tile = tiles.get((r, c))
                dark = False
                if tile is not None and math.isfinite(tile.value):
                    red, green, blue, _ = colours(float(norm(tile.value)))
                    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(
                    j,
                    i,
                    tile.text if tile is not None else "no data",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        if name:
            ax.set_title(name, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label=label, shrink=0.9)


def _values(items: Iterable[str | None]) -> str:
    found = sorted({v for v in items if v})
    return "/".join(found) if found else "n/a"


def provenance(runs: Iterable[Run], n_text: str, width_chars: int = 120) -> str:
    """``n=... | backend ... | NET emulation ... | NetworkPolicy ... | mTLS ...``, wrapped at
    the separators to ``width_chars`` per line."""
    rs = list(runs)
    parts = [
        n_text,
        f"backend: {_values(r.backend for r in rs)}",
        f"NET emulation: {_values(r.net_mechanism for r in rs)}",
        f"NetworkPolicy: {_values(r.netpol_action for r in rs)}",
        f"mTLS: {_values(r.mtls_mode for r in rs)}",
    ]
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) > width_chars:
            lines.append(part)
        else:
            lines[-1] += " | " + part
    return "\n".join(lines)


def title(fig: Any, text: str, runs: Iterable[Run], n_text: str) -> None:
    """The figure's title and, at its foot, n, backend and mechanisms."""
    width_in = float(fig.get_figwidth())
    fig.suptitle(text, fontsize=12 if width_in >= 7 else 10.5, fontweight="bold")
    # ~13 characters per inch at 8 pt in DejaVu Sans
    fig.supxlabel(provenance(runs, n_text, int(width_in * 13)), fontsize=8, color="#444444")
