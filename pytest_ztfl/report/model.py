"""The report's typed view of one ``ztfl.run/1`` result row, validated on the way in.

A row that lacks what every table needs (cell, success, rounds with durations) is rejected with
a one-line reason naming the field; optional parts (accuracy, TTA, proofs, overlays, SLO
verdicts) default to "absent" when missing or malformed, so one odd field never costs a cell.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_ztfl.analysis.compare import ArmRounds, Noise, NoiseArm
from pytest_ztfl.rows import SCHEMA, calibration_of
from pytest_ztfl.sec import SEC_LEVELS, Sec

SEC_ORDER = SEC_LEVELS


class RowError(ValueError):
    """A row cannot be reported; the message names the offending field."""


@dataclass(frozen=True)
class RoundRow:
    round: int
    ok: bool
    duration: float
    selected: int
    failures: dict[str, int]
    # the round's parts and what the harness saw of it (None in older rows / other backends)
    compute_seconds: float | None = None
    comm_seconds: float | None = None
    path_seconds: float | None = None
    cpu_seconds: float | None = None
    cpu_proxy_seconds: float | None = None
    cpu_delayline_seconds: float | None = None
    cpu_other_seconds: float | None = None  # the machine's CPU that was not this arm's
    position: int | None = None  # in its round's order within the block

    def value(self, metric: str) -> float | None:
        v = getattr(self, metric)
        return None if v is None else float(v)


@dataclass(frozen=True)
class Run:
    """One cell's result, as the report uses it."""

    id: str
    sec: str
    net: str
    data: str
    seed: int
    mtls: str | None
    fault: str | None  # the cell's fault scenario, None without one
    success: bool
    success_reason: str
    rounds_planned: int
    rounds: tuple[RoundRow, ...]
    accuracy_by_round: dict[int, float]
    final_accuracy: float | None
    tta_seconds: float | None
    target: float | None
    failures_by_class: dict[str, int]
    proofs: tuple[tuple[str, bool], ...]
    backend: str | None
    backend_note: str | None
    parallel: int | None  # cells measured at once (--ztfl-parallel); None in older rows
    net_mechanism: str | None
    netpol_action: str | None
    mtls_mode: str | None
    environment: dict[str, Any]
    slo: tuple[dict[str, Any], ...]
    started_wall: float | None
    finished_wall: float | None
    source: str  # the file (and line) this row was read from, relative to the results dir
    events_file: str | None
    ignored: tuple[str, ...] = field(default=())  # optional fields dropped as malformed
    emulation: dict[str, Any] = field(default_factory=dict)  # overlays.net.emulation
    calibration: dict[str, Any] = field(default_factory=dict)  # overlays.net.calibration
    check: str | None = None  # an instrument check arm ("aa", "delay<MS>ms"); None: a cell
    error: str | None = None  # the harness's error (then the row enters no comparison)
    design: dict[str, Any] = field(default_factory=dict)  # block, mode, orders (design.py)
    resources: dict[str, Any] = field(default_factory=dict)  # pods' CPU and peak memory
    # (attempt, its error) of every attempt of the cell, the one this row holds last
    # (pytest_ztfl.attempts); rows from before attempts were recorded: one, this row's
    attempts: tuple[tuple[int, str | None], ...] = ()
    # the MNIST the run trained on ("full", "offline-test-split"): metrics.data_source, else
    # (rows stored before it) the event log's run_start, filled in by report.load
    data_source: str | None = None
    # the row's heterogeneity record (pytest_ztfl.hetero_row); empty: its clients were alike
    heterogeneity: dict[str, Any] = field(default_factory=dict)

    @property
    def sound(self) -> bool:
        """No harness error and every proof passed: its rounds may enter a comparison
        (pytest_ztfl.analysis.compare.usable, which also wants completed rounds)."""
        return self.error is None and all(ok for _, ok in self.proofs)

    @property
    def block_run(self) -> str | None:
        run = self.design.get("block_run")
        return run if isinstance(run, str) else None

    @property
    def phases(self) -> dict[str, float]:
        """Its block run's wall seconds per phase (``design.phases``); finite numbers only."""
        laps = self.design.get("phases")
        if not isinstance(laps, dict):
            return {}
        return {str(k): f for k, v in laps.items() if (f := _num(v)) is not None}

    def arm(self, metric: str = "duration") -> ArmRounds:
        """This run's completed rounds of ``metric`` for pytest_ztfl.analysis.compare."""
        vals = {r.round: v for r in self.rounds if r.ok and (v := r.value(metric)) is not None}
        return ArmRounds(self.id, self.block_run, vals)

    @property
    def durations(self) -> list[float]:
        """Durations of completed rounds (ok=true): the sample every statistic uses."""
        return [r.duration for r in self.rounds if r.ok]

    @property
    def failed_rounds(self) -> int:
        """Rounds that failed plus planned rounds that never ran (as the SLO gate counts)."""
        return sum(not r.ok for r in self.rounds) + max(self.rounds_planned - len(self.rounds), 0)

    @property
    def rounds_denominator(self) -> int:
        return max(self.rounds_planned, len(self.rounds))

    @property
    def proofs_passed(self) -> int:
        return sum(ok for _, ok in self.proofs)


