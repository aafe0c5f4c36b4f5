"""The seed study's (ZeroTrust-FLBench) quantitative claims, read from the package's
``study_claims.toml``: each entry checked and turned into a :class:`StudyClaim` that names the
quantity it refers to and the set of values it claims (:class:`Claimed`). A malformed entry is
one :class:`ClaimsError` naming the claim's id and the field. Pure data: what a run measures of
each claim is pytest_ztfl.report.claims.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_ztfl.sec import SEC_LEVELS

CLAIMS_FILE = "study_claims.toml"

# kind -> the metrics it may refer to (study_claims.toml's header says what each means)
METRICS: dict[str, tuple[str, ...]] = {
    "ratio": ("duration",),
    "ordering": ("duration", "tta"),
    "interaction": ("duration",),
    "share": ("failed_rounds", "final_accuracy"),
    "difference": ("rounds_to_target",),
    "count": ("experiments",),
    "setting": ("net_delay",),
}
# (kind, metric) -> the fields it needs beyond the common ones
NEEDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("ratio", "duration"): ("q", "treatment", "baseline", "definition"),
    ("ordering", "duration"): ("q", "treatment", "baseline", "definition"),
    ("ordering", "tta"): ("fastest", "needs_target"),
    ("interaction", "duration"): ("q", "scale", "sec", "net", "definition"),
    ("difference", "rounds_to_target"): ("treatment", "baseline", "needs_target"),
    ("setting", "net_delay"): ("net",),
}
COMMON = ("id", "statement", "where", "kind", "metric", "shown")
SETS = ("value", "range", "at_most", "above")
OPTIONAL = (
    "q", "treatment", "baseline", "definition", "scale", "sec", "net", "secs", "nets",
    "fastest", "needs_target", "needs_rounds", "contradicts", "note",
)  # fmt: skip
DEFINITIONS = ("mean-of-runs", "pooled")
SIDE_KEYS = ("sec", "net", "data")


class ClaimsError(ValueError):
    """The claims file cannot be used; the message names the claim's id and the field."""


@dataclass(frozen=True)
class Claimed:
    """The values a claim admits: [low, high] (``open_low``: low itself excluded, as in
    "above 1")."""

    low: float
    high: float
    open_low: bool = False

    def meets(self, lo: float, hi: float) -> bool:
        """True when an interval [lo, hi] holds a value the claim admits: the claim is then
        consistent with it; otherwise the interval contradicts the claim."""
        above = hi > self.low if self.open_low else hi >= self.low
        return above and lo <= self.high


@dataclass(frozen=True)
class Side:
    """One arm of a comparison: a SEC level, a NET profile, a data split; None: any."""

    sec: str | None = None
    net: str | None = None
    data: str | None = None

    def text(self) -> str:
        return "/".join(x for x in (self.sec, self.net, self.data) if x) or "every cell"


@dataclass(frozen=True)
class StudyClaim:
    id: str
    statement: str
    where: str
    kind: str
    metric: str
    shown: str  # the study's value as the study writes it
    claimed: Claimed
    contradicts: tuple[str, ...] = ()
    note: str = ""
    q: float | None = None
    treatment: Side = Side()
    baseline: Side = Side()
    definition: str | None = None  # how the study computed its quantile
    scale: str | None = None
    sec: str | None = None
    net: str | None = None
    secs: tuple[str, ...] = ()  # empty: every SEC level in the run
    nets: tuple[str, ...] = ()
    fastest: str | None = None
    needs_target: float | None = None
    needs_rounds: int | None = None


def _fail(cid: str, field: str, why: str) -> ClaimsError:
    return ClaimsError(f"{CLAIMS_FILE}: claim {cid!r}: field {field!r} {why}")


