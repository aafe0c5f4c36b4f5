"""Network profiles as validated data: load, override, check, and reason about transfer times.

A :class:`Profile` shapes one client<->server path. ``up`` is client->server, ``down`` is
server->client; every number is per direction (see ``profiles.yaml`` for what each one means).
A :class:`NetPlan` says which profile each client gets and how that changes during a run.
Nothing here touches the kernel: validation happens before anything is applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

JITTER_DISTS = ("normal", "uniform", "paretonormal")
LOSS_MODELS = ("bernoulli", "gilbert")
MAX_DELAY_MS = 10_000.0
MAX_LOSS_PCT = 50.0
MIN_RATE_MBIT = 0.01
MAX_RATE_MBIT = 100_000.0
MIN_QUEUE_BYTES = 1514
MAX_QUEUE_BYTES = 1 << 30
MAX_BURST = 1000.0
# Ethernet frame bytes per TCP payload byte for full-size segments with timestamps:
# 1514 = 1448 payload + 32 TCP + 20 IP + 14 Ethernet.
WIRE_PER_PAYLOAD = 1514 / 1448
DIRECTION_KEYS = frozenset(
    {"delay_ms", "jitter_ms", "jitter_dist", "loss_pct", "loss_model", "loss_burst",
     "rate_mbit", "queue_limit_bytes", "reorder"}
)
PROFILE_KEYS = frozenset({"description", "up", "down", "extends", "seed"})


NULL_PROFILE = "NET0"  # the profile that changes nothing: a cell at it has no NET overlay
NET_ANNOTATION = "ztfl.io/net-profile"  # the pod annotation naming its NET profile


class ProfileError(ValueError):
    """Bad profile input; the message is one line naming the profile and the field."""


@dataclass(frozen=True)
class Direction:
    """The impairment of one direction of a path. Units are in the field names."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_dist: str = "normal"
    loss_pct: float = 0.0
    loss_model: str = "bernoulli"
    loss_burst: float = 1.0
    rate_mbit: float | None = None
    queue_limit_bytes: int | None = None
    reorder: bool = False

    @property
    def jitter_std_ms(self) -> float:
        """Standard deviation of the per-packet delay this direction asks for."""
        if self.jitter_dist == "uniform":
            return self.jitter_ms / math.sqrt(3.0)
        return self.jitter_ms

    @property
    def impaired(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.loss_pct > 0

    @property
    def shaped(self) -> bool:
        return self.rate_mbit is not None


@dataclass(frozen=True)
class Profile:
    """A named network profile: ``up`` is client->server, ``down`` is server->client."""

    name: str
    description: str = ""
    up: Direction = field(default_factory=Direction)
    down: Direction = field(default_factory=Direction)
    seed: int = 0

    @property
    def rtt_ms(self) -> float:
        """Round trip a request/response sees (median, before stack overhead)."""
        return self.up.delay_ms + self.down.delay_ms

    @property
    def is_null(self) -> bool:
        """True if the profile changes nothing (NET0)."""
        return not (self.up.impaired or self.down.impaired or self.up.shaped or self.down.shaped)

    @property
    def needs_delay_line(self) -> bool:
        return self.up.impaired or self.down.impaired

    def direction(self, name: str) -> Direction:
        if name not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', not {name!r}")
        d: Direction = getattr(self, name)
        return d

    def without_loss(self) -> Profile:
        """The same profile with loss switched off (used to calibrate the rate shaper alone)."""
        return replace(self, name=f"{self.name}-noloss",
                       up=replace(self.up, loss_pct=0.0), down=replace(self.down, loss_pct=0.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_limit_bytes(profile: Profile, direction: str) -> int | None:
    """Bottleneck queue for a rate-limited direction: the profile's setting, else one BDP."""
    d = profile.direction(direction)
    if d.rate_mbit is None:
        return None
    if d.queue_limit_bytes is not None:
        return d.queue_limit_bytes
    rtt_s = (profile.rtt_ms + 2 * (profile.up.jitter_std_ms + profile.down.jitter_std_ms)) / 1e3
    bdp = d.rate_mbit * 1e6 / 8 * max(rtt_s, 0.001)
    return max(64 * 1024, math.ceil(bdp))


def min_transfer_time_s(profile: Profile, nbytes: int, direction: str = "up") -> float:
    """Lower bound on the time to move ``nbytes`` of TCP payload one way under ``profile``.

    One-way delay plus serialisation at the bottleneck rate (Ethernet framing included).
    No handshake, no slow start: a real transfer takes longer, never less.
    """
    if nbytes < 0:
        raise ValueError("nbytes must be >= 0")
    d = profile.direction(direction)
    t = d.delay_ms / 1e3
    if d.rate_mbit is not None:
        t += nbytes * WIRE_PER_PAYLOAD * 8 / (d.rate_mbit * 1e6)
    return t


def round_budget_warning(profile: Profile, model_bytes: int, deadline_s: float) -> str | None:
    """A warning if one FedAvg round (download + upload of the model) cannot fit the deadline."""
    need = (min_transfer_time_s(profile, model_bytes, "down")
            + min_transfer_time_s(profile, model_bytes, "up"))
    if need <= deadline_s:
        return None
    return (f"profile {profile.name}: moving a {model_bytes} B model down and up takes at least "
            f"{need:.2f} s (rates {profile.down.rate_mbit}/{profile.up.rate_mbit} Mbit/s "
            f"down/up), more than the round deadline {deadline_s:.2f} s")


# ----------------------------------------------------------------------------- validation

def _num(pname: str, fname: str, value: Any, lo: float, hi: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"profile {pname}: field {fname}: {value!r} is not a number ({unit})")
    v = float(value)
    if not math.isfinite(v):
        raise ProfileError(f"profile {pname}: field {fname}: {value!r} is not finite")
    if v < lo:
        raise ProfileError(f"profile {pname}: field {fname}: {value} is below the minimum "
                           f"{lo:g} ({unit})")
    if v > hi:
        raise ProfileError(f"profile {pname}: field {fname}: {value} is above the maximum "
                           f"{hi:g} ({unit})")
    return v


def parse_direction(pname: str, dname: str, raw: Any) -> Direction:
    """Validate one direction's mapping; raise ProfileError naming profile and field."""
    if raw is None:
        return Direction()
    if not isinstance(raw, Mapping):
        raise ProfileError(f"profile {pname}: field {dname}: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - DIRECTION_KEYS)
    if unknown:
        raise ProfileError(f"profile {pname}: field {dname}.{unknown[0]}: unknown field "
                           f"(known: {', '.join(sorted(DIRECTION_KEYS))})")
    f = f"{dname}."
    delay = _num(pname, f + "delay_ms", raw.get("delay_ms", 0), 0, MAX_DELAY_MS, "ms")
    jitter = _num(pname, f + "jitter_ms", raw.get("jitter_ms", 0), 0, MAX_DELAY_MS, "ms")
    if jitter > delay:
        raise ProfileError(f"profile {pname}: field {f}jitter_ms: {jitter:g} ms exceeds "
                           f"delay_ms {delay:g}: most samples would be cut at 0 ms")
    dist = raw.get("jitter_dist", "normal")
    if dist not in JITTER_DISTS:
        raise ProfileError(f"profile {pname}: field {f}jitter_dist: {dist!r} is not one of "
                           f"{', '.join(JITTER_DISTS)}")
    loss = _num(pname, f + "loss_pct", raw.get("loss_pct", 0), 0, MAX_LOSS_PCT, "%")
    model = raw.get("loss_model", "bernoulli")
    if model not in LOSS_MODELS:
        raise ProfileError(f"profile {pname}: field {f}loss_model: {model!r} is not one of "
                           f"{', '.join(LOSS_MODELS)}")
    burst = _num(pname, f + "loss_burst", raw.get("loss_burst", 1), 1, MAX_BURST, "packets")
    if model == "gilbert" and loss > 0 and burst * loss / 100 / (1 - loss / 100) > 1:
        raise ProfileError(f"profile {pname}: field {f}loss_burst: {burst:g} is too long for "
                           f"loss {loss:g}% (good->bad probability would exceed 1)")
    rate_raw = raw.get("rate_mbit")
    rate = None if rate_raw is None else _num(pname, f + "rate_mbit", rate_raw, MIN_RATE_MBIT,
                                              MAX_RATE_MBIT, "Mbit/s")
    q_raw = raw.get("queue_limit_bytes")
    qlim = None if q_raw is None else int(_num(pname, f + "queue_limit_bytes", q_raw,
                                               MIN_QUEUE_BYTES, MAX_QUEUE_BYTES, "bytes"))
    if qlim is not None and rate is None:
        raise ProfileError(f"profile {pname}: field {f}queue_limit_bytes: set without rate_mbit")
    reorder = raw.get("reorder", False)
    if not isinstance(reorder, bool):
        raise ProfileError(f"profile {pname}: field {f}reorder: {reorder!r} is not true/false")
    return Direction(delay_ms=delay, jitter_ms=jitter, jitter_dist=str(dist), loss_pct=loss,
                     loss_model=str(model), loss_burst=burst, rate_mbit=rate,
                     queue_limit_bytes=qlim, reorder=reorder)


def _merge_extends(name: str, raw: Mapping[str, Any],
                   known: Mapping[str, Any] | None, depth: int = 0) -> dict[str, Any]:
    """``raw`` with its ``extends`` chain merged in (per-direction fields override)."""
    merged = dict(raw)
    base_name = merged.pop("extends", None)
    if base_name is None:
        return merged
    base = None if known is None else known.get(base_name)
    if not isinstance(base, Mapping) or depth > 8:
        raise ProfileError(f"profile {name}: field extends: unknown profile {base_name!r}")
    base_known = dict(known or {})
    base_known.pop(base_name, None)  # a base may not extend itself
    base_full = _merge_extends(name, base, base_known, depth + 1)
    for d in ("up", "down"):
        merged[d] = {**(base_full.get(d) or {}), **(raw.get(d) or {})}
    merged.setdefault("description", base_full.get("description", ""))
    return merged


def parse_profile(name: str, raw: Any, known: Mapping[str, Any] | None = None) -> Profile:
    """Validate one profile mapping (resolving ``extends`` against ``known`` raw profiles)."""
    if not isinstance(name, str) or not name:
        raise ProfileError(f"profile {name!r}: field name: must be a non-empty string")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ProfileError(f"profile {name}: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - PROFILE_KEYS)
    if unknown:
        raise ProfileError(f"profile {name}: field {unknown[0]}: unknown field "
                           f"(known: {', '.join(sorted(PROFILE_KEYS))})")
    merged = _merge_extends(name, raw, known)
    seed = merged.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ProfileError(f"profile {name}: field seed: {seed!r} is not an integer >= 0")
    return Profile(name=name, description=str(merged.get("description") or ""),
                   up=parse_direction(name, "up", merged.get("up")),
                   down=parse_direction(name, "down", merged.get("down")), seed=seed)


def _read_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        text = resources.files(__package__).joinpath("profiles.yaml").read_text()
        where = "profiles.yaml (shipped)"
    else:
        text = Path(path).read_text()
        where = str(path)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ProfileError(f"{where}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles", {}), dict):
        raise ProfileError(f"{where}: expected a mapping with a 'profiles' mapping")
    return doc


def load_profiles(user_file: Path | str | None = None) -> dict[str, Profile]:
    """The shipped profiles, overridden/extended by ``user_file`` (same format), validated.

    A user profile replaces a shipped one of the same name; ``extends: NAME`` starts from
    another profile (``extends`` naming the profile itself means the shipped version).
    """
    shipped: dict[str, Any] = {str(k): v for k, v in _read_yaml(None)["profiles"].items()}
    user: dict[str, Any] = {}
    if user_file is not None:
        user = {str(k): v for k, v in _read_yaml(Path(user_file)).get("profiles", {}).items()}
    out: dict[str, Profile] = {}
    for name, body in {**shipped, **user}.items():
        if name in user:
            known = {**shipped, **{k: v for k, v in user.items() if k != name}}
            if not (isinstance(body, Mapping) and body.get("extends") == name):
                known.pop(name, None)
        else:
            known = {k: v for k, v in shipped.items() if k != name}
        out[name] = parse_profile(name, body, known)
    return out


def get_profile(name: str, profiles: Mapping[str, Profile] | None = None) -> Profile:
    """Look a profile up by name; unknown names are a one-line ProfileError listing known ones."""
    table = load_profiles() if profiles is None else profiles
    if name not in table:
        raise ProfileError(f"profile {name}: unknown profile (known: {', '.join(sorted(table))})")
    return table[name]
