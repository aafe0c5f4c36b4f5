"""The experiment matrix: cells (SEC x NET x data x seed [x mTLS mode]) with stable ids, presets,
and matrix files in YAML.

A cell id reads ``SEC3-NET2-noniid-s0`` (``iid``; ``noniid`` is Dirichlet alpha 0.5, other
alphas read ``dir0.1``); when a matrix measures more than one mTLS mode, SEC2/SEC3 ids end
in ``-sidecar``, ``-native`` or ``-mesh``. Ids are stable: they name results, benchmark records
and tests.

mTLS modes: ``sidecar`` (a TLS proxy per pod, the default), ``native`` (the app speaks TLS),
``mesh`` (Linkerd's proxies and policy objects: Kubernetes backends only, see
:func:`pytest_ztfl.backends.cell_unsupported`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fl_app.model_sizes import MODELS
from k8s_fixtures.manifests import cpu_millis, memory_bytes
from k8s_fixtures.netem.profiles import NULL_PROFILE
from pytest_ztfl.sec import SEC_LEVELS, Sec

MTLS_MODES = ("sidecar", "native", "mesh")
# The instrument's own checks, arms added to every block beside its SEC0 arm: ``aa`` (the SEC0
# arm again: an A/A comparison, whose true ratio is 1) and ``delay<MS>ms`` (the SEC0 arm with a
# server-side wait of MS ms inside every round: a known effect the comparison must find).
CHECK_RE = re.compile(r"aa|delay(0*[1-9][0-9]*(?:\.[0-9]+)?|0*\.[0-9]*[1-9][0-9]*)ms")


class MatrixError(ValueError):
    """A matrix name, file or field is invalid; the message names the source and field."""


RESOURCE_ROLES = ("server", "client")
RESOURCE_KINDS = ("requests", "limits")
_QUANTITY_OF = {"cpu": cpu_millis, "memory": memory_bytes}  # each raises ValueError when bad


@dataclass(frozen=True)
class Quantities:
    """CPU and memory as Kubernetes quantities (``500m``, ``1``; ``512Mi``, ``1G``)."""

    cpu: str | None = None
    memory: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}


@dataclass(frozen=True)
class ContainerResources:
    """``resources`` of one role's FL container: requests and limits, as Kubernetes has them."""

    requests: Quantities = Quantities()
    limits: Quantities = Quantities()

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The Kubernetes form (``{requests: {cpu: ..}, limits: {..}}``), only what is set."""
        out = {"requests": self.requests.to_dict(), "limits": self.limits.to_dict()}
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class Resources:
    """``workload.resources``: requests and limits of the server's and of every client's FL
    container. Unset (the default) leaves the pods BestEffort, as they always were."""

    server: ContainerResources = ContainerResources()
    client: ContainerResources = ContainerResources()

    def __bool__(self) -> bool:
        return bool(self.to_dict())

    def to_dict(self) -> dict[str, dict[str, dict[str, str]]]:
        out = {"server": self.server.to_dict(), "client": self.client.to_dict()}
        return {k: v for k, v in out.items() if v}


def _mapping(source: str, value: Any, path: str, known: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MatrixError(f"{source}: field '{path}' must be a mapping ({', '.join(known)})")
    unknown = sorted(set(map(str, value)) - set(known))
    if unknown:
        raise MatrixError(
            f"{source}: unknown field '{path}.{unknown[0]}' (known: {', '.join(known)})"
        )
    return value


def _quantity(source: str, value: Any, path: str, name: str) -> str:
    """``value`` as the quantity string written into the pod spec (numbers as YAML gave them)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MatrixError(f"{source}: {path}={value!r}: expected a quantity (e.g. "
                          f"{'500m or 2' if name == 'cpu' else '512Mi or 1G'})")
    text = str(value)
    try:
        _QUANTITY_OF[name](text)
    except ValueError as exc:
        why = str(exc).removeprefix(f"{text!r} is ").removeprefix(f"{text!r} ")
        raise MatrixError(f"{source}: {path}={value!r}: {why}") from None
    return text


