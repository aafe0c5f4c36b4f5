"""The FL workload (fl_app, started by command line only) as pods: 1 server + 5 clients that
reach the server through its Service name; its event log matches a loopback run's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from k8s_fixtures.cluster import Obj
from k8s_fixtures.local.backend import LocalCluster

pytestmark = [pytest.mark.privileged, pytest.mark.slow]
PY = sys.executable  # the project venv (fl_app and torch are installed there)
RUN = ["--clients", "5", "--rounds", "2", "--model", "small", "--max-steps", "5",
       "--eval-every", "1", "--seed", "0", "--run-id", "ztlc-fl", "--join-timeout", "120"]


def events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def shape(evs: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """What must agree between runs: event types per round, and each round's outcome."""
    return sorted((e["event"], e.get("round")) for e in evs
                  if e["event"] not in ("client_joined", "client_left"))


def manifests(ns: str, data_dir: Path) -> list[Obj]:
    def pod(name: str, args: list[str], labels: dict[str, str]) -> Obj:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "main", "command": [PY, "-m", *args],
                    "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                    "ports": [{"name": "grpc", "containerPort": 50051}]}]}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fl-server", "namespace": ns},
         "spec": {"selector": {"app": "fl-server"}, "ports": [{"port": 50051}]}},
        pod("server", ["fl_app.server", "--data-dir", str(data_dir), *RUN],
            {"app": "fl-server"}),
        *(pod(f"client-{i}", ["fl_app.client", "--server", "fl-server:50051", "--client-id",
                              str(i), "--data-dir", str(data_dir)], {"app": "fl-client"})
          for i in range(5)),
    ]


def test_fl_workload_runs_on_the_local_backend(data_dir: Path, tmp_path: Path) -> None:
    with LocalCluster(prefix="ztlc", state_root=tmp_path / "state") as c:
        c.apply(manifests("fl", data_dir))
        server = c.wait_finished("fl", "server", timeout=600)
        log = "".join(c.logs("fl", "server"))
        assert server.exit_code == 0, log[-2000:]
        for i in range(5):
            s = c.wait_finished("fl", f"client-{i}", timeout=60)
            assert s.exit_code == 0, "".join(c.logs("fl", f"client-{i}"))[-2000:]
    pod_events = events(log)
    joined = [e for e in pod_events if e["event"] == "client_joined"]
    assert len(joined) == 5 and all(e["peer"].startswith("ipv4:10.244.") for e in joined)
    end = pod_events[-1]
    assert (end["event"], end["ok"], end["rounds_completed"]) == ("run_end", True, 2)

    loop_file = tmp_path / "loopback.jsonl"
    loop = subprocess.run([PY, "-m", "fl_app.local", "--data-dir", str(data_dir), *RUN,
                           "--events", str(loop_file)], capture_output=True, text=True,
                          timeout=600)
    assert loop.returncode == 0, loop.stderr[-2000:]
    loop_events = events(loop_file.read_text())
    assert shape(pod_events) == shape(loop_events)
    assert [e["accuracy"] for e in pod_events if e["event"] == "eval"] == pytest.approx(
        [e["accuracy"] for e in loop_events if e["event"] == "eval"], abs=0.02)
