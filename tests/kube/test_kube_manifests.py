"""Offline CI checks of what ``ztfl render --matrix=full`` writes (no cluster needed).

(a) Every object of every cell folder validates strictly (no unknown fields) against the
    Kubernetes OpenAPI schemas of 1.30 and 1.37 shipped with kubernetes-validate.
    Validating 3,360 objects twice with ``kubernetes_validate.validate`` takes ~2 min (it
    reloads the 1.8 MB definitions per call), so objects are validated once per *shape*:
    every string value (other than the top-level apiVersion/kind) is replaced by one token and
    every list by the set of its distinct element shapes. That is sound because, in these
    schemas, strings are constrained only by type outside apiVersion/kind enums (asserted below
    by scanning the schema files) and lists carry no length/uniqueness constraints; so an
    object validates iff its shape does. One whole cell folder is also validated verbatim.
(b) The NetworkPolicy objects read back from the render output give, in the local evaluator
    (k8s_fixtures.netpol), the same reachability truth table as the objects the local backend
    applies for the same cell: FL server, clients, rogue and probe pods, plus the cluster DNS pod
    (``k8s-app: kube-dns`` in kube-system), for TCP 50051 and DNS on UDP/TCP 53.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from k8s_fixtures import workload
from k8s_fixtures.kube.errors import rbac_cluster_role
from k8s_fixtures.netpol.model import ClusterView, ContainerPort, Namespace, Pod
from k8s_fixtures.netpol.parse import parse_documents
from k8s_fixtures.netpol.truthtable import expected_table

VERSIONS = ("1.30", "1.37")
TOKEN = "s"


def load_folder(folder: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))]


def shape(value: Any, top: bool = True) -> Any:
    """The validation-relevant shape of an object (see the module docstring)."""
    if isinstance(value, dict):
        return {k: (v if top and k in ("apiVersion", "kind") else shape(v, False))
                for k, v in value.items()}
    if isinstance(value, list):
        seen: dict[str, Any] = {}
        for item in value:
            s = shape(item, False)
            seen.setdefault(json.dumps(s, sort_keys=True), s)
        return [seen[k] for k in sorted(seen)]
    if isinstance(value, str):
        return TOKEN
    return value


def validate(obj: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        return f"{obj['kind']} {obj['metadata'].get('name')}: {path}: {e.message}"
    return None


def _string_constraints(defs: dict[str, Any]) -> list[str]:
    """Schema keywords that could make a string's value (not just its type) matter."""
    bad: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("pattern", "minLength", "maxLength", "minItems", "maxItems",
                         "uniqueItems", "const"):
                    bad.append(f"{where}: {k}")
                elif k == "properties" and isinstance(v, dict):
                    for prop, sub in v.items():
                        if isinstance(sub, dict) and "enum" in sub and prop not in (
                                "apiVersion", "kind"):
                            bad.append(f"{where}.{prop}: enum")
                        walk(sub, f"{where}.{prop}")
                else:
                    walk(v, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for name, d in defs.items():
        if "JSONSchemaProps" not in name:  # CRD schemas: not among our kinds
            walk(d, name)
    return bad


@pytest.mark.parametrize("version", VERSIONS)
def test_schema_constrains_strings_only_by_type(version: str) -> None:
    """Justifies validating shapes: outside apiVersion/kind, values never matter."""
    folder = f"v{version}.0-local-strict"
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema" / folder
    doc = json.loads((root / "_definitions.json").read_text())
    assert _string_constraints(doc.get("$defs") or doc["definitions"]) == []


def test_every_rendered_object_of_the_full_preset_validates_strictly(
        rendered_full: tuple[list[Path], float]) -> None:
    folders, render_s = rendered_full
    assert len(folders) == 180 and all(any(f.glob("*.yaml")) for f in folders)
    t0 = time.perf_counter()
    shapes: dict[str, tuple[dict[str, Any], str]] = {}
    count = 0
    for folder in folders:
        for p in sorted(folder.glob("*.yaml")):
            obj = yaml.safe_load(p.read_text())
            count += 1
            s = shape(obj)
            shapes.setdefault(json.dumps(s, sort_keys=True), (s, f"{folder.name}/{p.name}"))
    errors = [f"{where}: {err}" for version in VERSIONS for s, where in shapes.values()
              if (err := validate(s, version))]
    # One cell verbatim (names, labels, certificates, args as written), both versions.
    richest = max(folders, key=lambda f: len(list(f.glob("*.yaml"))))
    errors += [f"{richest.name} (verbatim, {v}): {err}" for v in VERSIONS
               for obj in load_folder(richest) if (err := validate(obj, v))]
    took = time.perf_counter() - t0
    print(f"\n{count} objects in {len(folders)} cell folders -> {len(shapes)} shapes; "
          f"render {render_s:.1f}s, validation {took:.1f}s ({', '.join(VERSIONS)})")
    assert errors == []
    assert render_s + took < 60


def test_validation_catches_an_unknown_field() -> None:
    """The strict schemas really reject what a typo would produce (the check can fail)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "Never"}]}}
    for version in VERSIONS:
        err = validate(shape(pod), version)
        assert err is not None and "imagePullPolicyy" in err


def test_the_documented_cluster_role_validates_and_matches_the_code() -> None:
    for version in VERSIONS:
        assert validate(rbac_cluster_role(), version) is None
    doc = (Path(__file__).parents[2] / "docs" / "kubernetes.md").read_text()
    blocks = [yaml.safe_load(b.split("```", 1)[0]) for b in doc.split("```yaml\n")[1:]]
    assert rbac_cluster_role() in blocks


def test_the_ready_to_apply_rbac_file_grants_exactly_the_role_the_code_needs() -> None:
    """deploy/rbac.yaml: a Namespace, a ServiceAccount, the ClusterRole of RBAC_RULES and the
    binding of one to the other, each valid for every schema version."""
    path = Path(__file__).parents[2] / "deploy" / "rbac.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    assert [d["kind"] for d in docs] == [
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    for version in VERSIONS:
        assert [validate(d, version) for d in docs] == [None] * 4
    ns, account, role, binding = docs
    assert role == rbac_cluster_role()
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": ns["metadata"]["name"]}]
    assert account["metadata"]["namespace"] == ns["metadata"]["name"]


# ----------------------------------------------------------------------------- truth tables

DNS = Pod("kube-system", "coredns", "10.96.0.10", {"k8s-app": "kube-dns"},
          (ContainerPort("dns", 53, "UDP"), ContainerPort("dns-tcp", 53, "TCP")))


def view_of(objs: Iterable[dict[str, Any]]) -> ClusterView:
    """A cluster view of rendered objects: pods get addresses in name order."""
    objs = list(objs)
    ns = [Namespace(o["metadata"]["name"], dict(o["metadata"].get("labels") or {}))
          for o in objs if o["kind"] == "Namespace"]
    pods = sorted((o for o in objs if o["kind"] == "Pod"), key=lambda o: o["metadata"]["name"])
    out = []
    for i, o in enumerate(pods):
        ports = tuple(ContainerPort(p.get("name"), p["containerPort"], p.get("protocol", "TCP"))
                      for c in o["spec"]["containers"] for p in c.get("ports") or [])
        out.append(Pod(o["metadata"]["namespace"], o["metadata"]["name"], f"10.244.0.{i + 2}",
                       dict(o["metadata"].get("labels") or {}), ports))
    pols = parse_documents([o for o in objs if o["kind"] == "NetworkPolicy"])
    return ClusterView((*ns, Namespace("kube-system")), (*out, DNS), tuple(pols))


def tables(view: ClusterView) -> dict[str, dict[tuple[str, str], bool]]:
    """Truth tables for gRPC and DNS; the run namespace is written ``RUN`` so cells compare."""
    run = view.namespaces[0].name
    keys = [p.key for p in view.pods]

    def k(key: str) -> str:
        return key.replace(f"{run}/", "RUN/", 1) if key.startswith(f"{run}/") else key

    return {f"{proto}/{port}": {(k(s), k(d)): v for (s, d), v in expected_table(
                view, keys, proto, port).cells.items()}  # type: ignore[arg-type]
            for proto, port in (("TCP", workload.PORT), ("UDP", 53), ("TCP", 53))}


def local_objects(cell: Any) -> list[dict[str, Any]]:
    """What the local backend applies for ``cell`` (pytest_ztfl.runner.run_cell)."""
    from pytest_ztfl.backends import Platform
    from pytest_ztfl.cellplan import plan_cell

    return plan_cell(cell, Platform(python=(sys.executable,), data_dir="/data/mnist")).objects()


def test_rendered_policies_give_the_local_truth_table(
        rendered_full: tuple[list[Path], float]) -> None:
    from pytest_ztfl import matrix

    folders, _ = rendered_full
    cells = {c.id: c for c in matrix.load("full").cells()}
    local_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
    checked = 0
    for folder in folders:
        cell = cells[folder.name]
        kind_view = view_of(load_folder(folder))
        key = (cell.netpol, cell.tls, cell.mtls, cell.workload.clients)
        if key not in local_cache:
            local_cache[key] = tables(view_of(local_objects(cell)))
        local = local_cache[key]
        assert tables(kind_view) == local, folder.name
        checked += 1
    assert checked == 180
    # The tables are not trivially equal: spot-check the SEC1 semantics on one cell.
    sec1 = next(f for f in folders if cells[f.name].netpol)
    t = tables(view_of(load_folder(sec1)))["TCP/50051"]
    assert t[("RUN/fl-client-0", "RUN/fl-server")]
    assert t[("RUN/ztfl-probe-peer", "RUN/fl-server")]  # client-labelled probe
    assert not t[("RUN/ztfl-probe-rogue", "RUN/fl-server")]
    assert t[("RUN/ztfl-probe-rogue", "RUN/ztfl-probe-open")]  # its positive control
    assert not t[("RUN/fl-client-0", "RUN/fl-client-1")]
    assert not t[("RUN/fl-server", "RUN/fl-client-0")]
    assert tables(view_of(load_folder(sec1)))["UDP/53"][("RUN/ztfl-probe-rogue",
                                                         "kube-system/coredns")]
    sec0 = next(f for f in folders if not cells[f.name].netpol)
    assert tables(view_of(load_folder(sec0)))["TCP/50051"][("RUN/ztfl-probe-rogue",
                                                            "RUN/fl-server")]

