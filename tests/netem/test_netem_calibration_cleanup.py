"""A calibration's private topology (``ztdl-<random>``) is recorded in the state root like a
local cluster: a SIGKILLed harness leaves no namespace for good (the next cluster start, the
next calibration or ``ztfl cluster clean`` removes it), a normal end leaves no record, and a
live calibration is never touched by another process's cleanup."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from netem_support import netns_named, netns_pids, wait_until

from k8s_fixtures.local import cli as local_cli
from k8s_fixtures.local import state
from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.local.topology import TopologyError
from k8s_fixtures.netem import calibrate as calibration
from k8s_fixtures.netem.profiles import get_profile

pytestmark = pytest.mark.privileged
HARNESS = Path(__file__).with_name("ztdl_calibration_harness.py")
TINY = calibration.Sizes(rtt_n=10, delay_n=10, loss_n=50, bulk_min_warm_s=0.1,
                         bulk_min_window_s=0.2)


@pytest.fixture
def prefix() -> Any:
    """A fresh ``ztdl-k<hex>`` prefix; whatever a failed test left under it is deleted (the
    random suffix makes every such namespace this test's own)."""
    p = f"ztdl-k{secrets.token_hex(3)}"
    assert netns_named(p) == []
    yield p
    for ns in netns_named(p):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _record(root: Path, name: str) -> state.Entry | None:
    return next((e for e in state.entries(root) if e.name == name), None)


def _calibrating(root: Path, prefix: str) -> bool:
    """The harness is mid-measurement: every namespace recorded and present, the probe
    server recorded, and a probe client running in the client pod (so the delay line is up)."""
    e = _record(root, prefix)
    want = {f"{prefix}-{n}" for n in ("node", "srv", "cli", "cli2", "cli3")}
    return (e is not None and e.live and e.record is not None and set(e.record.netns) == want
            and bool(e.record.pids) and set(netns_named(prefix)) == want
            and bool(netns_pids(f"{prefix}-cli")))


def _clean_by_cli(root: Path, prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert local_cli.main(["cluster", "--state-dir", str(root), "clean"]) == 0
    out = capsys.readouterr().out
    assert f"removed stale cluster {prefix}: " in out and f"netns {prefix}-node" in out, out


def _clean_by_cluster_start(root: Path, prefix: str, capsys: pytest.CaptureFixture[str]
                            ) -> None:
    with LocalCluster(prefix="ztlc", state_root=root) as c:
        assert sorted(x for x in c.cleaned.get(prefix, []) if not x.startswith("dir ")) == sorted(
            f"netns {prefix}-{n}" for n in ("node", "srv", "cli", "cli2", "cli3"))


def _clean_by_next_calibration(root: Path, prefix: str, capsys: pytest.CaptureFixture[str]
                               ) -> None:
    with calibration.private_topology(state_root=root) as (node, _):
        assert netns_named(prefix) == []
        assert node.prefix != prefix
    assert netns_named(node.prefix) == []


@pytest.mark.parametrize("clean", [_clean_by_cli, _clean_by_cluster_start,
                                   _clean_by_next_calibration],
                         ids=["ztfl-cluster-clean", "cluster-start", "next-calibration"])
def test_sigkilled_calibration_is_cleaned(clean: Any, state_root: Path, prefix: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.Popen([sys.executable, str(HARNESS), str(state_root), prefix],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until("calibration running", lambda: _calibrating(state_root, prefix), 60, proc)
        # A live calibration is never someone else's stale record.
        assert state.clean_stale(state_root) == {}
        assert len(netns_named(prefix)) == 5
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # What the kill leaves: the namespaces and a stale record listing them. Its processes
    # die with it (parent-death signal).
    assert len(netns_named(prefix)) == 5
    e = _record(state_root, prefix)
    assert e is not None and e.stale and e.record is not None and len(e.record.netns) == 5
    wait_until("processes in the namespaces gone",
               lambda: not any(netns_pids(ns) for ns in netns_named(prefix)), 10)
    assert len(state.scratch_dirs(prefix)) == 1  # the delay line's work directory
    clean(state_root, prefix, capsys)
    assert netns_named(prefix) == [] and state.scratch_dirs(prefix) == []
    assert not (state_root / prefix).exists() and state.entries(state_root) == []


def test_calibration_end_removes_namespaces_and_record(state_root: Path, prefix: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[state.Entry | None] = []
    measure = calibration.calibrate_links

    def spy(*args: Any, **kwargs: Any) -> calibration.CalibrationResult:
        seen.append(_record(state_root, prefix))
        return measure(*args, **kwargs)

    monkeypatch.setattr(calibration, "calibrate_links", spy)
    r = calibration.calibrate(get_profile("NET0"), sizes=TINY, prefix=prefix,
                              state_root=state_root)
    assert r.figures
    [e] = seen  # during the measurement: recorded, live, every namespace listed
    assert e is not None and e.live and e.record is not None and e.record.mode == "root"
    assert sorted(e.record.netns) == sorted(
        f"{prefix}-{n}" for n in ("node", "srv", "cli", "cli2", "cli3"))
    assert netns_named(prefix) == [] and state.entries(state_root) == []


def test_calibration_failure_removes_namespaces_and_record(state_root: Path, prefix: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    def boom(*args: Any, **kwargs: Any) -> calibration.CalibrationResult:
        raise RuntimeError("probe failed")

    monkeypatch.setattr(calibration, "calibrate_links", boom)
    with pytest.raises(RuntimeError, match="probe failed"):
        calibration.calibrate(get_profile("NET1"), prefix=prefix, state_root=state_root)
    assert netns_named(prefix) == [] and state.entries(state_root) == []


def test_taken_name_is_refused_and_left_alone(state_root: Path, prefix: str) -> None:
    # Someone else's namespace of the same name: refused, never recorded, never deleted.
    subprocess.run(["ip", "netns", "add", f"{prefix}-node"], check=True)
    with pytest.raises(TopologyError, match="already exists"), \
            calibration.private_topology(prefix, state_root):
        pass
    assert netns_named(prefix) == [f"{prefix}-node"]
    assert state.entries(state_root) == []
