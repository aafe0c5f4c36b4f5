"""The kind backend's two drivers, pytest-kind-ng and the kind CLI, end to end but offline.

There is no Docker here, so the boundary is faked, nothing inside it: ``kind``, ``docker`` and
``kubectl`` are small programs on ``PATH`` that keep a cluster list in a directory and log every
call (``kind create cluster`` writes a kubeconfig where it is told to, ``kind delete cluster
--kubeconfig P`` locks ``P`` as kind does, recreating its directory), and connecting to the
API server (:func:`k8s_fixtures.kube.factory.create_kube`) is stood in for. pytest-kind-ng's
own ``KindCluster`` runs unmodified against these programs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from k8s_fixtures.cluster import PrivilegeError
from k8s_fixtures.kube import kind

IMAGE = "ztfl/workload:test"

FAKE_KIND = r'''
import json, os, sys
state = os.environ["FAKE_KIND_STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(["kind", *args]) + "\n")
path = os.path.join(state, "clusters")
clusters = open(path).read().split() if os.path.exists(path) else []

def opt(name):
    for i, a in enumerate(args):
        if a == f"--{name}":
            return args[i + 1]
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None

def kubeconfig(name):
    ctx = f"kind-{name}"
    return (f"apiVersion: v1\nkind: Config\ncurrent-context: {ctx}\nclusters:\n- name: {ctx}\n"
            f"  cluster: {{server: 'https://127.0.0.1:6443'}}\ncontexts:\n- name: {ctx}\n"
            f"  context: {{cluster: {ctx}, user: {ctx}}}\nusers:\n- name: {ctx}\n"
            f"  user: {{token: fake}}\n")

if args == ["version"]:
    print(os.environ.get("FAKE_KIND_VERSION", "kind v0.27.0 go1.23.4 linux/amd64"))
elif args[:2] == ["get", "clusters"]:
    print("\n".join(clusters)) if clusters else print("No kind clusters found.", file=sys.stderr)
elif args[:2] == ["get", "kubeconfig"]:
    if opt("name") not in clusters:
        sys.exit("ERROR: could not locate any control plane nodes")
    print(kubeconfig(opt("name")), end="")
elif args[:2] == ["create", "cluster"]:
    name = opt("name")
    if name in clusters:
        sys.exit(f"ERROR: failed to create cluster: node(s) already exist for {name!r}")
    open(path, "w").write("\n".join([*clusters, name]))
    target = opt("kubeconfig") or os.environ["KUBECONFIG"]
    open(target, "w").write(kubeconfig(name))
elif args[:2] == ["load", "docker-image"]:
    if opt("name") not in clusters or os.environ.get("FAKE_KIND_LOAD_FAILS"):
        sys.exit(f"ERROR: no nodes found for cluster {opt('name')!r}")
elif args[:2] == ["delete", "cluster"]:
    target = opt("kubeconfig")
    if target:  # kind locks the kubeconfig it edits, making its directory if need be
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target + ".lock", "w").close()
        os.remove(target + ".lock")
    open(path, "w").write("\n".join(c for c in clusters if c != opt("name")))
else:
    sys.exit(f"fake kind: unexpected {args}")
'''

FAKE_DOCKER = r'''
import os, sys
args = sys.argv[1:]
if args[:1] == ["info"]:
    print("27.3.1")
elif args[:2] == ["image", "inspect"]:
    sys.exit(0 if args[2] in os.environ.get("FAKE_DOCKER_IMAGES", "").split() else 1)
else:
    sys.exit(f"fake docker: unexpected {args}")
'''

FAKE_KUBECTL = r'''
import json, os, sys
state = os.environ["FAKE_KIND_STATE"]
config = os.environ.get("KUBECONFIG", "")
seen = open(config).read() if config and os.path.exists(config) else None
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(["kubectl", *sys.argv[1:], {"KUBECONFIG": config, "read": seen}]) + "\n")
'''


class Machine:
    """The faked boundary: the programs' state and log, the user's kubeconfig, the temporary
    directory and the working directory, and what the stand-in for the API client saw."""

    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        self.tmp = root / "tmp"
        self.cwd = root / "cwd"
        self.user_kubeconfig = root / "home-kubeconfig"
        self.connected: list[dict[str, Any]] = []
        self.waited: list[tuple[str, float]] = []

    def calls(self, program: str = "kind") -> list[list[Any]]:
        path = self.state / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in map(json.loads, lines) if c[0] == program]

    def clusters(self) -> list[str]:
        path = self.state / "clusters"
        return path.read_text().split() if path.exists() else []

    def add_cluster(self, name: str) -> None:
        (self.state / "clusters").write_text(name)

    def leftovers(self) -> list[str]:
        """Anything left in the temporary directory or as ``.pytest-kind`` in the cwd."""
        return sorted(str(p) for p in [*self.tmp.rglob("*"), *self.cwd.rglob("*")])


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    m = Machine(tmp_path)
    bin_dir = tmp_path / "bin"
    for d in (m.state, m.tmp, m.cwd, bin_dir):
        d.mkdir()
    for name, body in (("kind", FAKE_KIND), ("docker", FAKE_DOCKER), ("kubectl", FAKE_KUBECTL)):
        exe = bin_dir / name
        exe.write_text(f"#!{sys.executable}\n{body}")
        exe.chmod(0o755)
    m.user_kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: mine\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KIND_STATE", str(m.state))
    monkeypatch.setenv("FAKE_DOCKER_IMAGES", IMAGE)
    monkeypatch.setenv("KUBECONFIG", str(m.user_kubeconfig))
    monkeypatch.setattr(tempfile, "tempdir", str(m.tmp))
    monkeypatch.chdir(m.cwd)

    def create_kube(context: str, *, kubeconfig: Path, kind_cluster: str) -> SimpleNamespace:
        # What the API client reads, at the moment it reads it (the file is gone afterwards).
        doc = yaml.safe_load(kubeconfig.read_text())
        m.connected.append({"context": context, "path": kubeconfig, "kind_cluster": kind_cluster,
                            "current": doc["current-context"],
                            "mode": kubeconfig.stat().st_mode & 0o777})
        return SimpleNamespace(
            api=SimpleNamespace(context=context), version={"minor": "31"},
            wait_ready=lambda ns, *, timeout: m.waited.append((ns, timeout)) or [])

    monkeypatch.setattr(kind, "create_kube", create_kube)
    return m


def without_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kind, "library_version", lambda: None)


def needs_library() -> None:
    if kind.library_version() is None:
        pytest.fail("pytest-kind-ng is not installed: pip install -e '.[test]' installs it")


def test_library_creates_the_cluster_with_the_installed_kind_and_a_private_kubeconfig(
        machine: Machine) -> None:
    needs_library()
    user_config = machine.user_kubeconfig.read_text()
    cluster = kind.create_kind("ztfl-t", IMAGE, delete_cluster=True)
    create = next(c for c in machine.calls() if c[1:3] == ["create", "cluster"])
    assert "--name=ztfl-t" in create
    config_path = Path(create[create.index("--config") + 1])
    kubeconfig = Path(next(a for a in create if a.startswith("--kubeconfig=")).split("=", 1)[1])
    assert kubeconfig.parent == config_path.parent and kubeconfig.parent.parent == machine.tmp
    assert ["kind", "load", "docker-image", "--name", "ztfl-t", IMAGE] in machine.calls()
    [conn] = machine.connected
    assert conn == {"context": "kind-ztfl-t", "path": kubeconfig, "kind_cluster": "ztfl-t",
                    "current": "kind-ztfl-t", "mode": 0o600}
    assert machine.waited == [("kube-system", kind.SYSTEM_READY_TIMEOUT)]
    assert cluster.created and cluster.kind_cluster == "ztfl-t" and cluster.name == "kind-ztfl-t"
    assert cluster.driver == f"pytest-kind-ng {kind.library_version()}"
    assert cluster.library.kind_path == Path(machine.state.parent / "bin" / "kind")
    assert machine.user_kubeconfig.read_text() == user_config  # the user's context untouched
    assert machine.leftovers() == []  # no kubeconfig, no kind.yaml, no ./.pytest-kind
    cluster.teardown()
    delete = machine.calls()[-1]
    assert delete[1:4] == ["delete", "cluster", "--name=ztfl-t"]
    assert Path(delete[4].removeprefix("--kubeconfig=")).parent.parent == machine.tmp
    assert machine.clusters() == [] and machine.leftovers() == []


def test_library_reuses_an_existing_cluster_and_never_deletes_it(machine: Machine) -> None:
    needs_library()
    machine.add_cluster("ztfl-t")
    cluster = kind.create_kind("ztfl-t", IMAGE, delete_cluster=True)
    assert not [c for c in machine.calls() if c[1:3] == ["create", "cluster"]]
    assert ["kind", "get", "kubeconfig", "--name", "ztfl-t"] in machine.calls()
    [conn] = machine.connected
    assert conn["current"] == "kind-ztfl-t" and conn["mode"] == 0o600
    assert machine.waited == []  # a cluster that was there is taken as it is
    assert not cluster.created and machine.leftovers() == []
    cluster.teardown()
    assert machine.clusters() == ["ztfl-t"]
    assert not [c for c in machine.calls() if c[1:3] == ["delete", "cluster"]]


def test_library_applies_calico_through_its_kubectl_on_the_private_kubeconfig(
        machine: Machine) -> None:
    needs_library()
    kind.create_kind("ztfl-c", IMAGE, cni="calico")
    create = next(c for c in machine.calls() if c[1:3] == ["create", "cluster"])
    config = create[create.index("--config") + 1]
    [apply] = machine.calls("kubectl")
    assert apply[1:5] == ["apply", "--server-side", "-f", kind.CALICO_MANIFEST]
    env = apply[5]
    assert Path(env["KUBECONFIG"]).parent == Path(config).parent  # the cluster's own file
    assert "current-context: kind-ztfl-c" in env["read"]
    assert machine.leftovers() == []


@pytest.mark.parametrize("use_library", [True, False], ids=["pytest-kind-ng", "kind-cli"])
def test_kind_older_than_0_24_is_refused_before_anything_is_made(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, use_library: bool) -> None:
    """kindnet enforces NetworkPolicy only from kind v0.24: an older kind is refused with the
    reason, whichever driver would have run."""
    if not use_library:
        without_library(monkeypatch)
    monkeypatch.setenv("FAKE_KIND_VERSION", "kind v0.23.0 go1.22.2 linux/amd64")
    with pytest.raises(PrivilegeError, match=r"^kind backend: kind v0\.23\.0 is too old: "
                                             r"NetworkPolicy is enforced by kindnet only from"):
        kind.create_kind("ztfl-t", IMAGE)
    assert [c[1:] for c in machine.calls()] == [["version"]]
    assert machine.clusters() == [] and machine.connected == []


def test_without_the_library_the_kind_cli_is_driven_and_says_so(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    without_library(monkeypatch)
    assert kind.driver().startswith("the kind CLI (pytest-kind-ng not installed: pip install")
    ok, why = kind.available()
    assert ok and why.endswith("through the kind CLI (pytest-kind-ng not installed: pip "
                               "install 'pytest-ztfl[kind]')")
    cluster = kind.create_kind("ztfl-t", IMAGE, delete_cluster=True)
    create = next(c for c in machine.calls() if c[1:3] == ["create", "cluster"])
    assert create[3:5] == ["--name", "ztfl-t"] and create[-2:] == ["--wait", "180s"]
    assert "kind-ztfl-t" in machine.user_kubeconfig.read_text()  # as `kind create` always does
    assert ["kind", "load", "docker-image", IMAGE, "--name", "ztfl-t"] in machine.calls()
    assert machine.connected[0]["current"] == "kind-ztfl-t"
    assert machine.connected[0]["mode"] == 0o600
    assert cluster.driver == kind.driver() and cluster.library is None
    assert machine.leftovers() == []
    cluster.teardown()
    assert machine.calls()[-1][1:] == ["delete", "cluster", "--name", "ztfl-t"]
    assert machine.clusters() == [] and machine.leftovers() == []


def test_the_backend_note_names_the_driver(machine: Machine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_ztfl import backends

    needs_library()
    made = backends.create("kind", data_dir="/d", image=IMAGE)
    note, platform = made.note, made.platform
    assert made.name == "kind"
    assert note == (f"kind: asked for; cluster ztfl created through pytest-kind-ng "
                    f"{kind.library_version()}")
    assert platform.image == IMAGE
    without_library(monkeypatch)
    note = backends.create("kind", data_dir="/d", image=IMAGE).note
    assert note == ("kind: asked for; cluster ztfl reused through the kind CLI (pytest-kind-ng "
                    "not installed: pip install 'pytest-ztfl[kind]')")


def test_a_failing_kind_is_one_line_naming_the_command(machine: Machine,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``kind load`` failing under the library (which lets kind's output through and raises
    CalledProcessError) is a one-line ClusterError naming the command and its exit code."""
    from k8s_fixtures.cluster import ClusterError

    needs_library()
    machine.add_cluster("ztfl-t")
    monkeypatch.setenv("FAKE_KIND_LOAD_FAILS", "1")
    with pytest.raises(ClusterError) as e:
        kind.create_kind("ztfl-t", IMAGE)
    assert str(e.value).startswith(f"loading {IMAGE}: `")
    assert str(e.value).endswith(f"load docker-image --name ztfl-t {IMAGE}` failed (exit 1)")
    assert "\n" not in str(e.value) and machine.leftovers() == []
