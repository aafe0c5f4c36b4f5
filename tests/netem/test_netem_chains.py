"""A chain and a queue range per NET handle (no kernel needed): chain names, the rendered
iptables commands, parsing what a node namespace holds, queue slot allocation and the
reference-counted bridge sysctl. The live behaviour is tests/netem/test_netem_concurrent.py."""

from __future__ import annotations

import subprocess

import pytest

from k8s_fixtures.netem import overlay, rules
from k8s_fixtures.netem.overlay import NetemError, QueueAllocator
from k8s_fixtures.netem.rules import QueueRule, chain_name, render_removal, render_rules

IPT = ["iptables", "-w", "5", "-t", "filter"]


def test_chain_names_are_short_valid_and_prefixed() -> None:
    assert chain_name("100") == "ZTFL-NETEM-100"
    assert chain_name("65535") == "ZTFL-NETEM-65535"
    longest = chain_name("x" * 17)
    assert len(longest) == rules.CHAIN_MAX_LEN == 28
    for bad in ("", "x" * 18, "a b", "-1", "a--b", "a-", "a/b", "a;b"):
        with pytest.raises(ValueError, match="netem chain tag"):
            chain_name(bad)
    assert rules.is_ours("ZTFL-NETEM-100") and rules.is_ours("ZTFL-NETEM")
    assert not rules.is_ours("ZTFL-NETEMX") and not rules.is_ours("FORWARD")


def test_two_handles_render_disjoint_chains_and_removal_names_only_its_own() -> None:
    a = render_rules("n", "ZTFL-NETEM-100", [QueueRule(100, "va", "vs"),
                                              QueueRule(101, "vs", "va")])
    b = render_rules("n", "ZTFL-NETEM-102", [QueueRule(102, "vb", "vt"),
                                              QueueRule(103, "vt", "vb")])
    prefix = ["ip", "netns", "exec", "n", *IPT]
    assert a[0] == [*prefix, "-N", "ZTFL-NETEM-100"]
    assert b[0] == [*prefix, "-N", "ZTFL-NETEM-102"]
    assert a[1] == [*prefix, "-I", "FORWARD", "1", "-j", "ZTFL-NETEM-100"]
    assert b[1] == [*prefix, "-I", "FORWARD", "1", "-j", "ZTFL-NETEM-102"]
    assert {c[10] for c in a[2:]} == {"ZTFL-NETEM-100"}
    assert {c[10] for c in b[2:]} == {"ZTFL-NETEM-102"}
    assert [c[c.index("--queue-num") + 1] for c in b[2:]] == ["102", "103"]
    assert render_removal("n", "ZTFL-NETEM-102") == [
        [*prefix, "-D", "FORWARD", "-j", "ZTFL-NETEM-102"],
        [*prefix, "-F", "ZTFL-NETEM-102"],
        [*prefix, "-X", "ZTFL-NETEM-102"]]
    for bad in ("FORWARD", "DOCKER", "ZTFL-NETEM-" + "x" * 20):
        with pytest.raises(ValueError, match="not a netem chain"):
            render_removal("n", bad)
        with pytest.raises(ValueError, match="not a netem chain"):
            render_rules("n", bad, [])


SAVED = """-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N OTHER
-N ZTFL-NETEM-100
-N ZTFL-NETEM-1000
-A FORWARD -j ZTFL-NETEM-1000
-A FORWARD -j ZTFL-NETEM-100
-A FORWARD -j OTHER
-A OTHER -j NFQUEUE --queue-num 7
-A ZTFL-NETEM-100 -m physdev --physdev-in va --physdev-out vs --physdev-is-bridged \
-j NFQUEUE --queue-num 100 --queue-bypass
-A ZTFL-NETEM-100 -m physdev --physdev-in vs --physdev-out va --physdev-is-bridged \
-j NFQUEUE --queue-num 101 --queue-bypass
"""


