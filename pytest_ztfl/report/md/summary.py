"""report.md's *Summary*, what a reader meets first: the answers (what each SEC level costs
over SEC0 at each NET and data split, failures, time to target accuracy), the instrument's own
checks (proofs, NET calibration, event logs, and the A/A and known-delay arms where they ran)
and the data the runs trained on. Every number is one of the tables' below, formatted alike."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pytest_ztfl.report.calc import Analysis, CheckStats, GroupStats, failure_rate
from pytest_ztfl.report.fmt import ci_text, counts_text, ms_text, ratio_text, table, tta_text
from pytest_ztfl.report.md.common import calibrations, check_verdict, detected
from pytest_ztfl.report.model import Run
from pytest_ztfl.sec import Sec

DATA_SOURCES = {
    "full": "full MNIST (its 60,000 training and 10,000 test images)",
    "offline-test-split": (
        "not full MNIST but its offline test split: the 10,000 test images, split by the "
        "project into 8,000 for training and 2,000 for testing (`fl_app/data.py`)"
    ),
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def overhead_text(g: GroupStats | None) -> str:
    """A group's median ratio to SEC0 as *Cell groups* prints it, and what it says."""
    if g is None:
        return "not measured"
    if not g.ratios:
        return f"n/a ({g.ratio_note})"
    r = g.ratios[0]
    if not (math.isfinite(r.ci_low) and math.isfinite(r.ci_high)):
        word = "no interval"
    elif r.ci_low > 1.0:
        word = "slower"
    elif r.ci_high < 1.0:
        word = "faster"
    else:
        word = "no change resolved"
    return f"{ratio_text(r)}: {word}"


def _overhead(a: Analysis) -> list[str]:
    secs = [s for s in a.secs if s.split("-", 1)[0] != Sec.SEC0]
    if not secs:
        return ["**What the controls cost**: only SEC0 was measured, so nothing to compare."]
    rows = [
        [net, data, *(overhead_text(a.groups.get((sec, net, data))) for sec in secs)]
        for net in a.nets
        for data in a.datas
    ]
    return [
        "**What the controls cost**: median round duration of each SEC level over its block's "
        "SEC0 arm [95% CI] (MDE: the smallest change it could see), rounds paired within a "
        "block, averaged over seeds: the *p50 vs SEC0* column of *Cell groups*. *no change "
        "resolved*: the interval holds 1.",
        "",
        *table(("NET", "data", *secs), rows),
    ]


def _tta_text(g: GroupStats | None) -> str:
    return "not measured" if g is None else tta_text(g.tta)


def _tta(a: Analysis) -> list[str]:
    if all(g.tta is None for g in a.groups.values()):
        why = "; ".join(sorted({g.tta_note for g in a.groups.values() if g.tta_note}))
        return [f"**Time to target accuracy**: not estimable ({why or 'no runs'})."]
    targets = {g.target for g in a.groups.values() if g.target is not None}
    target = f"{targets.pop():.0%}" if len(targets) == 1 else "target"
    rows = [
        [net, data, *(_tta_text(a.groups.get((sec, net, data))) for sec in a.secs)]
        for net in a.nets
        for data in a.datas
    ]
    return [
        f"**Time to {target} test accuracy**, s [95% CI]: Kaplan-Meier restricted mean over "
        "seeds, the *mean TTA* column of *Cell groups*.",
        "",
        *table(("NET", "data", *a.secs), rows),
    ]


def _failures(runs: list[Run]) -> str:
    failed = sum(r.failed_rounds for r in runs)
    total = sum(r.rounds_denominator for r in runs)
    rate = failure_rate(failed, total)
    text = f"**Failures**: {failed} of {total} planned rounds failed"
    if total:
        text += (f" ({100 * rate.estimate:.3g}% "
                 f"{ci_text(100 * rate.ci_low, 100 * rate.ci_high, '{:.3g}%')}, Clopper-Pearson)")
    where = [f"`{r.id}` ({r.failed_rounds})" for r in runs if r.failed_rounds]
    if where:
        text += f", in {', '.join(where)}"
    ok = sum(r.success for r in runs)
    text += f"; {ok} of {len(runs)} cells successful"
    bad = [f"`{r.id}` ({r.success_reason})" for r in runs if not r.success]
    if bad:
        text += f", not {', '.join(bad)}"
    events: Counter[str] = Counter()
    for r in runs:
        events.update(r.failures_by_class)
    shown = counts_text(dict(events))
    return text + ("; no failure event." if shown == "none" else f"; failure events {shown}.")


def _proofs(rows: tuple[Run, ...]) -> str:
    with_proofs = [r for r in rows if r.proofs]
    if not with_proofs:
        return "**Proofs of enforcement**: none recorded in these rows."
    passed = sum(r.proofs_passed for r in with_proofs)
    total = sum(len(r.proofs) for r in with_proofs)
    text = (f"**Proofs of enforcement**: {passed} of {total} passed in "
            f"{_plural(len(with_proofs), 'row')}")
    failed = [f"`{r.id}`: {', '.join(n for n, ok in r.proofs if not ok)}"
              for r in with_proofs if r.proofs_passed < len(r.proofs)]
    if failed:
        text += f"; failed: {'; '.join(failed)} (those rows enter no comparison)"
    none = len(rows) - len(with_proofs)
    return text + (f"; {_plural(none, 'row')} without proofs recorded." if none else ".")


