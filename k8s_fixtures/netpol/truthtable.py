"""Truth tables of pod-to-pod reachability: expected (from the evaluator), observed, compared.

Rendered as the upstream e2e suite prints them: rows are sources, columns destinations, ``.``
reachable and ``X`` not. The diagonal (a pod probing its own IP) goes over loopback, whose
treatment upstream leaves to the CNI (kubernetes#95879; the e2e suite ignores it): it is shown
but never counts as a mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from k8s_fixtures.netpol.evaluator import evaluate
from k8s_fixtures.netpol.model import ClusterView, Flow, Protocol


@dataclass
class TruthTable:
    pods: list[str]
    cells: dict[tuple[str, str], bool] = field(default_factory=dict)

    def get(self, src: str, dst: str) -> bool:
        return self.cells[(src, dst)]

    def render(self, title: str = "") -> str:
        width = max(len(p) for p in self.pods)
        head = "-".ljust(width) + " " + " ".join(p.ljust(width) for p in self.pods)
        rows = [title] if title else []
        rows.append(head)
        for s in self.pods:
            marks = ("." if self.cells.get((s, d)) else "X" for d in self.pods)
            rows.append(s.ljust(width) + " " + " ".join(m.ljust(width) for m in marks))
        return "\n".join(rows)

    def to_json(self) -> dict[str, Any]:
        return {"pods": self.pods,
                "matrix": [[self.cells.get((s, d)) for d in self.pods] for s in self.pods]}


@dataclass(frozen=True)
class Mismatch:
    src: str
    dst: str
    expected: bool
    observed: bool

    def __str__(self) -> str:
        def word(b: bool) -> str:
            return "allowed" if b else "denied"

        return f"{self.src} -> {self.dst}: expected {word(self.expected)}, " \
               f"observed {word(self.observed)}"


def expected_table(cluster: ClusterView, pods: Sequence[str], protocol: Protocol, port: int
                   ) -> TruthTable:
    """The evaluator's verdict for every ordered pair of ``pods`` (``ns/name`` keys)."""
    table = TruthTable(list(pods))
    objs = {k: cluster.pod(k) for k in pods}
    for s in pods:
        for d in pods:
            table.cells[(s, d)] = evaluate(cluster, Flow(objs[s], objs[d], protocol, port)).allowed
    return table


def compare(expected: TruthTable, observed: TruthTable, ignore_loopback: bool = True
            ) -> list[Mismatch]:
    out = []
    for s in expected.pods:
        for d in expected.pods:
            if ignore_loopback and s == d:
                continue
            e, o = expected.cells[(s, d)], observed.cells[(s, d)]
            if e != o:
                out.append(Mismatch(s, d, e, o))
    return out


def diff_render(expected: TruthTable, observed: TruthTable) -> str:
    """A table with ``.`` where observed equals expected, ``X`` where not (diagonal ``-``)."""
    bad = {(m.src, m.dst) for m in compare(expected, observed)}
    t = TruthTable(expected.pods, {k: k not in bad for k in expected.cells})
    lines = t.render("comparison (. = agrees, X = mismatch)").splitlines()
    return "\n".join(lines)