def _fake_iptables(monkeypatch: pytest.MonkeyPatch, text: str) -> list[list[str]]:
    ran: list[list[str]] = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        ran.append(cmd)
        out = text
        if cmd[-2:] == ["-S", "FORWARD"]:
            out = "".join(line + "\n" for line in text.splitlines()
                          if line.startswith(("-P FORWARD", "-A FORWARD")))
        return subprocess.CompletedProcess(cmd, 0, out, "")

    monkeypatch.setattr(rules, "_run", run)
    return ran


def test_present_chains_and_installed_tell_handles_apart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _fake_iptables(monkeypatch, SAVED)
    assert rules.present("n") == {"ZTFL-NETEM-100": [100, 101], "ZTFL-NETEM-1000": []}
    assert rules.chains("n") == ["ZTFL-NETEM-100", "ZTFL-NETEM-1000"]
    assert rules.installed("n", "ZTFL-NETEM-100")
    assert rules.installed("n", "ZTFL-NETEM-1000")
    assert not rules.installed("n", "ZTFL-NETEM-10")  # a prefix of both: exact names only
    ran.clear()
    _fake_iptables(monkeypatch, SAVED.replace("-A FORWARD -j ZTFL-NETEM-100\n", ""))
    assert not rules.installed("n", "ZTFL-NETEM-100")
    assert rules.installed("n", "ZTFL-NETEM-1000")


def test_remove_all_removes_every_netem_chain_and_nothing_else(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _fake_iptables(monkeypatch, SAVED)
    assert rules.remove_all("n") == []
    touched = {c[-1] for c in ran if c[9] in ("-F", "-X")}
    assert touched == {"ZTFL-NETEM-100", "ZTFL-NETEM-1000"}
    assert not any("OTHER" in c for c in ran)


def test_install_failing_part_way_removes_only_its_own_chain(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        ran.append(cmd)
        bad = cmd[9] == "-A" and "--queue-num" in cmd
        return subprocess.CompletedProcess(cmd, 1 if bad or (cmd[9] == "-D" and len(ran) > 4)
                                           else 0, "", "boom" if bad else "")

    monkeypatch.setattr(rules, "_run", run)
    with pytest.raises(rules.RuleError, match="boom"):
        rules.install("n", "ZTFL-NETEM-102", [QueueRule(102, "vb", "vt")])
    assert [c[9] for c in ran] == ["-N", "-I", "-A", "-D", "-D", "-F", "-X"]
    assert {c[-1] for c in ran} == {"ZTFL-NETEM-102", "--queue-bypass"}

    # a chain that already exists is someone else's: nothing is removed
    ran.clear()
    monkeypatch.setattr(rules, "_run", lambda cmd: ran.append(cmd) or subprocess.CompletedProcess(
        cmd, 1, "", "iptables: Chain already exists."))
    with pytest.raises(rules.RuleError, match="already exists"):
        rules.install("n", "ZTFL-NETEM-100", [QueueRule(100, "va", "vs")])
    assert [c[9] for c in ran] == ["-N"]


def test_allocator_never_overlaps_live_slots_and_reuses_freed_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "present", lambda netns: {})
    al = QueueAllocator()
    a = al.reserve("n", 4)
    b = al.reserve("n", 2)
    c = al.reserve("other-node", 4)  # queue numbers are per namespace: may repeat there
    assert (a.first, a.count, a.chain) == (100, 4, "ZTFL-NETEM-100")
    assert (b.first, b.chain) == (104, "ZTFL-NETEM-104")
    assert (c.first, c.chain) == (100, "ZTFL-NETEM-100")
    al.release(a)
    d = al.reserve("n", 6)  # does not fit the freed 100..103: after b
    e = al.reserve("n", 2)  # fits the freed range
    assert (d.first, e.first) == (106, 100)
    live = al.live("n")
    assert set(live) == {b, d, e}
    qs = [q for s in live for q in s.queues]
    assert len(qs) == len(set(qs)) and len({s.chain for s in live}) == 3
    al.release(e)
    al.release(e)  # idempotent
    with pytest.raises(NetemError, match="taken"):
        al.reserve("n", 2, first=105)
    with pytest.raises(NetemError, match="out of range"):
        al.reserve("n", 4, first=65534)
    with pytest.raises(NetemError, match="already exists"):
        al.reserve("n", 2, first=200, chain=b.chain)
    with pytest.raises(NetemError, match="not a netem chain"):
        al.reserve("n", 2, first=200, chain="FORWARD")
    top = QueueAllocator(first=65530)
    top.reserve("n", 6)
    with pytest.raises(NetemError, match="no 1 free NFQUEUE"):
        top.reserve("n", 1)


def test_allocator_skips_chains_and_queues_already_in_the_namespace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's handle (or what a failed stop left) is not handed out again."""
    monkeypatch.setattr(rules, "present", lambda netns: {"ZTFL-NETEM-100": [100, 101],
                                                         "ZTFL-NETEM-102": []})
    s = QueueAllocator().reserve("n", 2)
    assert (s.first, s.chain) == (103, "ZTFL-NETEM-103")


def test_bridge_sysctl_is_restored_by_the_last_user_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"n": 0}
    left: list[str] = []

    def bridge_nf(netns: str, v: int | None = None) -> int:
        old = value[netns]
        if v is not None:
            value[netns] = v
        return old

    monkeypatch.setattr(rules, "bridge_nf", bridge_nf)
    monkeypatch.setattr(rules, "chains", lambda netns: list(left))
    al = QueueAllocator()
    al.bridge_acquire("n")
    al.bridge_acquire("n")
    assert value["n"] == 1
    assert al.bridge_release("n") == []
    assert value["n"] == 1  # the other handle still needs it
    assert al.bridge_release("n") == []
    assert value["n"] == 0  # the last one restores the value found before the first
    assert al.bridge_release("n") == []  # an extra release changes nothing
    assert value["n"] == 0
    # a chain another process installed still needs it: left at 1
    al.bridge_acquire("n")
    left.append("ZTFL-NETEM-300")
    assert al.bridge_release("n") == [] and value["n"] == 1


