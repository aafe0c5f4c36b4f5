"""The matrix's model: the FL run every cell performs (:class:`Workload`), a cell with its
stable id and its SEC0 baseline (:class:`Cell`), and the matrix that crosses them
(:class:`Matrix`)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from fl_app.model_sizes import MODELS
from k8s_fixtures.netem.profiles import NULL_PROFILE
from pytest_ztfl.matrix.errors import MatrixError
from pytest_ztfl.matrix.hetero import ClientDraw, Heterogeneity
from pytest_ztfl.matrix.resources import Resources
from pytest_ztfl.sec import Sec

MTLS_MODES = ("sidecar", "native", "mesh")
# The instrument's own checks, arms added to every block beside its SEC0 arm: ``aa`` (the SEC0
# arm again: an A/A comparison, whose true ratio is 1) and ``delay<MS>ms`` (the SEC0 arm with a
# server-side wait of MS ms inside every round: a known effect the comparison must find).
CHECK_RE = re.compile(r"aa|delay(0*[1-9][0-9]*(?:\.[0-9]+)?|0*\.[0-9]*[1-9][0-9]*)ms")


@dataclass(frozen=True)
class Workload:
    """The FL run every cell of a matrix performs."""

    clients: int = 5
    rounds: int = 10
    model: str = "small"
    local_epochs: int = 1
    max_steps: int = 0
    batch_size: int = 32
    lr: float = 0.05
    eval_every: int = 5
    target_accuracy: float = 0.95
    min_participants: int = 0  # 0: ceil(0.6 x clients)
    round_deadline: float = 60.0
    # requests/limits of the FL containers (none: BestEffort)
    resources: Resources = field(default_factory=Resources)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form; ``resources`` only when set, so rows and stored matrices of runs
        without it read as they always did."""
        d = asdict(self)
        del d["resources"]
        if self.resources:
            d["resources"] = self.resources.to_dict()
        return d

    def validate(self, source: str) -> Workload:
        checks = [
            (self.clients >= 1, "clients", "must be >= 1"),
            (self.rounds >= 1, "rounds", "must be >= 1"),
            (self.model in MODELS, "model", f"expected one of {', '.join(MODELS)}"),
            (self.local_epochs >= 1, "local_epochs", "must be >= 1"),
            (self.max_steps >= 0, "max_steps", "must be >= 0"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.lr > 0, "lr", "must be > 0"),
            (self.eval_every >= 1, "eval_every", "must be >= 1"),
            (0 < self.target_accuracy <= 1, "target_accuracy", "must be in (0, 1]"),
            (
                0 <= self.min_participants <= self.clients,
                "min_participants",
                "must be between 0 and clients",
            ),
            (self.round_deadline > 0, "round_deadline", "must be > 0"),
        ]
        for ok, name, why in checks:
            if not ok:
                raise MatrixError(f"{source}: workload.{name}={getattr(self, name)!r}: {why}")
        return self


