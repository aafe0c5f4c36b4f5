"""report.md: run metadata, per-cell and per-group tables, SLO verdicts, the seed study's
headline claims next to this run's values, and the figures. Every table names its source
files and n."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_ztfl import stats
from pytest_ztfl.report_calc import Analysis, CellStats, censoring_time
from pytest_ztfl.report_claims import claims
from pytest_ztfl.report_fmt import (
    UNRELIABLE,
    counts_text,
    escape,
    num,
    q_text,
    ratio_text,
    table,
    tta_text,
)
from pytest_ztfl.report_model import Run

ENV_KEYS = ("git_commit", "hostname", "kernel", "os", "python", "cpus", "cpu_model", "memory_bytes")


def source(a: Analysis) -> str:
    """Where the rows were read from, as the tables' source lines name it."""
    if a.loaded.source == "runs.jsonl":
        return "`runs.jsonl` (no `cells/` files)"
    return "`cells/<id>.json` (the rows of `runs.jsonl`)"


def _distinct(values: Iterable[Any]) -> str:
    counts = Counter(
        json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v)
        for v in values
        if v is not None
    )
    if not counts:
        return "not recorded"
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{v} ({n} cells)" for v, n in counts.most_common())


def _utc(t: float | None) -> str:
    if t is None:
        return "?"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _matrix_rows(a: Analysis) -> list[tuple[str, str]]:
    m, loaded = a.loaded.matrix, a.loaded
    present = {r.id for r in loaded.runs}
    out: list[tuple[str, str]] = []
    if m is not None and loaded.expected is not None:
        wl = m.get("workload", {})
        out.append(
            (
                "matrix",
                f"{m.get('name', '?')}: SEC {', '.join(m.get('sec', []))}; "
                f"NET {', '.join(m.get('net', []))}; data {', '.join(m.get('data', []))}; "
                f"seeds {', '.join(map(str, m.get('seeds', [])))}; "
                f"mTLS modes {', '.join(m.get('mtls', []))}",
            )
        )
        out.append(("workload", ", ".join(f"{k}={v}" for k, v in sorted(wl.items()))))
        missing = [c for c in loaded.expected if c not in present]
        extra = sorted(present - set(loaded.expected))
        text = f"{len(loaded.expected) - len(missing)} of {len(loaded.expected)} have a result"
        if missing:
            text += f"; without a usable result: {', '.join(missing)}"
        if extra:
            text += f"; not in matrix.json: {', '.join(extra)}"
        out.append(("cells", text))
    else:
        out.append(("cells", f"{len(loaded.runs)} with a result (matrix.json unusable)"))
    return out


def _calibrations(runs: Sequence[Run]) -> str:
    seen = {
        (r.net, r.calibration.get("ref"), r.calibration.get("passed"), r.calibration.get("note"))
        for r in runs
        if r.calibration
    }
    if not seen:
        return "not recorded"

    def one(net: str, ref: Any, ok: Any, note: Any) -> str:
        if ref is None:
            return f"{net} {note or 'not measured'}"
        return f"{net} {'passed' if ok else 'MISSED its targets' if ok is False else '?'} (`{ref}`)"

    return "; ".join(one(*x) for x in sorted(seen, key=str))