def test_apply_rejects_a_slot_that_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from k8s_fixtures.netem.profiles import get_profile

    monkeypatch.setattr(rules, "present", lambda netns: {})
    monkeypatch.setattr(overlay, "ALLOCATOR", QueueAllocator())
    link = SimpleNamespace(netns="c0", host_if="vc0", pod_if="eth0")
    srv = SimpleNamespace(netns="s", host_if="vs", pod_if="eth0")
    small = overlay.ALLOCATOR.reserve("node", 1)
    with pytest.raises(NetemError, match="does not fit"):
        overlay.apply(get_profile("NET0"), "node", [(link, srv)], slot=small)
    elsewhere = overlay.ALLOCATOR.reserve("other", 2)
    with pytest.raises(NetemError, match="does not fit"):
        overlay.apply(get_profile("NET0"), "node", [(link, srv)], slot=elsewhere)
    overlay.ALLOCATOR.release(small)
    freed = overlay.QueueSlot("node", "ZTFL-NETEM-100", 100, 2)
    with pytest.raises(NetemError, match="not reserved"):
        overlay.apply(get_profile("NET0"), "node", [(link, srv)], slot=freed)
    # NET0 needs no mechanism: the handle still holds (and on stop frees) its own slot
    h = overlay.apply(get_profile("NET0"), "node", [(link, srv)])
    assert h.mechanism == "none" and h.slot is not None
    assert h.slot in overlay.ALLOCATOR.live("node")
    assert (h.links[0].up_queue, h.links[0].down_queue) == (100, 101)
    h.stop()
    assert overlay.ALLOCATOR.live("node") == []
