"""Nothing outlives a cluster: no namespace, veth, process, cgroup or state directory, after a
normal end, an exception, Ctrl-C, or a SIGKILLed harness (cleaned on the next start)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ztlc_support import interruptible, leaks, netns_named

from k8s_fixtures.local import state
from k8s_fixtures.local.backend import LocalCluster

pytestmark = pytest.mark.privileged
HARNESS = Path(__file__).with_name("ztlc_harness.py")


def busy_cluster(c: LocalCluster) -> None:
    c.apply([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "run"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tree", "namespace": "run"},
         "spec": {"containers": [{"name": "c", "command": [
             "sh", "-c", "sleep 1000 & sleep 1000 & wait"],
             "resources": {"limits": {"cpu": "100m"}}}]}},
    ])
    c.wait_ready("run", timeout=20)


def start_harness(root: Path, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(HARNESS), str(root), name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        pytest.fail(f"harness did not start: {line!r} {proc.communicate()[1]}")
    return proc


def host_network() -> tuple[str, str]:
    ip = ["ip", "-o"]
    links = subprocess.run([*ip, "link"], capture_output=True, text=True).stdout
    routes = subprocess.run([*ip, "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    return links, routes


def test_normal_end_leaves_nothing(state_root: Path) -> None:
    host = host_network()
    with LocalCluster(prefix="ztlc", state_root=state_root) as c:
        busy_cluster(c)
        assert leaks(c.name, state_root)  # the check sees a live cluster
        assert host_network() == host  # nothing is added to the host's own namespace
    assert leaks(c.name, state_root) == []


def test_exception_in_with_block_leaves_nothing(state_root: Path) -> None:
    with pytest.raises(RuntimeError, match="test failed"), \
            LocalCluster(prefix="ztlc", state_root=state_root) as c:
        busy_cluster(c)
        raise RuntimeError("test failed")
    assert leaks(c.name, state_root) == []


def test_namespace_delete_leaves_nothing_of_it(state_root: Path) -> None:
    with LocalCluster(prefix="ztlc", state_root=state_root) as c:
        busy_cluster(c)
        c.delete(namespace="run")
        assert [n for n in netns_named(c.name) if "-run." in n] == []
        assert not list((c.state_dir / "pods").glob("run.*"))
        assert all(not d.exists() for d in
                   Path("/sys/fs/cgroup/memory").glob(f"**/ztfl-{c.name}/run.*"))


def test_ctrl_c_tears_down(state_root: Path) -> None:
    proc = start_harness(state_root, "ztlc-sigint")
    assert leaks("ztlc-sigint", state_root)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    assert leaks("ztlc-sigint", state_root) == []


def test_sigkilled_harness_is_cleaned_on_next_start(state_root: Path) -> None:
    proc = start_harness(state_root, "ztlc-sigkill")
    proc.kill()
    proc.communicate(timeout=30)
    left = leaks("ztlc-sigkill", state_root)
    assert any(x.startswith("process") for x in left) and any("netns" in x for x in left)
    with LocalCluster(prefix="ztlc", state_root=state_root) as c:
        assert "ztlc-sigkill" in c.cleaned
        assert leaks("ztlc-sigkill", state_root) == []
    assert leaks(c.name, state_root) == []


def test_cleanup_never_touches_a_live_cluster(state_root: Path) -> None:
    proc = start_harness(state_root, "ztlc-alive")
    try:
        before = sorted(netns_named("ztlc-alive"))
        assert state.clean_stale(state_root) == {}
        with LocalCluster(prefix="ztlc", state_root=state_root) as c:
            assert c.cleaned == {}
        assert sorted(netns_named("ztlc-alive")) == before
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert leaks("ztlc-alive", state_root) == []


def test_pod_processes_carry_the_cluster_marker(state_root: Path) -> None:
    # The marker is what finds pod processes whose PIDs were never recorded.
    with LocalCluster(prefix="ztlc", state_root=state_root) as c:
        busy_cluster(c)
        marker = f"{state_root.resolve()}:{c.name}"
        deadline = time.monotonic() + 10
        while len(pids := state.marked_pids(marker)) < 4:  # dnsmasq, sh and its two sleeps
            assert time.monotonic() < deadline, pids
            time.sleep(0.02)
        assert all(os.getsid(p) != os.getsid(0) for p in pids)
    assert state.marked_pids(marker) == []


def test_a_namespace_that_cannot_be_deleted_stays_recorded_until_it_can(state_root: Path) -> None:
    """`ip netns del` fails on a namespace mounted twice (the second mount keeps the file busy):
    purge says so, keeps the record listing it, and the next clean finishes the job."""
    name = f"ztlc-stuck-{os.getpid()}"
    ns = f"{name}-node"
    rec = state.Record(name, "root", os.getpid(), netns=[ns])
    st = state.StateDir(state_root, name, rec)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        path = f"/run/netns/{ns}"
        subprocess.run(["mount", "--bind", path, path], check=True)  # a second mount
        st.close(remove=False)  # the owner is gone: the record is stale now
        first = state.clean_stale(state_root)
        assert any(r.startswith(f"{state.LEFT} netns {ns}") for r in first[name]), first
        assert ns in netns_named(name)
        kept = [e for e in state.entries(state_root) if e.name == name]
        assert kept and kept[0].record is not None and kept[0].record.netns == [ns]
        second = state.clean_stale(state_root)  # the first del took one mount off
        assert second == {name: [f"netns {ns}"]}, second
        assert netns_named(name) == []
        assert not (state_root / name).exists()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
