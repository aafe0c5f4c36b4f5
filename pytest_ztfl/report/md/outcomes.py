"""report.md's results over cells: *Cell groups (pooled over seeds)*, *SLO verdicts* and this
run's verdict on each of the seed study's quantitative claims."""

from __future__ import annotations

from collections import Counter

from pytest_ztfl.analysis.base import min_n_for_quantile_ci
from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.claims import verdicts
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
    found = verdicts(a)
    rows: list[list[str]] = []
    notes: list[str] = []

    def ref(text: str) -> str:
        if not text:
            return ""
        notes.append(text)
        return f" [{len(notes)}]"

    for v in found:
        c = v.claim
        claim = f'`{v.label}` ({c.where}): "{c.statement}"' + ref(c.note)
        rows.append([claim, c.shown, v.measured + ref(v.note), v.theirs, v.verdict, v.n])
    words = Counter(v.verdict.split(" (")[0].split(":")[0] for v in found)
    counts = ", ".join(
        f"{k} {words[k]}" for k in ("consistent", "contradicted", "not testable here") if words[k]
    )
    claims = {v.claim.id: v.claim for v in found}
    pairs = sorted({tuple(sorted((c.id, o))) for c in claims.values() for o in c.contradicts})
    out = [
        f"Source: the study's claims, `pytest_ztfl/report/study_claims.toml` (each quoted with "
        f"where the study states it); this run's values from {source(a)}, the cells proper "
        "without a fault, durations traceable to `events/<id>.jsonl`. Verdict: *consistent* "
        "when the study's value (or a value of its claimed range) lies inside this run's 95% "
        "interval, which does not confirm it; *contradicted* when it lies outside; *not "
        "testable here* with the reason. A ratio is the comparison of *Cells* and *Cell "
        "groups* pooled over every block that holds both arms (rounds paired within a block "
        "run, blocks and rounds resampled, the run's instance noise borrowed, bootstrap seed "
        f"0), with its MDE. An honest 95% interval of a p99 needs "
        f"{min_n_for_quantile_ci(0.99)} rounds per arm (docs/statistics.md): with fewer the "
        "verdict is marked descriptive, and under 100 the p99 is the largest round or next "
        "to it and the claim is not testable. The study's definitions are not ours; the "
        "column *the study's definition, this run* applies them to the same rows: its p99 "
        "of a configuration is the mean over runs of each run's p99 (its Fig. 2 script), or "
        "for Fig. 5 the p99 of every round pooled, failed rounds included in both; its "
        "failure rate is failure events per round (a round with three failed clients counts "
        "three), where ours is failed rounds over planned rounds. "
        f"n = {len(found)} verdicts: {counts}.",
        "",
        *table(
            (
                "the study's claim",
                "the study's value",
                "measured in this run [95% CI]",
                "the study's definition, this run",
                "verdict",
                "n",
            ),
            rows,
        ),
    ]
    if pairs:
        out += ["", "Claims of the study that contradict each other:", ""]
        out += [
            f"- `{x}` ({claims[x].shown}; {claims[x].where}) against `{y}` ({claims[y].shown}; "
            f"{claims[y].where})"
            for x, y in pairs
        ]
    if notes:
        out += ["", *(f"[{i}] {escape(n)}" + "  " for i, n in enumerate(notes, 1))]
    return out
