"""Rate inside the delay line: a link's serialisation at its rate, a byte-limited FIFO, and
the Ethernet frames a (GSO) packet will be on the wire.

Why not tbf (issue 14 item 5): a tbf on the client's ``eth0`` cuts TCP's GSO packets into MSS
segments before the delay line sees them, and a tbf after it miscounts GSO packets it sends
whole; so with tbf the delay line handled every segment. Shaping here, as netem's own ``rate``
does, lets a GSO packet be queued, held and released whole, charged for every frame it will be
on the wire.

The model, per class (one direction of one link): a packet arriving at ``t`` starts its
serialisation when the packets ahead of it are through (``max(t, busy_until)``) and takes
``frames / rate``; then the class's delay applies. A packet that would find more than
``limit`` bytes ahead of it is dropped, as tbf's byte limit does (tail drop), except into an
empty queue. :mod:`.delayline` and the C data plane (``dataplane.c``, ``shape()``) implement
the same arithmetic; ``test_netem_shaper.py`` checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ETH_HEADER = 14  # bytes an Ethernet frame adds to an IP packet (the rate counts frames)
HEAD = 128  # bytes of each queued packet the kernel copies: IP and TCP headers with options


def ip_lengths(head: bytes | bytearray | memoryview, at: int = 0, n: int | None = None
               ) -> tuple[int, int]:
    """``(packet length, header length)`` from the first bytes of an IP packet: the length
    its IP header states (a GSO packet's is the whole packet's) and the IP plus TCP (or UDP)
    headers each segment repeats. ``(0, 0)`` if the bytes are no IP packet."""
    end = len(head) if n is None else at + n
    if end - at < 20:
        return 0, 0
    version = head[at] >> 4
    if version == 4:
        length = head[at + 2] << 8 | head[at + 3]
        hl, proto = (head[at] & 0x0F) * 4, head[at + 9]
    elif version == 6 and end - at >= 40:
        length = 40 + (head[at + 4] << 8 | head[at + 5])
        hl, proto = 40, head[at + 6]
    else:
        return 0, 0
    if proto == 6 and end - at >= hl + 13:
        hl += (head[at + hl + 12] >> 4) * 4
    elif proto == 17:
        hl += 8
    return length, hl


def frame_bytes(length: int, header: int, mtu: int) -> int:
    """Bytes on the wire (Ethernet frames) of an IP packet of ``length`` bytes: one frame, or
    for a GSO packet longer than ``mtu`` the MSS-sized segments it is cut into, each with
    its own copy of the ``header`` bytes. TCP's segments fill the MTU (its MSS is the MTU
    minus the headers on these links)."""
    if length <= mtu or header <= 0 or header >= mtu:
        return length + ETH_HEADER
    segs = math.ceil((length - header) / (mtu - header))
    return length + (segs - 1) * header + segs * ETH_HEADER


@dataclass
class Shaper:
    """One class's serialiser: ``rate`` bytes per second, at most ``limit`` bytes queued."""

    rate: float
    limit: int
    busy_until: float = 0.0
    dropped: int = 0

    def admit(self, arrived: float, frames: int) -> float | None:
        """When a packet of ``frames`` bytes arriving at ``arrived`` is through the link
        (its delay counts from then), or None: dropped at the byte limit."""
        start = self.busy_until if self.busy_until > arrived else arrived
        if start > arrived and (start - arrived) * self.rate + frames > self.limit:
            self.dropped += 1
            return None
        self.busy_until = start + frames / self.rate
        return self.busy_until
