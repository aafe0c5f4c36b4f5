"""report.md's *Instrument checks*: the A/A arms (blind: false alarms) and the known-delay arms
(sighted: is the injected delay found), each against its block's SEC0 arm."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pytest_ztfl.report.arms import pairing
from pytest_ztfl.report.calc import Analysis, CheckStats
from pytest_ztfl.report.fmt import mde_text, ms_text, ratio_text, table
from pytest_ztfl.report.md.common import block_label, check_verdict, detected, source


def _rounds(c: CheckStats) -> str:
    r = c.ratio
    if r is None:
        return "-"
    return f"{r.n_treatment} vs {r.n_baseline}"


def _check_rows(arms: Sequence[CheckStats], pool: CheckStats | None, row: Any) -> list[list[str]]:
    out = [row(c, f"`{c.runs[0].id}`", block_label(c.runs[0]), pairing(c.pairs)) for c in arms]
    if pool is not None and len(pool.runs) > 1:
        out.append(
            row(
                pool,
                f"**all {pool.check} arms**",
                f"pooled over {len(pool.runs)} blocks",
                pairing(pool.pairs),
            )
        )
    return out


def _aa_row(c: CheckStats, arm: str, block: str, pairs: str) -> list[str]:
    r = c.ratio
    return [
        arm,
        block,
        pairs,
        _rounds(c),
        ratio_text(r, mde=False) if r else "n/a",
        mde_text(r.mde).strip(" ()").removeprefix("MDE ") if r and mde_text(r.mde) else "n/a",
        check_verdict(c),
    ]


def _delay_row(c: CheckStats, arm: str, block: str, pairs: str) -> list[str]:
    r = c.ratio
    return [
        arm,
        block,
        f"{c.inject_ms:g}",
        pairs,
        _rounds(c),
        ratio_text(r) if r else f"n/a ({c.note})",
        detected(r),
        ratio_text(c.path_ratio) if c.path_ratio else "n/a",
        detected(c.path_ratio),
        ms_text(c.duration_diff) if c.duration_diff else "n/a",
        ms_text(c.path_diff) if c.path_diff else "n/a",
    ]


def _aa_section(arms: Sequence[CheckStats], pool: CheckStats | None) -> list[str]:
    judged = [c.ratio for c in arms if c.ratio is not None and math.isfinite(c.ratio.ci_low)]
    alarms = sum(r.excludes_one for r in judged)
    unjudged = f" ({len(arms) - len(judged)} not judged)" if len(judged) < len(arms) else ""
    pooled = f"; pooled over blocks: {check_verdict(pool)}" if pool is not None else ""
    tail = (
        [
            "",
            f"The tail's noise, pooled over every A/A arm's rounds: p95 ratio "
            f"{ratio_text(pool.tail)} (the pooled p95 gate compares the same way; its limit "
            "should sit above this).",
        ]
        if pool is not None and pool.tail is not None
        else []
    )
    return [
        "**A/A (blind)**: median round duration of the A/A arm over its block's SEC0 arm.",
        "",
        *table(
            (
                "A/A arm",
                "block",
                "pairing",
                "rounds (A/A vs SEC0)",
                "median ratio [95% CI]",
                "MDE",
                "verdict",
            ),
            _check_rows(arms, pool, _aa_row),
        ),
        "",
        f"False alarms: {alarms} of {len(judged)} blocks{unjudged}{pooled}.",
        *tail,
    ]


def _delay_section(check: str, arms: Sequence[CheckStats], pool: CheckStats | None) -> list[str]:
    def found(which: str) -> str:
        verdicts = [detected(getattr(c, which)) for c in arms]
        judged = sum(v != "not judged" for v in verdicts)
        unjudged = f" ({len(arms) - judged} not judged)" if judged < len(arms) else ""
        return f"{sum(v == 'yes' for v in verdicts)} of {judged} blocks{unjudged}"

    return [
        f"**Known delay (sighted): {check}**: found when the interval of a ratio lies above 1; "
        "the differences are the arm's median minus the SEC0 arm's, in ms (the path "
        "difference should be close to the injected ms).",
        "",
        *table(
            (
                "delay arm",
                "block",
                "injected ms",
                "pairing",
                "rounds (arm vs SEC0)",
                "round ratio [95% CI] (MDE)",
                "found in the round",
                "path ratio [95% CI] (MDE)",
                "found in the path",
                "median round difference [95% CI]",
                "median path difference [95% CI]",
            ),
            _check_rows(arms, pool, _delay_row),
        ),
        "",
        f"Found in the round's duration in {found('ratio')}; in the path time in "
        f"{found('path_ratio')}.",
    ]


def instrument(a: Analysis) -> list[str]:
    if not a.checks:
        return [
            "No check arms in this run, so nothing here shows that the instrument stays quiet "
            "where there is no effect or finds a known one on this machine. Run with "
            "`--ztfl-checks=aa,delay10ms` (or `checks: [aa, delay10ms]` in the matrix) to add "
            "to every block an A/A arm (SEC0 again: true ratio 1) and a SEC0 arm whose server "
            "waits 10 ms inside every round (a known effect)."
        ]
    out = [
        f"Source: {source(a)}, rows with `cell.check`. Each check arm ran in its block beside "
        "the block's SEC0 arm and is compared with it exactly as a SEC level is (median round "
        "duration, rounds paired within a block run, the run's instance noise, 95% CI, MDE at 80% "
        "power). Blind: an A/A arm is SEC0 again, its true ratio is 1, so an interval that "
        "excludes 1 is a false alarm (about 1 block in 20 by chance). Sighted: a delay arm's "
        "server waits a known time inside every round; it should be found (interval above 1) "
        "and the participants' median path time should move by about that much. "
        f"n = {len(a.checks)} check arms.",
    ]
    pools = {p.check: p for p in a.check_pools}
    by_check: dict[str, list[CheckStats]] = {}
    for c in a.checks:
        by_check.setdefault(c.check, []).append(c)
    if "aa" in by_check:
        out += ["", *_aa_section(by_check.pop("aa"), pools.get("aa"))]
    for check, arms in sorted(by_check.items(), key=lambda kv: kv[1][0].inject_ms):
        out += ["", *_delay_section(check, arms, pools.get(check))]
    return out