@dataclass(frozen=True)
class Cell:
    sec: str
    net: str
    data: str  # "iid" | "dirichlet-<alpha>"
    seed: int
    workload: Workload
    mtls: str | None = None  # for SEC2/SEC3: "sidecar" | "native" | "mesh"
    show_mtls: bool = False  # True when the matrix holds several modes (ids must tell them apart)
    fault: str | None = None  # a fault scenario (pytest_ztfl.faults), None: no fault
    check: str | None = None  # an instrument check arm (CHECK_RE): "aa" or "delay<MS>ms"
    hetero: Heterogeneity | None = None  # client heterogeneity (matrix.hetero), None: alike

    @property
    def suffix(self) -> str:
        """The id's tail after the data split and seed: heterogeneity, then the fault."""
        tail = f"-h{self.hetero.name}" if self.hetero else ""
        return f"{tail}-{self.fault}" if self.fault else tail

    def clients(self) -> list[ClientDraw]:
        """Each client's device class, NET profile, CPU limit and absent rounds, drawn with
        the cell's seed (empty without heterogeneity)."""
        if self.hetero is None:
            return []
        wl = self.workload
        least = wl.min_participants or math.ceil(0.6 * wl.clients)
        return self.hetero.draw(wl.clients, wl.rounds, self.seed, least)

    @property
    def inject_delay_ms(self) -> float:
        """The known effect this arm carries (its server waits this long in every round)."""
        if self.check and self.check.startswith("delay"):
            return float(self.check.removeprefix("delay").removesuffix("ms"))
        return 0.0

    @property
    def block(self) -> str:
        """The block this cell's arm belongs to: the cells that differ only in SEC level,
        mTLS mode and check run together (interleaved) and are compared with each other."""
        return f"{self.net}-{self.data_label}-s{self.seed}{self.suffix}"

    @property
    def data_label(self) -> str:
        if self.data == "iid":
            return "iid"
        alpha = self.data.removeprefix("dirichlet-")
        return "noniid" if float(alpha) == 0.5 else f"dir{float(alpha):g}"

    @property
    def id(self) -> str:
        base = f"{self.sec}-{self.net}-{self.data_label}-s{self.seed}"
        if self.show_mtls and self.mtls:
            base = f"{base}-{self.mtls}"
        if self.check:
            base = f"{base}-{self.check}"
        return base + self.suffix

    @property
    def shaped(self) -> bool:
        """Whether the cell's links are emulated (any NET profile but the null one)."""
        return self.net != NULL_PROFILE

    @property
    def level(self) -> Sec:
        return Sec(self.sec)

    @property
    def netpol(self) -> bool:
        return self.level.netpol

    @property
    def tls(self) -> bool:
        return self.level.mtls

    @property
    def restricted(self) -> bool:
        return self.level.restricted

    def baseline(self, cells: Iterable[Cell]) -> Cell | None:
        """The SEC0 cell this cell's overhead is measured against: same NET, data, seed and
        fault, else (a fault SEC0 cannot carry, e.g. an mTLS one) the unfaulted one. A check
        arm's baseline is its block's plain SEC0 arm; the SEC0 arm itself has none."""
        if self.level.baseline and self.check is None:
            return None
        same = {
            c.fault: c
            for c in cells
            if (c.sec, c.net, c.data, c.seed, c.check, c.hetero)
            == (Sec.SEC0, self.net, self.data, self.seed, None, self.hetero)
        }
        return same.get(self.fault, same.get(None))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("show_mtls")
        d.pop("hetero")
        if self.hetero is not None:  # rows of runs without it read as they always did
            d["heterogeneity"] = self.hetero.to_dict()
        d["workload"] = self.workload.to_dict()
        d["id"] = self.id
        return d


@dataclass(frozen=True)
class Matrix:
    name: str
    sec: tuple[str, ...]
    net: tuple[str, ...]
    data: tuple[str, ...]
    seeds: tuple[int, ...]
    mtls: tuple[str, ...] = ("sidecar",)
    workload: Workload = field(default_factory=Workload)
    faults: tuple[str | None, ...] = (None,)
    checks: tuple[str, ...] = ()  # instrument check arms per block (CHECK_RE)
    # the heterogeneity axis (matrix.hetero); (None,): every client alike, as before
    hetero: tuple[Heterogeneity | None, ...] = (None,)

    def cells(self) -> list[Cell]:
        both = len(self.mtls) > 1
        out: list[Cell] = []
        for sec, net, data, seed, het, fault in itertools.product(
            self.sec, self.net, self.data, self.seeds, self.hetero, self.faults
        ):
            if het is not None and fault is not None:
                continue  # a fault's cells are reliability runs of alike clients
            modes: Iterable[str | None] = self.mtls if Sec(sec).mtls else (None,)
            for mode in modes:
                c = Cell(sec, net, data, seed, self.workload, mode, both, fault, hetero=het)
                if fault is None or _fault_fits(c):
                    out.append(c)
        # Check arms go with the unfaulted blocks (a fault's cells are reliability runs).
        for net, data, seed, het in itertools.product(
            self.net, self.data, self.seeds, self.hetero
        ):
            for check in self.checks:
                out.append(Cell(Sec.SEC0.value, net, data, seed, self.workload, None, both, None,
                                check, het))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sec": list(self.sec),
            "net": list(self.net),
            "data": list(self.data),
            "seeds": list(self.seeds),
            "mtls": list(self.mtls),
            "faults": [f or "none" for f in self.faults],  # the YAML form: from_dict reads it
            "workload": self.workload.to_dict(),
            **({"checks": list(self.checks)} if self.checks else {}),
            **(
                {"heterogeneity": [h.to_dict() if h else "none" for h in self.hetero]}
                if self.hetero != (None,)
                else {}
            ),
        }


def _fault_fits(cell: Cell) -> bool:
    """A fault scenario is only crossed with cells that have what it needs (mTLS faults with
    SEC2/SEC3 native, netpol faults with SEC1/SEC3, netem faults with a NET profile)."""
    # faults import the model (Cell): loaded when a matrix has a fault axis, not at import
    from pytest_ztfl import faults as ft

    f = ft.get(cell.fault)
    return f is None or f.unsupported(cell) is None
