"""Rendering of tc/iptables commands and mechanism choice (no kernel needed)."""

from __future__ import annotations

import pytest

from k8s_fixtures.netem import overlay, tc
from k8s_fixtures.netem.plan import NetPlan
from k8s_fixtures.netem.profiles import get_profile, parse_profile
from k8s_fixtures.netem.rules import QueueRule, render_removal, render_rules

HOP = tc.Hop("ztx-c0", "eth0")


def test_tbf_rendering_net2_up() -> None:
    cmds = tc.render_rate(get_profile("NET2"), "up", HOP)
    # limit = one BDP at 20 Mbit/s over 50 ms + 4 sigma of jitter (58 ms) + the bucket
    assert cmds == [["tc", "-n", "ztx-c0", "qdisc", "replace", "dev", "eth0", "root",
                     "handle", "1:", "tbf", "rate", "20000kbit", "burst", "6056",
                     "limit", str(145000 + 6056)]]
    assert tc.render_rate(get_profile("NET0"), "up", HOP) == []


def test_netem_rendering_normal_jitter_loss_and_rate() -> None:
    cmds = tc.render_netem(get_profile("NET3"), "down", HOP)
    assert cmds[0] == ["tc", "-n", "ztx-c0", "qdisc", "replace", "dev", "eth0", "root",
                       "handle", "1:", "netem", "limit", "1000", "delay", "25ms", "2ms",
                       "distribution", "normal", "loss", "random", "1%", "rate", "10gbit"]
    assert cmds[1][:10] == ["tc", "-n", "ztx-c0", "qdisc", "replace", "dev", "eth0",
                            "parent", "1:1", "handle"]
    assert cmds[1][11:14] == ["tbf", "rate", "50000kbit"]


def test_netem_rendering_uniform_gilbert_reorder() -> None:
    p = parse_profile("G", {"up": {"delay_ms": 40, "jitter_ms": 10, "jitter_dist": "uniform",
                                   "loss_pct": 2, "loss_model": "gilbert", "loss_burst": 4,
                                   "reorder": True}})
    (cmd,) = tc.render_netem(p, "up", HOP)
    # unrated: the packet limit assumes 10 Gbit/s of full frames held 40 ms + 4 sigma, x2
    assert cmd[10:] == ["netem", "limit", "104185", "delay", "40ms", "10ms",
                        "loss", "gemodel", "0.510204%", "25%"]
    assert tc.render_netem(get_profile("NET0"), "up", HOP) == []


def test_iptables_rendering_hooks_bridge_forward_only() -> None:
    cmds = render_rules("n-node", "ZTFL-NETEM-100",
                        [QueueRule(100, "vc", "vs"), QueueRule(101, "vs", "vc")])
    assert cmds[1] == ["ip", "netns", "exec", "n-node", "iptables", "-w", "5", "-t", "filter",
                       "-I", "FORWARD", "1", "-j", "ZTFL-NETEM-100"]
    assert cmds[2][9:] == ["-A", "ZTFL-NETEM-100", "-m", "physdev", "--physdev-is-bridged",
                           "--physdev-in", "vc", "--physdev-out", "vs", "-j", "NFQUEUE",
                           "--queue-num", "100", "--queue-bypass"]
    assert not any("OUTPUT" in c for cmd in cmds for c in cmd)
    assert [c[9] for c in render_removal("n-node", "ZTFL-NETEM-100")] == ["-D", "-F", "-X"]


def test_queue_length_follows_bdp() -> None:
    net4 = get_profile("NET4")
    # 10 Mbit/s = 826 frames/s held 95 ms (75 + 4 sigma), x2 -> well under the 1024 floor
    assert overlay.queue_max_len([net4], "up") == 1024
    fast = parse_profile("F", {"up": {"delay_ms": 200, "rate_mbit": 1000},
                               "down": {"delay_ms": 200, "rate_mbit": 1000}})
    assert overlay.queue_max_len([fast], "up") == pytest.approx(
        2 * 1000e6 / 8 / 1514 * 0.2 + 64, abs=2)
    unrated = parse_profile("U", {"up": {"delay_ms": 10}})
    assert overlay.queue_max_len([unrated], "up") == 2 * 150_000 * 0.01 + 64


def test_mechanism_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    net2 = NetPlan(get_profile("NET2"))
    assert overlay.choose_mechanism(NetPlan(get_profile("NET0")), "auto")[0] == "none"
    monkeypatch.setattr(overlay, "probe_netem", lambda: (False, "no netem here"))
    assert overlay.choose_mechanism(net2, "auto") == ("delayline", "no netem here")
    with pytest.raises(overlay.NetemError, match="forced but the kernel has no netem"):
        overlay.choose_mechanism(net2, "netem")
    monkeypatch.setattr(overlay, "probe_netem", lambda: (True, "ok"))
    assert overlay.choose_mechanism(net2, "auto")[0] == "netem"
    assert overlay.choose_mechanism(net2, "delayline")[0] == "delayline"
    with pytest.raises(overlay.NetemError, match="expected one of"):
        overlay.choose_mechanism(net2, "magic")


def test_kernel_path_drops_the_tbf_child_when_a_profile_loses_its_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``tc qdisc replace`` of the root netem keeps its children: a change to a profile
    without a rate must delete the old tbf (unchecked, it may be absent); a rated profile
    must not."""
    from types import SimpleNamespace

    from k8s_fixtures.netem.overlay import LinkState, NetemHandle

    ran: list[tuple[list[str], bool]] = []
    monkeypatch.setattr(tc, "run", lambda cmd, check=True: ran.append((cmd, check)) or "")
    monkeypatch.setattr(tc, "run_all", lambda cmds: [ran.append((c, True)) for c in cmds])
    client = SimpleNamespace(netns="cli", pod_if="eth0", host_if="vcli")
    server = SimpleNamespace(netns="srv", pod_if="eth0", host_if="vsrv")
    rated = get_profile("NET2")
    unrated = parse_profile("U", {"up": {"delay_ms": 25}, "down": {"delay_ms": 25}})
    link = LinkState(client, server, rated, 100, 101)
    h = NetemHandle(NetPlan(default=rated), "node", [link], "netem", "test", None, 0.2)
    h._shape(link)
    assert not [c for c, _ in ran if "del" in c]
    ran.clear()
    link.profile = unrated
    h._shape(link)
    drops = [(c, check) for c, check in ran if "del" in c and c[-2:] == ["parent", "1:1"]]
    assert [c for c, _ in drops] == [tc.render_drop_rate(tc.Hop("cli", "eth0")),
                                      tc.render_drop_rate(tc.Hop("node", "vcli"))]
    assert all(check is False for _, check in drops)
    # each drop comes before that hop's netem replace
    cmds = [c for c, _ in ran]
    for hop in (tc.Hop("cli", "eth0"), tc.Hop("node", "vcli")):
        drop = cmds.index(tc.render_drop_rate(hop))
        replace = next(i for i, c in enumerate(cmds) if c[:3] == ["tc", "-n", hop.netns]
                       and "replace" in c and "netem" in c)
        assert drop < replace
