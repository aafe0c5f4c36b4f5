"""Matrices from presets, YAML files and command-line overrides (``--ztfl-seeds`` ...), each
bad name or field one :class:`~pytest_ztfl.matrix.errors.MatrixError` naming it."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from pytest_ztfl.matrix.errors import MatrixError
from pytest_ztfl.matrix.hetero import parse_axis
from pytest_ztfl.matrix.model import CHECK_RE, MTLS_MODES, Matrix, Workload
from pytest_ztfl.matrix.resources import parse_resources
from pytest_ztfl.sec import SEC_LEVELS, Sec

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
    # Client heterogeneity, small enough for CI: two device classes at NET0, the slow one on
    # a quarter of a core, on NET1 links, and away from a third of the rounds.
    "hetero-smoke": {
        "sec": ["SEC0", "SEC3"],
        "net": ["NET0"],
        "data": ["iid"],
        "seeds": [0],
        "workload": {"clients": 4, "rounds": 4, "model": "small", "eval_every": 4},
        "heterogeneity": {
            "name": "two-class",
            "classes": [
                {"name": "fast", "share": 0.5, "cpu": "1", "availability": 1.0},
                {"name": "slow", "share": 0.5, "net": "NET1", "cpu": "250m",
                 "availability": 0.67},
            ],
        },
    },
}

_KEYS = {
    "name", "sec", "net", "data", "seeds", "mtls", "workload", "faults", "checks",
    "heterogeneity",
}
_DATA_RE = re.compile(r"iid|dirichlet-[0-9]*\.?[0-9]+")


def _str_list(src: str, raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise MatrixError(f"{src}: field '{key}' must be a non-empty list of strings")
    if len(set(value)) != len(value):
        raise MatrixError(f"{src}: field '{key}' lists a value twice")
    return tuple(value)


def from_dict(raw: Any, source: str, net_profiles: Iterable[str] | None = None,
              base: Path | None = None) -> Matrix:
    """Build and validate a matrix from its YAML form; ``net_profiles`` are the known NET names,
    ``base`` the directory a heterogeneity trace file's relative path starts from."""
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
    return _check_traces(_check_fault_axis(
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
            hetero=(
                parse_axis(source, raw["heterogeneity"], net_profiles, base)
                if "heterogeneity" in raw
                else (None,)
            ),
        ),
        source,
    ), source)


def _check_traces(m: Matrix, source: str) -> Matrix:
    """Every heterogeneity trace fits the workload (its clients, rounds, round minimum)."""
    wl = m.workload
    least = wl.min_participants or math.ceil(0.6 * wl.clients)
    for h in m.hetero:
        if h is not None:
            h.check(source, wl.clients, wl.rounds, least)
    return m


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
    return from_dict(raw, f"matrix {spec}", net_profiles, path.parent)


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
    return _check_traces(_check_fault_axis(
        replace(
            m,
            seeds=seeds or m.seeds,
            workload=wl.validate("command line"),
            mtls=(mtls,) if mtls else m.mtls,
        ),
        "--ztfl-faults" if faults is not None else "command line",
    ), "command line")
