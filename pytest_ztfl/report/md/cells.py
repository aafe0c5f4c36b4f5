"""report.md's per-cell sections: *Cells* (quantiles, the ratio to the block's SEC0 arm, TTA,
failures, proofs) and *Where a round's time goes* (compute, communication, path, CPU, memory)."""

from __future__ import annotations

from pytest_ztfl.report.calc import Analysis, CellStats, censoring_time
from pytest_ztfl.report.fmt import counts_text, ms_text, num, q_text, ratio_text, table
from pytest_ztfl.report.md.common import NOT_RECORDED, source
from pytest_ztfl.report.model import Run


def _proofs(r: Run) -> str:
    if not r.proofs:
        return "none recorded"
    failed = [n for n, ok in r.proofs if not ok]
    text = f"{r.proofs_passed}/{len(r.proofs)}"
    return text + (f" (failed: {', '.join(failed)})" if failed else "")


def _cell_row(a: Analysis, c: CellStats) -> list[str]:
    r, s = c.run, c.summary
    qs = [q_text(s.get(q)) if s else "n/a" for q in (0.5, 0.95, 0.99)]
    if c.ratios:
        over = [ratio_text(x) for x in c.ratios]
    elif c.ratio_note == "check arm":
        over = ["check arm: see *Instrument checks*"] * 2
    else:
        over = ["-" if c.ratio_note == "baseline" else f"n/a ({c.ratio_note})"] * 2
    if r.tta_seconds is not None:
        tta = num(r.tta_seconds)
    else:
        t, _ = censoring_time(r, a.loaded.events[r.id].elapsed)
        tta = f"censored (> {num(t)})"
    ok = sum(x.ok for x in r.rounds)
    return [
        f"`{r.id}`",
        "yes" if r.success else f"NO: {r.success_reason}",
        f"{ok}/{r.rounds_planned}",
        *qs,
        *over,
        tta,
        num(r.final_accuracy, "{:.4f}"),
        counts_text(r.failures_by_class),
        _proofs(r),
        a.loaded.events[r.id].status,
    ]


def cells(a: Analysis) -> list[str]:
    head = (
        "cell",
        "success",
        "rounds ok/planned",
        "p50 s [95% CI]",
        "p95 s [95% CI]",
        "p99 s [95% CI]",
        "p50 vs SEC0 [95% CI] (MDE)",
        "p95 vs SEC0 [95% CI] (MDE)",
        "TTA s",
        "final accuracy",
        "failures by class",
        "proofs passed",
        "events check",
    )
    checks = (
        f" and {len(a.check_cells)} check arm{'s' * (len(a.check_cells) != 1)} (last rows: "
        "never a baseline, compared under *Instrument checks*)"
        if a.check_cells
        else ""
    )
    return [
        f"Source: {source(a)}; round durations re-read from `events/<id>.jsonl` and compared "
        "(column *events check*). n per cell = its completed rounds (*rounds ok*); p50/p95/p99 "
        "describe the cell's own rounds. *vs SEC0* divides the cell's quantile by its block's "
        "SEC0 arm's (same NET, data, seed and fault): rounds paired when the two ran in one "
        "block run, else unpaired; the interval (the run's instance noise, at least the rounds' "
        "bootstrap) and bootstrap seed of the SLO gate "
        "(analysis.compare), so the p50 ratio is the gate's. MDE: the smallest change the "
        "comparison detects with 80% power. "
        f"n = {len(a.cells)} cells{checks}.",
        "",
        *table(head, (_cell_row(a, c) for c in (*a.cells, *a.check_cells))),
    ]


def _opt(v: float | None, fmt: str = "{:.3g}") -> str:
    return NOT_RECORDED if v is None else num(v, fmt)


def _memory(m: tuple[int, int, int] | None) -> str:
    if m is None:
        return NOT_RECORDED
    return f"{m[0] / 2**20:.0f} / {m[1] / 2**20:.0f} ({m[2]} pods)"


def _parts_row(c: CellStats) -> list[str]:
    r, p = c.run, c.parts
    assert p is not None
    if not r.durations:
        return [f"`{r.id}`", "0", *["n/a"] * 4, "n/a (no completed rounds)", *["n/a"] * 5]
    if c.ratio_note == "baseline":
        path_vs = cpu_vs = "-"
    elif c.baseline is None:
        path_vs = cpu_vs = "n/a (no SEC0 arm)"
    else:
        path_vs = ms_text(p.path_diff) if p.path_diff else _missing(p.path, "path", p.note)
        cpu_vs = ratio_text(p.cpu_ratio) if p.cpu_ratio else _missing(p.cpu, "CPU", p.note)
    return [
        f"`{r.id}`",
        str(sum(x.ok for x in r.rounds)),
        _opt(p.duration),
        _opt(p.compute),
        _opt(p.comm),
        _opt(p.path),
        path_vs,
        _opt(p.cpu),
        cpu_vs,
        _opt(p.proxy),
        "-" if p.delayline is None and p.cpu is not None else _opt(p.delayline),
        _memory(p.memory),
    ]


def _missing(own: float | None, what: str, note: str) -> str:
    if own is None:
        return NOT_RECORDED
    why = [n.split(": ", 1)[1] for n in note.split("; ") if n.startswith(f"{what}: ")]
    return f"n/a ({why[0]})" if why else "n/a"


def time_parts(a: Analysis) -> list[str]:
    head = (
        "cell",
        "n rounds",
        "median round s",
        "median compute s",
        "median comm s",
        "median path s",
        "path vs SEC0 (p50 difference) [95% CI]",
        "CPU s/round (median)",
        "CPU vs SEC0 [95% CI] (MDE)",
        "proxy CPU s/round",
        "delay-line CPU s/round",
        "peak memory per pod MiB: max / sum",
    )
    return [
        f"Source: `metrics.rounds[]` of {source(a)}: *compute* is the slowest client's training "
        "plus the server's aggregation (`client_update.train_seconds`, "
        "`round_end.aggregation_seconds` in `events/<id>.jsonl`), *comm* the rest of the round "
        "(communication and the controls on its path). *path* is, per participant, the time "
        "from the round's start to the server holding its update minus its own training, "
        "averaged over the round's participants (`path_seconds`): a control's direct cost "
        "shows there, and it is steadier than comm, which sets one client's arrival against "
        "another's training; a control's CPU cost shows in compute and CPU. CPU per round is "
        "every container of the arm (`cpu_seconds`, cgroups), of which the TLS proxies "
        "(`cpu_proxy_seconds`); the delay line's own process apart (`cpu_delayline_seconds`). "
        "Peak memory per pod (the sum of its containers' peaks, an upper bound) from "
        "`resources.pods`: the largest pod and all pods together. Differences and ratios "
        "against the block's SEC0 arm as in *Cells* (paired rounds, instance noise). "
        f"{NOT_RECORDED}: the row predates these fields or the backend gives no cgroups; "
        f"delay-line CPU -: no delay line (NET0 or kernel netem). n = {len(a.cells)} cells.",
        "",
        *table(head, (_parts_row(c) for c in a.cells)),
    ]
