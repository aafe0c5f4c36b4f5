"""The NET overlay: network profiles (delay, jitter, loss, rate per direction) on pod links.

Profiles are data (``profiles.yaml``, overridable). ``apply()`` realises a profile or a
per-client plan on (client, server) pod links with kernel netem where the kernel has it, else a
userspace NFQUEUE delay line on the node's bridge FORWARD path, which shapes the rate too; the
returned handle changes profiles, reports liveness (a dead delay line is a ``netem`` failure) and
removes everything on ``stop()``. ``calibrate()`` measures what a profile really does.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .overlay import NetemError, NetemFailure, NetemHandle, NetemStatus, apply
    from .plan import NetPlan, Step, parse_plan
    from .profiles import (
        Direction,
        Profile,
        ProfileError,
        get_profile,
        load_profiles,
        min_transfer_time_s,
        round_budget_warning,
    )

# Loaded on first use (PEP 562): the calibration probes and the delay line run as
# ``python -m k8s_fixtures.netem.<module>`` and need none of the overlay (~80 ms to import).
_FROM = {
    **dict.fromkeys(("NetemError", "NetemFailure", "NetemHandle", "NetemStatus", "apply"),
                    "overlay"),
    **dict.fromkeys(("NetPlan", "Step", "parse_plan"), "plan"),
    **dict.fromkeys(("Direction", "Profile", "ProfileError", "get_profile", "load_profiles",
                     "min_transfer_time_s", "round_budget_warning"), "profiles"),
}


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)


__all__ = [
    "Direction",
    "NetPlan",
    "NetemError",
    "NetemFailure",
    "NetemHandle",
    "NetemStatus",
    "Profile",
    "ProfileError",
    "Step",
    "apply",
    "get_profile",
    "load_profiles",
    "min_transfer_time_s",
    "parse_plan",
    "round_budget_warning",
]
