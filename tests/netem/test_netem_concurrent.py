"""Several namespaces of one local cluster shaped at once, each by its own delay line.

A LocalCluster with the NET overlay (the delay line forced, so the test means the same on a
kernel with netem) deploys FL-shaped namespaces (one fl-server pod, annotated client pods) with
different jitter-free profiles from a profiles file. Each namespace gets its own delay line,
its own ``ZTFL-NETEM-<n>`` chain and NFQUEUE numbers no other shaped namespace uses. Evidence is
the TCP connect RTT of each client to its server (SYN up, RST down, through the emulation; the
median of several connects): one-sided bounds, since the delay line is late, never early.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from netem_support import netns_named, netns_pids, wait_until

from k8s_fixtures.local import state
from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.netem import rules
from k8s_fixtures.netem.local_overlay import ANNOTATION, NetemOverlay
from k8s_fixtures.netem.overlay import ALLOCATOR, NetemHandle
from k8s_fixtures.netem.profiles import load_profiles
from k8s_fixtures.netem.stats import percentile

pytestmark = pytest.mark.privileged
HARNESS = Path(__file__).with_name("ztnc_shaped_harness.py")

PROFILES = """profiles:
  D10:
    description: 10 ms each way, no jitter, no rate
    up:   {delay_ms: 10}
    down: {delay_ms: 10}
  D30:
    description: 30 ms each way, no jitter, no rate
    up:   {delay_ms: 30}
    down: {delay_ms: 30}
