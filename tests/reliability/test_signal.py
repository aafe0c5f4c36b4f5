"""``Cluster.signal``: a container's main process gets the signal, nothing else does.

Local backend (live): SIGKILL under restartPolicy OnFailure restarts the container (exit 137,
one restart); SIGTERM under Never ends the pod (exit 143, Failed); a twin process running the
very same command in another pod is untouched (local pods share the host's PID namespace, so a
by-name or by-number kill would hit it); signalling a container that is not running is a
ClusterError. Kube backend (offline, fake API): ``kill -<SIG> 1`` is exec'd in the container.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from k8s_fixtures.cluster import ClusterError, ExecResult

NS = "ztfl-rel-signal"
SLEEP = ["sleep", "3600"]


def _pod(name: str, policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {"restartPolicy": policy, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "command": SLEEP}]},
    }


def _until(what: str, probe: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = probe()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling interval of a deadline loop


@pytest.mark.privileged
def test_local_signal_hits_only_the_containers_main_process(
    ztfl_backend: Any,
) -> None:
    cluster = ztfl_backend.cluster
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                   _pod("restarts", "OnFailure"), _pod("ends", "Never"), _pod("twin", "Never")])
    try:
        cluster.wait_ready(NS, timeout=60)
        cluster.signal(NS, "restarts", "main", signal.SIGKILL)
        st = _until("a restart", lambda: (s := cluster.pod_status(NS, "restarts")).restart_count
                    == 1 and s.ready and s)
        assert st.containers[0].exit_code == 137 and st.phase == "Running"
        cluster.signal(NS, "ends", "main", signal.SIGTERM)
        st = cluster.wait_finished(NS, "ends", timeout=20)
        assert st.phase == "Failed" and st.exit_code == 143 and st.restart_count == 0
        twin = cluster.pod_status(NS, "twin")
        assert twin.phase == "Running" and twin.ready and twin.restart_count == 0
        with pytest.raises(ClusterError, match="not running"):
            cluster.signal(NS, "ends", "main", signal.SIGKILL)
        with pytest.raises(ClusterError, match="no container"):
            cluster.signal(NS, "twin", "nope", signal.SIGKILL)
    finally:
        cluster.delete(namespace=NS)


class _FakeApi:
    context = "fake"

    def __init__(self, rc: int = 0) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.rc = rc

    def exec(self, ns: str, pod: str, argv: list[str], container: str | None,
             timeout: float, input: str | None) -> ExecResult:
        self.calls.append((ns, pod, argv, container))
        return ExecResult(self.rc, "", "kill: permission denied" if self.rc else "")


def test_kube_signal_execs_kill_of_pid_1_in_the_container() -> None:
    from k8s_fixtures.kube.backend import KubeCluster

    api = _FakeApi()
    KubeCluster(api).signal("ns", "fl-client-1", "fl-client", signal.SIGKILL)  # type: ignore[arg-type]
    KubeCluster(api).signal("ns", "p", "c", signal.SIGTERM)  # type: ignore[arg-type]
    assert api.calls == [("ns", "fl-client-1", ["kill", "-KILL", "1"], "fl-client"),
                         ("ns", "p", ["kill", "-TERM", "1"], "c")]
    # SIGKILL of PID 1 may take the exec session down with it: that is delivery, not failure
    KubeCluster(_FakeApi(rc=137)).signal("ns", "p", "c", signal.SIGKILL)  # type: ignore[arg-type]
    with pytest.raises(ClusterError, match=r"kill -TERM 1 failed \(rc 1\): kill: permission"):
        KubeCluster(_FakeApi(rc=1)).signal("ns", "p", "c", signal.SIGTERM)  # type: ignore[arg-type]
