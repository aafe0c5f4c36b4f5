"""Render (and run) the tc commands of the NET overlay: tbf for rate, netem where it exists.

Rendering is pure and unit-tested; :func:`run_all` executes a rendered list. Rate is shaped on
the egress of each hop: the client pod's ``eth0`` shapes client->server (``up``) and the node
side of the client's veth shapes server->client (``down``), so both directions of each client
link are shaped and no other pair of pods is touched.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass

from .profiles import Direction, Profile, queue_limit_bytes

MTU_FRAME = 1514


class TcError(RuntimeError):
    """A tc command failed; the message carries the command and tc's stderr."""


@dataclass(frozen=True)
class Hop:
    """Where one direction of a client link is shaped: ``dev`` egress inside ``netns``."""

    netns: str
    dev: str


def _kbit(rate_mbit: float) -> str:
    return f"{round(rate_mbit * 1000, 3):g}kbit"


def tbf_burst_bytes(rate_mbit: float) -> int:
    """Bucket size: 2 ms worth of the rate, at least 4 full frames (tbf needs >= 1 MTU)."""
    return max(4 * MTU_FRAME, math.ceil(rate_mbit * 1e6 / 8 * 0.002))


def tbf_args(profile: Profile, direction: str) -> list[str]:
    """``tbf rate .. burst .. limit ..`` for a rate-limited direction (limit = queue in bytes)."""
    d = profile.direction(direction)
    assert d.rate_mbit is not None
    limit = queue_limit_bytes(profile, direction) or 0
    burst = tbf_burst_bytes(d.rate_mbit)
    return ["tbf", "rate", _kbit(d.rate_mbit), "burst", str(burst), "limit", str(limit + burst)]


def netem_args(d: Direction, limit_pkts: int) -> list[str]:
    """netem parameters for one direction (the kernel path).

    ``rate 10gbit`` is added when jitter must not reorder: netem then schedules each packet
    after the one ahead of it (FIFO, like the delay line); 1.2 us/packet of serialisation.
    """
    a = ["netem", "limit", str(limit_pkts), "delay", f"{d.delay_ms:g}ms"]
    if d.jitter_ms > 0:
        a.append(f"{d.jitter_ms:g}ms")
        if d.jitter_dist in ("normal", "paretonormal"):
            a += ["distribution", d.jitter_dist]
    if d.loss_pct > 0:
        if d.loss_model == "gilbert" and d.loss_burst > 1:
            r = 100.0 / d.loss_burst
            p = r * d.loss_pct / (100.0 - d.loss_pct)
            a += ["loss", "gemodel", f"{p:.6g}%", f"{r:.6g}%"]
        else:
            a += ["loss", "random", f"{d.loss_pct:g}%"]
    if d.jitter_ms > 0 and not d.reorder:
        a += ["rate", "10gbit"]
    return a


def render_rate(profile: Profile, direction: str, hop: Hop) -> list[list[str]]:
    """Commands that rate-limit one direction with tbf (nothing if the direction is unrated)."""
    if profile.direction(direction).rate_mbit is None:
        return []
    return [["tc", "-n", hop.netns, "qdisc", "replace", "dev", hop.dev, "root", "handle", "1:",
             *tbf_args(profile, direction)]]


def render_netem(profile: Profile, direction: str, hop: Hop) -> list[list[str]]:
    """Commands for the kernel-netem path: netem at the root, tbf as its child for rate."""
    d = profile.direction(direction)
    if not (d.impaired or d.shaped):
        return []
    rate_pps = (d.rate_mbit or 10_000.0) * 1e6 / 8 / MTU_FRAME
    hold_s = (d.delay_ms + 4 * d.jitter_std_ms) / 1e3
    limit = max(1000, math.ceil(2 * rate_pps * hold_s))
    cmds = [["tc", "-n", hop.netns, "qdisc", "replace", "dev", hop.dev, "root", "handle", "1:",
             *netem_args(d, limit)]]
    if d.rate_mbit is not None:
        cmds.append(["tc", "-n", hop.netns, "qdisc", "replace", "dev", hop.dev, "parent", "1:1",
                     "handle", "10:", *tbf_args(profile, direction)])
    return cmds


def render_drop_rate(hop: Hop) -> list[str]:
    """Remove the tbf child of the kernel path's netem (a profile change that drops the rate:
    ``replace`` of the root netem keeps its children). Run unchecked: it may not exist."""
    return ["tc", "-n", hop.netns, "qdisc", "del", "dev", hop.dev, "parent", "1:1"]


def render_clear(hop: Hop) -> list[str]:
    return ["tc", "-n", hop.netns, "qdisc", "del", "dev", hop.dev, "root"]


def run(cmd: list[str], *, check: bool = True) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise TcError(f"{' '.join(cmd)}: {p.stderr.strip() or p.returncode}")
    return p.stdout


def run_all(cmds: list[list[str]]) -> None:
    for c in cmds:
        run(c)


def clear(hop: Hop) -> None:
    """Remove whatever root qdisc we put on ``hop`` (absent qdisc or namespace is fine)."""
    run(render_clear(hop), check=False)


def qdisc_drops(hop: Hop) -> int | None:
    """Packets the root qdisc of ``hop`` dropped (tbf overflow), or None if unreadable."""
    out = run(["tc", "-n", hop.netns, "-s", "qdisc", "show", "dev", hop.dev, "root"],
              check=False)
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Sent") and "dropped" in line:
            return int(line.split("dropped")[1].split(",")[0].strip())
    return None