def _number(cid: str, field: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _fail(cid, field, f"must be a finite number, not {v!r}")
    return float(v)


def _text(cid: str, field: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _fail(cid, field, "must be a non-empty string")
    return v


def _sec(cid: str, field: str, v: Any) -> str:
    if v not in SEC_LEVELS:
        raise _fail(cid, field, f"must be one of {', '.join(SEC_LEVELS)}, not {v!r}")
    return str(v)


def _names(cid: str, field: str, v: Any, sec: bool = False) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise _fail(cid, field, "must be a list of strings")
    return tuple(_sec(cid, field, x) if sec else _text(cid, field, x) for x in v)


def _side(cid: str, field: str, v: Any) -> Side:
    if not isinstance(v, Mapping) or not v:
        raise _fail(cid, field, f"must be a table with some of {', '.join(SIDE_KEYS)}")
    unknown = sorted(set(v) - set(SIDE_KEYS))
    if unknown:
        raise _fail(cid, f"{field}.{unknown[0]}", f"is not one of {', '.join(SIDE_KEYS)}")
    got = {k: _text(cid, f"{field}.{k}", x) for k, x in v.items()}
    if "sec" in got:
        _sec(cid, f"{field}.sec", got["sec"])
    return Side(**got)


def _claimed(cid: str, raw: Mapping[str, Any]) -> Claimed:
    given = [k for k in SETS if k in raw]
    if len(given) != 1:
        field = given[1] if len(given) > 1 else "value"
        raise _fail(cid, field, f"needs exactly one of {', '.join(SETS)}; got {given or 'none'}")
    key = given[0]
    if key == "range":
        r = raw[key]
        if not isinstance(r, list) or len(r) != 2:
            raise _fail(cid, "range", "must be [low, high]")
        lo, hi = (_number(cid, "range", x) for x in r)
        if lo > hi:
            raise _fail(cid, "range", f"has low {lo:g} above high {hi:g}")
        return Claimed(lo, hi)
    x = _number(cid, key, raw[key])
    if key == "at_most":
        return Claimed(-math.inf, x)
    if key == "above":
        return Claimed(x, math.inf, open_low=True)
    return Claimed(x, x)


def parse_claim(raw: Any, index: int) -> StudyClaim:
    """One ``[[claim]]`` table as a :class:`StudyClaim`; :class:`ClaimsError` if malformed."""
    if not isinstance(raw, Mapping):
        raise ClaimsError(f"{CLAIMS_FILE}: claim #{index + 1} is not a table")
    cid = raw.get("id")
    if not isinstance(cid, str) or not cid.strip():
        raise ClaimsError(f"{CLAIMS_FILE}: claim #{index + 1}: field 'id' is missing or empty")
    for field in COMMON:
        if field not in raw:
            raise _fail(cid, field, "is missing")
        _text(cid, field, raw[field])
    unknown = sorted(set(raw) - set(COMMON) - set(SETS) - set(OPTIONAL))
    if unknown:
        raise _fail(cid, unknown[0], "is not a field of a claim")
    kind, metric = raw["kind"], raw["metric"]
    if kind not in METRICS:
        raise _fail(cid, "kind", f"must be one of {', '.join(METRICS)}, not {kind!r}")
    if metric not in METRICS[kind]:
        raise _fail(cid, "metric", f"of a {kind} must be one of {', '.join(METRICS[kind])}")
    for field in NEEDS.get((kind, metric), ()):
        if field not in raw:
            raise _fail(cid, field, f"is missing (a {kind} of {metric} needs it)")
    fields: dict[str, Any] = {}
    if "q" in raw:
        fields["q"] = q = _number(cid, "q", raw["q"])
        if not 0 < q < 1:
            raise _fail(cid, "q", f"must be a quantile in (0, 1), not {q:g}")
    for side in ("treatment", "baseline"):
        if side in raw:
            fields[side] = _side(cid, side, raw[side])
    if "definition" in raw and raw["definition"] not in DEFINITIONS:
        raise _fail(cid, "definition", f"must be one of {', '.join(DEFINITIONS)}")
    if "scale" in raw and raw["scale"] != "abs":
        raise _fail(cid, "scale", "must be 'abs' (seconds)")
    for field in ("sec", "fastest"):
        if field in raw:
            fields[field] = _sec(cid, field, raw[field])
    for field in ("definition", "scale", "net", "note"):
        if field in raw:
            fields[field] = _text(cid, field, raw[field])
    if "secs" in raw:
        fields["secs"] = _names(cid, "secs", raw["secs"], sec=True)
    for field in ("nets", "contradicts"):
        if field in raw:
            fields[field] = _names(cid, field, raw[field])
    if "needs_target" in raw:
        fields["needs_target"] = t = _number(cid, "needs_target", raw["needs_target"])
        if not 0 < t <= 1:
            raise _fail(cid, "needs_target", f"must be an accuracy in (0, 1], not {t:g}")
    if "needs_rounds" in raw:
        n = raw["needs_rounds"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise _fail(cid, "needs_rounds", f"must be a whole number >= 1, not {n!r}")
        fields["needs_rounds"] = n
    if (kind, metric) == ("ordering", "tta"):  # the claim is its ``fastest``, no values
        given = [k for k in SETS if k in raw]
        if given:
            raise _fail(cid, given[0], "has no place in a TTA ordering (its claim: 'fastest')")
        claimed = Claimed(-math.inf, math.inf)
    else:
        claimed = _claimed(cid, raw)
    if kind == "ordering" and metric == "duration" and not claimed.open_low:
        raise _fail(cid, "above", "is how an ordering of durations is claimed")
    return StudyClaim(
        id=cid,
        statement=raw["statement"],
        where=raw["where"],
        kind=kind,
        metric=metric,
        shown=raw["shown"],
        claimed=claimed,
        **fields,
    )


def parse_claims(doc: Mapping[str, Any]) -> tuple[StudyClaim, ...]:
    """Every ``[[claim]]`` of a parsed claims file, ids unique, contradictions named on both
    sides and only between claims of the file."""
    raw = doc.get("claim")
    if not isinstance(raw, list) or not raw:
        raise ClaimsError(f"{CLAIMS_FILE}: no [[claim]] entries")
    claims = tuple(parse_claim(c, i) for i, c in enumerate(raw))
    by_id: dict[str, StudyClaim] = {}
    for c in claims:
        if c.id in by_id:
            raise _fail(c.id, "id", "is used by two claims")
        by_id[c.id] = c
    for c in claims:
        for other in c.contradicts:
            if other not in by_id or other == c.id:
                raise _fail(c.id, "contradicts", f"names {other!r}, not another claim's id")
            if c.id not in by_id[other].contradicts:
                raise _fail(other, "contradicts", f"must name {c.id!r} too (it names this one)")
    return claims


def load_claims(path: Path | None = None) -> tuple[StudyClaim, ...]:
    """The claims of ``path`` (default: the package's ``study_claims.toml``)."""
    try:
        if path is None:
            text = resources.files("pytest_ztfl.report").joinpath(CLAIMS_FILE).read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        doc = tomllib.loads(text)
    except OSError as exc:
        raise ClaimsError(f"{path or CLAIMS_FILE}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClaimsError(f"{path or CLAIMS_FILE}: not TOML ({exc})") from None
    return parse_claims(doc)