def _attempts(row: dict[str, Any]) -> tuple[tuple[int, str | None], ...]:
    raw = row.get("attempts")
    if not isinstance(raw, list) or not raw:
        return ((1, _str(row.get("error"))),)
    return tuple(
        (int(a["attempt"]), _str(a.get("error")))
        for a in raw
        if isinstance(a, dict) and isinstance(a.get("attempt"), int)
    )


def noise_of(runs: Sequence[Run]) -> Noise:
    """The runs' instance-level noise (pytest_ztfl.analysis.compare.Noise): every sound run
    without a fault, against its own block run's SEC0 arm."""

    def arm(r: Run) -> NoiseArm:
        base = r.sec == Sec.SEC0 and r.check is None
        name = None if base else f"{r.sec}-{r.mtls}-{r.net}-{r.check}"
        return NoiseArm(name, r.block_run, r.arm)

    return Noise.of_arms(arm(r) for r in runs if r.sound and r.fault is None)


def natural_key(text: str) -> tuple[Any, ...]:
    """``NET2`` before ``NET10``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def calibration_order(ref: object) -> tuple[Any, ...]:
    """A calibration file's place: by profile, then sitting (``calibration/NET2.json`` the
    first, ``NET2.2.json`` the second, ... ``NET2.10.json``; pytest_ztfl.calibration)."""
    name = str(ref).rsplit("/", 1)[-1]
    m = re.fullmatch(r"(.+?)(?:\.(\d+))?\.json", name)
    if m is None:
        return (natural_key(name), 0)
    return (natural_key(m[1]), int(m[2] or 1))


def sec_sort_key(label: str) -> tuple[int, str]:
    base = label.split("-", 1)[0]
    return (SEC_ORDER.index(base) if base in SEC_ORDER else len(SEC_ORDER), label)


def run_sort_key(run: Run) -> tuple[Any, ...]:
    return (sec_sort_key(run.sec), run.mtls or "", natural_key(run.net), run.data, run.seed, run.id)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _dig(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _counts(v: Any) -> dict[str, int] | None:
    if not isinstance(v, dict):
        return None
    out = {str(k): n for k, n in v.items() if _int(n) is not None and n >= 0}
    return out if len(out) == len(v) else None


def _round(i: int, raw: Any) -> RoundRow:
    where = f"metrics.rounds[{i}]"
    if not isinstance(raw, dict):
        raise RowError(f"{where} is not an object")
    ok, duration = raw.get("ok"), _num(raw.get("duration"))
    if not isinstance(ok, bool):
        raise RowError(f"{where}.ok is missing or not true/false")
    if duration is None or duration < 0:
        raise RowError(f"{where}.duration is missing or not a finite number >= 0")
    number = _int(raw.get("round"))
    failures = _counts(raw.get("failures", {}))
    return RoundRow(
        round=number if number is not None else i + 1,
        ok=ok,
        duration=duration,
        selected=_int(raw.get("selected")) or 0,
        failures=failures or {},
        compute_seconds=_num(raw.get("compute_seconds")),
        comm_seconds=_num(raw.get("comm_seconds")),
        path_seconds=_num(raw.get("path_seconds")),
        cpu_seconds=_num(raw.get("cpu_seconds")),
        cpu_proxy_seconds=_num(raw.get("cpu_proxy_seconds")),
        cpu_delayline_seconds=_num(raw.get("cpu_delayline_seconds")),
        cpu_other_seconds=_num(raw.get("cpu_other_seconds")),
        position=_int(raw.get("position")),
    )


def from_row(row: Any, source: str) -> Run:
    """Validate ``row`` and return its :class:`Run`; raise :class:`RowError` if unusable."""
    if not isinstance(row, dict):
        raise RowError("not a JSON object")
    if row.get("schema") != SCHEMA:
        raise RowError(f"schema {row.get('schema')!r}, this report reads {SCHEMA!r}")
    cell = row.get("cell")
    if not isinstance(cell, dict):
        raise RowError("field 'cell' is missing")
    for key, kind in (("id", str), ("sec", str), ("net", str), ("data", str), ("seed", int)):
        if not isinstance(cell.get(key), kind) or isinstance(cell.get(key), bool):
            raise RowError(f"field 'cell.{key}' is missing or not a {kind.__name__}")
    if not isinstance(row.get("success"), bool):
        raise RowError("field 'success' is missing or not true/false")
    metrics = row.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("rounds"), list):
        raise RowError("field 'metrics.rounds' is missing")
    rounds = tuple(_round(i, r) for i, r in enumerate(metrics["rounds"]))
    planned = _int(metrics.get("rounds_planned"))
    if planned is None or planned < 0:
        raise RowError("field 'metrics.rounds_planned' is missing or not an integer >= 0")

    ignored: list[str] = []

    def optional(name: str, value: Any, parsed: Any) -> Any:
        if value is not None and parsed is None:
            ignored.append(name)
        return parsed

    raw_acc = metrics.get("accuracy_by_round")
    acc: dict[int, float] = {}
    if isinstance(raw_acc, dict):
        for k, v in raw_acc.items():
            a = _num(v)
            if str(k).isdigit() and a is not None:
                acc[int(k)] = a
        if len(acc) != len(raw_acc):
            ignored.append("metrics.accuracy_by_round (some entries)")
    elif raw_acc is not None:
        ignored.append("metrics.accuracy_by_round")
    proofs: list[tuple[str, bool]] = []
    raw_proofs = row.get("proofs")
    if isinstance(raw_proofs, list):
        for p in raw_proofs:
            if isinstance(p, dict) and isinstance(p.get("passed"), bool):
                proofs.append((str(p.get("name", "?")), p["passed"]))
            else:
                ignored.append("proofs (an entry)")
    slo = row.get("slo")
    tta = metrics.get("tta_seconds")
    mtls = cell.get("mtls")
    env = row.get("environment")
    return Run(
        id=cell["id"],
        sec=cell["sec"],
        net=cell["net"],
        data=cell["data"],
        seed=cell["seed"],
        mtls=mtls if isinstance(mtls, str) else None,
        fault=_str(cell.get("fault")),
        success=row["success"],
        success_reason=str(row.get("success_reason") or ""),
        rounds_planned=planned,
        rounds=rounds,
        accuracy_by_round=acc,
        final_accuracy=optional(
            "metrics.final_accuracy",
            metrics.get("final_accuracy"),
            _num(metrics.get("final_accuracy")),
        ),
        tta_seconds=optional(
            "metrics.tta_seconds", tta, None if tta is None or (_num(tta) or 0) < 0 else _num(tta)
        ),
        target=optional("metrics.target", metrics.get("target"), _num(metrics.get("target"))),
        failures_by_class=optional(
            "failures_by_class", row.get("failures_by_class"), _counts(row.get("failures_by_class"))
        )
        or {},
        proofs=tuple(proofs),
        backend=_str(_dig(row, "backend", "name")),
        backend_note=_str(_dig(row, "backend", "note")),
        parallel=_int(_dig(row, "backend", "parallel")),
        net_mechanism=_str(_dig(row, "overlays", "net", "mechanism")),
        netpol_action=_str(_dig(row, "overlays", "netpol", "action")),
        mtls_mode=_str(_dig(row, "overlays", "mtls", "mode")),
        environment=env if isinstance(env, dict) else {},
        attempts=_attempts(row),
        slo=tuple(v for v in slo if isinstance(v, dict)) if isinstance(slo, list) else (),
        started_wall=_num(row.get("started_wall")),
        finished_wall=_num(row.get("finished_wall")),
        source=source,
        events_file=_str(row.get("events_file")),
        ignored=tuple(ignored),
        emulation=emu if isinstance(emu := _dig(row, "overlays", "net", "emulation"), dict) else {},
        calibration=calibration_of(row),
        check=_str(cell.get("check")),
        error=_str(row.get("error")),
        design=d if isinstance(d := row.get("design"), dict) else {},
        resources=res if isinstance(res := row.get("resources"), dict) else {},
        data_source=_str(metrics.get("data_source")),
        heterogeneity=h if isinstance(h := row.get("heterogeneity"), dict) else {},
    )
