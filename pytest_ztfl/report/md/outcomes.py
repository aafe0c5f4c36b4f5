"""report.md's results over cells: *Cell groups (pooled over seeds)*, *SLO verdicts* and the
seed study's headline claims next to this run's values."""

from __future__ import annotations

from collections import Counter

from pytest_ztfl.analysis.base import min_n_for_quantile_ci
from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.claims import claims
from pytest_ztfl.report.fmt import escape, q_text, ratio_text, table, tta_text
from pytest_ztfl.report.md.common import collapsed, source


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
        "p50 vs SEC0 [95% CI] (MDE)",
        "p95 vs SEC0 [95% CI] (MDE)",
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
        if g.ratios:
            over = [f"{ratio_text(x)}, {x.blocks} blocks" for x in g.ratios]
        else:
            over = ["-" if g.ratio_note == "baseline" else f"n/a ({g.ratio_note})"] * 2
        rows.append(
            [
                *key,
                str(g.seeds),
                str(len(g.durations)),
                *qs,
                *over,
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
        f"Source: {source(a)}, completed rounds pooled over seeds (as the seed study did; "
        "check arms never): p50/p95/p99 describe the pooled rounds; *vs SEC0* pools the "
        "group's blocks, each cell with its block's SEC0 arm (paired rounds, intervals over "
        "blocks and rounds: the pooled SLO gate's comparison, bootstrap seed 0). "
        "TTA from `metrics.tta_seconds`, censoring times from `events/<id>.jsonl` "
        "(first round_start to run_end, less the time the server was held between its rounds "
        f"while other arms ran). n = {len(a.groups)} groups.",
        "",
        *table(head, rows),
        *(["", *notes] if notes else []),
    ]


def slo(a: Analysis) -> list[str]:
    runs = [c.run for c in a.cells]
    with_slo = [r for r in runs if r.slo]
    checks = sum(bool(r.slo) for r in (c.run for c in a.check_cells))
    left = (
        f" The verdicts of {checks} check arm{'s' * (checks != 1)} are not listed: they judge "
        "the instrument (see *Instrument checks*)."
        if checks
        else ""
    )
    if not with_slo:
        return [
            "No SLO verdicts are stored in these rows (field `slo` absent): the verdicts "
            "of this run are the pytest outcomes of its `test_fl[...]` tests." + left
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
        f"of {len(runs)} cells ({', '.join(f'{k} {v}' for k, v in verdicts.items())})."
        " Rule: FAIL only when the CI lies beyond the limit; INCONCLUSIVE when the estimate "
        "is beyond it but the CI includes it. The pooled gates (`test_overhead_pooled[...]`: "
        "median and p95 of a SEC level over its blocks) are pytest outcomes, not stored in "
        "rows; *Cell groups* shows the same comparisons per data split." + left,
        "",
        *collapsed(("cell", "SLO", "verdict", "evidence"), rows, lambda row: row[2] == "PASS",
                   "verdicts"),
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
        "inside, this run is consistent with it (which does not confirm it). Ratios pool "
        "every block (data split and seed) that holds both arms, rounds paired within a block "
        "run, intervals over blocks and rounds (bootstrap seed 0), with the MDE; durations "
        "trace to `events/<id>.jsonl`. The tail is p95, not the seed study's p99: an honest "
        f"95% interval for a p99 needs {min_n_for_quantile_ci(0.99)} rounds per arm "
        "(docs/statistics.md), so hold a published p99 ratio against the p95 as an indication "
        "only.",
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