def _events(a: Analysis) -> str:
    checks = a.loaded.events
    off = [f"`{rid}` ({c.status})" for rid, c in checks.items() if c.status != "ok"]
    text = (f"**Event logs**: {len(checks) - len(off)} of {len(checks)} rows match the event "
            "log they came from (rounds, durations, time to accuracy)")
    return text + (f"; not {', '.join(off)}." if off else ".")


def _pool(a: Analysis, check: str) -> CheckStats | None:
    return next((p for p in a.check_pools if p.check == check), None)


def _instrument(a: Analysis) -> list[str]:
    if not a.checks:
        mdes = [g.ratios[0].mde for g in a.groups.values() if g.ratios
                and math.isfinite(g.ratios[0].mde)]
        low, high = (f"{min(mdes):.1%}", f"{max(mdes):.1%}") if mdes else ("", "")
        span = low if low == high else f"{low} to {high}"
        seen = f"; the comparisons above could see changes of {span} (their MDEs)" if mdes else ""
        return [f"**A/A and known delay**: not measured (no check arms: "
                f"`--ztfl-checks=aa,delay10ms` adds them){seen}."]
    out = []
    arms = [c for c in a.checks if c.check == "aa"]
    if arms:
        pool = _pool(a, "aa")
        judged = [c for c in arms if c.ratio is not None and math.isfinite(c.ratio.ci_low)]
        alarms = sum(c.ratio is not None and c.ratio.excludes_one for c in judged)
        text = f"**A/A** (SEC0 against itself): {alarms} false alarm(s) in {len(judged)} blocks"
        if pool is not None and pool.ratio is not None:
            text += f"; pooled {ratio_text(pool.ratio)}: {check_verdict(pool)}"
        out.append(text + ".")
    for check in sorted({c.check for c in a.checks if c.check != "aa"}):
        arms = [c for c in a.checks if c.check == check]
        found = sum(detected(c.ratio) == "yes" for c in arms)
        path = sum(detected(c.path_ratio) == "yes" for c in arms)
        text = (f"**Known delay {check.removeprefix('delay')}**: found in the round in {found} "
                f"of {len(arms)} blocks, in the path time in {path} of {len(arms)}")
        pool = _pool(a, check)
        if pool is not None and pool.path_diff is not None:
            text += f"; median path difference {ms_text(pool.path_diff)}"
        out.append(text + ".")
    return out


def _data(rows: tuple[Run, ...]) -> str:
    counts = Counter(r.data_source for r in rows)
    if list(counts) == [None]:
        return ("**Data**: not recorded (neither the rows nor their event logs name the data "
                "source).")

    def plain(source: str | None) -> str:
        if source is None:
            return "not recorded"
        return DATA_SOURCES.get(source, f"`{source}` (as recorded)")

    if len(counts) == 1:
        return f"**Data**: {plain(next(iter(counts)))}, in all {_plural(len(rows), 'row')}."
    return "**Data**: " + "; ".join(
        f"{plain(s)} in {_plural(n, 'row')}" for s, n in counts.most_common()
    ) + "."


def _verdicts(runs: list[Run]) -> list[str]:
    verdicts = Counter(str(v.get("verdict", "?")).upper() for r in runs for v in r.slo)
    if not verdicts:
        return []
    return ["**SLO verdicts** stored in the rows: "
            + ", ".join(f"{k} {n}" for k, n in verdicts.most_common()) + "."]


def _attempts(rows: Sequence[Run]) -> str:
    """Attempts against completions, as the seed study's Tables I and II count them."""
    total = sum(len(r.attempts) for r in rows)
    again = [r for r in rows if len(r.attempts) > 1]
    text = f"**Attempts**: {total} for {len(rows)} rows"
    if not again:
        return text + " (none measured again: `--ztfl-retries`)."
    shown = ", ".join(
        f"`{r.id}` {len(r.attempts)} ({r.attempts[0][1]})" for r in again
    )
    return text + f"; measured again for a harness reason: {shown} (`attempts/`)."


def summary(a: Analysis) -> list[str]:
    if not a.cells:
        return ["Only check arms in these rows: no answer to summarise (see *Instrument "
                "checks*)."]
    runs = [c.run for c in a.cells]
    rows = a.loaded.runs
    bullets = [
        _failures(runs),
        _attempts(rows),
        *_verdicts(runs),
        _proofs(rows),
        f"**NET calibration**: {calibrations(rows)}.",
        _events(a),
        *_instrument(a),
        _data(rows),
    ]
    return [
        *_overhead(a),
        "",
        *_tta(a),
        "",
        *(f"- {b}" for b in bullets),
        "",
        "The sections below give each number's source and n; the figures follow this summary.",
    ]