def parse_resources(source: str, raw: Any) -> Resources:
    """``workload.resources`` from its YAML form, every field checked; one line naming the
    field when a value is bad (``workload.resources.client.limits.cpu='abc': not a CPU
    quantity ...``) or a request exceeds its limit (which Kubernetes refuses)."""
    roles = _mapping(source, raw, "workload.resources", RESOURCE_ROLES)
    parsed: dict[str, ContainerResources] = {}
    for role, role_raw in roles.items():
        base = f"workload.resources.{role}"
        kinds = _mapping(source, role_raw, base, RESOURCE_KINDS)
        q: dict[str, Quantities] = {}
        for kind, kind_raw in kinds.items():
            values = _mapping(source, kind_raw, f"{base}.{kind}", tuple(_QUANTITY_OF))
            q[kind] = Quantities(**{n: _quantity(source, v, f"{base}.{kind}.{n}", n)
                                    for n, v in values.items()})
        res = ContainerResources(**q)
        for name, amount in _QUANTITY_OF.items():
            req, lim = getattr(res.requests, name), getattr(res.limits, name)
            if req is not None and lim is not None and amount(req) > amount(lim):
                raise MatrixError(
                    f"{source}: {base}.requests.{name}={req!r}: more than "
                    f"limits.{name}={lim!r} (Kubernetes requires requests <= limits)"
                )
        parsed[role] = res
    return Resources(**parsed)


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
    resources: Resources = Resources()  # requests/limits of the FL containers (none: BestEffort)

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
        base = f"{self.net}-{self.data_label}-s{self.seed}"
        return f"{base}-{self.fault}" if self.fault else base

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
        return f"{base}-{self.fault}" if self.fault else base

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

    def baseline(self, cells: Iterable[Cell]) -> Cell | None:
        """The SEC0 cell this cell's overhead is measured against: same NET, data, seed and
        fault, else (a fault SEC0 cannot carry, e.g. an mTLS one) the unfaulted one. A check
        arm's baseline is its block's plain SEC0 arm; the SEC0 arm itself has none."""
        if self.level.baseline and self.check is None:
            return None
        same = {
            c.fault: c
            for c in cells
            if (c.sec, c.net, c.data, c.seed, c.check)
            == (Sec.SEC0, self.net, self.data, self.seed, None)
        }
        return same.get(self.fault, same.get(None))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("show_mtls")
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

    def cells(self) -> list[Cell]:
        both = len(self.mtls) > 1
        out: list[Cell] = []
        for sec, net, data, seed, fault in itertools.product(
            self.sec, self.net, self.data, self.seeds, self.faults
        ):
            modes: Iterable[str | None] = self.mtls if Sec(sec).mtls else (None,)
            for mode in modes:
                c = Cell(sec, net, data, seed, self.workload, mode, both, fault)
                if fault is None or _fault_fits(c):
                    out.append(c)
        # Check arms go with the unfaulted blocks (a fault's cells are reliability runs).
        for net, data, seed in itertools.product(self.net, self.data, self.seeds):
            for check in self.checks:
                out.append(Cell(Sec.SEC0.value, net, data, seed, self.workload, None, both, None,
                                check))
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
        }


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "sec": ["SEC0", "SEC3"],
        "net": ["NET0", "NET2"],
        "data": ["iid"],
        "seeds": [0],
        "workload": {"clients": 3, "rounds": 3, "model": "small", "eval_every": 3},
    },
    "quick": {
        "sec": list(SEC_LEVELS),
        "net": ["NET0", "NET2"],
        "data": ["iid", "dirichlet-0.5"],
        "seeds": [0],
        "workload": {"clients": 5, "rounds": 10, "model": "small"},
    },
    "paper": {
        "sec": list(SEC_LEVELS),
        "net": ["NET0", "NET2"],
        "data": ["iid", "dirichlet-0.5"],
        "seeds": [0, 1, 2, 3, 4],
        "workload": {
            "clients": 5,
            "rounds": 50,
            "model": "paper",
            "eval_every": 5,
            "target_accuracy": 0.95,
        },
    },
    "full": {
        "sec": list(SEC_LEVELS),
        "net": ["NET0", "NET2", "NET4"],
        "data": ["iid", "dirichlet-0.5"],
        "seeds": [0, 1, 2, 3, 4],
        # The two modes every backend runs; mesh needs Linkerd (a matrix file can ask for it).
        "mtls": ["sidecar", "native"],
        "workload": {
            "clients": 5,
            "rounds": 50,
            "model": "paper",
            "eval_every": 5,
            "target_accuracy": 0.95,
        },
    },
}

