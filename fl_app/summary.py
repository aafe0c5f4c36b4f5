"""Per-run metrics computed from a parsed event log: the one place round metrics are derived.

Used by the loopback launcher's summary and by the harness (pytest_ztfl), so a number in a
report is always traceable to events of one documented schema.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from fl_app.events import ParsedLog


@dataclass(frozen=True)
class RoundRecord:
    round: int
    ok: bool
    duration: float
    participants: int
    selected: int
    failures: dict[str, int]
    bytes_down: int
    bytes_up: int
    max_train_seconds: float
    aggregation_seconds: float
    injected_delay_seconds: float = 0.0  # the known effect of --inject-delay-ms, as slept
    t_start: float | None = None  # server clock at round_start (the order rounds ran in)
    path_seconds: float | None = None  # see path_time()

    @property
    def compute_floor(self) -> float:
        """Slowest participant's local training plus the server's aggregation."""
        return self.max_train_seconds + self.aggregation_seconds

    @property
    def comm_seconds(self) -> float:
        """The rest of the round: communication and the controls on its path (task delivery,
        decoding, encoding, uploads, validation; an injected delay too), what a control
        changes directly; the compute floor is what it can only change by taking CPU."""
        return self.duration - self.compute_floor


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    rounds_planned: int
    rounds: list[RoundRecord]
    ok: bool
    final_accuracy: float | None
    accuracy_by_round: dict[int, float]
    tta_seconds: float | None  # None: the target was not reached (censored)
    target: float
    failures_by_class: dict[str, int] = field(default_factory=dict)
    identities: list[str] = field(default_factory=list)
    finished: bool = False
    held_seconds: float = 0.0  # waits for the harness's round releases after round 1 began
    data_source: str | None = None  # the MNIST the server loaded (fl_app.data: "full", ...)

    @property
    def compute_floors(self) -> list[float]:
        return [r.compute_floor for r in self.rounds]

    @property
    def durations(self) -> list[float]:
        return [r.duration for r in self.rounds]

    @property
    def failed_rounds(self) -> int:
        return sum(not r.ok for r in self.rounds)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["durations"] = self.durations
        for rd, r in zip(d["rounds"], self.rounds, strict=True):
            rd["compute_seconds"] = round(r.compute_floor, 6)
            rd["comm_seconds"] = round(r.comm_seconds, 6)
            if r.path_seconds is not None:
                rd["path_seconds"] = round(r.path_seconds, 6)
        return d


def summarize(log: ParsedLog) -> RunSummary:
    starts = log.of("run_start")
    conf: dict[str, Any] = starts[0]["config"] if starts else {}
    selected = {e["round"]: len(e["selected"]) for e in log.of("round_start")}
    started = {e["round"]: float(e["t"]) for e in log.of("round_start")}
    updates: dict[int, list[dict[str, Any]]] = {}
    for e in log.of("client_update"):
        updates.setdefault(e["round"], []).append(e)
    rounds = []
    for e in log.of("round_end"):
        ups = updates.get(e["round"], [])
        rounds.append(
            RoundRecord(
                round=e["round"],
                ok=bool(e["ok"]),
                duration=float(e["duration"]),
                participants=len(e["participants"]),
                selected=selected.get(e["round"], 0),
                failures=dict(Counter(f["class"] for f in e["failed"])),
                bytes_down=sum(u["bytes_down"] for u in ups),
                bytes_up=sum(u["bytes_up"] for u in ups),
                max_train_seconds=max((u["train_seconds"] for u in ups), default=0.0),
                aggregation_seconds=float(e["aggregation_seconds"]),
                injected_delay_seconds=float(e.get("injected_delay_seconds", 0.0)),
                t_start=started.get(e["round"]),
                path_seconds=path_time(started.get(e["round"]), ups),
            )
        )
    reached = log.of("target_reached")
    ends = log.of("run_end")
    evals = {e["round"]: float(e["accuracy"]) for e in log.of("eval")}
    source = starts[0].get("data_source") if starts else None
    return RunSummary(
        run_id=starts[0]["run_id"] if starts else "",
        rounds_planned=int(conf.get("rounds", len(rounds))),
        rounds=rounds,
        ok=bool(ends and ends[-1]["ok"]) and len(rounds) == int(conf.get("rounds", -1)),
        final_accuracy=evals[max(evals)] if evals else None,
        accuracy_by_round=evals,
        tta_seconds=float(reached[0]["tta_seconds"]) if reached else None,
        target=float(conf.get("target_accuracy", 0.95)),
        failures_by_class=dict(Counter(e["class"] for e in log.of("failure"))),
        identities=sorted({u["identity"] for u in log.of("client_update") if u["identity"]}),
        finished=bool(ends),
        held_seconds=held_seconds(log),
        data_source=source if isinstance(source, str) else None,
    )


def path_time(t_start: float | None, updates: list[dict[str, Any]]) -> float | None:
    """Mean over a round's participants of the time their exchange spent outside their own
    training: from the round's start to the server holding the update, minus the client's
    ``train_seconds`` (task delivery, decoding, encoding, the upload, the controls on the
    path, waits for CPU). A control acts on every participant's path, so the mean over five
    is a steadier measure of its cost than ``comm_seconds``, which pairs one client's arrival
    with another's training and so carries the spread of training times (on 2 cores its
    round-to-round SD was 2-3x larger)."""
    if t_start is None or not updates:
        return None
    return sum(float(u["t"]) - t_start - float(u["train_seconds"]) for u in updates) / len(updates)


def held_seconds(log: ParsedLog) -> float:
    """Time the server spent held between rounds (``round_hold`` of round r >= 2 to its
    ``round_start``): with interleaved runs, another run's rounds went on meanwhile, so a span
    of this run's clock (time to accuracy, a censoring time) must leave it out."""
    holds = {e["round"]: float(e["t"]) for e in log.of("round_hold")}
    starts = {e["round"]: float(e["t"]) for e in log.of("round_start")}
    return sum(starts[r] - t for r, t in holds.items() if r >= 2 and r in starts)


def render(s: RunSummary) -> str:
    """A one-screen text summary."""
    d = s.durations
    lines = [
        f"run {s.run_id}: {'OK' if s.ok else 'FAILED'}  "
        f"{len(s.rounds)}/{s.rounds_planned} rounds, {s.failed_rounds} failed",
    ]
    if d:
        floors = [r.compute_floor for r in s.rounds]
        lines.append(
            f"round duration  median {median(d):.3f} s  min {min(d):.3f}  max {max(d):.3f}  "
            f"(compute floor median {median(floors):.3f} s)"
        )
        lines.append(
            f"bytes per round median {median(r.bytes_down + r.bytes_up for r in s.rounds):,.0f}"
        )
    acc = f"{s.final_accuracy:.4f}" if s.final_accuracy is not None else "n/a"
    tta = f"{s.tta_seconds:.2f} s" if s.tta_seconds is not None else "not reached"
    lines.append(f"final accuracy  {acc}   time to {s.target:.0%}: {tta}")
    if s.failures_by_class:
        lines.append(
            "failures        "
            + ", ".join(f"{k}={v}" for k, v in sorted(s.failures_by_class.items()))
        )
    return "\n".join(lines)
