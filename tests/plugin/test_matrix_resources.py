"""``workload.resources`` in a matrix: requests and limits of the FL server's and clients'
containers, parsed and checked, rendered into the Pod specs, recorded in the cell, and (one
short live test) enforced by the local backend's cgroups.

Without it nothing changes: the presets render BestEffort pods and their stored matrices and
rows read exactly as before (the committed results' ``matrix.json`` still equals the preset).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from k8s_fixtures import workload
from pytest_ztfl import cellplan, matrix
from pytest_ztfl.backends import Platform
from pytest_ztfl.render import render_matrix
from pytest_ztfl.report.md.meta import _resources_text

REPO = Path(__file__).resolve().parents[2]
RESOURCES = {
    "server": {"requests": {"cpu": "500m", "memory": "512Mi"},
               "limits": {"cpu": 1, "memory": "1Gi"}},
    "client": {"limits": {"cpu": 0.5, "memory": "768Mi"}},
}
# The same in the Kubernetes form the pods carry (numbers as the YAML gave them, as strings).
SERVER = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
CLIENT = {"limits": {"cpu": "0.5", "memory": "768Mi"}}


def spec(resources: Any = RESOURCES, **over: Any) -> dict[str, Any]:
    return {"name": "res", "sec": ["SEC0", "SEC2"], "net": ["NET0"], "data": ["iid"],
            "seeds": [0], "workload": {"clients": 2, "rounds": 1, "resources": resources},
            **over}


def load(tmp_path: Path, raw: dict[str, Any]) -> matrix.Matrix:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    return matrix.load(str(path))


def test_resources_are_parsed_and_recorded_in_the_cells_workload(tmp_path: Path) -> None:
    m = load(tmp_path, spec())
    wl = m.workload
    assert wl.resources.server.requests == matrix.Quantities(cpu="500m", memory="512Mi")
    assert wl.resources.client.limits == matrix.Quantities(cpu="0.5", memory="768Mi")
    assert wl.resources.client.requests == matrix.Quantities()
    row_cell = json.loads(json.dumps(m.cells()[0].to_dict()))  # as runs.jsonl stores it
    assert row_cell["workload"]["resources"] == {"server": SERVER, "client": CLIENT}
    stored = json.loads(json.dumps(m.to_dict()))  # matrix.json: read back, the same matrix
    assert matrix.from_dict(stored, "matrix.json") == m
    assert hash(m.cells()[0])  # cells stay hashable (sets, dict keys)


def test_without_resources_presets_rows_and_stored_matrices_are_unchanged() -> None:
    quick = matrix.load("quick")
    assert not quick.workload.resources
    assert "resources" not in quick.cells()[0].to_dict()["workload"]
    stored = json.loads((REPO / "docs/results/quick-2cpu/matrix.json").read_text())
    assert quick.to_dict() == stored  # a resumed or reported old run is the same matrix
    pods = [o for o in cellplan.plan_cell(quick.cells()[0], Platform(("python",), "/d"))
            .objects() if o["kind"] == "Pod" and o["metadata"]["name"].startswith("fl-")]
    assert pods and all(c.get("resources") == {} for p in pods
                        for c in p["spec"]["containers"])  # BestEffort, as always


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"client": {"limits": {"cpu": "abc"}}},
         "workload.resources.client.limits.cpu='abc': not a CPU quantity (e.g. 500m, 0.5, 2)"),
        ({"server": {"requests": {"memory": "512m"}}},
         "workload.resources.server.requests.memory='512m': not a memory quantity "
         "(e.g. 64Mi, 1G, 1000000)"),
        ({"client": {"limits": {"memory": "1Ki"}}},
         "workload.resources.client.limits.memory='1Ki': below 4Ki"),
        ({"client": {"limits": {"cpu": True}}},
         "workload.resources.client.limits.cpu=True: expected a quantity (e.g. 500m or 2)"),
        ({"server": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}},
         "workload.resources.server.requests.cpu='2': more than limits.cpu='1500m' "
         "(Kubernetes requires requests <= limits)"),
        ({"clients": {}}, "unknown field 'workload.resources.clients' (known: server, client)"),
        ({"client": {"limit": {}}},
         "unknown field 'workload.resources.client.limit' (known: requests, limits)"),
        ({"client": {"limits": {"gpu": 1}}},
         "unknown field 'workload.resources.client.limits.gpu' (known: cpu, memory)"),
        ({"client": "1 cpu"},
         "field 'workload.resources.client' must be a mapping (requests, limits)"),
        ([], "field 'workload.resources' must be a mapping (server, client)"),
    ],
    ids=["cpu", "memory-milli", "memory-tiny", "bool", "request-over-limit", "role", "kind",
         "resource", "role-not-mapping", "not-mapping"],
)
def test_a_bad_value_is_one_line_naming_the_field(tmp_path: Path, resources: Any,
                                                  message: str) -> None:
    with pytest.raises(matrix.MatrixError) as e:
        load(tmp_path, spec(resources))
    assert str(e.value) == f"matrix {tmp_path / 'm.yaml'}: {message}"


def test_rendered_pods_carry_the_resources_and_validate_strictly(tmp_path: Path) -> None:
    """``ztfl render``'s output: the FL containers carry requests and limits (a limit without
    its request gets the limit as request, as Kubernetes defaults it), the sidecar proxy
    carries none, and the Pods validate strictly against Kubernetes 1.30 and 1.37."""
    [sec0, sec2] = render_matrix(load(tmp_path, spec()), tmp_path / "out")
    pods = {p["metadata"]["name"]: p for p in
            (yaml.safe_load(f.read_text()) for f in sorted(sec2.glob("*-pod-*.yaml")))}
    server = pods["fl-server"]["spec"]["containers"]
    assert server[0]["name"] == "fl-server" and server[0]["resources"] == SERVER
    assert [c["name"] for c in server[1:]] == ["ztfl-proxy"] and "resources" not in server[1]
    for i in range(2):
        [fl, _proxy] = pods[f"fl-client-{i}"]["spec"]["containers"]
        assert fl["resources"] == {"limits": CLIENT["limits"], "requests": CLIENT["limits"]}
    for pod in pods.values():
        for version in ("1.30", "1.37"):
            kubernetes_validate.validate(pod, version, strict=True)
    client0 = yaml.safe_load(next(sec0.glob("*-pod-fl-client-0.yaml")).read_text())
    assert client0["spec"]["containers"][0]["resources"]["limits"] == CLIENT["limits"]


def test_a_clients_override_below_the_roles_request_lowers_the_request() -> None:
    """A fault's per-client limit (e.g. a CPU throttle) under the matrix's request: the
    request follows it down, or Kubernetes would refuse the pod."""
    run = workload.FLRun("ns", "r", 2, (), client_requests={"cpu": "1", "memory": "256Mi"},
                         client_resources={"memory": "1Gi"},
                         overrides={1: workload.ClientOverride(cpu_limit="200m")})
    pods = {o["metadata"]["name"]: o for o in workload.render(run) if o["kind"] == "Pod"}
    res = [pods[f"fl-client-{i}"]["spec"]["containers"][0]["resources"] for i in range(2)]
    assert res[0] == {"limits": {"memory": "1Gi"},
                      "requests": {"memory": "256Mi", "cpu": "1"}}
    assert res[1] == {"limits": {"memory": "1Gi", "cpu": "200m"},
                      "requests": {"memory": "256Mi", "cpu": "200m"}}


# A pod's programs see a sysfs of their own network namespace (no cgroup mounts there): the
# probe prints which cgroups it is in and waits, and the files are read from the host's view.
PROBE = "import signal; print(open('/proc/self/cgroup').read().replace('\\n', ';'), flush=True)" \
    "; signal.pause()"


def cgroup_limits(paths: dict[str, str]) -> tuple[int, int, int]:
    """(memory limit, CPU quota, CPU period) of the cgroups in ``paths`` (/proc/PID/cgroup:
    hierarchy -> path), read from cgroup v1 (as on the CI machine) or v2 files."""
    mounts = [line.split()[1:4] for line in Path("/proc/self/mounts").read_text().splitlines()]

    def v1(controller: str, name: str) -> int:
        [key] = [k for k in paths if controller in k.split(",")]
        [mnt] = [m for m, fs, opts in mounts if fs == "cgroup" and controller in opts.split(",")]
        return int(Path(f"{mnt}{paths[key]}/{name}").read_text())

    if "memory" in ",".join(paths):
        return (v1("memory", "memory.limit_in_bytes"), v1("cpu", "cpu.cfs_quota_us"),
                v1("cpu", "cpu.cfs_period_us"))
    [mnt] = [m for m, fs, _ in mounts if fs == "cgroup2"]
    d = Path(f"{mnt}{paths['']}")
    quota, period = (d / "cpu.max").read_text().split()
    return int((d / "memory.max").read_text()), int(quota), int(period)


@pytest.mark.privileged
def test_matrix_limits_reach_the_containers_cgroups_on_the_local_backend(
        tmp_path: Path) -> None:
    """The cell's rendered server and client Pods, their programs swapped for a probe that
    says which cgroups it runs in, applied to a local cluster: the limits of the matrix are in
    those cgroups' files."""
    from k8s_fixtures.local.backend import LocalCluster

    if os.geteuid() != 0:
        pytest.skip("not root: the local backend enforces limits with cgroups only as root")
    cell = load(tmp_path, spec()).cells()[0]
    objs = cellplan.plan_cell(cell, Platform((sys.executable,), "/d")).workload_objects()
    kept = []
    for o in objs:
        if o["kind"] == "Pod":
            c = o["spec"]["containers"][0]
            c.update(command=[sys.executable], args=["-c", PROBE])
            c.pop("readinessProbe", None)
        if o["kind"] in ("Namespace", "ServiceAccount", "Pod"):
            kept.append(o)
    ns = cellplan.namespace_for(cell)
    pods = ("fl-server", "fl-client-0", "fl-client-1")
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    seen = {}
    with LocalCluster(prefix="ztlc", state_root=state) as cluster:
        assert not cluster.warnings, cluster.warnings  # limits are enforced here
        cluster.apply(kept)
        cluster.wait_ready(ns, names=pods, timeout=30)
        for pod in pods:
            line = next(iter(cluster.logs(ns, pod, follow=True, timeout=30)))
            paths = dict(e.split(":", 2)[1:] for e in line.strip().split(";") if e)
            seen[pod] = cgroup_limits(paths)
    assert seen == {"fl-server": (1 << 30, 100_000, 100_000),
                    "fl-client-0": (768 << 20, 50_000, 100_000),
                    "fl-client-1": (768 << 20, 50_000, 100_000)}


def test_the_reports_metadata_shows_the_resources_in_one_line() -> None:
    assert _resources_text({"server": SERVER, "client": CLIENT}) == (
        "client limits cpu=0.5 memory=768Mi; "
        "server requests cpu=500m memory=512Mi, limits cpu=1 memory=1Gi")