_KEYS = {"name", "sec", "net", "data", "seeds", "mtls", "workload", "faults", "checks"}
_DATA_RE = re.compile(r"iid|dirichlet-[0-9]*\.?[0-9]+")


def _str_list(src: str, raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise MatrixError(f"{src}: field '{key}' must be a non-empty list of strings")
    if len(set(value)) != len(value):
        raise MatrixError(f"{src}: field '{key}' lists a value twice")
    return tuple(value)


def from_dict(raw: Any, source: str, net_profiles: Iterable[str] | None = None) -> Matrix:
    """Build and validate a matrix from its YAML form; ``net_profiles`` are the known NET names."""
    if not isinstance(raw, dict):
        raise MatrixError(f"{source}: a matrix must be a mapping")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise MatrixError(
            f"{source}: unknown field '{unknown[0]}' (known: {', '.join(sorted(_KEYS))})"
        )
    sec = _str_list(source, raw, "sec")
    for i, s in enumerate(sec):
        if s not in SEC_LEVELS:
            raise MatrixError(f"{source}: sec[{i}]={s!r}: expected one of {', '.join(SEC_LEVELS)}")
    net = _str_list(source, raw, "net")
    known = set(net_profiles) if net_profiles is not None else None
    for i, n in enumerate(net):
        if known is not None and n not in known:
            raise MatrixError(
                f"{source}: net[{i}]={n!r}: no such network profile "
                f"(known: {', '.join(sorted(known))})"
            )
    data = _str_list(source, raw, "data")
    for i, d in enumerate(data):
        if not _DATA_RE.fullmatch(d) or (d != "iid" and float(d.split("-", 1)[1]) <= 0):
            raise MatrixError(
                f"{source}: data[{i}]={d!r}: expected 'iid' or 'dirichlet-<alpha>' with alpha > 0"
            )
    seeds = raw.get("seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise MatrixError(f"{source}: field 'seeds' must be a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise MatrixError(f"{source}: field 'seeds' lists a seed twice")
    mtls = _str_list(source, raw, "mtls") if "mtls" in raw else ("sidecar",)
    for i, m in enumerate(mtls):
        if m not in MTLS_MODES:
            raise MatrixError(f"{source}: mtls[{i}]={m!r}: expected one of {', '.join(MTLS_MODES)}")
    wl_raw = raw.get("workload", {})
    if not isinstance(wl_raw, dict):
        raise MatrixError(f"{source}: field 'workload' must be a mapping")
    fields = set(Workload.__dataclass_fields__)
    bad = sorted(set(wl_raw) - fields)
    if bad:
        raise MatrixError(f"{source}: unknown field 'workload.{bad[0]}'")
    wl_raw = dict(wl_raw)
    resources = parse_resources(source, wl_raw.pop("resources", {}))
    try:
        workload = Workload(**wl_raw, resources=resources)
    except TypeError as exc:
        raise MatrixError(f"{source}: workload: {exc}") from None
    types: dict[str, type] = {"int": int, "float": float, "str": str}
    for name, f in Workload.__dataclass_fields__.items():
        if name == "resources":
            continue
        value, want = getattr(workload, name), types[str(f.type)]
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if not ok or isinstance(value, bool):
            raise MatrixError(f"{source}: workload.{name}={value!r}: expected {want.__name__}")
    return _check_fault_axis(
        Matrix(
            name=str(raw.get("name", source)),
            sec=sec,
            net=net,
            data=data,
            seeds=tuple(seeds),
            mtls=mtls,
            workload=workload.validate(source),
            faults=_faults(source, raw),
            checks=_checks(source, raw),
        ),
        source,
    )


def _checks(source: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The instrument's check arms: ``checks: [aa, delay10ms]`` (none by default)."""
    if "checks" not in raw:
        return ()
    names = _str_list(source, raw, "checks")
    for i, n in enumerate(names):
        if not CHECK_RE.fullmatch(n):
            raise MatrixError(
                f"{source}: checks[{i}]={n!r}: expected 'aa' or 'delay<MS>ms' (e.g. delay10ms)"
            )
    return names


def _check_fault_axis(m: Matrix, source: str) -> Matrix:
    """Every fault named must fit at least one cell: one that fits none would silently add
    nothing to the matrix."""
    from pytest_ztfl import faults as ft

    for name in m.faults:
        if name is None:
            continue
        base = replace(m, faults=(None,)).cells()
        fault = ft.FAULTS[name]
        if base and not any(fault.unsupported(replace(c, fault=name)) is None for c in base):
            why = fault.unsupported(replace(base[0], fault=name))
            raise MatrixError(f"{source}: fault {name} fits no cell of matrix {m.name} ({why})")
    return m


def _fault_fits(cell: Cell) -> bool:
    """A fault scenario is only crossed with cells that have what it needs (mTLS faults with
    SEC2/SEC3 native, netpol faults with SEC1/SEC3, netem faults with a NET profile)."""
    from pytest_ztfl import faults as ft

    f = ft.get(cell.fault)
    return f is None or f.unsupported(cell) is None


def _faults(source: str, raw: Mapping[str, Any]) -> tuple[str | None, ...]:
    """The fault axis: ``faults: [none, client-kill, ...]`` (``none`` = no fault)."""
    from pytest_ztfl import faults as ft

    if "faults" not in raw:
        return (None,)
    names = _str_list(source, raw, "faults")
    for i, n in enumerate(names):
        if n != "none" and n not in ft.FAULTS:
            raise MatrixError(
                f"{source}: faults[{i}]={n!r}: expected 'none' or one of "
                f"{', '.join(sorted(ft.FAULTS))}"
            )
    return tuple(None if n == "none" else n for n in names)


def load(
    spec: str, net_profiles: Iterable[str] | None = None, option: str = "--ztfl-matrix"
) -> Matrix:
    """A preset by name, or a matrix YAML file by path (``option``: how the user gave it)."""
    if spec in PRESETS:
        return from_dict({"name": spec, **PRESETS[spec]}, f"preset {spec}", net_profiles)
    path = Path(spec)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise MatrixError(
            f"{option}={spec}: not a preset ({', '.join(PRESETS)}) nor a .yaml file"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MatrixError(f"matrix {spec}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise MatrixError(f"matrix {spec}:{where}: malformed YAML") from None
    return from_dict(raw, f"matrix {spec}", net_profiles)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0-4`` or ``0,2,5`` -> seeds."""
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise MatrixError(f"--ztfl-seeds={text}: expected e.g. '0-4' or '0,2,5'") from None
    if any(s < 0 for s in out) or len(set(out)) != len(out):
        raise MatrixError(f"--ztfl-seeds={text}: seeds must be distinct integers >= 0")
    return tuple(out)


def override(
    m: Matrix,
    *,
    seeds: tuple[int, ...] | None = None,
    rounds: int | None = None,
    clients: int | None = None,
    model: str | None = None,
    mtls: str | None = None,
    faults: str | None = None,
    checks: str | None = None,
) -> Matrix:
    """Apply command-line overrides and re-validate."""
    if faults is not None:
        m = replace(m, faults=_faults("--ztfl-faults", {"faults": faults.split(",")}))
    if checks is not None:
        names = [] if checks in ("", "none") else checks.split(",")
        m = replace(m, checks=_checks("--ztfl-checks", {"checks": names}) if names else ())
    wl = m.workload
    if rounds is not None:
        wl = replace(wl, rounds=rounds)
    if clients is not None:
        wl = replace(wl, clients=clients, min_participants=min(wl.min_participants, clients))
    if model is not None:
        wl = replace(wl, model=model)
    if mtls is not None:
        if not any(Sec(s).mtls for s in m.sec):
            raise MatrixError(
                f"--ztfl-mtls={mtls}: matrix {m.name} has no SEC2/SEC3 cell that uses mTLS"
            )
        if mtls not in MTLS_MODES:
            raise MatrixError(f"--ztfl-mtls={mtls}: expected one of {', '.join(MTLS_MODES)}")
    return _check_fault_axis(
        replace(
            m,
            seeds=seeds or m.seeds,
            workload=wl.validate("command line"),
            mtls=(mtls,) if mtls else m.mtls,
        ),
        "--ztfl-faults" if faults is not None else "command line",
    )