"""
SERVER = {"app.kubernetes.io/component": "fl-server"}
CONNECTS = 9

# Connects to a closed port of the server: SYN out, RST back, both through the link's emulation.
RTT = ("import json,socket,sys,time\nout=[]\nfor _ in range(int(sys.argv[2])):\n"
       " s=socket.socket(); t=time.monotonic()\n try: s.connect((sys.argv[1],9))\n"
       " except OSError: pass\n out.append((time.monotonic()-t)*1e3); s.close()\n"
       " time.sleep(0.005)\nprint(json.dumps(out))")


def _pod(ns: str, name: str, labels: dict[str, str], profile: str | None = None
         ) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "namespace": ns, "labels": labels}
    if profile:
        meta["annotations"] = {ANNOTATION: profile}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "command": ["sleep", "600"]}]}}


def _deploy(c: LocalCluster, ns: str, clients: dict[str, str]) -> None:
    """A namespace shaped like an FL cell: one fl-server pod, one annotated pod per client."""
    c.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
             _pod(ns, "srv", SERVER),
             *(_pod(ns, name, {"app": "client"}, prof) for name, prof in clients.items())])
    c.wait_ready(ns, timeout=30)


def _rtts_ms(c: LocalCluster, ns: str, pod: str) -> list[float]:
    ip = next(p.ip for p in c.pods(ns) if p.name == "srv")
    r = c.exec(ns, pod, [sys.executable, "-c", RTT, ip, str(CONNECTS)])
    assert r.rc == 0, r.err
    out = json.loads(r.out)
    assert isinstance(out, list) and len(out) == CONNECTS
    return [float(x) for x in out]


def _median(c: LocalCluster, ns: str, pod: str, log: list[str]) -> float:
    xs = _rtts_ms(c, ns, pod)
    m = percentile(xs, 50)
    log.append(f"{ns}/{pod}: median {m:.2f} ms of {CONNECTS} connects "
               f"(min {min(xs):.2f}, max {max(xs):.2f})")
    print(log[-1])
    return m


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _iptables(node: str) -> str:
    return subprocess.run(["ip", "netns", "exec", node, "iptables", "-w", "5", "-S"],
                          capture_output=True, text=True, check=True).stdout


def _delay_lines(node: str) -> list[int]:
    """Delay-line processes of this node namespace: their command line names a workdir
    ``ztfl-netem-<node>-...`` (besides ``ip netns pids``, which sees only live namespace
    members)."""
    out = subprocess.run(["pgrep", "-f", f"k8s_fixtures.netem.delayline .*ztfl-netem-{node}-"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _handle_facts(h: NetemHandle | None) -> tuple[str, set[int], int]:
    assert h is not None and h.slot is not None and h.chain is not None
    pid = h.status().pid
    assert pid is not None and h.check().alive
    queues = {q for ls in h.links for q in (ls.up_queue, ls.down_queue)}
    assert queues <= set(h.slot.queues)
    return h.chain, queues, pid


def test_two_namespaces_shaped_at_once_each_with_its_own_delay_line(
        state_root: Path, tmp_path: Path) -> None:
    pfile = tmp_path / "profiles.yaml"
    pfile.write_text(PROFILES)
    log: list[str] = []
    with LocalCluster(prefix="ztlc", state_root=state_root) as c:
        node = c.node_netns
        # a value the restore can be seen at: a fresh namespace already has 1
        rules.bridge_nf(node, 0)
        old = rules.bridge_nf(node)
        assert old == 0
        overlay = NetemOverlay(load_profiles(pfile), mechanism="delayline")
        c.add_overlay(overlay)

        _deploy(c, "cell-a", {"a0": "D10", "a1": "D10"})
        _deploy(c, "cell-b", {"b0": "D30"})
        chain_a, queues_a, pid_a = _handle_facts(overlay.handle("cell-a"))
        chain_b, queues_b, pid_b = _handle_facts(overlay.handle("cell-b"))
        print(f"\ncell-a: {chain_a} queues {sorted(queues_a)} delay line {pid_a}; "
              f"cell-b: {chain_b} queues {sorted(queues_b)} delay line {pid_b}")
        assert chain_a != chain_b and not queues_a & queues_b and pid_a != pid_b
        assert rules.chains(node) == sorted([chain_a, chain_b])
        assert rules.installed(node, chain_a) and rules.installed(node, chain_b)
        assert sorted(_delay_lines(node)) == sorted([pid_a, pid_b])
        assert rules.bridge_nf(node) == 1

        # each namespace's clients see their own profile, not the other's: the delay line is
        # late, never early (>= the nominal RTT); the upper bounds sit between the profiles
        # (a client shaped by the other namespace's delay line, or by both, would cross them)
        for pod in ("a0", "a1"):
            assert 19.5 <= _median(c, "cell-a", pod, log) < 45.0, log
        assert 59.5 <= _median(c, "cell-b", "b0", log) < 100.0, log

        # stop one namespace: its delay line, chain and queues go; the other stays shaped
        c.delete(namespace="cell-a")
        assert overlay.handle("cell-a") is None and "cell-a" not in overlay.slots
        assert not _alive(pid_a)
        assert rules.chains(node) == [chain_b] and rules.installed(node, chain_b)
        assert [s.chain for s in ALLOCATOR.live(node)] == [chain_b]
        assert _delay_lines(node) == [pid_b]
        assert rules.bridge_nf(node) == 1  # cell-b still needs it
        h_b = overlay.handle("cell-b")
        assert h_b is not None and h_b.check().alive and h_b.status().pid == pid_b
        assert 59.5 <= _median(c, "cell-b", "b0", log) < 100.0, log

        # the next cell (deployed while cell-b is still shaped) gets the freed range again
        _deploy(c, "cell-c", {"c0": "D10"})
        chain_c, queues_c, pid_c = _handle_facts(overlay.handle("cell-c"))
        print(f"cell-c: {chain_c} queues {sorted(queues_c)} delay line {pid_c}")
        assert not queues_c & queues_b and chain_c != chain_b
        assert min(queues_c) == min(queues_a)  # the lowest free range: cell-a's, released
        assert 19.5 <= _median(c, "cell-c", "c0", log) < 45.0, log
        assert 59.5 <= _median(c, "cell-b", "b0", log) < 100.0, log

        # stop both: no chain, no NFQUEUE rule, no delay line, the sysctl as it was
        c.delete(namespace="cell-b")
        c.delete(namespace="cell-c")
        assert overlay.handles == {} and overlay.slots == {}
        assert ALLOCATOR.live(node) == []
        saved = _iptables(node)
        assert rules.CHAIN_PREFIX not in saved and "NFQUEUE" not in saved, saved
        assert rules.chains(node) == []
        assert not any(_alive(p) for p in (pid_a, pid_b, pid_c))
        assert _delay_lines(node) == [] and netns_pids(node) == []
        assert rules.bridge_nf(node) == old


def test_stale_cluster_purge_removes_every_namespace_s_emulation(
        state_root: Path, tmp_path: Path) -> None:
    """A harness SIGKILLed while two namespaces are shaped: its delay lines die with it (parent
    death signal) and the purge of its stale record deletes the node namespace, and with it
    both chains; nothing of either emulation is left."""
    pfile = tmp_path / "profiles.yaml"
    pfile.write_text(PROFILES)
    name = f"ztlc-{secrets.token_hex(3)}"
    node = f"{name}-node"
    proc = subprocess.Popen([sys.executable, str(HARNESS), str(state_root), name, str(pfile)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""  # READY, or "" if it ended or hung
        if not line.startswith("READY"):
            proc.kill()
            raise AssertionError(f"harness: {line!r} {proc.communicate(timeout=30)[1][-2000:]}")
        assert line.split() == ["READY", node]
        present = rules.chains(node)
        pids = _delay_lines(node)
        print(f"\nbefore the kill: chains {present}, delay lines {pids}")
        assert len(present) == 2 and len(pids) == 2
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    wait_until("the delay lines gone with their parent",
               lambda: not any(_alive(p) for p in pids) and _delay_lines(node) == [], 10)
    assert node in netns_named(name)  # the kill left the node namespace (and its chains)
    workdirs = state.scratch_dirs(name)  # and the delay lines' work directories
    assert len(workdirs) == 2 and all(f"ztfl-netem-{node}-" in d.name for d in workdirs)
    removed = state.clean_stale(state_root)
    assert f"netns {node}" in removed.get(name, []), removed
    assert all(f"dir {d}" in removed[name] for d in workdirs), removed
    assert netns_named(name) == [] and state.entries(state_root) == []
    assert _delay_lines(node) == [] and state.scratch_dirs(name) == []
