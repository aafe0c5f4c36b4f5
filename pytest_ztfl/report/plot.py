"""Plumbing shared by the report's figures: a headless figure, consistent colours, and the
provenance line (n, backend, mechanisms) every figure carries.

matplotlib is imported inside functions so that importing the plugin stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

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


def new_figure(width: float, height: float) -> Any:
    """A Figure on the Agg canvas, independent of pyplot's global state and backend."""
    # deferred on purpose: matplotlib is heavy, and importing the report (the plugin, the CLI)
    # must not import it (tests/report/test_report_write.py checks); only drawing needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
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
