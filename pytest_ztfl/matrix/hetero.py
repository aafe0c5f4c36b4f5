"""Client heterogeneity (the matrix key ``heterogeneity``): a named distribution of device
classes, each with a share of the clients, a NET profile, a CPU limit and an availability
probability, drawn per client with the cell's seed so a run repeats.

The draw (:meth:`Heterogeneity.draw`): each class gets ``round(share x clients)`` clients by
largest remainder (so a class with a share gets its clients even in a run of 4), shuffled over
the client ids by a generator seeded with the distribution's name and the cell's seed; then each
client is absent from each round with probability ``1 - availability``. A round keeps at least
``min_present`` clients (the server's ``min_participants``): when the draw leaves fewer, the
absent clients of that round with the lowest ids are made present again, so an absence never
fails a round (absent is not failed). Every bad field is one error naming it
(``heterogeneity[0].classes[1].cpu='abc': not a CPU quantity ...``).

A trace replaces the draw (``trace:``): each client's class and absent rounds as given, either
inline (a list of ``{client, class, absent}``) or a CSV file (a path, relative to the matrix
file) with the header ``client,class,absent``, one line per client, ``absent`` the rounds it sits
out separated by spaces, ``#`` lines ignored::

    client,class,absent
    0,slow,1 3
    1,fast,

The trace must name every client of the workload once, rounds within its rounds, and leave each
round its minimum of participants; the classes still give each client's NET profile and CPU
limit (their shares and availabilities are not used).
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8s_fixtures.manifests import cpu_millis
from pytest_ztfl.matrix.errors import MatrixError

_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789-")
_CLASS_KEYS = ("name", "share", "net", "cpu", "availability")
_KEYS = ("name", "classes", "trace")
TRACE_HEADER = ("client", "class", "absent")
Trace = tuple[tuple[str, tuple[int, ...]], ...]  # per client id: (class, absent rounds)


@dataclass(frozen=True)
class DeviceClass:
    """One kind of client device: its share of the clients, its NET profile (None: the
    cell's), its CPU limit (None: the matrix's client limit, if any) and the probability it
    is there in a given round."""

    name: str
    share: float
    net: str | None = None
    cpu: str | None = None
    availability: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        if self.share:  # 0: a trace assigns the clients
            d["share"] = self.share
        if self.net is not None:
            d["net"] = self.net
        if self.cpu is not None:
            d["cpu"] = self.cpu
        d["availability"] = self.availability
        return d


@dataclass(frozen=True)
class ClientDraw:
    """What one client of a cell was drawn to be."""

    client: int
    device_class: str
    net: str | None
    cpu: str | None
    availability: float
    absent: tuple[int, ...]  # the rounds it sits out

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "class": self.device_class,
            "net": self.net,
            "cpu": self.cpu,
            "availability": self.availability,
            "rounds_absent": list(self.absent),
        }


@dataclass(frozen=True)
class Heterogeneity:
    """A named distribution of device classes (the shares sum to 1)."""

    name: str
    classes: tuple[DeviceClass, ...]
    trace: Trace | None = None  # each client as given (matrix.hetero's docstring), or drawn

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "classes": [c.to_dict() for c in self.classes]}
        if self.trace is not None:  # inline: a stored matrix needs no file
            d["trace"] = [{"client": i, "class": k, "absent": list(a)}
                          for i, (k, a) in enumerate(self.trace)]
        return d

    def check(self, src: str, clients: int, rounds: int, min_present: int) -> None:
        """A trace fits the workload: every client once, its rounds, each round's minimum."""
        if self.trace is None:
            return
        where = f"heterogeneity {self.name}: trace"
        if len(self.trace) != clients:
            raise _fail(src, f"{where} names {len(self.trace)} clients, the workload has "
                             f"{clients}")
        for i, (_, absent) in enumerate(self.trace):
            late = [r for r in absent if r > rounds]
            if late:
                raise _fail(src, f"{where}: client {i} absent from round {late[0]}, the "
                                 f"workload has {rounds} rounds")
        for r in range(1, rounds + 1):
            there = sum(r not in a for _, a in self.trace)
            if there < min_present:
                raise _fail(src, f"{where}: round {r} keeps {there} of {clients} clients, "
                                 f"fewer than min_participants {min_present}")

    def counts(self, clients: int) -> list[int]:
        """Clients per class: ``share x clients`` rounded by largest remainder."""
        exact = [c.share * clients for c in self.classes]
        out = [math.floor(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: (out[i] - exact[i], i))
        for i in order[: clients - sum(out)]:
            out[i] += 1
        return out

    def draw(self, clients: int, rounds: int, seed: int, min_present: int) -> list[ClientDraw]:
        """Every client's class and absences in a cell (same inputs, same draw; a trace's
        clients as given)."""
        if self.trace is not None:
            by_name = {c.name: c for c in self.classes}
            return [
                ClientDraw(i, k, by_name[k].net, by_name[k].cpu, by_name[k].availability,
                           tuple(r for r in a if r <= rounds))
                for i, (k, a) in enumerate(self.trace[:clients])
            ]
        rng = random.Random(f"ztfl-heterogeneity:{self.name}:{seed}")
        kinds = [c for c, n in zip(self.classes, self.counts(clients), strict=True)
                 for _ in range(n)]
        rng.shuffle(kinds)
        absent = [
            {r for r in range(1, rounds + 1) if rng.random() >= k.availability} for k in kinds
        ]
        for r in range(1, rounds + 1):
            away = [i for i in range(clients) if r in absent[i]]
            for i in away[: max(0, min_present - (clients - len(away)))]:
                absent[i].discard(r)
        return [
            ClientDraw(i, k.name, k.net, k.cpu, k.availability, tuple(sorted(absent[i])))
            for i, k in enumerate(kinds)
        ]


def _fail(where: str, why: str) -> MatrixError:
    return MatrixError(f"{where}: {why}")


def _number(src: str, raw: Mapping[str, Any], key: str, path: str, default: float | None,
            lo: float, lo_open: bool) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(src, f"{path}.{key}={value!r}: expected a number in "
                         f"{'(' if lo_open else '['}{lo:g}, 1]")
    if not (lo < value <= 1 if lo_open else lo <= value <= 1):
        raise _fail(src, f"{path}.{key}={value!r}: must be in {'(' if lo_open else '['}{lo:g}, 1]")
    return float(value)


def _name(src: str, value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or not set(value) <= _NAME_OK:
        raise _fail(src, f"{path}={value!r}: expected a name of lower-case letters, digits "
                         "and '-' (it goes into cell ids)")
    return value


def _trace_rows(src: str, raw: Any, path: str, base: Path | None) -> list[Mapping[str, Any]]:
    """The trace's rows: inline, or read from its CSV file."""
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str):
        raise _fail(src, f"field '{path}' must be a CSV file's path or a list of "
                         "{client, class, absent}")
    file = Path(raw) if base is None or Path(raw).is_absolute() else base / raw
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(src, f"{path}={raw!r}: {exc.strerror}") from None
    lines = [x for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    reader = csv.reader(lines)
    header = tuple(h.strip() for h in next(reader, []))
    if header != TRACE_HEADER:
        raise _fail(src, f"{path}={raw!r}: header {','.join(header)!r}, expected "
                         f"{','.join(TRACE_HEADER)!r}")
    rows: list[Mapping[str, Any]] = []
    for n, cells in enumerate(reader, 2):
        if len(cells) != len(TRACE_HEADER):
            raise _fail(src, f"{path}={raw!r} line {n}: expected {len(TRACE_HEADER)} fields")
        rows.append(dict(zip(TRACE_HEADER, (c.strip() for c in cells), strict=True)))
    return rows


def _trace(src: str, raw: Any, path: str, classes: Iterable[str], base: Path | None) -> Trace:
    """Each client's class and absent rounds, in client order (ids 0..n-1, each once)."""
    known = set(classes)
    out: dict[int, tuple[str, tuple[int, ...]]] = {}
    for i, row in enumerate(_trace_rows(src, raw, path, base)):
        at = f"{path}[{i}]"
        if not isinstance(row, Mapping) or set(row) != set(TRACE_HEADER):
            raise _fail(src, f"{at}: expected the fields {', '.join(TRACE_HEADER)}")
        client = row["client"]
        if isinstance(client, str) and client.isdigit():
            client = int(client)
        if isinstance(client, bool) or not isinstance(client, int) or client < 0:
            raise _fail(src, f"{at}.client={row['client']!r}: expected a client id >= 0")
        if client in out:
            raise _fail(src, f"{at}.client={client}: named twice")
        if row["class"] not in known:
            raise _fail(src, f"{at}.class={row['class']!r}: no such class "
                             f"(known: {', '.join(sorted(known))})")
        absent = row["absent"]
        if isinstance(absent, str):
            absent = [int(a) if a.isdigit() else a for a in absent.split()]
        if not isinstance(absent, list) or not all(
            isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in absent
        ):
            raise _fail(src, f"{at}.absent={row['absent']!r}: expected round numbers >= 1")
        out[client] = (str(row["class"]), tuple(sorted(set(absent))))
    missing = sorted(set(range(len(out))) - set(out))
    if missing or not out:
        raise _fail(src, f"{path}: client ids must be 0..n-1, {missing[0] if missing else 0} "
                         "is missing")
    return tuple(out[i] for i in range(len(out)))


def _mapping(src: str, raw: Any, path: str, keys: Iterable[str], shape: str) -> None:
    """``raw`` is a mapping of known keys only; else one error naming the field."""
    if not isinstance(raw, dict):
        raise _fail(src, f"field '{path}' must be a mapping {shape}")
    unknown = sorted(set(map(str, raw)) - set(keys))
    if unknown:
        raise _fail(src, f"unknown field '{path}.{unknown[0]}' (known: {', '.join(keys)})")


def _class(src: str, raw: Any, path: str, nets: set[str] | None, traced: bool) -> DeviceClass:
    _mapping(src, raw, path, _CLASS_KEYS, f"({', '.join(_CLASS_KEYS)})")
    name = _name(src, raw.get("name"), f"{path}.name")
    # a trace assigns the clients itself: a class's share is then optional (and unused)
    share = 0.0 if traced and "share" not in raw else _number(src, raw, "share", path, None,
                                                             0.0, True)
    net = raw.get("net")
    if net is not None and (not isinstance(net, str) or (nets is not None and net not in nets)):
        known = f" (known: {', '.join(sorted(nets))})" if nets is not None else ""
        raise _fail(src, f"{path}.net={net!r}: no such network profile{known}")
    cpu = raw.get("cpu")
    if cpu is not None:
        if isinstance(cpu, bool) or not isinstance(cpu, str | int | float):
            raise _fail(src, f"{path}.cpu={cpu!r}: expected a CPU quantity (e.g. 500m, 0.5, 2)")
        try:
            cpu_millis(str(cpu))
        except ValueError as exc:
            why = str(exc).removeprefix(f"{str(cpu)!r} is ").removeprefix(f"{str(cpu)!r} ")
            raise _fail(src, f"{path}.cpu={cpu!r}: {why}") from None
        cpu = str(cpu)
    availability = _number(src, raw, "availability", path, 1.0, 0.0, True)
    return DeviceClass(name, share, net, cpu, availability)


def parse_one(src: str, raw: Any, path: str, nets: Iterable[str] | None,
              base: Path | None = None) -> Heterogeneity:
    """One distribution from its YAML form (``{name, classes: [{name, share, net, cpu,
    availability}, ...], trace: ...}``); ``base``: where a trace file's relative path starts."""
    _mapping(src, raw, path, _KEYS, "(name, classes) or 'none'")
    name = _name(src, raw.get("name"), f"{path}.name")
    known = set(nets) if nets is not None else None
    classes_raw = raw.get("classes")
    if not isinstance(classes_raw, list) or not classes_raw:
        raise _fail(src, f"field '{path}.classes' must be a non-empty list of device classes")
    traced = "trace" in raw
    classes = tuple(_class(src, c, f"{path}.classes[{i}]", known, traced)
                    for i, c in enumerate(classes_raw))
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise _fail(src, f"field '{path}.classes' names a class twice")
    total = sum(c.share for c in classes)
    if not traced and abs(total - 1) > 1e-6:
        raise _fail(src, f"{path}.classes: shares sum to {total:g}, not 1")
    trace = None
    if "trace" in raw:
        trace = _trace(src, raw["trace"], f"{path}.trace", names, base)
    return Heterogeneity(name, classes, trace)


def parse_axis(src: str, raw: Any, nets: Iterable[str] | None,
               base: Path | None = None) -> tuple[Heterogeneity | None, ...]:
    """The heterogeneity axis: one distribution, or a list of them and ``none`` (homogeneous
    clients, as without the key)."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _fail(src, "field 'heterogeneity' must be a distribution or a non-empty list")
    out: list[Heterogeneity | None] = []
    for i, item in enumerate(items):
        path = f"heterogeneity[{i}]" if isinstance(raw, list) else "heterogeneity"
        out.append(None if item == "none" else parse_one(src, item, path, nets, base))
    names = [h.name if h else "none" for h in out]
    if len(set(names)) != len(names):
        raise _fail(src, "field 'heterogeneity' names a distribution twice")
    return tuple(out)
