"""What a NET overlay handle is made of and reports: the errors it raises, what it needs of a
pod link, one client link's state (hops, queues, current profile), and a status snapshot."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from . import tc
from .profiles import Profile


class LinkLike(Protocol):
    """What we need of a pod link (``k8s_fixtures.local.topology.PodLink`` fits)."""

    netns: str
    host_if: str
    pod_if: str


class NetemError(RuntimeError):
    """Applying, changing or removing the NET overlay failed."""


class NetemFailure(NetemError):
    """The emulation stopped being in force during a run: the run must fail with class netem."""

    failure_class = "netem"


@dataclass
class LinkState:
    """One client link: its hops, its queues, and the profile currently applied."""

    client: LinkLike
    server: LinkLike
    profile: Profile
    up_queue: int
    down_queue: int

    def up_hop(self) -> tc.Hop:  # client -> server leaves through the client's eth0
        return tc.Hop(self.client.netns, self.client.pod_if)

    def down_hop(self, node_netns: str) -> tc.Hop:  # server -> client leaves the node's veth
        return tc.Hop(node_netns, self.client.host_if)


@dataclass(frozen=True)
class NetemStatus:
    """A snapshot: mechanism, liveness, per-client profile, and the delay line's counters."""

    mechanism: str
    alive: bool
    reason: str
    pid: int | None
    heartbeat_age_s: float | None
    profiles: dict[str, str]
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    kernel_queue_drops: int = 0
    transport: dict[str, Any] = field(default_factory=dict)  # data plane (c/python), counters

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

