"""NFQUEUE numbers, iptables chains and the bridge-nf sysctl shared by the handles of one node
namespace: :class:`QueueSlot` (one handle's share), :class:`QueueAllocator` and the
process-wide :data:`ALLOCATOR`."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from . import rules
from .rules import RuleError
from .state import NetemError

QUEUE_FIRST = 100  # the lowest NFQUEUE number handed out (below: left to other users)
QUEUE_LAST = 65535  # NFQUEUE numbers are 16 bits


@dataclass(frozen=True)
class QueueSlot:
    """NFQUEUE numbers ``first .. first + count - 1`` and iptables chain ``chain`` of node
    namespace ``node_netns``, reserved for one handle by :meth:`QueueAllocator.reserve`."""

    node_netns: str
    chain: str
    first: int
    count: int

    @property
    def queues(self) -> range:
        return range(self.first, self.first + self.count)


class QueueAllocator:
    """Queue ranges, chains and the bridge-nf sysctl of the node namespaces this process shapes.

    Slots alive at the same time in one node namespace never share a queue number or a chain
    (different node namespaces may: NFQUEUE numbers and iptables chains are per network
    namespace). Besides its own live slots, :meth:`reserve` avoids every ``ZTFL-NETEM*`` chain
    and queue number it finds in the node namespace's rules (another process's handles, or
    what a failed stop left), so a clash there is skipped instead of failing ``iptables -N``
    or the delay line's queue bind.

    ``net.bridge.bridge-nf-call-iptables`` is one value per node namespace that every delay
    line there needs at 1. Saving and restoring it per handle breaks as soon as two overlap
    (the first to stop would restore 0 under the other, whose packets would then bypass
    iptables and go undelayed while its rules still look installed), so it is reference
    counted here: the first :meth:`bridge_acquire` records the old value, the last
    :meth:`bridge_release` restores it, and then only if no ``ZTFL-NETEM*`` chain remains in
    the namespace (another process's handle would still need it; leaving 1 behind is the safe
    error, restoring 0 under live rules is not).
    """

    def __init__(self, first: int = QUEUE_FIRST, last: int = QUEUE_LAST) -> None:
        self.first, self.last = first, last
        self._lock = threading.Lock()
        self._slots: dict[str, list[QueueSlot]] = {}
        self._bridge: dict[str, tuple[int, int]] = {}  # node netns -> (old value, users)

    def live(self, node_netns: str) -> list[QueueSlot]:
        """The slots reserved and not yet released in ``node_netns``."""
        with self._lock:
            return list(self._slots.get(node_netns, ()))

    def reserve(self, node_netns: str, count: int, *, first: int | None = None,
                chain: str | None = None) -> QueueSlot:
        """Reserve ``count`` consecutive queue numbers (the lowest free range, or from
        ``first``) and a chain (``ZTFL-NETEM-<first>``, or ``chain``) in ``node_netns``.
        Raises NetemError when the range or the chain is taken or no range is free."""
        if count < 1:
            raise NetemError(f"reserve: {count} queues")
        in_kernel = rules.present(node_netns)  # a subprocess: outside the lock
        with self._lock:
            live = self._slots.get(node_netns, [])
            busy = [(s.first, s.first + s.count) for s in live]
            busy += [(q, q + 1) for qs in in_kernel.values() for q in qs]
            names = {s.chain for s in live} | set(in_kernel)

            def clash(at: int) -> list[int]:
                return [end for start, end in busy if start < at + count and at < end]

            if first is None:
                at = self.first
                while at + count - 1 <= self.last:
                    ends = clash(at)
                    if ends:
                        at = max(ends)
                    elif chain is None and rules.chain_name(str(at)) in names:
                        at += 1
                    else:
                        break
                else:
                    raise NetemError(f"no {count} free NFQUEUE numbers in {node_netns} "
                                     f"({len(live)} handles live)")
                first = at
            elif first < 0 or first + count - 1 > QUEUE_LAST or clash(first):
                raise NetemError(f"NFQUEUE {first}..{first + count - 1} in {node_netns}: "
                                 "taken or out of range 0..65535")
            name = chain if chain is not None else rules.chain_name(str(first))
            if not rules.is_ours(name) or len(name) > rules.CHAIN_MAX_LEN:
                raise NetemError(f"chain {name!r}: not a netem chain name (rules.chain_name)")
            if name in names:
                raise NetemError(f"chain {name} already exists in {node_netns}")
            slot = QueueSlot(node_netns, name, first, count)
            self._slots.setdefault(node_netns, []).append(slot)
            return slot

    def release(self, slot: QueueSlot) -> None:
        """Free ``slot`` (its queues must be unbound and its chain removed by then)."""
        with self._lock:
            live = self._slots.get(slot.node_netns, [])
            if slot in live:
                live.remove(slot)
            if not live:
                self._slots.pop(slot.node_netns, None)

    def bridge_acquire(self, node_netns: str) -> None:
        """Set bridge-nf-call-iptables to 1 in ``node_netns`` for one more user."""
        with self._lock:
            old = rules.bridge_nf(node_netns, 1)  # set again even if counted: cheap, robust
            saved, users = self._bridge.get(node_netns, (old, 0))
            self._bridge[node_netns] = (saved, users + 1)

    def bridge_release(self, node_netns: str) -> list[str]:
        """One user fewer; the last one restores the old value (see the class docstring).
        Returns the problems (empty if none)."""
        with self._lock:
            if node_netns not in self._bridge:
                return []
            saved, users = self._bridge.pop(node_netns)
            if users > 1:
                self._bridge[node_netns] = (saved, users - 1)
                return []
            if saved == 1 or rules.chains(node_netns):
                return []
            try:
                rules.bridge_nf(node_netns, saved)
            except RuleError as e:
                return [str(e)]
            return []


ALLOCATOR = QueueAllocator()
"""The process-wide allocator :func:`.overlay.apply` and the local backend's overlay reserve
from."""
