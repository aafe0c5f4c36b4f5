"""report.md's *Measurement design* (blocks, interleaving, pairing, n per comparison, the
machine's load) and *NET emulation during the runs* (the delay line's own counters)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from statistics import median

from pytest_ztfl.analysis.base import min_n_for_quantile_ci
from pytest_ztfl.analysis.paired import ASSUMED
from pytest_ztfl.report.arms import is_paired
from pytest_ztfl.report.calc import Analysis, load_fractions
from pytest_ztfl.report.fmt import num, table
from pytest_ztfl.report.md.common import NOT_RECORDED, block_label, distinct, source
from pytest_ztfl.report.model import Run


def _fmt_range(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    return f"median {fmt.format(median(values))}, max {fmt.format(max(values))}"


def _loadavg(runs: Sequence[Run]) -> str:
    seen = [
        [float(x) for x in la]
        for r in runs
        if isinstance(la := r.environment.get("loadavg"), list)
        and len(la) == 3
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in la)
    ]
    if not seen:
        return NOT_RECORDED
    cols = list(zip(*seen, strict=True))
    return (
        "1 / 5 / 15 min: median "
        + " / ".join(f"{median(c):.2f}" for c in cols)
        + ", max "
        + " / ".join(f"{max(c):.2f}" for c in cols)
        + f" (`environment.loadavg` of {len(seen)} rows)"
    )


def _comparisons(label: str, pairs: Sequence[tuple[Run, Run]]) -> tuple[str, str]:
    if not pairs:
        return label, "none"
    n = sum(map(is_paired, pairs))
    if n == len(pairs):
        return label, f"all {n} paired (each arm with its block's SEC0 arm, same block run)"
    if n == 0:
        return label, f"all {len(pairs)} unpaired (no two arms share a recorded block run)"
    return label, f"{n} of {len(pairs)} paired (same block run), {len(pairs) - n} unpaired"


def _span(values: Sequence[int], unit: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo} {unit}" if lo == hi else f"{lo} to {hi} {unit}"


def design(a: Analysis) -> list[str]:
    runs = a.loaded.runs
    rows: list[tuple[str, str]] = []
    recorded = [r for r in runs if r.design]
    if not recorded:
        rows.append(
            (
                "design",
                "not recorded (rows from before blocks): the arms ran one after another and "
                "every comparison is unpaired",
            )
        )
    else:
        modes = {str(r.design.get("mode")) for r in recorded}
        rows.append(("mode", distinct(r.design.get("mode") for r in runs)))
        if "round" in modes:
            rows.append(
                (
                    "round",
                    "a block's arms deployed together, their rounds interleaved one at a time "
                    "in an order drawn afresh for every round (Randomized Multiple Interleaved "
                    "Trials), recorded in `design.round_order`",
                )
            )
        if "cell" in modes:
            why = distinct(r.design.get("why") for r in recorded if r.design.get("mode") == "cell")
            rows.append(
                (
                    "cell",
                    "a block's arms run one after another in a random order"
                    + (f" ({why})" if why != NOT_RECORDED else ""),
                )
            )
        rows.append(("order seed", distinct(r.design.get("order_seed") for r in runs)))
        blocks: dict[str, list[Run]] = {}
        for r in recorded:
            blocks.setdefault(block_label(r), []).append(r)
        block_runs = {r.block_run for r in recorded if r.block_run}
        rows.append(
            (
                "blocks",
                f"{len(blocks)} (same NET, data split, seed and fault); "
                f"{len(block_runs)} block run{'s' * (len(block_runs) != 1)}",
            )
        )
        arms = Counter(
            len(a_) if isinstance(a_ := members[0].design.get("arms"), list) else len(members)
            for members in blocks.values()
        )
        rows.append(
            (
                "arms per block",
                "; ".join(f"{k} ({v} block{'s' * (v != 1)})" for k, v in sorted(arms.items())),
            )
        )
    rows.append(
        _comparisons(
            "comparisons of cells with their SEC0 arm",
            [(c.run, c.baseline) for c in a.cells if c.baseline is not None],
        )
    )
    if a.checks:
        rows.append(
            _comparisons(
                "comparisons of check arms with their SEC0 arm",
                [p for c in a.checks for p in c.pairs],
            )
        )
    n_cell = [min(c.ratios[0].n_treatment, c.ratios[0].n_baseline) for c in a.cells if c.ratios]
    if n_cell:
        rows.append(("n per comparison (cell vs SEC0)", _span(n_cell, "rounds per arm")))
    n_group = [
        (g.ratios[0].blocks, min(g.ratios[1].n_treatment, g.ratios[1].n_baseline))
        for g in a.groups.values()
        if len(g.ratios) > 1
    ]
    if n_group:
        rows.append(
            (
                "n per pooled comparison (group vs SEC0)",
                f"{_span([b for b, _ in n_group], 'blocks')}, "
                f"{_span([n for _, n in n_group], 'rounds per arm')} (a p95 interval is "
                f"reliable from {min_n_for_quantile_ci(0.95)} rounds per arm)",
            )
        )
    noise = a.noise.of("duration")
    said = (noise or ASSUMED).describe(log=True)
    rows.append(("instance noise (median round duration)", said))
    env = [r.environment for r in runs]
    mem = [
        f"{v / 2**30:.1f} GiB" if isinstance(v := e.get("memory_bytes"), int) else None for e in env
    ]
    rows.append(
        (
            "machine",
            f"{distinct(e.get('cpus') for e in env)} CPUs, "
            f"{distinct(e.get('cpu_model') for e in env)}, {distinct(mem)} memory",
        )
    )
    fractions = load_fractions(runs)
    rows.append(
        (
            "load met by a round",
            f"{_fmt_range(fractions)} CPUs over {len(fractions)} rounds "
            "(`cpu_other_seconds` / round duration: the machine's CPU that was not the arm's "
            "while its round ran)"
            if fractions
            else f"{NOT_RECORDED} (no per-round CPU in these rows)",
        )
    )
    rows.append(("load average", _loadavg(runs)))
    return [
        f"Source: field `design` (pytest_ztfl.design), `environment` and `metrics.rounds[]."
        f"cpu_other_seconds` of {source(a)}; n = {len(runs)} rows. Arms compared with each "
        "other (SEC levels, mTLS modes, check arms of one NET, data split, seed and fault) "
        "form a block; a comparison pairs the rounds of two arms that ran in the same block "
        "run, and its interval takes the instance noise of the run's repeated comparisons "
        "into account (docs/statistics.md).",
        "",
        *table(("", "value"), rows),
    ]


def _emulation_row(r: Run) -> list[str]:
    e = r.emulation
    life = [c for c in (e.get("classes") or {}).values() if isinstance(c, dict)]
    rounds = [c for c in (e.get("rounds") or {}).values() if isinstance(c, dict)]

    def total(key: str) -> int:
        return sum(int(c.get(key) or 0) for c in rounds)

    held = total("held_total")
    # the lateness sum over the packets released; rows stored before the delay line published
    # its sums carry the mean only (weighted by packets held: the same but for a few in flight)
    late = sum(
        float(c["late_sum_us"])
        if "late_sum_us" in c
        else float(c.get("late_mean_us") or 0) * int(c.get("held_total") or 0)
        for c in rounds
    )
    released = sum(
        int(c["released"]) if "released" in c else int(c.get("held_total") or 0) for c in rounds
    )
    late_max = max((float(c.get("late_max_us") or 0) for c in life), default=None)
    per_round = e.get("delayline_cpu_s_per_round")
    return [
        f"`{r.id}`",
        r.net_mechanism or "?",
        str(total("seen")),
        str(held),
        num(late / released if released else None, "{:.0f}"),
        num(late_max, "{:.0f}"),
        str(total("dropped_loss")),
        str(total("dropped_rate")),
        str(e.get("kernel_queue_drops", "n/a")),
        num(per_round * 1e3 if isinstance(per_round, int | float) else None, "{:.1f}"),
    ]


def emulation(a: Analysis) -> list[str]:
    runs = [c.run for c in a.cells if c.run.emulation]
    if not runs:
        return ["No cell ran through the delay line (NET0 only, or kernel netem)."]
    head = (
        "cell",
        "mechanism",
        "packets seen",
        "held",
        "release lateness mean us",
        "max us (whole cell)",
        "dropped (loss model)",
        "dropped (rate's buffer full)",
        "kernel queue drops",
        "delay line CPU ms per round",
    )
    return [
        f"Source: `overlays.net.emulation` of {source(a)}: the delay line's own counters, from "
        "the rounds' release to the server's exit (`rounds`), except the max lateness, which "
        "covers the whole cell (pod start-up and proofs included). Release lateness is a held "
        "packet's actual minus scheduled release: the emulator's timing error under the real "
        "FL traffic. CPU is the delay line's user + system time over the rounds, per round "
        f"(round_end events). n = {len(runs)} cells.",
        "",
        *table(head, (_emulation_row(r) for r in runs)),
    ]
