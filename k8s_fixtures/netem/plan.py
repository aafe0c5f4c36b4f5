"""Which profile each client link gets, and how that changes during a run (per-client + schedule).

A :class:`NetPlan` is plain data: a default profile, per-client overrides and a schedule of
timed changes. Clients are named by their pod name or pod namespace; :meth:`NetPlan.resolve`
maps a plan onto the concrete client namespaces of a run and rejects names that match nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .profiles import NULL_PROFILE, Profile, ProfileError, get_profile


@dataclass(frozen=True)
class Step:
    """At ``at_s`` seconds after the schedule starts, switch to ``default``/``clients``."""

    at_s: float
    default: Profile | None = None
    clients: Mapping[str, Profile] = field(default_factory=dict)


@dataclass(frozen=True)
class NetPlan:
    """A default profile, per-client overrides, and an optional schedule of changes."""

    default: Profile
    clients: Mapping[str, Profile] = field(default_factory=dict)
    schedule: tuple[Step, ...] = ()

    @staticmethod
    def of(profile_or_plan: Profile | NetPlan) -> NetPlan:
        return profile_or_plan if isinstance(profile_or_plan, NetPlan) else NetPlan(
            profile_or_plan)

    def profiles(self) -> list[Profile]:
        """Every profile the plan can ever apply (for sizing queues and choosing a mechanism)."""
        out = [self.default, *self.clients.values()]
        for s in self.schedule:
            out += ([s.default] if s.default else []) + list(s.clients.values())
        return out

    def resolve(self, client_netns: Iterable[str]) -> dict[str, Profile]:
        """Profile per client namespace at the start of the run."""
        return _assign(self.default, self.clients, list(client_netns))

    def resolve_step(self, step: Step, current: Mapping[str, Profile]) -> dict[str, Profile]:
        """Profile per client namespace after ``step`` (unnamed clients keep theirs unless the
        step sets a new default)."""
        names = list(current)
        base = dict(current) if step.default is None else dict.fromkeys(names, step.default)
        base.update(_assign(None, step.clients, names, keep=base))
        return base


def _matches(key: str, netns: str) -> bool:
    return netns == key or netns.endswith(f"-{key}")


def _assign(default: Profile | None, clients: Mapping[str, Profile], names: list[str],
            keep: Mapping[str, Profile] | None = None) -> dict[str, Profile]:
    out: dict[str, Profile] = dict(keep or {})
    if default is not None:
        out.update(dict.fromkeys(names, default))
    for key, prof in clients.items():
        hits = [n for n in names if _matches(key, n)]
        if not hits:
            raise ProfileError(f"profile {prof.name}: field clients.{key}: no client link "
                               f"matches (clients: {', '.join(names)})")
        for n in hits:
            out[n] = prof
    return out


def parse_plan(raw: Any, profiles: Mapping[str, Profile]) -> NetPlan:
    """Build a plan from data, e.g. ``{"default": "NET2", "clients": {"client-1": "NET4"},
    "schedule": [{"at_s": 30, "default": "NET3"}]}``, or just a profile name."""
    if isinstance(raw, str):
        return NetPlan(get_profile(raw, profiles))
    if not isinstance(raw, Mapping):
        raise ProfileError(f"profile plan: expected a name or a mapping, got {raw!r}")

    def clients_of(d: Any) -> dict[str, Profile]:
        if d is None:
            return {}
        if not isinstance(d, Mapping):
            raise ProfileError(f"profile plan: field clients: expected a mapping, got {d!r}")
        return {str(k): get_profile(str(v), profiles) for k, v in d.items()}

    steps: list[Step] = []
    for i, s in enumerate(raw.get("schedule") or []):
        if not isinstance(s, Mapping) or "at_s" not in s:
            raise ProfileError(f"profile plan: field schedule[{i}]: needs at_s")
        at = s["at_s"]
        if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
            raise ProfileError(f"profile plan: field schedule[{i}].at_s: {at!r} is not >= 0")
        steps.append(Step(float(at), get_profile(str(s["default"]), profiles)
                          if s.get("default") else None, clients_of(s.get("clients"))))
    if [s.at_s for s in steps] != sorted(s.at_s for s in steps):
        raise ProfileError("profile plan: field schedule: steps are not in time order")
    return NetPlan(get_profile(str(raw.get("default", NULL_PROFILE)), profiles),
                   clients_of(raw.get("clients")), tuple(steps))
