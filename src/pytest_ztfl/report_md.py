"""report.md: run metadata, the measurement design and the instrument's own checks, per-cell
and per-group tables, where a round's time goes, SLO verdicts, the seed study's headline claims
next to this run's values, and the figures. Every table names its source files and n."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import median
from typing import Any

from pytest_ztfl import stats
from pytest_ztfl.report_calc import (
    Analysis,
    CellStats,
    CheckStats,
    censoring_time,
    is_paired,
    load_fractions,
    pairing,
)
from pytest_ztfl.report_claims import claims
from pytest_ztfl.report_fmt import (
    UNRELIABLE,
    counts_text,
    escape,
    mde_text,
    ms_text,
    num,
    q_text,
    ratio_text,
    table,
    tta_text,
)
from pytest_ztfl.report_model import Run

NOT_RECORDED = "not recorded"
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


def _resources_text(res: dict[str, Any]) -> str:
    """``workload.resources`` in one line: ``server requests cpu=500m memory=512Mi, limits
    cpu=1; client limits memory=1Gi``."""
    roles = []
    for role, kinds in sorted(res.items()):
        parts = [f"{kind} " + " ".join(f"{n}={v}" for n, v in sorted(q.items()))
                 for kind, q in sorted(kinds.items(), reverse=True)]  # requests before limits
        roles.append(f"{role} {', '.join(parts)}")
    return "; ".join(roles)


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
        out.append(("workload", ", ".join(f"{k}={v}" for k, v in sorted(wl.items())
                                          if k != "resources")))
        if isinstance(wl.get("resources"), dict):
            out.append(("resources", _resources_text(wl["resources"])))
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
        label = "git commit (pytest-ztfl)" if key == "git_commit" else key.replace("_", " ")
        rows.append((label, _distinct(values)))
    projects = [r.environment.get("project") for r in runs]
    if any(isinstance(p, dict) for p in projects):
        rows.append(("project (rootdir @ git commit)", _distinct(
            f"{p.get('rootdir')} @ {p.get('git_commit')}" if isinstance(p, dict) else None
            for p in projects)))  # fmt: skip
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
        "block run, else unpaired; the two-level bootstrap and bootstrap seed of the SLO gate "
        "(pytest_ztfl.compare), so the p50 ratio is the gate's. MDE: the smallest change the "
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
        "against the block's SEC0 arm as in *Cells* (paired rounds, two-level bootstrap). "
        f"{NOT_RECORDED}: the row predates these fields or the backend gives no cgroups; "
        f"delay-line CPU -: no delay line (NET0 or kernel netem). n = {len(a.cells)} cells.",
        "",
        *table(head, (_parts_row(c) for c in a.cells)),
    ]


def _check_verdict(c: CheckStats) -> str:
    r = c.ratio
    if r is None:
        return f"not judged ({c.note})"
    if not (math.isfinite(r.ci_low) and math.isfinite(r.ci_high)):
        return "not judged (no interval)"
    return "FALSE ALARM (interval excludes 1)" if r.excludes_one else "within noise"


def _detected(r: stats.RatioCI | None) -> str:
    if r is None or not math.isfinite(r.ci_low):
        return "not judged"
    if r.ci_low > 1.0:
        return "yes"
    return "no (interval below 1)" if r.ci_high < 1.0 else "no"


def _block(run: Run) -> str:
    b = run.design.get("block")
    return str(b) if isinstance(b, str) else f"{run.net}, {run.data}, seed {run.seed}"


def _rounds(c: CheckStats) -> str:
    r = c.ratio
    if r is None:
        return "-"
    return f"{r.n_treatment} vs {r.n_baseline}"


def _check_rows(arms: Sequence[CheckStats], pool: CheckStats | None, row: Any) -> list[list[str]]:
    out = [row(c, f"`{c.runs[0].id}`", _block(c.runs[0]), pairing(c.pairs)) for c in arms]
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
        _check_verdict(c),
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
        _detected(r),
        ratio_text(c.path_ratio) if c.path_ratio else "n/a",
        _detected(c.path_ratio),
        ms_text(c.duration_diff) if c.duration_diff else "n/a",
        ms_text(c.path_diff) if c.path_diff else "n/a",
    ]


def _aa_section(arms: Sequence[CheckStats], pool: CheckStats | None) -> list[str]:
    judged = [c.ratio for c in arms if c.ratio is not None and math.isfinite(c.ratio.ci_low)]
    alarms = sum(r.excludes_one for r in judged)
    unjudged = f" ({len(arms) - len(judged)} not judged)" if len(judged) < len(arms) else ""
    pooled = f"; pooled over blocks: {_check_verdict(pool)}" if pool is not None else ""
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
        verdicts = [_detected(getattr(c, which)) for c in arms]
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
        "duration, rounds paired within a block run, two-level bootstrap, 95% CI, MDE at 80% "
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
        rows.append(("mode", _distinct(r.design.get("mode") for r in runs)))
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
            why = _distinct(r.design.get("why") for r in recorded if r.design.get("mode") == "cell")
            rows.append(
                (
                    "cell",
                    "a block's arms run one after another in a random order"
                    + (f" ({why})" if why != NOT_RECORDED else ""),
                )
            )
        rows.append(("order seed", _distinct(r.design.get("order_seed") for r in runs)))
        blocks: dict[str, list[Run]] = {}
        for r in recorded:
            blocks.setdefault(_block(r), []).append(r)
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
                f"reliable from {stats.min_n_for_quantile_ci(0.95)} rounds per arm)",
            )
        )
    env = [r.environment for r in runs]
    mem = [
        f"{v / 2**30:.1f} GiB" if isinstance(v := e.get("memory_bytes"), int) else None for e in env
    ]
    rows.append(
        (
            "machine",
            f"{_distinct(e.get('cpus') for e in env)} CPUs, "
            f"{_distinct(e.get('cpu_model') for e in env)}, {_distinct(mem)} memory",
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
        "run, and its interval resamples blocks, then rounds (docs/statistics.md).",
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
        "inside, this run is consistent with it (which does not confirm it). Ratios pool "
        "every block (data split and seed) that holds both arms, rounds paired within a block "
        "run, intervals over blocks and rounds (bootstrap seed 0), with the MDE; durations "
        "trace to `events/<id>.jsonl`. The tail is p95, not the seed study's p99: an honest "
        f"95% interval for a p99 needs {stats.min_n_for_quantile_ci(0.99)} rounds per arm "
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
        ("Measurement design", design(a)),
        ("Instrument checks", instrument(a)),
        ("Cells", cells(a)),
        ("Where a round's time goes", time_parts(a)),
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
            ]
            or ["No figures: every row read is a check arm (figures show the cells proper)."],
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
        f"- Quantiles p50/p95/p99 of one sample: numpy's linear quantile; 95% CIs from scipy's "
        f"bootstrap (percentile, {stats.DEFAULT_N_RESAMPLES} resamples, seeded: reruns give the "
        "same numbers). A pooled sample concatenates its cells in cell-id order, rounds in "
        "round order (bootstrap seed: the cell's for a cell and a one-cell group, 0 otherwise).",
        "- Comparisons of two arms (a SEC level vs its block's SEC0 arm, a check arm vs it): "
        "pytest_ztfl.compare, as the SLO gates use it, one pair of arms per block: for the "
        "median each block's ratio (or difference) of medians, averaged over blocks (log "
        "scale); for the p95 the quantile of all rounds of all blocks. Interval: two-level "
        "percentile bootstrap (pytest_ztfl.paired: blocks drawn with replacement, then rounds "
        "within each, the same round indices for both arms when they ran in one block run; "
        f"{stats.DEFAULT_N_RESAMPLES} resamples; seed: the cell's for one block, 0 pooled). "
        "Recomputing with pytest_ztfl.compare over the pairs in treatment-id order reproduces "
        "every interval. MDE: the smallest true change detected with 80% power at 95%, from "
        "the bootstrap spread. The interaction contrast stays an independent bootstrap of four "
        "pooled samples (unpaired).",
        f"- {UNRELIABLE} marks a CI that cannot be trusted for its n (e.g. a p95 from fewer than "
        f"{stats.min_n_for_quantile_ci(0.95)} rounds, a p99 from fewer than "
        f"{stats.min_n_for_quantile_ci(0.99)}: the bootstrap cannot reach beyond the sample's "
        "extremes) or that is missing.",
        "- TTA: Kaplan-Meier restricted mean over seeds with runs that never reached the target "
        "censored at their observed span (time held between interleaved rounds left out); "
        "with censoring it is a lower bound.",
        "- Failure rate: failed plus never-run rounds over planned rounds, Clopper-Pearson CI.",
        "- Details: docs/statistics.md.",
    ]