def metadata(a: Analysis) -> list[str]:
    runs = a.loaded.runs
    rows = _matrix_rows(a)
    rows.append(
        (
            "backend",
            _distinct(
                f"{r.backend or '?'}" + (f" ({r.backend_note})" if r.backend_note else "")
                for r in runs
            ),
        )
    )
    rows.append(("cells measured at once", _distinct(r.parallel or 1 for r in runs)))
    rows.append(("NET emulation", _distinct(r.net_mechanism for r in runs)))
    rows.append(("NET calibration", _calibrations(runs)))
    rows.append(("NetworkPolicy", _distinct(r.netpol_action for r in runs)))
    rows.append(("mTLS", _distinct(r.mtls_mode for r in runs)))
    for key in ENV_KEYS:
        values = [r.environment.get(key) for r in runs]
        if key == "memory_bytes":
            values = [f"{v} ({v / 2**30:.1f} GiB)" if isinstance(v, int) else v for v in values]
        rows.append((key.replace("_", " "), _distinct(values)))
    versions: dict[str, list[Any]] = {}
    for r in runs:
        v = r.environment.get("versions")
        if isinstance(v, dict):
            for pkg, ver in v.items():
                versions.setdefault(pkg, []).append(ver)
    if versions:
        rows.append(
            ("versions", "; ".join(f"{p} {_distinct(vs)}" for p, vs in sorted(versions.items())))
        )
    starts = [r.started_wall for r in runs if r.started_wall is not None]
    ends = [r.finished_wall for r in runs if r.finished_wall is not None]
    rows.append(
        (
            "run window",
            f"{_utc(min(starts) if starts else None)} to {_utc(max(ends) if ends else None)}",
        )
    )
    return [
        f"Source: `matrix.json` and the `environment`, `backend`, `overlays` fields of "
        f"{source(a)}; n = {len(runs)} rows.",
        "",
        *table(("", "value"), rows),
    ]


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
        "p50 vs SEC0",
        "p99 vs SEC0",
        "TTA s",
        "final accuracy",
        "failures by class",
        "proofs passed",
        "events check",
    )
    return [
        f"Source: {source(a)}; round durations re-read from `events/<id>.jsonl` and compared "
        "(column *events check*). n per cell = its completed rounds (*rounds ok*); "
        "overheads divide by the SEC0 cell with the same NET, data and seed "
        "(independent two-sample bootstrap, as the SLO gate). "
        f"n = {len(a.cells)} cells.",
        "",
        *table(head, (_cell_row(a, c) for c in a.cells)),
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


def groups(a: Analysis) -> list[str]:
    head = (
        "SEC",
        "NET",
        "data",
        "cells (seeds)",
        "n rounds",
        "p50 s [95% CI]",
        "p95 s [95% CI]",
        "p99 s [95% CI]",
        "mean TTA s [95% CI]",
        "successful cells",
        "failed rounds",
    )
    rows = []
    for key in sorted(
        a.groups, key=lambda k: (a.nets.index(k[1]), a.datas.index(k[2]), a.secs.index(k[0]))
    ):
        g = a.groups[key]
        qs = [q_text(g.summary.get(q)) if g.summary else "n/a" for q in (0.5, 0.95, 0.99)]
        rows.append(
            [
                *key,
                str(g.seeds),
                str(len(g.durations)),
                *qs,
                tta_text(g.tta),
                f"{sum(r.success for r in g.runs)}/{g.seeds}",
                f"{g.failed_rounds}/{g.rounds_total}",
            ]
        )
    notes = [
        f"- TTA of {'/'.join(key)}: {a.groups[key].tta_note}"
        for key in sorted(a.groups)
        if a.groups[key].tta_note
    ]
    return [
        f"Source: {source(a)}, completed rounds pooled over seeds (as the seed study did); "
        "TTA from `metrics.tta_seconds`, censoring times from `events/<id>.jsonl` "
        f"(first round_start to run_end). n = {len(a.groups)} groups.",
        "",
        *table(head, rows),
        *(["", *notes] if notes else []),
    ]


def slo(a: Analysis) -> list[str]:
    with_slo = [r for r in a.loaded.runs if r.slo]
    if not with_slo:
        return [
            "No SLO verdicts are stored in these rows (field `slo` absent): the verdicts "
            "of this run are the pytest outcomes of its `test_fl[...]` tests."
        ]
    rows = [
        [
            f"`{r.id}`",
            str(v.get("metric", "?")),
            str(v.get("verdict", "?")).upper(),
            str(v.get("message", "")),
        ]
        for r in with_slo
        for v in r.slo
    ]
    verdicts = Counter(row[2] for row in rows)
    return [
        f"Source: field `slo` of {source(a)}; n = {len(rows)} verdicts in {len(with_slo)} "
        f"of {len(a.loaded.runs)} cells ({', '.join(f'{k} {v}' for k, v in verdicts.items())})."
        " Rule: FAIL only when the CI lies beyond the limit; INCONCLUSIVE when the estimate "
        "is beyond it but the CI includes it.",
        "",
        *table(("cell", "SLO", "verdict", "evidence"), rows),
    ]


def headline(a: Analysis) -> list[str]:
    items = claims(a)
    rows, notes = [], []
    for c in items:
        ref = ""
        if c.note:
            notes.append(c.note)
            ref = f" [{len(notes)}]"
        rows.append([c.topic, c.measured + ref, c.n, c.source, c.rule])
    out = [
        "The seed study's published values are not reproduced here. To compare, place a "
        "published value against this run's 95% CI: outside the CI, this run contradicts it; "
        "inside, this run is consistent with it (which does not confirm it). Ratios use "
        "completed rounds pooled over the data splits and seeds both arms share; durations "
        "trace to `events/<id>.jsonl`.",
        "",
        *table(
            (
                "seed-study headline",
                "measured in this run [95% CI]",
                "n",
                "source",
                "how to compare",
            ),
            rows,
        ),
    ]
    if notes:
        out += ["", *(f"[{i}] {escape(n)}" + "  " for i, n in enumerate(notes, 1))]
    return out


def document(
    a: Analysis, figures: Sequence[tuple[str, str]], notes: Sequence[str], version: str
) -> str:
    loaded = a.loaded
    name = (loaded.matrix or {}).get("name", "results")
    lines = [
        f"# ztfl report: {name}",
        "",
        f"Generated {_utc(dt.datetime.now(dt.UTC).timestamp())} by pytest-ztfl {version} "
        f"from `{loaded.results_dir.resolve()}` ({len(loaded.runs)} cells read from "
        f"{loaded.source}).",
        "",
    ]
    if notes:
        lines += [
            "> **Partial or qualified report.** Problems found in the results directory "
            "(each affects only what it names):",
            ">",
        ]
        lines += [f"> - {n}" for n in notes]
        lines.append("")
    sections: list[tuple[str, list[str]]] = [
        ("Run metadata", metadata(a)),
        ("Cells", cells(a)),
        ("Cell groups (pooled over seeds)", groups(a)),
        ("NET emulation during the runs", emulation(a)),
        ("SLO verdicts", slo(a)),
        ("Seed study (ZeroTrust-FLBench) headline claims vs this run", headline(a)),
        (
            "Figures",
            [
                line
                for f, cap in figures
                for line in (f"![{f.removesuffix('.png')}]({f})", "", f"*{cap}*", "")
            ],
        ),
        ("Method", method()),
    ]
    for title, body in sections:
        lines += [f"## {title}", "", *body, ""]
    return "\n".join(lines).rstrip() + "\n"


def method() -> list[str]:
    return [
        "- Round duration: the server's round_start to round_end of completed rounds "
        "(`ok=true`), as the SLO gates use; failed rounds count in the failure rates.",
        f"- Quantiles p50/p95/p99: numpy's linear quantile; 95% CIs from scipy's bootstrap "
        f"(percentile, {stats.DEFAULT_N_RESAMPLES} resamples, seeded: reruns give the same "
        "numbers). Ratios and the interaction contrast: independent bootstrap of each sample. "
        "A pooled sample concatenates its cells in cell-id order, rounds in round order: "
        "recomputing with pytest_ztfl.stats in that order (bootstrap seed: the cell's seed for "
        "per-cell numbers, as the SLO gate uses; 0 for pooled samples) reproduces every CI.",
        f"- {UNRELIABLE} marks a CI that cannot be trusted for its n (e.g. a p99 from fewer than "
        f"{stats.min_n_for_quantile_ci(0.99)} rounds: the bootstrap cannot reach beyond the "
        "sample's extremes) or that is missing.",
        "- TTA: Kaplan-Meier restricted mean over seeds with runs that never reached the target "
        "censored at their observed span; with censoring it is a lower bound.",
        "- Failure rate: failed plus never-run rounds over planned rounds, Clopper-Pearson CI.",
        "- Details: docs/statistics.md.",
    ]
